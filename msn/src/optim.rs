//! AdamW with MSN's parameter groups, and gradient clipping by total norm.
//!
//! PyTorch's `torch.optim.AdamW` (β = (0.9, 0.999), ε = 1e-8): decoupled decay
//! `p ← p·(1 − lr·wd)` then the Adam step with bias correction. Weight decay
//! applies to parameters whose name contains neither `bias` nor `bn` and that
//! are not 1-D (so `pos_embed` and `cls_token` decay); never to prototypes.

use ops::{DType, Tensor};
use rayon::prelude::*;

use crate::Result;

/// What the optimizer and the clipping need to know about one parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    pub decay: bool,
    /// Counted in the clipped norm (encoder and head; not the prototypes).
    pub clipped: bool,
}

impl ParamGroup {
    /// MSN's rule for a parameter of the encoder or head.
    pub fn for_network(name: &str, shape: &[usize]) -> Self {
        ParamGroup {
            decay: !(name.contains("bias") || name.contains("bn") || shape.len() <= 1),
            clipped: true,
        }
    }

    pub fn prototypes() -> Self {
        ParamGroup {
            decay: false,
            clipped: false,
        }
    }
}

pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub groups: Vec<ParamGroup>,
    pub first_moments: Vec<Tensor>,
    pub second_moments: Vec<Tensor>,
    /// Updates taken so far.
    pub steps: u64,
}

impl AdamW {
    pub fn new(params: &[(Tensor, ParamGroup)]) -> Self {
        let zeros = |t: &Tensor| Tensor::zeros(t.shape(), DType::F32);
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            groups: params.iter().map(|(_, g)| g.clone()).collect(),
            first_moments: params.iter().map(|(t, _)| zeros(t)).collect(),
            second_moments: params.iter().map(|(t, _)| zeros(t)).collect(),
            steps: 0,
        }
    }

    /// One update of `param` (index `i`) with gradient `grad`.
    pub fn update(
        &mut self,
        i: usize,
        param: &mut Tensor,
        grad: &Tensor,
        lr: f64,
        wd: f64,
    ) -> Result<()> {
        let t = (self.steps + 1) as f64;
        let (b1, b2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32);
        let step_size = (lr / (1.0 - self.beta1.powf(t))) as f32;
        let correction2 = (1.0 - self.beta2.powf(t)).sqrt() as f32;
        let decay = if self.groups[i].decay {
            (1.0 - lr * wd) as f32
        } else {
            1.0
        };
        if param.is_on_gpu() {
            // The same update written with ops, which run where the tensors live.
            let (m, v) = (&self.first_moments[i], &self.second_moments[i]);
            let m = m
                .mul_scalar(self.beta1)?
                .add(&grad.mul_scalar(1.0 - self.beta1)?)?;
            let v = v
                .mul_scalar(self.beta2)?
                .add(&grad.mul(grad)?.mul_scalar(1.0 - self.beta2)?)?;
            let denominator = v
                .sqrt()?
                .mul_scalar(1.0 / correction2 as f64)?
                .add_scalar(self.eps)?;
            let update = m.div(&denominator)?.mul_scalar(step_size as f64)?;
            *param = param.detach().mul_scalar(decay as f64)?.sub(&update)?;
            self.first_moments[i] = m;
            self.second_moments[i] = v;
            return Ok(());
        }
        let g = grad.data::<f32>()?;
        // One pass over the four arrays (three passes read g three times
        // and the moments twice), on the threads in chunks: the optimizer
        // waits on memory, not on its arithmetic.
        let update = |p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]| {
            for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p = *p * decay - step_size * *m / (v.sqrt() / correction2 + eps);
            }
        };
        let (m, v) = (&mut self.first_moments[i], &mut self.second_moments[i]);
        in_place_3(param, m, v, |p, m, v| {
            if p.len() <= CHUNK {
                return update(p, m, v, g);
            }
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| update(p, m, v, g));
        })
    }

    /// Marks the end of one optimizer step (all parameters updated).
    pub fn finish_step(&mut self) {
        self.steps += 1;
    }
}

/// Elements per task of the optimizer's passes over a tensor, and per
/// partial sum of [`squared_norm`]; a tensor this small is one task on the
/// calling thread (a hand-off to the pool costs more).
pub(crate) const CHUNK: usize = 1 << 15;

/// `f(a, b, c)` on the f32 elements of three tensors at once.
fn in_place_3(
    a: &mut Tensor,
    b: &mut Tensor,
    c: &mut Tensor,
    mut f: impl FnMut(&mut [f32], &mut [f32], &mut [f32]),
) -> Result<()> {
    let (mut b_status, mut c_status) = (Ok(()), Ok(()));
    a.map_in_place::<f32>(|a| {
        b_status = b.map_in_place::<f32>(|b| c_status = c.map_in_place::<f32>(|c| f(a, b, c)));
    })?;
    Ok(b_status.and(c_status)?)
}

/// The total L2 norm of the gradients in clipped groups; when it exceeds
/// `max_norm`, those gradients are scaled by `max_norm / (norm + 1e-6)`
/// (PyTorch's `clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_gradients(grads: &mut [Tensor], groups: &[ParamGroup], max_norm: f64) -> Result<f64> {
    let norm = grads
        .iter()
        .zip(groups)
        .filter(|(_, g)| g.clipped)
        .map(|(t, _)| squared_norm(t))
        .sum::<Result<f64>>()?
        .sqrt();
    if norm > max_norm {
        let scale = (max_norm / (norm + 1e-6)) as f32;
        for (t, _) in grads.iter_mut().zip(groups).filter(|(_, g)| g.clipped) {
            if t.is_on_gpu() {
                *t = t.mul_scalar(scale as f64)?;
                continue;
            }
            t.map_in_place::<f32>(|v| {
                ops::cpu::for_each_row(v, CHUNK, |_, v| v.iter_mut().for_each(|x| *x *= scale))
            })?;
        }
    }
    Ok(norm)
}

/// `Σ x²` of a tensor, reduced where it lives (only the scalar comes back).
/// On the CPU, in f64: each [`CHUNK`] of elements in eight interleaved
/// partial sums, the chunks' sums added in order, so the result depends on
/// the length, not on the threads (one running sum over a few million
/// gradients was a chain of dependent adds: milliseconds a step).
pub fn squared_norm(t: &Tensor) -> Result<f64> {
    if t.is_on_gpu() {
        return Ok(t.mul(t)?.sum_all()?.item()?);
    }
    fn chunked<T: Copy + Into<f64> + Sync>(values: &[T]) -> f64 {
        let chunk_sum = |chunk: &[T]| {
            let mut lanes = [0.0f64; 8];
            let eights = chunk.chunks_exact(8);
            let tail = eights.remainder();
            for eight in eights {
                for (lane, &x) in lanes.iter_mut().zip(eight) {
                    let x: f64 = x.into();
                    *lane += x * x;
                }
            }
            for (lane, &x) in lanes.iter_mut().zip(tail) {
                let x: f64 = x.into();
                *lane += x * x;
            }
            ops::cpu::combine_lanes(lanes)
        };
        if values.len() <= CHUNK {
            return chunk_sum(values);
        }
        let sums: Vec<f64> = values.par_chunks(CHUNK).map(chunk_sum).collect();
        sums.iter().sum()
    }
    Ok(match t.dtype() {
        DType::F32 => chunked(t.data::<f32>()?),
        DType::F64 => chunked(t.data::<f64>()?),
    })
}
