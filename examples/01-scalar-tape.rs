//! 01: the tape on scalars.
//!
//! A tape records every op whose input it watches; `backward` walks it in
//! reverse and returns the gradient of each watched value. Here
//! f(x, y) = tanh(x·y) + x, whose gradient we also write by hand.
//!
//! Run: cargo run --release --example 01-scalar-tape

use msn_stack::ops::{DType, Tensor, TensorTape};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tape = TensorTape::new();
    let x = tape.watch(&Tensor::scalar(0.5, DType::F64));
    let y = tape.watch(&Tensor::scalar(-2.0, DType::F64));

    let f = x.mul(&y)?.tanh()?.add(&x)?;
    println!(
        "f = tanh(x·y) + x = {:.6}  ({} nodes on the tape)",
        f.item()?,
        tape.len()
    );

    let grads = tape.backward(&f)?;
    let t = (0.5f64 * -2.0).tanh();
    println!(
        "df/dx = {:.6}   by hand: y·(1 − tanh²) + 1 = {:.6}",
        grads.get(&x).unwrap().item()?,
        -2.0 * (1.0 - t * t) + 1.0
    );
    println!(
        "df/dy = {:.6}   by hand: x·(1 − tanh²)     = {:.6}",
        grads.get(&y).unwrap().item()?,
        0.5 * (1.0 - t * t)
    );
    Ok(())
}
