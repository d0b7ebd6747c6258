//! Random initialisation as MSN does it (`msn-spec.md` §1): truncated normal
//! (std 0.02, absolute limits ±2, i.e. effectively untruncated) for linear
//! weights, CLS and positional embedding; Kaiming normal (fan-in, ReLU gain)
//! for the patch embedding; zero biases; LayerNorm (1, 0).

use ops::{DType, Tensor};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Normal(0, std) values clamped by redrawing outside ±`limit`.
pub fn truncated_normal(rng: &mut impl Rng, shape: &[usize], std: f64, limit: f64) -> Tensor {
    let normal = Normal::new(0.0, std).expect("std is positive");
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|_| loop {
            let v: f64 = normal.sample(rng);
            if v.abs() <= limit {
                break v;
            }
        })
        .collect();
    Tensor::from_f64s(&values, shape, DType::F32).expect("length matches")
}

/// MSN's linear-weight and embedding initialisation.
pub fn trunc_normal_02(rng: &mut impl Rng, shape: &[usize]) -> Tensor {
    truncated_normal(rng, shape, 0.02, 2.0)
}

/// Kaiming normal with fan-in and ReLU gain: std = √(2 / fan_in).
pub fn kaiming_normal(rng: &mut impl Rng, shape: &[usize], fan_in: usize) -> Tensor {
    truncated_normal(rng, shape, (2.0 / fan_in as f64).sqrt(), f64::INFINITY)
}
