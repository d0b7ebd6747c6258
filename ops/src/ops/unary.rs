//! Elementwise functions of one tensor: `neg`, `exp`, `log`, `sqrt`, `rsqrt`, `powf`, `tanh`.
//!
//! Shapes: `x: S` → `S`. PyTorch: `-x`, `x.exp()`, `x.log()`, `x.sqrt()`,
//! `x.rsqrt()`, `x.pow(p)`, `x.tanh()`. Each backward is one fused
//! elementwise pass over the output gradient and what the op saved: the input
//! (`log`, `powf`) or the output (`exp`, `sqrt`, `rsqrt`, `tanh`).

use crate::gpu::{BinaryOp, UnaryOp};
use crate::{map_elements, zip_elements, Result, Tensor};

impl Tensor {
    /// `−x`. Backward: `−g`.
    pub fn neg(&self) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::Neg, |x| -x)?;
        crate::grad::record("neg", &[self], out, |g| Ok(vec![Some(g.neg()?)]))
    }

    /// `eˣ`. Backward: `g·y`.
    pub fn exp(&self) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::Exp, |x| x.exp())?;
        let y = out.clone();
        crate::grad::record("exp", &[self], out, move |g| {
            Ok(vec![Some(
                zip_elements!(g, &y, gpu: BinaryOp::Mul, |g, y| g * y)?,
            )])
        })
    }

    /// Natural logarithm. Backward: `g / x`.
    pub fn log(&self) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::Log, |x| x.ln())?;
        let x = self.detach();
        crate::grad::record("log", &[self], out, move |g| {
            Ok(vec![Some(
                zip_elements!(g, &x, gpu: BinaryOp::Div, |g, x| g / x)?,
            )])
        })
    }

    /// `√x`. Backward: `g / (2y)`.
    pub fn sqrt(&self) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::Sqrt, |x| x.sqrt())?;
        let y = out.clone();
        crate::grad::record("sqrt", &[self], out, move |g| {
            Ok(vec![Some(
                zip_elements!(g, &y, gpu: BinaryOp::SqrtGrad, |g, y| g / (y + y))?,
            )])
        })
    }

    /// `1/√x`. Backward: `−g·y³/2`.
    pub fn rsqrt(&self) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::Rsqrt, |x| x.sqrt().recip())?;
        let y = out.clone();
        crate::grad::record("rsqrt", &[self], out, move |g| {
            Ok(vec![Some(
                zip_elements!(g, &y, gpu: BinaryOp::RsqrtGrad, |g, y| -g
                * y
                * y
                * y
                * T::from_f64(0.5))?,
            )])
        })
    }

    /// `xᵖ` for a constant exponent. Backward: `g·p·xᵖ⁻¹`.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::Powf(p), |x| x.powf(T::from_f64(p)))?;
        let x = self.detach();
        crate::grad::record("powf", &[self], out, move |g| {
            Ok(vec![Some(
                zip_elements!(g, &x, gpu: BinaryOp::PowfGrad(p), |g, x| g
                * T::from_f64(p)
                * x.powf(T::from_f64(p - 1.0)))?,
            )])
        })
    }

    /// Hyperbolic tangent. Backward: `g·(1 − y²)`.
    pub fn tanh(&self) -> Result<Tensor> {
        let out = map_elements!(self, gpu: UnaryOp::Tanh, |x| x.tanh())?;
        let y = out.clone();
        crate::grad::record("tanh", &[self], out, move |g| {
            Ok(vec![Some(
                zip_elements!(g, &y, gpu: BinaryOp::TanhGrad, |g, y| g * (T::one() - y * y))?,
            )])
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    #[test]
    fn values_match_the_scalar_functions() {
        let x = Tensor::from_f64s(&[0.25, 1.0, 4.0], &[3], DType::F64).unwrap();
        assert_eq!(x.sqrt().unwrap().to_vec_f64(), vec![0.5, 1.0, 2.0]);
        assert_eq!(x.rsqrt().unwrap().to_vec_f64(), vec![2.0, 1.0, 0.5]);
        assert_eq!(x.powf(2.0).unwrap().to_vec_f64(), vec![0.0625, 1.0, 16.0]);
        assert_eq!(x.neg().unwrap().to_vec_f64(), vec![-0.25, -1.0, -4.0]);
        assert!((x.log().unwrap().to_vec_f64()[2] - 4f64.ln()).abs() < 1e-15);
    }
}
