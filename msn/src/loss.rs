//! The MSN objective (`msn-spec.md` §3): anchor predictions against sharpened,
//! Sinkhorn-balanced target assignments over learnable prototypes, plus the
//! mean-entropy maximisation regulariser.
//!
//! Usable outside the trainer: [`msn_loss`] takes raw anchor and target head
//! outputs and the prototype parameter. [`msn_targets`] is the no-gradient
//! target path and [`msn_loss_with_targets`] the differentiable rest, which is
//! what the gradient check exercises (the targets held fixed is exactly MSN's
//! stop-gradient).

use ops::Tensor;
use serde::{Deserialize, Serialize};

use crate::dist::Group;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// Softmax temperature τ of anchors and targets.
    pub temperature: f64,
    /// Sharpening exponent T: targets are p^(1/T), renormalised.
    pub sharpen: f64,
    /// Weight λ of the me-max term.
    pub memax_weight: f64,
    pub sinkhorn_iterations: usize,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            temperature: 0.1,
            sharpen: 0.25,
            memax_weight: 1.0,
            sinkhorn_iterations: 3,
        }
    }
}

/// The loss and what MSN logs about it.
#[derive(Clone, Debug)]
pub struct LossTerms {
    /// `ce + λ·memax`, recorded on the tape when the inputs are: this
    /// rank's share in a data-parallel run.
    pub total: Tensor,
    /// The global batch's `ce + λ·memax`, the same on every rank.
    pub value: f64,
    /// Cross-entropy between targets and anchor predictions.
    pub ce: f64,
    /// `log K − H(mean anchor prediction)` ≥ 0.
    pub memax: f64,
    /// Distinct arg-max prototypes among the targets.
    pub protos_used: usize,
    /// Mean over targets of their largest probability.
    pub max_target_prob: f64,
}

/// Sinkhorn–Knopp balancing of `q: [B, K]` (probabilities, rows summing to 1),
/// MSN's way: alternately make every prototype's total mass B/K and every
/// sample's mass 1, `iterations` times; rows sum to 1 at the end. A prototype
/// with no mass at all is left at zero instead of dividing by it.
pub fn sinkhorn(q: &[f64], b: usize, k: usize, iterations: usize) -> Vec<f64> {
    sinkhorn_in(q, b, k, iterations, &Group::single())
}

/// [`sinkhorn`] over the global batch of `group`'s ranks, each holding `b`
/// rows: the total and the prototypes' masses are sums over every rank's
/// rows (two exchanges of K values an iteration, as MSN's reference); a
/// sample's mass is its own row's.
pub fn sinkhorn_in(q: &[f64], b: usize, k: usize, iterations: usize, group: &Group) -> Vec<f64> {
    let global_rows = (b * group.size()) as f64;
    let mut q = q.to_vec();
    let mut total = [q.iter().sum::<f64>()];
    group.all_reduce_f64(&mut total, "Sinkhorn's total");
    q.iter_mut().for_each(|v| *v /= total[0]);
    for _ in 0..iterations {
        let mut per_prototype = vec![0.0; k];
        for row in q.chunks_exact(k) {
            for (s, v) in per_prototype.iter_mut().zip(row) {
                *s += v;
            }
        }
        group.all_reduce_f64(&mut per_prototype, "Sinkhorn's prototype masses");
        for row in q.chunks_exact_mut(k) {
            for (v, s) in row.iter_mut().zip(&per_prototype) {
                *v = if *s == 0.0 { 0.0 } else { *v / s / k as f64 };
            }
        }
        for row in q.chunks_exact_mut(k) {
            let s: f64 = row.iter().sum();
            row.iter_mut()
                .for_each(|v| *v = if s == 0.0 { 0.0 } else { *v / s / global_rows });
        }
    }
    q.iter_mut().for_each(|v| *v *= global_rows);
    q
}

fn check_shapes(
    anchor: &Tensor,
    target_rows: usize,
    width: usize,
    prototypes: &Tensor,
) -> Result<usize> {
    if anchor.rank() != 2
        || prototypes.rank() != 2
        || anchor.shape()[1] != width
        || prototypes.shape()[1] != width
    {
        return Err(Error::Config(format!(
            "msn_loss: anchor outputs {:?}, target width {}, prototypes {:?} must share the last dimension",
            anchor.shape(),
            width,
            prototypes.shape()
        )));
    }
    if target_rows == 0 || !anchor.shape()[0].is_multiple_of(target_rows) {
        return Err(Error::Config(format!(
            "msn_loss: {} anchor rows are not a whole number of views of {} targets",
            anchor.shape()[0],
            target_rows
        )));
    }
    Ok(anchor.shape()[0] / target_rows)
}

/// The targets `[B, K]`, computed without gradient: `softmax(ĥ·Q̂ᵀ/(τ·T))`
/// (equal to sharpening `softmax(ĥ·Q̂ᵀ/τ)` by 1/T), then Sinkhorn.
pub fn msn_targets(target: &Tensor, prototypes: &Tensor, config: &LossConfig) -> Result<Tensor> {
    msn_targets_in(target, prototypes, config, &Group::single())
}

/// [`msn_targets`] for one rank's rows, balanced over the global batch.
pub fn msn_targets_in(
    target: &Tensor,
    prototypes: &Tensor,
    config: &LossConfig,
    group: &Group,
) -> Result<Tensor> {
    let (h, q) = (
        target.detach().l2_normalize(1e-12)?,
        prototypes.detach().l2_normalize(1e-12)?,
    );
    let sharpened = h
        .matmul_nt(&q)?
        .mul_scalar(1.0 / (config.temperature * config.sharpen))?
        .softmax()?;
    let (b, k) = (sharpened.shape()[0], sharpened.shape()[1]);
    let balanced = sinkhorn_in(
        &sharpened.to_vec_f64(),
        b,
        k,
        config.sinkhorn_iterations,
        group,
    );
    Ok(Tensor::from_f64s(&balanced, &[b, k], target.dtype())?.to_device(target.device())?)
}

/// The loss from anchor outputs `[V·B, d]` (view-major), prototypes `[K, d]`
/// and fixed targets `[B, K]`, tiled over the V views.
pub fn msn_loss_with_targets(
    anchor: &Tensor,
    prototypes: &Tensor,
    targets: &Tensor,
    config: &LossConfig,
) -> Result<LossTerms> {
    msn_loss_with_targets_in(anchor, prototypes, targets, config, &Group::single())
}

/// [`msn_loss_with_targets`] for one rank's rows: me-max sees the mean
/// prediction of the global batch, and the logged terms are the global
/// batch's. The returned `total` is this rank's share, whose gradients,
/// averaged over ranks, are the global loss's.
pub fn msn_loss_with_targets_in(
    anchor: &Tensor,
    prototypes: &Tensor,
    targets: &Tensor,
    config: &LossConfig,
    group: &Group,
) -> Result<LossTerms> {
    let (b, k) = (targets.shape()[0], targets.shape()[1]);
    let views = check_shapes(anchor, b, prototypes.shape()[1], prototypes)?;
    let logits = anchor
        .l2_normalize(1e-12)?
        .matmul_nt(&prototypes.l2_normalize(1e-12)?)?
        .mul_scalar(1.0 / config.temperature)?;
    let tiled = Tensor::concat(&vec![targets; views], 0)?;
    let ce = logits.soft_cross_entropy(&tiled)?;
    let mut mean_prediction = logits.softmax()?.mean_axis(0, false)?;
    if group.size() > 1 && !local_memax_for_tests() {
        mean_prediction = group.all_reduce_tensor(
            &mean_prediction.mul_scalar(1.0 / group.size() as f64)?,
            "the me-max mean prediction",
        )?;
    }
    let memax = mean_prediction
        .entropy()?
        .neg()?
        .add_scalar((k as f64).ln())?;
    let total = ce.add(&memax.mul_scalar(config.memax_weight)?)?;

    // What is logged is the global batch's: the mean cross-entropy, the
    // distinct arg-max prototypes and the mean largest probability over
    // every rank's targets.
    let q = targets.to_vec_f64();
    let mut arg_maxes = Vec::with_capacity(b);
    let mut logged = [ce.item()?, 0.0];
    for row in q.chunks_exact(k) {
        let (arg, max) =
            row.iter().enumerate().fold(
                (0, f64::MIN),
                |best, (i, &v)| if v > best.1 { (i, v) } else { best },
            );
        arg_maxes.push(arg as u64);
        logged[1] += max;
    }
    group.all_reduce_f64(&mut logged, "the logged loss terms");
    let used: std::collections::BTreeSet<u64> = group
        .all_gather_u64(&arg_maxes, "the targets' arg-max prototypes")
        .into_iter()
        .collect();
    let ranks = group.size() as f64;
    let memax = memax.item()?;
    let value = match group.size() {
        1 => total.item()?,
        _ => logged[0] / ranks + config.memax_weight * memax,
    };
    Ok(LossTerms {
        ce: logged[0] / ranks,
        memax,
        value,
        total,
        protos_used: used.len(),
        max_target_prob: logged[1] / (b as f64 * ranks),
    })
}

/// Test-only: `MSN_TEST_LOCAL_MEMAX=1` leaves the me-max mean prediction
/// local to each rank, the mistake the distributed test must catch.
fn local_memax_for_tests() -> bool {
    static LOCAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOCAL.get_or_init(|| std::env::var_os("MSN_TEST_LOCAL_MEMAX").is_some_and(|v| v == "1"))
}

/// The whole MSN loss from raw head outputs: anchors `[V·B, d]` (view-major),
/// targets `[B, d]`, prototypes `[K, d]` (the raw parameter).
pub fn msn_loss(
    anchor: &Tensor,
    target: &Tensor,
    prototypes: &Tensor,
    config: &LossConfig,
) -> Result<LossTerms> {
    msn_loss_in(anchor, target, prototypes, config, &Group::single())
}

/// [`msn_loss`] for one rank's rows of a global batch (see
/// [`msn_loss_with_targets_in`]).
pub fn msn_loss_in(
    anchor: &Tensor,
    target: &Tensor,
    prototypes: &Tensor,
    config: &LossConfig,
    group: &Group,
) -> Result<LossTerms> {
    check_shapes(
        anchor,
        target.shape().first().copied().unwrap_or(0),
        target.shape().get(1).copied().unwrap_or(0),
        prototypes,
    )?;
    let targets = msn_targets_in(target, prototypes, config, group)?;
    msn_loss_with_targets_in(anchor, prototypes, &targets, config, group)
}

/// Prototypes initialised U(−1/16, 1/16), as MSN does.
pub fn init_prototypes(rng: &mut impl rand::Rng, count: usize, width: usize) -> Tensor {
    let values: Vec<f32> = (0..count * width)
        .map(|_| rng.gen_range(-1.0f32 / 16.0..1.0 / 16.0))
        .collect();
    Tensor::from_vec(values, &[count, width]).expect("length matches")
}
