//! The memory behind a tensor: a contiguous, row-major buffer.

use crate::{DType, Device};

/// A contiguous row-major buffer. Every op produces contiguous output, which
/// keeps each kernel a loop over plain slices.
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
        }
    }

    pub fn device(&self) -> Device {
        Device::Cpu
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
