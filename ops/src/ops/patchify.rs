//! `patchify`: images cut into non-overlapping p×p patches, each flattened.
//!
//! Shapes: `[B, C, H, W]` → `[B, (H/p)·(W/p), C·p·p]`, patches in row-major grid
//! order, each flattened as (channel, row, column), so that patch embedding is
//! `patchify` followed by `linear` with the convolution's weight `[D, C, p, p]`
//! viewed as `[D, C·p·p]`. Trailing rows and columns that do not fill a patch
//! are dropped, as a stride-p convolution does. PyTorch equivalent:
//! `x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C*p*p)`.
//! Saves nothing. Backward: each patch's gradient written back to its pixels.

use crate::error::shape_err;
use crate::{with_dtype, Element, Result, Tensor};

/// Copies between image layout and patch layout; `to_patches` picks the direction.
fn patch_copy<T: Element>(src: &[T], dims: [usize; 4], p: usize, to_patches: bool) -> Vec<T> {
    let [b, c, h, w] = dims;
    let (gh, gw) = (h / p, w / p);
    let patch_len = c * p * p;
    let mut out = vec![
        T::zero();
        if to_patches {
            b * gh * gw * patch_len
        } else {
            b * c * h * w
        }
    ];
    for bi in 0..b {
        for gy in 0..gh {
            for gx in 0..gw {
                let patch = ((bi * gh + gy) * gw + gx) * patch_len;
                for ci in 0..c {
                    for i in 0..p {
                        let image = ((bi * c + ci) * h + gy * p + i) * w + gx * p;
                        let flat = patch + (ci * p + i) * p;
                        if to_patches {
                            out[flat..flat + p].copy_from_slice(&src[image..image + p]);
                        } else {
                            out[image..image + p].copy_from_slice(&src[flat..flat + p]);
                        }
                    }
                }
            }
        }
    }
    out
}

impl Tensor {
    pub fn patchify(&self, patch: usize) -> Result<Tensor> {
        if self.rank() != 4 || patch == 0 {
            return Err(shape_err!(
                "patchify",
                "expects images [B, C, H, W] and a patch size ≥ 1, got {:?} and {}",
                self.shape(),
                patch
            ));
        }
        let dims = [
            self.shape()[0],
            self.shape()[1],
            self.shape()[2],
            self.shape()[3],
        ];
        let [b, c, h, w] = dims;
        if h < patch || w < patch {
            return Err(shape_err!(
                "patchify",
                "image {}×{} is smaller than one {}×{} patch",
                h,
                w,
                patch,
                patch
            ));
        }
        let out_shape = [b, (h / patch) * (w / patch), c * patch * patch];
        let out = if self.is_on_gpu() {
            crate::gpu::patchify(self, patch)?
        } else {
            with_dtype!(self.dtype(), T => Tensor::from_vec(patch_copy(self.data::<T>()?, dims, patch, true), &out_shape)?)
        };
        crate::grad::record("patchify", &[self], out, move |g| {
            if g.is_on_gpu() {
                return Ok(vec![Some(crate::gpu::unpatchify(g, dims, patch)?)]);
            }
            let dx = with_dtype!(g.dtype(), T => Tensor::from_vec(patch_copy(g.data::<T>()?, dims, patch, false), &dims)?);
            Ok(vec![Some(dx)])
        })
    }
}
