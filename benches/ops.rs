//! Criterion benchmarks of the hot CPU kernels at the ViT's shapes.
//!
//! Matmul throughput is declared in floating-point operations (2·m·n·k), so
//! criterion's "Gelem/s" reads as GFLOP/s; the row-wise kernels declare bytes
//! moved (one read and one write of the tensor), so "GiB/s" is bandwidth.
//! `benches/README.md` puts the figures against this machine's peak.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ops::{DType, Tensor};

fn tensor(shape: &[usize]) -> Tensor {
    Tensor::from_fn(shape, DType::F32, |i| {
        ((i * 7919 % 1000) as f64) / 500.0 - 1.0
    })
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    // fmnist-tiny at batch 128: 128 images × 50 tokens = 6400 rows of width 192.
    for (m, k, n, what) in [
        (6400, 192, 576, "qkv"),
        (6400, 192, 768, "fc1"),
        (6400, 768, 192, "fc2"),
        (1024, 1024, 1024, "square"),
    ] {
        let (a, b) = (tensor(&[m, k]), tensor(&[k, n]));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::new(what, format!("{m}x{k}x{n}")), |bench| {
            bench.iter(|| black_box(a.matmul(&b).unwrap()))
        });
    }
    let (a, w) = (tensor(&[6400, 192]), tensor(&[576, 192]));
    group.throughput(Throughput::Elements(2 * 6400 * 192 * 576));
    group.bench_function("linear_nt/6400x192x576", |bench| {
        bench.iter(|| black_box(a.linear(&w, None).unwrap()))
    });
    group.finish();
}

fn rowwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("rowwise");
    group.sample_size(20);
    let scores = tensor(&[128 * 3 * 50, 50]);
    group.throughput(Throughput::Bytes((scores.numel() * 8) as u64));
    group.bench_function("softmax/19200x50", |b| {
        b.iter(|| black_box(scores.softmax().unwrap()))
    });
    let x = tensor(&[6400, 192]);
    let (w, bias) = (tensor(&[192]), tensor(&[192]));
    group.throughput(Throughput::Bytes((x.numel() * 8) as u64));
    group.bench_function("layer_norm/6400x192", |b| {
        b.iter(|| black_box(x.layer_norm(&w, &bias, 1e-6).unwrap()))
    });
    let h = tensor(&[6400, 768]);
    group.throughput(Throughput::Bytes((h.numel() * 8) as u64));
    group.bench_function("gelu/6400x768", |b| b.iter(|| black_box(h.gelu().unwrap())));
    group.finish();
}

criterion_group!(benches, matmul, rowwise);
criterion_main!(benches);
