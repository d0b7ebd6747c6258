//! `layer_norm` over the last axis, with affine weight and bias, fused.
//!
//! Shapes: `x: [.., d]`, `weight, bias: [d]` → `[.., d]`. PyTorch:
//! `F.layer_norm(x, (d,), weight, bias, eps)` (biased variance). One pass per
//! row computes mean and 1/σ and writes the output. Saves `x`, the per-row mean
//! and 1/σ, and the weight. Backward, with `x̂ = (x − μ)/σ` and `h = g·γ`:
//! `dx = (h − mean(h) − x̂·mean(h·x̂)) / σ`, `dγ = Σ_rows g·x̂`, `dβ = Σ_rows g`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::cpu::{combine_lanes, lane_sum, widest_simd};
use crate::error::shape_err;
use crate::{with_dtype, Element, Error, Result, Tensor};

/// Per-row mean and 1/σ.
#[inline(always)]
fn row_stats<T: Element>(row: &[T], eps: f64) -> (T, T) {
    let n = T::from_f64(row.len() as f64);
    let mean = lane_sum(row, |v| v) / n;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
    (mean, (var + T::from_f64(eps)).sqrt().recip())
}

/// `(Σ h, Σ h·x̂)` over a row, `h = g·γ`, in eight interleaved partial sums
/// as [`lane_sum`] does: two running sums were two chains of dependent adds
/// that cannot vectorise, and made this loop most of the backward pass.
#[inline(always)]
fn sums_of_h_and_h_xhat<T: Element>(g: &[T], w: &[T], x: &[T], mean: T, rstd: T) -> (T, T) {
    let (mut h_lanes, mut hx_lanes) = ([T::zero(); 8], [T::zero(); 8]);
    let mut add = |lane: usize, g: T, w: T, x: T| {
        let h = g * w;
        h_lanes[lane] += h;
        hx_lanes[lane] += h * (x - mean) * rstd;
    };
    let whole = g.len() / 8 * 8;
    for ((g, w), x) in g
        .chunks_exact(8)
        .zip(w.chunks_exact(8))
        .zip(x.chunks_exact(8))
    {
        for lane in 0..8 {
            add(lane, g[lane], w[lane], x[lane]);
        }
    }
    for (lane, ((&g, &w), &x)) in g[whole..]
        .iter()
        .zip(&w[whole..])
        .zip(&x[whole..])
        .enumerate()
    {
        add(lane, g, w, x);
    }
    (combine_lanes(h_lanes), combine_lanes(hx_lanes))
}

struct Saved {
    x: Tensor,
    weight: Tensor,
    mean: Vec<f64>,
    rstd: Vec<f64>,
}

/// What the backward pass reads: the saved input and statistics, the
/// output gradient, the weight.
#[derive(Clone, Copy)]
struct BackwardInputs<'a, T> {
    x: &'a [T],
    g: &'a [T],
    w: &'a [T],
    mean: &'a [f64],
    rstd: &'a [f64],
}

/// Rows `r0..` of the backward pass (as many as `dx` holds): each row's dx,
/// and the rows' sums of `g·x̂` and `g` added to `dw` and `db`.
#[inline(always)]
fn backward_rows<T: Element>(
    inputs: BackwardInputs<T>,
    r0: usize,
    dx: &mut [MaybeUninit<T>],
    dw: &mut [T],
    db: &mut [T],
) {
    let BackwardInputs { x, g, w, .. } = inputs;
    let d = w.len();
    let inv_d = T::from_f64(1.0 / d as f64);
    for (i, out) in dx.chunks_exact_mut(d).enumerate() {
        let r = r0 + i;
        let (xr, gr) = (&x[r * d..(r + 1) * d], &g[r * d..(r + 1) * d]);
        let (mean, rstd) = (T::from_f64(inputs.mean[r]), T::from_f64(inputs.rstd[r]));
        let (sum_h, sum_hx) = sums_of_h_and_h_xhat(gr, w, xr, mean, rstd);
        let (mean_h, mean_hx) = (sum_h * inv_d, sum_hx * inv_d);
        for j in 0..d {
            let centred = xr[j] - mean;
            out[j].write((gr[j] * w[j] - mean_h - centred * rstd * mean_hx) * rstd);
            dw[j] += gr[j] * centred * rstd;
            db[j] += gr[j];
        }
    }
}

// A named function through `widest_simd!`: as a closure through
// `vectorised`, a body this large was not inlined into the AVX2 copy and
// ran at SSE2 width (2.9 % of a step's samples).
widest_simd!(fn backward_rows_simd<T>(
    inputs: BackwardInputs<T>,
    r0: usize,
    dx: &mut [MaybeUninit<T>],
    dw: &mut [T],
    db: &mut [T],
) => backward_rows);

fn backward<T: Element>(s: &Saved, g: &Tensor, d: usize) -> Result<Vec<Option<Tensor>>> {
    let inputs = BackwardInputs {
        x: s.x.data::<T>()?,
        g: g.data::<T>()?,
        w: s.weight.data::<T>()?,
        mean: &s.mean,
        rstd: &s.rstd,
    };
    // One pass over each block of rows writes its rows of dx and sums its
    // share of dγ and dβ, so x and g are read once (a second pass for the
    // parameters read them again). The blocks' sums are combined in block
    // order below: the result does not depend on the threads.
    let block = 256;
    let mut dx = crate::cpu::unwritten::<T>(inputs.x.len());
    let partials: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut((block * d).max(1))
        .enumerate()
        .map(|(b, dx_block)| {
            let (mut dw, mut db) = (vec![T::zero(); d], vec![T::zero(); d]);
            backward_rows_simd(inputs, b * block, dx_block, &mut dw, &mut db);
            (dw, db)
        })
        .collect();
    // SAFETY: `backward_rows` wrote each of every block's rows' d elements.
    let dx = unsafe { crate::cpu::assume_written(dx) };
    let (mut dw, mut db) = (vec![T::zero(); d], vec![T::zero(); d]);
    for (pw, pb) in partials {
        for j in 0..d {
            dw[j] += pw[j];
            db[j] += pb[j];
        }
    }
    Ok(vec![
        Some(Tensor::from_vec(dx, s.x.shape())?),
        Some(Tensor::from_vec(dw, &[d])?),
        Some(Tensor::from_vec(db, &[d])?),
    ])
}

impl Tensor {
    pub fn layer_norm(&self, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        let d = *self
            .shape()
            .last()
            .ok_or_else(|| shape_err!(OP, "input needs at least 1 dimension"))?;
        if weight.shape() != [d] || bias.shape() != [d] {
            return Err(shape_err!(
                OP,
                "weight {:?} and bias {:?} must both be [{}] for input {:?}",
                weight.shape(),
                bias.shape(),
                d,
                self.shape()
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
            let (out, mean, rstd) = crate::gpu::layer_norm(self, weight, bias, eps)?;
            let (x, w) = (self.detach(), weight.detach());
            return crate::grad::record(OP, &[self, weight, bias], out, move |g| {
                let (dx, dw, db) = crate::gpu::layer_norm_backward(g, &x, &w, &mean, &rstd)?;
                Ok(vec![Some(dx), Some(dw), Some(db)])
            });
        }
        let rows = self.numel() / d.max(1);
        let (out, mean, rstd) = with_dtype!(self.dtype(), T => {
            let (x, w, b) = (self.data::<T>()?, weight.data::<T>()?, bias.data::<T>()?);
            // Written row by row below, never zeroed first.
            let mut out = Vec::with_capacity(x.len());
            let mut stats = vec![(0.0, 0.0); rows];
            let compute = |r: usize, row: &mut [MaybeUninit<T>]| -> (f64, f64) {
                let xr = &x[r * d..(r + 1) * d];
                let (mean, rstd) = row_stats(xr, eps);
                for j in 0..d {
                    row[j].write((xr[j] - mean) * rstd * w[j] + b[j]);
                }
                (mean.to_f64(), rstd.to_f64())
            };
            if d > 0 {
                out.spare_capacity_mut()[..x.len()].par_chunks_mut(d)
                    .zip(stats.par_iter_mut())
                    .enumerate()
                    .with_min_len(64)
                    .for_each(|(r, (row, st))| *st = crate::cpu::vectorised(|| compute(r, row)));
                // SAFETY: `compute` wrote each row's d elements, x.len() in all.
                unsafe { out.set_len(x.len()) };
            }
            let (mean, rstd): (Vec<f64>, Vec<f64>) = stats.into_iter().unzip();
            (Tensor::from_vec(out, self.shape())?, mean, rstd)
        });
        let saved = Saved {
            x: self.detach(),
            weight: weight.detach(),
            mean,
            rstd,
        };
        crate::grad::record(
            OP,
            &[self, weight, bias],
            out,
            move |g| with_dtype!(g.dtype(), T => backward::<T>(&saved, g, d)),
        )
    }
}
