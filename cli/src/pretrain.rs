//! `msn pretrain`: a full MSN pretraining run with progress, metrics,
//! checkpoints, resumption and a loss plot.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use msn::checkpoint;
use msn::config::{PretrainConfig, PRESETS};
use msn::dist::Group;
use msn::eval::Monitor;
use msn::loader::{Loader, LoaderOptions, Share};
use msn::trainer::{StepMetrics, Trainer};
use msn::views::BatchOptions;

use crate::plot::{plot_accuracy, plot_losses};
use crate::run_folder::{last_train_seconds, read_losses, read_monitor, RunFiles};
use crate::stop::StopRequest;
use crate::world::{check_same_run, rank_fault_for_tests, stop_for_tests};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration preset: fmnist-tiny (default) or msn-vit-small-16
    /// (`msn/presets/*.toml`).
    #[arg(long)]
    preset: Option<String>,
    /// A TOML configuration file: any fields of a run (as --print-config
    /// prints them) over its `preset`'s, or --preset's; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    print_config: bool,
    /// Data: fashion-mnist[:train|:test], folder:PATH or cifar10:PATH (default: the preset's).
    #[arg(long)]
    data: Option<String>,
    /// Number of updates (default: the preset's).
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Train for this many passes over the data instead of --steps.
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder: metrics.jsonl, checkpoint, loss plot.
    #[arg(long, default_value = "runs/msn")]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Where to compute: cpu, wgpu or cuda (the GPU runtimes need a build with
    /// `--features wgpu` or `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: ops::Device,
    /// Matrix products on a GPU: f32, or bf16 (bf16 operands, f32
    /// accumulation, f32 master weights and optimizer state).
    #[arg(long, default_value = "f32")]
    precision: ops::Precision,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Fraction of the anchor view's patches dropped.
    #[arg(long)]
    patch_drop: Option<f64>,
    #[arg(long)]
    focal_views: Option<usize>,
    #[arg(long)]
    prototypes: Option<usize>,
    /// Softmax temperature τ.
    #[arg(long)]
    temperature: Option<f64>,
    /// Weight λ of the me-max term.
    #[arg(long)]
    memax_weight: Option<f64>,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Threads that decode and augment images, in parallel with the step
    /// (default: 1 on the CPU, whose step uses every core; every core but
    /// one on a GPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Measure the target encoder every N steps (and at the end) while it
    /// trains: k-NN and 5-shot accuracy on a fixed labelled subset of
    /// --eval-data, written to metrics.jsonl and drawn in accuracy.png.
    #[arg(long, default_value_t = 0)]
    eval_every: u64,
    /// The monitor's labelled images (default: the validation split of the
    /// training source, SOURCE:val: held out when training on SOURCE:fit).
    #[arg(long)]
    eval_data: Option<String>,
    /// How many images of --eval-data the monitor measures on (a quarter as
    /// queries, the rest as the labelled bank).
    #[arg(long, default_value_t = 2000)]
    eval_images: usize,
    /// Replace an image that does not decode by another of its batch (with
    /// a warning naming it, once) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    /// Check every op's output and every gradient for NaN and infinity, and
    /// stop at the first, naming the op, its shapes and the step (slow: for
    /// finding where a diverging run goes wrong).
    #[arg(long)]
    detect_anomaly: bool,
    /// In a data-parallel run (`mpirun -np N msn pretrain …`): how long, in
    /// seconds, an exchange may wait for the other ranks before this rank
    /// stops with an error (one of them died or hung).
    #[arg(long, default_value_t = msn::dist::DEFAULT_TIMEOUT.as_secs_f64())]
    collective_timeout: f64,
    /// In a data-parallel run: what carries the exchanges between ranks,
    /// mpi or nccl (between NVIDIA GPUs, with --device cuda).
    #[arg(long, value_enum, default_value = "mpi")]
    collectives: crate::world::Collectives,
}

impl Args {
    fn overrides_given(&self) -> bool {
        self.preset.is_some()
            || self.config.is_some()
            || self.data.is_some()
            || self.steps.is_some()
            || self.epochs.is_some()
            || self.batch_size.is_some()
            || self.seed.is_some()
            || self.lr.is_some()
            || self.patch_drop.is_some()
            || self.focal_views.is_some()
            || self.prototypes.is_some()
            || self.temperature.is_some()
            || self.memax_weight.is_some()
    }

    fn config(&self, dataset_len: impl FnOnce(&str) -> Result<usize>) -> Result<PretrainConfig> {
        let mut c = match &self.config {
            Some(path) => PretrainConfig::from_file(path, self.preset.as_deref())?,
            None => PretrainConfig::preset(self.preset.as_deref().unwrap_or(PRESETS[0]))?,
        };
        if let Some(d) = &self.data {
            c.data = d.clone();
        }
        macro_rules! set {
            ($($field:ident => $target:expr),*) => { $(if let Some(v) = self.$field { $target = v; })* };
        }
        set!(batch_size => c.batch_size, seed => c.seed, lr => c.lr, patch_drop => c.views.patch_drop,
             focal_views => c.views.focal_views, prototypes => c.prototypes, temperature => c.loss.temperature,
             memax_weight => c.loss.memax_weight, steps => c.steps);
        if let Some(epochs) = self.epochs {
            if !epochs.is_finite() || epochs <= 0.0 {
                bail!("--epochs must be positive, got {epochs}");
            }
            let per_epoch = (dataset_len(&c.data)? / c.batch_size).max(1);
            c.steps = (epochs * per_epoch as f64).ceil() as u64;
        }
        c.start_lr = c.start_lr.min(c.lr);
        c.validate()?;
        Ok(c)
    }
}

/// The monitor's validation source for a training source: `SOURCE:val`.
fn validation_of(data: &str) -> String {
    format!("{}:val", msn::data::without_split(data))
}

fn collapse_warning(m: &StepMetrics, prototypes: usize) -> Option<String> {
    let uniform = 1.0 / prototypes as f64;
    if m.protos_used <= 1 {
        Some(format!("step {}: every target picks the same prototype (protos_used = 1): the run has collapsed", m.step))
    } else if m.max_target_prob < 1.5 * uniform {
        Some(format!("step {}: targets are nearly uniform (max_target_prob {:.5} ≈ 1/K): the run may be collapsing", m.step, m.max_target_prob))
    } else if m.max_target_prob > 0.999 {
        Some(format!(
            "step {}: targets are one-hot (max_target_prob {:.4}): the run may be collapsing",
            m.step, m.max_target_prob
        ))
    } else {
        None
    }
}

impl Args {
    /// The device asked for, which picks this rank's GPU before any thread starts.
    pub fn device(&self) -> ops::Device {
        self.device
    }
}

/// `msn pretrain`, alone or as one rank of an MPI launch. A rank that fails
/// ends the whole launch with its error, so that no other rank waits for it.
pub fn run(args: Args) -> Result<ExitCode> {
    if !(args.collective_timeout.is_finite() && args.collective_timeout > 0.0) {
        bail!(
            "--collective-timeout must be a positive number of seconds, got {}",
            args.collective_timeout
        );
    }
    let group = crate::world::join(
        Duration::from_secs_f64(args.collective_timeout),
        args.collectives,
        args.device,
    )?;
    if let Err(e) = group.handshake() {
        eprintln!("error: {e}");
        group.abort(2);
    }
    let result = train(args, &group);
    if let Err(e) = &result {
        if group.size() > 1 {
            eprintln!("error: rank {} of {}: {e:#}", group.rank(), group.size());
            group.abort(2);
        }
    }
    result
}

fn train(args: Args, group: &Group) -> Result<ExitCode> {
    crate::device::check_built(args.device)?;
    let workers = args
        .workers
        .unwrap_or_else(|| msn::loader::default_workers(args.device != ops::Device::Cpu));
    if workers == 0 {
        bail!("--workers must be at least 1, got 0");
    }
    let root = group.is_root();
    if args.print_config {
        let config = if args.resume {
            checkpoint::read_config(&args.out.join(checkpoint::CHECKPOINT))?.0
        } else {
            args.config(|source| Ok(msn::data::open(source)?.len()))?
        };
        if root {
            print!("{}", config.to_toml());
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The data is opened once (a folder is scanned once), before the model is built.
    let mut opened = None;
    let launched = Instant::now();
    // On --resume, rank 0 alone reads the checkpoint (the others may be on
    // machines without it) and gives them its configuration; its state
    // reaches them in `join`.
    let (config, resumed) = if args.resume {
        if args.overrides_given() && root {
            eprintln!("note: --resume continues the stored configuration; other flags are ignored");
        }
        let loaded = if root {
            Some(checkpoint::load(&args.out)?)
        } else {
            None
        };
        let text = group.broadcast_string(
            &loaded
                .as_ref()
                .map(|t| t.config.to_toml())
                .unwrap_or_default(),
            "the resumed run's configuration",
        );
        match loaded {
            Some(trainer) => (trainer.config.clone(), Some(trainer)),
            None => (
                PretrainConfig::from_toml(&text, "rank 0's configuration", None)?,
                None,
            ),
        }
    } else {
        let config = args.config(|source| {
            let set = msn::data::open(source)?;
            let len = set.len();
            opened = Some(set);
            Ok(len)
        })?;
        (config, None)
    };
    let dataset = Arc::new(match opened {
        Some(set) if set.name == config.data => set,
        _ => msn::data::open(&config.data)?,
    });
    check_same_run(&config, dataset.len(), group)?;
    let mut trainer = match resumed {
        Some(trainer) => trainer,
        None => Trainer::new(config.clone())?,
    };
    if group.size() > 1 {
        trainer.join(group.clone())?;
    }
    trainer
        .move_to(args.device)
        .with_context(|| format!("moving the model to --device {}", args.device))?;
    trainer.set_precision(args.precision)?;
    ops::anomaly::set_detect_anomaly(args.detect_anomaly);
    // Fault injection for the tests of --detect-anomaly and of divergence:
    // STEP (a NaN in the forward pass) or STEP:backward (in a gradient).
    trainer.plant_nan_at = std::env::var("MSN_TEST_PLANT_NAN_AT_STEP")
        .ok()
        .and_then(|s| {
            let (step, backward) = match s.split_once(':') {
                Some((step, "backward")) => (step.to_string(), true),
                _ => (s, false),
            };
            Some((step.parse().ok()?, backward))
        });
    if dataset.channels != config.encoder.in_channels {
        bail!(
            "data {} has {} channel(s) but the {} encoder expects {}",
            config.data,
            dataset.channels,
            config.preset,
            config.encoder.in_channels
        );
    }
    if dataset.len() < config.batch_size {
        bail!(
            "data {} has {} images, fewer than one batch of {}",
            config.data,
            dataset.len(),
            config.batch_size
        );
    }
    let first = trainer.step;
    if first >= config.steps {
        if root {
            println!(
                "{} already finished its {} steps",
                args.out.display(),
                config.steps
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Rank 0 alone writes: the folder's lock, config, metrics, checkpoints, plots.
    let mut written = if root {
        Some(RunFiles::open(
            &args.out,
            &config,
            args.resume,
            trainer.step,
        )?)
    } else {
        None
    };
    let metrics_path = args.out.join("metrics.jsonl");
    let ranks = match group.size() {
        1 => String::new(),
        n => format!(
            ", {n} ranks ({}) of {} images each",
            group.backend_name(),
            config.batch_size / n
        ),
    };
    if root {
        println!(
        "MSN pretraining: preset {}, data {} ({} images{}; ready after {:.1} s), ViT {}×{} heads {} patch {}, batch {}{}, steps {}..{}, {}, {} loader worker{}",
        config.preset,
        config.data,
        dataset.len(),
        match dataset.ignored_files() {
            0 => String::new(),
            n => format!("; {n} other files passed over"),
        },
        launched.elapsed().as_secs_f64(),
        config.encoder.width,
        config.encoder.depth,
        config.encoder.heads,
        config.encoder.patch_size,
        config.batch_size,
        ranks,
        first,
        config.steps,
        match args.device {
            ops::Device::Cpu => format!("{} rayon threads", rayon::current_num_threads()),
            gpu => format!("on {gpu}, {} matrix products", args.precision),
        },
        workers,
        if workers == 1 { "" } else { "s" },
    );
    }
    let loader = Loader::spawn(
        Arc::clone(&dataset),
        config.views.clone(),
        config.batch_size,
        config.seed,
        (first, config.steps),
        LoaderOptions {
            workers,
            batch: BatchOptions {
                skip_bad_images: args.skip_bad_images,
            },
            share: Share {
                rank: group.rank(),
                ranks: group.size(),
            },
        },
    )?;
    let bar = if root {
        ProgressBar::new(config.steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_position(first);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let per_epoch = trainer.steps_per_epoch(dataset.len());
    let monitor = match args.eval_every {
        _ if !root => None,
        0 => None,
        _ => {
            let source = args
                .eval_data
                .clone()
                .unwrap_or_else(|| validation_of(&config.data));
            let set = msn::data::open(&source)
                .with_context(|| format!("opening the monitor's data (--eval-data {source})"))?;
            if set.channels != config.encoder.in_channels {
                bail!(
                    "--eval-data {source} has {} channel(s) but the encoder expects {}",
                    set.channels,
                    config.encoder.in_channels
                );
            }
            Some(Monitor::new(&set, args.eval_images, 5, 2, config.seed)?)
        }
    };
    // Training time excludes the monitor's, so that recipes compare at equal training minutes.
    let trained_before = last_train_seconds(&metrics_path);
    let mut monitor_s = 0.0;
    let started = Instant::now();
    let mut warned = false;
    let mut bad_files = HashSet::new();
    let stop = StopRequest::install()?;
    while trainer.step < config.steps {
        let wait = Instant::now();
        let batch = loader
            .next_batch()
            .context("the data loader stopped early")??;
        for skipped in &batch.skipped {
            if bad_files.insert(skipped.clone()) {
                // suspend, not println: a hidden bar (output not a terminal) prints nothing.
                bar.suspend(|| {
                    eprintln!("warning: skipped, replaced by another image of its batch: {skipped}")
                });
            }
        }
        let mut m = trainer.train_step(&batch, wait.elapsed().as_secs_f64())?;
        rank_fault_for_tests(group, m.step);
        m.epoch = (m.step - 1) / per_epoch;
        m.skipped_images = batch.skipped.len();
        m.train_s = trained_before + started.elapsed().as_secs_f64() - monitor_s;
        if let Some(monitor) = &monitor {
            if m.step % args.eval_every == 0 || m.step == config.steps {
                let (mean, std) = (&config.views.mean, &config.views.std);
                let report = monitor.measure(&trainer.target.encoder, (mean, std))?;
                bar.suspend(|| {
                    eprintln!(
                        "step {}: monitor k-NN {:.1} %, {}-shot {:.1} % ({:.1} s)",
                        m.step,
                        100.0 * report.knn,
                        report.shots,
                        100.0 * report.fewshot,
                        report.seconds
                    )
                });
                monitor_s += report.seconds;
                m.monitor = Some(report);
            }
        }
        m.elapsed_s = started.elapsed().as_secs_f64();
        let mut saved = false;
        if let Some(files) = &mut written {
            files.append_metrics(&m)?;
            saved = m.step % args.checkpoint_every == 0 || m.step == config.steps;
            if saved {
                checkpoint::save(&trainer, &args.out)?;
            }
        }
        bar.set_position(m.step);
        bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.0} img/s protos {}",
            m.loss, m.lr, m.images_per_s, m.protos_used
        ));
        if let Some(w) = collapse_warning(&m, config.prototypes) {
            if !warned {
                bar.suspend(|| eprintln!("warning: {w}"));
                warned = true;
            }
        }
        // Every rank stops after the same step, when any was asked to
        // (mpirun passes a signal on to every rank, not at the same instant).
        let asked = stop.asked().or_else(|| stop_for_tests(group, m.step));
        if group.any(asked.is_some(), "the stop requests") {
            let (signal, code) = asked.unwrap_or(("a signal to another rank", 143));
            if !root {
                return Ok(ExitCode::from(code));
            }
            if !saved {
                checkpoint::save(&trainer, &args.out)?;
            }
            bar.abandon();
            eprintln!(
                "stopped by {signal} after step {} of {}; checkpoint written. Continue with: msn pretrain --out {} --resume",
                m.step,
                config.steps,
                args.out.display()
            );
            return Ok(ExitCode::from(code));
        }
    }
    bar.finish();
    if !root {
        return Ok(ExitCode::SUCCESS);
    }
    let losses = read_losses(&metrics_path);
    let plot = args.out.join("loss.png");
    plot_losses(
        &losses,
        &plot,
        &format!("MSN {} on {}", config.preset, config.data),
    )?;
    if monitor.is_some() {
        let curves = read_monitor(&metrics_path);
        plot_accuracy(
            &curves,
            &args.out.join("accuracy.png"),
            &format!("target encoder of MSN {} on {}", config.preset, config.data),
        )?;
    }
    let first_loss = losses.first().map(|l| l.1).unwrap_or(f64::NAN);
    let last_loss = losses.last().map(|l| l.1).unwrap_or(f64::NAN);
    println!(
        "done: {} steps in {:.1} s, loss {:.4} → {:.4}; wrote {}, {} and {}",
        config.steps - first,
        started.elapsed().as_secs_f64(),
        first_loss,
        last_loss,
        args.out.join(checkpoint::CHECKPOINT).display(),
        metrics_path.display(),
        plot.display()
    );
    Ok(ExitCode::SUCCESS)
}
