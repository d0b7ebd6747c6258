//! Run-time choice of the vector width for the element and row loops.
//!
//! Rust compiles for the x86-64 baseline (SSE2, 4 f32 lanes) unless told
//! otherwise, and a binary built with `-C target-cpu=native` would not run on
//! an older machine. So, as the gemm does for its micro-kernels, the hot loops
//! are compiled a second time inside a function that enables AVX2 and FMA, and
//! that copy is taken when the CPU has them: the loop body (a closure, inlined
//! into the wrapper) is then vectorised 8 lanes wide.
//!
//! GELU, most of a ViT's element-wise time, also gets an AVX-512 copy, through
//! [`widest_simd!`] rather than [`vectorised`] (the macro's note says why).
//!
//! The arithmetic is the same in every copy: Rust never fuses `a * b + c`
//! into an FMA on its own, so results do not depend on the machine.

use std::sync::OnceLock;

use crate::Element;

/// The widest instruction set this CPU offers the kernels. Setting
/// `MSN_CPU_PORTABLE` (to anything) forces the baseline, and
/// `MSN_CPU_NO_AVX512` stops at AVX2, to compare or to rule out a SIMD path. `pub` only so that `GemmElement` may name it; this
/// module is private, so no one outside the crate can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

pub(crate) fn detect_isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("MSN_CPU_PORTABLE").is_none()
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                if std::env::var_os("MSN_CPU_NO_AVX512").is_none()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                {
                    return Isa::Avx512;
                }
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    })
}

/// The instruction set the kernels run with, in words, for benchmark reports.
pub fn isa_name() -> &'static str {
    match detect_isa() {
        Isa::Avx512 => "AVX-512",
        Isa::Avx2Fma => "AVX2+FMA",
        Isa::Portable => "portable (SSE2)",
    }
}

fn has_avx2() -> bool {
    detect_isa() != Isa::Portable
}

/// Runs `body`, compiled for AVX2 when this CPU has it. Meant for a loop over
/// slices whose element function is `#[inline(always)]`: anything `body`
/// calls out of line runs at the baseline width.
#[inline(always)]
pub fn vectorised<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { with_avx2(body) };
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Defines `fn $name<T: Element>(args)` that runs the `#[inline(always)]`
/// function `$inner` compiled for AVX-512 (16 f32 lanes), AVX2+FMA (8) or
/// the baseline, whichever this CPU has. [`vectorised`] cannot offer a third
/// width: a closure called from three copies is no longer inlined into them
/// (measured: the GELU loop then ran at SSE2 width), whereas a named
/// function marked `#[inline(always)]` is inlined into every copy.
macro_rules! widest_simd {
    ($(#[$doc:meta])* $vis:vis fn $name:ident<T>($($arg:ident: $ty:ty),* $(,)?) => $inner:path) => {
        $(#[$doc])*
        $vis fn $name<T: $crate::Element>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512<T: $crate::Element>($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<T: $crate::Element>($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                match $crate::cpu::simd_isa() {
                    // SAFETY: AVX-512 F and VL were detected at run time.
                    $crate::cpu::SimdIsa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: AVX2 and FMA were detected at run time.
                    $crate::cpu::SimdIsa::Avx2Fma => return unsafe { avx2($($arg),*) },
                    $crate::cpu::SimdIsa::Portable => {}
                }
            }
            $inner($($arg),*)
        }
    };
}
pub(crate) use widest_simd;

/// Σ f(x) over `xs`, in eight interleaved partial sums combined pairwise: a
/// plain running sum is one chain of dependent adds that cannot vectorise
/// (the compiler may not reorder float additions); eight independent lanes
/// can. The order is fixed, so the result does not depend on the machine.
#[inline(always)]
pub fn lane_sum<T: Element>(xs: &[T], f: impl Fn(T) -> T) -> T {
    let mut lanes = [T::zero(); 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x);
        }
    }
    for (lane, &x) in lanes.iter_mut().zip(tail) {
        *lane += f(x);
    }
    combine_lanes(lanes)
}

/// `Σ a·b` over two slices of one length, in [`lane_sum`]'s eight lanes and
/// order.
#[inline(always)]
pub fn lane_dot<T: Element>(a: &[T], b: &[T]) -> T {
    assert_eq!(a.len(), b.len(), "a dot product of slices of one length");
    let mut lanes = [T::zero(); 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
    for (a, b) in a_chunks.zip(b_chunks) {
        for ((lane, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
            *lane += a * b;
        }
    }
    for ((lane, &a), &b) in lanes.iter_mut().zip(a_tail).zip(b_tail) {
        *lane += a * b;
    }
    combine_lanes(lanes)
}

/// Eight partial sums combined pairwise, in [`lane_sum`]'s fixed order.
#[inline(always)]
pub fn combine_lanes<T: Element>([a, b, c, d, e, g, h, i]: [T; 8]) -> T {
    ((a + e) + (b + g)) + ((c + h) + (d + i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_dot_multiplies_every_pair_once() {
        for len in [0, 1, 7, 8, 9, 23, 64] {
            let a: Vec<f64> = (0..len).map(|i| (i * i) as f64).collect();
            let b: Vec<f64> = (0..len).map(|i| (len - i) as f64).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(lane_dot(&a, &b), want, "length {len}");
        }
    }

    #[test]
    fn lane_sum_adds_every_element_once() {
        for len in [0, 1, 7, 8, 9, 23, 64] {
            let xs: Vec<f64> = (0..len).map(|i| (i * i) as f64).collect();
            let want: f64 = xs.iter().map(|x| 2.0 * x).sum();
            assert_eq!(lane_sum(&xs, |x| 2.0 * x), want, "length {len}");
        }
    }

    /// The claim above: the AVX2 copy of a loop gives the same bits as the
    /// baseline one (here GELU and softmax, whose `exp` and `erf` are the
    /// polynomial ones of `fast_math`).
    #[test]
    fn both_widths_give_the_same_bits() {
        let xs: Vec<f32> = (-4000..4000).map(|i| i as f32 * 2.7e-3).collect();
        let work = || {
            let mut out: Vec<f32> = xs
                .iter()
                .map(|&x| crate::ops::gelu::gelu_value(x))
                .collect();
            let mut probs = crate::cpu::unwritten(xs.len());
            crate::ops::softmax::softmax_row_at_any_width(&xs, &mut probs, false);
            // SAFETY: the softmax wrote the whole row.
            out.extend(unsafe { crate::cpu::assume_written(probs) });
            out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let baseline = work();
        assert_eq!(vectorised(work), baseline);
        // And the softmax at the widest vectors this CPU has (AVX-512 here).
        let mut probs = crate::cpu::unwritten(xs.len());
        crate::ops::softmax::softmax_row(&xs, &mut probs, false);
        // SAFETY: the softmax wrote the whole row.
        let widest = unsafe { crate::cpu::assume_written(probs) };
        assert_eq!(
            widest.iter().map(|v| v.to_bits()).collect::<Vec<u32>>(),
            baseline[xs.len()..]
        );
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: AVX2 and FMA were detected.
            assert_eq!(unsafe { with_avx2(work) }, baseline);
        }
    }
}
