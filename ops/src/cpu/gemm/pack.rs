//! Packing the gemm's operands into the panels its micro-kernels read, and
//! the cache prefetches that keep the packing and the write-back fed.

use std::mem::MaybeUninit;

use super::MatRef;
use crate::Element;

/// Packs rows `r0..r0+rows` of `x`, columns `k0..k0+kc`, into a panel of
/// `kc` groups of `width`: element (r0+i, k0+p) goes to `out[p·width + i]`,
/// and the slots past `rows` are set to zero. A's panels are A's rows; B's
/// are the rows of Bᵀ. The layouts that occur are read along their
/// contiguous axis (when `rows == width`, a copy of constant length, since
/// `width` is a micro-kernel's constant and this is inlined); any other
/// strides element by element, walking the panel in order (measured faster
/// than writing it with a stride when the rows are contiguous instead).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn pack_panel<T: Element>(
    x: MatRef<T>,
    r0: usize,
    rows: usize,
    k0: usize,
    kc: usize,
    width: usize,
    out: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == crate::DType::F32
        && width.is_multiple_of(8)
        && rows == width
        && x.col_stride == 1
        && super::detect_isa() != super::Isa::Portable
    {
        // SAFETY: T is f32 (its dtype says so), so the casts only rename the
        // element type; AVX2 is there (the ISA is not portable); the rows
        // hold columns k0..k0+kc (`at` would read the same elements).
        unsafe {
            let out = std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, kc * width);
            pack_rows_f32(
                x.as_f32().data,
                r0 * x.row_stride + k0,
                x.row_stride,
                rows,
                kc,
                out,
                width,
            );
        }
        return;
    }
    let groups = out[..kc * width].chunks_exact_mut(width);
    if x.row_stride == 1 {
        for (p, group) in groups.enumerate() {
            fill_group(group, &x.data[r0 + (k0 + p) * x.col_stride..][..rows]);
        }
    } else {
        for (p, group) in groups.enumerate() {
            for (i, slot) in group.iter_mut().enumerate() {
                *slot = if i < rows {
                    x.at(r0 + i, k0 + p)
                } else {
                    T::zero()
                };
            }
        }
    }
}

/// [`pack_panel`] for whole f32 rows whose k is contiguous, `rows` a
/// multiple of eight: A's panels of a forward product or an input gradient,
/// B's panels of a weight read transposed (`x·Wᵀ`), and the small products'
/// `kᵀ`. Eight k steps at a time, each group of eight rows goes through one
/// 8×8 transpose in registers, and the eight k steps' values are stored
/// before the next eight are read: the element walk moved one float per load
/// and per store (7 % of a forward product's time for A; 18 % of the head's,
/// whose 1024×1024 weight is packed for only 512 rows). Element
/// (i, k0 + p) goes to `out[p·stride + i]`: a panel when `stride` is
/// `rows`, columns of a wider row-major block otherwise (the small products'
/// padded B).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_rows_f32(
    data: &[f32],
    first: usize,
    row_stride: usize,
    rows: usize,
    kc: usize,
    out: &mut [f32],
    stride: usize,
) {
    use std::arch::x86_64::*;
    assert!(rows.is_multiple_of(8) && rows <= stride);
    if rows == 0 || kc == 0 {
        return;
    }
    assert!(first + (rows - 1) * row_stride + kc <= data.len());
    assert!((kc - 1) * stride + rows <= out.len());
    let (src, dst) = (data.as_ptr().add(first), out.as_mut_ptr());
    let mut p = 0;
    while p + 8 <= kc {
        for g in (0..rows).step_by(8) {
            // Inside the bounds asserted above: rows g..g+8, k steps p..p+8.
            let r: [__m256; 8] =
                std::array::from_fn(|i| _mm256_loadu_ps(src.add((g + i) * row_stride + p)));
            for (j, column) in transpose_8x8(r).iter().enumerate() {
                _mm256_storeu_ps(dst.add((p + j) * stride + g), *column);
            }
        }
        p += 8;
    }
    for p in p..kc {
        for i in 0..rows {
            *dst.add(p * stride + i) = *src.add(i * row_stride + p);
        }
    }
}

/// The 8×8 transpose of eight rows of eight floats: pairs, then quads, then
/// halves; column j of the block ends in element j.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8x8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let a0 = _mm256_unpacklo_ps(r[0], r[1]);
    let a1 = _mm256_unpackhi_ps(r[0], r[1]);
    let a2 = _mm256_unpacklo_ps(r[2], r[3]);
    let a3 = _mm256_unpackhi_ps(r[2], r[3]);
    let a4 = _mm256_unpacklo_ps(r[4], r[5]);
    let a5 = _mm256_unpackhi_ps(r[4], r[5]);
    let a6 = _mm256_unpacklo_ps(r[6], r[7]);
    let a7 = _mm256_unpackhi_ps(r[6], r[7]);
    let b0 = _mm256_shuffle_ps::<0x44>(a0, a2);
    let b1 = _mm256_shuffle_ps::<0xEE>(a0, a2);
    let b2 = _mm256_shuffle_ps::<0x44>(a1, a3);
    let b3 = _mm256_shuffle_ps::<0xEE>(a1, a3);
    let b4 = _mm256_shuffle_ps::<0x44>(a4, a6);
    let b5 = _mm256_shuffle_ps::<0xEE>(a4, a6);
    let b6 = _mm256_shuffle_ps::<0x44>(a5, a7);
    let b7 = _mm256_shuffle_ps::<0xEE>(a5, a7);
    [
        _mm256_permute2f128_ps::<0x20>(b0, b4),
        _mm256_permute2f128_ps::<0x20>(b1, b5),
        _mm256_permute2f128_ps::<0x20>(b2, b6),
        _mm256_permute2f128_ps::<0x20>(b3, b7),
        _mm256_permute2f128_ps::<0x31>(b0, b4),
        _mm256_permute2f128_ps::<0x31>(b1, b5),
        _mm256_permute2f128_ps::<0x31>(b2, b6),
        _mm256_permute2f128_ps::<0x31>(b3, b7),
    ]
}

/// Packs rows `r0..r0+rows` of `x`, columns `k0..k0+kc`, into
/// `rows.div_ceil(width)` panels as [`pack_panel`] does each, for an `x`
/// whose rows are contiguous in memory along k's stride (a transposed
/// operand: the Bᵀ of a row-major B, such as a weight gradient's
/// activations, or an A that `AReads` does not read in place). It
/// walks k outermost, reading each k's `rows` values in one run: panel by
/// panel, the same bytes came in as one short piece per k from rows a
/// thousand floats apart, and the weight gradients spent a fifth of their
/// time waiting for them.
#[inline(always)]
pub(super) fn pack_transposed_block<T: Element>(
    x: MatRef<T>,
    r0: usize,
    rows: usize,
    k0: usize,
    kc: usize,
    width: usize,
    out: &mut [T],
) {
    debug_assert_eq!(x.row_stride, 1);
    let panels = rows.div_ceil(width);
    for p in 0..kc {
        if p + PACK_AHEAD < kc {
            prefetch(&x.data[r0 + (k0 + p + PACK_AHEAD) * x.col_stride..][..rows]);
        }
        let src = &x.data[r0 + (k0 + p) * x.col_stride..][..rows];
        for ip in 0..panels {
            let group = &mut out[ip * kc * width + p * width..][..width];
            fill_group(group, &src[ip * width..(ip * width + width).min(rows)]);
        }
    }
}

/// One k step of a panel: `values` (at most the panel's width), then zeros
/// for the rows past the operand's edge. A whole group is a copy of the
/// micro-kernel's constant width once this is inlined.
#[inline(always)]
fn fill_group<T: Element>(group: &mut [T], values: &[T]) {
    if values.len() == group.len() {
        // A copy of a constant length is a few vector moves; of a length
        // known only at run time, a call to memmove per k step (3 % of a
        // training step, most of it packing the weight gradients' B).
        match group.len() {
            32 => copy_fixed::<T, 32>(group, values),
            16 => copy_fixed::<T, 16>(group, values),
            8 => copy_fixed::<T, 8>(group, values),
            _ => group.copy_from_slice(values),
        }
    } else {
        group[..values.len()].copy_from_slice(values);
        group[values.len()..].fill(T::zero());
    }
}

/// `to = from`, both `W` long.
#[inline(always)]
fn copy_fixed<T: Copy, const W: usize>(to: &mut [T], from: &[T]) {
    let (to, from): (&mut [T; W], &[T; W]) = (
        to.try_into().expect("W elements"),
        from.try_into().expect("W elements"),
    );
    *to = *from;
}

/// Asks the cache for the lines of `row` ahead of the micro-kernel, so that
/// the tile's write-back finds C in L1 instead of stalling on memory: a C tile
/// is touched once per k block, so nothing else brings it in.
#[inline(always)]
pub(super) fn prefetch_for_write<T>(row: &[MaybeUninit<T>]) {
    prefetch(row)
}

/// Rows of a transposed operand that [`pack_transposed_block`] asks for
/// ahead of reading them: its rows lie a page or more apart, which the
/// hardware prefetchers do not follow.
const PACK_AHEAD: usize = 8;

/// Asks the cache for every line of `row` (a prefetch never faults).
#[inline(always)]
fn prefetch<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(row);
        let start = row.as_ptr() as *const i8;
        for offset in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults; every address lies inside `row`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) };
        }
        if bytes > 0 {
            // SAFETY: as above; the row's last byte, which may start a new line.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(bytes - 1)) };
        }
    }
}
