//! `soft_cross_entropy` (soft targets, from logits) and `entropy` of probabilities.
//!
//! `soft_cross_entropy`: `logits, targets: [.., K]` → a 0-d tensor,
//! `mean_rows(−Σ_k q_k · log_softmax(z)_k)`. PyTorch:
//! `F.cross_entropy(z, q)` with probability targets (mean reduction). Computed
//! through log-softmax, so it never takes the log of a rounded-to-zero
//! probability. Saves the log-probabilities. Backward:
//! `dz = (softmax(z)·Σq − q)/rows`, `dq = −log_softmax(z)/rows`.
//!
//! `entropy`: `p: [.., K]` → `[..]`, `−Σ_k p_k log p_k` with `0·log 0 = 0`
//! (PyTorch: `-torch.special.xlogy(p, p).sum(-1)`). Saves `p`. Backward:
//! `dp = −g·(log p + 1)`.

use crate::error::shape_err;
use crate::gpu::{BinaryOp, UnaryOp};
use crate::{with_dtype, Result, Tensor};

impl Tensor {
    /// Mean over rows of the cross-entropy between soft `targets` and `softmax(self)`.
    pub fn soft_cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        const OP: &str = "soft_cross_entropy";
        if self.shape() != targets.shape() || self.rank() == 0 {
            return Err(shape_err!(
                OP,
                "logits {:?} and targets {:?} must have the same shape [.., K]",
                self.shape(),
                targets.shape()
            ));
        }
        let k = *self.shape().last().expect("rank ≥ 1");
        let rows = self.numel() / k.max(1);
        if self.is_on_gpu() {
            return targets
                .mul(&self.log_softmax()?)?
                .sum_all()?
                .mul_scalar(-1.0 / rows as f64);
        }
        let log_probs = self.detach().log_softmax()?;
        let loss = with_dtype!(self.dtype(), T => {
            let (lp, q) = (log_probs.data::<T>()?, targets.data::<T>()?);
            let total: f64 = lp.iter().zip(q).map(|(&l, &t)| -(t * l).to_f64()).sum();
            Tensor::from_f64s(&[total / rows as f64], &[], T::DTYPE)?
        });
        let q = targets.detach();
        crate::grad::record(OP, &[self, targets], loss, move |g| {
            let scale = g.item()? / rows as f64;
            let (dz, dq) = with_dtype!(log_probs.dtype(), T => {
                let (lp, qv) = (log_probs.data::<T>()?, q.data::<T>()?);
                let s = T::from_f64(scale);
                let mut dz = crate::cpu::zeroed::<T>(lp.len());
                crate::cpu::for_each_row(&mut dz, k, |r, row| {
                    let (lr, qr) = (&lp[r * k..(r + 1) * k], &qv[r * k..(r + 1) * k]);
                    let mass: T = qr.iter().copied().sum();
                    for ((d, &l), &t) in row.iter_mut().zip(lr).zip(qr) {
                        *d = (l.exp() * mass - t) * s;
                    }
                });
                let dq: Vec<T> = crate::cpu::map(lp, |l| -l * s);
                (Tensor::from_vec(dz, log_probs.shape())?, Tensor::from_vec(dq, log_probs.shape())?)
            });
            Ok(vec![Some(dz), Some(dq)])
        })
    }

    /// Shannon entropy of each row of probabilities (last axis), in nats.
    pub fn entropy(&self) -> Result<Tensor> {
        let k = *self
            .shape()
            .last()
            .ok_or_else(|| shape_err!("entropy", "needs at least 1 dimension"))?;
        let out_shape = &self.shape()[..self.rank() - 1];
        if self.is_on_gpu() {
            let p = self.detach();
            let terms = crate::gpu::unary(self, UnaryOp::XLogX)?;
            let terms = crate::grad::record("entropy", &[self], terms, move |g| {
                Ok(vec![Some(crate::gpu::binary(g, &p, BinaryOp::XLogXGrad)?)])
            })?;
            return terms.sum_axis(-1, false)?.neg();
        }
        let out = with_dtype!(self.dtype(), T => {
            let p = self.data::<T>()?;
            let h: Vec<T> = p.chunks_exact(k.max(1)).map(|row| {
                -row.iter().map(|&v| if v > T::zero() { v * v.ln() } else { T::zero() }).sum::<T>()
            }).collect();
            Tensor::from_vec(h, out_shape)?
        });
        let p = self.detach();
        crate::grad::record("entropy", &[self], out, move |g| {
            let dp = with_dtype!(p.dtype(), T => {
                let (pv, gv) = (p.data::<T>()?, g.data::<T>()?);
                let dp: Vec<T> = pv.iter().enumerate().map(|(i, &v)| -gv[i / k] * (v.ln() + T::one())).collect();
                Tensor::from_vec(dp, p.shape())?
            });
            Ok(vec![Some(dp)])
        })
    }
}
