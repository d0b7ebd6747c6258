//! The shape of a ViT, and the named presets.

use crate::{Error, Result};

/// Everything that fixes the shapes of a ViT's parameters.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Side of the square image the positional embedding was made for.
    pub image_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: usize,
}

impl VitConfig {
    /// A named preset: `vit-tiny`, `vit-small`, `vit-base`, `vit-large`, each
    /// optionally `/P` for the patch size (default 16), for 224-px RGB images.
    pub fn preset(name: &str) -> Result<Self> {
        let (base, patch) = match name.split_once('/') {
            Some((b, p)) => (
                b,
                p.parse::<usize>()
                    .map_err(|_| Error::UnknownPreset(name.to_string()))?,
            ),
            None => (name, 16),
        };
        let (width, depth, heads) = match base {
            "vit-tiny" => (192, 12, 3),
            "vit-small" => (384, 12, 6),
            "vit-base" => (768, 12, 12),
            "vit-large" => (1024, 24, 16),
            _ => return Err(Error::UnknownPreset(name.to_string())),
        };
        let config = VitConfig {
            image_size: 224,
            patch_size: patch,
            in_channels: 3,
            width,
            depth,
            heads,
            mlp_ratio: 4,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let problem = if self.patch_size == 0 || self.image_size < self.patch_size {
            Some(format!(
                "patch size {} must be between 1 and the image size {}",
                self.patch_size, self.image_size
            ))
        } else if self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            Some(format!(
                "width {} must be a positive multiple of the head count {}",
                self.width, self.heads
            ))
        } else if self.depth == 0 || self.in_channels == 0 || self.mlp_ratio == 0 {
            Some("depth, input channels and MLP ratio must be at least 1".to_string())
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(Error::Config(p)))
    }

    /// Patches per side of the grid the positional embedding was made for.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}
