//! Errors of the model: bad configurations, and weights that do not fit.

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Op(#[from] ops::Error),
    #[error("invalid ViT configuration: {0}")]
    Config(String),
    #[error("unknown model preset `{0}`; expected vit-tiny, vit-small, vit-base or vit-large, optionally with /P for the patch size (e.g. vit-small/16)")]
    UnknownPreset(String),
    #[error("weights in {file} do not fit the model: {problems}")]
    Mismatch { file: String, problems: String },
    #[error("cannot read weights {file}: {reason}")]
    Read { file: String, reason: String },
    #[error("cannot write weights {file}: {reason}")]
    Write { file: String, reason: String },
}
