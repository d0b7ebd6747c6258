//! The tensor and the ops that a Vision Transformer and MSN need, and no more.
//!
//! One [`Tensor`] type: a shape, a dtype chosen at run time (f32, or f64 for
//! gradient checks) and a device (the CPU, or a GPU through CubeCL: see
//! [`gpu`]). Every op lives in one module under [`ops`](crate::ops) with its
//! documentation (shapes, the PyTorch equivalent), its forward, its backward
//! rule and its kernels. Ops record onto a caller-owned [`Tape`] only when one
//! of their inputs is tracked by it. [`autocast`] makes the GPU's matrix
//! products read bf16 operands for a scope.
//!
//! [`checks`] is the gradient-check suite: one random case generator per op,
//! shared by the property tests and `msn gradcheck`.

pub mod anomaly;
pub mod checks;
pub mod cpu;
mod device;
mod dtype;
mod error;
pub mod gpu;
mod grad;
pub mod ops;
mod precision;
mod shape;
mod storage;
mod tensor;

pub use autograd::{Gradients, Tape};

/// The traits that generic kernel code calls through (`T::zero()`, `x.exp()`),
/// brought into scope by [`with_dtype!`].
#[doc(hidden)]
pub mod dtype_traits {
    pub use crate::Element;
    pub use num_traits::{Float, One, Zero};
}
pub use device::Device;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use ops::batch_norm::BatchStats;
pub use precision::{autocast, matmul_precision, round_to_bf16, AutocastGuard, Precision};
pub use shape::{broadcast_shapes, numel};
pub use storage::Storage;
pub use tensor::Tensor;

/// The tape over tensors.
pub type TensorTape = Tape<Tensor>;
/// Gradients of a tensor tape's leaves.
pub type TensorGrads = Gradients<Tensor>;
