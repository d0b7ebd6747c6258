//! The errors of tensor ops: each names the op and the shapes involved.

use crate::DType;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    #[error("{op}: shapes {lhs:?} and {rhs:?} cannot be broadcast together")]
    Broadcast {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    #[error("{op}: dtypes differ ({lhs:?} and {rhs:?}); cast one with to_dtype first")]
    DType {
        op: &'static str,
        lhs: DType,
        rhs: DType,
    },
    #[error("{op}: axis {axis} is out of range for a tensor of rank {rank}")]
    Axis {
        op: &'static str,
        axis: isize,
        rank: usize,
    },
    #[error("{op}: {message}")]
    Device { op: &'static str, message: String },
    #[error("anomaly in `{op}`: {message}")]
    Anomaly { op: &'static str, message: String },
    #[error(transparent)]
    Autograd(#[from] autograd::Error),
}

/// Builds an [`Error::Shape`] with a formatted message.
macro_rules! shape_err {
    ($op:expr, $($fmt:tt)*) => {
        $crate::Error::Shape { op: $op, message: format!($($fmt)*) }
    };
}
pub(crate) use shape_err;
