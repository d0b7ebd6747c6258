//! Checkpoints: the networks in `checkpoint.safetensors` (the target encoder
//! under timm's names, so that the file loads as a plain ViT; everything else
//! under `msn.`), the optimizer in `train_state-STEP.safetensors`, each
//! written atomically. The run's configuration and step travel in the
//! metadata.
//!
//! The checkpoint is the commit point: the optimizer state of step N is
//! written first, under a name of its own, then the checkpoint (which names
//! step N), and only then are older states removed. A process killed at any
//! moment leaves a checkpoint and the optimizer state of the same step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ops::Tensor;
use vit::{read_safetensors, write_safetensors};

use crate::config::PretrainConfig;
use crate::model::MsnNetwork;
use crate::trainer::Trainer;
use crate::{Error, Result};

pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The optimizer state of runs from before states were named by step.
const OLD_TRAIN_STATE: &str = "train_state.safetensors";

/// The optimizer state of `step`.
pub fn train_state_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("train_state-{step}.safetensors"))
}

/// Whether `dir` holds a training run that [`load`] can continue (the
/// checkpoint and the optimizer state of its step), as opposed to weights
/// alone.
pub fn is_run(dir: &Path) -> bool {
    let checkpoint = dir.join(CHECKPOINT);
    match read_config(&checkpoint) {
        Ok((_, step, _)) => {
            train_state_path(dir, step).is_file() || dir.join(OLD_TRAIN_STATE).is_file()
        }
        Err(_) => false,
    }
}

/// The optimizer states in `dir` other than `keep`'s.
fn other_train_states(dir: &Path, keep: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            p != keep
                && (name == OLD_TRAIN_STATE
                    || (name.starts_with("train_state-") && name.ends_with(".safetensors")))
        })
        .collect()
}

fn network_tensors(
    net: &MsnNetwork,
    encoder_prefix: &str,
    head_prefix: &str,
) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = net
        .encoder
        .state_dict()
        .into_iter()
        .map(|(n, t)| (format!("{encoder_prefix}{n}"), t))
        .collect();
    let mut head = net.head.clone();
    head.visit(head_prefix, &mut |n, t| out.push((n, t.clone())));
    head.visit_buffers(head_prefix, &mut |n, t| out.push((n, t.clone())));
    out
}

fn metadata(trainer: &Trainer) -> Result<BTreeMap<String, String>> {
    let config = serde_json::to_string(&trainer.config)
        .map_err(|e| Error::Config(format!("cannot serialise the configuration: {e}")))?;
    Ok(BTreeMap::from([
        ("msn.config".to_string(), config),
        ("msn.step".to_string(), trainer.step.to_string()),
    ]))
}

/// Writes both files into `dir` (created if needed).
pub fn save(trainer: &Trainer, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let meta = metadata(trainer)?;
    let mut state = Vec::new();
    for (i, (m, v)) in trainer
        .optimizer
        .first_moments
        .iter()
        .zip(&trainer.optimizer.second_moments)
        .enumerate()
    {
        state.push((format!("adam.m.{i:04}"), m.clone()));
        state.push((format!("adam.v.{i:04}"), v.clone()));
    }
    let state_path = train_state_path(dir, trainer.step);
    write_safetensors(&state_path, &state, &meta)?;
    // Test-only: a pause between the two writes, for the kill tests to land in.
    if let Some(ms) = std::env::var("MSN_TEST_PAUSE_IN_SAVE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut tensors = network_tensors(&trainer.target, "", "msn.target_head");
    tensors.extend(network_tensors(
        &trainer.anchor,
        "msn.anchor.",
        "msn.anchor_head",
    ));
    tensors.push(("msn.prototypes".to_string(), trainer.prototypes.clone()));
    write_safetensors(&dir.join(CHECKPOINT), &tensors, &meta)?;
    for old in other_train_states(dir, &state_path) {
        std::fs::remove_file(&old).map_err(|source| Error::Io { path: old, source })?;
    }
    Ok(())
}

fn checkpoint_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the configuration and step stored in a checkpoint's metadata.
pub fn read_config(path: &Path) -> Result<(PretrainConfig, u64, BTreeMap<String, Tensor>)> {
    let (tensors, meta) = read_safetensors(path)?;
    let config = meta.get("msn.config").ok_or_else(|| {
        checkpoint_error(
            path,
            "has no msn.config metadata; not written by msn pretrain",
        )
    })?;
    let config: PretrainConfig = serde_json::from_str(config)
        .map_err(|e| checkpoint_error(path, format!("unreadable configuration ({e})")))?;
    let step = meta
        .get("msn.step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| checkpoint_error(path, "has no readable msn.step"))?;
    Ok((config, step, tensors.into_iter().collect()))
}

fn load_head(
    net: &mut MsnNetwork,
    tensors: &BTreeMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<()> {
    let mut problems = Vec::new();
    let mut assign = |name: String, t: &mut Tensor| match tensors.get(&name) {
        Some(found) if found.shape() == t.shape() => *t = found.clone(),
        Some(found) => problems.push(format!(
            "`{name}` has shape {:?}, expected {:?}",
            found.shape(),
            t.shape()
        )),
        None => problems.push(format!("missing `{name}`")),
    };
    net.head.visit(prefix, &mut assign);
    net.head.visit_buffers(prefix, &mut assign);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(checkpoint_error(path, problems.join("; ")))
    }
}

/// Restores a trainer from `dir` (both files; they must be from the same step).
pub fn load(dir: &Path) -> Result<Trainer> {
    let path = dir.join(CHECKPOINT);
    if !path.is_file() {
        return Err(checkpoint_error(
            &path,
            "not found; --resume needs the --out folder of an earlier run",
        ));
    }
    let (config, step, tensors) = read_config(&path)?;
    let mut trainer = Trainer::new(config)?;
    let file = path.display().to_string();
    let all: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    trainer.target.encoder.load_state_dict(&all, &file)?;
    let anchor: Vec<(String, Tensor)> = all
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("msn.anchor.")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    trainer.anchor.encoder.load_state_dict(&anchor, &file)?;
    load_head(&mut trainer.target, &tensors, "msn.target_head", &path)?;
    load_head(&mut trainer.anchor, &tensors, "msn.anchor_head", &path)?;
    match tensors.get("msn.prototypes") {
        Some(p) if p.shape() == trainer.prototypes.shape() => trainer.prototypes = p.clone(),
        Some(p) => {
            return Err(checkpoint_error(
                &path,
                format!(
                    "`msn.prototypes` has shape {:?}, expected {:?}",
                    p.shape(),
                    trainer.prototypes.shape()
                ),
            ))
        }
        None => return Err(checkpoint_error(&path, "missing `msn.prototypes`")),
    }
    let mut state_path = train_state_path(dir, step);
    if !state_path.is_file() && dir.join(OLD_TRAIN_STATE).is_file() {
        state_path = dir.join(OLD_TRAIN_STATE);
    }
    let (state, meta) = read_safetensors(&state_path)?;
    if meta.get("msn.step").and_then(|s| s.parse::<u64>().ok()) != Some(step) {
        return Err(checkpoint_error(
            &state_path,
            format!(
                "is not from the same step as {} (step {step})",
                path.display()
            ),
        ));
    }
    let state: BTreeMap<String, Tensor> = state.into_iter().collect();
    let opt = &mut trainer.optimizer;
    for i in 0..opt.first_moments.len() {
        for (kind, slot) in [
            ("m", &mut opt.first_moments[i]),
            ("v", &mut opt.second_moments[i]),
        ] {
            let name = format!("adam.{kind}.{i:04}");
            match state.get(&name) {
                Some(t) if t.shape() == slot.shape() => *slot = t.clone(),
                _ => {
                    return Err(checkpoint_error(
                        &state_path,
                        format!("missing or mis-shaped `{name}`"),
                    ))
                }
            }
        }
    }
    opt.steps = step;
    trainer.step = step;
    Ok(trainer)
}
