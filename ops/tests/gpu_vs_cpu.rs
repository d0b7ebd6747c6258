//! Every op's CubeCL kernels, forward and backward, against the CPU kernels on
//! random inputs: one generic body, run on each GPU runtime built in. CI runs
//! it on `wgpu` over Vulkan's software driver (lavapipe), which is slow but
//! exact, so the cases are the small ones of the gradient-check suite; a second
//! test takes sizes that cross every tile, block and grid boundary.
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use ops::checks::{self, OpCheck};
use ops::{DType, Device, Tape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cases per op (`GPU_CASES` raises it).
fn cases() -> u64 {
    std::env::var("GPU_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// The runtimes under test: `MSN_TEST_DEVICE` picks one, else every one built.
fn devices() -> Vec<Device> {
    if let Ok(name) = std::env::var("MSN_TEST_DEVICE") {
        return vec![name.parse().expect("MSN_TEST_DEVICE is cpu, wgpu or cuda")];
    }
    [Device::Wgpu, Device::Cuda]
        .into_iter()
        .filter(|d| d.is_built())
        .collect()
}

fn check_op(name: &str) {
    let all = checks::all();
    let op: &OpCheck = all
        .iter()
        .find(|c| c.name == name)
        .expect("op is in the suite");
    for device in devices() {
        for index in 0..cases() {
            let seed = checks::case_seed(7, index);
            let (case, report) = checks::compare_with_cpu(op, seed, device)
                .unwrap_or_else(|e| panic!("{name} on {device} (seed {seed}): {e}"));
            assert!(
                report.passed(),
                "{name} on {device}, {} (seed {seed}): worst {:.2e} at {}",
                case.description,
                report.worst,
                report.worst_at
            );
        }
    }
}

macro_rules! op_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check_op(stringify!($name)); })*

        #[test]
        fn every_op_of_the_suite_is_tested_here() {
            let here = [$(stringify!($name)),*];
            for op in checks::all() {
                assert!(here.contains(&op.name), "{} has no GPU test", op.name);
            }
        }
    };
}

op_tests!(
    add,
    sub,
    mul,
    div,
    add_scalar,
    sub_scalar,
    mul_scalar,
    div_scalar,
    neg,
    exp,
    log,
    sqrt,
    rsqrt,
    powf,
    tanh,
    gelu,
    sum,
    mean,
    max,
    matmul,
    linear,
    softmax,
    log_softmax,
    layer_norm,
    batch_norm,
    l2_normalize,
    reshape,
    permute,
    transpose,
    narrow,
    concat,
    index_select,
    broadcast_to,
    patchify,
    resize_bicubic,
    attention,
    soft_cross_entropy,
    entropy,
);

/// Output and input gradients of `f` on the CPU and on `device`, compared.
fn same_on_device(what: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> ops::Result<Tensor>) {
    for device in devices() {
        let run = |dev: Device| {
            let tape = Tape::new();
            let xs: Vec<Tensor> = inputs
                .iter()
                .map(|t| tape.watch(&t.to_device(dev).unwrap()))
                .collect();
            let out = f(&xs).unwrap();
            let mut rng = StdRng::seed_from_u64(3);
            let up = Tensor::from_fn(out.shape(), DType::F32, |_| rng.gen_range(-1.0..1.0))
                .to_device(dev)
                .unwrap();
            let grads = tape.backward_with(&out, up).unwrap();
            let mut all = vec![out.to_vec_f32()];
            all.extend(xs.iter().map(|x| grads.get(x).unwrap().to_vec_f32()));
            all
        };
        let (cpu, dev) = (run(Device::Cpu), run(device));
        for (k, (c, d)) in cpu.iter().zip(&dev).enumerate() {
            assert_eq!(c.len(), d.len(), "{what}: tensor {k}");
            for (i, (a, b)) in c.iter().zip(d).enumerate() {
                let err = (a - b).abs() / (1.0 + a.abs());
                assert!(
                    err < 1e-4,
                    "{what} on {device}: tensor {k}[{i}]: cpu {a}, device {b}"
                );
            }
        }
    }
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    Tensor::from_fn(shape, DType::F32, |_| rng.gen_range(-1.0..1.0))
}

#[test]
fn kernels_agree_past_tile_block_and_grid_edges() {
    // Matrix products past the 64×64 tile and the 16-deep slice, all transposes.
    let (a, b) = (random(&[2, 130, 70], 1), random(&[2, 70, 93], 2));
    same_on_device("matmul", &[a.clone(), b.clone()], |x| x[0].matmul(&x[1]));
    let bt = random(&[2, 93, 70], 3);
    same_on_device("matmul_nt", &[a.clone(), bt], |x| x[0].matmul_nt(&x[1]));
    let at = random(&[2, 70, 130], 4);
    same_on_device("matmul_tn", &[at, b], |x| x[0].matmul_tn(&x[1]));
    // Rows longer than the 64 units of a row cube; more outputs than a reduction cube.
    let rows = random(&[37, 300], 5);
    same_on_device("softmax", std::slice::from_ref(&rows), |x| x[0].softmax());
    same_on_device("log_softmax", std::slice::from_ref(&rows), |x| {
        x[0].log_softmax()
    });
    same_on_device("l2_normalize", std::slice::from_ref(&rows), |x| {
        x[0].l2_normalize(1e-12)
    });
    same_on_device("sum axis 0", std::slice::from_ref(&rows), |x| {
        x[0].sum_axis(0, false)
    });
    same_on_device("max axis 1", std::slice::from_ref(&rows), |x| {
        x[0].max_axis(1, false)
    });
    let (w, bias) = (
        random(&[300], 6).add_scalar(1.5).unwrap(),
        random(&[300], 7),
    );
    same_on_device("layer_norm", &[rows.clone(), w, bias], |x| {
        x[0].layer_norm(&x[1], &x[2], 1e-6)
    });
    let (w2, b2) = (random(&[300], 8), random(&[300], 9));
    same_on_device("batch_norm", &[rows, w2, b2], |x| {
        Ok(x[0].batch_norm(&x[1], &x[2], 1e-5)?.0)
    });
    // More elements than one grid axis of 256-unit cubes reaches (65 535 × 256).
    let big = random(&[17_000_000], 10);
    same_on_device("mul_scalar over a 2-D grid", &[big], |x| {
        x[0].mul_scalar(0.5)
    });
    // A ViT-shaped attention and token selection.
    let (q, k, v) = (
        random(&[2, 3, 50, 16], 11),
        random(&[2, 3, 50, 16], 12),
        random(&[2, 3, 50, 16], 13),
    );
    same_on_device("attention", &[q, k, v], |x| {
        x[0].attention(&x[1], &x[2], 0.25)
    });
    let tokens = random(&[4, 65, 32], 14);
    same_on_device("index_select", &[tokens], |x| {
        x[0].index_select(1, &[0, 3, 3, 64, 10])
    });
}

#[test]
fn a_tensor_moves_between_devices_and_back() {
    for device in devices() {
        let x = random(&[3, 5], 20);
        let back = x.to_device(device).unwrap().to_device(Device::Cpu).unwrap();
        assert_eq!(back.to_vec_f32(), x.to_vec_f32());
        assert_eq!(x.to_device(device).unwrap().device(), device);
        let err = x
            .to_device(device)
            .unwrap()
            .data::<f32>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("lives on"), "{err}");
    }
}

#[test]
fn ops_reject_inputs_on_different_devices() {
    for device in devices() {
        let (a, b) = (random(&[2, 2], 21), random(&[2, 2], 22));
        let err = a
            .to_device(device)
            .unwrap()
            .add(&b)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cpu") && err.contains(&device.to_string()),
            "{err}"
        );
    }
}
