//! Batched matrix product `C[b] = op(A[b])·op(B[b])`, either operand
//! transposed by its strides (no transposed copy is made), with f32 operands
//! or bf16 ones packed two to a 32-bit word (see [`crate::autocast`]).
//! Accumulation is in f32 in both precisions.
//!
//! Three kernels, and a plan that picks one per product:
//! - [`tiled`] on FMAs, in 128×128 tiles (8×8 outputs per unit) when the
//!   product has enough of them to fill the device, else in 64×64 tiles (4×4);
//! - the same with split-K, when even the 64×64 tiles are too few to fill the
//!   device and the shared dimension is long (a weight gradient, whose `k` is
//!   every token of the batch);
//! - [`tensor_cores`] for bf16 where the runtime has bf16 `cmma` (NVIDIA's
//!   tensor cores); `MSN_GPU_TENSOR_CORES=0` turns it off, to compare.

mod bf16;
mod operand;
mod tensor_cores;
mod tiled;

use std::sync::OnceLock;

use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;

pub(crate) use bf16::pack_bf16;
pub use bf16::PackedBf16;

use super::runtime::{
    alloc, buffer, first_buffer, grid, mixed_devices, on_runtime, tensor, Client, GpuBuffer, BLOCK,
};
use crate::{Result, Tensor};

/// How one product is cut into cubes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// FMAs, `tile`×`tile` blocks of C per cube, `k` cut into `splits` chunks.
    Tiled { tile: u32, splits: u32 },
    /// bf16 `cmma` fragments, 128×128 blocks of C per cube.
    TensorCores,
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Plan::Tiled { tile, splits: 1 } => write!(f, "{tile}×{tile} tiles"),
            Plan::Tiled { tile, splits } => write!(f, "{tile}×{tile} tiles, split-K by {splits}"),
            Plan::TensorCores => write!(f, "tensor cores"),
        }
    }
}

/// Streaming multiprocessors assumed where the runtime does not say (wgpu).
const DEFAULT_MULTIPROCESSORS: u32 = 16;

/// The plan for `batch` products of shape `(m, n, k)` on a device with
/// `multiprocessors` cores of cubes. Large tiles read each operand half as
/// often as small ones, but only pay when there are at least two per core;
/// split-K fills an otherwise idle device when `k` is long, at the price of
/// writing and re-reading `splits` partial products.
pub(crate) fn plan(
    batch: usize,
    (m, n, k): (usize, usize, usize),
    multiprocessors: u32,
    tensor_cores: bool,
) -> Plan {
    if tensor_cores {
        return Plan::TensorCores;
    }
    let cubes = |tile: usize| batch * m.div_ceil(tile) * n.div_ceil(tile);
    let cores = multiprocessors.max(1) as usize;
    if cubes(128) >= 2 * cores {
        return Plan::Tiled {
            tile: 128,
            splits: 1,
        };
    }
    let small = cubes(64).max(1);
    // Each chunk of `k` keeps at least 256 deep, so partial sums stay few.
    let splits = (2 * cores).div_ceil(small).min(k / 256).clamp(1, 16);
    Plan::Tiled {
        tile: 64,
        splits: splits as u32,
    }
}

/// `op(a)·op(b)` for `batch` pairs of `(m×k)·(k×n)` in f32.
pub(crate) fn matmul(
    a: &Tensor,
    b: &Tensor,
    batch: usize,
    dims: (usize, usize, usize),
    transposed: (bool, bool),
) -> Result<Tensor> {
    let ab = first_buffer("matmul", a)?;
    let bb = buffer("matmul", b, ab.device)?;
    let plan = plan(batch, dims, multiprocessors(&ab.client), false);
    launch(ab, bb, batch, dims, transposed, false, plan)
}

/// `op(a)·op(b)` for `batch` pairs of `(m×k)·(k×n)`, bf16 operands, f32 output.
pub(crate) fn matmul_bf16(
    a: &PackedBf16,
    b: &PackedBf16,
    batch: usize,
    dims: (usize, usize, usize),
    transposed: (bool, bool),
) -> Result<Tensor> {
    if a.words.device != b.words.device {
        return Err(mixed_devices("matmul", a.words.device, b.words.device));
    }
    let (m, n, k) = dims;
    debug_assert!(a.len == batch * m * k && b.len == batch * k * n);
    let client = &a.words.client;
    let tensor_cores = has_tensor_cores(client) && tensor_cores_allowed();
    let plan = plan(batch, dims, multiprocessors(client), tensor_cores);
    launch(&a.words, &b.words, batch, dims, transposed, true, plan)
}

/// The product under every plan that `a`'s device can run, each named: for
/// the tests, which must reach every kernel whatever the device's size.
pub(crate) fn matmul_every_plan(
    a: &Tensor,
    b: &Tensor,
    batch: usize,
    dims: (usize, usize, usize),
    transposed: (bool, bool),
    bf16: bool,
) -> Result<Vec<(String, Tensor)>> {
    let mut plans = vec![
        Plan::Tiled {
            tile: 64,
            splits: 1,
        },
        Plan::Tiled {
            tile: 128,
            splits: 1,
        },
        Plan::Tiled {
            tile: 64,
            splits: 3,
        },
        Plan::Tiled {
            tile: 128,
            splits: 2,
        },
    ];
    let ab = first_buffer("matmul", a)?;
    let bb = buffer("matmul", b, ab.device)?;
    if bf16 && has_tensor_cores(&ab.client) {
        plans.push(Plan::TensorCores);
    }
    let packed = if bf16 {
        Some((pack_bf16(a)?, pack_bf16(b)?))
    } else {
        None
    };
    plans
        .into_iter()
        .map(|plan| {
            let product = match &packed {
                Some((pa, pb)) => launch(&pa.words, &pb.words, batch, dims, transposed, true, plan),
                None => launch(ab, bb, batch, dims, transposed, false, plan),
            }?;
            Ok((plan.to_string(), product))
        })
        .collect()
}

fn multiprocessors(client: &Client) -> u32 {
    on_runtime!(client, |c, R| c
        .properties()
        .hardware
        .num_streaming_multiprocessors)
    .unwrap_or(DEFAULT_MULTIPROCESSORS)
}

/// Whether the device multiplies 16×16×16 bf16 fragments into f32 ones.
fn has_tensor_cores(client: &Client) -> bool {
    let bf16 = ElemType::Float(FloatKind::BF16);
    let config = cubecl::ir::features::MmaConfig {
        a_type: bf16.into(),
        b_type: bf16.into(),
        cd_type: ElemType::Float(FloatKind::F32).into(),
        m: 16,
        k: 16,
        n: 16,
    };
    on_runtime!(client, |c, R| c.features().matmul.cmma.contains(&config))
}

/// `MSN_GPU_TENSOR_CORES=0` runs bf16 products on FMAs even where tensor
/// cores exist, to measure what they bring.
fn tensor_cores_allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var("MSN_GPU_TENSOR_CORES").map_or(true, |v| v != "0"))
}

/// Launches `plan` on two operand buffers (f32 values or packed bf16 words).
fn launch(
    ab: &GpuBuffer,
    bb: &GpuBuffer,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    bf16: bool,
    plan: Plan,
) -> Result<Tensor> {
    let out = alloc(ab, batch * m * n);
    if batch * m * n == 0 {
        return tensor(out, &[batch, m, n]);
    }
    let cubes = |tile: u32, depth: usize| {
        CubeCount::Static(
            (n as u32).div_ceil(tile),
            (m as u32).div_ceil(tile),
            depth as u32,
        )
    };
    match plan {
        Plan::TensorCores => {
            on_runtime!(&ab.client, |client, R| {
                tensor_cores::tensor_core_kernel::launch::<R>(
                    client,
                    cubes(tensor_cores::TILE, batch),
                    CubeDim::new_1d(tensor_cores::UNITS),
                    ab.arg::<R>(),
                    bb.arg::<R>(),
                    out.arg::<R>(),
                    m as u32,
                    n as u32,
                    k as u32,
                    ta,
                    tb,
                )
            });
        }
        Plan::Tiled { tile, splits } => {
            // Whole slices per chunk, so that no chunk is empty but the last.
            let depth = tiled::STAGED / tile;
            let chunk = (k as u32).div_ceil(splits).div_ceil(depth).max(1) * depth;
            let splits = (k as u32).div_ceil(chunk).max(1);
            let target = if splits > 1 {
                alloc(ab, splits as usize * batch * m * n)
            } else {
                out.clone()
            };
            on_runtime!(&ab.client, |client, R| tiled::tiled_kernel::launch::<R>(
                client,
                cubes(tile, splits as usize * batch),
                CubeDim::new_2d(16, 16),
                ab.arg::<R>(),
                bb.arg::<R>(),
                target.arg::<R>(),
                m as u32,
                n as u32,
                k as u32,
                batch as u32,
                chunk,
                tile,
                ta,
                tb,
                bf16,
            ));
            if splits > 1 {
                on_runtime!(
                    &ab.client,
                    |client, R| tiled::sum_splits_kernel::launch::<R>(
                        client,
                        grid(out.len, BLOCK),
                        CubeDim::new_1d(BLOCK),
                        target.arg::<R>(),
                        out.arg::<R>(),
                        out.len as u32,
                        splits,
                    )
                );
            }
        }
    }
    tensor(out, &[batch, m, n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_fill_an_h100_at_vit_small_shapes() {
        let tokens = 64 * 197;
        // A forward or input-gradient product: plenty of large tiles.
        assert_eq!(
            plan(1, (tokens, 384, 1536), 132, false),
            Plan::Tiled {
                tile: 128,
                splits: 1
            }
        );
        // A weight gradient of the output projection: 36 small tiles over
        // 12 608 tokens, cut into chunks until two cubes per core.
        assert_eq!(
            plan(1, (384, 384, tokens), 132, false),
            Plan::Tiled {
                tile: 64,
                splits: 8
            }
        );
        // A short shared dimension is never split.
        assert_eq!(
            plan(1, (64, 64, 300), 132, false),
            Plan::Tiled {
                tile: 64,
                splits: 1
            }
        );
        assert_eq!(plan(1, (384, 384, tokens), 132, true), Plan::TensorCores);
    }
}
