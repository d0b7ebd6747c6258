//! Criterion benchmarks of the GPU matrix product at ViT-S/16's shapes, in f32
//! and under bf16 autocast, for a build with a GPU runtime:
//!
//! ```sh
//! cargo bench --features cuda --bench gpu       # or --features wgpu
//! ```
//!
//! Throughput is declared as 2·m·n·k floating-point operations, so criterion's
//! "Gelem/s" reads as GFLOP/s. Kernels run asynchronously: each sample queues
//! its products and waits for the device at the end. A bf16 product includes
//! rounding and packing both operands, as every product under autocast does.
//! `MSN_BENCH_DEVICE` picks the runtime; `MSN_BENCH_QUICK=1` shrinks the shapes
//! to check the benchmark itself on a software driver.

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ops::{autocast, DType, Device, Precision, Tensor};

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
    for (m, k, n, what) in [
        (rows, 384, 1152, "qkv"),
        (rows, 384, 1536, "fc1"),
        (rows, 1536, 384, "fc2"),
        (square, square, square, "square"),
    ] {
        let (a, b) = (tensor(&[m, k], device), tensor(&[k, n], device));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for precision in [Precision::F32, Precision::Bf16] {
            let id = BenchmarkId::new(format!("{what} {precision}"), format!("{m}x{k}x{n}"));
            group.bench_function(id, |bench| {
                bench.iter_custom(|iters| {
                    let _precision = autocast(precision);
                    device.synchronize().unwrap();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(a.matmul(&b).unwrap());
                    }
                    device.synchronize().unwrap();
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
