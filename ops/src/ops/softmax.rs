//! `softmax` and `log_softmax` along the last axis, each one fused row pass.
//!
//! Shapes: `[.., n]` → `[.., n]`. PyTorch: `x.softmax(-1)`, `x.log_softmax(-1)`.
//! Both subtract the row maximum first, so no exponential overflows. Each
//! saves only its output. Backward: softmax `dx = y·(g − Σ g·y)`; log-softmax
//! `dx = g − eʸ·Σ g`.

use std::mem::MaybeUninit;

use crate::cpu::widest_simd;
use crate::error::shape_err;
use crate::{with_dtype, Element, Result, Tensor};

widest_simd!(
    /// Writes `softmax(row)` (or `log_softmax` when `log`) into `out`, at
    /// the widest vectors this CPU has: called out of line from a loop, it
    /// ran at the baseline's four lanes whatever its caller was compiled for.
    pub(crate) fn softmax_row<T>(x: &[T], out: &mut [MaybeUninit<T>], log: bool) => softmax_row_at_any_width
);

/// [`softmax_row`]'s body, compiled at its caller's width.
#[inline(always)]
pub(crate) fn softmax_row_at_any_width<T: Element>(x: &[T], out: &mut [MaybeUninit<T>], log: bool) {
    assert_eq!(
        x.len(),
        out.len(),
        "a softmax row writes its whole output row"
    );
    // The maximum in eight lanes, which vectorise (a running maximum is a
    // chain of dependent steps); it is exact in any order.
    let mut lanes = [T::neg_infinity(); 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    let max = lanes
        .into_iter()
        .chain(tail.iter().copied())
        .fold(T::neg_infinity(), T::max);
    // Exponentials first, then their sum: the first loop has no carried
    // dependency, so it vectorises.
    for (o, &v) in out.iter_mut().zip(x) {
        o.write((v - max).fast_exp());
    }
    // SAFETY: the loop above wrote every element (the lengths are equal).
    let out = unsafe { &mut *(out as *mut [MaybeUninit<T>] as *mut [T]) };
    // In eight lanes too: a running sum of a 50-key row was a chain of 50
    // dependent adds, most of the row's time once the rest ran 16 wide.
    let sum = crate::cpu::lane_sum(out, |v| v);
    if log {
        let log_sum = sum.ln() + max;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v - log_sum;
        }
    } else {
        let inv = sum.recip();
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

fn row_len(op: &'static str, t: &Tensor) -> Result<usize> {
    match t.shape().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => Err(shape_err!(
            op,
            "needs a non-empty last axis, got {:?}",
            t.shape()
        )),
    }
}

fn forward(t: &Tensor, n: usize, log: bool) -> Result<Tensor> {
    if t.is_on_gpu() {
        return crate::gpu::softmax(t, log);
    }
    with_dtype!(t.dtype(), T => {
        let x = t.data::<T>()?;
        // SAFETY: `softmax_row` writes each whole row (n > 0 was checked).
        let out = unsafe { crate::cpu::new_rows(x.len(), n, |r, row| softmax_row(&x[r * n..(r + 1) * n], row, log)) };
        Tensor::from_vec(out, t.shape())
    })
}

impl Tensor {
    pub fn softmax(&self) -> Result<Tensor> {
        let n = row_len("softmax", self)?;
        let out = forward(self, n, false)?;
        let y = out.clone();
        crate::grad::record("softmax", &[self], out, move |g| {
            if g.is_on_gpu() {
                return Ok(vec![Some(crate::gpu::softmax_backward(g, &y, false)?)]);
            }
            let dx = with_dtype!(g.dtype(), T => {
                let (gv, yv) = (g.data::<T>()?, y.data::<T>()?);
                let mut dx = crate::cpu::zeroed::<T>(gv.len());
                crate::cpu::for_each_row(&mut dx, n, |r, row| {
                    let (gr, yr) = (&gv[r * n..(r + 1) * n], &yv[r * n..(r + 1) * n]);
                    let dot: T = gr.iter().zip(yr).map(|(&a, &b)| a * b).sum();
                    for ((d, &gi), &yi) in row.iter_mut().zip(gr).zip(yr) {
                        *d = yi * (gi - dot);
                    }
                });
                Tensor::from_vec(dx, g.shape())?
            });
            Ok(vec![Some(dx)])
        })
    }

    pub fn log_softmax(&self) -> Result<Tensor> {
        let n = row_len("log_softmax", self)?;
        let out = forward(self, n, true)?;
        let y = out.clone();
        crate::grad::record("log_softmax", &[self], out, move |g| {
            if g.is_on_gpu() {
                return Ok(vec![Some(crate::gpu::softmax_backward(g, &y, true)?)]);
            }
            let dx = with_dtype!(g.dtype(), T => {
                let (gv, yv) = (g.data::<T>()?, y.data::<T>()?);
                let mut dx = crate::cpu::zeroed::<T>(gv.len());
                crate::cpu::for_each_row(&mut dx, n, |r, row| {
                    let (gr, yr) = (&gv[r * n..(r + 1) * n], &yv[r * n..(r + 1) * n]);
                    let total: T = gr.iter().copied().sum();
                    for ((d, &gi), &yi) in row.iter_mut().zip(gr).zip(yr) {
                        *d = gi - yi.exp() * total;
                    }
                });
                Tensor::from_vec(dx, g.shape())?
            });
            Ok(vec![Some(dx)])
        })
    }
}
