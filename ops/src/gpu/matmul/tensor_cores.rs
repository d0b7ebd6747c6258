//! The bf16 matrix product on tensor cores, through CubeCL's `cmma` (CUDA's
//! WMMA: 16×16×16 fragments, bf16 operands, f32 accumulators). Used where the
//! runtime reports that shape and those types (NVIDIA from Ampere on); every
//! other device runs the bf16 product on FMAs ([`super::tiled`]).
//!
//! A cube of 8 planes (warps) of 32 units computes a 128×128 block of C. Each
//! plane owns a 32×64 block: 2×4 accumulator fragments, which per 16-deep step
//! take 2 fragments of A and 4 of B from shared memory (6 loads for 8 products).
//! Per 32-deep step the cube stages a 128×32 slice of A and a 32×128 slice of
//! B as bf16, walking each operand along its contiguous axis; both are stored
//! the way the fragments read them (row-major), rows padded by 8 values to
//! spread the fragment loads over the banks while keeping every fragment's
//! start 32-byte aligned, as WMMA requires. The results leave through a
//! 16×16 scratch block per plane, so that edge tiles are written with bounds
//! checks.

use cubecl::prelude::*;
use half::bf16;

use super::operand::staged;

/// Rows and columns of C per cube.
pub(super) const TILE: u32 = 128;
/// Units per cube: 8 planes of 32.
pub(super) const UNITS: u32 = 256;
/// Depth of the staged slices.
const DEPTH: u32 = 32;
/// Row strides of the staged slices, in values (a multiple of 8 for WMMA).
const A_STRIDE: u32 = DEPTH + 8;
const B_STRIDE: u32 = TILE + 8;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn tensor_core_kernel(
    a: &Array<u32>,
    b: &Array<u32>,
    c: &mut Array<f32>,
    m: u32,
    n: u32,
    k: u32,
    #[comptime] ta: bool,
    #[comptime] tb: bool,
) {
    let image = CUBE_POS_Z;
    let row0 = CUBE_POS_Y * TILE;
    let col0 = CUBE_POS_X * TILE;
    let unit = UNIT_POS;
    let plane = unit / 32u32;
    let lane = unit % 32u32;
    let plane_row = (plane / 2u32) * 32u32;
    let plane_col = (plane % 2u32) * 64u32;
    let a_base = image * m * k;
    let b_base = image * k * n;
    let a_len = comptime!((TILE * A_STRIDE) as usize);
    let b_len = comptime!((DEPTH * B_STRIDE) as usize);
    let mut a_stage = SharedMemory::<bf16>::new_aligned(a_len, 32usize);
    let mut b_stage = SharedMemory::<bf16>::new_aligned(b_len, 32usize);
    let mut scratch = SharedMemory::<f32>::new_aligned(comptime!((8 * 256) as usize), 32usize);

    let mut accumulators = Sequence::<cmma::Matrix<f32>>::new();
    #[unroll]
    for _ in 0..8usize {
        accumulators.push(cmma::Matrix::<f32>::from_value(
            cmma::MatrixIdent::Accumulator,
            16usize,
            16usize,
            16usize,
            cmma::MatrixLayout::Undefined,
            0.0f32,
        ));
    }
    let a_frags = operand_fragments(cmma::MatrixIdent::A, 2usize);
    let b_frags = operand_fragments(cmma::MatrixIdent::B, 4usize);

    let mut k0 = 0u32;
    while k0 < k {
        // 4096 values of each slice, 16 per unit.
        #[unroll]
        for r in 0..16u32 {
            let e = unit + r * UNITS;
            let sa = staged(a, a_base, row0, k0, e, m, k, k, TILE, DEPTH, !ta, true);
            a_stage[(sa.outer * A_STRIDE + sa.depth) as usize] = bf16::cast_from(sa.value);
            let sb = staged(b, b_base, col0, k0, e, n, k, k, TILE, DEPTH, tb, true);
            b_stage[(sb.depth * B_STRIDE + sb.outer) as usize] = bf16::cast_from(sb.value);
        }
        sync_cube();
        #[unroll]
        for step in 0..2u32 {
            #[unroll]
            for fr in 0..2usize {
                let start = (plane_row + (fr as u32) * 16u32) * A_STRIDE + step * 16u32;
                cmma::load(
                    a_frags.index(fr),
                    &a_stage.slice(start as usize, a_len),
                    A_STRIDE,
                );
            }
            #[unroll]
            for fc in 0..4usize {
                let start = step * 16u32 * B_STRIDE + plane_col + (fc as u32) * 16u32;
                cmma::load(
                    b_frags.index(fc),
                    &b_stage.slice(start as usize, b_len),
                    B_STRIDE,
                );
            }
            #[unroll]
            for fr in 0..2usize {
                #[unroll]
                for fc in 0..4usize {
                    let acc = accumulators.index(fr * 4usize + fc);
                    cmma::execute::<bf16, bf16, f32, f32>(
                        a_frags.index(fr),
                        b_frags.index(fc),
                        acc,
                        acc,
                    );
                }
            }
        }
        sync_cube();
        k0 += DEPTH;
    }

    let own = (plane * 256u32) as usize;
    let c_base = image * m * n;
    #[unroll]
    for fr in 0..2usize {
        #[unroll]
        for fc in 0..4usize {
            cmma::store(
                &mut scratch.slice_mut(own, own + 256usize),
                accumulators.index(fr * 4usize + fc),
                16u32,
                cmma::MatrixLayout::RowMajor,
            );
            sync_plane();
            #[unroll]
            for q in 0..8u32 {
                let at = lane + q * 32u32;
                let i = row0 + plane_row + (fr as u32) * 16u32 + at / 16u32;
                let j = col0 + plane_col + (fc as u32) * 16u32 + at % 16u32;
                if i < m && j < n {
                    c[(c_base + i * n + j) as usize] = scratch[own + at as usize];
                }
            }
            sync_plane();
        }
    }
}

/// `count` bf16 operand fragments (`ident` A or B), row-major, loaded later.
#[cube]
fn operand_fragments(
    #[comptime] ident: cmma::MatrixIdent,
    #[comptime] count: usize,
) -> Sequence<cmma::Matrix<bf16>> {
    let mut fragments = Sequence::<cmma::Matrix<bf16>>::new();
    #[unroll]
    for _ in 0..count {
        fragments.push(unsafe {
            cmma::Matrix::<bf16>::uninitialized(
                ident,
                16usize,
                16usize,
                16usize,
                cmma::MatrixLayout::RowMajor,
            )
        });
    }
    fragments
}
