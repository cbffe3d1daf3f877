//! Cost of the selection step between the filter pass and the re-run, at Llama-3.1-8B's head
//! shape (32 query heads, 8 KV heads, `head_dim` 128). Run: `cargo bench --bench select`.
//!
//! `score/*` compares the two places a filter pass can score: the host (keys read out of an f16
//! cache, converted, scored with ndarray) and a ggml graph on the device that holds the cache
//! (the first GPU, else the CPU backend). Lengths: `GEMFILTER_BENCH_N` (default 8192,32768).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gemfilter::engine::ffi::score::{DeviceKeys, Place, F16, LOGIT_BUDGET};
use gemfilter::select::{self, avg_pool5, gemfilter_select, select_top_k, Scoring};
use ndarray::{Array1, Array3};

const N_HEAD: usize = 32;
const N_HEAD_KV: usize = 8;
const HEAD_DIM: usize = 128;
const TOP_K: usize = 1024;

/// xorshift64*: reproducible data without a rand dependency.
fn random_array(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array3::from_shape_simple_fn(shape, || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        #[allow(clippy::cast_precision_loss)]
        let u = (x >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * u - 1.0
    })
}

fn key_bytes(n: usize) -> u64 {
    (n * N_HEAD_KV * HEAD_DIM * std::mem::size_of::<f32>()) as u64
}

fn bench_reference(c: &mut Criterion) {
    let mut group = c.benchmark_group("select/reference");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for n in [8192, 32768, 131_072] {
        let q = random_array((1, N_HEAD, HEAD_DIM), 1);
        let k = random_array((n, N_HEAD_KV, HEAD_DIM), 2);
        // Bytes of K read per call: the step is bound by streaming K from memory.
        group.throughput(Throughput::Bytes(key_bytes(n)));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                gemfilter_select(
                    black_box(q.view()),
                    black_box(k.view()),
                    Scoring::Reference,
                    TOP_K,
                    &[],
                )
                .expect("valid shapes")
            });
        });
    }
    group.finish();
}

fn bench_pool_top_k(c: &mut Criterion) {
    let mut group = c.benchmark_group("select/pool+top-k");
    let n = 131_072;
    let raw: Array1<f32> = random_array((n, 1, 1), 3)
        .into_shape_with_order(n)
        .expect("n");
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter(|| {
            let pooled = avg_pool5(black_box(raw.view()));
            select_top_k(pooled.view(), TOP_K, &[])
        });
    });
    group.finish();
}

fn bench_window_softmax(c: &mut Criterion) {
    let mut group = c.benchmark_group("select/window-softmax-32");
    group.sample_size(10);
    let n = 8192;
    let q = random_array((32, N_HEAD, HEAD_DIM), 4);
    let k = random_array((n, N_HEAD_KV, HEAD_DIM), 5);
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter(|| {
            gemfilter_select(
                black_box(q.view()),
                black_box(k.view()),
                Scoring::WindowSoftmax { window: 32 },
                TOP_K,
                &[],
            )
            .expect("valid shapes")
        });
    });
    group.finish();
}

fn lengths() -> Vec<usize> {
    std::env::var("GEMFILTER_BENCH_N")
        .ok()
        .and_then(|v| v.split(',').map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![8192, 32768])
}

fn bench_score_where(c: &mut Criterion) {
    for (name, scoring) in [
        ("reference", Scoring::Reference),
        ("window-softmax-32", Scoring::WindowSoftmax { window: 32 }),
    ] {
        let mut group = c.benchmark_group(format!("score/{name}"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(5));
        let rows = scoring.queries_needed();
        let q = random_array((rows, N_HEAD, HEAD_DIM), 6);
        let q_flat = q.as_slice().expect("standard layout").to_vec();
        for n in lengths() {
            let k = random_array((n, N_HEAD_KV, HEAD_DIM), 7);
            let keys = DeviceKeys::upload(
                k.as_slice().expect("standard layout"),
                N_HEAD_KV,
                HEAD_DIM,
                F16,
                0,
                Place::Gpu,
            )
            .expect("keys fit on the device");
            let device = keys.device();
            group.bench_with_input(BenchmarkId::new("host", n), &n, |b, _| {
                b.iter(|| {
                    let k = keys.read().expect("f16 converts");
                    let k = Array3::from_shape_vec((n, N_HEAD_KV, HEAD_DIM), k).expect("shape");
                    select::scores(q.view(), k.view(), scoring).expect("valid shapes")
                });
            });
            group.bench_with_input(
                BenchmarkId::new(format!("graph-{device}"), n),
                &n,
                |b, _| {
                    b.iter(|| {
                        keys.scores(black_box(&q_flat), N_HEAD, scoring, LOGIT_BUDGET)
                            .expect("the device runs the graph")
                    });
                },
            );
        }
        group.finish();
    }
}

criterion_group!(
    benches,
    bench_reference,
    bench_pool_top_k,
    bench_window_softmax,
    bench_score_where
);
criterion_main!(benches);
