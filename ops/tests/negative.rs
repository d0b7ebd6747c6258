//! The gradient checker must catch a wrong backward: a GELU whose rule has the
//! wrong sign, registered through the public custom-op API, fails the check.

use autograd::check_gradients;
use ops::{checks, DType, Tensor};

fn gelu_with_wrong_backward(x: &Tensor) -> ops::Result<Tensor> {
    let right = x.detach().gelu()?;
    let saved = x.detach();
    Tensor::custom_op("wrong_gelu", &[x], right, move |g| {
        // The true rule is g·(Φ(x) + x·φ(x)); computing it through the tape and
        // flipping its sign gives a plausible-looking but wrong gradient.
        let tape = ops::TensorTape::new();
        let watched = tape.watch(&saved);
        let y = watched.gelu()?;
        let grads = tape.backward_with(&y, g.clone())?;
        Ok(vec![Some(
            grads.get(&watched).expect("depends on x").neg()?,
        )])
    })
}

#[test]
fn a_backward_with_the_wrong_sign_is_caught() {
    let x = Tensor::from_f64s(&[-1.5, -0.2, 0.3, 2.0], &[2, 2], DType::F64).unwrap();
    let wrong = check_gradients(
        |v: &[Tensor]| Ok(gelu_with_wrong_backward(&v[0])?),
        std::slice::from_ref(&x),
        checks::tolerance(),
    )
    .unwrap();
    assert!(!wrong.passed(), "a sign error went unnoticed: {wrong:?}");
    assert_eq!(wrong.failures, 4);
    let right =
        check_gradients(|v: &[Tensor]| Ok(v[0].gelu()?), &[x], checks::tolerance()).unwrap();
    assert!(right.passed(), "{right:?}");
}

#[test]
fn an_op_without_backward_fails_at_backward_naming_it() {
    let tape = ops::TensorTape::new();
    let x = tape.watch(&Tensor::ones(&[3], DType::F64));
    let y = Tensor::non_differentiable("argsort", &[&x], Tensor::zeros(&[3], DType::F64)).unwrap();
    let loss = y.mul(&x).unwrap().sum_all().unwrap();
    let err = tape.backward(&loss).err().expect("must fail").to_string();
    assert!(err.contains("argsort"), "{err}");
}
