//! Engine internals on the real SmolLM2-135M: the filter pass stops at layer r, and the Q/K
//! it captures are the ones the model computes.

use gemfilter::capture::{hadamard_blocks, CaptureSpec, KSource};
use gemfilter::engine::{ContextOptions, Engine, LoadOptions};
use gemfilter::select::{self, Scoring};
use llama_cpp_2::context::params::KvCacheType;

use crate::util::*;

fn engine() -> Engine {
    Engine::load(
        &smollm2(),
        &LoadOptions {
            n_gpu_layers: 0,
            use_mmap: true,
            verbose: false,
            placement: gemfilter::engine::Placement::default(),
            adjust: gemfilter::engine::adapters::Adjust::default(),
        },
    )
    .unwrap()
}

fn ctx(ubatch: u32) -> ContextOptions {
    ContextOptions {
        n_batch: 2048,
        n_ubatch: ubatch,
        threads: 2,
        threads_batch: 2,
        flash_attn: -1,
        type_k: KvCacheType::F16,
        type_v: KvCacheType::F16,
        extra: gemfilter::engine::ContextExtras::default(),
    }
}

fn tokens(e: &Engine, chars: usize) -> Vec<llama_cpp_2::token::LlamaToken> {
    let text = haystack(chars, "The secret passkey is 48213.", 0.5);
    e.model.vocab().tokenize(text.as_bytes(), true, false)
}

fn spec(layers: Vec<usize>, n: usize, q_window: usize, stop: bool) -> CaptureSpec {
    CaptureSpec {
        layers,
        n_tokens: n,
        q_window,
        stop_after_last: stop,
        trace_layers: true,
        k_source: KSource::Ubatch,
    }
}

#[test]
fn filter_pass_computes_no_layer_above_r() {
    let e = engine();
    let toks = tokens(&e, 3000);
    let n = toks.len();
    assert!(n > 512, "want several ubatches, got {n} tokens");
    let ubatches = n.div_ceil(256);

    let early = e
        .filter_pass(&toks, spec(vec![5], n, 1, true), &ctx(256), false)
        .unwrap();
    let c = &early.capture;
    assert_eq!(
        c.max_layer_reached(),
        Some(5),
        "nodes per layer: {:?}",
        c.nodes_per_layer
    );
    assert_eq!(
        c.early_exits, ubatches,
        "every ubatch must stop after layer 5's Q/K"
    );
    // Layer 5 itself only ran as far as its Q/K: fewer nodes than a whole layer.
    assert!(
        c.nodes_per_layer[5] < c.nodes_per_layer[4],
        "{:?}",
        c.nodes_per_layer
    );

    // Control: without the early exit every one of the 30 layers runs, so the check above can fail.
    let full = e
        .filter_pass(&toks, spec(vec![5], n, 1, false), &ctx(256), false)
        .unwrap();
    assert_eq!(full.capture.max_layer_reached(), Some(29));
    assert_eq!(full.capture.early_exits, 0);
}

#[test]
fn captured_qk_match_an_independent_full_run() {
    let e = engine();
    let toks = tokens(&e, 2500);
    let n = toks.len();
    // Filter pass: early exit at layer 9, ubatch 128.
    let a = e
        .filter_pass(&toks, spec(vec![9], n, 1, true), &ctx(128), false)
        .unwrap();
    // Independent run: the whole graph, other batching, observing layers 3 and 9 and a window.
    let b = e
        .filter_pass(&toks, spec(vec![3, 9], n, 8, false), &ctx(512), false)
        .unwrap();
    let (la, lb) = (&a.capture.layers[0], &b.capture.layers[1]);
    assert_eq!(la.k_view().shape(), &[n, 3, 64]);
    assert_eq!(la.q_view().shape(), &[1, 9, 64]);
    assert_eq!(lb.q_view().shape(), &[8, 9, 64]);
    let close = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .all(|(p, q)| (p - q).abs() <= 2e-2 + 2e-2 * q.abs())
    };
    assert!(
        close(&la.k, &lb.k),
        "K differs between the filter pass and the full run"
    );
    assert!(close(&la.q, &lb.q[7 * 9 * 64..]), "last query differs");
    // Layer 3 is different data: the comparison above is not vacuous.
    assert!(!close(&b.capture.layers[0].k, &lb.k));

    let sa =
        select::gemfilter_select(la.q_view(), la.k_view(), Scoring::Reference, 256, &[]).unwrap();
    let lbq = lb.q_view();
    let sb = select::gemfilter_select(
        lbq.slice(ndarray::s![7.., .., ..]),
        lb.k_view(),
        Scoring::Reference,
        256,
        &[],
    )
    .unwrap();
    let overlap = sa
        .indices
        .iter()
        .filter(|i| sb.indices.binary_search(i).is_ok())
        .count();
    assert!(overlap >= 250, "top-256 sets differ: overlap {overlap}");
}

fn spec_cache(layers: Vec<usize>, n: usize, q_window: usize) -> CaptureSpec {
    CaptureSpec {
        k_source: KSource::Cache,
        ..spec(layers, n, q_window, true)
    }
}

/// Relative L2 distance.
fn rel_err(x: &[f32], y: &[f32]) -> f32 {
    let num: f32 = x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f32 = y.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

#[test]
fn keys_read_from_the_kv_cache_match_the_per_ubatch_capture() {
    let e = engine();
    let toks = tokens(&e, 2500);
    let n = toks.len();
    let ubatches = n.div_ceil(128);
    let a = e
        .filter_pass(&toks, spec(vec![9], n, 4, true), &ctx(128), false)
        .unwrap();
    let b = e
        .filter_pass(&toks, spec_cache(vec![9], n, 4), &ctx(128), false)
        .unwrap();
    // Cache mode observed nothing before the last ubatch: earlier ubatches ran every layer
    // (no per-ubatch stop, so no per-ubatch wait), and only the last one stopped early.
    assert_eq!(a.capture.early_exits, ubatches);
    assert_eq!(b.capture.early_exits, 1);
    assert_eq!(b.capture.max_layer_reached(), Some(29));
    let (la, lb) = (&a.capture.layers[0], &b.capture.layers[0]);
    assert_eq!(lb.k_view().shape(), &[n, 3, 64]);
    assert_eq!(la.q, lb.q, "queries come from the same node either way");
    // The cache holds K as f16: equal up to f16 rounding, row for row (cell i = position i).
    let err = rel_err(&lb.k, &la.k);
    assert!(err < 1e-3, "cache K vs Kcur: relative error {err}");
    // Not vacuous: shifting by one position is far off.
    let row = 3 * 64;
    assert!(rel_err(&lb.k[row..], &la.k[..la.k.len() - row]) > 0.1);
    let pick = |l: &gemfilter::capture::LayerCapture| {
        select::gemfilter_select(l.q_view(), l.k_view(), Scoring::Reference, 256, &[])
            .unwrap()
            .indices
    };
    let (sa, sb) = (pick(la), pick(lb));
    let overlap = sa.iter().filter(|i| sb.binary_search(i).is_ok()).count();
    assert!(overlap >= 254, "top-256 overlap {overlap}");

    // A quantized cache (-ctk q8_0) is dequantized on read.
    let mut q8 = ctx(128);
    q8.type_k = KvCacheType::Q8_0;
    let c = e
        .filter_pass(&toks, spec_cache(vec![9], n, 4), &q8, false)
        .unwrap();
    let lc = &c.capture.layers[0];
    // llama.cpp stores a quantized K rotated by a 64x64 Hadamard matrix (head_dim 64), and
    // the capture rotates the query to match, so q·k and the selection are unchanged.
    let mut rot_k = la.k.clone();
    hadamard_blocks(&mut rot_k, 64);
    let err = rel_err(&lc.k, &rot_k);
    assert!(
        err > 1e-4 && err < 2e-2,
        "q8_0 cache K: relative error {err}"
    );
    let mut rot_q = la.q.clone();
    hadamard_blocks(&mut rot_q, 64);
    // (Layers below 9 read a quantized cache too, so the query itself moves a little.)
    let (e_rot, e_plain) = (rel_err(&lc.q, &rot_q), rel_err(&lc.q, &la.q));
    assert!(
        e_rot < 2e-2 && e_plain > 0.2,
        "query rotated like the cache: {e_rot} vs {e_plain}"
    );
    let sc = pick(lc);
    let overlap = sa.iter().filter(|i| sc.binary_search(i).is_ok()).count();
    assert!(overlap >= 240, "q8_0 top-256 overlap {overlap}");
}

/// Scores from a ggml graph over the KV cache (here the CPU backend; a GPU's cache in real runs)
/// equal the host path's scores from the same cache, for every scoring and a quantized cache.
#[test]
fn scores_computed_on_the_cache_device_match_the_host_scores() {
    use gemfilter::capture::{CaptureState, GraphScoring};
    let e = engine();
    let toks = tokens(&e, 1500);
    let n = toks.len();
    for (scoring, type_k) in [
        (Scoring::Reference, KvCacheType::F16),
        (Scoring::WindowSoftmax { window: 8 }, KvCacheType::F16),
        (Scoring::WindowSoftmax { window: 8 }, KvCacheType::Q8_0),
    ] {
        let mut c = ctx(128);
        c.type_k = type_k;
        let window = scoring.queries_needed();
        let host = e
            .filter_pass(&toks, spec_cache(vec![8, 9], n, window), &c, false)
            .unwrap();
        let state = CaptureState::new(spec_cache(vec![8, 9], n, window)).with_graph_scoring(Some(
            GraphScoring {
                scoring,
                on_host: true,
            },
        ));
        let dev = e.filter_pass_with(&toks, state, &c, false).unwrap();
        assert_eq!(dev.capture.graph_fallback, None);
        assert!(dev.capture.score_secs > 0.0);
        for (lh, ld) in host.capture.layers.iter().zip(&dev.capture.layers) {
            assert!(
                ld.k.is_empty(),
                "{scoring:?}: keys were never copied to the host"
            );
            let got = ld.scores.as_ref().expect("scored on the device");
            let want = select::scores(lh.q_view(), lh.k_view(), scoring).unwrap();
            let err = rel_err(got, want.as_slice().unwrap());
            assert!(err < 1e-4, "{scoring:?} {type_k:?}: relative error {err}");
            let top = |s: &[f32]| {
                let pooled = select::avg_pool(ndarray::ArrayView1::from(s), 5);
                select::select_top_k(pooled.view(), 256, &[])
            };
            assert_eq!(
                top(got),
                top(want.as_slice().unwrap()),
                "{scoring:?}: same selection"
            );
        }
        // Not vacuous: the two layers score differently.
        let (a, b) = (&dev.capture.layers[0], &dev.capture.layers[1]);
        assert!(rel_err(a.scores.as_ref().unwrap(), b.scores.as_ref().unwrap()) > 0.05);
    }
}
