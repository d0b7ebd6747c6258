//! The register-tiled micro-kernels of the gemm, one per instruction set:
//! each computes an `MR×NR` tile of C from a packed panel of A and one of B.

use crate::Element;

/// The `MR` rows of A that a micro-kernel reads for one tile, `kc` k steps
/// of them: a panel packed as `pack_panel` writes it, or A where it lies,
/// whose rows or columns are contiguous (`row_major` says which).
#[derive(Clone, Copy)]
pub(super) struct APanel<T> {
    pub ptr: *const T,
    /// A's rows are contiguous along k (`col_stride` 1, `row_stride` the
    /// leading dimension); otherwise `row_stride` is 1.
    pub row_major: bool,
    /// The stride of the axis that is not contiguous.
    pub stride: usize,
    pub kc: usize,
}

impl<T> APanel<T> {
    /// A panel packed as `pack_panel` writes it: `kc` groups of `mr` values.
    pub fn packed(panel: &[T], mr: usize) -> Self {
        APanel {
            ptr: panel.as_ptr(),
            row_major: false,
            stride: mr,
            kc: panel.len() / mr,
        }
    }

    /// The address of value (i, p).
    ///
    /// # Safety
    /// (i, p) must lie inside the panel.
    #[inline(always)]
    unsafe fn at(&self, i: usize, p: usize) -> *const T {
        if self.row_major {
            self.ptr.add(i * self.stride + p)
        } else {
            self.ptr.add(p * self.stride + i)
        }
    }
}

/// A register-tiled micro-kernel: the `MR×NR` tile of `A_panel·B_panel`, where
/// the B panel holds `kc` steps of `NR` packed values.
pub(super) trait MicroKernel<T>: Send + Sync {
    const MR: usize;
    const NR: usize;
    /// Writes the tile row-major into `tile` (`MR·NR` values).
    ///
    /// # Safety
    /// The CPU must support the instruction set the kernel was written for;
    /// `a` must hold `MR` rows of `kc` values; `b_panel`, `kc·NR`.
    unsafe fn tile(a: APanel<T>, b_panel: &[T], tile: &mut [T]);

    /// A whole `MR×NR` tile straight into C, whose rows start `ldc` apart
    /// at `c`: added to it, or written over it plus the bias (`first_write`,
    /// as in `RowBlock`). Without registers to spare, through [`Self::tile`].
    ///
    /// # Safety
    /// As [`Self::tile`]; and `c` must point at `MR` rows of `NR` elements,
    /// initialised unless this is the first write.
    #[inline(always)]
    unsafe fn tile_into_c(
        a: APanel<T>,
        b_panel: &[T],
        c: *mut T,
        ldc: usize,
        first_write: Option<Option<&[T]>>,
    ) where
        T: Element,
    {
        let mut tile = [T::zero(); super::MAX_TILE];
        let tile = &mut tile[..Self::MR * Self::NR];
        Self::tile(a, b_panel, tile);
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
    unsafe fn tile(a: APanel<T>, b_panel: &[T], tile: &mut [T]) {
        let mut acc = [[T::zero(); NR]; MR];
        for (p, b_row) in b_panel.chunks_exact(NR).take(a.kc).enumerate() {
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let ai = *a.at(i, p);
                for (acc, &b) in acc_row.iter_mut().zip(b_row) {
                    *acc = ai.mul_add(b, *acc);
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
    unsafe fn tile(a: APanel<f32>, b_panel: &[f32], tile: &mut [f32]) {
        use std::arch::x86_64::*;
        debug_assert!(tile.len() >= 8 * 32);
        let acc = Self::sums(a, b_panel);
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
        a: APanel<f32>,
        b_panel: &[f32],
        c: *mut f32,
        ldc: usize,
        first_write: Option<Option<&[f32]>>,
    ) {
        use std::arch::x86_64::*;
        let acc = Self::sums(a, b_panel);
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
    unsafe fn sums(a: APanel<f32>, b_panel: &[f32]) -> [[std::arch::x86_64::__m512; 2]; 8] {
        debug_assert!(b_panel.len() >= a.kc * 32);
        let b = b_panel.as_ptr();
        if a.row_major {
            Self::sums_from::<true>(a, b)
        } else {
            Self::sums_from::<false>(a, b)
        }
    }

    /// Each k step loads two vectors of B and broadcasts eight values of A
    /// straight into the FMAs, from eight runs of k (`ROW_MAJOR`) or one
    /// run of eight rows per k.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sums_from<const ROW_MAJOR: bool>(
        a: APanel<f32>,
        b: *const f32,
    ) -> [[std::arch::x86_64::__m512; 2]; 8] {
        use std::arch::x86_64::*;
        let mut acc = [[_mm512_setzero_ps(); 2]; 8];
        for p in 0..a.kc {
            let b0 = _mm512_loadu_ps(b.add(p * 32));
            let b1 = _mm512_loadu_ps(b.add(p * 32 + 16));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = if ROW_MAJOR {
                    _mm512_set1_ps(*a.ptr.add(i * a.stride + p))
                } else {
                    _mm512_set1_ps(*a.ptr.add(p * a.stride + i))
                };
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
    unsafe fn tile(a: APanel<f32>, b_panel: &[f32], tile: &mut [f32]) {
        debug_assert!(b_panel.len() >= a.kc * 16 && tile.len() >= 6 * 16);
        let b = b_panel.as_ptr();
        if a.row_major {
            Self::tile_from::<true>(a, b, tile)
        } else {
            Self::tile_from::<false>(a, b, tile)
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx2F32 {
    /// As [`Avx512F32::sums_from`], six rows of two ymm vectors.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_from<const ROW_MAJOR: bool>(a: APanel<f32>, b: *const f32, tile: &mut [f32]) {
        use std::arch::x86_64::*;
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for p in 0..a.kc {
            let b0 = _mm256_loadu_ps(b.add(p * 16));
            let b1 = _mm256_loadu_ps(b.add(p * 16 + 8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = if ROW_MAJOR {
                    _mm256_set1_ps(*a.ptr.add(i * a.stride + p))
                } else {
                    _mm256_set1_ps(*a.ptr.add(p * a.stride + i))
                };
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
