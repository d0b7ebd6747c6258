//! The matrix product on plain FMAs, for every runtime: shared-memory tiling
//! with register blocking, and split-K for products with few output tiles.
//!
//! A cube of 16×16 units computes one `tile`×`tile` block of C (64 or 128),
//! each unit `tile/16` × `tile/16` outputs held in registers. Unit `(ty, tx)`
//! owns rows `ty + 16r` and columns `tx + 16s`, not a contiguous block: then
//! the 16 units of a row read 16 consecutive shared-memory words (no bank
//! conflicts) and write 16 consecutive outputs (coalesced). Per step the cube
//! stages a `tile`×`depth` slice of A and a `depth`×`tile` slice of B, 1024
//! values each (4 per unit), walking each operand along its contiguous axis so
//! that neighbouring units read neighbouring addresses; the slices are stored
//! depth-major, rows padded by 4 words so that transposing stores do not
//! conflict either.
//!
//! A cube may cover only a chunk of the shared dimension `k` (split-K): the
//! cube's `z` position is `split · batch + image`, and each split writes its
//! partial product to its own `[batch, m, n]` block, which [`sum_splits_kernel`]
//! then adds up in a fixed order (deterministic, no atomics).

use cubecl::prelude::*;

use super::operand::staged;
use crate::gpu::runtime::linear_index;

/// Values of each operand staged per step (4 per unit of a 256-unit cube).
pub(super) const STAGED: u32 = 1024;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn tiled_kernel(
    a: &Array<u32>,
    b: &Array<u32>,
    c: &mut Array<f32>,
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    k_chunk: u32,
    #[comptime] tile: u32,
    #[comptime] ta: bool,
    #[comptime] tb: bool,
    #[comptime] bf16: bool,
) {
    let depth = comptime!(STAGED / tile);
    let per_unit = comptime!(tile / 16u32);
    let stride = comptime!(tile + 4u32);
    let image = CUBE_POS_Z % batch;
    let split = CUBE_POS_Z / batch;
    let row0 = CUBE_POS_Y * tile;
    let col0 = CUBE_POS_X * tile;
    let tx = UNIT_POS_X;
    let ty = UNIT_POS_Y;
    let unit = ty * 16u32 + tx;
    let a_base = image * m * k;
    let b_base = image * k * n;
    let k_begin = split * k_chunk;
    let k_end = min(k, k_begin + k_chunk);
    let mut a_tile = SharedMemory::<f32>::new(comptime!((depth * stride) as usize));
    let mut b_tile = SharedMemory::<f32>::new(comptime!((depth * stride) as usize));
    let mut acc = Array::<f32>::new(comptime!((per_unit * per_unit) as usize));
    #[unroll]
    for e in 0..per_unit * per_unit {
        acc[e as usize] = 0.0f32;
    }
    let mut k0 = k_begin;
    while k0 < k_end {
        #[unroll]
        for r in 0..4u32 {
            let e = unit + r * 256u32;
            let sa = staged(a, a_base, row0, k0, e, m, k, k_end, tile, depth, !ta, bf16);
            a_tile[(sa.depth * stride + sa.outer) as usize] = sa.value;
            let sb = staged(b, b_base, col0, k0, e, n, k, k_end, tile, depth, tb, bf16);
            b_tile[(sb.depth * stride + sb.outer) as usize] = sb.value;
        }
        sync_cube();
        #[unroll]
        for kk in 0..depth {
            let mut a_frag = Array::<f32>::new(comptime!(per_unit as usize));
            let mut b_frag = Array::<f32>::new(comptime!(per_unit as usize));
            #[unroll]
            for r in 0..per_unit {
                a_frag[r as usize] = a_tile[(kk * stride + ty + r * 16u32) as usize];
                b_frag[r as usize] = b_tile[(kk * stride + tx + r * 16u32) as usize];
            }
            #[unroll]
            for r in 0..per_unit {
                #[unroll]
                for s in 0..per_unit {
                    acc[(r * per_unit + s) as usize] += a_frag[r as usize] * b_frag[s as usize];
                }
            }
        }
        sync_cube();
        k0 += depth;
    }
    let c_base = CUBE_POS_Z * m * n;
    #[unroll]
    for r in 0..per_unit {
        let i = row0 + ty + r * 16u32;
        #[unroll]
        for s in 0..per_unit {
            let j = col0 + tx + s * 16u32;
            if i < m && j < n {
                c[(c_base + i * n + j) as usize] = acc[(r * per_unit + s) as usize];
            }
        }
    }
}

/// `out[i] = Σ_s parts[s·len + i]`: the partial products of split-K, added
/// in the order of their splits.
#[cube(launch)]
pub(super) fn sum_splits_kernel(parts: &Array<f32>, out: &mut Array<f32>, len: u32, splits: u32) {
    let i = linear_index();
    if i < len {
        let mut total = 0.0f32;
        for s in 0..splits {
            total += parts[(s * len + i) as usize];
        }
        out[i as usize] = total;
    }
}
