//! Branch-free f32 `exp` and `erf` that the compiler can vectorise, for the
//! f32 kernels whose time goes into these functions (GELU, softmax). f64
//! keeps libm's, so that gradient checks run on exact functions.
//!
//! - `exp`: x = n·ln2 + r with |r| ≤ ln2/2 (Cody–Waite split of ln2), a
//!   degree-6 Taylor polynomial for eʳ (truncation ≤ 1.2e-7 relative), and 2ⁿ
//!   built from the exponent bits.
//! - `erf`: Abramowitz & Stegun 7.1.26, `1 − t·P(t)·e^(−x²)` with
//!   `t = 1/(1 + 0.3275911·|x|)`: the formula's error is ≤ 1.5e-7, and
//!   evaluating it in f32 (the subtraction from 1 cancels) brings the measured
//!   absolute error to ≤ 5e-7, about 4 ulps of values near 1. In GELU,
//!   `½x(1 + erf(x/√2))`, that is an absolute error below 2.5e-7·|x|.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding and subtracting 1.5·2²³ rounds to the nearest integer without SSE4.1.
const ROUNDER: f32 = 12_582_912.0;

#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let shifted = x * LOG2E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n is an integer below 2²², so it sits in the low bits of `shifted`'s
    // pattern: reading it there vectorises, where `n as i32` (saturating,
    // NaN-aware) is a scalar conversion per lane.
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDER.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    erf_and_gaussian_f32(x).0
}

/// `(erf(x), e^(−x²))`: the formula for erf computes the Gaussian on its
/// way, and GELU's slope needs both (`Φ` from erf, `φ` from the Gaussian).
#[inline(always)]
pub fn erf_and_gaussian_f32(x: f32) -> (f32, f32) {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let gaussian = exp_f32(-a * a);
    let y = 1.0 - poly * gaussian;
    (y.copysign(x), gaussian)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulps_of_libm() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3;
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn erf_is_within_the_published_bound() {
        let mut worst = 0.0f64;
        for i in -6_000..6_000 {
            let x = i as f32 * 1e-3;
            worst = worst.max((erf_f32(x) as f64 - libm::erf(x as f64)).abs());
        }
        assert!(worst < 5e-7, "worst absolute error {worst:e}");
        assert!(erf_f32(0.0).abs() < 1e-7 && erf_f32(-1.0) == -erf_f32(1.0));
    }
}
