//! The Vision Transformer as MSN uses it (filled in by the MSN pretraining work).
pub use ops;
