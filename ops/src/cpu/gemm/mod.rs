//! The blocked, packed, parallel matrix multiply behind `matmul`, `linear`
//! and attention: its entry points, operand views and tuning constants. The
//! loops are in `blocked.rs`, the micro-kernels in `kernels.rs`, packing in
//! `pack.rs`, the cut into tasks in `split.rs`, attention's small products in
//! `small.rs`.
//!
//! The classic BLIS structure: `C[m×n] += A[m×k]·B[k×n]` is cut into blocks of
//! `KC` along k and at most `MC` rows of C. For each k block, B is packed once
//! into panels of `NR` columns; each row block (one rayon task, or several
//! when it is cut into column chunks too: `split.rs`) packs its slice of A
//! into panels of `MR` rows and runs a register-tiled micro-kernel that keeps an
//! `MR×NR` tile of C in vector registers for the whole k block. Operands are
//! read through (row stride, column stride), so transposed inputs cost nothing
//! beyond a different packing walk. When B is small enough to stay in cache
//! packed whole (`RESIDENT_B_BYTES`), it is packed once for every k block
//! and each row block walks the k blocks itself, so its rows of C stay hot.
//!
//! The micro-kernel is plain Rust over fixed-size arrays; it is compiled once
//! per instruction set (AVX-512, AVX2+FMA, portable) and chosen at run time, so
//! one binary runs on any x86-64 and uses the widest vectors it finds.
//!
//! [`gemm`] adds the product to an existing C; [`gemm_new`] returns a fresh C
//! (plus a bias per column) whose elements the first k block writes rather
//! than adds to, so the buffer is never zeroed first. Every product counts its
//! 2·m·n·k operations in [`product_flops`], for `msn bench`'s distance to the
//! machine's peak.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

mod blocked;
mod kernels;
mod pack;
mod small;
mod split;
mod transposed;

use self::blocked::blocked;
use self::kernels::Portable;
#[cfg(target_arch = "x86_64")]
use self::kernels::{Avx2F32, Avx512F32};
use super::scratch::ScratchElement;
use super::simd::{detect_isa, Isa};

const KC: usize = 256;
const MC: usize = 96;
/// A packed B up to this size is packed whole, every k block at once, and
/// each row block then runs all its k blocks in turn while its rows of C stay
/// in cache: C is read and written once instead of once per k block, and the
/// threads meet once instead of twice per k block. Each row block streams B
/// from the shared L3, a k block at a time, so the budget is half of a
/// 32 MiB L3. (It was 640 KiB, to stay in L2; at 8 MiB the weight gradients,
/// whose B is every token, went from 54–57 % to 68–79 % of the FMA peak; at
/// 16 MiB the MLP's second weight gradient, 15.7 MB of B, is resident too,
/// which on 16 threads spared it 20 rounds of hand-offs: 530 → 629 GFLOP/s,
/// the step +8 %; on 2 threads it made no difference.)
const RESIDENT_B_BYTES: usize = 16 * 1024 * 1024;
/// The largest micro-kernel tile, MR·NR (AVX-512's 8×32): room for any
/// kernel's tile on the stack, so a row block allocates nothing for it.
const MAX_TILE: usize = 8 * 32;

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

    /// The same matrix read transposed: no data moves.
    pub fn transposed(self) -> Self {
        MatRef {
            data: self.data,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// The same view with f32 elements.
    ///
    /// # Safety
    /// T must be f32.
    unsafe fn as_f32(self) -> MatRef<'a, f32> {
        MatRef {
            data: std::slice::from_raw_parts(self.data.as_ptr() as *const f32, self.data.len()),
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// Floating-point operations of every product since the process started:
/// 2·m·n·k each, the multiply and the add of every term (BLAS's convention;
/// the zero padding of partial tiles is not counted).
static PRODUCT_FLOPS: AtomicU64 = AtomicU64::new(0);

/// The floating-point operations of every CPU matrix product so far: the
/// forward and backward products of linear layers, `matmul` and attention
/// all go through [`gemm_strided`]. Take the difference across a step to
/// count the step's. One relaxed atomic add per product, which is at least
/// thousands of multiply-adds: no measurable cost.
pub fn product_flops() -> u64 {
    PRODUCT_FLOPS.load(Ordering::Relaxed)
}

/// [`blocked`] with one element type's micro-kernel for one ISA.
type Blocked<T> =
    for<'c> fn(Isa, usize, usize, usize, MatRef<T>, MatRef<T>, Output<'c, T>, usize, bool);

/// Where a product goes, and what C holds before it. Public only because
/// [`GemmElement`] names it; no public function takes one.
pub enum Output<'c, T> {
    /// `C += A·B` into an initialised C.
    Accumulate(&'c mut [MaybeUninit<T>]),
    /// `C = A·B + bias` (the bias, one value per column, or none) into a C
    /// that may hold anything: the first k block writes every element, and
    /// later ones add to what it wrote.
    Overwrite(&'c mut [MaybeUninit<T>], Option<&'c [T]>),
}

impl<'c, T> Output<'c, T> {
    /// C, and how the product goes into it: `None` to add to it, or
    /// `Some(bias)` to write over it (A·B plus the bias, if any).
    fn into_parts(self) -> (&'c mut [MaybeUninit<T>], Option<Option<&'c [T]>>) {
        match self {
            Output::Accumulate(c) => (c, None),
            Output::Overwrite(c, bias) => (c, Some(bias)),
        }
    }
}

/// Element types the multiply is tuned for; picks the micro-kernel per ISA.
pub trait GemmElement: ScratchElement {
    fn blocked_for(isa: Isa) -> Blocked<Self>;
}

impl GemmElement for f32 {
    fn blocked_for(isa: Isa) -> Blocked<f32> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => blocked::<f32, Avx512F32>,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => blocked::<f32, Avx2F32>,
            _ => blocked::<f32, Portable<4, 8>>,
        }
    }
}

impl GemmElement for f64 {
    fn blocked_for(isa: Isa) -> Blocked<f64> {
        // f64 serves gradient checks on small shapes: the portable kernel, compiled
        // for the detected ISA, is enough.
        match isa {
            Isa::Avx512 => blocked::<f64, Portable<8, 16>>,
            Isa::Avx2Fma => blocked::<f64, Portable<6, 8>>,
            Isa::Portable => blocked::<f64, Portable<4, 4>>,
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
    gemm_strided(m, n, k, a, b, c, n, parallel);
}

/// `C += A·B` where C's row i is `c[i·ldc..][..n]` (BLAS's leading dimension):
/// C may be a block of columns of a wider matrix, such as one head's slice of
/// attention's merged output. `c` runs from C's first element to its last, and
/// the elements between rows are left as they are.
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    ldc: usize,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && c.len() == (m - 1) * ldc + n,
        "C must be m rows of n with leading dimension ldc"
    );
    if k > 0 {
        // SAFETY: `MaybeUninit<T>` has `T`'s layout, and `Accumulate` only
        // ever writes initialised values through it.
        let c = unsafe { &mut *(c as *mut [T] as *mut [MaybeUninit<T>]) };
        multiply(m, n, k, a, b, Output::Accumulate(c), ldc, parallel);
    }
}

/// `A·B + bias` as a new row-major `m × n` buffer, the bias (one value per
/// column) broadcast over the rows. The product writes every element on its
/// first k block, so the buffer is never zeroed or filled first: for the
/// step's outputs of 10 MB and more, that pass cost a tenth of the product.
pub fn gemm_new<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    bias: Option<&[T]>,
    parallel: bool,
) -> Vec<T> {
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "the bias must have n values");
    }
    if k == 0 || m == 0 || n == 0 {
        return match bias {
            Some(bias) => bias.repeat(m),
            None => vec![T::zero(); m * n],
        };
    }
    let mut c = Vec::with_capacity(m * n);
    multiply(
        m,
        n,
        k,
        a,
        b,
        Output::Overwrite(&mut c.spare_capacity_mut()[..m * n], bias),
        n,
        parallel,
    );
    // SAFETY: with k > 0 the first k block wrote each of the m·n elements.
    unsafe { c.set_len(m * n) };
    c
}

/// `C = A·B` into a row-major `m × n` C that may hold anything (one entry
/// of a batch's fresh output, say): every element is written, never read.
pub fn gemm_write<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [MaybeUninit<T>],
    parallel: bool,
) {
    assert_eq!(c.len(), m * n, "C must be m×n");
    if k == 0 {
        c.fill(MaybeUninit::new(T::zero()));
    } else if m > 0 && n > 0 {
        multiply(m, n, k, a, b, Output::Overwrite(c, None), n, parallel);
    }
}

/// Counts the product's operations and runs the blocked multiply with this
/// CPU's micro-kernel.
#[allow(clippy::too_many_arguments)]
fn multiply<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: Output<T>,
    ldc: usize,
    parallel: bool,
) {
    PRODUCT_FLOPS.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
    dispatch(m, n, k, a, b, c, ldc, parallel);
}

/// Runs the product on the path its shape wants: small, transposed or
/// blocked.
#[allow(clippy::too_many_arguments)]
fn dispatch<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: Output<T>,
    ldc: usize,
    parallel: bool,
) {
    let isa = detect_isa();
    if small::fits::<T>(m, n, k, parallel) {
        small::multiply(m, n, k, a, b, c, ldc);
    } else if transposed::pays(m, n, k, &a, &b, parallel) {
        transposed::multiply(m, n, k, a, b, c, ldc, parallel);
    } else {
        T::blocked_for(isa)(isa, m, n, k, a, b, c, ldc, parallel);
    }
}

#[cfg(test)]
mod tests {
    use super::split::Split;
    use super::*;
    use crate::Element;

    fn naive<T: Element>(m: usize, n: usize, k: usize, a: MatRef<T>, b: MatRef<T>) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| Element::to_f64(a.at(i, p)) * Element::to_f64(b.at(p, j)))
                    .sum();
            }
        }
        c
    }

    /// Every layout at sizes that leave partial panels and k blocks. The error
    /// allowed is `tolerance` times 4k, the bound on Σ|a·b| (|a|, |b| ≤ 2),
    /// which sets the scale of the rounding. Both orders of the k blocks run:
    /// B packed whole (the sizes with several k blocks and a small B), and B
    /// packed one k block at a time (the last size).
    fn check<T: GemmElement>(tolerance: f64) {
        let size = std::mem::size_of::<T>();
        let widest_panel = 32;
        for &(_, n, k) in &[(97, 45, 300), (200, 17, 513)] {
            assert!(k > KC && (n + widest_panel) * k * size <= RESIDENT_B_BYTES);
        }
        assert!(4200 * 1000 * size > RESIDENT_B_BYTES);
        let (a_t, b_rows): (MatRef<T>, MatRef<T>) =
            (MatRef::new(&[], 40, true), MatRef::new(&[], 100, false));
        assert!(transposed::pays(40, 100, 1100, &a_t, &b_rows, true));
        // The first six run on one thread: through the small-product path
        // where it applies (f32 on AVX-512; each width of its padded rows,
        // n up to 16, 32, 48, 64; 1, 2 and 4 columns past a whole vector by
        // dot products when B is transposed), else through the blocked one.
        let sizes = [
            (1, 1, 1),
            (7, 33, 5),
            (50, 50, 64),
            (10, 64, 10),
            (127, 16, 128),
            (20, 36, 70),
            (97, 45, 300),
            (200, 17, 513),
            (MC + 5, 4200, 1000),
            // Through its transpose when A is transposed and B is not.
            (40, 100, 1100),
        ];
        let small = sizes
            .iter()
            .filter(|&&(m, n, k)| small::fits::<T>(m, n, k, false));
        let expected = if small::fits::<T>(1, 1, 1, false) {
            6
        } else {
            0
        };
        assert_eq!(small.count(), expected);
        for (index, &(m, n, k)) in sizes.iter().enumerate() {
            let parallel = index >= 6;
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a: Vec<T> = (0..m * k)
                    .map(|i| T::from_f64(((i * 37 % 101) as f64 - 50.0) / 25.0))
                    .collect();
                let b: Vec<T> = (0..k * n)
                    .map(|i| T::from_f64(((i * 53 % 97) as f64 - 48.0) / 24.0))
                    .collect();
                let av = MatRef::new(&a, if ta { m } else { k }, ta);
                let bv = MatRef::new(&b, if tb { k } else { n }, tb);
                // Accumulated onto ones, and written over nothing with a bias
                // and without.
                let mut c = vec![T::one(); m * n];
                gemm(m, n, k, av, bv, &mut c, parallel);
                let bias: Vec<T> = (0..n).map(|j| T::from_f64(j as f64 - 3.5)).collect();
                let fresh = gemm_new(m, n, k, av, bv, Some(&bias), parallel);
                let plain = gemm_new(m, n, k, av, bv, None, parallel);
                let want = naive(m, n, k, av, bv);
                let scale = 4.0 * k as f64;
                for (at, &y) in want.iter().enumerate() {
                    let got = [
                        Element::to_f64(c[at]) - 1.0,
                        Element::to_f64(fresh[at]) - Element::to_f64(bias[at % n]),
                        Element::to_f64(plain[at]),
                    ];
                    for x in got {
                        assert!(
                            (x - y).abs() < tolerance * scale,
                            "{m}x{n}x{k} {ta} {tb}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn matches_a_naive_loop_at_awkward_sizes_and_transposes() {
        check::<f64>(1e-14);
    }

    /// f32 goes through the explicit-SIMD micro-kernel of this CPU.
    #[test]
    fn f32_matches_a_naive_loop_too() {
        check::<f32>(1e-6);
    }

    /// Sixteen threads cut products with few row blocks into column chunks
    /// too (`split.rs`), and the cut changes no bit: each element sums the
    /// same terms in the same order on one thread. B both packed whole and
    /// one k block at a time; added to C, and written over it with a bias.
    #[test]
    fn column_chunks_on_many_threads_give_one_threads_bits() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(16)
            .build()
            .unwrap();
        for (m, n, k) in [(192, 200, 300), (130, 97, 700), (MC + 5, 4200, 1000)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 - 3.5).collect();
            let (av, bv) = (MatRef::new(&a, m, true), MatRef::new(&b, n, false));
            let run = |parallel: bool| {
                let mut c = vec![1.0f32; m * n];
                gemm(m, n, k, av, bv, &mut c, parallel);
                (c, gemm_new(m, n, k, av, bv, Some(&bias), parallel))
            };
            let one_thread = run(false);
            // Every f32 kernel's tile (AVX-512, AVX2, portable) is cut.
            for (mr, nr) in [(8, 32), (6, 16), (4, 8)] {
                assert!(Split::plan(m, n.div_ceil(nr), nr, mr, MC, 16).panels < n.div_ceil(nr));
            }
            assert!(one_thread == pool.install(|| run(true)), "{m}x{n}x{k}");
        }
    }

    /// With nothing to multiply, a new product is its bias, or zeros.
    #[test]
    fn an_empty_product_is_its_bias() {
        let (a, b) = (
            MatRef::new(&[] as &[f32], 0, false),
            MatRef::new(&[] as &[f32], 2, false),
        );
        assert_eq!(
            gemm_new(3, 2, 0, a, b, Some(&[1.0, 2.0]), true),
            [1.0, 2.0].repeat(3)
        );
        assert_eq!(gemm_new(3, 2, 0, a, b, None, true), vec![0.0; 6]);
    }

    /// With a leading dimension wider than n, C is a block of columns of a
    /// wider matrix: the product is added to those columns (across several
    /// row blocks, on threads) and every element between them is untouched.
    #[test]
    fn a_strided_c_gets_only_its_own_columns() {
        // Blocked, on threads; then small, on one.
        for (m, parallel) in [(2 * MC + 7, true), (13, false)] {
            strided_c(m, parallel);
        }
    }

    fn strided_c(m: usize, parallel: bool) {
        let (n, k, ldc, first) = (13, 40, 29, 5);
        let a: Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 - 3.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 - 2.0).collect();
        let (av, bv) = (MatRef::new(&a, k, false), MatRef::new(&b, n, false));
        let sentinel = |i: usize| -1000.0 - i as f64;
        let mut wide: Vec<f64> = (0..m * ldc).map(sentinel).collect();
        let end = first + (m - 1) * ldc + n;
        gemm_strided(m, n, k, av, bv, &mut wide[first..end], ldc, parallel);
        let want = naive(m, n, k, av, bv);
        for (at, &x) in wide.iter().enumerate() {
            let (i, j) = (at / ldc, (at % ldc).wrapping_sub(first));
            let expected = if j < n {
                sentinel(at) + want[i * n + j]
            } else {
                sentinel(at)
            };
            assert_eq!(x, expected, "row {i}, column {}", at % ldc);
        }
    }
}
