//! Tensors on a GPU: CubeCL kernels for every op, behind the `wgpu` and `cuda`
//! cargo features.
//!
//! The ops call the launchers of this module when their inputs live on a GPU
//! (`Storage::Gpu`). A build without a GPU feature compiles [`disabled`]
//! instead: the same launcher names, each an error, and a [`GpuBuffer`] with no
//! values, so no GPU tensor can exist there and the op code needs no `cfg`.
//!
//! The kernels, one file per family, each tested against the CPU kernels by
//! `ops/tests/gpu_vs_cpu.rs`:
//! - `elementwise`: every unary function and every binary op with NumPy
//!   broadcasting, and the fused elementwise rules of their backward passes;
//! - `copy`: one strided copy that serves permute, broadcast, narrow, concat,
//!   patchify and their backward passes;
//! - `reduce`: sums and maxima along an axis, gathers and their adjoints;
//! - `rows`: row-wise softmax, log-softmax, layer norm, L2 normalisation and
//!   their backward passes, one cube per row with a shared-memory reduction;
//! - `attention`: fused scaled dot-product attention, forward and backward,
//!   that never writes the matrix of probabilities (FlashAttention-2's plan),
//!   over separate tensors or the heads of a packed qkv projection in place;
//! - `matmul`: a batched matrix product, either operand transposed by
//!   strides, in f32 or bf16 (operands packed two to a word, f32
//!   accumulation): shared-memory tiles of 64×64 or 128×128, split-K for
//!   products with few tiles, and tensor cores (`cmma`) for bf16 where the
//!   runtime has them; a plan picks one per product.

use crate::Tensor;

#[cfg(feature = "gpu")]
mod attention;
#[cfg(feature = "gpu")]
mod copy;
#[cfg(feature = "gpu")]
mod elementwise;
#[cfg(feature = "gpu")]
mod matmul;
#[cfg(feature = "gpu")]
mod reduce;
#[cfg(feature = "gpu")]
mod rows;
#[cfg(feature = "gpu")]
mod runtime;

#[cfg(feature = "gpu")]
pub use runtime::GpuBuffer;
#[cfg(feature = "gpu")]
pub(crate) use {
    attention::*, copy::*, elementwise::*, matmul::*, reduce::*, rows::*, runtime::download,
    runtime::synchronize, runtime::upload,
};

#[cfg(not(feature = "gpu"))]
mod disabled;
#[cfg(not(feature = "gpu"))]
pub use disabled::GpuBuffer;
#[cfg(not(feature = "gpu"))]
pub(crate) use disabled::*;

/// An elementwise function of one tensor; `c` is the scalar operand where
/// there is one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Gelu,
    Powf(f64),
    AddScalar(f64),
    MulScalar(f64),
    /// `x·ln x`, 0 at 0: the summand of an entropy.
    XLogX,
}

/// An elementwise function of two tensors (broadcast): the arithmetic ops and
/// the fused rules of the elementwise backward passes (`g` is the output
/// gradient, `x` the op's input, `y` its output).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `g·Φ'(x)` of GELU.
    GeluGrad,
    /// `g / (2y)` of sqrt.
    SqrtGrad,
    /// `−g·y³/2` of rsqrt.
    RsqrtGrad,
    /// `g·(1 − y²)` of tanh.
    TanhGrad,
    /// `g·p·xᵖ⁻¹` of powf.
    PowfGrad(f64),
    /// `g·(ln x + 1)` of x·ln x.
    XLogXGrad,
}

/// A reduction along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduction {
    Sum,
    Max,
}

/// The dimensions of one fused attention launch: `batch` entries of `n`
/// queries and `m` keys, query and key width `d`, value width `e`.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub(crate) struct AttentionDims {
    pub batch: usize,
    pub n: usize,
    pub m: usize,
    pub d: usize,
    pub e: usize,
}

/// Where the fused attention finds each entry's rows, so that it can read and
/// write packed heads in place. Entry `b` is head `b % heads` of image
/// `b / heads`; row `i` of its q starts at `(image·n + i)·q_row + head·d`, of
/// its k at `(image·m + i)·k_row + k_at + head·d`, of its v at
/// `(image·m + i)·v_row + v_at + head·e`, and of its output (and the output's
/// gradient) at `(image·n + i)·out_row + head·e`. The gradients of q, k and v
/// are laid out as q, k and v are.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub(crate) struct AttentionLayout {
    pub heads: usize,
    pub q_row: usize,
    pub k_row: usize,
    pub v_row: usize,
    pub out_row: usize,
    pub k_at: usize,
    pub v_at: usize,
}

#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
impl AttentionLayout {
    /// Separate contiguous `[batch, rows, width]` tensors, as `Tensor::attention` takes.
    pub fn contiguous(d: usize, e: usize) -> Self {
        AttentionLayout {
            heads: 1,
            q_row: d,
            k_row: d,
            v_row: e,
            out_row: e,
            k_at: 0,
            v_at: 0,
        }
    }

    /// One `[images, t, 3·heads·width]` tensor in, `[images, t, heads·width]`
    /// out, as `Tensor::qkv_attention` takes.
    pub fn packed(heads: usize, width: usize) -> Self {
        let model = heads * width;
        AttentionLayout {
            heads,
            q_row: 3 * model,
            k_row: 3 * model,
            v_row: 3 * model,
            out_row: model,
            k_at: model,
            v_at: 2 * model,
        }
    }
}

/// What the fused attention's backward kernels read from the forward pass.
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub(crate) struct AttentionSaved<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub out: &'a Tensor,
    /// The log-sum-exp of each query's scaled scores, `[batch, n]`.
    pub lse: &'a Tensor,
}
