//! Masked Siamese Networks: data, views, the objective, the trainer and evaluation.
pub use vit;
