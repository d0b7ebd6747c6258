//! `bias_gelu`: `gelu(x + b)`, the bias of a linear layer and the GELU after
//! it in one pass (Megatron-LM's fused `bias_gelu`).
//!
//! Shapes: `x: [.., n]`, `b: [n]` → `[.., n]`. PyTorch: `F.gelu(x + b)`. A ViT
//! block's MLP is `fc2(bias_gelu(x·W1ᵀ, b1))`: the bias sum is never written.
//! Saves `x` and `b`; the pre-activation `z = x + b` is recomputed in the
//! backward pass, one pass as well: `dx = g·gelu'(z)`, `db = Σ_rows dx`.

use crate::cpu::for_each_row;
use crate::error::shape_err;
use crate::ops::gelu::{gelu_slope, gelu_value};
use crate::{gpu, with_dtype, Error, Result, Tensor};

/// `f(x[i], b[i mod n])` for every flat index `i` of `x`, `n = b.len()`.
fn with_bias<T: crate::Element>(x: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    let n = b.len();
    let mut out = vec![T::zero(); x.len()];
    // Zipped row slices rather than indices: no bounds checks, so the loop vectorises.
    for_each_row(&mut out, n, |r, row| {
        for ((o, &x), &b) in row.iter_mut().zip(&x[r * n..(r + 1) * n]).zip(b) {
            *o = f(x, b);
        }
    });
    out
}

/// `f(g[i], x[i], b[i mod n])` for every flat index `i` of `x`.
fn with_grad_and_bias<T: crate::Element>(
    g: &[T],
    x: &[T],
    b: &[T],
    f: impl Fn(T, T, T) -> T + Sync + Send,
) -> Vec<T> {
    let n = b.len();
    let mut out = vec![T::zero(); x.len()];
    for_each_row(&mut out, n, |r, row| {
        let rows = &g[r * n..(r + 1) * n];
        for (((o, &g), &x), &b) in row.iter_mut().zip(rows).zip(&x[r * n..(r + 1) * n]).zip(b) {
            *o = f(g, x, b);
        }
    });
    out
}

impl Tensor {
    /// `gelu(self + bias)`, `bias` broadcast over the last axis.
    pub fn bias_gelu(&self, bias: &Tensor) -> Result<Tensor> {
        const OP: &str = "bias_gelu";
        let n = self.shape().last().copied();
        if n.is_none() || bias.shape() != [n.unwrap_or(0)] {
            return Err(shape_err!(
                OP,
                "bias {:?} does not fit input {:?}: expected [{}]",
                bias.shape(),
                self.shape(),
                n.map_or("last axis".into(), |n| n.to_string())
            ));
        }
        if bias.dtype() != self.dtype() {
            return Err(Error::DType {
                op: OP,
                lhs: self.dtype(),
                rhs: bias.dtype(),
            });
        }
        let out = if self.is_on_gpu() {
            gpu::bias_gelu(self, bias)?
        } else {
            with_dtype!(self.dtype(), T => Tensor::from_vec(
                with_bias(self.data::<T>()?, bias.data::<T>()?, |x, b| gelu_value(x + b)),
                self.shape(),
            )?)
        };
        let (x, b) = (self.detach(), bias.detach());
        crate::grad::record(OP, &[self, bias], out, move |g| {
            let dx = if g.is_on_gpu() {
                gpu::bias_gelu_backward(g, &x, &b)?
            } else {
                with_dtype!(x.dtype(), T => {
                    let g = g.data::<T>()?;
                    Tensor::from_vec(
                        with_grad_and_bias(g, x.data::<T>()?, b.data::<T>()?, |g, x, b| g * gelu_slope(x + b)),
                        x.shape(),
                    )?
                })
            };
            let rows = dx.numel() / b.numel().max(1);
            let db = dx.reshape(&[rows, b.numel()])?.sum_axis(0, false)?;
            Ok(vec![Some(dx), Some(db)])
        })
    }
}
