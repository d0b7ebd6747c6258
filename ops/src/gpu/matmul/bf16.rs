//! bf16 operands on the GPU: f32 values rounded to bf16 (ties to even) and
//! packed two to a 32-bit word, which halves what a product reads from global
//! memory ([`super::operand::load`] widens them back).

use cubecl::prelude::*;

use super::super::runtime::{
    alloc, first_buffer, grid, linear_index, on_runtime, GpuBuffer, BLOCK,
};
use crate::{Result, Tensor};

/// `x` rounded to bf16 (ties to even), as the 16 high bits of its f32 pattern;
/// a NaN stays a quiet NaN. The same rounding as `half::bf16::from_f32`.
#[cube]
fn bf16_bits(bits: u32) -> u32 {
    let mut rounded = (bits + 0x7FFFu32 + ((bits >> 16u32) & 1u32)) >> 16u32;
    if (bits & 0x7FFF_FFFFu32) > 0x7F80_0000u32 {
        rounded = (bits >> 16u32) | 0x0040u32;
    }
    rounded
}

/// Rounds `len` f32 values to bf16, two to a word: value `2w` in the low half
/// of word `w`, value `2w + 1` in its high half (0 past the end).
#[cube(launch)]
fn pack_bf16_kernel(x: &Array<u32>, words: &mut Array<u32>, len: u32) {
    let w = linear_index();
    if w * 2u32 < len {
        let low = bf16_bits(x[(w * 2u32) as usize]);
        let mut high = 0u32;
        if w * 2u32 + 1u32 < len {
            high = bf16_bits(x[(w * 2u32 + 1u32) as usize]);
        }
        words[w as usize] = low | (high << 16u32);
    }
}

/// An operand rounded to bf16 on the GPU, packed two values to a word.
#[derive(Clone)]
pub struct PackedBf16 {
    pub(super) words: GpuBuffer,
    pub(super) len: usize,
}

/// `t`'s values rounded to bf16 and packed (see [`pack_bf16_kernel`]).
pub(crate) fn pack_bf16(t: &Tensor) -> Result<PackedBf16> {
    let tb = first_buffer("matmul", t)?;
    let words = alloc(tb, tb.len.div_ceil(2));
    if tb.len > 0 {
        on_runtime!(&tb.client, |client, R| pack_bf16_kernel::launch::<R>(
            client,
            grid(words.len, BLOCK),
            CubeDim::new_1d(BLOCK),
            tb.arg::<R>(),
            words.arg::<R>(),
            tb.len as u32,
        ));
    }
    Ok(PackedBf16 { words, len: tb.len })
}
