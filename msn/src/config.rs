//! Pretraining configurations: one struct is a whole run; the named presets
//! (`msn/presets/*.toml`, `msn-spec.md` §11), TOML files and the command
//! line's flags are three ways to fill it, and `validate` (config/validate.rs)
//! checks every field before any work starts.

mod validate;

use serde::{Deserialize, Serialize};
use vit::VitConfig;

use crate::loss::LossConfig;
use crate::views::ViewConfig;
use crate::{Error, Result};

/// Everything that defines a pretraining run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    pub preset: String,
    pub data: String,
    pub encoder: VitConfig,
    pub views: ViewConfig,
    pub head_hidden: usize,
    pub head_output: usize,
    pub prototypes: usize,
    pub loss: LossConfig,
    pub batch_size: usize,
    pub steps: u64,
    pub lr: f64,
    pub start_lr: f64,
    pub final_lr: f64,
    pub warmup_fraction: f64,
    pub start_wd: f64,
    pub final_wd: f64,
    pub start_momentum: f64,
    pub final_momentum: f64,
    pub clip: f64,
    pub schedule_stretch: f64,
    pub seed: u64,
}

pub const PRESETS: [&str; 2] = ["fmnist-tiny", "msn-vit-small-16"];

/// `over`'s keys replace `base`'s, tables merged key by key.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A parser's message on one line (toml's quote the offending line below).
fn one_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let message = lines
        .iter()
        .rev()
        .find(|l| !l.starts_with('|') && !l.starts_with('^') && !l.contains(" | "));
    match (lines.first(), message) {
        (Some(first), Some(last)) if first != last => format!("{first} {last}"),
        (Some(first), _) => first.to_string(),
        _ => text,
    }
}

impl PretrainConfig {
    /// A named preset: the TOML file of that name in `msn/presets/`, built in.
    pub fn preset(name: &str) -> Result<Self> {
        let text = match name {
            "fmnist-tiny" => include_str!("../presets/fmnist-tiny.toml"),
            "msn-vit-small-16" => include_str!("../presets/msn-vit-small-16.toml"),
            _ => {
                return Err(Error::Config(format!(
                    "unknown preset `{name}`; expected one of: {}",
                    PRESETS.join(", ")
                )))
            }
        };
        toml::from_str(text).map_err(|e| Error::Config(format!("preset {name}: {}", one_line(&e))))
    }

    /// ViT 192×6 with 3 heads on 28×28 Fashion-MNIST, patch 4; sized to train
    /// on 2 CPU cores (`msn/presets/fmnist-tiny.toml`).
    pub fn fmnist_tiny() -> Self {
        Self::preset("fmnist-tiny").expect("the built-in preset parses (tested)")
    }

    /// The paper's ImageNet setting: ViT-S/16 at 224 px, 1 anchor masked 0.15 and
    /// 10 focal views at 96 px, head 2048/2048/256, 1024 prototypes, batch 64
    /// (`msn/presets/msn-vit-small-16.toml`).
    pub fn msn_vit_small_16() -> Self {
        Self::preset("msn-vit-small-16").expect("the built-in preset parses (tested)")
    }

    /// The whole configuration as TOML, every field: what `--print-config`
    /// prints and a run writes beside its checkpoint.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a configuration is plain numbers, strings and tables")
    }

    /// A configuration from TOML text (`origin` names it in errors): its
    /// fields over a preset's (the text's own `preset`, else `base`), so a
    /// file needs only what it changes. An unknown key is an error naming it.
    pub fn from_toml(text: &str, origin: &str, base: Option<&str>) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| Error::Config(format!("{origin}: {}", one_line(e)));
        let table: toml::Table = text.parse().map_err(|e| bad(&e))?;
        let preset = match table.get("preset") {
            Some(toml::Value::String(name)) => name.clone(),
            Some(other) => {
                return Err(Error::Config(format!(
                    "{origin}: `preset` = {other}: expected a preset's name ({})",
                    PRESETS.join(", ")
                )))
            }
            None => base.unwrap_or(PRESETS[0]).to_string(),
        };
        let mut merged = toml::Table::try_from(Self::preset(&preset)?).map_err(|e| bad(&e))?;
        merge(&mut merged, table);
        toml::Value::Table(merged).try_into().map_err(|e| bad(&e))
    }

    /// [`PretrainConfig::from_toml`] on a file.
    pub fn from_file(path: &std::path::Path, base: Option<&str>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string(), base)
    }

    pub fn schedules(&self) -> crate::schedule::Schedules {
        crate::schedule::Schedules {
            total_steps: self.steps,
            warmup_steps: (self.warmup_fraction * self.steps as f64).round() as u64,
            stretch: self.schedule_stretch,
            start_lr: self.start_lr,
            lr: self.lr,
            final_lr: self.final_lr,
            start_wd: self.start_wd,
            final_wd: self.final_wd,
            start_momentum: self.start_momentum,
            final_momentum: self.final_momentum,
        }
    }
}
