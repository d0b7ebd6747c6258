//! Facade over the workspace crates, so that examples, cross-crate tests and benches reach every layer through one name.
pub use autograd;
pub use msn;
pub use ops;
pub use vit;
