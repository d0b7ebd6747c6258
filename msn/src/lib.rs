//! Masked Siamese Networks: data sets and loaders, augmentations, views and
//! masking, the projection head, prototypes, Sinkhorn and the loss, EMA
//! target, AdamW and MSN's schedules, the trainer and its checkpoints.

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dist;
mod error;
pub mod eval;
pub mod head;
pub mod loader;
pub mod loss;
pub mod model;
pub mod optim;
pub mod schedule;
pub mod trainer;
pub mod views;

pub use error::{Error, Result};
pub use vit;
