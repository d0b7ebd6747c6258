//! `index_select`: entries picked by index along one axis (token dropping).
//!
//! Shapes: `x: [.., n, ..]`, `indices: [m]` (values < n, repeats allowed) →
//! `[.., m, ..]`. PyTorch: `x.index_select(dim, idx)`. The indices are plain
//! integers, not differentiable. Backward: `g` scattered back with addition
//! (`index_add`), so a repeated index receives the sum of its gradients.

use crate::error::shape_err;
use crate::shape::{normalize_axis, split_at_axis};
use crate::{with_dtype, Result, Tensor};

impl Tensor {
    pub fn index_select(&self, axis: isize, indices: &[usize]) -> Result<Tensor> {
        let axis = normalize_axis("index_select", axis, self.rank())?;
        let (outer, n, inner) = split_at_axis(self.shape(), axis);
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(shape_err!(
                "index_select",
                "index {} out of range for axis {} of size {} in {:?}",
                bad,
                axis,
                n,
                self.shape()
            ));
        }
        let m = indices.len();
        let mut out_shape = self.shape().to_vec();
        out_shape[axis] = m;
        if self.is_on_gpu() {
            let out = crate::gpu::index_select(self, axis, indices)?;
            let (indices, in_shape) = (indices.to_vec(), self.shape().to_vec());
            return crate::grad::record("index_select", &[self], out, move |g| {
                Ok(vec![Some(crate::gpu::index_select_backward(
                    g, axis, &indices, &in_shape,
                )?)])
            });
        }
        let out = with_dtype!(self.dtype(), T => {
            let x = self.data::<T>()?;
            let mut out = Vec::with_capacity(outer * m * inner);
            for o in 0..outer {
                for &i in indices {
                    out.extend_from_slice(&x[(o * n + i) * inner..(o * n + i + 1) * inner]);
                }
            }
            Tensor::from_vec(out, &out_shape)?
        });
        let (indices, in_shape) = (indices.to_vec(), self.shape().to_vec());
        crate::grad::record("index_select", &[self], out, move |g| {
            let dx = with_dtype!(g.dtype(), T => {
                let gv = g.data::<T>()?;
                let mut dx = crate::cpu::zeroed::<T>(outer * n * inner);
                for o in 0..outer {
                    for (j, &i) in indices.iter().enumerate() {
                        let src = &gv[(o * m + j) * inner..(o * m + j + 1) * inner];
                        for (d, &s) in dx[(o * n + i) * inner..(o * n + i + 1) * inner].iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                }
                Tensor::from_vec(dx, &in_shape)?
            });
            Ok(vec![Some(dx)])
        })
    }
}
