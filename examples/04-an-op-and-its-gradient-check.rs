//! 04: adding an op of your own, and proving its backward.
//!
//! `softplus(x) = log(1 + eˣ)` written as a custom op with a hand-derived
//! backward rule `g·σ(x)`, checked against central finite differences by the
//! same harness that checks every built-in op. A deliberately wrong rule
//! (forgetting the chain rule's `g`) is caught.
//!
//! Run: cargo run --release --example 04-an-op-and-its-gradient-check

use msn_stack::autograd::{check_gradients, Tolerance};
use msn_stack::ops::{DType, Tensor};

fn softplus(x: &Tensor, correct: bool) -> msn_stack::ops::Result<Tensor> {
    let value = x.detach().exp()?.add_scalar(1.0)?.log()?;
    let saved = x.detach();
    Tensor::custom_op("softplus", &[x], value, move |g| {
        let sigmoid = saved.neg()?.exp()?.add_scalar(1.0)?.powf(-1.0)?;
        Ok(vec![Some(if correct { g.mul(&sigmoid)? } else { sigmoid })])
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let x = Tensor::from_f64s(&[-2.0, -0.5, 0.0, 0.7, 3.0, 1.5], &[2, 3], DType::F64)?;
    for correct in [true, false] {
        let report = check_gradients(
            |v: &[Tensor]| Ok(softplus(&v[0], correct)?),
            std::slice::from_ref(&x),
            Tolerance::default(),
        )?;
        println!(
            "{} backward: {} of {} elements within tolerance, worst |analytic − numeric| = {:.2e}",
            if correct { "correct" } else { "wrong  " },
            report.elements - report.failures,
            report.elements,
            report.worst_abs.error
        );
    }
    Ok(())
}
