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

    /// A whole `MR×NR` tile straight into C, whose rows start `ldc` apart
    /// at `c`: added to it, or written over it plus the bias (`first_write`,
    /// as in `RowBlock`). Without registers to spare, through [`Self::tile`].
    ///
    /// # Safety
    /// As [`Self::tile`]; and `c` must point at `MR` rows of `NR` elements,
    /// initialised unless this is the first write.
    #[inline(always)]
    unsafe fn tile_into_c(
        a_panel: &[T],
        b_panel: &[T],
        c: *mut T,
        ldc: usize,
        first_write: Option<Option<&[T]>>,
    ) where
        T: Element,
    {
        let mut tile = [T::zero(); super::MAX_TILE];
        let tile = &mut tile[..Self::MR * Self::NR];
        Self::tile(a_panel, b_panel, tile);
        for (i, row) in tile.chunks_exact(Self::NR).enumerate() {
            // Through pointers: on a first write, C is not initialised yet.
            let c_row = c.add(i * ldc);
            for (j, &t) in row.iter().enumerate() {
                let value = match first_write {
                    Some(Some(bias)) => t + bias[j],
                    Some(None) => t,
                    None => *c_row.add(j) + t,
                };
                c_row.add(j).write(value);
            }
        }
    }
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
        debug_assert!(tile.len() >= 8 * 32);
        let acc = Self::sums(a_panel, b_panel);
        let out = tile.as_mut_ptr();
        for (i, row) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(i * 32), row[0]);
            _mm512_storeu_ps(out.add(i * 32 + 16), row[1]);
        }
    }

    /// The sums go from registers to C: the way through a tile on the stack
    /// cost a store, a load and a store-to-load wait per vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_into_c(
        a_panel: &[f32],
        b_panel: &[f32],
        c: *mut f32,
        ldc: usize,
        first_write: Option<Option<&[f32]>>,
    ) {
        use std::arch::x86_64::*;
        let acc = Self::sums(a_panel, b_panel);
        for (i, row) in acc.iter().enumerate() {
            let c_row = c.add(i * ldc);
            let (lo, hi) = match first_write {
                Some(Some(bias)) => {
                    debug_assert!(bias.len() >= 32);
                    let b = bias.as_ptr();
                    (
                        _mm512_add_ps(row[0], _mm512_loadu_ps(b)),
                        _mm512_add_ps(row[1], _mm512_loadu_ps(b.add(16))),
                    )
                }
                Some(None) => (row[0], row[1]),
                None => (
                    _mm512_add_ps(_mm512_loadu_ps(c_row), row[0]),
                    _mm512_add_ps(_mm512_loadu_ps(c_row.add(16)), row[1]),
                ),
            };
            _mm512_storeu_ps(c_row, lo);
            _mm512_storeu_ps(c_row.add(16), hi);
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx512F32 {
    /// The tile's sums, in registers once inlined.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sums(a_panel: &[f32], b_panel: &[f32]) -> [[std::arch::x86_64::__m512; 2]; 8] {
        use std::arch::x86_64::*;
        let kc = a_panel.len() / 8;
        debug_assert!(b_panel.len() >= kc * 32);
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
        acc
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
