//! Every field of a run's configuration checked before any work starts:
//! the error names the field as a configuration file spells it, its value
//! and what is accepted.

use super::PretrainConfig;
use crate::augment::ViewAugment;
use crate::{Error, Result};

/// Upper bounds that no run on these machines comes near: past them a value
/// is a typo, and would otherwise ask for an absurd allocation.
const MAX_SIDE: usize = 4096;
const MAX_WIDTH: usize = 8192;
const MAX_COUNT: usize = 1 << 20;

/// One field's check: `ok`, or an error `key = value: expected …`.
fn check(key: &str, value: impl std::fmt::Display, ok: bool, expected: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "`{key}` = {value}: expected {expected}"
        )))
    }
}

fn count(key: &str, value: usize, min: usize, max: usize) -> Result<()> {
    check(
        key,
        value,
        (min..=max).contains(&value),
        &format!("an integer from {min} to {max}"),
    )
}

fn probability(key: &str, value: f64) -> Result<()> {
    check(
        key,
        value,
        (0.0..=1.0).contains(&value),
        "a probability in [0, 1]",
    )
}

fn positive(key: &str, value: f64) -> Result<()> {
    check(
        key,
        value,
        value.is_finite() && value > 0.0,
        "a finite number above 0",
    )
}

fn non_negative(key: &str, value: f64) -> Result<()> {
    check(
        key,
        value,
        value.is_finite() && value >= 0.0,
        "a finite number at least 0",
    )
}

fn view(key: &str, v: &ViewAugment, patch: usize) -> Result<()> {
    count(&format!("{key}.size"), v.size, patch.max(1), MAX_SIDE)?;
    check(
        &format!("{key}.size"),
        v.size,
        v.size.is_multiple_of(patch.max(1)),
        &format!("a multiple of the patch size {patch}"),
    )?;
    let (lo, hi) = v.scale;
    check(
        &format!("{key}.scale"),
        format!("[{lo}, {hi}]"),
        lo > 0.0 && lo <= hi && hi <= 1.0,
        "[low, high] with 0 < low ≤ high ≤ 1",
    )?;
    let (lo, hi) = v.ratio;
    check(
        &format!("{key}.ratio"),
        format!("[{lo}, {hi}]"),
        lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi,
        "[low, high] with 0 < low ≤ high, finite",
    )?;
    probability(&format!("{key}.flip_p"), v.flip_p)?;
    probability(&format!("{key}.grayscale_p"), v.grayscale_p)?;
    probability(&format!("{key}.blur_p"), v.blur_p)?;
    if let Some(j) = &v.jitter {
        for (name, value) in [
            ("brightness", j.brightness),
            ("contrast", j.contrast),
            ("saturation", j.saturation),
        ] {
            check(
                &format!("{key}.jitter.{name}"),
                value,
                value.is_finite() && (0.0..=10.0).contains(&value),
                "a strength from 0 to 10",
            )?;
        }
        check(
            &format!("{key}.jitter.hue"),
            j.hue,
            (0.0..=0.5).contains(&j.hue),
            "a hue shift from 0 to 0.5 of a turn",
        )?;
        probability(&format!("{key}.jitter.p"), j.p)?;
    }
    Ok(())
}

impl PretrainConfig {
    /// Checks every field and their combination before any work starts.
    pub fn validate(&self) -> Result<()> {
        let e = &self.encoder;
        count("encoder.image_size", e.image_size, 1, MAX_SIDE)?;
        count("encoder.patch_size", e.patch_size, 1, e.image_size)?;
        count("encoder.in_channels", e.in_channels, 1, 4)?;
        count("encoder.width", e.width, 1, MAX_WIDTH)?;
        count("encoder.depth", e.depth, 1, 256)?;
        count("encoder.heads", e.heads, 1, e.width)?;
        check(
            "encoder.width",
            e.width,
            e.width.is_multiple_of(e.heads),
            &format!("a multiple of encoder.heads ({})", e.heads),
        )?;
        count("encoder.mlp_ratio", e.mlp_ratio, 1, 64)?;
        e.validate()?;

        let v = &self.views;
        check(
            "views.patch_size",
            v.patch_size,
            v.patch_size == e.patch_size,
            &format!("encoder.patch_size ({})", e.patch_size),
        )?;
        view("views.target", &v.target, e.patch_size)?;
        view("views.anchor", &v.anchor, e.patch_size)?;
        view("views.focal", &v.focal, e.patch_size)?;
        count("views.focal_views", v.focal_views, 0, 64)?;
        check(
            "views.patch_drop",
            v.patch_drop,
            (0.0..1.0).contains(&v.patch_drop),
            "a fraction in [0, 1)",
        )?;
        for (key, values) in [("views.mean", &v.mean), ("views.std", &v.std)] {
            check(
                key,
                format!("{values:?}"),
                values.len() == 1 || values.len() == e.in_channels,
                &format!("one value, or one per channel ({})", e.in_channels),
            )?;
        }
        for &m in &v.mean {
            check("views.mean", m, m.is_finite(), "finite numbers")?;
        }
        for &s in &v.std {
            positive("views.std", s as f64)?;
        }

        count("head_hidden", self.head_hidden, 1, MAX_WIDTH)?;
        count("head_output", self.head_output, 1, MAX_WIDTH)?;
        count("prototypes", self.prototypes, 2, 1 << 16)?;
        let l = &self.loss;
        positive("loss.temperature", l.temperature)?;
        positive("loss.sharpen", l.sharpen)?;
        non_negative("loss.memax_weight", l.memax_weight)?;
        count("loss.sinkhorn_iterations", l.sinkhorn_iterations, 0, 1000)?;

        check(
            "batch_size",
            self.batch_size,
            (2..=MAX_COUNT).contains(&self.batch_size),
            &format!("an integer from 2 (batch norm in the head needs two) to {MAX_COUNT}"),
        )?;
        check(
            "steps",
            self.steps,
            (1..=1u64 << 40).contains(&self.steps),
            "an integer of at least 1",
        )?;
        positive("lr", self.lr)?;
        positive("start_lr", self.start_lr)?;
        non_negative("final_lr", self.final_lr)?;
        for (key, value) in [
            ("lr", self.lr),
            ("start_lr", self.start_lr),
            ("final_lr", self.final_lr),
        ] {
            check(key, value, value <= 10.0, "a learning rate of at most 10")?;
        }
        probability("warmup_fraction", self.warmup_fraction)?;
        non_negative("start_wd", self.start_wd)?;
        non_negative("final_wd", self.final_wd)?;
        probability("start_momentum", self.start_momentum)?;
        probability("final_momentum", self.final_momentum)?;
        positive("clip", self.clip)?;
        check(
            "schedule_stretch",
            self.schedule_stretch,
            self.schedule_stretch.is_finite() && (1.0..=100.0).contains(&self.schedule_stretch),
            "a factor from 1 to 100",
        )?;
        Ok(())
    }
}
