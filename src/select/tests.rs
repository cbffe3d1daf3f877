//! Unit tests of the scoring and selection math against naive loops.
use super::*;
use ndarray::{arr1, Array3};

/// xorshift64* so tests need no rand crate and are reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1).
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        #[allow(clippy::cast_precision_loss)]
        let u = (x >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * u - 1.0
    }

    fn array3(&mut self, shape: (usize, usize, usize)) -> Array3<f32> {
        Array3::from_shape_simple_fn(shape, || self.next_f32())
    }
}

fn naive_reference(q: &Array3<f32>, k: &Array3<f32>) -> Vec<f32> {
    let (n_q, n_head, hd) = q.dim();
    let (n, n_kv, _) = k.dim();
    let group = n_head / n_kv;
    (0..n)
        .map(|j| {
            let mut s = 0.0f64;
            for h in 0..n_head {
                for x in 0..hd {
                    s += f64::from(q[[n_q - 1, h, x]]) * f64::from(k[[j, h / group, x]]);
                }
            }
            #[allow(clippy::cast_possible_truncation)]
            let s = s as f32;
            s
        })
        .collect()
}

/// Softmax vote of the last `w` query rows, written as plainly as possible.
fn naive_window(q: &Array3<f32>, k: &Array3<f32>, w: usize) -> Vec<f32> {
    let (n_q, n_head, hd) = q.dim();
    let (n, n_kv, _) = k.dim();
    let group = n_head / n_kv;
    let mut out = vec![0.0f64; n];
    for t in n_q - w..n_q {
        let pos = n - n_q + t;
        for h in 0..n_head {
            let logits: Vec<f64> = (0..n)
                .map(|j| {
                    let mut s = 0.0f64;
                    for x in 0..hd {
                        s += f64::from(q[[t, h, x]]) * f64::from(k[[j, h / group, x]]);
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let scaled = s / (hd as f64).sqrt();
                    scaled
                })
                .collect();
            let max = logits[..=pos]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = logits[..=pos].iter().map(|l| (l - max).exp()).sum();
            for j in 0..=pos {
                out[j] += (logits[j] - max).exp() / z;
            }
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    out.into_iter().map(|x| x as f32).collect()
}

fn assert_close(got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale.max(w.abs()),
            "index {j}: got {g}, want {w}"
        );
    }
}

fn naive_pool(s: &[f32], kernel: usize) -> Vec<f32> {
    let half = kernel / 2;
    let mut padded = vec![0.0f32; half];
    padded.extend_from_slice(s);
    padded.extend(std::iter::repeat_n(0.0, half));
    #[allow(clippy::cast_precision_loss)]
    padded
        .windows(kernel)
        .map(|w| w.iter().sum::<f32>() / kernel as f32)
        .collect()
}

#[test]
fn reference_matches_naive_for_gqa_ratios() {
    let mut rng = Rng::new(1);
    // (n_head, n_head_kv): ratios 1, 3, 4, 8.
    for (n_head, n_kv) in [(3, 3), (9, 3), (8, 2), (32, 4)] {
        for (n, n_q, hd) in [(37, 1, 16), (50, 4, 24), (5, 5, 3)] {
            let q = rng.array3((n_q, n_head, hd));
            let k = rng.array3((n, n_kv, hd));
            let got = scores(q.view(), k.view(), Scoring::Reference).unwrap();
            assert_close(got.as_slice().unwrap(), &naive_reference(&q, &k), 1e-4);
        }
    }
}

#[test]
fn reference_uses_only_the_last_query() {
    let mut rng = Rng::new(2);
    let mut q = rng.array3((3, 4, 8));
    let k = rng.array3((10, 2, 8));
    let before = scores(q.view(), k.view(), Scoring::Reference).unwrap();
    q.slice_mut(s![..2, .., ..]).fill(100.0);
    let after = scores(q.view(), k.view(), Scoring::Reference).unwrap();
    assert_eq!(before, after);
}

#[test]
fn reference_accepts_non_contiguous_views() {
    let mut rng = Rng::new(3);
    let q = rng.array3((2, 4, 8));
    let k_wide = rng.array3((12, 2, 16));
    let k = k_wide.slice(s![.., .., ..8]);
    let got = scores(q.view(), k, Scoring::Reference).unwrap();
    assert_close(
        got.as_slice().unwrap(),
        &naive_reference(&q, &k.to_owned()),
        1e-4,
    );
}

#[test]
fn head_softmax_matches_naive() {
    let mut rng = Rng::new(4);
    for (n_head, n_kv) in [(3, 3), (9, 3), (8, 2)] {
        let q = rng.array3((3, n_head, 16)).mapv(|x| 4.0 * x);
        let k = rng.array3((41, n_kv, 16));
        let got = scores(q.view(), k.view(), Scoring::HeadSoftmax).unwrap();
        assert_close(got.as_slice().unwrap(), &naive_window(&q, &k, 1), 1e-4);
        // Each head contributes a distribution summing to 1.
        #[allow(clippy::cast_precision_loss)]
        let total = n_head as f32;
        assert!((got.sum() - total).abs() < 1e-3 * total);
    }
}

#[test]
fn window_softmax_matches_naive() {
    let mut rng = Rng::new(5);
    for (n_head, n_kv, n_q, window) in [(4, 2, 6, 6), (9, 3, 8, 5), (8, 8, 3, 10)] {
        let q = rng.array3((n_q, n_head, 12)).mapv(|x| 3.0 * x);
        let k = rng.array3((23, n_kv, 12));
        let got = scores(q.view(), k.view(), Scoring::WindowSoftmax { window }).unwrap();
        let want = naive_window(&q, &k, window.min(n_q));
        assert_close(got.as_slice().unwrap(), &want, 1e-4);
    }
}

#[test]
fn window_softmax_respects_the_causal_mask() {
    // 4 query rows at positions 6..9 of a 10-token prompt; the key at position 8 would take
    // nearly all the mass of any query that could see it.
    let (n, n_q, hd) = (10, 4, 4);
    let mut q = Array3::<f32>::zeros((n_q, 2, hd));
    q.slice_mut(s![.., .., 0]).fill(1.0);
    let mut k = Array3::<f32>::zeros((n, 1, hd));
    k[[8, 0, 0]] = 1000.0;
    let got = scores(q.view(), k.view(), Scoring::WindowSoftmax { window: 4 }).unwrap();
    // Queries at positions 6 and 7 cannot see key 8: each spreads 2 heads uniformly over
    // 7 and 8 keys. Queries at 8 and 9 put all their mass (2 heads each) on key 8.
    let early = 2.0 / 7.0 + 2.0 / 8.0;
    for j in 0..6 {
        assert!((got[j] - early).abs() < 1e-5, "key {j}: {}", got[j]);
    }
    assert!((got[6] - early).abs() < 1e-5);
    assert!((got[7] - 2.0 / 8.0).abs() < 1e-5);
    assert!((got[8] - 4.0).abs() < 1e-4, "key 8: {}", got[8]);
    assert!(got[9].abs() < 1e-6, "key 9: {}", got[9]);
    assert_close(got.as_slice().unwrap(), &naive_window(&q, &k, 4), 1e-4);
}

#[test]
fn window_of_one_equals_head_softmax() {
    let mut rng = Rng::new(6);
    let q = rng.array3((5, 8, 16)).mapv(|x| 3.0 * x);
    let k = rng.array3((30, 2, 16));
    let a = scores(q.view(), k.view(), Scoring::HeadSoftmax).unwrap();
    let b = scores(q.view(), k.view(), Scoring::WindowSoftmax { window: 1 }).unwrap();
    assert_eq!(a, b);
}

#[test]
fn window_softmax_block_size_does_not_matter() {
    let mut rng = Rng::new(7);
    let q = rng.array3((6, 8, 8)).mapv(|x| 3.0 * x);
    let k = rng.array3((29, 2, 8));
    let d = dims(&q.view(), &k.view()).unwrap();
    let want = naive_window(&q, &k, 5);
    for block in [1, 3, 4, 7, 20, 1000] {
        let got = softmax_scores(&q.view(), &k.view(), d, 5, block);
        assert_close(got.as_slice().unwrap(), &want, 1e-4);
    }
    assert_eq!(logit_block(LOGIT_BUDGET * 2), 1);
    assert_eq!(logit_block(LOGIT_BUDGET / 4), 4);
}

#[test]
fn window_zero_is_an_error() {
    let q = Array3::<f32>::zeros((1, 1, 2));
    let k = Array3::<f32>::zeros((3, 1, 2));
    assert!(scores(q.view(), k.view(), Scoring::WindowSoftmax { window: 0 }).is_err());
}

#[test]
fn bad_shapes_are_errors() {
    let z = |a, b, c| Array3::<f32>::zeros((a, b, c));
    let cases = [
        (z(1, 6, 8), z(10, 4, 8), "n_head % n_head_kv"),
        (z(1, 4, 8), z(10, 2, 16), "head_dim mismatch"),
        (z(1, 4, 8), z(0, 2, 8), "n == 0"),
        (z(0, 4, 8), z(10, 2, 8), "n_q == 0"),
        (z(11, 4, 8), z(10, 2, 8), "n_q > n"),
        (z(1, 4, 8), z(10, 0, 8), "no kv heads"),
        (z(1, 0, 8), z(10, 2, 8), "no query heads"),
        (z(1, 4, 0), z(10, 2, 0), "head_dim 0"),
    ];
    for (q, k, what) in &cases {
        for sc in [
            Scoring::Reference,
            Scoring::HeadSoftmax,
            Scoring::WindowSoftmax { window: 2 },
        ] {
            assert!(scores(q.view(), k.view(), sc).is_err(), "{what} {sc}");
            assert!(
                gemfilter_select(q.view(), k.view(), sc, 4, &[]).is_err(),
                "{what} {sc}"
            );
        }
    }
    let q = z(1, 4, 8);
    let k = z(10, 2, 8);
    assert!(gemfilter_select(q.view(), k.view(), Scoring::Reference, 4, &[true; 9]).is_err());
    assert!(gemfilter_select(q.view(), k.view(), Scoring::Reference, 4, &[true; 10]).is_ok());
}

#[test]
fn scoring_names_round_trip() {
    for name in Scoring::NAMES {
        let s: Scoring = name.parse().unwrap();
        assert_eq!(s.to_string(), name);
    }
    assert_eq!(
        "window-softmax".parse::<Scoring>().unwrap(),
        Scoring::WindowSoftmax {
            window: DEFAULT_WINDOW
        }
    );
    assert!("softmax".parse::<Scoring>().is_err());
    assert_eq!(Scoring::WindowSoftmax { window: 7 }.queries_needed(), 7);
    assert_eq!(Scoring::Reference.queries_needed(), 1);
}

#[test]
fn avg_pool5_hand_values() {
    let got = avg_pool5(arr1(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).view());
    assert_close(
        got.as_slice().unwrap(),
        &[1.2, 2.0, 3.0, 4.0, 3.6, 3.0],
        1e-6,
    );
}

#[test]
fn avg_pool5_short_inputs() {
    assert_eq!(avg_pool5(arr1(&[5.0]).view()), arr1(&[1.0]));
    assert_close(
        avg_pool5(arr1(&[5.0, 10.0]).view()).as_slice().unwrap(),
        &[3.0, 3.0],
        1e-6,
    );
    assert_eq!(avg_pool5(Array1::<f32>::zeros(0).view()).len(), 0);
}

#[test]
fn avg_pool_matches_padded_naive() {
    let mut rng = Rng::new(8);
    for n in [1, 2, 3, 4, 5, 6, 17, 100] {
        let s: Array1<f32> = (0..n).map(|_| rng.next_f32()).collect();
        for kernel in [1, 3, 5, 7] {
            let got = avg_pool(s.view(), kernel);
            assert_close(
                got.as_slice().unwrap(),
                &naive_pool(s.as_slice().unwrap(), kernel),
                1e-6,
            );
        }
    }
}

#[test]
#[should_panic(expected = "odd")]
fn avg_pool_rejects_even_kernel() {
    let _ = avg_pool(arr1(&[1.0, 2.0]).view(), 4);
}

#[test]
fn avg_pool_huge_kernels() {
    let mut rng = Rng::new(9);
    // Wide kernels (prefix sums, clamped windows) agree with the padded naive pool.
    for n in [1, 2, 5, 100, 300] {
        let s: Array1<f32> = (0..n).map(|_| rng.next_f32()).collect();
        for kernel in [61, 63, 65, 101, 2 * n + 1, 4 * n + 3] {
            let got = avg_pool(s.view(), kernel);
            assert_close(
                got.as_slice().unwrap(),
                &naive_pool(s.as_slice().unwrap(), kernel),
                1e-5,
            );
        }
    }
    // Kernels whose padding would overflow or need gigabytes: instant, tiny, sane.
    let s: Array1<f32> = (0..1000).map(|_| rng.next_f32()).collect();
    let total: f32 = s.sum();
    for kernel in [usize::MAX, 8_589_934_593, 999_999_999] {
        let t = std::time::Instant::now();
        let got = avg_pool(s.view(), kernel);
        assert!(t.elapsed().as_secs_f64() < 0.5);
        assert_eq!(got.len(), 1000);
        #[allow(clippy::cast_precision_loss)]
        let want = total / kernel as f32;
        assert!(got.iter().all(|&x| (x - want).abs() <= want * 1e-4 + 1e-30));
    }
    assert_eq!(
        avg_pool(Array1::<f32>::zeros(0).view(), usize::MAX).len(),
        0
    );
}

#[test]
fn top_k_basics() {
    let s = arr1(&[0.1, 0.9, 0.3, 0.8, 0.2, 0.7]);
    assert_eq!(select_top_k(s.view(), 6, &[]), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(select_top_k(s.view(), 100, &[]), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(select_top_k(s.view(), 3, &[]), vec![1, 3, 5]);
    assert_eq!(select_top_k(s.view(), 1, &[]), vec![1]);
    assert_eq!(select_top_k(s.view(), 0, &[]), Vec::<usize>::new());
    assert_eq!(
        select_top_k(Array1::zeros(0).view(), 3, &[]),
        Vec::<usize>::new()
    );
}

#[test]
fn top_k_matches_sort_on_random_data() {
    let mut rng = Rng::new(9);
    let n = 1000;
    let s: Array1<f32> = (0..n).map(|_| (rng.next_f32() * 20.0).round()).collect();
    for k in [1, 10, 137, 999] {
        let got = select_top_k(s.view(), k, &[]);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap().then(a.cmp(&b)));
        let mut want = order[..k].to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "k {k}");
        assert!(got.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn top_k_ties_take_lower_indices() {
    let s = arr1(&[1.0; 8]);
    assert_eq!(select_top_k(s.view(), 3, &[]), vec![0, 1, 2]);
    let s = arr1(&[0.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]);
    assert_eq!(select_top_k(s.view(), 4, &[]), vec![1, 2, 3, 5]);
}

#[test]
fn top_k_protected_kept_and_counted() {
    let s = arr1(&[9.0, 0.0, 8.0, 0.1, 7.0, 0.2]);
    let p = [false, true, false, false, false, true];
    // Two protected use two of the four slots; the two best unprotected fill the rest.
    assert_eq!(select_top_k(s.view(), 4, &p), vec![0, 1, 2, 5]);
    assert_eq!(select_top_k(s.view(), 2, &p), vec![1, 5]);
    // More protected than k: all protected, nothing else.
    assert_eq!(select_top_k(s.view(), 1, &p), vec![1, 5]);
    assert_eq!(select_top_k(s.view(), 0, &p), vec![1, 5]);
    let all = [true; 6];
    assert_eq!(select_top_k(s.view(), 2, &all), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn top_k_nan_ranks_lowest() {
    let s = arr1(&[f32::NAN, -5.0, f32::NAN, -7.0, f32::NEG_INFINITY]);
    assert_eq!(select_top_k(s.view(), 2, &[]), vec![1, 3]);
    assert_eq!(select_top_k(s.view(), 3, &[]), vec![1, 3, 4]);
    assert_eq!(select_top_k(s.view(), 4, &[]), vec![0, 1, 3, 4]);
}

#[test]
fn score_key_orders_scores() {
    let ordered = [
        f32::INFINITY,
        1e30,
        2.5,
        1e-40,
        0.0,
        -1e-40,
        -2.5,
        -1e30,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for w in ordered.windows(2) {
        assert!(score_key(w[0]) < score_key(w[1]), "{} vs {}", w[0], w[1]);
    }
    assert_eq!(score_key(0.0), score_key(-0.0));
    assert_eq!(score_key(f32::NAN), score_key(-f32::NAN));
    // Zeros of both signs tie, so the lower index wins.
    assert_eq!(
        select_top_k(arr1(&[-1.0, 0.0, -0.0]).view(), 1, &[]),
        vec![1]
    );
    assert_eq!(
        select_top_k(arr1(&[-1.0, -0.0, 0.0]).view(), 1, &[]),
        vec![1]
    );
}

#[test]
fn wide_keys_agree_with_narrow_keys() {
    let mut rng = Rng::new(10);
    let s: Vec<f32> = (0..500).map(|_| (rng.next_f32() * 8.0).round()).collect();
    let prot: Vec<bool> = (0..500).map(|i| i % 7 == 0).collect();
    for budget in [0, 1, 50, 400, 500] {
        let mut a = prot.clone();
        let mut b = prot.clone();
        mark_best(&s, &mut a, budget, pack64, unpack64);
        mark_best(&s, &mut b, budget, pack128, unpack128);
        assert_eq!(a, b, "budget {budget}");
        let added = a.iter().filter(|&&x| x).count() - prot.iter().filter(|&&x| x).count();
        assert_eq!(added, budget.min(500 - 72));
    }
}

#[test]
fn fast_exp_is_accurate() {
    let mut worst = 0.0f64;
    for i in 0..=200_000 {
        let x = -90.0 * f64::from(i) / 200_000.0;
        #[allow(clippy::cast_possible_truncation)]
        let xf = x as f32;
        let want = f64::from(xf).exp();
        let got = f64::from(fast_exp(xf));
        if xf >= -87.0 {
            worst = worst.max((got - want).abs() / want);
        } else {
            assert!(got == 0.0 || (got - want).abs() < 1e-37, "x {xf}: {got}");
        }
    }
    assert!(worst < 5e-7, "worst relative error {worst}");
    assert!((fast_exp(0.0) - 1.0).abs() < 1e-7);
    assert_eq!(fast_exp(-1000.0), 0.0);
    assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
}

#[test]
fn runs_examples() {
    assert_eq!(runs(&[]), Vec::<(usize, usize)>::new());
    assert_eq!(runs(&[4]), vec![(4, 4)]);
    assert_eq!(
        runs(&[0, 1, 2, 5, 7, 8, 10]),
        vec![(0, 2), (5, 5), (7, 8), (10, 10)]
    );
}

#[test]
fn recall_examples() {
    let sel = [1, 2, 3, 7, 9];
    assert!((recall(&sel, 0..4) - 0.75).abs() < 1e-12);
    assert!((recall(&sel, 1..4) - 1.0).abs() < 1e-12);
    assert!((recall(&sel, 4..7)).abs() < 1e-12);
    assert!((recall(&sel, 7..11) - 0.5).abs() < 1e-12);
    assert!((recall(&sel, 5..5) - 1.0).abs() < 1e-12);
    assert!((recall(&[], 0..3)).abs() < 1e-12);
}

#[test]
fn gemfilter_select_end_to_end() {
    // One KV head, keys aligned with the query at positions 10..13: those and their pooled
    // neighbourhood win.
    let n = 40;
    let mut q = Array3::<f32>::zeros((1, 2, 4));
    q.slice_mut(s![0, .., 0]).fill(1.0);
    let mut k = Array3::<f32>::zeros((n, 1, 4));
    for j in 10..13 {
        k[[j, 0, 0]] = 1.0;
    }
    let mut protected = vec![false; n];
    protected[39] = true;
    let sel = gemfilter_select(q.view(), k.view(), Scoring::Reference, 4, &protected).unwrap();
    assert_eq!(sel.indices, vec![10, 11, 12, 39]);
    assert_eq!(sel.scores.len(), n);
    assert!((sel.scores[11] - 6.0 / 5.0).abs() < 1e-6);
    assert!((recall(&sel.indices, 10..13) - 1.0).abs() < 1e-12);
}

#[test]
fn combined_layers_are_standardised_sums() {
    let a = arr1(&[1.0f32, 2.0, 3.0]);
    let b = arr1(&[100.0f32, 100.0, 400.0]);
    let c = combine_layers(&[a.view(), b.view()]).unwrap();
    // a → (-√1.5, 0, √1.5); b → (-1/√2, -1/√2, √2).
    let (r15, r2) = (1.5f32.sqrt(), 2f32.sqrt());
    let want = [-r15 - 1.0 / r2, -1.0 / r2, r15 + r2];
    for (x, w) in c.iter().zip(want) {
        assert!((x - w).abs() < 1e-4, "{c:?}");
    }
    let flat = combine_layers(&[arr1(&[5.0f32, 5.0]).view()]).unwrap();
    assert_eq!(flat.to_vec(), vec![0.0, 0.0]);
    assert!(combine_layers(&[]).is_err());
    assert!(combine_layers(&[a.view(), arr1(&[1.0f32]).view()]).is_err());
}

#[test]
fn sentence_ends_are_line_breaks_and_final_punctuation() {
    let pieces = [
        "The", " key", " is", ":", " 9a74", "-ea9f", ".", " Next", "!\n", " a", "?  ",
    ];
    let ends = sentence_ends(&pieces);
    let at: Vec<usize> = (0..pieces.len()).filter(|&i| ends[i]).collect();
    assert_eq!(at, vec![6, 8, 10], "':' does not end a sentence");
}

#[test]
fn segment_max_selects_the_whole_sentence_of_the_best_key() {
    // Sentence 0..=6: the key (index 1) scores high, the value (4, 5) low. Sentence 7..=9 has
    // middling scores everywhere. Pooled top-4 alone would take the key and the middling tokens;
    // by sentence it takes the key's sentence from its start.
    let s = arr1(&[0.1f32, 9.0, 0.2, 0.1, 0.0, 0.0, 0.1, 3.0, 3.0, 3.0]);
    let mut ends = vec![false; 10];
    ends[6] = true;
    ends[9] = true;
    let m = segment_max(s.view(), &ends, &[]);
    assert_eq!(&m.to_vec()[..7], &[9.0; 7]);
    assert_eq!(&m.to_vec()[7..], &[3.0; 3]);
    assert_eq!(select_top_k(m.view(), 7, &[]), (0..7).collect::<Vec<_>>());
    assert_eq!(select_top_k(s.view(), 4, &[]), vec![1, 7, 8, 9]);
}

#[test]
fn segment_max_keeps_protected_scores_out_of_the_context() {
    // The question (protected, 3..5) scores highest; the context sentence before it must not
    // inherit that score, and the protected tokens keep their own.
    let s = arr1(&[1.0f32, 2.0, 1.5, 50.0, 60.0, 40.0]);
    let protected = [false, false, false, true, true, true];
    let m = segment_max(s.view(), &[], &protected);
    assert_eq!(m.to_vec(), vec![2.0, 2.0, 2.0, 50.0, 60.0, 40.0]);
}

#[test]
fn segment_max_cuts_long_runs() {
    let n = MAX_SEGMENT * 2 + 3;
    let mut v = vec![0.0f32; n];
    v[0] = 5.0;
    let m = segment_max(ndarray::Array1::from(v).view(), &[], &[]);
    assert_eq!(m[MAX_SEGMENT - 1], 5.0);
    assert_eq!(
        m[MAX_SEGMENT], 0.0,
        "a run without ends is cut after MAX_SEGMENT tokens"
    );
    assert_eq!(m[n - 1], 0.0);
}
