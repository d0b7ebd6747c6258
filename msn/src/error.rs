//! Errors of data loading, training and checkpoints: each names the thing and what was expected.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Op(#[from] ops::Error),
    #[error(transparent)]
    Model(#[from] vit::Error),
    #[error(transparent)]
    Autograd(#[from] autograd::Error),
    #[error("data {path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("unknown data source `{0}`; expected fashion-mnist, cifar10:PATH or folder:PATH, each with an optional :train, :test, :fit or :val")]
    Source(String),
    #[error("{0}")]
    Config(String),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("training diverged at step {step}: the loss is {value}; lower the learning rate or check the data (--detect-anomaly names the first op whose output is not finite)")]
    NonFiniteLoss { step: u64, value: f64 },
    #[error("training diverged at step {step}: the loss is finite ({loss}) but the gradient of {parameter} is not; lower the learning rate or check the data (--detect-anomaly names the op whose backward made it)")]
    NonFiniteGradient {
        step: u64,
        loss: f64,
        parameter: String,
    },
    /// Not a `source`, so that the chain prints it once.
    #[error("step {step}: {error}")]
    AtStep { step: u64, error: Box<Error> },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }
}
