//! Random shapes and values for the gradient-check cases.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::{DType, Tensor};

/// A shape with a rank drawn from `ranks`, each dimension in `1..=max` (size 1 is common on purpose).
pub fn shape(rng: &mut StdRng, ranks: std::ops::RangeInclusive<usize>, max: usize) -> Vec<usize> {
    let rank = rng.gen_range(ranks);
    (0..rank)
        .map(|_| {
            if rng.gen_bool(0.25) {
                1
            } else {
                rng.gen_range(1..=max)
            }
        })
        .collect()
}

/// A shape that broadcasts to `target`: some axes set to 1, some leading axes dropped.
pub fn broadcastable_to(rng: &mut StdRng, target: &[usize]) -> Vec<usize> {
    let drop = rng.gen_range(0..=target.len());
    target[drop..]
        .iter()
        .map(|&d| if rng.gen_bool(0.4) { 1 } else { d })
        .collect()
}

/// Uniform values in `[lo, hi)`.
pub fn uniform(rng: &mut StdRng, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    let values: Vec<f64> = (0..shape.iter().product())
        .map(|_| rng.gen_range(lo..hi))
        .collect();
    Tensor::from_f64s(&values, shape, DType::F64).expect("length matches")
}

/// Values bounded away from zero: magnitude in `[0.5, 2)`, random sign.
pub fn away_from_zero(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let values: Vec<f64> = (0..shape.iter().product())
        .map(|_| rng.gen_range(0.5..2.0) * if rng.gen_bool(0.5) { 1.0 } else { -1.0 })
        .collect();
    Tensor::from_f64s(&values, shape, DType::F64).expect("length matches")
}

/// Distinct values at least 0.05 apart, shuffled: no ties for `max` to break.
pub fn distinct(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut values: Vec<f64> = (0..n)
        .map(|i| (i as f64 - n as f64 / 2.0) * 0.1 + rng.gen_range(0.0..0.05))
        .collect();
    values.shuffle(rng);
    Tensor::from_f64s(&values, shape, DType::F64).expect("length matches")
}

/// Each row (last axis) a probability vector with every entry ≥ 0.02.
pub fn probabilities(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let k = *shape.last().expect("rank ≥ 1");
    let raw: Vec<f64> = (0..shape.iter().product())
        .map(|_| rng.gen_range(0.2..1.0))
        .collect();
    let values: Vec<f64> = raw
        .chunks(k)
        .flat_map(|row| {
            let s: f64 = row.iter().sum();
            row.iter().map(move |v| v / s).collect::<Vec<_>>()
        })
        .collect();
    Tensor::from_f64s(&values, shape, DType::F64).expect("length matches")
}

/// A random axis of a rank-`rank` tensor, negative half the time.
pub fn axis(rng: &mut StdRng, rank: usize) -> isize {
    let a = rng.gen_range(0..rank) as isize;
    if rng.gen_bool(0.5) {
        a - rank as isize
    } else {
        a
    }
}
