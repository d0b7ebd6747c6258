//! What the engine needs from the values it differentiates.

use crate::{BoxError, Var};

/// A differentiable value: a tensor, or a scalar in tests.
///
/// The engine only ever adds gradients, sums them back to a shape, and makes a
/// seed of ones; everything else lives in the backward rules of the ops.
pub trait Value: Clone + Send + Sync + Sized + 'static {
    fn shape(&self) -> Vec<usize>;
    /// The tape variable this value is recorded as, if any.
    fn var(&self) -> Option<&Var<Self>>;
    /// The same value, recorded as `var`.
    fn with_var(&self, var: Var<Self>) -> Self;
    /// The same value, not recorded on any tape.
    fn detach(&self) -> Self;
    /// Elementwise sum of two gradients of the same shape.
    fn add_grad(&self, other: &Self) -> Result<Self, BoxError>;
    /// Sums a gradient over broadcast axes so that it has `shape`; `None` when
    /// `self`'s shape cannot have been broadcast from `shape`.
    fn sum_to_shape(&self, shape: &[usize]) -> Result<Option<Self>, BoxError>;
    /// A value of the same shape filled with ones (the seed of a scalar loss).
    fn ones_like(&self) -> Self;
}

/// Element access in f64, which the gradient checker needs to perturb inputs.
pub trait Probe: Value {
    fn to_f64_vec(&self) -> Vec<f64>;
    /// A value shaped like `self` holding `data`.
    fn with_f64_values(&self, data: &[f64]) -> Self;
}
