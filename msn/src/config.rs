//! Pretraining configurations and the named presets (`msn-spec.md` §11).

use serde::{Deserialize, Serialize};
use vit::VitConfig;

use crate::augment::{Jitter, ViewAugment};
use crate::loss::LossConfig;
use crate::views::ViewConfig;
use crate::{Error, Result};

/// Everything that defines a pretraining run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

impl PretrainConfig {
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "fmnist-tiny" => Ok(Self::fmnist_tiny()),
            "msn-vit-small-16" => Ok(Self::msn_vit_small_16()),
            _ => Err(Error::Config(format!(
                "unknown preset `{name}`; expected one of: {}",
                PRESETS.join(", ")
            ))),
        }
    }

    /// ViT 192×6 with 3 heads on 28×28 Fashion-MNIST, patch 4; sized to train on 2 CPU cores.
    pub fn fmnist_tiny() -> Self {
        let jitter = Some(Jitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.0,
            hue: 0.0,
            p: 0.8,
        });
        let view = |size, scale| ViewAugment {
            size,
            scale,
            ratio: (0.75, 4.0 / 3.0),
            flip_p: 0.5,
            jitter: jitter.clone(),
            grayscale_p: 0.0,
            blur_p: 0.0,
        };
        PretrainConfig {
            preset: "fmnist-tiny".into(),
            data: "fashion-mnist".into(),
            encoder: VitConfig {
                image_size: 28,
                patch_size: 4,
                in_channels: 1,
                width: 192,
                depth: 6,
                heads: 3,
                mlp_ratio: 4,
            },
            views: ViewConfig {
                target: view(28, (0.3, 1.0)),
                anchor: view(28, (0.3, 1.0)),
                focal: view(12, (0.05, 0.3)),
                focal_views: 4,
                patch_drop: 0.3,
                patch_size: 4,
                mean: vec![0.2860],
                std: vec![0.3530],
            },
            head_hidden: 1024,
            head_output: 128,
            prototypes: 512,
            loss: LossConfig::default(),
            batch_size: 128,
            steps: 300,
            lr: 1e-3,
            start_lr: 2e-4,
            final_lr: 1e-6,
            warmup_fraction: 0.1,
            start_wd: 0.04,
            final_wd: 0.4,
            start_momentum: 0.996,
            final_momentum: 1.0,
            clip: 3.0,
            schedule_stretch: 1.25,
            seed: 0,
        }
    }

    /// The paper's ImageNet setting: ViT-S/16 at 224 px, 1 anchor masked 0.15 and
    /// 10 focal views at 96 px, head 2048/2048/256, 1024 prototypes, batch 64.
    pub fn msn_vit_small_16() -> Self {
        let jitter = Some(Jitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            p: 0.8,
        });
        let view = |size, scale| ViewAugment {
            size,
            scale,
            ratio: (0.75, 4.0 / 3.0),
            flip_p: 0.5,
            jitter: jitter.clone(),
            grayscale_p: 0.2,
            blur_p: 0.5,
        };
        PretrainConfig {
            preset: "msn-vit-small-16".into(),
            data: "folder:PATH".into(),
            encoder: VitConfig::preset("vit-small/16").expect("a valid preset"),
            views: ViewConfig {
                target: view(224, (0.3, 1.0)),
                anchor: view(224, (0.3, 1.0)),
                focal: view(96, (0.05, 0.3)),
                focal_views: 10,
                patch_drop: 0.15,
                patch_size: 16,
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
            head_hidden: 2048,
            head_output: 256,
            prototypes: 1024,
            batch_size: 64,
            steps: 1000,
            // 15 warmup epochs of MSN's 800; optimisation otherwise as fmnist-tiny (MSN's own values).
            warmup_fraction: 15.0 / 800.0,
            ..Self::fmnist_tiny()
        }
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

    /// Checks the combination before any work starts.
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate()?;
        let bad = |m: String| Err(Error::Config(m));
        if self.batch_size < 2 {
            return bad(format!(
                "batch size {} is too small: batch norm in the head needs at least 2",
                self.batch_size
            ));
        }
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.views.patch_drop) {
            return bad(format!(
                "patch drop {} must be in [0, 1)",
                self.views.patch_drop
            ));
        }
        if self.views.patch_size != self.encoder.patch_size {
            return bad("the views' patch size must equal the encoder's".into());
        }
        for (what, v) in [
            ("lr", self.lr),
            ("start lr", self.start_lr),
            ("clip", self.clip),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{what} must be a positive number, got {v}"));
            }
        }
        for v in [&self.views.target, &self.views.anchor, &self.views.focal] {
            if v.size < self.encoder.patch_size {
                return bad(format!(
                    "view size {} is smaller than one patch ({})",
                    v.size, self.encoder.patch_size
                ));
            }
        }
        Ok(())
    }
}
