//! MSN's views of a batch (`msn-spec.md` §2): one target view per image, one
//! anchor view with random patch drop (one permutation for the whole batch),
//! and F focal crops; all augmented, normalised and stacked view-major.

use std::time::Instant;

use ops::Tensor;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::{normalize_into, ViewAugment};
use crate::data::ImageSet;
use crate::Result;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The errors of images that did not decode and were replaced (with
    /// [`BatchOptions::skip_bad_images`]), each naming its file.
    pub skipped: Vec<String>,
    /// Seconds spent preparing this batch (on the loader's threads).
    pub prep_seconds: f64,
}

/// How many patches survive dropping `drop` of a `grid×grid` view: ⌊N·(1 − drop)⌋, at least 1.
pub fn kept_patches(grid: usize, drop: f64) -> usize {
    (((grid * grid) as f64 * (1.0 - drop)).floor() as usize).clamp(1, grid * grid)
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

/// What a batch does with an image that does not decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOptions {
    /// Replace it by the next image of the batch that decodes (and report
    /// it in [`Batch::skipped`]) instead of failing.
    pub skip_bad_images: bool,
}

/// The seed of position `position`'s random draws in a batch seeded `seed`
/// (SplitMix64's finaliser): each image's views depend on (seed, step,
/// position) alone, so workers may make them in any order.
pub fn position_seed(seed: u64, position: usize) -> u64 {
    let mut z = seed.wrapping_add((position as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where one image's views go in the batch's buffers: its slot of the
/// target and anchor views and one slot in each focal view's block.
struct Slots<'a> {
    target: &'a mut [f32],
    anchor: &'a mut [f32],
    focal: Vec<&'a mut [f32]>,
}

/// What one image of a batch reports once its views are written.
struct Written {
    label: usize,
    skipped: Vec<String>,
}

/// The image at `position` of the batch, or (skipping bad images) the
/// first after it, cyclically, that decodes; with its label.
fn decode_for<'s>(
    set: &'s ImageSet,
    indices: &[usize],
    position: usize,
    options: BatchOptions,
    skipped: &mut Vec<String>,
) -> Result<(crate::data::Pixels<'s>, usize)> {
    let mut first_error = None;
    for k in 0..indices.len() {
        let i = indices[(position + k) % indices.len()];
        match set.pixels(i) {
            Ok(pixels) => return Ok((pixels, set.labels[i])),
            Err(e) if options.skip_bad_images => {
                skipped.push(e.to_string());
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(first_error.expect("a batch has at least one image"))
}

/// Decodes the image at `position` (or its replacement) and writes its
/// normalised views straight into its slots of the batch.
#[allow(clippy::too_many_arguments)]
fn write_views(
    set: &ImageSet,
    indices: &[usize],
    position: usize,
    first_position: usize,
    cfg: &ViewConfig,
    seed: u64,
    options: BatchOptions,
    slots: Slots,
) -> Result<Written> {
    let mut skipped = Vec::new();
    let (pixels, label) = decode_for(set, indices, position, options, &mut skipped)?;
    let global_position = first_position + position;
    let mut rng = StdRng::seed_from_u64(position_seed(seed, global_position));
    let kinds = [(&cfg.target, slots.target), (&cfg.anchor, slots.anchor)]
        .into_iter()
        .chain(std::iter::repeat(&cfg.focal).zip(slots.focal));
    for (augment, out) in kinds {
        let view = augment.apply_pixels(&pixels, set.channels, &mut rng);
        normalize_into(&view, &cfg.mean, &cfg.std, out);
    }
    Ok(Written { label, skipped })
}

/// Builds the views of the images at `indices`; `seed` fixes every random
/// choice. Images are decoded and augmented in parallel on the current rayon
/// pool; the batch is the same whatever the number of threads.
pub fn make_batch(set: &ImageSet, indices: &[usize], cfg: &ViewConfig, seed: u64) -> Result<Batch> {
    make_batch_with(set, indices, cfg, seed, BatchOptions::default())
}

/// [`make_batch`], with a choice of what to do with images that do not decode.
pub fn make_batch_with(
    set: &ImageSet,
    indices: &[usize],
    cfg: &ViewConfig,
    seed: u64,
    options: BatchOptions,
) -> Result<Batch> {
    make_batch_part(set, indices, 0, cfg, seed, options)
}

/// The views of one rank's part of a global batch: `indices` are the
/// images at positions `first_position..` of the global batch, and each
/// image's views are the ones it gets there, whatever the number of ranks.
/// (A bad image is replaced by another of the same part.)
pub fn make_batch_part(
    set: &ImageSet,
    indices: &[usize],
    first_position: usize,
    cfg: &ViewConfig,
    seed: u64,
    options: BatchOptions,
) -> Result<Batch> {
    let start = Instant::now();
    let (b, c) = (indices.len(), set.channels);
    let per = |a: &ViewAugment| c * a.size * a.size;
    let mut target = vec![0.0f32; b * per(&cfg.target)];
    let mut anchor = vec![0.0f32; b * per(&cfg.anchor)];
    let mut focal = vec![0.0f32; cfg.focal_views * b * per(&cfg.focal)];
    // Focal views are view-major: image p's slot of view f is chunk f·B + p.
    let mut focal_slots: Vec<Vec<&mut [f32]>> = (0..b).map(|_| Vec::new()).collect();
    for (k, chunk) in focal.chunks_exact_mut(per(&cfg.focal).max(1)).enumerate() {
        focal_slots[k % b].push(chunk);
    }
    let slots: Vec<Slots> = target
        .chunks_exact_mut(per(&cfg.target))
        .zip(anchor.chunks_exact_mut(per(&cfg.anchor)))
        .zip(focal_slots)
        .map(|((target, anchor), focal)| Slots {
            target,
            anchor,
            focal,
        })
        .collect();
    // Each worker writes its images' views in place: no copy, and the
    // batch's fresh pages are first touched by all the workers at once.
    let written: Vec<Result<Written>> = slots
        .into_par_iter()
        .enumerate()
        .map(|(p, slots)| write_views(set, indices, p, first_position, cfg, seed, options, slots))
        .collect();
    // The first failure in batch order, whichever thread met it first.
    let written = written.into_iter().collect::<Result<Vec<_>>>()?;
    let shape = |n: usize, a: &ViewAugment| [n, c, a.size, a.size];
    let focal = match cfg.focal_views {
        0 => None,
        f => Some(Tensor::from_vec(focal, &shape(f * b, &cfg.focal))?),
    };
    Ok(Batch {
        target: Tensor::from_vec(target, &shape(b, &cfg.target))?,
        anchor: Tensor::from_vec(anchor, &shape(b, &cfg.anchor))?,
        keep: anchor_keep(cfg, &mut StdRng::seed_from_u64(seed)),
        focal,
        labels: written.iter().map(|w| w.label).collect(),
        skipped: written.into_iter().flat_map(|w| w.skipped).collect(),
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
        skipped: Vec::new(),
        prep_seconds: start.elapsed().as_secs_f64(),
    })
}
