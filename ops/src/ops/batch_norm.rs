//! `batch_norm` in training mode over `[N, C]`: batch statistics, affine.
//!
//! Shapes: `x: [N, C]`, `weight, bias: [C]` → `[N, C]`, plus the batch's
//! [`BatchStats`] (mean and unbiased variance per column) for the caller's
//! running statistics. PyTorch: `F.batch_norm(x, running_mean, running_var,
//! weight, bias, training=True, momentum, eps)`; normalisation uses the biased
//! variance, the running update the unbiased one, as PyTorch does. Saves `x`,
//! per-column mean and 1/σ, and the weight. Backward, per column, with
//! `x̂ = (x − μ)/σ`, `h = g·γ`: `dx = (h − mean(h) − x̂·mean(h·x̂))/σ`,
//! `dγ = Σ g·x̂`, `dβ = Σ g`. Evaluation mode is [`Tensor::batch_norm_eval`].

use crate::error::shape_err;
use crate::{with_dtype, Element, Error, Result, Tensor};

/// Statistics of one training batch, per column.
#[derive(Clone, Debug)]
pub struct BatchStats {
    pub mean: Tensor,
    /// Unbiased (N − 1) variance, as PyTorch's running statistics use.
    pub var_unbiased: Tensor,
}

impl BatchStats {
    /// `running ← (1 − momentum)·running + momentum·batch` (PyTorch's convention).
    pub fn update_running(
        &self,
        running_mean: &mut Tensor,
        running_var: &mut Tensor,
        momentum: f64,
    ) -> Result<()> {
        for (running, batch) in [
            (running_mean, &self.mean),
            (running_var, &self.var_unbiased),
        ] {
            if running.shape() != batch.shape() {
                return Err(shape_err!(
                    "batch_norm",
                    "running statistics {:?} do not match batch statistics {:?}",
                    running.shape(),
                    batch.shape()
                ));
            }
            if running.is_on_gpu() {
                *running = running
                    .detach()
                    .mul_scalar(1.0 - momentum)?
                    .add(&batch.detach().mul_scalar(momentum)?)?;
                continue;
            }
            let batch = batch.to_vec_f64();
            with_dtype!(running.dtype(), T => running.map_in_place::<T>(|r| {
                for (r, b) in r.iter_mut().zip(&batch) {
                    *r = T::from_f64((1.0 - momentum) * r.to_f64() + momentum * b);
                }
            })?);
        }
        Ok(())
    }
}

struct Saved {
    x: Tensor,
    weight: Tensor,
    mean: Vec<f64>,
    rstd: Vec<f64>,
}

fn backward<T: Element>(s: &Saved, g: &Tensor, n: usize, c: usize) -> Result<Vec<Option<Tensor>>> {
    let (x, gv, w) = (s.x.data::<T>()?, g.data::<T>()?, s.weight.data::<T>()?);
    let mean: Vec<T> = s.mean.iter().map(|&v| T::from_f64(v)).collect();
    let rstd: Vec<T> = s.rstd.iter().map(|&v| T::from_f64(v)).collect();
    let (mut dw, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
    for r in 0..n {
        for j in 0..c {
            let gj = gv[r * c + j];
            dw[j] += gj * (x[r * c + j] - mean[j]) * rstd[j];
            db[j] += gj;
        }
    }
    // Σ h = γ·dβ and Σ h·x̂ = γ·dγ, so the column sums above serve dx too.
    let inv_n = T::from_f64(1.0 / n as f64);
    let mut dx = crate::cpu::zeroed::<T>(x.len());
    crate::cpu::for_each_row(&mut dx, c, |r, row| {
        for j in 0..c {
            let xhat = (x[r * c + j] - mean[j]) * rstd[j];
            let h = gv[r * c + j] * w[j];
            row[j] = (h - w[j] * db[j] * inv_n - xhat * w[j] * dw[j] * inv_n) * rstd[j];
        }
    });
    Ok(vec![
        Some(Tensor::from_vec(dx, s.x.shape())?),
        Some(Tensor::from_vec(dw, &[c])?),
        Some(Tensor::from_vec(db, &[c])?),
    ])
}

impl Tensor {
    /// Training-mode batch norm; returns the output and the batch statistics.
    pub fn batch_norm(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> Result<(Tensor, BatchStats)> {
        const OP: &str = "batch_norm";
        if self.rank() != 2 || self.shape()[0] < 2 {
            return Err(shape_err!(
                OP,
                "expects [N, C] with N ≥ 2 in training mode, got {:?}",
                self.shape()
            ));
        }
        let (n, c) = (self.shape()[0], self.shape()[1]);
        if weight.shape() != [c] || bias.shape() != [c] {
            return Err(shape_err!(
                OP,
                "weight {:?} and bias {:?} must both be [{}]",
                weight.shape(),
                bias.shape(),
                c
            ));
        }
        for t in [weight, bias] {
            if t.dtype() != self.dtype() {
                return Err(Error::DType {
                    op: OP,
                    lhs: self.dtype(),
                    rhs: t.dtype(),
                });
            }
        }
        if self.is_on_gpu() {
            return self.batch_norm_composed(weight, bias, eps);
        }
        let (out, mean, var) = with_dtype!(self.dtype(), T => {
            let (x, w, b) = (self.data::<T>()?, weight.data::<T>()?, bias.data::<T>()?);
            let mut mean = crate::cpu::zeroed::<T>(c);
            for row in x.chunks_exact(c) {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += v;
                }
            }
            let inv_n = T::from_f64(1.0 / n as f64);
            mean.iter_mut().for_each(|m| *m *= inv_n);
            let mut var = crate::cpu::zeroed::<T>(c);
            for row in x.chunks_exact(c) {
                for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
                    *s += (v - m) * (v - m);
                }
            }
            var.iter_mut().for_each(|s| *s *= inv_n);
            let rstd: Vec<T> = var.iter().map(|&v| (v + T::from_f64(eps)).sqrt().recip()).collect();
            let mut out = crate::cpu::zeroed::<T>(x.len());
            crate::cpu::for_each_row(&mut out, c, |r, row| {
                for j in 0..c {
                    row[j] = (x[r * c + j] - mean[j]) * rstd[j] * w[j] + b[j];
                }
            });
            let to_f64 = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
            (Tensor::from_vec(out, self.shape())?, to_f64(&mean), (to_f64(&var), to_f64(&rstd)))
        });
        let (var_biased, rstd) = var;
        let unbiased: Vec<f64> = var_biased
            .iter()
            .map(|v| v * n as f64 / (n - 1) as f64)
            .collect();
        let stats = BatchStats {
            mean: Tensor::from_f64s(&mean, &[c], self.dtype())?,
            var_unbiased: Tensor::from_f64s(&unbiased, &[c], self.dtype())?,
        };
        let saved = Saved {
            x: self.detach(),
            weight: weight.detach(),
            mean,
            rstd,
        };
        let out = crate::grad::record(
            OP,
            &[self, weight, bias],
            out,
            move |g| with_dtype!(g.dtype(), T => backward::<T>(&saved, g, n, c)),
        )?;
        Ok((out, stats))
    }

    /// Training-mode batch norm composed of recorded ops, for GPUs: batch norm
    /// of `[N, C]` is layer norm of its transpose `[C, N]`, then the affine map.
    fn batch_norm_composed(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> Result<(Tensor, BatchStats)> {
        let (n, dev) = (self.shape()[0], self.device());
        let x = self.detach();
        let mean = x.mean_axis(0, false)?;
        let centered = x.sub(&mean)?;
        let var_unbiased = centered
            .mul(&centered)?
            .sum_axis(0, false)?
            .mul_scalar(1.0 / (n - 1) as f64)?;
        let ones = Tensor::ones(&[n], self.dtype()).to_device(dev)?;
        let zeros = Tensor::zeros(&[n], self.dtype()).to_device(dev)?;
        let out = self
            .transpose(0, 1)?
            .layer_norm(&ones, &zeros, eps)?
            .transpose(0, 1)?
            .mul(weight)?
            .add(bias)?;
        Ok((out, BatchStats { mean, var_unbiased }))
    }

    /// Evaluation-mode batch norm with running statistics, composed of primitives.
    pub fn batch_norm_eval(
        &self,
        running_mean: &Tensor,
        running_var: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> Result<Tensor> {
        self.sub(running_mean)?
            .mul(&running_var.add_scalar(eps)?.rsqrt()?)?
            .mul(weight)?
            .add(bias)
    }
}
