//! One random case generator per op.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::random::{
    away_from_zero, axis, broadcastable_to, distinct, probabilities, shape, uniform,
};
use super::{Case, OpCheck};
use crate::Tensor;

fn case(
    description: String,
    inputs: Vec<Tensor>,
    function: impl Fn(&[Tensor]) -> crate::Result<Tensor> + 'static,
) -> Case {
    Case {
        description,
        inputs,
        function: Box::new(function),
    }
}

/// Two shapes that broadcast together, the smaller one on a random side.
fn broadcast_pair(rng: &mut StdRng) -> (Vec<usize>, Vec<usize>) {
    let rank = rng.gen_range(0..=3);
    let full = shape(rng, rank..=rank, 4);
    let small = broadcastable_to(rng, &full);
    if rng.gen_bool(0.5) {
        (full, small)
    } else {
        (small, full)
    }
}

fn binary(
    rng: &mut StdRng,
    op: fn(&Tensor, &Tensor) -> crate::Result<Tensor>,
    nonzero_rhs: bool,
) -> Case {
    let (sa, sb) = broadcast_pair(rng);
    let a = uniform(rng, &sa, -2.0, 2.0);
    let b = if nonzero_rhs {
        away_from_zero(rng, &sb)
    } else {
        uniform(rng, &sb, -2.0, 2.0)
    };
    case(format!("{sa:?} and {sb:?}"), vec![a, b], move |x| {
        op(&x[0], &x[1])
    })
}

fn unary(rng: &mut StdRng, op: fn(&Tensor) -> crate::Result<Tensor>, lo: f64, hi: f64) -> Case {
    let rank = rng.gen_range(0..=3);
    let s = shape(rng, rank..=rank, 5);
    let x = uniform(rng, &s, lo, hi);
    case(format!("{s:?}"), vec![x], move |x| op(&x[0]))
}

fn scalar_op(rng: &mut StdRng, op: fn(&Tensor, f64) -> crate::Result<Tensor>) -> Case {
    let rank = rng.gen_range(0..=3);
    let s = shape(rng, rank..=rank, 5);
    let x = uniform(rng, &s, -2.0, 2.0);
    let c = rng.gen_range(0.5..2.0) * if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
    case(format!("{s:?}, c = {c:.3}"), vec![x], move |x| op(&x[0], c))
}

fn reduction(
    rng: &mut StdRng,
    name: &str,
    tensor: fn(&mut StdRng, &[usize]) -> Tensor,
    along: fn(&Tensor, isize, bool) -> crate::Result<Tensor>,
    all: fn(&Tensor) -> crate::Result<Tensor>,
) -> Case {
    let rank = rng.gen_range(1..=4);
    let s = shape(rng, rank..=rank, 4);
    let x = tensor(rng, &s);
    if rng.gen_bool(0.2) {
        return case(format!("{s:?}, all"), vec![x], move |x| all(&x[0]));
    }
    let (a, keepdim) = (axis(rng, rank), rng.gen_bool(0.5));
    case(
        format!("{s:?}, {name} axis {a}, keepdim {keepdim}"),
        vec![x],
        move |x| along(&x[0], a, keepdim),
    )
}

fn last_axis(rng: &mut StdRng, op: fn(&Tensor) -> crate::Result<Tensor>) -> Case {
    let rank = rng.gen_range(1..=3);
    let s = shape(rng, rank..=rank, 5);
    let x = uniform(rng, &s, -3.0, 3.0);
    case(format!("{s:?}"), vec![x], move |x| op(&x[0]))
}

fn matmul(rng: &mut StdRng) -> Case {
    let (m, k, n) = (
        rng.gen_range(1..=5),
        rng.gen_range(1..=5),
        rng.gen_range(1..=5),
    );
    let (ta, tb) = (rng.gen_bool(0.5), rng.gen_bool(0.5));
    let batch = shape(rng, 0..=2, 3);
    let shared_b = !ta && !batch.is_empty() && rng.gen_bool(0.3);
    let with = |lead: &[usize], r: usize, c: usize, t: bool| {
        [lead, &if t { [c, r] } else { [r, c] }].concat()
    };
    let sa = with(&batch, m, k, ta);
    let sb = with(if shared_b { &[] } else { &batch }, k, n, tb);
    let (a, b) = (uniform(rng, &sa, -2.0, 2.0), uniform(rng, &sb, -2.0, 2.0));
    case(
        format!(
            "{sa:?}{} · {sb:?}{}",
            if ta { "ᵀ" } else { "" },
            if tb { "ᵀ" } else { "" }
        ),
        vec![a, b],
        move |x| x[0].matmul_with(&x[1], ta, tb),
    )
}

fn linear(rng: &mut StdRng) -> Case {
    let lead = shape(rng, 0..=2, 4);
    let (inp, out) = (rng.gen_range(1..=5), rng.gen_range(1..=5));
    let sx = [lead.as_slice(), &[inp]].concat();
    let mut inputs = vec![
        uniform(rng, &sx, -2.0, 2.0),
        uniform(rng, &[out, inp], -1.0, 1.0),
    ];
    let bias = rng.gen_bool(0.7);
    if bias {
        inputs.push(uniform(rng, &[out], -1.0, 1.0));
    }
    case(
        format!("x {sx:?}, w [{out}, {inp}], bias {bias}"),
        inputs,
        |x| x[0].linear(&x[1], x.get(2)),
    )
}

fn bias_gelu(rng: &mut StdRng) -> Case {
    let lead = shape(rng, 0..=2, 4);
    let n = rng.gen_range(1..=6);
    let sx = [lead.as_slice(), &[n]].concat();
    let inputs = vec![uniform(rng, &sx, -2.5, 2.5), uniform(rng, &[n], -1.0, 1.0)];
    case(format!("x {sx:?}, b [{n}]"), inputs, |x| {
        x[0].bias_gelu(&x[1])
    })
}

fn normalization(rng: &mut StdRng, batch_norm: bool) -> Case {
    let lead = if batch_norm {
        vec![rng.gen_range(2..=6)]
    } else {
        shape(rng, 1..=2, 4)
    };
    let d = rng.gen_range(2..=6);
    let sx = [lead.as_slice(), &[d]].concat();
    let inputs = vec![
        distinct(rng, &sx),
        uniform(rng, &[d], 0.5, 1.5),
        uniform(rng, &[d], -1.0, 1.0),
    ];
    let eps = if rng.gen_bool(0.5) { 1e-5 } else { 1e-6 };
    case(format!("x {sx:?}, eps {eps:e}"), inputs, move |x| {
        if batch_norm {
            Ok(x[0].batch_norm(&x[1], &x[2], eps)?.0)
        } else {
            x[0].layer_norm(&x[1], &x[2], eps)
        }
    })
}

fn reshape(rng: &mut StdRng) -> Case {
    let s = shape(rng, 1..=3, 4);
    let n: usize = s.iter().product();
    let target: Vec<usize> = match rng.gen_range(0..3) {
        0 => vec![n],
        1 => vec![1, n, 1],
        _ => s.iter().rev().copied().collect(),
    };
    let x = uniform(rng, &s, -2.0, 2.0);
    case(format!("{s:?} → {target:?}"), vec![x.clone()], move |x| {
        x[0].reshape(&target)?.mul(&x[0].reshape(&target)?)
    })
}

fn permute(rng: &mut StdRng) -> Case {
    let s = shape(rng, 1..=4, 4);
    let mut perm: Vec<usize> = (0..s.len()).collect();
    perm.shuffle(rng);
    let x = uniform(rng, &s, -2.0, 2.0);
    case(format!("{s:?} by {perm:?}"), vec![x], move |x| {
        x[0].permute(&perm)
    })
}

fn transpose(rng: &mut StdRng) -> Case {
    let rank = rng.gen_range(2..=4);
    let s = shape(rng, rank..=rank, 4);
    let (a, b) = (axis(rng, rank), axis(rng, rank));
    let x = uniform(rng, &s, -2.0, 2.0);
    case(format!("{s:?}, axes {a} and {b}"), vec![x], move |x| {
        x[0].transpose(a, b)
    })
}

fn narrow(rng: &mut StdRng) -> Case {
    let rank = rng.gen_range(1..=3);
    let s = shape(rng, rank..=rank, 5);
    let a = axis(rng, rank);
    let size = s[a.rem_euclid(rank as isize) as usize];
    let start = rng.gen_range(0..size);
    let len = rng.gen_range(0..=size - start);
    let x = uniform(rng, &s, -2.0, 2.0);
    case(
        format!("{s:?}, axis {a}, {start}..{}", start + len),
        vec![x],
        move |x| x[0].narrow(a, start, len),
    )
}

fn concat(rng: &mut StdRng) -> Case {
    let rank = rng.gen_range(1..=3);
    let base = shape(rng, rank..=rank, 4);
    let a = rng.gen_range(0..rank);
    let parts = rng.gen_range(1..=3);
    let inputs: Vec<Tensor> = (0..parts)
        .map(|_| {
            let mut s = base.clone();
            s[a] = rng.gen_range(1..=3);
            uniform(rng, &s, -2.0, 2.0)
        })
        .collect();
    let shapes: Vec<_> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    case(format!("{shapes:?} along {a}"), inputs, move |x| {
        Tensor::concat(&x.iter().collect::<Vec<_>>(), a as isize)
    })
}

fn index_select(rng: &mut StdRng) -> Case {
    let rank = rng.gen_range(1..=3);
    let s = shape(rng, rank..=rank, 5);
    let a = axis(rng, rank);
    let size = s[a.rem_euclid(rank as isize) as usize];
    let indices: Vec<usize> = (0..rng.gen_range(1..=6))
        .map(|_| rng.gen_range(0..size))
        .collect();
    let x = uniform(rng, &s, -2.0, 2.0);
    case(
        format!("{s:?}, axis {a}, indices {indices:?}"),
        vec![x],
        move |x| x[0].index_select(a, &indices),
    )
}

fn broadcast_to(rng: &mut StdRng) -> Case {
    let target = shape(rng, 1..=3, 4);
    let s = broadcastable_to(rng, &target);
    let x = uniform(rng, &s, -2.0, 2.0);
    case(format!("{s:?} → {target:?}"), vec![x], move |x| {
        x[0].broadcast_to(&target)
    })
}

fn patchify(rng: &mut StdRng) -> Case {
    let p = rng.gen_range(1..=3);
    let (b, c) = (rng.gen_range(1..=2), rng.gen_range(1..=3));
    let h = p * rng.gen_range(1..=3) + rng.gen_range(0..p);
    let w = p * rng.gen_range(1..=3) + rng.gen_range(0..p);
    let x = uniform(rng, &[b, c, h, w], -2.0, 2.0);
    case(
        format!("[{b}, {c}, {h}, {w}], patch {p}"),
        vec![x],
        move |x| x[0].patchify(p),
    )
}

fn resize_bicubic(rng: &mut StdRng) -> Case {
    let (d, g) = (rng.gen_range(1..=3), rng.gen_range(1..=6));
    let x = uniform(rng, &[d, g, g], -2.0, 2.0);
    if rng.gen_bool(0.3) {
        let factor = rng.gen_range(1..=g) as f64 / g as f64;
        return case(
            format!("[{d}, {g}, {g}] by {factor:.3}"),
            vec![x],
            move |x| x[0].resize_bicubic_by(factor),
        );
    }
    let (oh, ow) = (rng.gen_range(1..=7), rng.gen_range(1..=7));
    case(
        format!("[{d}, {g}, {g}] → {oh}×{ow}"),
        vec![x],
        move |x| x[0].resize_bicubic(oh, ow),
    )
}

fn attention(rng: &mut StdRng) -> Case {
    let lead = shape(rng, 0..=2, 2);
    let (n, m, d, e) = (
        rng.gen_range(1..=4),
        rng.gen_range(1..=4),
        rng.gen_range(1..=4),
        rng.gen_range(1..=4),
    );
    let with = |r: usize, c: usize| [lead.as_slice(), &[r, c]].concat();
    let inputs = vec![
        uniform(rng, &with(n, d), -1.5, 1.5),
        uniform(rng, &with(m, d), -1.5, 1.5),
        uniform(rng, &with(m, e), -1.5, 1.5),
    ];
    let scale = 1.0 / (d as f64).sqrt();
    case(
        format!("q {:?}, k {:?}, v {:?}", with(n, d), with(m, d), with(m, e)),
        inputs,
        move |x| x[0].attention(&x[1], &x[2], scale),
    )
}

fn qkv_attention(rng: &mut StdRng) -> Case {
    let lead = shape(rng, 0..=2, 2);
    let (t, heads, width) = (
        rng.gen_range(1..=4),
        rng.gen_range(1..=3),
        rng.gen_range(1..=3),
    );
    let s = [lead.as_slice(), &[t, 3 * heads * width]].concat();
    let qkv = uniform(rng, &s, -1.5, 1.5);
    let scale = 1.0 / (width as f64).sqrt();
    case(format!("{s:?}, {heads} heads"), vec![qkv], move |x| {
        x[0].qkv_attention(heads, scale)
    })
}

fn soft_cross_entropy(rng: &mut StdRng) -> Case {
    let s = shape(rng, 1..=2, 5);
    let (z, q) = (uniform(rng, &s, -3.0, 3.0), probabilities(rng, &s));
    case(format!("{s:?}"), vec![z, q], |x| {
        x[0].soft_cross_entropy(&x[1])
    })
}

fn entropy(rng: &mut StdRng) -> Case {
    let s = shape(rng, 1..=3, 5);
    let p = probabilities(rng, &s);
    case(format!("{s:?}"), vec![p], |x| x[0].entropy())
}

fn l2_normalize(rng: &mut StdRng) -> Case {
    let s = shape(rng, 1..=3, 5);
    let x = away_from_zero(rng, &s);
    case(format!("{s:?}"), vec![x], |x| x[0].l2_normalize(1e-12))
}

pub(super) fn all() -> Vec<OpCheck> {
    macro_rules! check {
        ($name:literal, $generate:expr) => {
            OpCheck {
                name: $name,
                generate: $generate,
            }
        };
    }
    vec![
        check!("add", |r| binary(r, Tensor::add, false)),
        check!("sub", |r| binary(r, Tensor::sub, false)),
        check!("mul", |r| binary(r, Tensor::mul, false)),
        check!("div", |r| binary(r, Tensor::div, true)),
        check!("add_scalar", |r| scalar_op(r, Tensor::add_scalar)),
        check!("sub_scalar", |r| scalar_op(r, Tensor::sub_scalar)),
        check!("mul_scalar", |r| scalar_op(r, Tensor::mul_scalar)),
        check!("div_scalar", |r| scalar_op(r, Tensor::div_scalar)),
        check!("neg", |r| unary(r, Tensor::neg, -2.0, 2.0)),
        check!("exp", |r| unary(r, Tensor::exp, -2.0, 2.0)),
        check!("log", |r| unary(r, Tensor::log, 0.3, 3.0)),
        check!("sqrt", |r| unary(r, Tensor::sqrt, 0.3, 3.0)),
        check!("rsqrt", |r| unary(r, Tensor::rsqrt, 0.3, 3.0)),
        check!("powf", |r| unary(r, |x| x.powf(2.5), 0.3, 3.0)),
        check!("tanh", |r| unary(r, Tensor::tanh, -2.0, 2.0)),
        check!("gelu", |r| unary(r, Tensor::gelu, -3.0, 3.0)),
        check!("bias_gelu", bias_gelu),
        check!("sum", |r| reduction(
            r,
            "sum",
            |r, s| uniform(r, s, -2.0, 2.0),
            Tensor::sum_axis,
            Tensor::sum_all
        )),
        check!("mean", |r| reduction(
            r,
            "mean",
            |r, s| uniform(r, s, -2.0, 2.0),
            Tensor::mean_axis,
            Tensor::mean_all
        )),
        check!("max", |r| reduction(
            r,
            "max",
            distinct,
            Tensor::max_axis,
            Tensor::max_all
        )),
        check!("matmul", matmul),
        check!("linear", linear),
        check!("softmax", |r| last_axis(r, Tensor::softmax)),
        check!("log_softmax", |r| last_axis(r, Tensor::log_softmax)),
        check!("layer_norm", |r| normalization(r, false)),
        check!("batch_norm", |r| normalization(r, true)),
        check!("l2_normalize", l2_normalize),
        check!("reshape", reshape),
        check!("permute", permute),
        check!("transpose", transpose),
        check!("narrow", narrow),
        check!("concat", concat),
        check!("index_select", index_select),
        check!("broadcast_to", broadcast_to),
        check!("patchify", patchify),
        check!("resize_bicubic", resize_bicubic),
        check!("attention", attention),
        check!("qkv_attention", qkv_attention),
        check!("soft_cross_entropy", soft_cross_entropy),
        check!("entropy", entropy),
    ]
}
