//! Errors raised by the tape and the gradient checker.

/// An error from inside a value's own arithmetic (a tensor op), boxed so that the
/// engine stays independent of the value type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("op `{op}` has no backward rule: it cannot be differentiated")]
    NoBackward { op: &'static str },
    #[error("backward of `{op}` failed: {source}")]
    Backward { op: &'static str, source: BoxError },
    #[error("backward of `{op}` returned {got} gradients for {expected} inputs")]
    GradientCount {
        op: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("backward of `{op}`: gradient for input {input} has shape {got:?}, which cannot be summed to the input's shape {expected:?}")]
    GradientShape {
        op: &'static str,
        input: usize,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("backward needs a scalar loss or an explicit output gradient; got shape {shape:?}")]
    NonScalarLoss { shape: Vec<usize> },
    #[error("the value passed to backward was not recorded on this tape")]
    NotOnTape,
    #[error("the values of one op were recorded on different tapes")]
    MixedTapes,
    #[error("the seed gradient has shape {got:?} but the output has shape {expected:?}")]
    SeedShape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("backward was already run on this tape: a tape is used for one step")]
    AlreadyRun,
    #[error("{0}")]
    Value(BoxError),
}
