//! How the product's kernels read their operands: one value, f32 or a bf16
//! half of a packed word widened to f32 (exactly: bf16 is f32 with its low 16
//! bits cleared); and one value of the slice a cube stages per step.

use cubecl::prelude::*;

/// Element `index` of an operand: an f32 pattern, or one bf16 half of a word
/// widened to f32.
#[cube]
pub(super) fn load(x: &Array<u32>, index: u32, #[comptime] bf16: bool) -> f32 {
    let bits = if bf16 {
        let word = x[(index / 2u32) as usize];
        let mut half = word & 0xFFFF_0000u32;
        if (index & 1u32) == 0u32 {
            half = word << 16u32;
        }
        half
    } else {
        x[index as usize]
    };
    f32::reinterpret(bits)
}

/// One value of a staged slice, at `(outer, depth)` within it.
#[derive(CubeType)]
pub(super) struct Staged {
    pub outer: u32,
    pub depth: u32,
    pub value: f32,
}

/// The `e`-th value of the slice `[outer0, outer0 + width) × [k0, k0 + depth)`
/// of an operand seen as `outer_len` rows (A's rows, or B's columns) along the
/// shared dimension `k`, 0 past `outer_len` or `k_end`. `depth_contiguous`
/// says which axis is contiguous in memory (A untransposed, B transposed);
/// consecutive `e` walk that axis, so that neighbouring units read
/// neighbouring addresses.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn staged(
    x: &Array<u32>,
    base: u32,
    outer0: u32,
    k0: u32,
    e: u32,
    outer_len: u32,
    k: u32,
    k_end: u32,
    #[comptime] width: u32,
    #[comptime] depth: u32,
    #[comptime] depth_contiguous: bool,
    #[comptime] bf16: bool,
) -> Staged {
    let mut outer = e % width;
    let mut along = e / width;
    if depth_contiguous {
        outer = e / depth;
        along = e % depth;
    }
    let mut value = 0.0f32;
    if outer0 + outer < outer_len && k0 + along < k_end {
        let mut at = base + (k0 + along) * outer_len + outer0 + outer;
        if depth_contiguous {
            at = base + (outer0 + outer) * k + k0 + along;
        }
        value = load(x, at, bf16);
    }
    Staged {
        outer,
        depth: along,
        value,
    }
}
