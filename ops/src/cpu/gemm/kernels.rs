//! The register-tiled micro-kernels of the gemm, one per instruction set:
//! each computes an `MR×NR` tile of C from a packed panel of A and one of B.

use crate::Element;

/// A register-tiled micro-kernel: the `MR×NR` tile of `A_panel·B_panel`, where
/// the panels hold `kc` steps of `MR` (A) and `NR` (B) packed values.
pub(super) trait MicroKernel<T>: Send + Sync {
    const MR: usize;
    const NR: usize;
    /// Writes the tile row-major into `tile` (`MR·NR` values).
    ///
    /// # Safety
    /// The CPU must support the instruction set the kernel was written for.
    unsafe fn tile(a_panel: &[T], b_panel: &[T], tile: &mut [T]);
}

/// Plain Rust over fixed-size arrays; the compiler vectorises it for whatever
/// instruction set the calling row block was compiled for.
pub(super) struct Portable<const MR: usize, const NR: usize>;

impl<T: Element, const MR: usize, const NR: usize> MicroKernel<T> for Portable<MR, NR> {
    const MR: usize = MR;
    const NR: usize = NR;
    #[inline(always)]
    unsafe fn tile(a_panel: &[T], b_panel: &[T], tile: &mut [T]) {
        let mut acc = [[T::zero(); NR]; MR];
        for (a_col, b_row) in a_panel.chunks_exact(MR).zip(b_panel.chunks_exact(NR)) {
            for i in 0..MR {
                let ai = a_col[i];
                for j in 0..NR {
                    acc[i][j] = ai.mul_add(b_row[j], acc[i][j]);
                }
            }
        }
        for (row, acc_row) in tile.chunks_exact_mut(NR).zip(&acc) {
            row.copy_from_slice(acc_row);
        }
    }
}

/// f32 on AVX-512: an 8×32 tile in 16 zmm accumulators; each k step loads two
/// vectors of B and broadcasts eight values of A straight into the FMAs.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx512F32;

#[cfg(target_arch = "x86_64")]
impl MicroKernel<f32> for Avx512F32 {
    const MR: usize = 8;
    const NR: usize = 32;
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(a_panel: &[f32], b_panel: &[f32], tile: &mut [f32]) {
        use std::arch::x86_64::*;
        let kc = a_panel.len() / 8;
        debug_assert!(b_panel.len() >= kc * 32 && tile.len() >= 8 * 32);
        let (a, b) = (a_panel.as_ptr(), b_panel.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); 2]; 8];
        for p in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(p * 32));
            let b1 = _mm512_loadu_ps(b.add(p * 32 + 16));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(p * 8 + i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
        }
        let out = tile.as_mut_ptr();
        for (i, row) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(i * 32), row[0]);
            _mm512_storeu_ps(out.add(i * 32 + 16), row[1]);
        }
    }
}

/// f32 on AVX2: a 6×16 tile in 12 ymm accumulators.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2F32;

#[cfg(target_arch = "x86_64")]
impl MicroKernel<f32> for Avx2F32 {
    const MR: usize = 6;
    const NR: usize = 16;
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile(a_panel: &[f32], b_panel: &[f32], tile: &mut [f32]) {
        use std::arch::x86_64::*;
        let kc = a_panel.len() / 6;
        debug_assert!(b_panel.len() >= kc * 16 && tile.len() >= 6 * 16);
        let (a, b) = (a_panel.as_ptr(), b_panel.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * 16));
            let b1 = _mm256_loadu_ps(b.add(p * 16 + 8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_set1_ps(*a.add(p * 6 + i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
        }
        let out = tile.as_mut_ptr();
        for (i, row) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(i * 16), row[0]);
            _mm256_storeu_ps(out.add(i * 16 + 8), row[1]);
        }
    }
}
