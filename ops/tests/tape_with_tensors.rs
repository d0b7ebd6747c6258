//! The tape over tensors: fused attention equals its composition from
//! primitives, forward and backward; plain tensors record nothing; saved state
//! is freed by backward.

use ops::{DType, Tensor, TensorTape};

fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_fn(shape, DType::F64, |i| {
        (((i as u64 + 1) * (seed * 2654435761 + 97)) % 1000) as f64 / 500.0 - 1.0
    })
}

fn composed_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> ops::Result<Tensor> {
    q.matmul_nt(k)?.mul_scalar(scale)?.softmax()?.matmul(v)
}

#[test]
fn fused_attention_equals_the_composed_one_forward_and_backward() {
    let (q, k, v) = (
        random(&[2, 3, 5, 4], 1),
        random(&[2, 3, 6, 4], 2),
        random(&[2, 3, 6, 3], 3),
    );
    let scale = 0.5;
    let run = |fused: bool| {
        let tape = TensorTape::new();
        let (tq, tk, tv) = (tape.watch(&q), tape.watch(&k), tape.watch(&v));
        let out = if fused {
            tq.attention(&tk, &tv, scale)
        } else {
            composed_attention(&tq, &tk, &tv, scale)
        }
        .unwrap();
        let weights = random(out.shape(), 4);
        let loss = out.mul(&weights).unwrap().sum_all().unwrap();
        let grads = tape.backward(&loss).unwrap();
        let g = |t: &Tensor| grads.get(t).unwrap().to_vec_f64();
        (out.to_vec_f64(), g(&tq), g(&tk), g(&tv))
    };
    let (fused, composed) = (run(true), run(false));
    for (a, b) in [
        (&fused.0, &composed.0),
        (&fused.1, &composed.1),
        (&fused.2, &composed.2),
        (&fused.3, &composed.3),
    ] {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
    }
}

#[test]
fn plain_tensors_record_nothing() {
    let tape = TensorTape::new();
    let w = tape.watch(&random(&[3, 3], 5));
    let x = random(&[4, 3], 6);
    let plain = x
        .matmul(&x.transpose(0, 1).unwrap())
        .unwrap()
        .softmax()
        .unwrap();
    assert!(!plain.is_tracked());
    assert_eq!(tape.len(), 1);
    let tracked = x.linear(&w, None).unwrap();
    assert!(tracked.is_tracked());
    assert_eq!(tape.len(), 2);
}

#[test]
fn backward_frees_saved_state_and_returns_leaf_gradients() {
    let tape = TensorTape::new();
    let w = tape.watch(&random(&[4, 3], 7));
    let b = tape.watch(&random(&[4], 8));
    let x = random(&[5, 3], 9);
    let loss = x
        .linear(&w, Some(&b))
        .unwrap()
        .gelu()
        .unwrap()
        .mean_all()
        .unwrap();
    assert!(tape.pending_rules() > 0);
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(tape.pending_rules(), 0);
    assert_eq!(grads.len(), 2);
    assert_eq!(grads.get(&w).unwrap().shape(), &[4, 3]);
    assert_eq!(grads.get(&b).unwrap().shape(), &[4]);
}

#[test]
fn f32_and_f64_agree() {
    let x = random(&[6, 8], 10);
    let w = random(&[5, 8], 11);
    let y64 = x.linear(&w, None).unwrap().softmax().unwrap().to_vec_f64();
    let y32 = x
        .to_dtype(DType::F32)
        .unwrap()
        .linear(&w.to_dtype(DType::F32).unwrap(), None)
        .unwrap()
        .softmax()
        .unwrap()
        .to_vec_f64();
    for (a, b) in y64.iter().zip(y32) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn shape_errors_name_the_op_and_the_shapes() {
    let a = Tensor::zeros(&[2, 3], DType::F32);
    let b = Tensor::zeros(&[4], DType::F32);
    let e = a.add(&b).unwrap_err().to_string();
    assert!(
        e.contains("add") && e.contains("[2, 3]") && e.contains("[4]"),
        "{e}"
    );
    let e = a.matmul(&a).unwrap_err().to_string();
    assert!(e.contains("matmul"), "{e}");
    let e = a
        .to_dtype(DType::F64)
        .unwrap()
        .add(&a)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dtypes differ"), "{e}");
}
