//! What the filter pass records: post-RoPE Q and K of chosen layers, as plain f32 arrays.
//!
//! The eval-callback trampoline in `engine::ffi` feeds [`CaptureState`] with tensor names, ops and
//! raw rows; everything here is safe Rust with no llama.cpp types, so it can be tested directly.

use ndarray::{ArrayView3, ShapeBuilder};

use crate::select::Scoring;

/// Which tensors to record during one prefill.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    /// Layers (0-based) whose post-RoPE Q and K are recorded, ascending and unique.
    pub layers: Vec<usize>,
    /// Number of prompt tokens that will be decoded (positions `0..n_tokens`).
    pub n_tokens: usize,
    /// How many of the last prompt tokens' queries to keep (1 for the reference method).
    pub q_window: usize,
    /// Stop the graph once the last layer's Q and K of a ubatch are recorded: the early exit.
    pub stop_after_last: bool,
    /// Record, per layer, how many graph nodes the scheduler reached (for tests and `-v`).
    pub trace_layers: bool,
    /// Where the keys are read from.
    pub k_source: KSource,
}

/// Where a target layer's keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KSource {
    /// Observe `Kcur-<il>` in every ubatch. Each observation makes the scheduler wait for the
    /// GPU, but it lets every ubatch stop right after the last target layer (early exit): the
    /// choice when the model has layers above r.
    Ubatch,
    /// Read the layer's KV-cache rows once, in the last ubatch, so earlier ubatches are never
    /// observed and run as asynchronously as a plain prefill. Needs layer r to store its K
    /// (it runs in full): the choice for the (r+1)-layer prefix model, whose last layer is r.
    Cache,
}

/// Where a layer's token scores are computed (`--gem-score-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreOn {
    /// On the KV cache's device when it is a GPU's (cache mode), else on the host.
    #[default]
    Auto,
    /// Always on the host, from keys copied out of the graph or the cache.
    Host,
    /// With ggml wherever the cache is, the CPU backend included (cache mode; tests, benches).
    Graph,
}

impl ScoreOn {
    /// The capture's device scoring for `scoring` under this choice.
    #[must_use]
    pub fn graph(self, scoring: Scoring) -> Option<GraphScoring> {
        match self {
            ScoreOn::Host => None,
            ScoreOn::Auto => Some(GraphScoring {
                scoring,
                on_host: false,
            }),
            ScoreOn::Graph => Some(GraphScoring {
                scoring,
                on_host: true,
            }),
        }
    }
}

/// Score the keys where they are, with a ggml graph on the KV cache's device, instead of copying
/// them to the host (cache mode). Keys in host memory or on an RPC server are read as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphScoring {
    pub scoring: Scoring,
    /// Also run the graph when the cache is in host memory (the CPU backend): tests, benches.
    pub on_host: bool,
}

/// Per-layer capture: queries of the last `q_window` tokens, keys of every token.
#[derive(Debug, Clone, Default)]
pub struct LayerCapture {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// `[q_window, n_head, head_dim]`, row-major.
    pub q: Vec<f32>,
    /// `[n_tokens, n_head_kv, head_dim]`, row-major (empty when `scores` came from the device).
    pub k: Vec<f32>,
    /// Raw per-token scores computed on the cache's device ([`GraphScoring`]), if they were.
    pub scores: Option<Vec<f32>>,
    q_seen: usize,
    k_seen: usize,
}

impl LayerCapture {
    /// Queries as `[q_window, n_head, head_dim]`.
    ///
    /// # Panics
    /// Never: the buffer holds whole rows by construction.
    #[must_use]
    pub fn q_view(&self) -> ArrayView3<'_, f32> {
        let rows = self.q.len() / (self.n_head * self.head_dim).max(1);
        ArrayView3::from_shape(
            (rows, self.n_head, self.head_dim).strides((
                self.n_head * self.head_dim,
                self.head_dim,
                1,
            )),
            &self.q,
        )
        .expect("q buffer length is rows * n_head * head_dim by construction")
    }

    /// Keys as `[n_tokens, n_head_kv, head_dim]`.
    ///
    /// # Panics
    /// Never: the buffer holds whole rows by construction.
    #[must_use]
    pub fn k_view(&self) -> ArrayView3<'_, f32> {
        let rows = self.k.len() / (self.n_head_kv * self.head_dim).max(1);
        ArrayView3::from_shape((rows, self.n_head_kv, self.head_dim), &self.k)
            .expect("k buffer length is rows * n_head_kv * head_dim by construction")
    }

    /// Tokens whose keys were recorded.
    #[must_use]
    pub fn k_rows(&self) -> usize {
        self.k_seen
    }

    /// The keys of the first `rows` tokens (whole rows; fewer if fewer were recorded).
    #[must_use]
    pub fn first_keys(&self, rows: usize) -> &[f32] {
        let row = self.n_head_kv * self.head_dim;
        &self.k[..(rows * row).min(self.k.len())]
    }

    /// This capture with `earlier` keys (whole rows of the same shape, from a decode of the
    /// tokens before these) in front: the queries of this decode against the keys of the whole
    /// sequence, as a conversation turn scores a kept document.
    #[must_use]
    pub fn after(&self, earlier: &[f32]) -> LayerCapture {
        let row = (self.n_head_kv * self.head_dim).max(1);
        let mut k = Vec::with_capacity(earlier.len() + self.k.len());
        k.extend_from_slice(earlier);
        k.extend_from_slice(&self.k);
        LayerCapture {
            n_head: self.n_head,
            n_head_kv: self.n_head_kv,
            head_dim: self.head_dim,
            q: self.q.clone(),
            k,
            scores: None,
            q_seen: self.q_seen,
            k_seen: self.k_seen + earlier.len() / row,
        }
    }
}

/// Which of Q and K a graph node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Q,
    K,
}

/// Mutable state the eval callback works on. Owned by the filter pass, outlives the context.
#[derive(Debug)]
pub struct CaptureState {
    pub spec: CaptureSpec,
    /// One entry per `spec.layers` element, same order.
    pub layers: Vec<LayerCapture>,
    /// Graph nodes the scheduler reached, per layer index (only with `trace_layers`).
    pub nodes_per_layer: Vec<u32>,
    /// Set when a tensor did not have the expected shape or type; the pass then fails.
    pub error: Option<String>,
    /// Ubatches cut short after the last target layer.
    pub early_exits: usize,
    /// Seconds spent reading keys out of the KV cache (cache mode).
    pub read_secs: f64,
    /// Score on the cache's device instead of reading keys (cache mode), when set.
    pub graph_scoring: Option<GraphScoring>,
    /// Seconds spent scoring on the device.
    pub score_secs: f64,
    /// Why the device scoring fell back to reading keys, if it did.
    pub graph_fallback: Option<String>,
}

/// Parse `"Qcur-13"` → (`Role::Q`, 13). Other names → None.
#[must_use]
pub fn parse_qk_name(name: &[u8]) -> Option<(Role, usize)> {
    let (role, rest) = if let Some(r) = name.strip_prefix(b"Qcur-") {
        (Role::Q, r)
    } else if let Some(r) = name.strip_prefix(b"Kcur-") {
        (Role::K, r)
    } else {
        return None;
    };
    Some((role, parse_usize(rest)?))
}

/// Parse a KV-cache tensor name, `"cache_k_l13"` (or with a tag, `"cache_swa_k_l13"`) → 13.
#[must_use]
pub fn parse_cache_k_name(name: &[u8]) -> Option<usize> {
    let rest = name.strip_prefix(b"cache_")?;
    let at = rest.windows(3).rposition(|w| w == b"k_l")?;
    if at > 0 && rest[at - 1] != b'_' {
        return None;
    }
    parse_usize(&rest[at + 3..])
}

/// Layer index of a graph node named `"<name>-<il>"`, if it has one.
#[must_use]
pub fn layer_of(name: &[u8]) -> Option<usize> {
    let dash = name.iter().rposition(|&b| b == b'-')?;
    parse_usize(&name[dash + 1..])
}

fn parse_usize(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 6 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0')),
    )
}

/// Multiply every consecutive block of `n` values (n a power of two) by the orthonormal
/// Sylvester-Hadamard matrix, H[i][j] = (-1)^popcount(i & j) / sqrt(n): llama.cpp's
/// `ggml_gen_hadamard`. Symmetric and its own inverse.
pub fn hadamard_blocks(x: &mut [f32], n: usize) {
    debug_assert!(n.is_power_of_two() && x.len().is_multiple_of(n));
    let scale = 1.0 / (n as f32).sqrt();
    for block in x.chunks_exact_mut(n) {
        let mut h = 1;
        while h < n {
            for i in (0..n).step_by(2 * h) {
                for j in i..i + h {
                    let (a, b) = (block[j], block[j + h]);
                    block[j] = a + b;
                    block[j + h] = a - b;
                }
            }
            h *= 2;
        }
        for v in block.iter_mut() {
            *v *= scale;
        }
    }
}

impl CaptureState {
    #[must_use]
    pub fn new(spec: CaptureSpec) -> Self {
        let layers = vec![LayerCapture::default(); spec.layers.len()];
        Self {
            spec,
            layers,
            nodes_per_layer: Vec::new(),
            error: None,
            early_exits: 0,
            read_secs: 0.0,
            graph_scoring: None,
            score_secs: 0.0,
            graph_fallback: None,
        }
    }

    /// Score cached keys on their device (see [`GraphScoring`]).
    #[must_use]
    pub fn with_graph_scoring(mut self, graph: Option<GraphScoring>) -> Self {
        self.graph_scoring = graph;
        self
    }

    /// The layer's keys are in: read, or scored on the device.
    #[must_use]
    pub fn keys_in(&self, slot: usize) -> bool {
        let lc = &self.layers[slot];
        !lc.k.is_empty() || lc.scores.is_some()
    }

    /// Cache mode: the device's per-token scores of a layer (instead of its keys).
    pub fn record_scores(&mut self, slot: usize, scores: Vec<f32>) {
        if scores.len() == self.spec.n_tokens {
            self.layers[slot].scores = Some(scores);
        } else {
            self.error = Some(format!(
                "{} device scores for {} tokens",
                scores.len(),
                self.spec.n_tokens
            ));
        }
    }

    /// Index into `layers` of a target layer.
    #[must_use]
    pub fn slot(&self, layer: usize) -> Option<usize> {
        self.spec.layers.binary_search(&layer).ok()
    }

    /// Called for every node the scheduler is about to compute (the "ask" phase).
    pub fn note_node(&mut self, name: &[u8]) {
        if !self.spec.trace_layers {
            return;
        }
        if let Some(il) = layer_of(name) {
            if il >= self.nodes_per_layer.len() {
                self.nodes_per_layer.resize(il + 1, 0);
            }
            self.nodes_per_layer[il] += 1;
        }
    }

    /// Highest layer any computed node belonged to (with `trace_layers`).
    #[must_use]
    pub fn max_layer_reached(&self) -> Option<usize> {
        self.nodes_per_layer.iter().rposition(|&c| c > 0)
    }

    /// Rows of this ubatch's tensor the capture wants: `(first_row, n_rows)` within the
    /// ubatch, or None. `n_rows_ub` is the ubatch's token count (ne[2]).
    #[must_use]
    pub fn wanted_rows(&self, slot: usize, role: Role, n_rows_ub: usize) -> Option<(usize, usize)> {
        let lc = &self.layers[slot];
        match role {
            Role::K => Some((0, n_rows_ub)),
            Role::Q => {
                let start = lc.q_seen;
                let end = start + n_rows_ub;
                let first_wanted = self.spec.n_tokens.saturating_sub(self.spec.q_window);
                let lo = first_wanted.max(start);
                (lo < end).then(|| (lo - start, end - lo))
            }
        }
    }

    /// Record rows (already converted to f32) of a Q or K tensor with shape
    /// `[head_dim, heads, n_rows_ub]`. `rows` holds only the wanted rows.
    pub fn record(
        &mut self,
        slot: usize,
        role: Role,
        head_dim: usize,
        heads: usize,
        n_rows_ub: usize,
        rows: &[f32],
    ) {
        let copied: Result<(), ()> =
            self.record_with(slot, role, head_dim, heads, n_rows_ub, rows.len(), |dst| {
                dst.copy_from_slice(rows);
                Ok(())
            });
        debug_assert!(copied.is_ok());
    }

    /// As [`CaptureState::record`], but `fill` writes the `len` new values in place (straight
    /// from the tensor, no staging copy). On error nothing is recorded.
    ///
    /// # Errors
    /// Whatever `fill` returns.
    #[allow(clippy::too_many_arguments)]
    pub fn record_with<E>(
        &mut self,
        slot: usize,
        role: Role,
        head_dim: usize,
        heads: usize,
        n_rows_ub: usize,
        len: usize,
        fill: impl FnOnce(&mut [f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        let n_tokens = self.spec.n_tokens;
        let lc = &mut self.layers[slot];
        if lc.head_dim != 0 && lc.head_dim != head_dim {
            self.error = Some(format!(
                "head_dim changed between ubatches ({} vs {head_dim})",
                lc.head_dim
            ));
            return Ok(());
        }
        lc.head_dim = head_dim;
        let (buf, seen) = match role {
            Role::Q => {
                lc.n_head = heads;
                (&mut lc.q, &mut lc.q_seen)
            }
            Role::K => {
                lc.n_head_kv = heads;
                if lc.k.capacity() == 0 {
                    lc.k.reserve_exact(n_tokens * heads * head_dim);
                }
                (&mut lc.k, &mut lc.k_seen)
            }
        };
        let start = buf.len();
        buf.resize(start + len, 0.0);
        if let Err(e) = fill(&mut buf[start..]) {
            buf.truncate(start);
            return Err(e);
        }
        *seen += n_rows_ub;
        Ok(())
    }

    /// Cache mode: note the K shape of a ubatch (at its `Kcur` node) and count its rows as seen;
    /// the values are read from the cache at the end.
    pub fn note_k_rows(&mut self, slot: usize, head_dim: usize, heads: usize, n_rows_ub: usize) {
        let lc = &mut self.layers[slot];
        if (lc.head_dim != 0 && lc.head_dim != head_dim)
            || (lc.n_head_kv != 0 && lc.n_head_kv != heads)
        {
            self.error = Some(format!(
                "K shape changed between ubatches ({}x{} vs {head_dim}x{heads})",
                lc.head_dim, lc.n_head_kv
            ));
            return;
        }
        lc.head_dim = head_dim;
        lc.n_head_kv = heads;
        lc.k_seen += n_rows_ub;
    }

    /// Cache mode: the layer's cache now holds every prompt token and has not been read yet.
    #[must_use]
    pub fn cache_due(&self, slot: usize) -> bool {
        self.layers[slot].k_seen == self.spec.n_tokens && !self.keys_in(slot)
    }

    /// Cache mode: the first `n_tokens` cache rows (cell i holds position i in a fresh,
    /// single-sequence cache), already converted to f32. `rotation`: the Hadamard size llama.cpp
    /// rotated K with before storing it (it does so for quantized caches, and rotates Q the
    /// same way in its own attention); the captured, unrotated queries are rotated to match,
    /// which keeps every per-head q·k (the rotation is orthonormal and acts within heads).
    pub fn record_cache_k(&mut self, slot: usize, rows: Vec<f32>, rotation: Option<usize>) {
        let lc = &mut self.layers[slot];
        let want = self.spec.n_tokens * lc.n_head_kv * lc.head_dim;
        if rows.len() != want {
            self.error = Some(format!(
                "read {} cached key values, expected {want}",
                rows.len()
            ));
            return;
        }
        if let Some(n) = rotation {
            if !n.is_power_of_two() || !lc.head_dim.is_multiple_of(n) {
                self.error = Some(format!(
                    "K cache rotated in blocks of {n}, which do not divide head_dim {}",
                    lc.head_dim
                ));
                return;
            }
            hadamard_blocks(&mut lc.q, n);
        }
        lc.k = rows;
    }

    /// Count a ubatch's rows of Q or K as seen without recording any.
    pub fn skip_rows(&mut self, slot: usize, role: Role, n_rows_ub: usize) {
        let lc = &mut self.layers[slot];
        match role {
            Role::Q => lc.q_seen += n_rows_ub,
            Role::K => lc.k_seen += n_rows_ub,
        }
    }

    /// True when this ubatch's Q and K of the last target layer are both in.
    #[must_use]
    pub fn ubatch_done(&self) -> bool {
        self.layers
            .last()
            .is_some_and(|lc| lc.q_seen == lc.k_seen && lc.k_seen > 0)
    }

    /// Check that every target layer saw every token; call after the prefill.
    ///
    /// # Errors
    /// When a layer's Q or K never appeared (the architecture does not name them) or was
    /// partial.
    pub fn finish(&self) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        for (lc, &il) in self.layers.iter().zip(&self.spec.layers) {
            if lc.k_seen == 0 || lc.q_seen == 0 {
                return Err(format!(
                    "layer {il}: the graph has no post-RoPE nodes named Qcur-{il}/Kcur-{il}; \
                     this architecture does not expose the tensors GemFilter reads"
                ));
            }
            if lc.k_seen != self.spec.n_tokens || lc.q_seen != self.spec.n_tokens {
                return Err(format!(
                    "layer {il}: captured {} keys and {} queries for {} tokens",
                    lc.k_seen, lc.q_seen, self.spec.n_tokens
                ));
            }
            if lc.scores.is_none() && lc.k.len() != self.spec.n_tokens * lc.n_head_kv * lc.head_dim
            {
                return Err(format!(
                    "layer {il}: the KV cache of this layer was not read (no cache_k_l{il} node)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn later_keys_go_after_the_kept_ones() {
        let turn = LayerCapture {
            n_head: 1,
            n_head_kv: 1,
            head_dim: 2,
            q: vec![1.0, 0.0],
            k: vec![5.0, 6.0],
            scores: None,
            q_seen: 1,
            k_seen: 1,
        };
        let doc = LayerCapture {
            k: vec![1.0, 2.0, 3.0, 4.0, 9.0, 9.0],
            k_seen: 3,
            ..turn.clone()
        };
        let all = turn.after(doc.first_keys(2));
        assert_eq!(all.k, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(all.k_rows(), 3);
        assert_eq!(all.k_view().shape(), &[3, 1, 2]);
        assert_eq!(all.q, turn.q);
        assert_eq!(doc.first_keys(10).len(), 6, "never past what was recorded");
    }
    use super::*;

    fn spec(n: usize, w: usize) -> CaptureSpec {
        CaptureSpec {
            layers: vec![3, 7],
            n_tokens: n,
            q_window: w,
            stop_after_last: true,
            trace_layers: true,
            k_source: KSource::Ubatch,
        }
    }

    #[test]
    fn cache_names_parse() {
        assert_eq!(parse_cache_k_name(b"cache_k_l13"), Some(13));
        assert_eq!(parse_cache_k_name(b"cache_swa_k_l5"), Some(5));
        assert_eq!(parse_cache_k_name(b"cache_v_l13"), None);
        assert_eq!(parse_cache_k_name(b"cache_k_l"), None);
        assert_eq!(parse_cache_k_name(b"Kcur-13"), None);
        assert_eq!(parse_cache_k_name(b"cache_xk_l3"), None);
    }

    #[test]
    fn cache_mode_reads_once_after_the_last_ubatch() {
        let mut s = CaptureState::new(CaptureSpec {
            k_source: KSource::Cache,
            ..spec(6, 1)
        });
        s.note_k_rows(0, 2, 1, 4);
        assert!(!s.cache_due(0), "not every token is in the cache yet");
        s.note_k_rows(0, 2, 1, 2);
        assert!(s.cache_due(0));
        s.record_cache_k(0, vec![0.5; 11], None);
        assert!(s.error.take().unwrap().contains("expected 12"));
        s.record_cache_k(0, (0..12).map(|i| i as f32).collect(), None);
        assert!(!s.cache_due(0), "read once");
        assert_eq!(s.layers[0].k_view()[[5, 0, 1]], 11.0);
        s.note_k_rows(0, 4, 1, 2);
        assert!(s.error.unwrap().contains("K shape changed"));
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_qk_name(b"Qcur-13"), Some((Role::Q, 13)));
        assert_eq!(parse_qk_name(b"Kcur-0"), Some((Role::K, 0)));
        assert_eq!(parse_qk_name(b"Vcur-0"), None);
        assert_eq!(parse_qk_name(b"Qcur-"), None);
        assert_eq!(parse_qk_name(b"Qcur-1x"), None);
        assert_eq!(layer_of(b"ffn_out-29"), Some(29));
        assert_eq!(layer_of(b"result_output"), None);
    }

    #[test]
    fn q_window_spans_ubatches() {
        // 10 tokens in ubatches of 4, 4, 2; window 3 wants positions 7, 8, 9.
        let s = CaptureState::new(spec(10, 3));
        assert_eq!(s.wanted_rows(0, Role::Q, 4), None);
        let mut s = s;
        s.skip_rows(0, Role::Q, 4);
        assert_eq!(s.wanted_rows(0, Role::Q, 4), Some((3, 1)));
        s.record(0, Role::Q, 2, 1, 4, &[1.0, 2.0]);
        assert_eq!(s.wanted_rows(0, Role::Q, 2), Some((0, 2)));
        s.record(0, Role::Q, 2, 1, 2, &[3.0, 4.0, 5.0, 6.0]);
        assert_eq!(s.layers[0].q_view().shape(), &[3, 1, 2]);
        assert_eq!(s.layers[0].q_view()[[2, 0, 1]], 6.0);
    }

    #[test]
    fn finish_reports_missing_layers_and_trace() {
        let mut s = CaptureState::new(spec(2, 1));
        s.note_node(b"attn_norm-0");
        s.note_node(b"Kcur-7");
        assert_eq!(s.max_layer_reached(), Some(7));
        assert!(s.finish().unwrap_err().contains("layer 3"));
        for slot in 0..2 {
            s.record(slot, Role::Q, 1, 1, 2, &[0.0]);
            s.record(slot, Role::K, 1, 1, 2, &[0.0, 1.0]);
        }
        assert!(s.ubatch_done());
        assert_eq!(s.finish(), Ok(()));
        assert_eq!(s.layers[1].k_view().shape(), &[2, 1, 1]);
    }

    #[test]
    fn hadamard_matches_the_sylvester_matrix_and_keeps_dot_products() {
        let n = 8;
        let h = |i: usize, j: usize| {
            let sign = if (i & j).count_ones().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            sign / (n as f32).sqrt()
        };
        let x: Vec<f32> = (0..2 * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y = x.clone();
        hadamard_blocks(&mut y, n);
        for b in 0..2 {
            for i in 0..n {
                let want: f32 = (0..n).map(|j| h(i, j) * x[b * n + j]).sum();
                assert!((y[b * n + i] - want).abs() < 1e-5);
            }
        }
        let mut z = y.clone();
        hadamard_blocks(&mut z, n);
        assert!(
            x.iter().zip(&z).all(|(a, b)| (a - b).abs() < 1e-5),
            "H is its own inverse"
        );
        let k: Vec<f32> = (0..n).map(|i| (i as f32 * 1.3).cos()).collect();
        let mut hk = k.clone();
        hadamard_blocks(&mut hk, n);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&x[..n], &k) - dot(&y[..n], &hk)).abs() < 1e-5);
        assert!(
            (dot(&x[..n], &k) - dot(&x[..n], &hk)).abs() > 1e-3,
            "not vacuous"
        );
    }

    #[test]
    fn rotated_cache_rotates_the_queries() {
        let mut s = CaptureState::new(CaptureSpec {
            k_source: KSource::Cache,
            ..spec(1, 1)
        });
        s.record(0, Role::Q, 4, 1, 1, &[1.0, 0.0, 0.0, 0.0]);
        s.note_k_rows(0, 4, 1, 1);
        s.record_cache_k(0, vec![0.0; 4], Some(4));
        assert_eq!(s.layers[0].q, vec![0.5; 4]);
        let mut s2 = CaptureState::new(CaptureSpec {
            k_source: KSource::Cache,
            ..spec(1, 1)
        });
        s2.note_k_rows(0, 4, 1, 1);
        s2.record_cache_k(0, vec![0.0; 4], Some(8));
        assert!(s2.error.unwrap().contains("do not divide"));
    }
}
