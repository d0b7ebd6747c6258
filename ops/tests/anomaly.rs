//! Anomaly detection: with it on, the first op whose forward output, or whose
//! backward rule's gradient, holds NaN or infinity stops the computation with
//! an error naming the op and the shapes; with it off, nothing is checked.
//! One test in its own binary: the switch is process-wide.

use ops::anomaly::set_detect_anomaly;
use ops::{DType, Tape, Tensor};

/// An op that puts a NaN into its output (`forward`) or into the gradient
/// it passes back.
fn planted(x: &Tensor, forward: bool) -> ops::Result<Tensor> {
    let with_nan = |t: &Tensor| {
        let mut v = t.to_vec_f32();
        v[1] = f32::NAN;
        Tensor::from_vec(v, t.shape())
    };
    let out = if forward { with_nan(x)? } else { x.detach() };
    Tensor::custom_op("planted", &[x], out, move |g| {
        Ok(vec![Some(if forward { g.clone() } else { with_nan(g)? })])
    })
}

#[test]
fn the_first_non_finite_op_is_named_with_its_shapes() {
    let x = Tensor::from_fn(&[3, 4], DType::F32, |i| i as f64 * 0.1);
    let w = Tensor::from_fn(&[5, 4], DType::F32, |i| i as f64 * -0.1);

    for on in [false, true] {
        set_detect_anomaly(on);
        // Forward: the NaN is caught where it is made, not in the linear
        // layer that it then flows through.
        let tape = Tape::new();
        let (xt, wt) = (tape.watch(&x), tape.watch(&w));
        let made = planted(&xt, true).and_then(|h| h.linear(&wt, None));
        if on {
            let err = made.unwrap_err().to_string();
            assert!(
                err.contains("`planted`") && err.contains("forward output [3, 4]"),
                "{err}"
            );
            assert!(err.contains("inputs [[3, 4]], all finite: true"), "{err}");
        } else {
            assert!(made.unwrap().to_vec_f32().iter().any(|v| v.is_nan()));
        }

        // Backward: named by the rule that returned the gradient.
        let tape = Tape::new();
        let (xt, wt) = (tape.watch(&x), tape.watch(&w));
        let y = planted(&xt, false).unwrap().linear(&wt, None).unwrap();
        let grads = tape.backward(&y.sum_all().unwrap());
        if on {
            let err = grads.err().expect("an anomaly").to_string();
            assert!(err.contains("`planted`"), "{err}");
            assert!(err.contains("gradient of input 0 [3, 4]"), "{err}");
        } else {
            let dx = grads.unwrap().get(&xt).unwrap().to_vec_f32();
            assert!(dx.iter().any(|v| v.is_nan()));
        }
    }
    set_detect_anomaly(false);
}
