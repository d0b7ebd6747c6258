//! `attention`: scaled dot-product attention as one fused op, forward and backward.
//!
//! Shapes: `q: [.., n, d]`, `k: [.., m, d]`, `v: [.., m, e]` → `[.., n, e]`,
//! `out = softmax(q·kᵀ·scale)·v` over the last axis. PyTorch:
//! `F.scaled_dot_product_attention(q, k, v, scale=scale)`. Each batch entry
//! (e.g. one image's head) is one rayon task running three small products and
//! a row softmax without leaving cache. Saves q, k, v and the probabilities P
//! (`[.., n, m]`). Backward, with `dO` the output gradient:
//! `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P∘(dP − rowsum(dP∘P))`,
//! `dQ = scale·dS·K`, `dK = scale·dSᵀ·Q`. The per-entry kernels read their
//! operands through strides, and `qkv_attention` runs them on the heads of a
//! packed projection in place.
//!
//! On a GPU the same rules run in the fused kernels of `gpu::attention`,
//! which save each query's log-sum-exp instead of P and recompute P from it.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::cpu::gemm::{gemm_new, gemm_write_strided, GemmElement, MatRef};
use crate::cpu::{assume_written, unwritten};
use crate::error::shape_err;
use crate::gpu::{self, AttentionDims, AttentionLayout, AttentionSaved};
use crate::ops::softmax::softmax_row;
use crate::{with_dtype, Error, Result, Tensor};

/// One batch entry's sizes: `n` queries, `m` keys, widths `d` (q, k) and `e` (v).
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub n: usize,
    pub m: usize,
    pub d: usize,
    pub e: usize,
}

/// One batch entry's operands, each read through its strides: `q [n, d]`,
/// `k [m, d]`, `v [m, e]`. Contiguous for [`Tensor::attention`]; for
/// [`Tensor::qkv_attention`] they are one head's columns of the packed input.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a, T> {
    pub q: MatRef<'a, T>,
    pub k: MatRef<'a, T>,
    pub v: MatRef<'a, T>,
}

/// The forward pass of one entry: writes the probabilities `P [n, m]` and
/// `P·V` into the `[n, e]` output whose rows lie `ldo` apart in `out`
/// (neither is read first, so neither is zeroed).
pub(crate) fn forward_entry<T: GemmElement>(
    x: Entry<T>,
    dims: Dims,
    scale: T,
    out: &mut [MaybeUninit<T>],
    ldo: usize,
    probs: &mut [MaybeUninit<T>],
) {
    let Dims { n, m, d, e } = dims;
    let mut scores = gemm_new(n, m, d, x.q, x.k.transposed(), None, false);
    crate::cpu::vectorised(|| {
        for (s_row, p_row) in scores.chunks_exact_mut(m).zip(probs.chunks_exact_mut(m)) {
            s_row.iter_mut().for_each(|s| *s *= scale);
            softmax_row(s_row, p_row, false);
        }
    });
    // SAFETY: `softmax_row` wrote every row of the n·m probabilities.
    let probs = unsafe { &*(probs as *const [MaybeUninit<T>] as *const [T]) };
    gemm_write_strided(n, e, m, MatRef::new(probs, m, false), x.v, out, ldo, false);
}

/// Which of an entry's three operands (or their gradients); the number is
/// the operand's place in a packed qkv projection.
#[derive(Clone, Copy)]
pub(crate) enum Part {
    Q = 0,
    K = 1,
    V = 2,
}

/// Where one entry's gradients go. Each is lent in turn, as the output of a
/// product with its leading dimension, so the three may share one buffer;
/// each is written whole, never read.
pub(crate) trait GradTargets<T> {
    fn lend(&mut self, part: Part) -> (&mut [MaybeUninit<T>], usize);
}

/// The backward pass of one entry, from its probabilities `p [n, m]` and the
/// output gradient `go [n, e]`: writes dQ, dK and dV into the targets.
pub(crate) fn backward_entry<T: GemmElement>(
    x: Entry<T>,
    p: &[T],
    go: MatRef<T>,
    dims: Dims,
    scale: T,
    targets: &mut impl GradTargets<T>,
) {
    let Dims { n, m, d, e } = dims;
    let p_view = MatRef::new(p, m, false);
    let (dv, ld) = targets.lend(Part::V);
    gemm_write_strided(m, e, n, p_view.transposed(), go, dv, ld, false);
    let mut ds = gemm_new(n, m, e, go, x.v.transposed(), None, false);
    crate::cpu::vectorised(|| {
        for (ds_row, p_row) in ds.chunks_exact_mut(m).zip(p.chunks_exact(m)) {
            // In eight lanes: a running sum is a chain of dependent adds.
            let dot = crate::cpu::lane_dot(ds_row, p_row);
            for (x, &pi) in ds_row.iter_mut().zip(p_row) {
                *x = pi * (*x - dot) * scale;
            }
        }
    });
    let ds_view = MatRef::new(&ds, m, false);
    let (dq, ld) = targets.lend(Part::Q);
    gemm_write_strided(n, d, m, ds_view, x.k, dq, ld, false);
    let (dk, ld) = targets.lend(Part::K);
    gemm_write_strided(m, d, n, ds_view.transposed(), x.q, dk, ld, false);
}

/// The contiguous `[.., rows, width]` operands of [`Tensor::attention`]: entry
/// `b` of each.
fn entry<'a, T: Copy>(q: &'a [T], k: &'a [T], v: &'a [T], b: usize, dims: Dims) -> Entry<'a, T> {
    let Dims { n, m, d, e } = dims;
    Entry {
        q: MatRef::new(&q[b * n * d..][..n * d], d, false),
        k: MatRef::new(&k[b * m * d..][..m * d], d, false),
        v: MatRef::new(&v[b * m * e..][..m * e], e, false),
    }
}

fn forward<T: GemmElement>(
    q: &[T],
    k: &[T],
    v: &[T],
    batch: usize,
    dims: Dims,
    scale: f64,
) -> (Vec<T>, Vec<T>) {
    let Dims { n, m, e, .. } = dims;
    let (mut out, mut probs) = (unwritten(batch * n * e), unwritten(batch * n * m));
    let scale = T::from_f64(scale);
    out.par_chunks_mut(n * e)
        .zip(probs.par_chunks_mut(n * m))
        .enumerate()
        .for_each(|(b, (o, p))| forward_entry(entry(q, k, v, b, dims), dims, scale, o, e, p));
    // SAFETY: each entry wrote its whole block of the output and of the probabilities.
    unsafe { (assume_written(out), assume_written(probs)) }
}

/// Separate contiguous gradients of q, k and v, one entry's block of each.
struct Separate<'a, T> {
    dq: &'a mut [MaybeUninit<T>],
    dk: &'a mut [MaybeUninit<T>],
    dv: &'a mut [MaybeUninit<T>],
    dims: Dims,
}

impl<T> GradTargets<T> for Separate<'_, T> {
    fn lend(&mut self, part: Part) -> (&mut [MaybeUninit<T>], usize) {
        match part {
            Part::Q => (&mut *self.dq, self.dims.d),
            Part::K => (&mut *self.dk, self.dims.d),
            Part::V => (&mut *self.dv, self.dims.e),
        }
    }
}

struct Saved {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
}

fn backward<T: GemmElement>(
    s: &Saved,
    g: &Tensor,
    batch: usize,
    dims: Dims,
    scale: f64,
) -> Result<Vec<Option<Tensor>>> {
    let Dims { n, m, d, e } = dims;
    let (q, k, v, p, go) = (
        s.q.data::<T>()?,
        s.k.data::<T>()?,
        s.v.data::<T>()?,
        s.probs.data::<T>()?,
        g.data::<T>()?,
    );
    let mut dq = unwritten(batch * n * d);
    let mut dk = unwritten(batch * m * d);
    let mut dv = unwritten(batch * m * e);
    let scale = T::from_f64(scale);
    dq.par_chunks_mut(n * d)
        .zip(dk.par_chunks_mut(m * d))
        .zip(dv.par_chunks_mut(m * e))
        .enumerate()
        .for_each(|(b, ((dq, dk), dv))| {
            let go = MatRef::new(&go[b * n * e..][..n * e], e, false);
            let mut targets = Separate { dq, dk, dv, dims };
            let x = entry(q, k, v, b, dims);
            backward_entry(x, &p[b * n * m..][..n * m], go, dims, scale, &mut targets);
        });
    // SAFETY: each entry's backward pass wrote its whole block of each.
    let (dq, dk, dv) = unsafe { (assume_written(dq), assume_written(dk), assume_written(dv)) };
    Ok(vec![
        Some(Tensor::from_vec(dq, s.q.shape())?),
        Some(Tensor::from_vec(dk, s.k.shape())?),
        Some(Tensor::from_vec(dv, s.v.shape())?),
    ])
}

/// Attention on a GPU: the fused kernels of [`gpu::attention`], saving the
/// output and each query's log-sum-exp instead of the probabilities; where
/// their shared memory exceeds the device's, the composition of recorded ops.
/// The fused kernels compute in f32 whatever the [`crate::autocast`] setting.
fn on_gpu(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: usize,
    dims: Dims,
    out_shape: &[usize],
    scale: f64,
) -> Result<Tensor> {
    let Dims { n, m, d, e } = dims;
    if !gpu::attention_fits(q, d, e) {
        return q.matmul_nt(k)?.mul_scalar(scale)?.softmax()?.matmul(v);
    }
    let launch = AttentionDims { batch, n, m, d, e };
    let layout = AttentionLayout::contiguous(d, e);
    let (out, lse) = gpu::attention(q, k, v, launch, layout, scale)?;
    let out = out.reshaped_untracked(out_shape);
    let (qs, ks, vs, os) = (q.detach(), k.detach(), v.detach(), out.detach());
    crate::grad::record("attention", &[q, k, v], out, move |g| {
        let saved = AttentionSaved {
            q: &qs,
            k: &ks,
            v: &vs,
            out: &os,
            lse: &lse,
        };
        let (dq, dk, dv) = gpu::attention_backward(&saved, g, launch, scale)?;
        Ok(vec![
            Some(dq.reshaped_untracked(qs.shape())),
            Some(dk.reshaped_untracked(ks.shape())),
            Some(dv.reshaped_untracked(vs.shape())),
        ])
    })
}

impl Tensor {
    /// Fused `softmax(q·kᵀ·scale)·v`; `self` is q.
    pub fn attention(&self, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
        const OP: &str = "attention";
        let (q, r) = (self, self.rank());
        for t in [k, v] {
            if t.dtype() != q.dtype() {
                return Err(Error::DType {
                    op: OP,
                    lhs: q.dtype(),
                    rhs: t.dtype(),
                });
            }
        }
        let lead = &q.shape()[..r.saturating_sub(2)];
        let ok = r >= 2
            && k.rank() == r
            && v.rank() == r
            && &k.shape()[..r - 2] == lead
            && &v.shape()[..r - 2] == lead
            && k.shape()[r - 1] == q.shape()[r - 1]
            && v.shape()[r - 2] == k.shape()[r - 2]
            && q.shape()[r - 2..]
                .iter()
                .chain(&v.shape()[r - 2..])
                .all(|&s| s > 0);
        if !ok {
            return Err(shape_err!(OP, "expects q [.., n, d], k [.., m, d], v [.., m, e] with equal leading axes and n, m, d, e ≥ 1, got {:?}, {:?}, {:?}", q.shape(), k.shape(), v.shape()));
        }
        let dims = Dims {
            n: q.shape()[r - 2],
            m: k.shape()[r - 2],
            d: q.shape()[r - 1],
            e: v.shape()[r - 1],
        };
        let batch: usize = lead.iter().product();
        let mut out_shape = lead.to_vec();
        out_shape.extend([dims.n, dims.e]);
        if q.is_on_gpu() {
            return on_gpu(q, k, v, batch, dims, &out_shape, scale);
        }
        let mut probs_shape = lead.to_vec();
        probs_shape.extend([dims.n, dims.m]);
        let (out, probs) = with_dtype!(q.dtype(), T => {
            let (o, p) = forward(q.data::<T>()?, k.data::<T>()?, v.data::<T>()?, batch, dims, scale);
            (Tensor::from_vec(o, &out_shape)?, Tensor::from_vec(p, &probs_shape)?)
        });
        let saved = Saved {
            q: q.detach(),
            k: k.detach(),
            v: v.detach(),
            probs,
        };
        crate::grad::record(
            OP,
            &[q, k, v],
            out,
            move |g| with_dtype!(g.dtype(), T => backward::<T>(&saved, g, batch, dims, scale)),
        )
    }
}
