//! `l2_normalize`: each row (last axis) divided by its L2 norm, floored at eps.
//!
//! Shapes: `[.., d]` → `[.., d]`. PyTorch: `F.normalize(x, dim=-1, eps=eps)`,
//! i.e. `x / max(‖x‖, eps)`. Saves the output and the row norms. Backward:
//! `dx = (g − y·Σ g·y)/‖x‖` where the norm exceeds eps, else `g/eps`.

use crate::error::shape_err;
use crate::{with_dtype, Result, Tensor};

impl Tensor {
    pub fn l2_normalize(&self, eps: f64) -> Result<Tensor> {
        let d = *self
            .shape()
            .last()
            .ok_or_else(|| shape_err!("l2_normalize", "needs at least 1 dimension"))?;
        if self.is_on_gpu() {
            let (out, norms) = crate::gpu::l2_normalize(self, eps)?;
            let y = out.clone();
            return crate::grad::record("l2_normalize", &[self], out, move |g| {
                Ok(vec![Some(crate::gpu::l2_normalize_backward(
                    g, &y, &norms, eps,
                )?)])
            });
        }
        let rows = self.numel() / d.max(1);
        let (out, norms) = with_dtype!(self.dtype(), T => {
            let x = self.data::<T>()?;
            let norms: Vec<f64> = (0..rows).map(|r| x[r * d..(r + 1) * d].iter().map(|&v| v * v).sum::<T>().sqrt().to_f64()).collect();
            let mut out = crate::cpu::zeroed::<T>(x.len());
            crate::cpu::for_each_row(&mut out, d, |r, row| {
                let inv = T::from_f64(norms[r].max(eps)).recip();
                for (o, &v) in row.iter_mut().zip(&x[r * d..(r + 1) * d]) {
                    *o = v * inv;
                }
            });
            (Tensor::from_vec(out, self.shape())?, norms)
        });
        let y = out.clone();
        crate::grad::record("l2_normalize", &[self], out, move |g| {
            let dx = with_dtype!(g.dtype(), T => {
                let (gv, yv) = (g.data::<T>()?, y.data::<T>()?);
                let mut dx = crate::cpu::zeroed::<T>(gv.len());
                crate::cpu::for_each_row(&mut dx, d, |r, row| {
                    let (gr, yr) = (&gv[r * d..(r + 1) * d], &yv[r * d..(r + 1) * d]);
                    if norms[r] > eps {
                        let inv = T::from_f64(1.0 / norms[r]);
                        let dot: T = gr.iter().zip(yr).map(|(&a, &b)| a * b).sum();
                        for ((o, &gi), &yi) in row.iter_mut().zip(gr).zip(yr) {
                            *o = (gi - yi * dot) * inv;
                        }
                    } else {
                        let inv = T::from_f64(1.0 / eps);
                        for (o, &gi) in row.iter_mut().zip(gr) {
                            *o = gi * inv;
                        }
                    }
                });
                Tensor::from_vec(dx, g.shape())?
            });
            Ok(vec![Some(dx)])
        })
    }
}
