//! Token scoring and selection: the part of `GemFilter` that runs between the filter pass and the
//! re-run. Pure functions over the post-RoPE queries and keys captured at the filter layer.
//!
//! Layout (row-major f32, as llama.cpp writes it):
//! - queries `q`: `[n_q, n_head, head_dim]`, the last `n_q` prompt tokens in order, so row `t`
//!   sits at absolute position `n - n_q + t`;
//! - keys `k`: `[n, n_head_kv, head_dim]`, every prompt token.
//!
//! Query head `h` reads KV head `h / (n_head / n_head_kv)` (grouped-query attention).

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use anyhow::{bail, ensure, Result};
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView3, Axis};

/// Pooling kernel of the reference (`avg_pool1d(kernel_size=5, stride=1, padding=2)`).
pub const POOL_KERNEL: usize = 5;

/// Observation window used when `window-softmax` is parsed without an explicit window.
pub const DEFAULT_WINDOW: usize = 32;

/// Lanes of the hand-unrolled reductions: independent accumulators let the compiler use SIMD
/// (it may not reassociate a single running float sum).
const LANES: usize = 16;

/// Upper bound on the logits buffer of the softmax scorings (floats), so that 128K-token prompts
/// with a wide window do not allocate `n * window * group` at once.
const LOGIT_BUDGET: usize = 1 << 24;

/// How each prompt token is scored before pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// The paper's scoring: `s_j = sum_h q_last,h · k_j,g(h)` over every query head of the last
    /// prompt token. No softmax and no `1/sqrt(d)`: a constant factor does not change the ranking.
    Reference,
    /// Last token only, but each head's scores go through its own softmax over all keys (with
    /// `1/sqrt(d)`) before the heads are summed, so no single head with large logits dominates.
    HeadSoftmax,
    /// SnapKV-style observation-window vote: the last `min(window, n_q)` query tokens, each head
    /// softmax-normalised over the keys it may causally attend to, summed over tokens and heads.
    WindowSoftmax {
        /// Number of trailing query tokens that vote (at least 1).
        window: usize,
    },
}

impl Scoring {
    /// CLI names, in the order they are documented.
    pub const NAMES: [&'static str; 3] = ["reference", "head-softmax", "window-softmax"];

    /// Query rows this scoring needs from the end of the prompt.
    #[must_use]
    pub fn queries_needed(self) -> usize {
        match self {
            Scoring::Reference | Scoring::HeadSoftmax => 1,
            Scoring::WindowSoftmax { window } => window.max(1),
        }
    }
}

impl fmt::Display for Scoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The window is a separate CLI option, so the name alone round-trips through FromStr.
        f.write_str(match self {
            Scoring::Reference => Self::NAMES[0],
            Scoring::HeadSoftmax => Self::NAMES[1],
            Scoring::WindowSoftmax { .. } => Self::NAMES[2],
        })
    }
}

/// Unknown scoring name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseScoringError(String);

impl fmt::Display for ParseScoringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown scoring {:?} (expected one of: {})",
            self.0,
            Scoring::NAMES.join(", ")
        )
    }
}

impl std::error::Error for ParseScoringError {}

impl FromStr for Scoring {
    type Err = ParseScoringError;

    /// `window-softmax` gets [`DEFAULT_WINDOW`]; callers with a window option overwrite it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reference" => Ok(Scoring::Reference),
            "head-softmax" => Ok(Scoring::HeadSoftmax),
            "window-softmax" => Ok(Scoring::WindowSoftmax {
                window: DEFAULT_WINDOW,
            }),
            other => Err(ParseScoringError(other.to_string())),
        }
    }
}

/// Checked shapes of one `(q, k)` pair.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n_q: usize,
    n: usize,
    n_head_kv: usize,
    head_dim: usize,
    /// Query heads per KV head.
    group: usize,
}

fn dims(q: &ArrayView3<'_, f32>, k: &ArrayView3<'_, f32>) -> Result<Dims> {
    let (n_q, n_head, q_dim) = q.dim();
    let (n, n_head_kv, head_dim) = k.dim();
    ensure!(n > 0, "no keys to score (n = 0)");
    ensure!(n_q > 0, "no queries to score with (n_q = 0)");
    ensure!(n_q <= n, "more query rows ({n_q}) than prompt tokens ({n})");
    ensure!(
        n_head > 0 && n_head_kv > 0,
        "zero heads (n_head {n_head}, n_head_kv {n_head_kv})"
    );
    ensure!(
        q_dim == head_dim,
        "query head_dim {q_dim} differs from key head_dim {head_dim}"
    );
    ensure!(head_dim > 0, "head_dim is 0");
    ensure!(
        n_head % n_head_kv == 0,
        "n_head {n_head} is not a multiple of n_head_kv {n_head_kv}"
    );
    Ok(Dims {
        n_q,
        n,
        n_head_kv,
        head_dim,
        group: n_head / n_head_kv,
    })
}

/// Per-token scores (before pooling) of the prompt's keys under `scoring`.
///
/// # Errors
/// Inconsistent shapes: `n == 0`, `n_q == 0`, `n_q > n`, zero heads, differing `head_dim`,
/// `n_head` not a multiple of `n_head_kv`, or a window of 0.
pub fn scores(
    q: ArrayView3<'_, f32>,
    k: ArrayView3<'_, f32>,
    scoring: Scoring,
) -> Result<Array1<f32>> {
    let d = dims(&q, &k)?;
    match scoring {
        Scoring::Reference => Ok(reference_scores(&q, &k, d)),
        Scoring::HeadSoftmax => Ok(softmax_scores(&q, &k, d, 1, logit_block(d.n))),
        Scoring::WindowSoftmax { window } => {
            ensure!(window > 0, "window-softmax needs a window of at least 1");
            let w = window.min(d.n_q);
            Ok(softmax_scores(&q, &k, d, w, logit_block(d.n)))
        }
    }
}

/// Reference scores as one pass over K: by linearity, `sum_h q_h · k_g(h)` equals
/// `sum_g (sum_{h in g} q_h) · k_g`, i.e. `K[n, n_head_kv*head_dim] · qsum`. At 128K tokens K is
/// 512 MiB, so this is bound by memory bandwidth; one streaming read is the floor.
fn reference_scores(q: &ArrayView3<'_, f32>, k: &ArrayView3<'_, f32>, d: Dims) -> Array1<f32> {
    let last = q.index_axis(Axis(0), d.n_q - 1);
    let width = d.n_head_kv * d.head_dim;
    let mut qsum = vec![0.0f32; width];
    for (h, head) in last.outer_iter().enumerate() {
        let g = h / d.group;
        for (acc, &x) in qsum[g * d.head_dim..(g + 1) * d.head_dim]
            .iter_mut()
            .zip(head.iter())
        {
            *acc += x;
        }
    }
    let k_std = k.as_standard_layout();
    let rows = k_std.as_slice().expect("standard layout is contiguous");
    rows.chunks_exact(width)
        .map(|row| dot(row, &qsum))
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (a_main, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_main, b_tail) = b.split_at(a_main.len());
    for (ca, cb) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Query rows per logits block for `n` keys (at least one).
fn logit_block(n: usize) -> usize {
    (LOGIT_BUDGET / n).max(1)
}

/// Softmax vote of the last `w` query rows: for each row and head, a softmax (scaled by
/// `1/sqrt(head_dim)`) over the keys at or before that row's position, summed into `s_j`.
/// Logits are computed `block` (query, head) rows at a time.
fn softmax_scores(
    q: &ArrayView3<'_, f32>,
    k: &ArrayView3<'_, f32>,
    d: Dims,
    w: usize,
    block: usize,
) -> Array1<f32> {
    #[allow(clippy::cast_precision_loss)]
    let scale = 1.0 / (d.head_dim as f32).sqrt();
    let first = d.n_q - w;
    let mut out = vec![0.0f32; d.n];
    for g in 0..d.n_head_kv {
        let kg = k.slice(s![.., g, ..]);
        // (query, head) rows that read KV head g, pre-scaled, with their absolute positions.
        let mut qg = Array2::<f32>::zeros((w * d.group, d.head_dim));
        let mut pos = Vec::with_capacity(w * d.group);
        for t in first..d.n_q {
            for h in g * d.group..(g + 1) * d.group {
                let r = pos.len();
                qg.row_mut(r)
                    .assign(&q.slice(s![t, h, ..]).mapv(|x| x * scale));
                pos.push(d.n - d.n_q + t);
            }
        }
        let mut start = 0;
        while start < pos.len() {
            let end = (start + block).min(pos.len());
            let mut logits = qg.slice(s![start..end, ..]).dot(&kg.t());
            for (mut row, &p) in logits.outer_iter_mut().zip(&pos[start..end]) {
                let row = row.as_slice_mut().expect("fresh dot output is contiguous");
                accumulate_softmax(&mut row[..=p], &mut out[..=p]);
            }
            start = end;
        }
    }
    Array1::from(out)
}

/// `out += softmax(logits)`, overwriting `logits` with the exponentials.
fn accumulate_softmax(logits: &mut [f32], out: &mut [f32]) {
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let mut chunks = logits.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, &x) in lane_max.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lane_max)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    // Lane sums in f32, flushed to f64 every few thousand terms: vectorised, and the rounding
    // error stays that of a short sum even at 128K keys.
    let mut sum = 0.0f64;
    for block in logits.chunks_mut(LANES * 256) {
        let mut lane_sum = [0.0f32; LANES];
        let mut chunks = block.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (s, x) in lane_sum.iter_mut().zip(c) {
                *x = fast_exp(*x - max);
                *s += *x;
            }
        }
        for x in chunks.into_remainder() {
            *x = fast_exp(*x - max);
            sum += f64::from(*x);
        }
        sum += lane_sum.iter().map(|&s| f64::from(s)).sum::<f64>();
    }
    #[allow(clippy::cast_possible_truncation)]
    let inv = (1.0 / sum) as f32;
    for (o, &e) in out.iter_mut().zip(logits.iter()) {
        *o += e * inv;
    }
}

/// `exp(x)` for `x <= 0` (softmax arguments after subtracting the max), branch-free so that it
/// vectorises; `std`'s `exp` is a libm call per element and dominated the softmax scorings.
/// Cephes `expf` reduction and polynomial: relative error about 2e-7; results below the smallest
/// normal float flush to 0.
#[inline]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Below this 2^n would leave the normal range.
    const MIN_ARG: f32 = -87.0;
    let xc = x.clamp(MIN_ARG, 0.0);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n is in [-126, 0] after the clamp, so the biased exponent is in [1, 127].
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < MIN_ARG {
        0.0
    } else {
        e * scale
    }
}

/// Kernels up to this width are summed shift by shift; wider ones through prefix sums.
const DIRECT_POOL_MAX: usize = 63;

/// 1-D average pool with an odd `kernel`, stride 1 and `kernel / 2` zeros of padding on each
/// side; the divisor is always `kernel` (`PyTorch` `count_include_pad=True`), so the edges are
/// damped. Output length equals input length. Any kernel width works in O(n) memory and
/// O(n · min(kernel, 64)) time: a window wider than the input only adds padding zeros, and wide
/// kernels use f64 prefix sums.
///
/// # Panics
/// If `kernel` is even (the output would not line up with the input).
#[must_use]
pub fn avg_pool(s: ArrayView1<'_, f32>, kernel: usize) -> Array1<f32> {
    assert!(kernel % 2 == 1, "avg_pool kernel must be odd, got {kernel}");
    let n = s.len();
    // Windows reach at most n - 1 positions either way inside the input; beyond that they cover
    // only padding zeros, which add nothing to the sum (the divisor stays `kernel`).
    let half = (kernel / 2).min(n.saturating_sub(1));
    #[allow(clippy::cast_precision_loss)]
    let divisor = kernel as f64;
    if 2 * half + 1 > DIRECT_POOL_MAX {
        let mut prefix = Vec::with_capacity(n + 1);
        let mut acc = 0.0f64;
        prefix.push(acc);
        for &x in s {
            acc += f64::from(x);
            prefix.push(acc);
        }
        #[allow(clippy::cast_possible_truncation)]
        let out: Vec<f32> = (0..n)
            .map(|i| {
                let lo = i.saturating_sub(half);
                let hi = (i + half + 1).min(n);
                ((prefix[hi] - prefix[lo]) / divisor) as f32
            })
            .collect();
        return Array1::from(out);
    }
    let mut padded = vec![0.0f32; n + 2 * half];
    for (p, &x) in padded[half..half + n].iter_mut().zip(s.iter()) {
        *p = x;
    }
    // Add the kernel's shifted copies one at a time: each pass vectorises, and every window is
    // summed left to right from scratch (a running sum would drift over 128K positions).
    let mut out = vec![0.0f32; n];
    for offset in 0..=2 * half {
        for (o, &x) in out.iter_mut().zip(&padded[offset..offset + n]) {
            *o += x;
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    let divisor = divisor as f32;
    for o in &mut out {
        *o /= divisor;
    }
    Array1::from(out)
}

/// The reference pooling: kernel 5, stride 1, zero padding 2, divisor 5.
#[must_use]
pub fn avg_pool5(s: ArrayView1<'_, f32>) -> Array1<f32> {
    avg_pool(s, POOL_KERNEL)
}

/// Ranking key of a score, smaller = better: order-preserving bits of the float, inverted so
/// that higher scores come first, with every NaN after every number (including -inf).
fn score_key(x: f32) -> u32 {
    if x.is_nan() {
        return u32::MAX;
    }
    // -0.0 + 0.0 = +0.0, so the two zeros tie (and fall back to the index).
    let bits = (x + 0.0).to_bits();
    let ascending = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    !ascending
}

/// Marks in `keep` the `budget` best unmarked indices. Candidates are packed into one integer
/// key (score key high, index low) so `select_nth_unstable` compares plain integers, and the
/// index in the low bits breaks ties towards the lower index.
fn mark_best<K: Ord + Copy>(
    pooled: &[f32],
    keep: &mut [bool],
    budget: usize,
    pack: impl Fn(u32, usize) -> K,
    index: impl Fn(K) -> usize,
) {
    if budget == 0 {
        return;
    }
    let mut cand: Vec<K> = pooled
        .iter()
        .zip(keep.iter())
        .enumerate()
        .filter(|&(_, (_, &kept))| !kept)
        .map(|(i, (&x, _))| pack(score_key(x), i))
        .collect();
    if budget < cand.len() {
        cand.select_nth_unstable(budget - 1);
        cand.truncate(budget);
    }
    for &c in &cand {
        keep[index(c)] = true;
    }
}

#[allow(clippy::cast_possible_truncation)]
fn pack64(key: u32, i: usize) -> u64 {
    (u64::from(key) << 32) | (i as u64)
}

#[allow(clippy::cast_possible_truncation)]
fn unpack64(c: u64) -> usize {
    (c & 0xFFFF_FFFF) as usize
}

#[allow(clippy::cast_possible_truncation)]
fn pack128(key: u32, i: usize) -> u128 {
    (u128::from(key) << 64) | (i as u128)
}

#[allow(clippy::cast_possible_truncation)]
fn unpack128(c: u128) -> usize {
    (c & u128::from(u64::MAX)) as usize
}

/// Indices to keep, sorted ascending.
///
/// Every index with `protected[i]` is kept and counts against `k`; the rest of the budget,
/// `k.saturating_sub(n_protected)`, goes to the highest `pooled` scores among the unprotected
/// indices. The result has `min(max(k, n_protected), n)` entries; `k >= n` keeps everything.
/// `protected` is either empty (nothing protected) or one flag per score; entries past `n` are
/// ignored and missing ones count as unprotected.
///
/// Ties are broken by the lower index first and NaN scores rank below every number, so the
/// result is deterministic. Average time O(n) (`select_nth_unstable`, no full sort).
#[must_use]
pub fn select_top_k(pooled: ArrayView1<'_, f32>, k: usize, protected: &[bool]) -> Vec<usize> {
    let n = pooled.len();
    if k >= n {
        return (0..n).collect();
    }
    let is_protected = |i: usize| protected.get(i).copied().unwrap_or(false);
    let n_protected = (0..n).filter(|&i| is_protected(i)).count();
    let budget = k.saturating_sub(n_protected);
    let mut keep: Vec<bool> = (0..n).map(is_protected).collect();
    if budget > 0 {
        let owned;
        let src = if let Some(s) = pooled.as_slice() {
            s
        } else {
            owned = pooled.to_vec();
            &owned
        };
        // Indices fit 32 bits for any llama.cpp context (positions are i32).
        if u32::try_from(n).is_ok() {
            mark_best(src, &mut keep, budget, pack64, unpack64);
        } else {
            mark_best(src, &mut keep, budget, pack128, unpack128);
        }
    }
    keep.iter()
        .enumerate()
        .filter_map(|(i, &kept)| kept.then_some(i))
        .collect()
}

/// Collapse sorted indices into inclusive `(start, end)` runs of consecutive values.
#[must_use]
pub fn runs(indices: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &i in indices {
        match out.last_mut() {
            Some((_, end)) if i == *end + 1 || i == *end => *end = i,
            _ => out.push((i, i)),
        }
    }
    out
}

/// Share of the indices in `target` that appear in the sorted `selected` (1.0 when `target` is
/// empty).
#[must_use]
pub fn recall(selected: &[usize], target: Range<usize>) -> f64 {
    if target.is_empty() {
        return 1.0;
    }
    let lo = selected.partition_point(|&i| i < target.start);
    let hi = selected.partition_point(|&i| i < target.end);
    let inside = &selected[lo..hi];
    // Count distinct values so a duplicated index cannot push recall past 1.
    let hits = inside
        .iter()
        .enumerate()
        .filter(|&(j, &i)| j == 0 || inside[j - 1] != i)
        .count();
    #[allow(clippy::cast_precision_loss)]
    let r = hits as f64 / target.len() as f64;
    r
}

/// Outcome of [`gemfilter_select`].
#[derive(Debug, Clone)]
pub struct Selection {
    /// Kept prompt positions, sorted ascending.
    pub indices: Vec<usize>,
    /// Pooled score of every prompt position (what the top-k ranked).
    pub scores: Array1<f32>,
}

/// Score, pool and select in one call: the whole `GemFilter` selection step.
///
/// # Errors
/// Bad shapes (see [`scores`]), or `protected` neither empty nor one flag per key.
pub fn gemfilter_select(
    q: ArrayView3<'_, f32>,
    k: ArrayView3<'_, f32>,
    scoring: Scoring,
    top_k: usize,
    protected: &[bool],
) -> Result<Selection> {
    gemfilter_select_pooled(q, k, scoring, top_k, protected, POOL_KERNEL)
}

/// [`gemfilter_select`] with another (odd) pooling kernel: wider kernels keep whole sentences
/// around the best-scoring tokens, which the softmax scorings need on small models.
///
/// # Errors
/// As [`gemfilter_select`], and for an even or zero kernel.
pub fn gemfilter_select_pooled(
    q: ArrayView3<'_, f32>,
    k: ArrayView3<'_, f32>,
    scoring: Scoring,
    top_k: usize,
    protected: &[bool],
    pool: usize,
) -> Result<Selection> {
    let n = k.dim().0;
    if !protected.is_empty() && protected.len() != n {
        bail!(
            "protected mask has {} entries for {n} prompt tokens",
            protected.len()
        );
    }
    if pool.is_multiple_of(2) {
        bail!("pooling kernel must be odd, got {pool}");
    }
    let raw = scores(q, k, scoring)?;
    let pooled = avg_pool(raw.view(), pool);
    let indices = select_top_k(pooled.view(), top_k, protected);
    Ok(Selection {
        indices,
        scores: pooled,
    })
}

/// Longest segment [`segment_max`] lets a sentence be: longer runs (code without line breaks,
/// tables) are cut into pieces of this many tokens, so one long run cannot take the budget.
pub const MAX_SEGMENT: usize = 96;

/// Which tokens end a sentence or line, from their text: a piece holding a line break, or ending
/// (before trailing spaces) in `.`, `!` or `?`. A `:` does not end one: "the key is: VALUE".
#[must_use]
pub fn sentence_ends<P: AsRef<[u8]>>(pieces: &[P]) -> Vec<bool> {
    pieces
        .iter()
        .map(|p| {
            let p = p.as_ref();
            p.contains(&b'\n') || matches!(p.trim_ascii_end().last(), Some(b'.' | b'!' | b'?'))
        })
        .collect()
}

/// Every token takes the highest score of its segment: segments end after a token flagged in
/// `ends`, at a change between protected and unprotected tokens (the template and question never
/// lend their scores to the context), and after [`MAX_SEGMENT`] tokens. Top-k over the result
/// keeps whole sentences in order of their best token; ties inside one keep its start first.
/// `ends` and `protected` may be shorter than `s` (missing entries: no end, unprotected).
#[must_use]
pub fn segment_max(s: ArrayView1<'_, f32>, ends: &[bool], protected: &[bool]) -> Array1<f32> {
    let n = s.len();
    let flag = |v: &[bool], i: usize| v.get(i).copied().unwrap_or(false);
    let mut out = s.to_owned();
    let mut start = 0;
    for i in 0..n {
        let last = i + 1 == n
            || flag(ends, i)
            || flag(protected, i) != flag(protected, i + 1)
            || i + 1 - start >= MAX_SEGMENT;
        if last {
            let best = s
                .slice(s![start..=i])
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            if !flag(protected, i) && best.is_finite() {
                out.slice_mut(s![start..=i]).fill(best);
            }
            start = i + 1;
        }
    }
    out
}

/// Multi-layer scores: each layer's raw scores standardised (zero mean, unit variance, so no
/// layer's scale dominates) and summed. One layer comes back standardised; a constant layer
/// contributes zeros.
///
/// # Errors
/// No layers, or layers of different lengths.
pub fn combine_layers(per_layer: &[ArrayView1<'_, f32>]) -> Result<Array1<f32>> {
    let Some(first) = per_layer.first() else {
        bail!("no layer scores to combine");
    };
    let n = first.len();
    ensure!(
        per_layer.iter().all(|s| s.len() == n),
        "layer scores of different lengths"
    );
    let mut out = Array1::<f32>::zeros(n);
    for s in per_layer {
        #[allow(clippy::cast_precision_loss)]
        let len = n.max(1) as f64;
        let mean = s.iter().map(|&x| f64::from(x)).sum::<f64>() / len;
        let var = s
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / len;
        let sd = var.sqrt();
        if !(sd.is_finite() && sd > 0.0) {
            continue;
        }
        #[allow(clippy::cast_possible_truncation)]
        out.zip_mut_with(s, |o, &x| *o += ((f64::from(x) - mean) / sd) as f32);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
