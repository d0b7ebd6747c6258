//! The MSN objective: gradients against finite differences (f64), Sinkhorn's
//! balancing, sharpening as a temperature, and the stop-gradient on targets.

use autograd::{check_gradients, Tolerance};
use msn::loss::{msn_loss, msn_loss_with_targets, msn_targets, sinkhorn, LossConfig};
use ops::{DType, Tensor, TensorTape};

fn values(shape: &[usize], seed: u64) -> Tensor {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Tensor::from_fn(shape, DType::F64, |_| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    })
}

#[test]
fn loss_gradients_match_finite_differences() {
    let config = LossConfig::default();
    for seed in 0..5 {
        let (views, b, d, k) = (3, 4, 5, 6);
        let anchor = values(&[views * b, d], seed);
        let prototypes = values(&[k, d], seed + 100);
        let targets = msn_targets(&values(&[b, d], seed + 200), &prototypes, &config).unwrap();
        let f = |x: &[Tensor]| Ok(msn_loss_with_targets(&x[0], &x[1], &targets, &config)?.total);
        let report = check_gradients(f, &[anchor, prototypes], Tolerance::default()).unwrap();
        assert!(report.passed(), "seed {seed}: {report:?}");
    }
}

#[test]
fn no_gradient_flows_through_the_targets() {
    let config = LossConfig::default();
    let (anchor, target, prototypes) = (values(&[8, 5], 1), values(&[4, 5], 2), values(&[6, 5], 3));
    let tape = TensorTape::new();
    let (a, t, p) = (
        tape.watch(&anchor),
        tape.watch(&target),
        tape.watch(&prototypes),
    );
    let terms = msn_loss(&a, &t, &p, &config).unwrap();
    let grads = tape.backward(&terms.total).unwrap();
    assert!(
        grads.get(&t).is_none(),
        "the target outputs must receive no gradient"
    );
    // The prototypes' gradient is the one with the targets held fixed.
    let fixed = msn_targets(&target, &prototypes, &config).unwrap();
    let tape2 = TensorTape::new();
    let (a2, p2) = (tape2.watch(&anchor), tape2.watch(&prototypes));
    let total = msn_loss_with_targets(&a2, &p2, &fixed, &config)
        .unwrap()
        .total;
    let grads2 = tape2.backward(&total).unwrap();
    assert_eq!(
        grads.get(&p).unwrap().to_vec_f64(),
        grads2.get(&p2).unwrap().to_vec_f64()
    );
}

#[test]
fn sinkhorn_balances_prototypes_and_keeps_rows_normalised() {
    let (b, k) = (8, 4);
    let raw: Vec<f64> = values(&[b, k], 7)
        .to_vec_f64()
        .iter()
        .map(|v| (3.0 * v).exp())
        .collect();
    let rows: Vec<f64> = raw
        .chunks(k)
        .flat_map(|r| {
            let s: f64 = r.iter().sum();
            r.iter().map(move |v| v / s).collect::<Vec<_>>()
        })
        .collect();
    let q = sinkhorn(&rows, b, k, 200);
    for row in q.chunks(k) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    for j in 0..k {
        let mass: f64 = q.chunks(k).map(|r| r[j]).sum();
        assert!(
            (mass - b as f64 / k as f64).abs() < 1e-6,
            "prototype {j} has mass {mass}"
        );
    }
    // MSN's 3 iterations move toward balance from the start.
    let three = sinkhorn(&rows, b, k, 3);
    let spread = |q: &[f64]| {
        (0..k)
            .map(|j| q.chunks(k).map(|r| r[j]).sum::<f64>())
            .fold((f64::MAX, f64::MIN), |(lo, hi), m| (lo.min(m), hi.max(m)))
    };
    let (before, after) = (spread(&rows), spread(&three));
    assert!(after.1 - after.0 < before.1 - before.0);
}

#[test]
fn sharpening_is_a_lower_temperature() {
    let config = LossConfig {
        sinkhorn_iterations: 0,
        ..LossConfig::default()
    };
    let (target, prototypes) = (values(&[3, 5], 11), values(&[6, 5], 12));
    let q = msn_targets(&target, &prototypes, &config)
        .unwrap()
        .to_vec_f64();
    // p^(1/T) renormalised, with p = softmax(cos/τ).
    let p = target
        .l2_normalize(1e-12)
        .unwrap()
        .matmul_nt(&prototypes.l2_normalize(1e-12).unwrap())
        .unwrap()
        .mul_scalar(10.0)
        .unwrap()
        .softmax()
        .unwrap();
    let sharpened: Vec<f64> = p
        .to_vec_f64()
        .chunks(6)
        .flat_map(|r| {
            let powered: Vec<f64> = r.iter().map(|v| v.powf(4.0)).collect();
            let s: f64 = powered.iter().sum();
            powered.into_iter().map(move |v| v / s)
        })
        .collect();
    for (a, b) in q.iter().zip(sharpened) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn memax_is_zero_for_a_uniform_mean_prediction_and_terms_are_reported() {
    let config = LossConfig::default();
    let k = 4;
    // Anchors equal to each prototype in turn: the mean prediction is uniform by symmetry.
    let prototypes = Tensor::from_fn(
        &[k, k],
        DType::F64,
        |i| if i / k == i % k { 1.0 } else { 0.0 },
    );
    let anchor = prototypes.clone();
    let terms = msn_loss(&anchor, &anchor, &prototypes, &config).unwrap();
    assert!(terms.memax.abs() < 1e-12, "{}", terms.memax);
    assert_eq!(terms.protos_used, k);
    assert!((terms.total.item().unwrap() - terms.ce - terms.memax).abs() < 1e-12);
}

#[test]
fn mismatched_shapes_are_an_error() {
    let config = LossConfig::default();
    let err = msn_loss(
        &values(&[7, 5], 1),
        &values(&[4, 5], 2),
        &values(&[6, 5], 3),
        &config,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a whole number of views"), "{err}");
    let err = msn_loss(
        &values(&[8, 5], 1),
        &values(&[4, 5], 2),
        &values(&[6, 3], 3),
        &config,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("share the last dimension"), "{err}");
}
