//! 02: tensors, broadcasting, and where gradients are summed back.
//!
//! `x + b` with x: [4, 3] and b: [3] broadcasts b over the rows. Its gradient
//! has the output's shape [4, 3]; the engine, not the op, sums it back over
//! the broadcast axis so that db has b's shape [3].
//!
//! Run: cargo run --release --example 02-broadcasting

use msn_stack::ops::{DType, Tensor, TensorTape};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tape = TensorTape::new();
    let x = tape.watch(&Tensor::from_fn(&[4, 3], DType::F64, |i| i as f64 / 10.0));
    let b = tape.watch(&Tensor::from_f64s(&[1.0, -1.0, 0.5], &[3], DType::F64)?);

    let y = x.add(&b)?.mul(&x)?; // (x + b) · x
    let loss = y.sum_all()?;
    let grads = tape.backward(&loss)?;

    println!("x + b has shape {:?}", x.add(&b)?.shape());
    println!(
        "d loss / d b  = {:?}  (shape {:?}: Σ over rows of x)",
        grads.get(&b).unwrap().to_vec_f64(),
        grads.get(&b).unwrap().shape()
    );
    println!(
        "column sums of x = {:?}",
        x.sum_axis(0, false)?.to_vec_f64()
    );
    Ok(())
}
