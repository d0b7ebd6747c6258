//! What `msn pretrain` keeps in its output folder as it runs (rank 0's, in
//! a data-parallel run): the folder's lock, `config.toml`, `metrics.jsonl`
//! (appended a line per step, cut back on --resume, read back for plots).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use msn::config::PretrainConfig;
use msn::trainer::StepMetrics;

/// Takes `out`'s lock file for this run: a second `msn pretrain` into the
/// same folder would interleave metrics and overwrite checkpoints. The lock
/// is the kernel's (`flock`), so it goes with the process that holds it: a
/// crashed or killed run leaves no stale lock behind.
pub fn lock_out_folder(out: &Path) -> Result<std::fs::File> {
    let path = out.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "{} is in use by another msn pretrain (process {}, which holds {}): wait for it to end, or give another --out",
                out.display(),
                holder.trim(),
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}

/// What a run writes in its folder as it goes (rank 0's): the folder's
/// lock, `config.toml` and `metrics.jsonl`.
pub struct RunFiles {
    _lock: std::fs::File,
    metrics_path: PathBuf,
    metrics: std::fs::File,
}

impl RunFiles {
    /// Locks `out`, writes the configuration and opens the metrics: a fresh
    /// file, or on --resume the old one cut back to the checkpoint's `step`.
    pub fn open(out: &Path, config: &PretrainConfig, resume: bool, step: u64) -> Result<Self> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let lock = lock_out_folder(out)?;
        let config_path = out.join("config.toml");
        vit::write_atomically(&config_path, config.to_toml().as_bytes())
            .with_context(|| format!("writing {}", config_path.display()))?;
        let metrics_path = out.join("metrics.jsonl");
        if resume {
            truncate_metrics(&metrics_path, step)?;
        } else if metrics_path.exists() {
            std::fs::remove_file(&metrics_path)
                .with_context(|| format!("removing the old {}", metrics_path.display()))?;
        }
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("opening {}", metrics_path.display()))?;
        Ok(RunFiles {
            _lock: lock,
            metrics_path,
            metrics,
        })
    }

    /// One write per line, so that a kill cannot leave half a line for the
    /// next one to continue (a resume drops a line cut short).
    pub fn append_metrics(&mut self, m: &StepMetrics) -> Result<()> {
        let line = format!("{}\n", serde_json::to_string(m)?);
        self.metrics
            .write_all(line.as_bytes())
            .with_context(|| format!("writing {}", self.metrics_path.display()))
    }
}

/// Keeps the lines of `metrics.jsonl` up to `step` (a resumed run rewrites what followed its checkpoint).
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .collect();
    // Atomically: a run killed while it resumes keeps its metrics.
    vit::write_atomically(
        path,
        kept.iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .as_bytes(),
    )
    .with_context(|| format!("rewriting {}", path.display()))
}

/// Training seconds logged by the last line of `metrics.jsonl` (a resumed run continues from them).
pub fn last_train_seconds(path: &Path) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["train_s"].as_f64())
        .next_back()
        .unwrap_or(0.0)
}

/// The monitor's k-NN and few-shot curves (minutes of training, accuracy in %).
pub fn read_monitor(path: &Path) -> Vec<(&'static str, Vec<(f64, f64)>)> {
    let (mut knn, mut fewshot) = (Vec::new(), Vec::new());
    for v in std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let (Some(t), Some(k), Some(f)) = (
            v["train_s"].as_f64(),
            v["monitor"]["knn"].as_f64(),
            v["monitor"]["fewshot"].as_f64(),
        ) else {
            continue;
        };
        knn.push((t / 60.0, 100.0 * k));
        fewshot.push((t / 60.0, 100.0 * f));
    }
    vec![
        ("k-NN (k = 20)", knn),
        ("5-shot logistic regression", fewshot),
    ]
}

pub fn read_losses(path: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()?)))
        .collect()
}
