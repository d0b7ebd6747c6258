//! Features of every image from a frozen encoder (or raw pixels), and the
//! per-row preprocessing MSN's evaluation applies.

use std::path::Path;

use ops::Tensor;
use rayon::prelude::*;
use vit::{VisionTransformer, VitConfig};

use crate::augment::{eval_transform, normalize_into, FloatImage};
use crate::data::ImageSet;
use crate::{Error, Result};

/// Which representation of an image to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureKind {
    /// The last block's CLS token before the final norm (MSN's evaluation).
    ClsPrenorm,
    /// The CLS token after the final norm.
    Cls,
    /// The mean of the last block's patch tokens.
    MeanTokens,
}

impl std::str::FromStr for FeatureKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cls-prenorm" => Ok(FeatureKind::ClsPrenorm),
            "cls" => Ok(FeatureKind::Cls),
            "mean-tokens" => Ok(FeatureKind::MeanTokens),
            _ => Err(Error::Config(format!(
                "unknown features `{s}`; expected cls-prenorm, cls or mean-tokens"
            ))),
        }
    }
}

/// Per-channel mean and standard deviation.
pub type Normalisation = (Vec<f32>, Vec<f32>);

/// Normalisation statistics for evaluation when the checkpoint carries none.
pub fn default_normalisation(channels: usize) -> Normalisation {
    if channels == 1 {
        (vec![0.2860], vec![0.3530])
    } else {
        (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
    }
}

/// One image prepared for the encoder: the evaluation resize and crop, then normalisation.
fn prepare(
    set: &ImageSet,
    i: usize,
    size: usize,
    mean: &[f32],
    std: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let decoded = set.image(i)?;
    let img = eval_transform(&FloatImage::from_image(&decoded), size);
    normalize_into(&img, mean, std, out);
    Ok(())
}

/// Features `[N, D]` of every image of `set`, in batches; `progress(done)` after each.
pub fn extract_features(
    encoder: &VisionTransformer,
    set: &ImageSet,
    kind: FeatureKind,
    normalisation: (&[f32], &[f32]),
    mut progress: impl FnMut(usize),
) -> Result<Tensor> {
    let c = &encoder.config;
    if set.channels != c.in_channels {
        return Err(Error::Config(format!(
            "data {} has {} channel(s) but the encoder expects {}",
            set.name, set.channels, c.in_channels
        )));
    }
    let size = c.image_size;
    let per = c.in_channels * size * size;
    let mut rows = Vec::with_capacity(set.len() * c.width);
    for start in (0..set.len()).step_by(256) {
        let end = (start + 256).min(set.len());
        let mut pixels = vec![0.0f32; (end - start) * per];
        // A folder's images are decoded here: in parallel, between the encoder's batches.
        pixels
            .par_chunks_mut(per)
            .zip(start..end)
            .try_for_each(|(out, i)| {
                prepare(set, i, size, normalisation.0, normalisation.1, out)
            })?;
        let batch = Tensor::from_vec(pixels, &[end - start, c.in_channels, size, size])?
            .to_device(encoder.device())?;
        let out = encoder.forward(&batch, None)?;
        let features = match kind {
            FeatureKind::ClsPrenorm => out.cls_prenorm,
            FeatureKind::Cls => out.cls,
            FeatureKind::MeanTokens => out.mean_tokens,
        };
        rows.extend(features.to_vec_f32());
        progress(end);
    }
    Ok(Tensor::from_vec(rows, &[set.len(), c.width])?)
}

/// Raw pixels (normalised) as features, `[N, C·H·W]`; every image must have the same size.
pub fn pixel_features(set: &ImageSet) -> Result<Tensor> {
    if set.is_empty() {
        return Err(Error::Config(format!("data {} is empty", set.name)));
    }
    let first = set.image(0)?;
    let (h, w) = (first.height, first.width);
    let per = set.channels * h * w;
    let (mean, std) = default_normalisation(set.channels);
    let mut rows = vec![0.0f32; set.len() * per];
    for i in 0..set.len() {
        let img = set.image(i)?;
        if (img.height, img.width) != (h, w) {
            return Err(Error::Config(format!(
                "raw-pixel features need images of one size; image {i} is {}×{}, not {h}×{w}",
                img.height, img.width
            )));
        }
        normalize_into(
            &FloatImage::from_image(&img),
            &mean,
            &std,
            &mut rows[i * per..(i + 1) * per],
        );
    }
    Ok(Tensor::from_vec(rows, &[set.len(), per])?)
}

/// MSN's preprocessing (cyanure's `preprocess(centering=True, normalize=True,
/// columns=False)`): subtract each row's own mean, then scale the row to unit L2 norm.
pub fn preprocess_rows(features: &Tensor) -> Result<Tensor> {
    let centred = features.sub(&features.mean_axis(-1, true)?)?;
    Ok(centred.l2_normalize(1e-12)?)
}

/// Loads an encoder from a file: a checkpoint of `msn pretrain` (its stored
/// configuration; `target` or `anchor` encoder) or plain timm weights (the
/// architecture read off the tensor shapes; `heads` as given, else width/64).
pub fn encoder_from_file(
    path: &Path,
    use_anchor: bool,
    heads: Option<usize>,
) -> Result<(VisionTransformer, Option<Normalisation>)> {
    let (tensors, meta) = vit::read_safetensors(path)?;
    let file = path.display().to_string();
    if meta.contains_key("msn.config") {
        let (config, _, _) = crate::checkpoint::read_config(path)?;
        let mut encoder = VisionTransformer::new(
            config.encoder.clone(),
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0),
        )?;
        let chosen: Vec<(String, Tensor)> = if use_anchor {
            tensors
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("msn.anchor.")
                        .map(|k| (k.to_string(), v.clone()))
                })
                .collect()
        } else {
            tensors
        };
        encoder.load_state_dict(&chosen, &file)?;
        return Ok((encoder, Some((config.views.mean, config.views.std))));
    }
    if use_anchor {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: "holds plain ViT weights, with no anchor encoder; use --encoder target".into(),
        });
    }
    let find = |name: &str| {
        tensors
            .iter()
            .find(|(k, _)| vit::strip_wrappers(k) == name)
            .map(|(_, t)| t.shape().to_vec())
    };
    let missing = |what: &str| Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("has no `{what}`; not a ViT state dict"),
    };
    let patch =
        find("patch_embed.proj.weight").ok_or_else(|| missing("patch_embed.proj.weight"))?;
    let pos = find("pos_embed").ok_or_else(|| missing("pos_embed"))?;
    let depth = (0..)
        .take_while(|i| find(&format!("blocks.{i}.norm1.weight")).is_some())
        .count();
    let fc1 = find("blocks.0.mlp.fc1.weight").ok_or_else(|| missing("blocks.0.mlp.fc1.weight"))?;
    let (width, channels, p) = (patch[0], patch[1], patch[2]);
    let grid = ((pos[1] - 1) as f64).sqrt().round() as usize;
    let config = VitConfig {
        image_size: grid * p,
        patch_size: p,
        in_channels: channels,
        width,
        depth,
        heads: heads.unwrap_or((width / 64).max(1)),
        mlp_ratio: fc1[0] / width.max(1),
    };
    let mut encoder = VisionTransformer::new(
        config,
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0),
    )?;
    encoder.load_state_dict(&tensors, &file)?;
    Ok((encoder, None))
}
