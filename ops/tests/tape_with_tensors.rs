//! The tape over tensors: fused attention, and attention straight from a
//! packed qkv projection, equal their compositions from primitives, forward
//! and backward; plain tensors record nothing; saved state is freed by backward.

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

/// timm's multi-head attention from its qkv projection: split the heads,
/// attend, merge the heads.
fn split_attend_merge(qkv: &Tensor, heads: usize, scale: f64) -> ops::Result<Tensor> {
    let (b, t, packed) = (qkv.shape()[0], qkv.shape()[1], qkv.shape()[2]);
    let c = packed / (3 * heads);
    let split = qkv
        .reshape(&[b, t, 3, heads, c])?
        .permute(&[2, 0, 3, 1, 4])?;
    let part = |i: usize| split.narrow(0, i, 1)?.reshape(&[b, heads, t, c]);
    let attended = part(0)?.attention(&part(1)?, &part(2)?, scale)?;
    attended.permute(&[0, 2, 1, 3])?.reshape(&[b, t, heads * c])
}

#[test]
fn packed_qkv_attention_equals_split_attend_merge_forward_and_backward() {
    // Enough tokens that each head's products cross the gemm's row blocks.
    let (heads, width, tokens) = (3, 5, 101);
    let qkv = random(&[2, tokens, 3 * heads * width], 10);
    let scale = 0.4;
    let run = |packed: bool| {
        let tape = TensorTape::new();
        let x = tape.watch(&qkv);
        let out = if packed {
            x.qkv_attention(heads, scale)
        } else {
            split_attend_merge(&x, heads, scale)
        }
        .unwrap();
        let weights = random(out.shape(), 11);
        let loss = out.mul(&weights).unwrap().sum_all().unwrap();
        let grads = tape.backward(&loss).unwrap();
        (out.to_vec_f64(), grads.get(&x).unwrap().to_vec_f64())
    };
    let (packed, composed) = (run(true), run(false));
    for (a, b) in [(&packed.0, &composed.0), (&packed.1, &composed.1)] {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
    }
}

#[test]
fn packed_qkv_attention_rejects_a_width_that_is_not_three_heads() {
    let qkv = random(&[2, 4, 20], 12);
    let err = qkv.qkv_attention(3, 1.0).unwrap_err().to_string();
    assert!(
        err.contains("qkv_attention") && err.contains("3 heads"),
        "{err}"
    );
    assert!(random(&[2, 0, 18], 13).qkv_attention(3, 1.0).is_err());
}

#[test]
fn attention_over_an_empty_axis_is_an_error_not_a_panic() {
    let (q, k) = (random(&[2, 0, 4], 14), random(&[2, 3, 4], 15));
    let err = q.attention(&k, &k, 1.0).unwrap_err().to_string();
    assert!(
        err.contains("attention") && err.contains("[2, 0, 4]"),
        "{err}"
    );
    let v = random(&[2, 3, 0], 16);
    assert!(k.attention(&k, &v, 1.0).is_err());
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
