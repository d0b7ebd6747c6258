//! `msn bench`: the training throughput of a preset's whole MSN step (both
//! encoders, loss, backward, clipping, AdamW, EMA) on random views, on any
//! device and precision. It is the step that `tools/reference/msn_throughput.py`
//! times in PyTorch, so the two print figures to divide. With `--data` it
//! times the data pipeline instead (`bench_data.rs`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use msn::config::PretrainConfig;
use msn::trainer::{StepTiming, Trainer};
use msn::views::{random_batch, Batch};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration preset: fmnist-tiny (default) or msn-vit-small-16.
    #[arg(long)]
    preset: Option<String>,
    /// A TOML configuration file (as `msn pretrain --config`): its network,
    /// views and batch are timed.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Images per step (default: the preset's).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Timed steps; the figure is their median.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first: kernels compile and buffers are pooled on their first use.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Where to compute: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: ops::Device,
    /// Matrix products on a GPU: f32 or bf16.
    #[arg(long, default_value = "f32")]
    precision: ops::Precision,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write every step's timings and the summary here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Time the data pipeline alone on this source (folder:PATH, …): the
    /// preset's views of --steps batches, no training.
    #[arg(long)]
    data: Option<String>,
    /// With --data: loader worker counts to time, comma-separated (default:
    /// 1 and every core).
    #[arg(long, value_delimiter = ',')]
    workers: Vec<usize>,
}

/// Two batches prepared before timing and used in turn: generating views is
/// the loader's work, on its own thread in `msn pretrain`; uploading them is
/// the step's, and stays inside the timing.
const BATCHES: usize = 2;

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        0.5 * (sorted[mid - 1] + sorted[mid])
    }
}

/// The machine's FMA peak on every rayon thread, the best of three short
/// measurements (about 40 ms each with AVX-512): a core that has just
/// slowed down to cool would understate it once, not three times.
fn measured_peak() -> f64 {
    (0..3)
        .map(|_| ops::cpu::fma_peak_gflops(30_000_000))
        .fold(0.0, f64::max)
}

/// The parts of a step that [`StepTiming`] times, by name.
fn phases(t: &StepTiming) -> [(&'static str, f64); 5] {
    [
        ("anchor_forward", t.anchor_forward),
        ("target_forward", t.target_forward),
        ("loss", t.loss),
        ("backward", t.backward),
        ("optimizer", t.optimizer),
    ]
}

pub fn run(args: Args) -> Result<()> {
    crate::device::check_built(args.device)?;
    if args.steps == 0 {
        bail!("--steps must be at least 1, got 0");
    }
    let mut config = match &args.config {
        Some(path) => PretrainConfig::from_file(path, args.preset.as_deref())?,
        None => PretrainConfig::preset(args.preset.as_deref().unwrap_or(msn::config::PRESETS[0]))?,
    };
    if let Some(b) = args.batch_size {
        config.batch_size = b;
    }
    config.seed = args.seed;
    // The schedules only need to cover the steps taken here.
    config.steps = (args.warmup + args.steps) as u64;
    config.validate()?;
    if let Some(source) = &args.data {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = match args.workers.as_slice() {
            [] if cores > 1 => vec![1, cores],
            [] => vec![1],
            given => given.to_vec(),
        };
        let bench = crate::bench_data::DataBench {
            config: &config,
            source,
            workers: &workers,
            warmup: args.warmup,
            steps: args.steps,
        };
        return crate::bench_data::run(bench, args.json.as_deref());
    }
    if !args.workers.is_empty() {
        bail!("--workers times the data pipeline: give it with --data SOURCE");
    }
    let mut trainer = Trainer::new(config.clone())?;
    trainer
        .move_to(args.device)
        .with_context(|| format!("moving the model to --device {}", args.device))?;
    trainer.set_precision(args.precision)?;
    let batches: Vec<Batch> = (0..BATCHES as u64)
        .map(|i| {
            random_batch(
                &config.views,
                config.encoder.in_channels,
                config.batch_size,
                args.seed.wrapping_add(i),
            )
        })
        .collect::<msn::Result<_>>()?;
    let e = &config.encoder;
    println!(
        "msn bench: preset {}, ViT {}×{} heads {} patch {} on {}px views, batch {} (+{} focal views of {}px each), {} on {}{}",
        config.preset,
        e.width,
        e.depth,
        e.heads,
        e.patch_size,
        config.views.target.size,
        config.batch_size,
        config.views.focal_views,
        config.views.focal.size,
        args.precision,
        args.device,
        match args.device {
            ops::Device::Cpu => format!(" ({} rayon threads)", rayon::current_num_threads()),
            _ => String::new(),
        }
    );
    let on_cpu = args.device == ops::Device::Cpu;
    let mut seconds = Vec::with_capacity(args.steps);
    let mut timings = Vec::with_capacity(args.steps);
    let mut flops_before = 0;
    for step in 0..args.warmup + args.steps {
        if step == args.warmup {
            flops_before = ops::cpu::gemm::product_flops();
        }
        let batch = &batches[step % BATCHES];
        let start = Instant::now();
        let metrics = trainer.train_step(batch, 0.0)?;
        // GPU kernels run behind the host: the step ends when the device is idle.
        args.device.synchronize()?;
        let elapsed = start.elapsed().as_secs_f64();
        if step >= args.warmup {
            seconds.push(elapsed);
            timings.push(metrics.timing);
        }
    }
    let images_per_s: Vec<f64> = seconds
        .iter()
        .map(|s| config.batch_size as f64 / s)
        .collect();
    let step_s = median(&seconds);
    println!(
        "{:.1} images/s (median of {} steps; {:.1} to {:.1}), {:.1} ms per step",
        median(&images_per_s),
        args.steps,
        images_per_s.iter().cloned().fold(f64::INFINITY, f64::min),
        images_per_s.iter().cloned().fold(0.0, f64::max),
        1e3 * step_s
    );
    let mut report_peak = None;
    if on_cpu {
        let flops = (ops::cpu::gemm::product_flops() - flops_before) as f64 / args.steps as f64;
        let peak = measured_peak();
        let reached = flops / step_s / 1e9;
        println!(
            "{:.2} GFLOP per step in matrix products ({:.1} MFLOP per image; 2·m·n·k of every product, \
             attention's included, counted as the gemm runs them): {:.1} GFLOP/s, {:.0} % of the \
             FMA peak ({:.1} GFLOP/s: {} on {} thread{}, measured now)",
            flops / 1e9,
            flops / config.batch_size as f64 / 1e6,
            reached,
            100.0 * reached / peak,
            peak,
            ops::cpu::isa_name(),
            rayon::current_num_threads(),
            if rayon::current_num_threads() == 1 { "" } else { "s" }
        );
        report_peak = Some((flops, reached, peak));
    }
    let per_step: Vec<_> = timings.iter().map(phases).collect();
    let phase_medians: Vec<(&str, f64)> = per_step[0]
        .iter()
        .enumerate()
        .map(|(i, &(name, _))| {
            let each: Vec<f64> = per_step.iter().map(|p| p[i].1).collect();
            (name, median(&each))
        })
        .collect();
    let breakdown: Vec<String> = phase_medians
        .iter()
        .map(|(name, s)| format!("{name} {:.1}", 1e3 * s))
        .collect();
    println!(
        "median ms: {}{}",
        breakdown.join(", "),
        if args.device.is_gpu() {
            " (on a GPU a phase ends when the host has queued its kernels, except where it reads a value back)"
        } else {
            ""
        }
    );
    if let Some(path) = &args.json {
        let report = json!({
            "preset": config.preset,
            "device": args.device.to_string(),
            "precision": args.precision.to_string(),
            "batch_size": config.batch_size,
            "warmup": args.warmup,
            "images_per_s": median(&images_per_s),
            "step_seconds": seconds,
            "gflop_per_step": report_peak.map(|(flops, _, _)| flops / 1e9),
            "gflops": report_peak.map(|(_, reached, _)| reached),
            "fma_peak_gflops": report_peak.map(|(_, _, peak)| peak),
            "phase_median_seconds": phase_medians.iter().map(|(n, s)| (n.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
        });
        vit::write_atomically(path, serde_json::to_string_pretty(&report)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
