//! Every op's CubeCL kernels, forward and backward, against the CPU kernels on
//! random inputs: one generic body, run on each GPU runtime built in. CI runs
//! it on `wgpu` over Vulkan's software driver (lavapipe), which is slow but
//! exact, so the cases are the small ones of the gradient-check suite; a second
//! test takes sizes that cross every tile, block and grid boundary. The bf16
//! matrix products are held to the CPU's f32 products of bf16-rounded values.
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use ops::checks::{self, OpCheck};
use ops::{autocast, round_to_bf16, DType, Device, Precision, Tape, Tensor};
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
    bias_gelu,
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
    qkv_attention,
    soft_cross_entropy,
    entropy,
);

/// Output and input gradients of `f` on the CPU and on `device`, compared.
fn same_on_device(what: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> ops::Result<Tensor>) {
    same_on_device_in(Precision::F32, what, inputs, f)
}

/// [`same_on_device`] with the device under `autocast(precision)`; for bf16,
/// the CPU side computes in f32 on the inputs and output gradient rounded to
/// bf16, which is what the device's products read.
fn same_on_device_in(
    precision: Precision,
    what: &str,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> ops::Result<Tensor>,
) {
    let round = |t: &Tensor| match precision {
        Precision::Bf16 => checks::rounded_to_bf16(t).unwrap(),
        Precision::F32 => t.clone(),
    };
    for device in devices() {
        let run = |dev: Device| {
            let on_cpu = dev == Device::Cpu;
            let _precision = autocast(if on_cpu { Precision::F32 } else { precision });
            let prepare = |t: &Tensor| {
                let t = if on_cpu { round(t) } else { t.clone() };
                t.to_device(dev).unwrap()
            };
            let tape = Tape::new();
            let xs: Vec<Tensor> = inputs.iter().map(|t| tape.watch(&prepare(t))).collect();
            let out = f(&xs).unwrap();
            let mut rng = StdRng::seed_from_u64(3);
            let up = prepare(&Tensor::from_fn(out.shape(), DType::F32, |_| {
                rng.gen_range(-1.0..1.0)
            }));
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
                    "{what} ({precision}) on {device}: tensor {k}[{i}]: cpu {a}, device {b}"
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
    // Few outputs of a long axis: reduced in chunks, then over the chunks
    // (uneven ones: 5,000 in 4 and 70,001 in 68).
    let long = random(&[3, 5000, 2], 10);
    same_on_device("sum of a long axis", std::slice::from_ref(&long), |x| {
        x[0].sum_axis(1, false)
    });
    same_on_device("max of a long axis", std::slice::from_ref(&long), |x| {
        x[0].max_axis(1, true)
    });
    same_on_device("sum_all of a long vector", &[random(&[70_001], 11)], |x| {
        x[0].sum_all()
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
    // Fused attention past its 32-row blocks and 16-row tiles, with n ≠ m and d ≠ e,
    // and at ViT-S/16's head (197 tokens of width 64).
    let (q, k, v) = (
        random(&[3, 37, 8], 15),
        random(&[3, 45, 8], 16),
        random(&[3, 45, 24], 17),
    );
    same_on_device("attention n ≠ m, d ≠ e", &[q, k, v], |x| {
        x[0].attention(&x[1], &x[2], 0.5)
    });
    let (q, k, v) = (
        random(&[2, 197, 64], 18),
        random(&[2, 197, 64], 19),
        random(&[2, 197, 64], 20),
    );
    same_on_device("attention at ViT-S/16's head", &[q, k, v], |x| {
        x[0].attention(&x[1], &x[2], 0.125)
    });
    // Heads too wide for the fused kernels' shared memory take the composition.
    let (q, k, v) = (
        random(&[2, 5, 160], 21),
        random(&[2, 7, 160], 22),
        random(&[2, 7, 160], 23),
    );
    same_on_device("attention wider than shared memory", &[q, k, v], |x| {
        x[0].attention(&x[1], &x[2], 0.1)
    });
    // Attention from a packed qkv projection: three heads of 16 read in place
    // across row blocks and tiles, and heads too wide for shared memory.
    let qkv = random(&[2, 50, 3 * 3 * 16], 24);
    same_on_device("qkv_attention", &[qkv], |x| x[0].qkv_attention(3, 0.25));
    let qkv = random(&[2, 5, 3 * 2 * 160], 25);
    same_on_device("qkv_attention wider than shared memory", &[qkv], |x| {
        x[0].qkv_attention(2, 0.1)
    });
    let tokens = random(&[4, 65, 32], 14);
    same_on_device("index_select", &[tokens], |x| {
        x[0].index_select(1, &[0, 3, 3, 64, 10])
    });
}

/// Every plan of the GPU product (64- and 128-wide tiles, split-K, tensor
/// cores where the device has them), all four transposes, in f32 and bf16:
/// 130 × 133 crosses both tile widths, and k = 70 leaves each split a partial
/// last slice.
#[test]
fn every_matmul_plan_agrees_with_the_cpu() {
    for device in devices() {
        for precision in [Precision::F32, Precision::Bf16] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let (m, n, k) = (130, 133, 70);
                let a = random(&if ta { [2, k, m] } else { [2, m, k] }, 41);
                let b = random(&if tb { [2, n, k] } else { [2, k, n] }, 42);
                let round = |t: &Tensor| match precision {
                    Precision::Bf16 => checks::rounded_to_bf16(t).unwrap(),
                    Precision::F32 => t.clone(),
                };
                let expected = round(&a).matmul_with(&round(&b), ta, tb).unwrap();
                let (ad, bd) = (a.to_device(device).unwrap(), b.to_device(device).unwrap());
                let products = checks::gpu_matmul_every_plan(&ad, &bd, (ta, tb), precision)
                    .unwrap_or_else(|e| panic!("matmul on {device}: {e}"));
                assert!(products.len() >= 4, "every FMA plan runs");
                for (plan, product) in products {
                    assert_eq!(product.shape(), expected.shape(), "{plan}");
                    let got = product.to_vec_f32();
                    for (i, (c, d)) in expected.to_vec_f32().iter().zip(&got).enumerate() {
                        assert!(
                            (c - d).abs() <= 1e-4 * (1.0 + c.abs()),
                            "{plan} ({precision}, ta {ta}, tb {tb}) on {device}: [{i}] cpu {c}, device {d}"
                        );
                    }
                }
            }
        }
    }
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

#[test]
fn matmul_in_bf16() {
    let all = checks::all();
    let op = all
        .iter()
        .find(|c| c.name == "matmul")
        .expect("matmul is in the suite");
    for device in devices() {
        for index in 0..cases() {
            let seed = checks::case_seed(11, index);
            let (case, report) = checks::compare_bf16_with_cpu(op, seed, device)
                .unwrap_or_else(|e| panic!("bf16 matmul on {device} (seed {seed}): {e}"));
            assert!(
                report.passed(),
                "bf16 matmul on {device}, {} (seed {seed}): worst {:.2e} at {}",
                case.description,
                report.worst,
                report.worst_at
            );
        }
    }
}

#[test]
fn bf16_products_agree_past_tile_edges() {
    let (a, b) = (random(&[2, 130, 70], 31), random(&[2, 70, 93], 32));
    same_on_device_in(Precision::Bf16, "matmul", &[a.clone(), b.clone()], |x| {
        x[0].matmul(&x[1])
    });
    let bt = random(&[2, 93, 70], 33);
    same_on_device_in(Precision::Bf16, "matmul_nt", &[a, bt], |x| {
        x[0].matmul_nt(&x[1])
    });
    let at = random(&[2, 70, 130], 34);
    same_on_device_in(Precision::Bf16, "matmul_tn", &[at, b], |x| {
        x[0].matmul_tn(&x[1])
    });
    // A linear layer on a GPU is a product plus a bias: its weight is rounded as it is read.
    let (x, w) = (random(&[3, 33, 40], 35), random(&[24, 40], 36));
    let rounded_w = checks::rounded_to_bf16(&w).unwrap();
    for device in devices() {
        let on_device = {
            let _bf16 = autocast(Precision::Bf16);
            let (xd, wd) = (x.to_device(device).unwrap(), w.to_device(device).unwrap());
            xd.linear(&wd, None).unwrap().to_vec_f32()
        };
        let rounded_x = checks::rounded_to_bf16(&x).unwrap();
        let on_cpu = rounded_x.linear(&rounded_w, None).unwrap().to_vec_f32();
        for (c, d) in on_cpu.iter().zip(&on_device) {
            assert!(
                (c - d).abs() <= 1e-4 * (1.0 + c.abs()),
                "linear: cpu {c}, {device} {d}"
            );
        }
    }
}

#[test]
fn bf16_operands_round_to_nearest_even() {
    // Values whose rounding is known: ties go to the even neighbour, and an odd
    // count of values leaves half a word at the end of the packed buffer.
    let tie_down = 1.0 + 2f32.powi(-8); // halfway between 1 and 1 + 2⁻⁷
    let tie_up = 1.0 + 3.0 * 2f32.powi(-8); // halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶
    let special = [tie_down, tie_up, -tie_up, 3.0e38, 0.0, 65504.5];
    let mut rng = StdRng::seed_from_u64(40);
    let (rows, cols) = (3, 37);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| {
            special
                .get(i)
                .copied()
                .unwrap_or_else(|| rng.gen_range(-10.0..10.0))
        })
        .collect();
    let x = Tensor::from_vec(values.clone(), &[rows, cols]).unwrap();
    let identity = Tensor::from_fn(&[cols, cols], DType::F32, |i| {
        if i / cols == i % cols {
            1.0
        } else {
            0.0
        }
    });
    let expected: Vec<f32> = values.iter().map(|&v| round_to_bf16(v)).collect();
    assert_eq!(expected[0], 1.0);
    assert_eq!(expected[1], 1.0 + 2f32.powi(-6));
    for device in devices() {
        let bf16 = autocast(Precision::Bf16);
        let (xd, id) = (
            x.to_device(device).unwrap(),
            identity.to_device(device).unwrap(),
        );
        for (what, product) in [
            ("x·I", xd.matmul(&id).unwrap()),
            (
                "(xᵀ)ᵀ·I",
                xd.transpose(0, 1).unwrap().matmul_tn(&id).unwrap(),
            ),
        ] {
            let got = product.to_vec_f32();
            for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
                assert_eq!(
                    e.to_bits(),
                    g.to_bits(),
                    "{what} on {device}[{i}]: {} rounds to {e}, got {g}",
                    values[i]
                );
            }
        }
        // Outside the scope the same product is f32 again.
        drop(bf16);
        let f32_product = xd.matmul(&id).unwrap().to_vec_f32();
        assert_eq!(f32_product[0], tie_down);
    }
}
