//! The Vision Transformer exactly as MSN uses it (`msn-spec.md` §1): patch
//! embedding, CLS token, learned positional embedding resized bicubically to
//! other patch grids, pre-norm blocks, final norm, token dropping; weights by
//! timm's key names.

mod config;
mod error;
mod init;
mod layers;
mod model;
mod weights;

pub use config::VitConfig;
pub use error::{Error, Result};
pub use layers::{Block, LayerNorm, Linear};
pub use model::{VisionTransformer, VitOutput};
pub use weights::{
    read_safetensors, strip_wrappers, write_atomically, write_safetensors, NamedTensors,
};

pub use ops;
