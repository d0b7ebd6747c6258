//! The layers of a ViT block: linear, layer norm, attention + MLP block.
//!
//! Each layer names its parameters as timm does and lets a caller visit them
//! (to watch them on a tape, update them, average them, save them).

use ops::{Result, Tensor};
use rand::Rng;

use crate::init::trunc_normal_02;

/// Calls `f(full name, parameter)` for each parameter under `prefix`.
pub type Visitor<'a> = dyn FnMut(String, &mut Tensor) + 'a;

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// `y = x·Wᵀ + b`, weight `[out, in]` as PyTorch stores it.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Truncated-normal(0.02) weight, zero bias.
    pub fn new(rng: &mut impl Rng, inputs: usize, outputs: usize, bias: bool) -> Self {
        Linear {
            weight: trunc_normal_02(rng, &[outputs, inputs]),
            bias: bias.then(|| Tensor::zeros(&[outputs], ops::DType::F32)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// `gelu(forward(x))`, the bias added inside the fused `bias_gelu` pass.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => x.linear(&self.weight, None)?.bias_gelu(b),
            None => self.forward(x)?.gelu(),
        }
    }

    pub fn visit(&mut self, prefix: &str, f: &mut Visitor) {
        f(join(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(join(prefix, "bias"), b);
        }
    }
}

/// Layer norm over the last axis with affine parameters.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(width: usize, eps: f64) -> Self {
        LayerNorm {
            weight: Tensor::ones(&[width], ops::DType::F32),
            bias: Tensor::zeros(&[width], ops::DType::F32),
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(&self.weight, &self.bias, self.eps)
    }

    pub fn visit(&mut self, prefix: &str, f: &mut Visitor) {
        f(join(prefix, "weight"), &mut self.weight);
        f(join(prefix, "bias"), &mut self.bias);
    }
}

/// A pre-norm transformer block: `x + Attn(LN1(x))`, then `x + MLP(LN2(x))`.
#[derive(Clone, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub qkv: Linear,
    pub proj: Linear,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub heads: usize,
}

impl Block {
    pub fn new(rng: &mut impl Rng, width: usize, heads: usize, mlp_ratio: usize) -> Self {
        Block {
            norm1: LayerNorm::new(width, 1e-6),
            qkv: Linear::new(rng, width, 3 * width, true),
            proj: Linear::new(rng, width, width, true),
            norm2: LayerNorm::new(width, 1e-6),
            fc1: Linear::new(rng, width, mlp_ratio * width, true),
            fc2: Linear::new(rng, mlp_ratio * width, width, true),
            heads,
        }
    }

    /// `x: [B, T, D]` → `[B, T, D]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.add(&self.attention(&self.norm1.forward(x)?)?)?;
        let hidden = self.fc1.forward_gelu(&self.norm2.forward(&x)?)?;
        x.add(&self.fc2.forward(&hidden)?)
    }

    /// Multi-head self-attention. The qkv projection's rows are
    /// [q of all heads | k | v], each head's slice contiguous (timm's layout),
    /// which `qkv_attention` reads in place.
    fn attention(&self, h: &Tensor) -> Result<Tensor> {
        let dh = h.shape()[2] / self.heads;
        let attended = self
            .qkv
            .forward(h)?
            .qkv_attention(self.heads, (dh as f64).powf(-0.5))?;
        self.proj.forward(&attended)
    }

    /// The CLS token's attention over all tokens, `[B, heads, T]` (softmax over keys).
    pub fn cls_attention(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let dh = d / self.heads;
        let qkv = self
            .qkv
            .forward(&self.norm1.forward(x)?)?
            .reshape(&[b, t, 3, self.heads, dh])?
            .permute(&[2, 0, 3, 1, 4])?;
        let q = qkv
            .narrow(0, 0, 1)?
            .reshape(&[b, self.heads, t, dh])?
            .narrow(2, 0, 1)?;
        let k = qkv.narrow(0, 1, 1)?.reshape(&[b, self.heads, t, dh])?;
        let scores = q
            .matmul_nt(&k)?
            .mul_scalar((dh as f64).powf(-0.5))?
            .softmax()?;
        scores.reshape(&[b, self.heads, t])
    }

    pub fn visit(&mut self, prefix: &str, f: &mut Visitor) {
        self.norm1.visit(&join(prefix, "norm1"), f);
        self.qkv.visit(&join(prefix, "attn.qkv"), f);
        self.proj.visit(&join(prefix, "attn.proj"), f);
        self.norm2.visit(&join(prefix, "norm2"), f);
        self.fc1.visit(&join(prefix, "mlp.fc1"), f);
        self.fc2.visit(&join(prefix, "mlp.fc2"), f);
    }
}
