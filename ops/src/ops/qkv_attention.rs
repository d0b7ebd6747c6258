//! `qkv_attention`: multi-head self-attention read straight from a packed qkv
//! projection, forward and backward.
//!
//! `qkv: [.., t, 3·h·c]` → `[.., t, h·c]`, for `h` heads of width `c`. The
//! input's last axis is `[q | k | v]`, each `[head 0 | … | head h−1]` (timm's
//! layout; FlashAttention's `flash_attn_qkvpacked_func` packs the same
//! values), and the output's last axis holds the heads side by side, ready
//! for the output projection. PyTorch:
//!
//! ```text
//! q, k, v = qkv.reshape(B, T, 3, H, C).permute(2, 0, 3, 1, 4)
//! F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2).reshape(B, T, H * C)
//! ```
//!
//! The arithmetic is [`Tensor::attention`]'s, per head, with the same
//! per-entry kernels. What this op saves is the plumbing around them: each head
//! reads its columns of `qkv` in place and writes its columns of the output
//! (the products take strides), so the head split and merge copy nothing, and
//! the backward pass writes dq, dk and dv into one packed gradient rather than
//! into three zeroed full-size tensors for the tape to add up.
//!
//! Saves the input and the probabilities (`[.., h, t, t]`). On a GPU the fused
//! kernels of `gpu::attention` read and write the packed layouts the same way.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::cpu::gemm::{GemmElement, MatRef};
use crate::cpu::{assume_written, unwritten};
use crate::error::shape_err;
use crate::gpu::{self, AttentionDims, AttentionLayout, AttentionSaved};
use crate::ops::attention::{backward_entry, forward_entry, Dims, Entry, GradTargets, Part};
use crate::{with_dtype, Result, Tensor};

/// The packed problem: `images` entries of `tokens` rows, `heads` heads of
/// width `width`.
#[derive(Clone, Copy)]
struct Packing {
    images: usize,
    tokens: usize,
    heads: usize,
    width: usize,
}

impl Packing {
    /// The output's row: every head's width.
    fn model(&self) -> usize {
        self.heads * self.width
    }

    fn dims(&self) -> Dims {
        let (t, c) = (self.tokens, self.width);
        Dims {
            n: t,
            m: t,
            d: c,
            e: c,
        }
    }

    /// Where part `part` of head `head` starts in a row of `qkv`.
    fn column(&self, part: Part, head: usize) -> usize {
        part as usize * self.model() + head * self.width
    }

    /// Head `head` of one image's `[t, 3·h·c]` block, read in place.
    fn head<'a, T: Copy>(&self, qkv: &'a [T], head: usize) -> Entry<'a, T> {
        let columns = |part: Part| MatRef {
            data: &qkv[self.column(part, head)..],
            row_stride: 3 * self.model(),
            col_stride: 1,
        };
        Entry {
            q: columns(Part::Q),
            k: columns(Part::K),
            v: columns(Part::V),
        }
    }

    /// The slice of a `[t, row]` block that holds `width` columns from `column`.
    fn span(&self, row: usize, column: usize) -> std::ops::Range<usize> {
        column..column + (self.tokens - 1) * row + self.width
    }
}

fn forward<T: GemmElement>(qkv: &[T], p: Packing, scale: f64) -> (Vec<T>, Vec<T>) {
    let (t, h, model) = (p.tokens, p.heads, p.model());
    let mut out = unwritten(p.images * t * model);
    let mut probs = unwritten(p.images * h * t * t);
    let scale = T::from_f64(scale);
    out.par_chunks_mut(t * model)
        .zip(probs.par_chunks_mut(h * t * t))
        .zip(qkv.par_chunks(3 * t * model))
        .for_each(|((out, probs), qkv)| {
            for (head, probs) in probs.chunks_exact_mut(t * t).enumerate() {
                let out = &mut out[p.span(model, head * p.width)];
                forward_entry(p.head(qkv, head), p.dims(), scale, out, model, probs);
            }
        });
    // SAFETY: the heads of each image wrote every column of its output rows
    // and its whole block of probabilities.
    unsafe { (assume_written(out), assume_written(probs)) }
}

/// One head's gradients, each its columns of the image's packed `[t, 3·h·c]` block.
struct Packed<'a, T> {
    block: &'a mut [MaybeUninit<T>],
    packing: Packing,
    head: usize,
}

impl<T> GradTargets<T> for Packed<'_, T> {
    fn lend(&mut self, part: Part) -> (&mut [MaybeUninit<T>], usize) {
        let p = self.packing;
        let row = 3 * p.model();
        let span = p.span(row, p.column(part, self.head));
        (&mut self.block[span], row)
    }
}

fn backward<T: GemmElement>(
    qkv: &Tensor,
    probs: &Tensor,
    g: &Tensor,
    p: Packing,
    scale: f64,
) -> Result<Vec<Option<Tensor>>> {
    let (t, h, model) = (p.tokens, p.heads, p.model());
    let (x, probs, go) = (qkv.data::<T>()?, probs.data::<T>()?, g.data::<T>()?);
    let mut dqkv = unwritten(x.len());
    let scale = T::from_f64(scale);
    dqkv.par_chunks_mut(3 * t * model)
        .zip(x.par_chunks(3 * t * model))
        .zip(probs.par_chunks(h * t * t).zip(go.par_chunks(t * model)))
        .for_each(|((block, x), (probs, go))| {
            for (head, probs) in probs.chunks_exact(t * t).enumerate() {
                let go = MatRef {
                    data: &go[head * p.width..],
                    row_stride: model,
                    col_stride: 1,
                };
                let mut targets = Packed {
                    block: &mut *block,
                    packing: p,
                    head,
                };
                backward_entry(p.head(x, head), probs, go, p.dims(), scale, &mut targets);
            }
        });
    // SAFETY: each head wrote its q, k and v columns of every row: all of them.
    let dqkv = unsafe { assume_written(dqkv) };
    Ok(vec![Some(Tensor::from_vec(dqkv, qkv.shape())?)])
}

/// On a GPU: the fused attention kernels, told the packed layout.
fn on_gpu(qkv: &Tensor, p: Packing, out_shape: &[usize], scale: f64) -> Result<Tensor> {
    let Dims { n, m, d, e } = p.dims();
    if !gpu::attention_fits(qkv, d, e) {
        return composition(qkv, p, out_shape, scale);
    }
    let dims = AttentionDims {
        batch: p.images * p.heads,
        n,
        m,
        d,
        e,
    };
    let layout = AttentionLayout::packed(p.heads, p.width);
    let (out, lse) = gpu::attention(qkv, qkv, qkv, dims, layout, scale)?;
    let out = out.reshaped_untracked(out_shape);
    let (xs, os) = (qkv.detach(), out.detach());
    crate::grad::record("qkv_attention", &[qkv], out, move |g| {
        let saved = AttentionSaved {
            q: &xs,
            k: &xs,
            v: &xs,
            out: &os,
            lse: &lse,
        };
        let grads = gpu::attention_backward_packed(&saved, g, dims, layout, scale)?;
        Ok(vec![Some(grads.reshaped_untracked(xs.shape()))])
    })
}

/// The same values through recorded ops, for heads too wide for the fused kernels.
fn composition(qkv: &Tensor, p: Packing, out_shape: &[usize], scale: f64) -> Result<Tensor> {
    let (b, t, h, c) = (p.images, p.tokens, p.heads, p.width);
    let split = qkv.reshape(&[b, t, 3, h, c])?.permute(&[2, 0, 3, 1, 4])?;
    let part = |i: usize| split.narrow(0, i, 1)?.reshape(&[b, h, t, c]);
    let attended = part(0)?.attention(&part(1)?, &part(2)?, scale)?;
    attended.permute(&[0, 2, 1, 3])?.reshape(out_shape)
}

impl Tensor {
    /// Multi-head self-attention, `softmax(q·kᵀ·scale)·v` per head, from the
    /// packed projection `self: [.., t, 3·heads·c]` to `[.., t, heads·c]`.
    pub fn qkv_attention(&self, heads: usize, scale: f64) -> Result<Tensor> {
        const OP: &str = "qkv_attention";
        let r = self.rank();
        let packed = if r >= 2 { self.shape()[r - 1] } else { 0 };
        let tokens = if r >= 2 { self.shape()[r - 2] } else { 0 };
        if heads == 0 || tokens == 0 || packed == 0 || packed % (3 * heads) != 0 {
            return Err(shape_err!(
                OP,
                "expects [.., t, 3·heads·c] with t, c ≥ 1 for {heads} heads, got {:?}",
                self.shape()
            ));
        }
        let p = Packing {
            images: self.shape()[..r - 2].iter().product(),
            tokens,
            heads,
            width: packed / (3 * heads),
        };
        let mut out_shape = self.shape().to_vec();
        out_shape[r - 1] = p.model();
        if self.is_on_gpu() {
            return on_gpu(self, p, &out_shape, scale);
        }
        let mut probs_shape = self.shape()[..r - 2].to_vec();
        probs_shape.extend([heads, tokens, tokens]);
        let (out, probs) = with_dtype!(self.dtype(), T => {
            let (o, pr) = forward(self.data::<T>()?, p, scale);
            (Tensor::from_vec(o, &out_shape)?, Tensor::from_vec(pr, &probs_shape)?)
        });
        let x = self.detach();
        crate::grad::record(
            OP,
            &[self],
            out,
            move |g| with_dtype!(g.dtype(), T => backward::<T>(&x, &probs, g, p, scale)),
        )
    }
}
