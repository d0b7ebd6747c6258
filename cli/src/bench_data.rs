//! `msn bench --data SOURCE`: the data pipeline alone. The views of a
//! preset's batches (decode, crop and resize, flip, jitter, grayscale, blur,
//! normalise), made by pools of 1, 2, … workers as the loader makes them,
//! timed per batch; the figure `tools/reference/views_throughput.py` gives
//! for torchvision.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use msn::config::PretrainConfig;
use msn::loader::{step_seed, Sampler};
use msn::views::{make_batch_with, BatchOptions};
use serde_json::json;

use crate::bench::median;

/// What to time: a preset's views of a source with each worker count.
pub struct DataBench<'a> {
    pub config: &'a PretrainConfig,
    pub source: &'a str,
    pub workers: &'a [usize],
    pub warmup: usize,
    pub steps: usize,
}

pub fn run(bench: DataBench, json_path: Option<&std::path::Path>) -> Result<()> {
    let c = bench.config;
    if bench.workers.contains(&0) {
        bail!("every --workers value must be at least 1");
    }
    let set = msn::data::open(bench.source)?;
    if set.len() < c.batch_size {
        bail!(
            "data {} has {} images, fewer than one batch of {}",
            bench.source,
            set.len(),
            c.batch_size
        );
    }
    let v = &c.views;
    println!(
        "msn bench (data): {} ({} images, {} channel(s)), preset {} views: 2 of {}px + {} focal of {}px per image, batch {}",
        bench.source,
        set.len(),
        set.channels,
        c.preset,
        v.target.size,
        v.focal_views,
        v.focal.size,
        c.batch_size
    );
    let mut reports = Vec::new();
    for &workers in bench.workers {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .context("starting the worker pool")?;
        let mut sampler = Sampler::new(set.len(), c.batch_size, c.seed);
        let mut rates = Vec::with_capacity(bench.steps);
        for step in 0..(bench.warmup + bench.steps) as u64 {
            let indices = sampler.indices(step);
            let start = Instant::now();
            let batch = pool.install(|| {
                make_batch_with(
                    &set,
                    &indices,
                    v,
                    step_seed(c.seed, step),
                    BatchOptions::default(),
                )
            })?;
            let seconds = start.elapsed().as_secs_f64();
            drop(batch);
            if step as usize >= bench.warmup {
                rates.push(c.batch_size as f64 / seconds);
            }
        }
        let rate = median(&rates);
        println!(
            "{workers} worker{}: {rate:.1} images/s ({:.1} per worker; median of {} batches, {:.1} to {:.1})",
            if workers == 1 { "" } else { "s" },
            rate / workers as f64,
            rates.len(),
            rates.iter().cloned().fold(f64::INFINITY, f64::min),
            rates.iter().cloned().fold(0.0, f64::max),
        );
        reports
            .push(json!({"workers": workers, "images_per_s": rate, "batch_images_per_s": rates}));
    }
    if let Some(path) = json_path {
        let report = json!({
            "mode": "data",
            "source": bench.source,
            "preset": c.preset,
            "batch_size": c.batch_size,
            "warmup": bench.warmup,
            "runs": reports,
        });
        vit::write_atomically(path, serde_json::to_string_pretty(&report)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
