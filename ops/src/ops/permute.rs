//! `permute` and `transpose`: reorder axes (with a copy into contiguous order).
//!
//! Shapes: `x: [d0, .., dn]` → `[d_p0, .., d_pn]`. PyTorch:
//! `x.permute(*p).contiguous()`, `x.transpose(a, b).contiguous()`. Backward:
//! permute the gradient by the inverse permutation.

use crate::error::shape_err;
use crate::shape::{contiguous_strides, normalize_axis};
use crate::{with_dtype, Element, Result, Tensor};

fn permute_kernel<T: Element>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let in_strides = contiguous_strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let rank = out_shape.len();
    let mut out = crate::cpu::zeroed::<T>(x.len());
    if rank == 0 {
        out.copy_from_slice(x);
        return out;
    }
    let row_len = out_shape[rank - 1];
    let step = strides[rank - 1];
    crate::cpu::for_each_row(&mut out, row_len, |r, row| {
        // Decode the row index into the leading output coordinates.
        let mut rem = r;
        let mut offset = 0;
        for d in (0..rank - 1).rev() {
            offset += (rem % out_shape[d]) * strides[d];
            rem /= out_shape[d];
        }
        if step == 1 {
            // The last axis stays last (attention's head splits): rows copy whole.
            row.copy_from_slice(&x[offset..offset + row.len()]);
        } else {
            for (j, o) in row.iter_mut().enumerate() {
                *o = x[offset + j * step];
            }
        }
    });
    out
}

impl Tensor {
    /// Reorders the axes: output axis i is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(shape_err!(
                "permute",
                "{:?} is not a permutation of the {} axes of {:?}",
                perm,
                rank,
                self.shape()
            ));
        }
        let out_shape: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let out = if self.is_on_gpu() {
            crate::gpu::permute(self, perm)?
        } else {
            with_dtype!(self.dtype(), T => Tensor::from_vec(permute_kernel(self.data::<T>()?, self.shape(), perm), &out_shape)?)
        };
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        crate::grad::record("permute", &[self], out, move |g| {
            Ok(vec![Some(g.permute(&inverse)?)])
        })
    }

    /// Swaps two axes (negative counts from the end).
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let (a, b) = (
            normalize_axis("transpose", a, self.rank())?,
            normalize_axis("transpose", b, self.rank())?,
        );
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }
}
