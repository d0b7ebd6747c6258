//! `attention`: scaled dot-product attention as one fused op, forward and backward.
//!
//! Shapes: `q: [.., n, d]`, `k: [.., m, d]`, `v: [.., m, e]` → `[.., n, e]`,
//! `out = softmax(q·kᵀ·scale)·v` over the last axis. PyTorch:
//! `F.scaled_dot_product_attention(q, k, v, scale=scale)`. Each batch entry
//! (e.g. one image's head) is one rayon task running three small products and
//! a row softmax without leaving cache. Saves q, k, v and the probabilities P
//! (`[.., n, m]`). Backward, with `dO` the output gradient:
//! `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P∘(dP − rowsum(dP∘P))`,
//! `dQ = scale·dS·K`, `dK = scale·dSᵀ·Q`.
//!
//! On a GPU the same rules run in the fused kernels of `gpu::attention`,
//! which save each query's log-sum-exp instead of P and recompute P from it.

use rayon::prelude::*;

use crate::cpu::gemm::{gemm, GemmElement, MatRef};
use crate::error::shape_err;
use crate::gpu::{self, AttentionDims, AttentionSaved};
use crate::ops::softmax::softmax_row;
use crate::{with_dtype, Error, Result, Tensor};

#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    m: usize,
    d: usize,
    e: usize,
}

fn forward<T: GemmElement>(
    q: &[T],
    k: &[T],
    v: &[T],
    batch: usize,
    dims: Dims,
    scale: f64,
) -> (Vec<T>, Vec<T>) {
    let Dims { n, m, d, e } = dims;
    let mut out = vec![T::zero(); batch * n * e];
    let mut probs = vec![T::zero(); batch * n * m];
    let scale = T::from_f64(scale);
    out.par_chunks_mut(n * e)
        .zip(probs.par_chunks_mut(n * m))
        .enumerate()
        .for_each(|(b, (o, p))| {
            let (qb, kb, vb) = (
                &q[b * n * d..][..n * d],
                &k[b * m * d..][..m * d],
                &v[b * m * e..][..m * e],
            );
            let mut scores = vec![T::zero(); n * m];
            gemm(
                n,
                m,
                d,
                MatRef::new(qb, d, false),
                MatRef::new(kb, d, true),
                &mut scores,
                false,
            );
            crate::cpu::vectorised(|| {
                for (s_row, p_row) in scores.chunks_exact_mut(m).zip(p.chunks_exact_mut(m)) {
                    s_row.iter_mut().for_each(|s| *s *= scale);
                    softmax_row(s_row, p_row, false);
                }
            });
            gemm(
                n,
                e,
                m,
                MatRef::new(p, m, false),
                MatRef::new(vb, e, false),
                o,
                false,
            );
        });
    (out, probs)
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
    let mut dq = vec![T::zero(); batch * n * d];
    let mut dk = vec![T::zero(); batch * m * d];
    let mut dv = vec![T::zero(); batch * m * e];
    let scale = T::from_f64(scale);
    dq.par_chunks_mut(n * d)
        .zip(dk.par_chunks_mut(m * d))
        .zip(dv.par_chunks_mut(m * e))
        .enumerate()
        .for_each(|(b, ((dqb, dkb), dvb))| {
            let (qb, kb, vb) = (
                &q[b * n * d..][..n * d],
                &k[b * m * d..][..m * d],
                &v[b * m * e..][..m * e],
            );
            let (pb, gb) = (&p[b * n * m..][..n * m], &go[b * n * e..][..n * e]);
            gemm(
                m,
                e,
                n,
                MatRef::new(pb, m, true),
                MatRef::new(gb, e, false),
                dvb,
                false,
            );
            let mut ds = vec![T::zero(); n * m];
            gemm(
                n,
                m,
                e,
                MatRef::new(gb, e, false),
                MatRef::new(vb, e, true),
                &mut ds,
                false,
            );
            crate::cpu::vectorised(|| {
                for (ds_row, p_row) in ds.chunks_exact_mut(m).zip(pb.chunks_exact(m)) {
                    let dot: T = ds_row.iter().zip(p_row).map(|(&a, &b)| a * b).sum();
                    for (x, &pi) in ds_row.iter_mut().zip(p_row) {
                        *x = pi * (*x - dot) * scale;
                    }
                }
            });
            gemm(
                n,
                d,
                m,
                MatRef::new(&ds, m, false),
                MatRef::new(kb, d, false),
                dqb,
                false,
            );
            gemm(
                m,
                d,
                n,
                MatRef::new(&ds, m, true),
                MatRef::new(qb, d, false),
                dkb,
                false,
            );
        });
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
    let (out, lse) = gpu::attention(q, k, v, launch, scale)?;
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
            && v.shape()[r - 2] == k.shape()[r - 2];
        if !ok {
            return Err(shape_err!(OP, "expects q [.., n, d], k [.., m, d], v [.., m, e] with equal leading axes, got {:?}, {:?}, {:?}", q.shape(), k.shape(), v.shape()));
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
