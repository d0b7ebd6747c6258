//! The blocked, packed, parallel matrix multiply behind `matmul`, `linear`
//! and attention: its entry points, operand views and tuning constants. The
//! loops are in `blocked.rs`, the micro-kernels in `kernels.rs`, packing in
//! `pack.rs`, the cut into tasks in `split.rs`, attention's small products in
//! `small.rs`, wide weight gradients run as their transpose in
//! `transposed.rs`, the tests in `tests.rs`.
//!
//! The classic BLIS structure: `C[m×n] += A[m×k]·B[k×n]` is cut into blocks of
//! `KC` along k and at most `MC` rows of C. For each k block, B is packed once
//! into panels of `NR` columns; each row block (one rayon task, or several
//! when it is cut into column chunks too: `split.rs`) runs a register-tiled
//! micro-kernel over its rows of A, `MR` at a time, that keeps an `MR×NR`
//! tile of C in vector registers for the whole k block. Those rows are read
//! where they lie when their k steps or their rows are contiguous, and
//! packed into panels first otherwise (`blocked::AReads`). Operands are
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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
/// the zero padding of partial tiles is not counted). Each thread counts
/// its own on a cache line of its own, which only it writes: one shared
/// counter's atomic adds passed its line between the cores (5.5 % of the
/// time of attention's 50×64·64×50 products), and an atomic add even to a
/// line of one's own waits for the store buffer to drain (0.6 % of a step,
/// whose small products are thousands).
static FLOP_COUNTERS: Mutex<Vec<Arc<FlopCounter>>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's counter, listed in [`FLOP_COUNTERS`] on first use.
    static THIS_THREADS_FLOPS: Arc<FlopCounter> = {
        let counter = Arc::new(FlopCounter(AtomicU64::new(0)));
        counters().push(Arc::clone(&counter));
        counter
    };
}

/// A counter alone on its cache line (two lines: the adjacent-line
/// prefetcher pairs them).
#[repr(align(128))]
struct FlopCounter(AtomicU64);

/// Every thread's counter (a thread that panicked while listing one left
/// the list whole: the push is the only change made under the lock).
fn counters() -> MutexGuard<'static, Vec<Arc<FlopCounter>>> {
    FLOP_COUNTERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The floating-point operations of every CPU matrix product so far: the
/// forward and backward products of linear layers, `matmul` and attention
/// all reach the one place that counts them, whichever entry point they
/// take ([`gemm`], [`gemm_new`], the strided ones). Take the difference
/// across a step to count the step's. The sum of every thread's count,
/// threads that have ended included.
pub fn product_flops() -> u64 {
    counters()
        .iter()
        .map(|counter| counter.0.load(Ordering::Relaxed))
        .sum()
}

/// Adds a product's operations to this thread's counter: a plain load and
/// store, since no other thread writes it.
fn count_flops(flops: u64) {
    THIS_THREADS_FLOPS.with(|counter| {
        let count = &counter.0;
        count.store(count.load(Ordering::Relaxed) + flops, Ordering::Relaxed);
    });
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
    assert_rows_apart(m, n, ldc, c.len());
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
    let mut c = Vec::with_capacity(m * n);
    gemm_write(
        m,
        n,
        k,
        a,
        b,
        bias,
        &mut c.spare_capacity_mut()[..m * n],
        parallel,
    );
    // SAFETY: `gemm_write` wrote each of the m·n elements.
    unsafe { c.set_len(m * n) };
    c
}

/// `C = A·B + bias` into a row-major `m × n` C that may hold anything (a
/// fresh buffer, or one entry of a batch's): every element is written,
/// never read.
#[allow(clippy::too_many_arguments)]
pub fn gemm_write<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    bias: Option<&[T]>,
    c: &mut [MaybeUninit<T>],
    parallel: bool,
) {
    assert_eq!(c.len(), m * n, "C must be m×n");
    write_strided(m, n, k, a, b, bias, c, n, parallel);
}

/// `C = A·B` into a C whose row i is `c[i·ldc..][..n]` and may hold
/// anything (one head's columns of attention's fresh output, or of its
/// gradient): C's elements are written, never read; the elements between
/// rows are left as they are.
#[allow(clippy::too_many_arguments)]
pub fn gemm_write_strided<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [MaybeUninit<T>],
    ldc: usize,
    parallel: bool,
) {
    if m > 0 && n > 0 {
        assert_rows_apart(m, n, ldc, c.len());
    }
    write_strided(m, n, k, a, b, None, c, ldc, parallel);
}

/// That a strided C of `len` elements is `m > 0` rows of `n`, `ldc` apart,
/// from its first element to its last.
fn assert_rows_apart(m: usize, n: usize, ldc: usize, len: usize) {
    assert!(
        ldc >= n && len == (m - 1) * ldc + n,
        "C must be m rows of n with leading dimension ldc"
    );
}

/// [`gemm_write`] with C's rows `ldc` apart (sizes checked by the callers).
#[allow(clippy::too_many_arguments)]
fn write_strided<T: GemmElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    bias: Option<&[T]>,
    c: &mut [MaybeUninit<T>],
    ldc: usize,
    parallel: bool,
) {
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "the bias must have n values");
    }
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for (j, slot) in c[i * ldc..][..n].iter_mut().enumerate() {
                slot.write(bias.map_or(T::zero(), |bias| bias[j]));
            }
        }
        return;
    }
    multiply(m, n, k, a, b, Output::Overwrite(c, bias), ldc, parallel);
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
    count_flops(2 * (m * n * k) as u64);
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
mod tests;
