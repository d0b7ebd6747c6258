//! The machine's floating-point peak, measured: the figure that kernel and
//! step speeds are quoted against.
//!
//! The same loop as `benches/fma_peak.c`: twelve independent chains of fused
//! multiply-adds on the widest vectors the kernels use (AVX-512 or AVX2),
//! enough chains to cover the FMA latency on every port, and nothing else: no
//! loads, no stores. It runs on every rayon thread at once, since that is how
//! the kernels run, and cores that share a power budget slow down together.

use std::hint::black_box;
use std::time::Instant;

use super::simd::{detect_isa, Isa};

/// Chains in flight: latency (4–5 cycles) × FMA ports (2) and some spare.
const CHAINS: usize = 12;

/// The f32 FMA peak of all rayon threads together, in GFLOP/s, measured over
/// `iterations` rounds of the chains on each thread (10⁷ take about 10 ms per
/// thread at AVX-512 speeds). Portable machines report their scalar-vector
/// baseline, which is what their kernels get.
pub fn fma_peak_gflops(iterations: u64) -> f64 {
    let per_thread = rayon::broadcast(|_| {
        let start = Instant::now();
        let flops = chains(detect_isa(), iterations);
        flops as f64 / start.elapsed().as_secs_f64() / 1e9
    });
    per_thread.iter().sum()
}

/// Runs the chains on `isa`'s vectors; returns the floating-point operations done.
fn chains(isa: Isa, iterations: u64) -> u64 {
    match isa {
        // SAFETY: the ISA was detected at run time.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { chains_avx512(iterations) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { chains_avx2(iterations) },
        _ => chains_portable(iterations),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chains_avx512(iterations: u64) -> u64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, b, c);
        }
    }
    black_box(acc);
    iterations * (CHAINS * 16 * 2) as u64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_avx2(iterations: u64) -> u64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, b, c);
        }
    }
    black_box(acc);
    iterations * (CHAINS * 8 * 2) as u64
}

/// Four lanes per chain, multiply then add (the baseline has no FMA).
fn chains_portable(iterations: u64) -> u64 {
    let mut acc = [[1.0f32; 4]; CHAINS];
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            for lane in a.iter_mut() {
                *lane = *lane * 1.000_000_1 + 0.999_999;
            }
        }
        black_box(&mut acc);
    }
    iterations * (CHAINS * 4 * 2) as u64
}
