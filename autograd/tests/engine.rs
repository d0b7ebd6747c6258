//! The engine on a micrograd-sized value: small f64 vectors with length-1 broadcasting.

use autograd::{check_gradients, BoxError, Error, Probe, Tape, Tolerance, Value, Var};

#[derive(Clone, Debug)]
struct Vector {
    data: Vec<f64>,
    var: Option<Var<Vector>>,
}

fn vector(data: &[f64]) -> Vector {
    Vector {
        data: data.to_vec(),
        var: None,
    }
}

impl Value for Vector {
    fn shape(&self) -> Vec<usize> {
        vec![self.data.len()]
    }
    fn var(&self) -> Option<&Var<Self>> {
        self.var.as_ref()
    }
    fn with_var(&self, var: Var<Self>) -> Self {
        Vector {
            data: self.data.clone(),
            var: Some(var),
        }
    }
    fn detach(&self) -> Self {
        vector(&self.data)
    }
    fn add_grad(&self, other: &Self) -> Result<Self, BoxError> {
        Ok(vector(
            &self
                .data
                .iter()
                .zip(&other.data)
                .map(|(a, b)| a + b)
                .collect::<Vec<_>>(),
        ))
    }
    fn sum_to_shape(&self, shape: &[usize]) -> Result<Option<Self>, BoxError> {
        Ok((shape == [1]).then(|| vector(&[self.data.iter().sum()])))
    }
    fn ones_like(&self) -> Self {
        vector(&vec![1.0; self.data.len()])
    }
}

impl Probe for Vector {
    fn to_f64_vec(&self) -> Vec<f64> {
        self.data.clone()
    }
    fn with_f64_values(&self, data: &[f64]) -> Self {
        vector(data)
    }
}

fn at(v: &Vector, i: usize) -> f64 {
    if v.data.len() == 1 {
        v.data[0]
    } else {
        v.data[i]
    }
}

fn zip(a: &Vector, b: &Vector, f: impl Fn(f64, f64) -> f64) -> Vector {
    let n = a.data.len().max(b.data.len());
    vector(&(0..n).map(|i| f(at(a, i), at(b, i))).collect::<Vec<_>>())
}

fn add(a: &Vector, b: &Vector) -> Vector {
    let out = zip(a, b, |x, y| x + y);
    Tape::record(
        "add",
        &[a, b],
        out,
        Box::new(|g: &Vector| Ok(vec![Some(g.clone()), Some(g.clone())])),
    )
    .unwrap()
}

fn mul_with_sign(a: &Vector, b: &Vector, sign: f64) -> Vector {
    let out = zip(a, b, |x, y| x * y);
    let (sa, sb) = (a.detach(), b.detach());
    Tape::record(
        "mul",
        &[a, b],
        out,
        Box::new(move |g: &Vector| {
            Ok(vec![
                Some(zip(g, &sb, |g, y| sign * g * y)),
                Some(zip(g, &sa, |g, x| sign * g * x)),
            ])
        }),
    )
    .unwrap()
}

fn mul(a: &Vector, b: &Vector) -> Vector {
    mul_with_sign(a, b, 1.0)
}

fn tanh(a: &Vector) -> Vector {
    let out = vector(&a.data.iter().map(|x| x.tanh()).collect::<Vec<_>>());
    let saved = out.clone();
    Tape::record(
        "tanh",
        &[a],
        out,
        Box::new(move |g: &Vector| Ok(vec![Some(zip(g, &saved, |g, y| g * (1.0 - y * y)))])),
    )
    .unwrap()
}

fn sum(a: &Vector) -> Vector {
    let n = a.data.len();
    Tape::record(
        "sum",
        &[a],
        vector(&[a.data.iter().sum()]),
        Box::new(move |g: &Vector| Ok(vec![Some(vector(&vec![g.data[0]; n]))])),
    )
    .unwrap()
}

#[test]
fn chain_rule_on_scalars() {
    let tape = Tape::new();
    let x = tape.watch(&vector(&[0.5]));
    let y = tape.watch(&vector(&[-2.0]));
    // f = tanh(x·y) + x
    let f = add(&tanh(&mul(&x, &y)), &x);
    let grads = tape.backward(&f).unwrap();
    let t = (0.5f64 * -2.0).tanh();
    assert!((grads.get(&x).unwrap().data[0] - (-2.0 * (1.0 - t * t) + 1.0)).abs() < 1e-12);
    assert!((grads.get(&y).unwrap().data[0] - (0.5 * (1.0 - t * t))).abs() < 1e-12);
}

#[test]
fn a_value_used_twice_accumulates() {
    let tape = Tape::new();
    let x = tape.watch(&vector(&[3.0]));
    let f = mul(&x, &x);
    let grads = tape.backward(&f).unwrap();
    assert_eq!(grads.get(&x).unwrap().data, vec![6.0]);
}

#[test]
fn broadcast_gradients_are_summed_back_by_the_engine() {
    let tape = Tape::new();
    let bias = tape.watch(&vector(&[1.0]));
    let x = tape.watch(&vector(&[1.0, 2.0, 3.0]));
    let f = sum(&mul(&add(&x, &bias), &x));
    let grads = tape.backward(&f).unwrap();
    // d/dbias Σ (x_i + b)·x_i = Σ x_i
    assert_eq!(grads.get(&bias).unwrap().data, vec![6.0]);
    assert_eq!(grads.get(&x).unwrap().data, vec![3.0, 5.0, 7.0]);
}

#[test]
fn saved_state_is_freed_once_each_rule_has_run() {
    let tape = Tape::new();
    let x = tape.watch(&vector(&[0.3, 0.7]));
    let f = sum(&tanh(&mul(&x, &x)));
    assert_eq!(tape.pending_rules(), 3);
    tape.backward(&f).unwrap();
    assert_eq!(tape.pending_rules(), 0);
    assert!(matches!(tape.backward(&f), Err(Error::AlreadyRun)));
}

#[test]
fn plain_values_record_nothing_and_detach_cuts_the_tape() {
    let tape = Tape::new();
    let x = tape.watch(&vector(&[2.0]));
    let plain = mul(&vector(&[1.0]), &vector(&[2.0]));
    assert!(plain.var().is_none());
    assert_eq!(tape.len(), 1);
    let f = add(&mul(&x, &x.detach()), &x);
    let grads = tape.backward(&f).unwrap();
    // Only the tracked factor and the direct term contribute: 2 + 1.
    assert_eq!(grads.get(&x).unwrap().data, vec![3.0]);
}

#[test]
fn an_op_without_backward_is_an_error_naming_it() {
    let tape = Tape::new();
    let x = tape.watch(&vector(&[2.0]));
    let y = Tape::record_without_backward("argsort", &[&x], vector(&[0.0])).unwrap();
    let f = add(&y, &x);
    match tape.backward(&f) {
        Err(e @ Error::NoBackward { op: "argsort" }) => assert!(e.to_string().contains("argsort")),
        other => panic!("expected NoBackward, got {:?}", other.map(|g| g.len())),
    }
}

#[test]
fn a_non_scalar_loss_needs_a_seed() {
    let tape = Tape::new();
    let x = tape.watch(&vector(&[1.0, 2.0]));
    let y = tanh(&x);
    assert!(matches!(
        tape.backward(&y),
        Err(Error::NonScalarLoss { .. })
    ));
}

#[test]
fn values_from_two_tapes_cannot_meet_in_one_op() {
    let (a, b) = (Tape::new(), Tape::new());
    let x = a.watch(&vector(&[1.0]));
    let y = b.watch(&vector(&[1.0]));
    let out = zip(&x, &y, |p, q| p + q);
    let result = Tape::record(
        "add",
        &[&x, &y],
        out,
        Box::new(|g: &Vector| Ok(vec![Some(g.clone()), Some(g.clone())])),
    );
    assert!(matches!(result, Err(Error::MixedTapes)));
}

#[test]
fn gradient_check_passes_a_correct_backward() {
    let inputs = [vector(&[0.3, -1.2, 2.0]), vector(&[0.7])];
    let f =
        |v: &[Vector]| -> Result<Vector, BoxError> { Ok(tanh(&mul(&add(&v[0], &v[1]), &v[0]))) };
    let report = check_gradients(f, &inputs, Tolerance::default()).unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.elements, 4);
    assert!(report.worst_abs.error < 1e-8);
}

#[test]
fn gradient_check_catches_a_wrong_backward() {
    let inputs = [vector(&[0.3, -1.2]), vector(&[0.7, 0.1])];
    let f = |v: &[Vector]| -> Result<Vector, BoxError> { Ok(mul_with_sign(&v[0], &v[1], -1.0)) };
    let report = check_gradients(f, &inputs, Tolerance::default()).unwrap();
    assert!(!report.passed());
    assert_eq!(report.failures, 4);
}
