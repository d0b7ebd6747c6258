//! The memory behind a tensor: a contiguous, row-major buffer on the host, or
//! on a GPU.

use crate::gpu::GpuBuffer;
use crate::{DType, Device};

/// A contiguous row-major buffer. Every op produces contiguous output, which
/// keeps each kernel a loop over plain slices (or a plain index on a GPU).
#[derive(Clone, Debug)]
pub enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// f32 values on a GPU (only with the `wgpu` or `cuda` feature).
    Gpu(GpuBuffer),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) | Storage::Gpu(_) => DType::F32,
            Storage::F64(_) => DType::F64,
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Gpu(b) => b.device(),
            _ => Device::Cpu,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::Gpu(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
