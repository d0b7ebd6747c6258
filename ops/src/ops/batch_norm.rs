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

use rayon::prelude::*;

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
    let db = column_sums(n, c, |r, cols, sums| {
        for (s, &g) in sums.iter_mut().zip(&gv[r * c..][cols]) {
            *s += g;
        }
    });
    let dw = column_sums(n, c, |r, cols, sums| {
        let (x, g) = (&x[r * c..][cols.clone()], &gv[r * c..][cols.clone()]);
        let (mean, rstd) = (&mean[cols.clone()], &rstd[cols]);
        for ((((s, &g), &x), &m), &rstd) in sums.iter_mut().zip(g).zip(x).zip(mean).zip(rstd) {
            *s += g * (x - m) * rstd;
        }
    });
    // Σ h = γ·dβ and Σ h·x̂ = γ·dγ, so the column sums above serve dx too.
    let inv_n = T::from_f64(1.0 / n as f64);
    let mut dx = crate::cpu::zeroed::<T>(x.len());
    crate::cpu::for_each_row(&mut dx, c, |r, row| {
        let (x, g) = (&x[r * c..][..c], &gv[r * c..][..c]);
        let columns = mean.iter().zip(&rstd).zip(w).zip(&db).zip(&dw);
        for ((out, (&x, &g)), ((((&m, &rstd), &w), &db), &dw)) in
            row.iter_mut().zip(x.iter().zip(g)).zip(columns)
        {
            let xhat = (x - m) * rstd;
            let h = g * w;
            *out = (h - w * db * inv_n - xhat * w * dw * inv_n) * rstd;
        }
    });
    Ok(vec![
        Some(Tensor::from_vec(dx, s.x.shape())?),
        Some(Tensor::from_vec(dw, &[c])?),
        Some(Tensor::from_vec(db, &[c])?),
    ])
}

/// Columns per task of [`column_sums`]: a task's sums stay in registers and
/// its part of a row is whole cache lines.
const COLUMN_BLOCK: usize = 64;

/// Per-column sums over the `n` rows of a `[n, c]` layout: `add_row(r,
/// columns, sums)` adds row r's terms for `columns` into their `sums`. Each
/// column is summed over its rows in order, as one loop over the rows would,
/// so the bits do not depend on the threads; blocks of columns go to rayon's
/// threads (the projection head's `[320, 1024]` batches left every column's
/// statistics to one thread).
fn column_sums<T: Element>(
    n: usize,
    c: usize,
    add_row: impl Fn(usize, std::ops::Range<usize>, &mut [T]) + Sync + Send,
) -> Vec<T> {
    let mut sums = crate::cpu::zeroed::<T>(c);
    let run = |(block, sums): (usize, &mut [T])| {
        let columns = block * COLUMN_BLOCK..block * COLUMN_BLOCK + sums.len();
        crate::cpu::vectorised(|| (0..n).for_each(|r| add_row(r, columns.clone(), sums)));
    };
    if n * c >= crate::cpu::PARALLEL_MIN_ELEMENTS {
        sums.par_chunks_mut(COLUMN_BLOCK).enumerate().for_each(run);
    } else {
        sums.chunks_mut(COLUMN_BLOCK).enumerate().for_each(run);
    }
    sums
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
            let inv_n = T::from_f64(1.0 / n as f64);
            let mut mean: Vec<T> = column_sums(n, c, |r, cols, sums| {
                for (s, &v) in sums.iter_mut().zip(&x[r * c..][cols]) {
                    *s += v;
                }
            });
            mean.iter_mut().for_each(|m| *m *= inv_n);
            let mut var: Vec<T> = column_sums(n, c, |r, cols, sums| {
                for ((s, &v), &m) in sums.iter_mut().zip(&x[r * c..][cols.clone()]).zip(&mean[cols]) {
                    *s += (v - m) * (v - m);
                }
            });
            var.iter_mut().for_each(|s| *s *= inv_n);
            let rstd: Vec<T> = var.iter().map(|&v| (v + T::from_f64(eps)).sqrt().recip()).collect();
            let mut out = crate::cpu::zeroed::<T>(x.len());
            crate::cpu::for_each_row(&mut out, c, |r, row| {
                let columns = mean.iter().zip(&rstd).zip(w).zip(b);
                for ((out, &x), (((&m, &rstd), &w), &b)) in row.iter_mut().zip(&x[r * c..][..c]).zip(columns) {
                    *out = (x - m) * rstd * w + b;
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

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor, TensorTape};

    /// One thread's loops in row order, the sums [`super::column_sums`]
    /// must give to the bit however the columns are shared out.
    fn naive(x: &[f32], g: &[f32], w: &[f32], b: &[f32], n: usize) -> [Vec<f32>; 4] {
        let c = w.len();
        let inv_n = 1.0 / n as f32;
        let column_sum = |term: &dyn Fn(usize, usize) -> f32| -> Vec<f32> {
            let mut sums = vec![0.0f32; c];
            for r in 0..n {
                for (j, s) in sums.iter_mut().enumerate() {
                    *s += term(r, j);
                }
            }
            sums
        };
        let mean: Vec<f32> = column_sum(&|r, j| x[r * c + j])
            .iter()
            .map(|s| s * inv_n)
            .collect();
        let var: Vec<f32> = column_sum(&|r, j| (x[r * c + j] - mean[j]) * (x[r * c + j] - mean[j]))
            .iter()
            .map(|s| s * inv_n)
            .collect();
        let rstd: Vec<f32> = var.iter().map(|v| (v + 1e-5f32).sqrt().recip()).collect();
        let out = (0..n * c)
            .map(|i| (x[i] - mean[i % c]) * rstd[i % c] * w[i % c] + b[i % c])
            .collect();
        let db = column_sum(&|r, j| g[r * c + j]);
        let dw = column_sum(&|r, j| g[r * c + j] * (x[r * c + j] - mean[j]) * rstd[j]);
        let dx = (0..n * c)
            .map(|i| {
                let j = i % c;
                let xhat = (x[i] - mean[j]) * rstd[j];
                let h = g[i] * w[j];
                (h - w[j] * db[j] * inv_n - xhat * w[j] * dw[j] * inv_n) * rstd[j]
            })
            .collect();
        [out, dx, dw, db]
    }

    #[test]
    fn column_statistics_match_one_threads_loops_to_the_bit() {
        // 300 × 130 takes the parallel path (≥ 32,768 values) with a last
        // block of 2 columns; 5 × 7 the serial one.
        for (n, c) in [(300, 130), (5, 7)] {
            let value = |i: usize, k: usize| ((i * k % 1000) as f64) / 250.0 - 2.0;
            let x = Tensor::from_fn(&[n, c], DType::F32, |i| value(i, 7919));
            let g = Tensor::from_fn(&[n, c], DType::F32, |i| value(i, 31));
            let w = Tensor::from_fn(&[c], DType::F32, |i| 1.0 + value(i, 13) / 4.0);
            let b = Tensor::from_fn(&[c], DType::F32, |i| value(i, 17) / 4.0);
            let tape = TensorTape::new();
            let (tx, tw, tb) = (tape.watch(&x), tape.watch(&w), tape.watch(&b));
            let (out, _) = tx.batch_norm(&tw, &tb, 1e-5).unwrap();
            let loss = out.mul(&g).unwrap().sum_all().unwrap();
            let grads = tape.backward(&loss).unwrap();
            let f32s = |t: &Tensor| t.data::<f32>().unwrap().to_vec();
            let got = [
                f32s(&out),
                f32s(grads.get(&tx).unwrap()),
                f32s(grads.get(&tw).unwrap()),
                f32s(grads.get(&tb).unwrap()),
            ];
            let want = naive(&f32s(&x), &f32s(&g), &f32s(&w), &f32s(&b), n);
            for (what, (got, want)) in ["out", "dx", "dw", "db"].iter().zip(got.iter().zip(&want)) {
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(want), "{what} of [{n}, {c}]");
            }
        }
    }
}
