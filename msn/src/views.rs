//! MSN's views of a batch (`msn-spec.md` §2): one target view per image, one
//! anchor view with random patch drop (one permutation for the whole batch),
//! and F focal crops; all augmented, normalised and stacked view-major.

use std::time::Instant;

use ops::Tensor;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::augment::{normalize_into, FloatImage, ViewAugment};
use crate::data::ImageSet;
use crate::Result;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewConfig {
    pub target: ViewAugment,
    pub anchor: ViewAugment,
    pub focal: ViewAugment,
    pub focal_views: usize,
    /// Fraction of the anchor view's patches dropped.
    pub patch_drop: f64,
    pub patch_size: usize,
    /// Per-channel normalisation (one value serves every channel).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// One training batch's views.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `[B, C, S, S]`, for the target encoder.
    pub target: Tensor,
    /// `[B, C, S, S]`, for the anchor encoder with `keep`.
    pub anchor: Tensor,
    /// Patch indices of the anchor view that survive the drop (shared by the batch).
    pub keep: Vec<usize>,
    /// `[F·B, C, s, s]` view-major (all B images of focal view 1, then view 2, …); `None` when F = 0.
    pub focal: Option<Tensor>,
    pub labels: Vec<usize>,
    /// Seconds spent preparing this batch (on the loader's thread).
    pub prep_seconds: f64,
}

/// How many patches survive dropping `drop` of a `grid×grid` view: ⌊N·(1 − drop)⌋, at least 1.
pub fn kept_patches(grid: usize, drop: f64) -> usize {
    (((grid * grid) as f64 * (1.0 - drop)).floor() as usize).clamp(1, grid * grid)
}

fn stack(views: &[FloatImage], mean: &[f32], std: &[f32]) -> Result<Tensor> {
    let first = &views[0];
    let per = first.channels * first.height * first.width;
    let mut data = vec![0.0f32; views.len() * per];
    for (view, out) in views.iter().zip(data.chunks_exact_mut(per)) {
        normalize_into(view, mean, std, out);
    }
    Ok(Tensor::from_vec(
        data,
        &[views.len(), first.channels, first.height, first.width],
    )?)
}

/// The anchor view's surviving patch indices: a random permutation of its
/// grid, cut to [`kept_patches`] (one draw shared by the whole batch).
fn anchor_keep(cfg: &ViewConfig, rng: &mut StdRng) -> Vec<usize> {
    let grid = cfg.anchor.size / cfg.patch_size;
    let mut keep: Vec<usize> = (0..grid * grid).collect();
    keep.shuffle(rng);
    keep.truncate(kept_patches(grid, cfg.patch_drop));
    keep
}

/// Builds the views of the images at `indices`; `seed` fixes every random choice.
pub fn make_batch(set: &ImageSet, indices: &[usize], cfg: &ViewConfig, seed: u64) -> Result<Batch> {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut target = Vec::with_capacity(indices.len());
    let mut anchor = Vec::with_capacity(indices.len());
    let mut focal: Vec<Vec<FloatImage>> = vec![Vec::with_capacity(indices.len()); cfg.focal_views];
    for &i in indices {
        let img = FloatImage::from_image(&set.images[i]);
        target.push(cfg.target.apply(&img, &mut rng));
        anchor.push(cfg.anchor.apply(&img, &mut rng));
        for view in focal.iter_mut() {
            view.push(cfg.focal.apply(&img, &mut rng));
        }
    }
    let keep = anchor_keep(cfg, &mut rng);
    let focal = if cfg.focal_views > 0 {
        let all: Vec<FloatImage> = focal.into_iter().flatten().collect();
        Some(stack(&all, &cfg.mean, &cfg.std)?)
    } else {
        None
    };
    Ok(Batch {
        target: stack(&target, &cfg.mean, &cfg.std)?,
        anchor: stack(&anchor, &cfg.mean, &cfg.std)?,
        keep,
        focal,
        labels: indices.iter().map(|&i| set.labels[i]).collect(),
        prep_seconds: start.elapsed().as_secs_f64(),
    })
}

/// A batch of random views with the shapes `cfg` gives (`channels` per image):
/// what `msn bench` trains on, so that a throughput figure measures the step
/// and not the augmentation, as PyTorch's reference script does. The values
/// are uniform with unit variance, the scale of normalised pixels; a kernel's
/// cost does not depend on them.
pub fn random_batch(cfg: &ViewConfig, channels: usize, batch: usize, seed: u64) -> Result<Batch> {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let half_width = 3.0f32.sqrt();
    let mut views = |count: usize, size: usize| {
        let data = (0..count * channels * size * size)
            .map(|_| rng.gen_range(-half_width..half_width))
            .collect();
        Tensor::from_vec(data, &[count, channels, size, size])
    };
    let target = views(batch, cfg.target.size)?;
    let anchor = views(batch, cfg.anchor.size)?;
    let focal = match cfg.focal_views {
        0 => None,
        f => Some(views(f * batch, cfg.focal.size)?),
    };
    let keep = anchor_keep(cfg, &mut rng);
    Ok(Batch {
        target,
        anchor,
        keep,
        focal,
        labels: vec![0; batch],
        prep_seconds: start.elapsed().as_secs_f64(),
    })
}
