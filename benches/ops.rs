//! Criterion benchmarks of the hot CPU kernels at the ViT's shapes.
//!
//! Matmul throughput is declared in floating-point operations (2·m·n·k), so
//! criterion's "Gelem/s" reads as GFLOP/s; the row-wise kernels declare bytes
//! moved (one read and one write of the tensor), so "GiB/s" is bandwidth.
//! `benches/README.md` puts the figures against this machine's peak.

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use ops::{DType, Tensor};

fn tensor(shape: &[usize]) -> Tensor {
    Tensor::from_fn(shape, DType::F32, |i| {
        ((i * 7919 % 1000) as f64) / 500.0 - 1.0
    })
}

/// The products of one `fmnist-tiny-v1` step at batch 128 (`tests/fixtures/
/// fmnist-tiny-v1.toml`), one of each shape class, at the 5,120 rows of the
/// focal views (128 images × 4 views × 10 tokens; the target's 6,400 rows and
/// the masked anchor's 4,480 behave alike). Forward products read the weight
/// transposed (`x·Wᵀ`, linear's layout); the backward pass has the input
/// gradient `g·W` and the weight gradient `gᵀ·x`, whose shared axis is every
/// token. Together these classes are 97 % of the step's products; attention's
/// per-head products (one thread each, heads in parallel) are the rest, timed
/// in [`attention`].
/// (what, m, k, n, a transposed, b transposed): op(a) is m×k, op(b) k×n.
const STEP_PRODUCTS: [(&str, usize, usize, usize, bool, bool); 12] = [
    ("qkv forward", ROWS, 192, 576, false, true),
    ("proj forward", ROWS, 192, 192, false, true),
    ("fc1 forward", ROWS, 192, 768, false, true),
    ("fc2 forward", ROWS, 768, 192, false, true),
    ("qkv input grad", ROWS, 576, 192, false, false),
    ("fc1 input grad", ROWS, 768, 192, false, false),
    ("fc2 input grad", ROWS, 192, 768, false, false),
    ("qkv weight grad", 576, ROWS, 192, true, false),
    ("fc1 weight grad", 768, ROWS, 192, true, false),
    ("fc2 weight grad", 192, ROWS, 768, true, false),
    ("head forward", 512, 1024, 1024, false, true),
    ("square", 1024, 1024, 1024, false, false),
];
const ROWS: usize = 5120;

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for (what, m, k, n, ta, tb) in STEP_PRODUCTS {
        let a = tensor(&if ta { [k, m] } else { [m, k] });
        let b = tensor(&if tb { [n, k] } else { [k, n] });
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::new(what, format!("{m}x{k}x{n}")), |bench| {
            bench.iter(|| black_box(a.matmul_with(&b, ta, tb).unwrap()))
        });
    }
    // Attention's scores for every head of the batch: 384 products of
    // 50×64 · 64×50, each on one thread.
    let (q, k) = (tensor(&[384, 50, 64]), tensor(&[384, 50, 64]));
    group.throughput(Throughput::Elements(2 * 384 * 50 * 50 * 64));
    group.bench_function("attention scores/384x50x64x50", |bench| {
        bench.iter(|| black_box(q.matmul_nt(&k).unwrap()))
    });
    group.finish();
}

/// The same products through the gemm alone, into an output allocated once:
/// the kernel's own speed, without the op's fresh output buffer.
fn gemm(c: &mut Criterion) {
    use ops::cpu::gemm::{gemm, MatRef};
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10);
    for (what, m, k, n, ta, tb) in STEP_PRODUCTS {
        let a = tensor(&if ta { [k, m] } else { [m, k] }).to_vec_f32();
        let b = tensor(&if tb { [n, k] } else { [k, n] }).to_vec_f32();
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::new(what, format!("{m}x{k}x{n}")), |bench| {
            bench.iter(|| {
                let a = MatRef::new(&a, if ta { m } else { k }, ta);
                let b = MatRef::new(&b, if tb { k } else { n }, tb);
                gemm(m, n, k, a, b, &mut out, true);
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// The six per-head products of attention, as the step's `qkv_attention`
/// runs them, at each token count of an `fmnist-tiny-v1` step at batch 128:
/// 50 (the target's views: it runs only the forward pair, the scores and
/// `P·V`, all six being timed for a view that keeps every patch), 35 (the
/// masked anchor's views) and 10 (the 512 focal views). Each head's q, k and
/// v are read in place from the packed `[images, tokens, 576]` projection
/// (rows 2,304 bytes apart), the images in parallel and an image's heads in
/// turn, each product on one thread into outputs allocated once (the `gemm/`
/// column's convention). Forward: the scores `q·kᵀ` and `P·V`; backward:
/// `dV = Pᵀ·dO`, `dP = dO·vᵀ`, `dQ = dS·k` and `dK = dSᵀ·q`.
fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    group.sample_size(20);
    for (images, tokens) in [(128, 50), (128, 35), (512, 10)] {
        attention_at(&mut group, images, tokens);
    }
    group.finish();
}

/// [`attention`]'s six products for `images` images of `tokens` tokens.
fn attention_at(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    images: usize,
    tokens: usize,
) {
    use ops::cpu::gemm::{gemm_write_strided, MatRef};
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    const HEADS: usize = 3;
    const WIDTH: usize = 64;
    const MODEL: usize = HEADS * WIDTH;
    let qkv = tensor(&[images, tokens, 3 * MODEL]).to_vec_f32();
    let go = tensor(&[images, tokens, MODEL]).to_vec_f32();
    // Probabilities and their gradient: one `[tokens, tokens]` block per head.
    let p = tensor(&[images * HEADS, tokens, tokens]).to_vec_f32();
    // Where a product writes, as in the step: a head's own `[tokens, tokens]`
    // block (the scores, dP), its columns of the `[images, tokens, 192]`
    // output (`P·V`), or its columns of one part of the packed
    // `[images, tokens, 576]` gradient.
    #[derive(Clone, Copy)]
    enum Target {
        Scores,
        Output,
        Gradient { part: usize },
    }
    impl Target {
        /// One image's block of the output.
        fn block(self, tokens: usize) -> usize {
            match self {
                Target::Scores => HEADS * tokens * tokens,
                Target::Output => tokens * MODEL,
                Target::Gradient { .. } => tokens * 3 * MODEL,
            }
        }

        /// Where head `head`'s C lies in its image's block, and C's leading
        /// dimension.
        fn place(self, tokens: usize, head: usize) -> (std::ops::Range<usize>, usize) {
            // The `WIDTH` columns from `column` of `tokens` rows `row` wide.
            let span = |row: usize, column: usize| column..column + (tokens - 1) * row + WIDTH;
            match self {
                Target::Scores => (head * tokens * tokens..(head + 1) * tokens * tokens, tokens),
                Target::Output => (span(MODEL, head * WIDTH), MODEL),
                Target::Gradient { part } => {
                    (span(3 * MODEL, part * MODEL + head * WIDTH), 3 * MODEL)
                }
            }
        }
    }
    // Large enough for any target's blocks; each product writes its own.
    let mut out = vec![MaybeUninit::<f32>::uninit(); images * tokens * 3 * MODEL];
    // One head's operands; `p` is P, or dS in the backward pass (both
    // `[tokens, tokens]`).
    #[derive(Clone, Copy)]
    struct Head<'a> {
        q: MatRef<'a, f32>,
        k: MatRef<'a, f32>,
        v: MatRef<'a, f32>,
        go: MatRef<'a, f32>,
        p: MatRef<'a, f32>,
    }
    // A head's `[tokens, 64]` operand: the columns from `column` of an
    // image's block of rows `row` wide, read in place.
    fn columns(block: &[f32], row: usize, column: usize) -> MatRef<'_, f32> {
        MatRef::new(&block[column..], row, false)
    }
    group.throughput(Throughput::Elements(
        (images * HEADS * 2 * tokens * tokens * WIDTH) as u64,
    ));
    // (tokens, the head's operands, C, C's leading dimension).
    type Product = fn(usize, Head, &mut [MaybeUninit<f32>], usize);
    let products: [(&str, Target, Product); 6] = [
        ("scores q·kT", Target::Scores, |t, h, c, ldc| {
            gemm_write_strided(t, t, WIDTH, h.q, h.k.transposed(), c, ldc, false)
        }),
        ("out P·V", Target::Output, |t, h, c, ldc| {
            gemm_write_strided(t, WIDTH, t, h.p, h.v, c, ldc, false)
        }),
        (
            "dV = PT·dO",
            Target::Gradient { part: 2 },
            |t, h, c, ldc| gemm_write_strided(t, WIDTH, t, h.p.transposed(), h.go, c, ldc, false),
        ),
        ("dP = dO·vT", Target::Scores, |t, h, c, ldc| {
            gemm_write_strided(t, t, WIDTH, h.go, h.v.transposed(), c, ldc, false)
        }),
        (
            "dQ = dS·k",
            Target::Gradient { part: 0 },
            |t, h, c, ldc| gemm_write_strided(t, WIDTH, t, h.p, h.k, c, ldc, false),
        ),
        (
            "dK = dST·q",
            Target::Gradient { part: 1 },
            |t, h, c, ldc| gemm_write_strided(t, WIDTH, t, h.p.transposed(), h.q, c, ldc, false),
        ),
    ];
    let shape = format!("{}x{tokens}x64x{tokens}", images * HEADS);
    for (what, target, product) in products {
        group.bench_function(BenchmarkId::new(what, &shape), |bench| {
            bench.iter(|| {
                out.par_chunks_mut(target.block(tokens))
                    .zip(qkv.par_chunks(tokens * 3 * MODEL))
                    .zip(go.par_chunks(tokens * MODEL))
                    .zip(p.par_chunks(HEADS * tokens * tokens))
                    .for_each(|(((out, qkv), go), p)| {
                        for head in 0..HEADS {
                            // q, k and v: parts 0, 1 and 2 of the projection's row.
                            let part = |part| columns(qkv, 3 * MODEL, part * MODEL + head * WIDTH);
                            let operands = Head {
                                q: part(0),
                                k: part(1),
                                v: part(2),
                                go: columns(go, MODEL, head * WIDTH),
                                p: MatRef::new(
                                    &p[head * tokens * tokens..][..tokens * tokens],
                                    tokens,
                                    false,
                                ),
                            };
                            let (c, ldc) = target.place(tokens, head);
                            product(tokens, operands, &mut out[c], ldc);
                        }
                    });
                black_box(&out);
            })
        });
    }
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
    // The ViT's GELU: fc1's bias and the activation in one pass.
    let fc1_bias = tensor(&[768]);
    group.bench_function("bias_gelu/6400x768", |b| {
        b.iter(|| black_box(h.bias_gelu(&fc1_bias).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, matmul, gemm, attention, rowwise);
/// criterion's `criterion_main!`, run on a thread of a rayon pool as `msn`
/// runs its commands (`cli/src/threads.rs`): an op called from outside the
/// pool would pay a hand-off to the pool's threads and back on every call.
fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("starting the CPU threads");
    pool.install(|| {
        benches();
        Criterion::default().configure_from_args().final_summary();
    });
}
