//! Batched matrix product `C[b] = op(A[b])·op(B[b])`, either operand
//! transposed by its strides (no transposed copy is made), with f32 operands
//! or bf16 ones packed two to a 32-bit word (see [`crate::autocast`]).
//!
//! Classic shared-memory tiling: each cube computes a 64×64 tile of C with
//! 16×16 units, each unit a 4×4 block held in registers; per step the cube
//! stages a 64×16 slice of A and a 16×64 slice of B in shared memory.
//! Accumulation is in f32 in both precisions: a bf16 operand is widened to
//! f32 as it is staged, so only the loads from global memory shrink.

use cubecl::prelude::*;

use super::runtime::{
    alloc, buffer, first_buffer, grid, linear_index, mixed_devices, on_runtime, tensor, GpuBuffer,
    BLOCK,
};
use crate::{Result, Tensor};

const TILE: u32 = 64;

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

/// Element `index` of an operand: an f32 pattern, or one bf16 half of a word
/// widened to f32 (exactly: bf16 is f32 with its low 16 bits cleared).
#[cube]
fn load(x: &Array<u32>, index: u32, #[comptime] bf16: bool) -> f32 {
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

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn matmul_kernel(
    a: &Array<u32>,
    b: &Array<u32>,
    c: &mut Array<f32>,
    m: u32,
    n: u32,
    k: u32,
    a_batch: u32,
    a_row: u32,
    a_col: u32,
    b_batch: u32,
    b_row: u32,
    b_col: u32,
    #[comptime] bf16: bool,
) {
    let batch = CUBE_POS_Z;
    let row0 = CUBE_POS_Y * 64u32;
    let col0 = CUBE_POS_X * 64u32;
    let tx = UNIT_POS_X;
    let ty = UNIT_POS_Y;
    let unit = ty * 16u32 + tx;
    let a_base = batch * a_batch;
    let b_base = batch * b_batch;
    let mut a_tile = SharedMemory::<f32>::new(1024usize);
    let mut b_tile = SharedMemory::<f32>::new(1024usize);
    let mut acc = Array::<f32>::new(16usize);
    #[unroll]
    for e in 0..16u32 {
        acc[e as usize] = 0.0f32;
    }
    let mut k0 = 0u32;
    while k0 < k {
        // Each of the 256 units stages 4 elements of each slice.
        #[unroll]
        for r in 0..4u32 {
            let e = unit + r * 256u32;
            // A slice stored depth-major: a_tile[kk·64 + i].
            let i = e / 16u32;
            let kk = e % 16u32;
            let mut va = 0.0f32;
            if row0 + i < m && k0 + kk < k {
                va = load(a, a_base + (row0 + i) * a_row + (k0 + kk) * a_col, bf16);
            }
            a_tile[(kk * 64u32 + i) as usize] = va;
            let kb = e / 64u32;
            let j = e % 64u32;
            let mut vb = 0.0f32;
            if k0 + kb < k && col0 + j < n {
                vb = load(b, b_base + (k0 + kb) * b_row + (col0 + j) * b_col, bf16);
            }
            b_tile[(kb * 64u32 + j) as usize] = vb;
        }
        sync_cube();
        #[unroll]
        for kk in 0..16u32 {
            let mut a_frag = Array::<f32>::new(4usize);
            let mut b_frag = Array::<f32>::new(4usize);
            #[unroll]
            for r in 0..4u32 {
                a_frag[r as usize] = a_tile[(kk * 64u32 + ty * 4u32 + r) as usize];
                b_frag[r as usize] = b_tile[(kk * 64u32 + tx * 4u32 + r) as usize];
            }
            #[unroll]
            for r in 0..4u32 {
                #[unroll]
                for s in 0..4u32 {
                    acc[(r * 4u32 + s) as usize] += a_frag[r as usize] * b_frag[s as usize];
                }
            }
        }
        sync_cube();
        k0 += 16u32;
    }
    let c_base = batch * m * n;
    #[unroll]
    for r in 0..4u32 {
        let i = row0 + ty * 4u32 + r;
        #[unroll]
        for s in 0..4u32 {
            let j = col0 + tx * 4u32 + s;
            if i < m && j < n {
                c[(c_base + i * n + j) as usize] = acc[(r * 4u32 + s) as usize];
            }
        }
    }
}

/// An operand rounded to bf16 on the GPU, packed two values to a word.
#[derive(Clone)]
pub struct PackedBf16 {
    words: GpuBuffer,
    len: usize,
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
    launch(ab, bb, batch, dims, transposed, false)
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
    launch(&a.words, &b.words, batch, dims, transposed, true)
}

/// Launches [`matmul_kernel`] on two operand buffers (f32 values or packed bf16 words).
fn launch(
    ab: &GpuBuffer,
    bb: &GpuBuffer,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    bf16: bool,
) -> Result<Tensor> {
    let a_strides = if ta { [m * k, 1, m] } else { [m * k, k, 1] };
    let b_strides = if tb { [k * n, 1, k] } else { [k * n, n, 1] };
    let out = alloc(ab, batch * m * n);
    if batch * m * n > 0 {
        let count = CubeCount::Static(
            (n as u32).div_ceil(TILE),
            (m as u32).div_ceil(TILE),
            batch as u32,
        );
        on_runtime!(&ab.client, |client, R| matmul_kernel::launch::<R>(
            client,
            count,
            CubeDim::new_2d(16, 16),
            ab.arg::<R>(),
            bb.arg::<R>(),
            out.arg::<R>(),
            m as u32,
            n as u32,
            k as u32,
            a_strides[0] as u32,
            a_strides[1] as u32,
            a_strides[2] as u32,
            b_strides[0] as u32,
            b_strides[1] as u32,
            b_strides[2] as u32,
            bf16,
        ));
    }
    tensor(out, &[batch, m, n])
}
