//! Elementwise `add`, `sub`, `mul`, `div` with NumPy broadcasting.
//!
//! Shapes: `a: S1`, `b: S2` → `broadcast(S1, S2)`. PyTorch: `a + b`, `a - b`,
//! `a * b`, `a / b`. Backward rules return gradients in the output shape; the
//! engine sums them back over the broadcast axes.

use crate::gpu::BinaryOp;
use crate::ops::broadcast::broadcast_binary;
use crate::{with_dtype, Result, Tensor};

impl Tensor {
    /// `self + other`. Backward: `(g, g)`.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        let out = if self.is_on_gpu() {
            crate::gpu::binary(self, other, BinaryOp::Add)?
        } else {
            with_dtype!(self.dtype(), T => broadcast_binary::<T>("add", self, other, |x, y| x + y)?)
        };
        crate::grad::record("add", &[self, other], out, |g| {
            Ok(vec![Some(g.clone()), Some(g.clone())])
        })
    }

    /// `self − other`. Backward: `(g, −g)`.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        let out = if self.is_on_gpu() {
            crate::gpu::binary(self, other, BinaryOp::Sub)?
        } else {
            with_dtype!(self.dtype(), T => broadcast_binary::<T>("sub", self, other, |x, y| x - y)?)
        };
        crate::grad::record("sub", &[self, other], out, |g| {
            Ok(vec![Some(g.clone()), Some(g.neg()?)])
        })
    }

    /// `self · other`. Backward: `(g·b, g·a)`.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        let out = if self.is_on_gpu() {
            crate::gpu::binary(self, other, BinaryOp::Mul)?
        } else {
            with_dtype!(self.dtype(), T => broadcast_binary::<T>("mul", self, other, |x, y| x * y)?)
        };
        let (a, b) = (self.detach(), other.detach());
        crate::grad::record("mul", &[self, other], out, move |g| {
            Ok(vec![Some(g.mul(&b)?), Some(g.mul(&a)?)])
        })
    }

    /// `self / other`. Backward: `(g / b, −g·a / b²)`.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        let out = if self.is_on_gpu() {
            crate::gpu::binary(self, other, BinaryOp::Div)?
        } else {
            with_dtype!(self.dtype(), T => broadcast_binary::<T>("div", self, other, |x, y| x / y)?)
        };
        let (a, b) = (self.detach(), other.detach());
        crate::grad::record("div", &[self, other], out, move |g| {
            let ga = g.div(&b)?;
            let gb = ga.mul(&a)?.div(&b)?.neg()?;
            Ok(vec![Some(ga), Some(gb)])
        })
    }
}
