//! `concat`: tensors joined along one axis.
//!
//! Shapes: `[.., n_i, ..]` (equal elsewhere) → `[.., Σn_i, ..]`. PyTorch:
//! `torch.cat(tensors, dim)`. Backward: each input gets its `narrow` of `g`.

use crate::error::shape_err;
use crate::shape::{normalize_axis, split_at_axis};
use crate::{with_dtype, Error, Result, Tensor};

impl Tensor {
    pub fn concat(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| shape_err!("concat", "needs at least one tensor"))?;
        let axis = normalize_axis("concat", axis, first.rank())?;
        let mut out_shape = first.shape().to_vec();
        out_shape[axis] = 0;
        for t in tensors {
            if t.dtype() != first.dtype() {
                return Err(Error::DType {
                    op: "concat",
                    lhs: first.dtype(),
                    rhs: t.dtype(),
                });
            }
            let same_elsewhere = t.rank() == first.rank()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(d, (a, b))| d == axis || a == b);
            if !same_elsewhere {
                return Err(shape_err!(
                    "concat",
                    "shape {:?} does not match {:?} outside axis {}",
                    t.shape(),
                    first.shape(),
                    axis
                ));
            }
            out_shape[axis] += t.shape()[axis];
        }
        let (outer, total, inner) = split_at_axis(&out_shape, axis);
        let out = if first.is_on_gpu() {
            crate::gpu::concat(tensors, axis)?
        } else {
            with_dtype!(first.dtype(), T => {
                let mut out = Vec::with_capacity(outer * total * inner);
                for o in 0..outer {
                    for t in tensors {
                        let chunk = t.shape()[axis] * inner;
                        out.extend_from_slice(&t.data::<T>()?[o * chunk..(o + 1) * chunk]);
                    }
                }
                Tensor::from_vec(out, &out_shape)?
            })
        };
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[axis]).collect();
        crate::grad::record("concat", tensors, out, move |g| {
            let mut start = 0;
            let mut grads = Vec::with_capacity(sizes.len());
            for &len in &sizes {
                grads.push(Some(g.narrow(axis as isize, start, len)?));
                start += len;
            }
            Ok(grads)
        })
    }
}
