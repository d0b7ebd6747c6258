//! Small f32 products on AVX-512, such as attention's per-head ones
//! (`50×64 · 64×50`, and `10×64 · 64×10` for the focal views), without the
//! blocked path's panels.
//!
//! The blocked multiply pads a `10×10` result to its `8×32` tile grid and
//! packs both operands into panels, element by element when B is a
//! transposed operand: attention's thousands of small products per step ran
//! at 4–55 GFLOP/s there, 11 % of a step's core time for 2 % of its
//! operations. Here B is read where it lies when its rows are exactly `16·V`
//! wide (attention's `P·V` and three of its gradients' products), and else
//! copied once into rows of `16·V ≥ n` values (zeros past n), through 8×8
//! register transposes when it is `kᵀ`; each group of rows of C is summed
//! in zmm registers over all of k, reading A's values where they lie: no
//! packing of A, at most 15 padding columns. When A's rows and Bᵀ's are
//! contiguous (`q·kᵀ`), the few columns past the last whole vector, or all
//! of them when there are fewer than 16, go as dot products instead.
//!
//! Other element types and instruction sets keep the blocked path: the same
//! loops written for the compiler to vectorise were compiled to scalar code
//! with their sums on the stack at some widths (5 GFLOP/s).

use std::mem::MaybeUninit;

#[cfg(target_arch = "x86_64")]
use super::pack::pack_rows_f32;
use super::{detect_isa, Isa, MatRef, Output};
use crate::cpu::scratch::{Role, Scratch, ScratchElement};

/// Widest n handled here: four AVX-512 vectors of f32 per row of C.
const MAX_N: usize = 64;

/// Whether a product goes here: f32 on an AVX-512 CPU, one thread (the
/// caller parallelises over a batch of them), at most [`MAX_N`] columns, and
/// operands of a few thousand values, which stay in L1.
pub(super) fn fits<T: ScratchElement>(m: usize, n: usize, k: usize, parallel: bool) -> bool {
    cfg!(target_arch = "x86_64")
        && T::DTYPE == crate::DType::F32
        && detect_isa() == Isa::Avx512
        && !parallel
        && n <= MAX_N
        && m <= 128
        && k <= 128
}

/// `C (+)= A·B` for a product that [`fits`], with C's rows `ldc` apart.
pub(super) fn multiply<T: ScratchElement>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: Output<T>,
    ldc: usize,
) {
    assert!(
        fits::<T>(m, n, k, false),
        "not a small f32 product on AVX-512"
    );
    let (c, bias) = c.into_parts();
    // SAFETY: T is f32 (`fits` checked its dtype), so these casts only
    // rename the element type of slices of the same length.
    let (a, b, c, bias) = unsafe {
        (
            a.as_f32(),
            b.as_f32(),
            &mut *(c as *mut [MaybeUninit<T>] as *mut [MaybeUninit<f32>]),
            bias.map(|bias| bias.map(|bias| &*(bias as *const [T] as *const [f32]))),
        )
    };
    let job = Job { m, n, k, a, ldc };
    let dots_from = first_dot_column(n, a.col_stride == 1 && b.row_stride == 1);
    let vector_job = Job {
        n: dots_from,
        ..job
    };
    #[cfg(target_arch = "x86_64")]
    match dots_from.div_ceil(16) {
        0 => {}
        // SAFETY: `fits` checked that this CPU has AVX-512.
        1 => unsafe { with_width::<1>(vector_job, b, c, bias) },
        2 => unsafe { with_width::<2>(vector_job, b, c, bias) },
        3 => unsafe { with_width::<3>(vector_job, b, c, bias) },
        _ => unsafe { with_width::<4>(vector_job, b, c, bias) },
    }
    #[cfg(target_arch = "x86_64")]
    for from in (dots_from..n).step_by(MAX_DOT_COLUMNS) {
        let to = n.min(from + MAX_DOT_COLUMNS);
        // SAFETY: as above; `first_dot_column` is below n only when A's
        // and Bᵀ's rows are contiguous.
        unsafe { dot_columns(Job { n: to, ..job }, from, b, c, bias) }
    }
}

/// The first of C's n columns that goes by dot products (n for none), when
/// A's rows and Bᵀ's are `contiguous` (attention's `q·kᵀ` and `go·vᵀ`): the
/// few past the last whole vector (50 columns would pad to 64, and a quarter
/// of the FMAs would add zeros), or all of them when n < 16. A focal view's
/// 10 columns padded to 16 lanes needed `kᵀ` transposed, and left five
/// chains of sums over 64 k steps waiting on the FMA's latency: its
/// `10×64 · 64×10` ran 1.4–1.9× slower than by dot products, and every n
/// from 2 to 15 ran slower too (at 16, the vector is faster).
fn first_dot_column(n: usize, contiguous: bool) -> usize {
    let whole = n / 16 * 16;
    if contiguous && (whole == 0 || n - whole <= MAX_DOT_COLUMNS) {
        whole
    } else {
        n
    }
}

/// The most columns past the last whole vector that go by dot products.
const MAX_DOT_COLUMNS: usize = 4;

/// Columns `from..n` of C (at most [`MAX_DOT_COLUMNS`]), each element the
/// dot product of A's row and Bᵀ's row over k, 16 lanes at a time, then
/// added to C or written over it plus the bias, as [`row_sums`] does. Rows
/// go in groups of `16 / columns`, so that a group's dot products are 16
/// vectors of lane sums, which [`lane_totals`] adds up together: one
/// horizontal sum per dot product cost 16 dependent steps, and the two
/// columns past 48 of attention's 50 took 11 % of a `q·kᵀ`'s time.
///
/// # Safety
/// The CPU must have AVX-512; A's and Bᵀ's rows must be contiguous
/// (`a.col_stride == 1`, `b.row_stride == 1`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_columns(
    job: Job,
    from: usize,
    b: MatRef<f32>,
    c: &mut [MaybeUninit<f32>],
    bias: Option<Option<&[f32]>>,
) {
    let Job { m, n, k, a, ldc } = job;
    let columns = n - from;
    assert!(a.col_stride == 1 && b.row_stride == 1 && columns <= MAX_DOT_COLUMNS);
    if m == 0 || k == 0 || columns == 0 {
        return;
    }
    assert!((m - 1) * a.row_stride + k <= a.data.len());
    assert!((n - 1) * b.col_stride + k <= b.data.len());
    assert!(c.len() >= (m - 1) * ldc + n);
    assert!(bias.flatten().is_none_or(|bias| bias.len() >= n));
    let c = c.as_mut_ptr() as *mut f32;
    let dots = Dots {
        job,
        from,
        b,
        c,
        bias,
    };
    for i0 in (0..m).step_by(16 / columns) {
        match columns {
            1 => dot_group::<1, 16>(&dots, i0),
            2 => dot_group::<2, 8>(&dots, i0),
            3 => dot_group::<3, 5>(&dots, i0),
            _ => dot_group::<4, 4>(&dots, i0),
        }
    }
}

/// What [`dot_columns`] hands each group of rows.
#[cfg(target_arch = "x86_64")]
struct Dots<'a> {
    job: Job<'a>,
    from: usize,
    b: MatRef<'a, f32>,
    c: *mut f32,
    bias: Option<Option<&'a [f32]>>,
}

/// Rows `i0..i0+R` (those below m) of [`dot_columns`]' `C` columns: the
/// dot products of each row with each column in `R·C ≤ 16` vectors of lane
/// sums, summed together at the end. Rows past m read row m − 1 again and
/// are not written.
///
/// # Safety
/// As [`dot_columns`], whose asserts bound every read and write.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_group<const C: usize, const R: usize>(dots: &Dots, i0: usize) {
    use std::arch::x86_64::*;
    let Dots {
        job,
        from,
        b,
        c,
        bias,
    } = *dots;
    let Job { m, k, a, ldc, .. } = job;
    let chunks = k.div_ceil(16);
    let last_lanes = k - 16 * (chunks - 1);
    let rows: [*const f32; R] =
        std::array::from_fn(|r| a.data.as_ptr().add((i0 + r).min(m - 1) * a.row_stride));
    let mut sums = [_mm512_setzero_ps(); 16];
    for chunk in 0..chunks {
        let lanes = if chunk + 1 == chunks { last_lanes } else { 16 };
        let mask = ((1u32 << lanes) - 1) as __mmask16;
        // Inside the bounds dot_columns asserted: k steps 16·chunk.. of
        // lanes, rows below m of A, rows from..n of Bᵀ.
        let b_values: [__m512; C] = std::array::from_fn(|t| {
            let b_row = b.data.as_ptr().add((from + t) * b.col_stride);
            _mm512_maskz_loadu_ps(mask, b_row.add(16 * chunk))
        });
        for (r, row) in rows.iter().enumerate() {
            let a_values = _mm512_maskz_loadu_ps(mask, row.add(16 * chunk));
            for (t, &b_values) in b_values.iter().enumerate() {
                sums[r * C + t] = _mm512_fmadd_ps(a_values, b_values, sums[r * C + t]);
            }
        }
    }
    let totals = lane_totals(sums);
    for r in 0..R.min(m - i0) {
        for t in 0..C {
            let (i, j, dot) = (i0 + r, from + t, totals[r * C + t]);
            let at = c.add(i * ldc + j);
            at.write(match bias {
                None => *at + dot,
                Some(Some(bias)) => dot + bias[j],
                Some(None) => dot,
            });
        }
    }
}

/// The sum of each vector's 16 lanes, all 16 at once: four rounds each add
/// two halves of every vector's remaining lanes (lanes 8 apart, then 4, 2
/// and 1: the order of `_mm512_reduce_add_ps`, so the same sums to the
/// bit), packing two vectors' halves into one register per round, 30
/// shuffles and 15 adds for what took 16 horizontal sums of 8 dependent
/// steps each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn lane_totals(v: [std::arch::x86_64::__m512; 16]) -> [f32; 16] {
    use std::arch::x86_64::*;
    // Lanes 8 apart: x[i] holds v[2i]'s eight sums, then v[2i+1]'s.
    let x: [__m512; 8] = std::array::from_fn(|i| {
        let (p, q) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(p, q),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(p, q),
        )
    });
    // Lanes 4 apart: y[i]'s quads are v[4i], v[4i+1], v[4i+2], v[4i+3].
    let y: [__m512; 4] = std::array::from_fn(|i| {
        let (p, q) = (x[2 * i], x[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(p, q),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(p, q),
        )
    });
    // Lanes 2 apart: quad q of z[i] holds v[8i+q]'s two sums, then v[8i+4+q]'s.
    let z: [__m512; 2] = std::array::from_fn(|i| {
        // Pairs of lanes move as one f64; the sums are f32's.
        let (p, q) = (_mm512_castps_pd(y[2 * i]), _mm512_castps_pd(y[2 * i + 1]));
        _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(p, q)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)),
        )
    });
    // Lanes 1 apart.
    let totals = _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(z[0], z[1]),
        _mm512_shuffle_ps::<0b11_01_11_01>(z[0], z[1]),
    );
    // Lane 4q + s now holds v[4s + q]'s total.
    let lanes: [f32; 16] = std::mem::transmute(totals);
    std::array::from_fn(|i| lanes[4 * (i % 4) + i / 4])
}

/// The sizes and A, which every group of rows reads.
#[derive(Clone, Copy)]
struct Job<'a> {
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'a, f32>,
    ldc: usize,
}

/// [`multiply`] with rows of `V` vectors: B padded, then C by groups of rows.
/// Groups of up to eight rows (six of four vectors, for the registers), as
/// even as m allows: eight or more vector sums per group are enough
/// independent FMA chains to hide their latency.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn with_width<const V: usize>(
    job: Job,
    b: MatRef<f32>,
    c: &mut [MaybeUninit<f32>],
    bias: Option<Option<&[f32]>>,
) {
    let Job { m, n, k, .. } = job;
    let width = 16 * V;
    // A row-major B as wide as the vectors (attention's `P·V`, `dS·K`,
    // `dSᵀ·Q`, `Pᵀ·dO`: 64 columns) is read where it lies; any other is
    // copied into rows of `width` first.
    // The scratch buffer is taken only when it is written: taking a
    // thread's buffer and putting it back for nothing cost a tenth of a
    // 10×10 · 10×64 product (the focal views' `P·V`).
    let padded_b = (b.col_stride != 1 || n != width).then(|| {
        let mut padded = Scratch::<f32>::take(Role::PackedB, k * width);
        pad_rows(b, n, k, width, &mut padded);
        padded
    });
    let b_rows = padded_b
        .as_deref()
        .map_or(b, |padded| MatRef::new(padded, width, false));
    let group = if V <= 3 { 8 } else { 6 };
    assert!(m == 0 || c.len() >= (m - 1) * job.ldc + n);
    let c = c.as_mut_ptr() as *mut f32;
    // The rows shared evenly among the fewest groups: a last group of one
    // or two rows sums one or two chains per vector and waits on the FMA's
    // latency (the focal views' 10×64 · 64×10: groups of 5 and 5 instead
    // of 8 and 2, +3 %).
    let groups = m.div_ceil(group);
    let mut i0 = 0;
    for g in 0..groups {
        let rows = m / groups + usize::from(g < m % groups);
        match rows {
            8 => row_sums::<V, 8>(job, i0, b_rows, c, bias),
            7 => row_sums::<V, 7>(job, i0, b_rows, c, bias),
            6 => row_sums::<V, 6>(job, i0, b_rows, c, bias),
            5 => row_sums::<V, 5>(job, i0, b_rows, c, bias),
            4 => row_sums::<V, 4>(job, i0, b_rows, c, bias),
            3 => row_sums::<V, 3>(job, i0, b_rows, c, bias),
            2 => row_sums::<V, 2>(job, i0, b_rows, c, bias),
            _ => row_sums::<V, 1>(job, i0, b_rows, c, bias),
        }
        i0 += rows;
    }
}

/// B's `k` rows of `n` into `padded` as rows of `width` (zeros past n).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pad_rows(b: MatRef<f32>, n: usize, k: usize, width: usize, padded: &mut [f32]) {
    let mut j0 = 0;
    if b.col_stride == 1 {
        for (p, row) in padded.chunks_exact_mut(width).enumerate() {
            row[..n].copy_from_slice(&b.data[p * b.row_stride..][..n]);
        }
        j0 = n;
    } else if b.row_stride == 1 {
        // Bᵀ's rows (attention's keys in q·kᵀ) become B's columns, eight at
        // a time through register transposes.
        j0 = n - n % 8;
        pack_rows_f32(b.data, 0, b.col_stride, j0, k, padded, width);
    }
    if j0 == width {
        // Every column written, none to pad (attention's 48 of `kᵀ`): the
        // walk below cost 1.8 % of a `q·kᵀ` for nothing.
        return;
    }
    for (p, row) in padded.chunks_exact_mut(width).enumerate() {
        for (j, slot) in row[..n].iter_mut().enumerate().skip(j0) {
            *slot = b.at(p, j);
        }
        row[n..].fill(0.0);
    }
}

/// Rows `i0..i0+R` of A·B, B's `16·V` columns read from `b_rows` (B
/// itself or its padded copy), summed over all of k in order in `R·V` zmm
/// registers, then added to C's rows, or written over them plus the bias
/// (`bias` as in `Output::into_parts`), through masked stores that leave the
/// columns past n alone: by way of a tile on the stack, the write-back cost
/// a tenth of a 50×64·64×50 product.
///
/// # Safety
/// The CPU must have AVX-512; `c` must hold rows `i0..i0+R` of `n` values,
/// `ldc` apart, initialised unless this writes over them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_sums<const V: usize, const R: usize>(
    job: Job,
    i0: usize,
    b_rows: MatRef<f32>,
    c: *mut f32,
    bias: Option<Option<&[f32]>>,
) {
    use std::arch::x86_64::*;
    let Job { k, a, .. } = job;
    let width = 16 * V;
    let last = (i0 + R - 1) * a.row_stride + (k - 1) * a.col_stride;
    assert!(last < a.data.len() && b_rows.col_stride == 1);
    assert!(k == 0 || (k - 1) * b_rows.row_stride + width <= b_rows.data.len());
    assert!(bias.flatten().is_none_or(|bias| bias.len() >= job.n));
    let (a_ptr, b_ptr) = (a.data.as_ptr().add(i0 * a.row_stride), b_rows.data.as_ptr());
    let mut sums = [[_mm512_setzero_ps(); V]; R];
    for p in 0..k {
        // Inside the bounds asserted above: p < k, v < V, r < R.
        let mut b_row = [_mm512_setzero_ps(); V];
        for (v, b) in b_row.iter_mut().enumerate() {
            *b = _mm512_loadu_ps(b_ptr.add(p * b_rows.row_stride + 16 * v));
        }
        let a_col = a_ptr.add(p * a.col_stride);
        for (r, row) in sums.iter_mut().enumerate() {
            let a_value = _mm512_set1_ps(*a_col.add(r * a.row_stride));
            for (sum, &b) in row.iter_mut().zip(&b_row) {
                *sum = _mm512_fmadd_ps(a_value, b, *sum);
            }
        }
    }
    for (r, row) in sums.iter().enumerate() {
        let c_row = c.add((i0 + r) * job.ldc);
        for (v, &sum) in row.iter().enumerate() {
            // The lanes of columns 16v.. that are below n.
            let lanes = job.n.saturating_sub(16 * v).min(16);
            let mask: __mmask16 = ((1u32 << lanes) - 1) as __mmask16;
            let at = c_row.add(16 * v);
            let value = match bias {
                None => _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), sum),
                Some(Some(bias)) => {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(mask, bias.as_ptr().add(16 * v)), sum)
                }
                Some(None) => sum,
            };
            _mm512_mask_storeu_ps(at, mask, value);
        }
    }
}
