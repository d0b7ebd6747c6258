//! Criterion benchmarks of the GPU's hot ops at ViT-S/16's shapes, for a
//! build with a GPU runtime: the matrix product in f32 and under bf16
//! autocast; attention, fused kernels against the composition of products
//! and a row softmax they replace; attention from the packed qkv projection
//! against splitting the heads, the fused kernels and merging them; bias +
//! GELU, fused against an add then a GELU (each forward, and forward with
//! backward):
//!
//! ```sh
//! cargo bench --features cuda --bench gpu       # or --features wgpu
//! ```
//!
//! A product's throughput is declared as 2·m·n·k floating-point operations, so
//! criterion's "Gelem/s" reads as GFLOP/s; attention's as its 4·n²·d forward
//! FLOPs per head, whichever pass is timed. Kernels run asynchronously: each sample queues
//! its products and waits for the device at the end. A bf16 product includes
//! rounding and packing both operands, as every product under autocast does.
//! `MSN_BENCH_DEVICE` picks the runtime; `MSN_BENCH_QUICK=1` shrinks the shapes
//! to check the benchmark itself on a software driver; `MSN_GPU_TENSOR_CORES=0`
//! runs the bf16 products on FMAs where tensor cores would take them.

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ops::{autocast, DType, Device, Precision, Tape, Tensor};

fn device() -> Option<Device> {
    if let Ok(name) = std::env::var("MSN_BENCH_DEVICE") {
        return Some(name.parse().expect("MSN_BENCH_DEVICE is wgpu or cuda"));
    }
    [Device::Cuda, Device::Wgpu]
        .into_iter()
        .find(|d| d.is_built())
}

fn tensor(shape: &[usize], device: Device) -> Tensor {
    Tensor::from_fn(shape, DType::F32, |i| {
        ((i * 7919 % 1000) as f64) / 500.0 - 1.0
    })
    .to_device(device)
    .expect("the device is available")
}

fn matmul(c: &mut Criterion) {
    let Some(device) = device() else {
        eprintln!("this build has no GPU runtime: cargo bench --features cuda --bench gpu");
        return;
    };
    let quick = std::env::var("MSN_BENCH_QUICK").is_ok();
    // ViT-S/16 at batch 64 on 224×224 views: 64 × 197 tokens of width 384.
    let rows = if quick { 256 } else { 64 * 197 };
    let square = if quick { 256 } else { 4096 };
    let mut group = c.benchmark_group(format!("matmul on {device}"));
    group.sample_size(10);
    // The forward products, and a weight gradient: x_ᵀ·dy over every token,
    // whose few output tiles the product cuts along k (split-K).
    for (m, k, n, what, transposed_a) in [
        (rows, 384, 1152, "qkv", false),
        (rows, 384, 1536, "fc1", false),
        (rows, 1536, 384, "fc2", false),
        (384, rows, 1152, "qkv weight gradient", true),
        (square, square, square, "square", false),
    ] {
        let a_shape = if transposed_a { [k, m] } else { [m, k] };
        let (a, b) = (tensor(&a_shape, device), tensor(&[k, n], device));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for precision in [Precision::F32, Precision::Bf16] {
            let id = BenchmarkId::new(format!("{what} {precision}"), format!("{m}x{k}x{n}"));
            group.bench_function(id, |bench| {
                bench.iter_custom(|iters| {
                    let _precision = autocast(precision);
                    timed(device, iters, || {
                        black_box(a.matmul_with(&b, transposed_a, false).unwrap());
                    })
                })
            });
        }
    }
    group.finish();
}

/// Times `iters` runs of `f` on `device`, from an idle device to an idle device.
fn timed(device: Device, iters: u64, mut f: impl FnMut()) -> std::time::Duration {
    device.synchronize().unwrap();
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    device.synchronize().unwrap();
    start.elapsed()
}

/// `f` of watched inputs, and with `backward`, the gradients of its sum.
fn pass(inputs: &[Tensor], backward: bool, f: impl Fn(&[Tensor]) -> Tensor) {
    let tape = Tape::new();
    let xs: Vec<Tensor> = inputs.iter().map(|x| tape.watch(x)).collect();
    let y = f(&xs);
    if backward {
        black_box(tape.backward(&y.sum_all().unwrap()).unwrap());
    } else {
        black_box(y);
    }
}

/// Benchmarks a fused op beside the composition of ops it replaces, each
/// forward alone and forward with backward, on the same inputs.
fn fused_against_composed(
    c: &mut Criterion,
    group: String,
    throughput: Throughput,
    inputs: &[Tensor],
    fused: impl Fn(&[Tensor]) -> Tensor,
    (composed_name, composed): (&str, impl Fn(&[Tensor]) -> Tensor),
) {
    let device = inputs[0].device();
    let shape = inputs[0]
        .shape()
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let mut group = c.benchmark_group(group);
    group.sample_size(10);
    group.throughput(throughput);
    for backward in [false, true] {
        let which = if backward {
            "forward+backward"
        } else {
            "forward"
        };
        for (name, f) in [
            ("fused", &fused as &dyn Fn(&[Tensor]) -> Tensor),
            (composed_name, &composed),
        ] {
            group.bench_function(BenchmarkId::new(format!("{name} {which}"), &shape), |b| {
                b.iter_custom(|iters| timed(device, iters, || pass(inputs, backward, f)))
            });
        }
    }
    group.finish();
}

fn attention(c: &mut Criterion) {
    let Some(device) = device() else { return };
    let quick = std::env::var("MSN_BENCH_QUICK").is_ok();
    // 64 images × 6 heads of 197 tokens, head width 64.
    let heads = if quick { 12 } else { 64 * 6 };
    let (t, d) = (197, 64);
    let qkv: Vec<Tensor> = (0..3).map(|_| tensor(&[heads, t, d], device)).collect();
    let scale = (d as f64).powf(-0.5);
    fused_against_composed(
        c,
        format!("attention on {device}"),
        Throughput::Elements((4 * heads * t * t * d) as u64),
        &qkv,
        |x| x[0].attention(&x[1], &x[2], scale).unwrap(),
        ("composed", |x: &[Tensor]| {
            let p = x[0].matmul_nt(&x[1]).unwrap().mul_scalar(scale).unwrap();
            p.softmax().unwrap().matmul(&x[2]).unwrap()
        }),
    );
}

fn qkv_attention(c: &mut Criterion) {
    let Some(device) = device() else { return };
    let quick = std::env::var("MSN_BENCH_QUICK").is_ok();
    // ViT-S/16's attention: 64 images × 197 tokens, 6 heads of width 64.
    let (images, t, heads, d) = (if quick { 2 } else { 64 }, 197, 6, 64);
    let scale = (d as f64).powf(-0.5);
    fused_against_composed(
        c,
        format!("qkv_attention on {device}"),
        Throughput::Elements((4 * images * heads * t * t * d) as u64),
        &[tensor(&[images, t, 3 * heads * d], device)],
        move |x| x[0].qkv_attention(heads, scale).unwrap(),
        ("split, attention, merge", move |x: &[Tensor]| {
            let split = x[0]
                .reshape(&[images, t, 3, heads, d])
                .and_then(|s| s.permute(&[2, 0, 3, 1, 4]))
                .unwrap();
            let part = |i: usize| {
                let p = split.narrow(0, i, 1).unwrap();
                p.reshape(&[images, heads, t, d]).unwrap()
            };
            let attended = part(0).attention(&part(1), &part(2), scale).unwrap();
            let merged = attended.permute(&[0, 2, 1, 3]).unwrap();
            merged.reshape(&[images, t, heads * d]).unwrap()
        }),
    );
}

fn bias_gelu(c: &mut Criterion) {
    let Some(device) = device() else { return };
    let quick = std::env::var("MSN_BENCH_QUICK").is_ok();
    // The MLP's hidden layer: 64 × 197 tokens of width 1536.
    let (rows, width) = (if quick { 256 } else { 64 * 197 }, 1536);
    fused_against_composed(
        c,
        format!("bias_gelu on {device}"),
        Throughput::Bytes((rows * width * 8) as u64),
        &[tensor(&[rows, width], device), tensor(&[width], device)],
        |x| x[0].bias_gelu(&x[1]).unwrap(),
        ("add then gelu", |x: &[Tensor]| {
            x[0].add(&x[1]).unwrap().gelu().unwrap()
        }),
    );
}

criterion_group!(benches, matmul, attention, qkv_attention, bias_gelu);
criterion_main!(benches);
