//! One MSN training step (`msn-spec.md` §10) and the state that persists
//! between steps: anchor and target networks, prototypes, optimizer.

use std::time::Instant;

use ops::{BatchStats, DType, Device, Precision, Tensor, TensorTape};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use vit::VisionTransformer;

use crate::config::PretrainConfig;
use crate::dist::Group;
use crate::head::ProjectionHead;
use crate::loss::{init_prototypes, msn_loss_in, LossTerms};
use crate::model::MsnNetwork;
use crate::optim::{clip_gradients, AdamW, ParamGroup};
use crate::views::Batch;
use crate::{Error, Result};

/// What one step reports (one line of `metrics.jsonl`).
#[derive(Clone, Debug, Serialize)]
pub struct StepMetrics {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub ce: f64,
    pub memax: f64,
    pub lr: f64,
    pub wd: f64,
    pub momentum: f64,
    pub grad_norm: f64,
    pub protos_used: usize,
    pub max_target_prob: f64,
    pub images_per_s: f64,
    pub elapsed_s: f64,
    /// Seconds of training so far, without the online monitor's measurements.
    pub train_s: f64,
    /// The online monitor's measurement of the target encoder after this
    /// step (`--eval-every`), when one was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<crate::eval::MonitorReport>,
    /// Images of this step's batch that did not decode and were replaced
    /// by others of the batch (`--skip-bad-images`).
    pub skipped_images: usize,
    /// Where the step's time went, in seconds.
    pub timing: StepTiming,
    /// What this rank's exchanges with the other ranks cost in this step
    /// (data-parallel runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchanges: Option<crate::dist::Traffic>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StepTiming {
    /// Waiting for the loader (0 when it kept ahead).
    pub data_wait: f64,
    /// Preparing the batch on the loader's thread, overlapped with training.
    pub data_prep: f64,
    pub anchor_forward: f64,
    pub target_forward: f64,
    pub loss: f64,
    pub backward: f64,
    /// Averaging the gradients over ranks (0 in a run of one process).
    pub communicate: f64,
    pub optimizer: f64,
}

/// The result of [`Trainer::forward_backward`]: outputs, loss terms and gradients.
pub struct Pass {
    /// Anchor head outputs `[V·B, d]`, view-major.
    pub anchor_out: Tensor,
    /// Target head outputs `[B, d]`.
    pub target_out: Tensor,
    pub terms: LossTerms,
    /// Gradients in optimizer order: the anchor network's parameters, then the prototypes.
    pub grads: Vec<Tensor>,
    anchor_stats: Vec<[BatchStats; 2]>,
    target_stats: [BatchStats; 2],
    timing: StepTiming,
    images: usize,
    started: Instant,
    traffic_at_start: crate::dist::Traffic,
}

/// The test-only op behind [`Trainer::plant_nan_at`]: `x` with its first
/// element replaced by NaN, gradient passed through; or `x` unchanged, and
/// the gradient's first element replaced by NaN.
fn plant_nan(x: &Tensor, in_gradient: bool) -> Result<Tensor> {
    let with_nan = |t: &Tensor| {
        let mut values = t.to_vec_f32();
        values[0] = f32::NAN;
        Tensor::from_vec(values, t.shape())?.to_device(t.device())
    };
    let output = if in_gradient {
        x.detach()
    } else {
        with_nan(x)?
    };
    Ok(Tensor::custom_op("planted_nan", &[x], output, move |g| {
        Ok(vec![Some(if in_gradient {
            with_nan(g)?
        } else {
            g.clone()
        })])
    })?)
}

pub struct Trainer {
    pub config: PretrainConfig,
    pub anchor: MsnNetwork,
    pub target: MsnNetwork,
    pub prototypes: Tensor,
    pub optimizer: AdamW,
    /// Updates taken so far.
    pub step: u64,
    /// The precision of the matrix products of the forward and backward
    /// passes on a GPU (see [`ops::autocast`]); weights and optimizer state
    /// are f32 whatever it is.
    precision: Precision,
    /// Fault injection for tests: at this step (counted from 1), the op
    /// `planted_nan` puts a NaN into the anchor's head output, or (with
    /// `true`) into the gradient it passes back.
    #[doc(hidden)]
    pub plant_nan_at: Option<(u64, bool)>,
    /// The ranks this trainer trains with (one process unless [`Trainer::join`]ed).
    group: Group,
}

impl Trainer {
    /// A fresh run: networks initialised from the seed, the target a copy of the anchor.
    pub fn new(config: PretrainConfig) -> Result<Self> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let encoder = VisionTransformer::new(config.encoder.clone(), &mut rng)?;
        let head = ProjectionHead::new(
            &mut rng,
            config.encoder.width,
            config.head_hidden,
            config.head_output,
        );
        let anchor = MsnNetwork { encoder, head };
        let prototypes = init_prototypes(&mut rng, config.prototypes, config.head_output);
        let optimizer = AdamW::new(&Self::param_groups(&anchor, &prototypes));
        Ok(Trainer {
            target: anchor.clone(),
            anchor,
            prototypes,
            optimizer,
            config,
            step: 0,
            precision: Precision::F32,
            plant_nan_at: None,
            group: Group::single(),
        })
    }

    /// Trains data-parallel with `group`'s ranks from now on: each step
    /// takes this rank's share of the global batch of `batch_size` images,
    /// and every rank starts from rank 0's state (networks, prototypes,
    /// optimizer, step), broadcast.
    pub fn join(&mut self, group: Group) -> Result<()> {
        let ranks = group.size();
        if !self.config.batch_size.is_multiple_of(ranks) || self.config.batch_size / ranks < 2 {
            return Err(Error::Config(format!(
                "batch_size {} does not split into {ranks} ranks of at least 2 images each; choose a multiple of {ranks} (batch_size is the global batch)",
                self.config.batch_size
            )));
        }
        let mut counters = [self.step, self.optimizer.steps];
        group.broadcast_u64(&mut counters, "the step counters");
        [self.step, self.optimizer.steps] = counters;
        let mut state: Vec<Tensor> = Vec::new();
        let mut take = |_: String, t: &mut Tensor| state.push(t.clone());
        self.anchor.visit_all(&mut take);
        self.target.visit_all(&mut take);
        state.push(self.prototypes.clone());
        state.extend(self.optimizer.first_moments.iter().cloned());
        state.extend(self.optimizer.second_moments.iter().cloned());
        group.broadcast_tensors(&mut state, "rank 0's training state")?;
        let mut state = state.into_iter();
        let mut restore = |_: String, t: &mut Tensor| *t = state.next().expect("as many as taken");
        self.anchor.visit_all(&mut restore);
        self.target.visit_all(&mut restore);
        self.prototypes = state.next().expect("the prototypes");
        for m in (self.optimizer.first_moments.iter_mut())
            .chain(self.optimizer.second_moments.iter_mut())
        {
            *m = state.next().expect("a moment");
        }
        self.group = group;
        Ok(())
    }

    /// The ranks this trainer trains with.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Every trained tensor in optimizer order (anchor network, then prototypes) with its group.
    pub fn param_groups(anchor: &MsnNetwork, prototypes: &Tensor) -> Vec<(Tensor, ParamGroup)> {
        let mut out: Vec<(Tensor, ParamGroup)> = anchor
            .parameters()
            .into_iter()
            .map(|(name, t)| {
                let g = ParamGroup::for_network(&name, t.shape());
                (t, g)
            })
            .collect();
        out.push((prototypes.clone(), ParamGroup::prototypes()));
        out
    }

    /// Where the networks live.
    pub fn device(&self) -> Device {
        self.prototypes.device()
    }

    /// Moves the networks, prototypes and optimizer state to `device`. On the
    /// CPU the matrix products are f32 again.
    pub fn move_to(&mut self, device: Device) -> Result<()> {
        if !device.is_gpu() {
            self.precision = Precision::F32;
        }
        let mut failure = None;
        let mut mover = |_: String, t: &mut Tensor| match t.to_device(device) {
            Ok(moved) => *t = moved,
            Err(e) => {
                failure.get_or_insert(e);
            }
        };
        self.anchor.visit_all(&mut mover);
        self.target.visit_all(&mut mover);
        if let Some(e) = failure {
            return Err(e.into());
        }
        self.prototypes = self.prototypes.to_device(device)?;
        for m in self
            .optimizer
            .first_moments
            .iter_mut()
            .chain(self.optimizer.second_moments.iter_mut())
        {
            *m = m.to_device(device)?;
        }
        Ok(())
    }

    /// The precision of the matrix products on the device.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Sets the precision of the matrix products: bf16 needs the networks on a
    /// GPU, since the CPU kernels compute in f32 only.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if precision == Precision::Bf16 && !self.device().is_gpu() {
            return Err(Error::Config(format!(
                "--precision bf16 needs a GPU (--device wgpu or cuda); the networks are on {}, where matrix products are f32",
                self.device()
            )));
        }
        self.precision = precision;
        Ok(())
    }

    pub fn steps_per_epoch(&self, dataset_len: usize) -> u64 {
        (dataset_len / self.config.batch_size).max(1) as u64
    }

    /// One update from one batch: [`Trainer::forward_backward`], then [`Trainer::apply`].
    pub fn train_step(&mut self, batch: &Batch, data_wait: f64) -> Result<StepMetrics> {
        // Steps are counted from 1, as in metrics.jsonl.
        let step = self.step + 1;
        let pass = self
            .forward_backward(batch, data_wait)
            .map_err(|e| match e {
                Error::NonFiniteLoss { .. } => e,
                other => Error::AtStep {
                    step,
                    error: Box::new(other),
                },
            })?;
        self.apply(pass)
    }

    /// The forward passes, the loss and its gradients, without changing any state.
    pub fn forward_backward(&self, batch: &Batch, data_wait: f64) -> Result<Pass> {
        let start = Instant::now();
        let traffic_at_start = self.group.traffic();
        let _precision = ops::autocast(self.precision);
        let mut timing = StepTiming {
            data_wait,
            data_prep: batch.prep_seconds,
            ..Default::default()
        };
        let tape = TensorTape::new();
        let mut anchor = self.anchor.clone();
        let mut watched = Vec::new();
        anchor.visit(&mut |_, p| {
            *p = tape.watch(p);
            watched.push(p.clone());
        });
        let prototypes = tape.watch(&self.prototypes);
        watched.push(prototypes.clone());

        let mut clock = Instant::now();
        let mut lap = |slot: &mut f64| {
            *slot = clock.elapsed().as_secs_f64();
            clock = Instant::now();
        };
        let device = self.device();
        let on_device = |t: &Tensor| t.to_device(device);
        // One head call per resolution group, so that batch norm sees each group alone.
        let group = &self.group;
        let (masked, masked_stats) =
            anchor.forward_in(&on_device(&batch.anchor)?, Some(&batch.keep), group)?;
        let mut outputs = vec![masked];
        let mut anchor_stats = vec![masked_stats];
        if let Some(focal) = &batch.focal {
            let (z, stats) = anchor.forward_in(&on_device(focal)?, None, group)?;
            outputs.push(z);
            anchor_stats.push(stats);
        }
        let mut anchor_out = Tensor::concat(&outputs.iter().collect::<Vec<_>>(), 0)?;
        if let Some((step, in_gradient)) = self.plant_nan_at {
            if step == self.step + 1 {
                anchor_out = plant_nan(&anchor_out, in_gradient)?;
            }
        }
        lap(&mut timing.anchor_forward);
        let (target_out, target_stats) =
            self.target
                .forward_in(&on_device(&batch.target)?, None, group)?;
        lap(&mut timing.target_forward);
        let terms = msn_loss_in(
            &anchor_out,
            &target_out,
            &prototypes,
            &self.config.loss,
            group,
        )?;
        // The global batch's loss, the same on every rank: all stop together.
        let loss = terms.value;
        if !loss.is_finite() {
            return Err(Error::NonFiniteLoss {
                step: self.step + 1,
                value: loss,
            });
        }
        lap(&mut timing.loss);
        let grads = tape.backward(&terms.total)?;
        let grads: Vec<Tensor> =
            watched
                .iter()
                .map(|w| {
                    grads.get(w).cloned().map(Ok).unwrap_or_else(|| {
                        Tensor::zeros(w.shape(), DType::F32).to_device(w.device())
                    })
                })
                .collect::<ops::Result<_>>()?;
        drop(tape);
        lap(&mut timing.backward);
        let mut grads = grads;
        group.average_gradients(&mut grads)?;
        lap(&mut timing.communicate);
        Ok(Pass {
            anchor_out: anchor_out.detach(),
            target_out,
            terms,
            grads,
            anchor_stats,
            target_stats,
            timing,
            images: batch.labels.len() * self.group.size(),
            started: start,
            traffic_at_start,
        })
    }

    /// The error for a step whose loss is finite but a gradient is not,
    /// naming the first such parameter in optimizer order.
    fn non_finite_gradient(&self, grads: &[Tensor], loss: f64) -> Error {
        let mut names: Vec<String> = (self.anchor.parameters().into_iter())
            .map(|(name, _)| format!("anchor {name}"))
            .collect();
        names.push("prototypes".to_string());
        let first = grads
            .iter()
            .position(|g| g.to_vec_f64().iter().any(|v| !v.is_finite()));
        Error::NonFiniteGradient {
            step: self.step + 1,
            loss,
            parameter: first
                .and_then(|i| names.get(i).cloned())
                .unwrap_or_else(|| "a parameter".to_string()),
        }
    }

    /// Clips the gradients, takes the AdamW step, updates the EMA target and the
    /// running statistics, and advances the step.
    pub fn apply(&mut self, pass: Pass) -> Result<StepMetrics> {
        let Pass {
            terms,
            mut grads,
            anchor_stats,
            target_stats,
            mut timing,
            images,
            started,
            traffic_at_start,
            ..
        } = pass;
        let clock = Instant::now();
        let schedules = self.config.schedules();
        let (lr, wd, momentum) = (
            schedules.lr(self.step),
            schedules.wd(self.step),
            schedules.momentum(self.step),
        );
        let grad_norm = clip_gradients(&mut grads, &self.optimizer.groups, self.config.clip)?;
        // The prototypes are not clipped, so their gradient is checked alone.
        let prototypes_grad = grads.last().expect("the prototypes' gradient");
        if !grad_norm.is_finite() || !crate::optim::squared_norm(prototypes_grad)?.is_finite() {
            return Err(self.non_finite_gradient(&grads, terms.value));
        }
        let mut index = 0;
        let optimizer = &mut self.optimizer;
        let mut failure = None;
        self.anchor.visit(&mut |_, p| {
            if let Err(e) = optimizer.update(index, p, &grads[index], lr, wd) {
                failure.get_or_insert(e);
            }
            index += 1;
        });
        optimizer.update(index, &mut self.prototypes, &grads[index], lr, wd)?;
        optimizer.finish_step();
        if let Some(e) = failure {
            return Err(e);
        }
        self.update_target(momentum)?;
        for stats in &anchor_stats {
            self.anchor.head.update_running(stats)?;
        }
        self.target.head.update_running(&target_stats)?;
        timing.optimizer = clock.elapsed().as_secs_f64();

        self.step += 1;
        let elapsed = started.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step: self.step,
            epoch: 0,
            loss: terms.value,
            ce: terms.ce,
            memax: terms.memax,
            lr,
            wd,
            momentum,
            grad_norm,
            protos_used: terms.protos_used,
            max_target_prob: terms.max_target_prob,
            images_per_s: images as f64 / (elapsed + timing.data_wait).max(1e-9),
            elapsed_s: 0.0,
            train_s: 0.0,
            monitor: None,
            skipped_images: 0,
            timing,
            exchanges: (self.group.size() > 1).then(|| self.group.traffic() - traffic_at_start),
        })
    }

    /// `θ_target ← m·θ_target + (1 − m)·θ_anchor` over the encoder and head.
    fn update_target(&mut self, momentum: f64) -> Result<()> {
        let anchor: Vec<Tensor> = self
            .anchor
            .parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let (m, mut index, mut failure) = (momentum as f32, 0, None);
        self.target.visit(&mut |_, t| {
            if t.is_on_gpu() {
                let moved = t
                    .mul_scalar(momentum)
                    .and_then(|x| x.add(&anchor[index].mul_scalar(1.0 - momentum)?));
                match moved {
                    Ok(x) => *t = x,
                    Err(e) => {
                        failure.get_or_insert(e.into());
                    }
                }
                index += 1;
                return;
            }
            let result = anchor[index].data::<f32>().and_then(|source| {
                // In chunks on the threads when the tensor is large.
                let chunk = crate::optim::CHUNK;
                t.map_in_place::<f32>(|v| {
                    ops::cpu::for_each_row(v, chunk, |c, v| {
                        v.iter_mut()
                            .zip(&source[c * chunk..])
                            .for_each(|(v, &a)| *v = m * *v + (1.0 - m) * a)
                    })
                })
            });
            if let Err(e) = result {
                failure.get_or_insert(e.into());
            }
            index += 1;
        });
        failure.map_or(Ok(()), Err)
    }
}
