//! 03: a training loop from the pieces: linear → GELU → linear → soft
//! cross-entropy, plain gradient descent, a fresh tape per step.
//!
//! The parameters are plain tensors between steps; each step watches them on
//! a new tape, runs forward and backward, and updates them outside any tape.
//!
//! Run: cargo run --release --example 03-train-a-tiny-classifier

use msn_stack::ops::{DType, Tensor, TensorTape};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Two interleaved classes on a circle, one-hot targets.
    let n = 64;
    let x = Tensor::from_fn(&[n, 2], DType::F32, |i| {
        let (row, col) = (i / 2, i % 2);
        let angle = row as f64 * 0.37;
        if col == 0 {
            angle.cos()
        } else {
            angle.sin()
        }
    });
    let targets = Tensor::from_fn(&[n, 2], DType::F32, |i| {
        let (row, col) = (i / 2, i % 2);
        let class = usize::from((row as f64 * 0.37).sin() > 0.0);
        if class == col {
            1.0
        } else {
            0.0
        }
    });
    let mut params = [
        Tensor::from_fn(&[16, 2], DType::F32, |i| ((i * 7 % 11) as f64 - 5.0) / 5.0),
        Tensor::zeros(&[16], DType::F32),
        Tensor::from_fn(&[2, 16], DType::F32, |i| ((i * 5 % 13) as f64 - 6.0) / 20.0),
        Tensor::zeros(&[2], DType::F32),
    ];
    for step in 0..=200 {
        let tape = TensorTape::new();
        let p: Vec<Tensor> = params.iter().map(|t| tape.watch(t)).collect();
        let logits = x
            .linear(&p[0], Some(&p[1]))?
            .gelu()?
            .linear(&p[2], Some(&p[3]))?;
        let loss = logits.soft_cross_entropy(&targets)?;
        let grads = tape.backward(&loss)?;
        for (param, watched) in params.iter_mut().zip(&p) {
            *param = param.sub(&grads.get(watched).unwrap().mul_scalar(0.5)?)?;
        }
        if step % 50 == 0 {
            println!("step {step:3}  loss {:.4}", loss.item()?);
        }
    }
    Ok(())
}
