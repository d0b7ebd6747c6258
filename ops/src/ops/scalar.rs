//! Ops with a scalar operand: `add_scalar`, `sub_scalar`, `mul_scalar`, `div_scalar`.
//!
//! Shapes: `x: S` → `S`. PyTorch: `x + c`, `x - c`, `x * c`, `x / c`.

use crate::gpu::UnaryOp;
use crate::{map_elements, Result, Tensor};

impl Tensor {
    /// `self + c`. Backward: `g`.
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::AddScalar(c), |x| x + T::from_f64(c))?;
        crate::grad::record("add_scalar", &[self], out, |g| Ok(vec![Some(g.clone())]))
    }

    /// `self − c`.
    pub fn sub_scalar(&self, c: f64) -> Result<Tensor> {
        self.add_scalar(-c)
    }

    /// `self · c`. Backward: `g·c`.
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::MulScalar(c), |x| x * T::from_f64(c))?;
        crate::grad::record("mul_scalar", &[self], out, move |g| {
            Ok(vec![Some(g.mul_scalar(c)?)])
        })
    }

    /// `self / c`.
    pub fn div_scalar(&self, c: f64) -> Result<Tensor> {
        self.mul_scalar(1.0 / c)
    }
}
