//! Multinomial logistic regression with an L2 penalty, no intercept (as
//! MSN's cyanure classifier), fitted with this project's own engine: the loss
//! and its gradient come from the tape, the minimiser is full-batch Adam with
//! a cosine-decayed step.

use ops::{DType, Tensor, TensorTape};

use crate::Result;

pub struct LogisticModel {
    /// `[classes, D]`
    pub weight: Tensor,
}

impl LogisticModel {
    pub fn predict(&self, features: &Tensor) -> Result<Vec<usize>> {
        let logits = features.matmul_nt(&self.weight)?;
        let c = self.weight.shape()[0];
        Ok(logits
            .to_vec_f32()
            .chunks(c)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                    .0
            })
            .collect())
    }

    pub fn accuracy(&self, features: &Tensor, labels: &[usize]) -> Result<f64> {
        let predicted = self.predict(features)?;
        Ok(
            predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64
                / labels.len().max(1) as f64,
        )
    }
}

/// Minimises `mean_i CE(W·x_i, y_i) + (λ/2)·‖W‖²` over `W` (`features: [N, D]`).
pub fn fit_logistic(
    features: &Tensor,
    labels: &[usize],
    classes: usize,
    lambda: f64,
    iterations: usize,
) -> Result<LogisticModel> {
    let (n, d) = (features.shape()[0], features.shape()[1]);
    let onehot = Tensor::from_fn(&[n, classes], DType::F32, |i| {
        if labels[i / classes] == i % classes {
            1.0
        } else {
            0.0
        }
    });
    let mut weight = Tensor::zeros(&[classes, d], DType::F32);
    let (mut m, mut v) = (vec![0.0f32; classes * d], vec![0.0f32; classes * d]);
    let (b1, b2, lr0) = (0.9f32, 0.999f32, 0.1f64);
    for t in 1..=iterations {
        let tape = TensorTape::new();
        let w = tape.watch(&weight);
        let penalty = w.mul(&w)?.sum_all()?.mul_scalar(lambda / 2.0)?;
        let loss = features
            .matmul_nt(&w)?
            .soft_cross_entropy(&onehot)?
            .add(&penalty)?;
        let grads = tape.backward(&loss)?;
        let g = grads.get(&w).expect("the loss depends on W").to_vec_f32();
        let lr = (lr0 * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / iterations as f64).cos()))
            as f32;
        let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        weight.map_in_place::<f32>(|w| {
            for i in 0..w.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                w[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
            }
        })?;
    }
    Ok(LogisticModel { weight })
}
