//! The blocked, packed, parallel matrix multiply behind `matmul`, `linear` and attention.
//!
//! The classic BLIS structure: `C[m×n] += A[m×k]·B[k×n]` is cut into blocks of
//! `KC` along k and `MC` rows of C. For each k block, B is packed once into
//! panels of `NR` columns; each row block (one rayon task) packs its slice of A
//! into panels of `MR` rows and runs a register-tiled micro-kernel that keeps an
//! `MR×NR` tile of C in vector registers for the whole k block. Operands are
//! read through (row stride, column stride), so transposed inputs cost nothing
//! beyond a different packing walk.
//!
//! The micro-kernel is plain Rust over fixed-size arrays; it is compiled once
//! per instruction set (AVX-512, AVX2+FMA, portable) and chosen at run time, so
//! one binary runs on any x86-64 and uses the widest vectors it finds.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::Element;

const KC: usize = 256;
const MC: usize = 96;

/// A read-only matrix view: element (i, j) is at `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T: Copy> MatRef<'a, T> {
    /// A row-major `rows × cols` matrix, transposed when `transposed` is set
    /// (the view then has `cols` rows).
    pub fn new(data: &'a [T], cols: usize, transposed: bool) -> Self {
        if transposed {
            MatRef {
                data,
                row_stride: 1,
                col_stride: cols,
            }
        } else {
            MatRef {
                data,
                row_stride: cols,
                col_stride: 1,
            }
        }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

fn detect_isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("MSN_GEMM_PORTABLE").is_none() {
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                    return Isa::Avx512;
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    return Isa::Avx2Fma;
                }
            }
        }
        Isa::Portable
    })
}

/// Element types the multiply is tuned for; picks the register tile per ISA.
pub trait GemmElement: Element {
    #[allow(clippy::too_many_arguments)]
    fn gemm_dispatch(
        m: usize,
        n: usize,
        k: usize,
        a: MatRef<Self>,
        b: MatRef<Self>,
        c: &mut [Self],
        parallel: bool,
    );
}

impl GemmElement for f32 {
    fn gemm_dispatch(
        m: usize,
        n: usize,
        k: usize,
        a: MatRef<f32>,
        b: MatRef<f32>,
        c: &mut [f32],
        parallel: bool,
    ) {
        match detect_isa() {
            Isa::Avx512 => blocked::<f32, 8, 32>(Isa::Avx512, m, n, k, a, b, c, parallel),
            Isa::Avx2Fma => blocked::<f32, 6, 16>(Isa::Avx2Fma, m, n, k, a, b, c, parallel),
            Isa::Portable => blocked::<f32, 4, 8>(Isa::Portable, m, n, k, a, b, c, parallel),
        }
    }
}

impl GemmElement for f64 {
    fn gemm_dispatch(
        m: usize,
        n: usize,
        k: usize,
        a: MatRef<f64>,
        b: MatRef<f64>,
        c: &mut [f64],
        parallel: bool,
    ) {
        match detect_isa() {
            Isa::Avx512 => blocked::<f64, 8, 16>(Isa::Avx512, m, n, k, a, b, c, parallel),
            Isa::Avx2Fma => blocked::<f64, 6, 8>(Isa::Avx2Fma, m, n, k, a, b, c, parallel),
            Isa::Portable => blocked::<f64, 4, 4>(Isa::Portable, m, n, k, a, b, c, parallel),
        }
    }
}

/// `C += A·B` with C row-major `m × n` (leading dimension n). Runs on rayon's
/// threads when `parallel` is set; callers that already parallelise over a
/// batch pass `false`.
pub fn gemm<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    parallel: bool,
) {
    assert_eq!(c.len(), m * n, "C must be m×n");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    T::gemm_dispatch(m, n, k, a, b, c, parallel);
}

#[allow(clippy::too_many_arguments)]
fn blocked<T: Element, const MR: usize, const NR: usize>(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    parallel: bool,
) {
    let n_panels = n.div_ceil(NR);
    let mut packed_b = vec![T::zero(); n_panels * KC * NR];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let panels = &mut packed_b[..n_panels * kc * NR];
        let pack = |(jp, panel): (usize, &mut [T])| pack_b::<T, NR>(b, k0, kc, jp * NR, n, panel);
        if parallel && m * n * kc >= crate::cpu::PARALLEL_MIN_ELEMENTS * 8 {
            panels.par_chunks_mut(kc * NR).enumerate().for_each(pack);
        } else {
            panels.chunks_mut(kc * NR).enumerate().for_each(pack);
        }
        let packed_b = &*panels;
        let row_block = |(ib, c_rows): (usize, &mut [T])| {
            let i0 = ib * MC;
            let mc = c_rows.len() / n;
            let job = RowBlock {
                a,
                i0,
                mc,
                k0,
                kc,
                n,
                packed_b,
                c_rows,
            };
            match isa {
                // SAFETY: the ISA was detected at run time.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { row_block_avx512::<T, MR, NR>(job) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => unsafe { row_block_avx2::<T, MR, NR>(job) },
                _ => row_block::<T, MR, NR>(job),
            }
        };
        if parallel && m > MC {
            c.par_chunks_mut(MC * n).enumerate().for_each(row_block);
        } else {
            c.chunks_mut(MC * n).enumerate().for_each(row_block);
        }
    }
}

/// Packs `kc` rows of B's columns `j0..j0+NR` into `[kc][NR]`, zero-padded past n.
fn pack_b<T: Element, const NR: usize>(
    b: MatRef<T>,
    k0: usize,
    kc: usize,
    j0: usize,
    n: usize,
    out: &mut [T],
) {
    let cols = NR.min(n - j0);
    for (p, row) in out.chunks_exact_mut(NR).enumerate().take(kc) {
        for (jj, slot) in row.iter_mut().enumerate() {
            *slot = if jj < cols {
                b.at(k0 + p, j0 + jj)
            } else {
                T::zero()
            };
        }
    }
}

/// One rayon task: rows `i0..i0+mc` of C for one k block.
struct RowBlock<'a, T> {
    a: MatRef<'a, T>,
    i0: usize,
    mc: usize,
    k0: usize,
    kc: usize,
    n: usize,
    packed_b: &'a [T],
    c_rows: &'a mut [T],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn row_block_avx512<T: Element, const MR: usize, const NR: usize>(job: RowBlock<T>) {
    row_block::<T, MR, NR>(job)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_block_avx2<T: Element, const MR: usize, const NR: usize>(job: RowBlock<T>) {
    row_block::<T, MR, NR>(job)
}

#[inline(always)]
fn row_block<T: Element, const MR: usize, const NR: usize>(job: RowBlock<T>) {
    let RowBlock {
        a,
        i0,
        mc,
        k0,
        kc,
        n,
        packed_b,
        c_rows,
    } = job;
    let m_panels = mc.div_ceil(MR);
    let mut packed_a = vec![T::zero(); m_panels * kc * MR];
    for (ip, panel) in packed_a.chunks_exact_mut(kc * MR).enumerate() {
        let rows = MR.min(mc - ip * MR);
        for (p, col) in panel.chunks_exact_mut(MR).enumerate() {
            for (ii, slot) in col.iter_mut().enumerate() {
                *slot = if ii < rows {
                    a.at(i0 + ip * MR + ii, k0 + p)
                } else {
                    T::zero()
                };
            }
        }
    }
    for (jp, b_panel) in packed_b.chunks_exact(kc * NR).enumerate() {
        let j0 = jp * NR;
        let cols = NR.min(n - j0);
        for (ip, a_panel) in packed_a.chunks_exact(kc * MR).enumerate() {
            let rows = MR.min(mc - ip * MR);
            let tile = micro_kernel::<T, MR, NR>(a_panel, b_panel);
            for (ii, tile_row) in tile.iter().enumerate().take(rows) {
                let c_row = &mut c_rows[(ip * MR + ii) * n + j0..][..cols];
                for (c, &t) in c_row.iter_mut().zip(tile_row) {
                    *c += t;
                }
            }
        }
    }
}

/// The `MR×NR` tile of `A_panel·B_panel`, accumulated in registers.
#[inline(always)]
fn micro_kernel<T: Element, const MR: usize, const NR: usize>(
    a_panel: &[T],
    b_panel: &[T],
) -> [[T; NR]; MR] {
    let mut acc = [[T::zero(); NR]; MR];
    for (a_col, b_row) in a_panel.chunks_exact(MR).zip(b_panel.chunks_exact(NR)) {
        let b_row: &[T; NR] = b_row.try_into().expect("chunks_exact yields NR elements");
        for i in 0..MR {
            let ai = a_col[i];
            for j in 0..NR {
                acc[i][j] = ai.mul_add(b_row[j], acc[i][j]);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: MatRef<f64>, b: MatRef<f64>) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a.at(i, p) * b.at(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn matches_a_naive_loop_at_awkward_sizes_and_transposes() {
        for &(m, n, k) in &[(1, 1, 1), (7, 33, 5), (97, 45, 300), (200, 17, 513)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a: Vec<f64> = (0..m * k)
                    .map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0)
                    .collect();
                let b: Vec<f64> = (0..k * n)
                    .map(|i| ((i * 53 % 97) as f64 - 48.0) / 24.0)
                    .collect();
                let av = MatRef::new(&a, if ta { m } else { k }, ta);
                let bv = MatRef::new(&b, if tb { k } else { n }, tb);
                let mut c = vec![0.0; m * n];
                gemm(m, n, k, av, bv, &mut c, true);
                let want = naive(m, n, k, av, bv);
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        (x - y).abs() < 1e-9 * (1.0 + y.abs()),
                        "{m}x{n}x{k} {ta} {tb}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
