//! The Vision Transformer: embed patches, prepend CLS, add the (resized)
//! positional embedding, drop tokens, run the blocks, normalise the CLS token.

use ops::{DType, Result as OpResult, Tensor};
use rand::Rng;

use crate::init::{kaiming_normal, trunc_normal_02};
use crate::layers::{join, Block, LayerNorm, Linear, Visitor};
use crate::{Error, Result, VitConfig};

/// What one forward pass returns.
#[derive(Clone, Debug)]
pub struct VitOutput {
    /// CLS token after the final norm, `[B, D]`: the input of MSN's head.
    pub cls: Tensor,
    /// The last block's CLS token before the final norm, `[B, D]`: the
    /// representation MSN evaluates.
    pub cls_prenorm: Tensor,
    /// Mean of the last block's patch tokens before the final norm, `[B, D]`.
    pub mean_tokens: Tensor,
}

#[derive(Clone, Debug)]
pub struct VisionTransformer {
    pub config: VitConfig,
    /// The patch convolution as a linear map: weight `[D, C·p·p]` (saved as `[D, C, p, p]`).
    pub patch_embed: Linear,
    /// `[1, 1, D]`
    pub cls_token: Tensor,
    /// `[1, N0 + 1, D]` for the configured image size's grid, CLS slot first.
    pub pos_embed: Tensor,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
}

impl VisionTransformer {
    /// A freshly initialised model (MSN's initialisation).
    pub fn new(config: VitConfig, rng: &mut impl Rng) -> Result<Self> {
        config.validate()?;
        let (c, p, d) = (config.in_channels, config.patch_size, config.width);
        let patch_len = c * p * p;
        let patch_embed = Linear {
            weight: kaiming_normal(rng, &[d, patch_len], patch_len),
            bias: Some(Tensor::zeros(&[d], DType::F32)),
        };
        let cls_token = trunc_normal_02(rng, &[1, 1, d]);
        let pos_embed = trunc_normal_02(rng, &[1, config.grid() * config.grid() + 1, d]);
        let blocks = (0..config.depth)
            .map(|_| Block::new(rng, d, config.heads, config.mlp_ratio))
            .collect();
        Ok(VisionTransformer {
            config,
            patch_embed,
            cls_token,
            pos_embed,
            blocks,
            norm: LayerNorm::new(d, 1e-6),
        })
    }

    /// Visits every parameter with its timm name (the patch weight in its
    /// stored `[D, C·p·p]` shape; [`crate::weights`] converts the layout).
    pub fn visit(&mut self, prefix: &str, f: &mut Visitor) {
        f(join(prefix, "cls_token"), &mut self.cls_token);
        f(join(prefix, "pos_embed"), &mut self.pos_embed);
        self.patch_embed.visit(&join(prefix, "patch_embed.proj"), f);
        for (i, block) in self.blocks.iter_mut().enumerate() {
            block.visit(&join(prefix, &format!("blocks.{i}")), f);
        }
        self.norm.visit(&join(prefix, "norm"), f);
    }

    /// Where the parameters live.
    pub fn device(&self) -> ops::Device {
        self.cls_token.device()
    }

    /// The same network with its parameters on `device`.
    pub fn to_device(&self, device: ops::Device) -> ops::Result<Self> {
        let mut moved = self.clone();
        let mut failure = None;
        moved.visit("", &mut |_, t| match t.to_device(device) {
            Ok(m) => *t = m,
            Err(e) => {
                failure.get_or_insert(e);
            }
        });
        failure.map_or(Ok(moved), Err)
    }

    /// `(name, parameter)` pairs in a fixed order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.clone()
            .visit("", &mut |name, t| out.push((name, t.clone())));
        out
    }

    /// The positional embedding for a `g×g` patch grid, CLS slot first:
    /// `[1, g·g + 1, D]`, bicubically resized from the stored grid when g differs.
    fn pos_embed_for(&self, g: usize) -> OpResult<Tensor> {
        let (g0, d) = (self.config.grid(), self.config.width);
        if g == g0 {
            return Ok(self.pos_embed.clone());
        }
        let cls = self.pos_embed.narrow(1, 0, 1)?;
        let grid = self
            .pos_embed
            .narrow(1, 1, g0 * g0)?
            .reshape(&[g0, g0, d])?
            .permute(&[2, 0, 1])?;
        let resized = grid
            .resize_bicubic(g, g)?
            .permute(&[1, 2, 0])?
            .reshape(&[1, g * g, d])?;
        Tensor::concat(&[&cls, &resized], 1)
    }

    /// The last block's attention from the CLS token to each patch, averaged
    /// over heads: `[B, g·g]` for images of a `g×g` patch grid.
    pub fn cls_attention_map(&self, images: &Tensor) -> Result<Tensor> {
        let b = images.shape()[0];
        let g = images.shape()[2] / self.config.patch_size;
        let tokens = self
            .patch_embed
            .forward(&images.patchify(self.config.patch_size)?)?;
        let cls = self.cls_token.broadcast_to(&[b, 1, self.config.width])?;
        let mut x = Tensor::concat(&[&cls, &tokens], 1)?.add(&self.pos_embed_for(g)?)?;
        let (last, earlier) = self.blocks.split_last().expect("depth ≥ 1");
        for block in earlier {
            x = block.forward(&x)?;
        }
        let attention = last.cls_attention(&x)?.mean_axis(1, false)?;
        Ok(attention.narrow(1, 1, g * g)?)
    }

    /// Runs images `[B, C, H, W]` (square) through the encoder. `keep`, when
    /// given, lists the patch indices (0-based, row-major) that survive token
    /// dropping, the same for every image; they are selected after the
    /// positional embedding is added, in the given order.
    pub fn forward(&self, images: &Tensor, keep: Option<&[usize]>) -> Result<VitOutput> {
        let shape = images.shape();
        if shape.len() != 4
            || shape[1] != self.config.in_channels
            || shape[2] != shape[3]
            || shape[2] < self.config.patch_size
        {
            return Err(Error::Config(format!(
                "expected square images [B, {}, S, S] with S ≥ {}, got {:?}",
                self.config.in_channels, self.config.patch_size, shape
            )));
        }
        let b = shape[0];
        let g = shape[2] / self.config.patch_size;
        let d = self.config.width;
        let tokens = self
            .patch_embed
            .forward(&images.patchify(self.config.patch_size)?)?;
        let cls = self.cls_token.broadcast_to(&[b, 1, d])?;
        let mut x = Tensor::concat(&[&cls, &tokens], 1)?.add(&self.pos_embed_for(g)?)?;
        if let Some(keep) = keep {
            if let Some(&bad) = keep.iter().find(|&&i| i >= g * g) {
                return Err(Error::Config(format!(
                    "kept patch index {bad} is outside the {g}×{g} grid"
                )));
            }
            let rows: Vec<usize> = std::iter::once(0)
                .chain(keep.iter().map(|&i| i + 1))
                .collect();
            x = x.index_select(1, &rows)?;
        }
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let t = x.shape()[1];
        let cls_prenorm = x.narrow(1, 0, 1)?.reshape(&[b, d])?;
        let mean_tokens = if t > 1 {
            x.narrow(1, 1, t - 1)?.mean_axis(1, false)?
        } else {
            cls_prenorm.clone()
        };
        let cls = self.norm.forward(&cls_prenorm)?;
        Ok(VitOutput {
            cls,
            cls_prenorm,
            mean_tokens,
        })
    }
}
