//! `bias_gelu`: `gelu(x + b)`, the bias of a linear layer and the GELU after
//! it in one pass (Megatron-LM's fused `bias_gelu`).
//!
//! Shapes: `x: [.., n]`, `b: [n]` → `[.., n]`. PyTorch: `F.gelu(x + b)`. A ViT
//! block's MLP is `fc2(bias_gelu(x·W1ᵀ, b1))`: the bias sum is never written.
//! Saves `x` and `b`; the pre-activation `z = x + b` is recomputed in the
//! backward pass, one pass as well: `dx = g·gelu'(z)`, `db = Σ_rows dx`.

use std::mem::MaybeUninit;

use crate::cpu::{new_rows, widest_simd};
use crate::error::shape_err;
use crate::ops::gelu::{gelu_slope, gelu_value};
use crate::{gpu, with_dtype, Element, Error, Result, Tensor};

/// `gelu(x + b)` for one row.
#[inline(always)]
fn forward_row<T: Element>(out: &mut [MaybeUninit<T>], x: &[T], b: &[T]) {
    // Zipped slices rather than indices: no bounds checks, so the loop vectorises.
    for ((o, &x), &b) in out.iter_mut().zip(x).zip(b) {
        o.write(gelu_value(x + b));
    }
}

/// `g·gelu'(x + b)` for one row.
#[inline(always)]
fn backward_row<T: Element>(out: &mut [MaybeUninit<T>], g: &[T], x: &[T], b: &[T]) {
    for (((o, &g), &x), &b) in out.iter_mut().zip(g).zip(x).zip(b) {
        o.write(g * gelu_slope(x + b));
    }
}

// GELU's erf and exp are most of a ViT's element-wise time: they get the
// widest vectors (AVX-512 halved the forward pass's time against AVX2).
widest_simd!(fn forward_row_simd<T>(out: &mut [MaybeUninit<T>], x: &[T], b: &[T]) => forward_row);
widest_simd!(fn backward_row_simd<T>(out: &mut [MaybeUninit<T>], g: &[T], x: &[T], b: &[T]) => backward_row);

/// `gelu(x + b)` over rows of `n = b.len()`.
fn forward<T: Element>(x: &[T], b: &[T]) -> Vec<T> {
    let n = b.len();
    // SAFETY: each row's kernel writes the whole row (x's row is as long).
    unsafe {
        new_rows(x.len(), n, |r, row| {
            forward_row_simd(row, &x[r * n..(r + 1) * n], b)
        })
    }
}

/// `g·gelu'(x + b)` over rows of `n = b.len()`.
fn backward<T: Element>(g: &[T], x: &[T], b: &[T]) -> Vec<T> {
    let n = b.len();
    // SAFETY: each row's kernel writes the whole row (g's and x's rows are as long).
    unsafe {
        new_rows(x.len(), n, |r, row| {
            let rows = r * n..(r + 1) * n;
            backward_row_simd(row, &g[rows.clone()], &x[rows], b)
        })
    }
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
                forward(self.data::<T>()?, bias.data::<T>()?),
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
                        backward(g, x.data::<T>()?, b.data::<T>()?),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The widest copy this CPU runs (AVX-512 here, AVX2 elsewhere) gives
    /// the same bits as the baseline one: no FMA contraction, the same
    /// polynomials, lane by lane.
    #[test]
    fn the_widest_copy_gives_the_baseline_bits() {
        let n = 203;
        let x: Vec<f32> = (0..n).map(|i| (i as f32 - 101.0) * 0.061).collect();
        let b: Vec<f32> = (0..n).map(|i| ((i * 7) % 13) as f32 * 0.05 - 0.3).collect();
        let g: Vec<f32> = (0..n).map(|i| ((i * 5) % 11) as f32 * 0.2 - 1.0).collect();
        // SAFETY (of the reads): every element was written by the row kernel just before.
        let bits = |v: &[MaybeUninit<f32>]| {
            v.iter()
                .map(|x| unsafe { x.assume_init() }.to_bits())
                .collect::<Vec<_>>()
        };
        let mut wide = vec![MaybeUninit::new(0.0f32); n];
        let mut baseline = vec![MaybeUninit::new(0.0f32); n];
        forward_row_simd(&mut wide, &x, &b);
        forward_row(&mut baseline, &x, &b);
        assert_eq!(bits(&wide), bits(&baseline), "forward");
        backward_row_simd(&mut wide, &g, &x, &b);
        backward_row(&mut baseline, &g, &x, &b);
        assert_eq!(bits(&wide), bits(&baseline), "backward");
    }
}
