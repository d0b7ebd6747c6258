//! `narrow`: a contiguous slice `start..start+len` along one axis.
//!
//! Shapes: `[.., n, ..]` → `[.., len, ..]`. PyTorch: `x.narrow(dim, start, len)`.
//! Backward: the gradient placed back into zeros of the input's shape.

use crate::error::shape_err;
use crate::shape::{normalize_axis, split_at_axis};
use crate::{with_dtype, Element, Result, Tensor};

/// Copies `[outer, len, inner]` out of `[outer, n, inner]` starting at `start`
/// (`scatter` = false), or writes it back into zeros (`scatter` = true).
fn narrow_kernel<T: Element>(
    src: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    start: usize,
    len: usize,
    scatter: bool,
) -> Vec<T> {
    let (big, small) = (n * inner, len * inner);
    let mut out = crate::cpu::zeroed::<T>(outer * if scatter { big } else { small });
    for o in 0..outer {
        let (b, s) = (o * big + start * inner, o * small);
        if scatter {
            out[b..b + small].copy_from_slice(&src[s..s + small]);
        } else {
            out[s..s + small].copy_from_slice(&src[b..b + small]);
        }
    }
    out
}

impl Tensor {
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let axis = normalize_axis("narrow", axis, self.rank())?;
        let (outer, n, inner) = split_at_axis(self.shape(), axis);
        if start + len > n {
            return Err(shape_err!(
                "narrow",
                "range {}..{} exceeds size {} of axis {} in {:?}",
                start,
                start + len,
                n,
                axis,
                self.shape()
            ));
        }
        let mut out_shape = self.shape().to_vec();
        out_shape[axis] = len;
        let out = if self.is_on_gpu() {
            crate::gpu::narrow(self, axis, start, len)?
        } else {
            with_dtype!(self.dtype(), T => {
                Tensor::from_vec(narrow_kernel(self.data::<T>()?, outer, n, inner, start, len, false), &out_shape)?
            })
        };
        let in_shape = self.shape().to_vec();
        crate::grad::record("narrow", &[self], out, move |g| {
            if g.is_on_gpu() {
                return Ok(vec![Some(crate::gpu::narrow_backward(
                    g, &in_shape, axis, start,
                )?)]);
            }
            let dx = with_dtype!(g.dtype(), T => {
                Tensor::from_vec(narrow_kernel(g.data::<T>()?, outer, n, inner, start, len, true), &in_shape)?
            });
            Ok(vec![Some(dx)])
        })
    }
}
