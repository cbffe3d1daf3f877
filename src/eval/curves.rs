//! The shared core of the accuracy tools: selection recall per layer and scoring from one
//! capturing prefill per cell, the cells' records, and the rule that picks a layer from the
//! resulting curves. `niah --layers`, `layers` and `calibrate` all go through here.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::path::Path;

use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;
use ndarray::Array1;
use serde::{Deserialize, Serialize};

use super::niah::grid::{self, Cell, Hay, Style, Variant};
use super::niah::report::mean;
use super::{progress, say};
use crate::capture::{CaptureSpec, CaptureState, KSource};
use crate::engine::{ContextOptions, Engine, LoadOptions};
use crate::prompt::Protect;
use crate::scoring::ScoringSpec;
use crate::select;

/// A layer is "as good as the best" when its recall is at most this much lower.
pub const TOLERANCE: f64 = 0.01;

/// Recall of one layer under one scoring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecall {
    pub layer: usize,
    pub scoring: ScoringSpec,
    /// Share of the target tokens among the selected.
    pub recall: f64,
    /// Best (lowest) rank of any target token among the unprotected candidates, 0-based.
    pub best_rank: usize,
}

/// Capture every layer in `layers` in one prefill and compute recall of `target` for each
/// scoring at budget `top_k`.
///
/// # Errors
/// Filter-pass or scoring failures.
#[allow(clippy::too_many_arguments)]
pub fn recall_curve(
    engine: &Engine,
    tokens: &[llama_cpp_2::token::LlamaToken],
    protected: &[bool],
    target: Range<usize>,
    layers: &[usize],
    scorings: &[ScoringSpec],
    top_k: usize,
    ctx: &ContextOptions,
) -> Result<Vec<LayerRecall>> {
    Ok(recall_curve_multi(
        engine,
        tokens,
        protected,
        &[target],
        layers,
        scorings,
        top_k,
        ctx,
        true,
        &mut |_| {},
    )?
    .0)
}

/// [`recall_curve`] for several targets: recall is the mean of the targets' recalls and the
/// best rank the lowest rank of any target token. Scores are computed once per distinct
/// scoring and pooled with each spec's kernel. Also returns the filter pass's seconds.
/// `on_batch` hears the tokens decoded so far after each ubatch (a caller's progress line).
///
/// # Errors
/// Filter-pass or scoring failures.
#[allow(clippy::too_many_arguments)]
pub fn recall_curve_multi(
    engine: &Engine,
    tokens: &[llama_cpp_2::token::LlamaToken],
    protected: &[bool],
    targets: &[Range<usize>],
    layers: &[usize],
    scorings: &[ScoringSpec],
    top_k: usize,
    ctx: &ContextOptions,
    progress: bool,
    on_batch: &mut dyn FnMut(usize),
) -> Result<(Vec<LayerRecall>, f64)> {
    // A target of no token has a vacuous recall of 1 and no rank.
    anyhow::ensure!(
        !targets.is_empty() && targets.iter().all(|t| !t.is_empty()),
        "the needle covers no token of the prompt"
    );
    let q_window = scorings
        .iter()
        .map(|s| s.queries_needed())
        .max()
        .unwrap_or(1);
    let spec = CaptureSpec {
        layers: layers.to_vec(),
        n_tokens: tokens.len(),
        q_window: q_window.min(tokens.len()),
        stop_after_last: true,
        trace_layers: false,
        k_source: KSource::Ubatch,
    };
    // One ubatch per decode call: the same ubatches (the same numbers), a progress step each.
    let ctx = ContextOptions {
        n_batch: ctx.n_batch.min(ctx.n_ubatch).max(1),
        ..ctx.clone()
    };
    let pass = engine.filter_pass_observed(
        tokens,
        CaptureState::new(spec),
        &ctx,
        progress.then_some("filter pass"),
        on_batch,
    )?;
    // Raw scores per (captured layer, base scoring), computed once.
    let mut raw: Vec<(usize, select::Scoring, Array1<f32>)> = Vec::new();
    for (lc, &layer) in pass.capture.layers.iter().zip(layers) {
        for spec in scorings {
            if !raw
                .iter()
                .any(|(l, s, _)| *l == layer && *s == spec.scoring)
            {
                let q = lc.q_view();
                let rows = q.shape()[0];
                let need = spec.queries_needed().min(rows);
                let q = q.slice_move(ndarray::s![rows - need.., .., ..]);
                raw.push((
                    layer,
                    spec.scoring,
                    select::scores(q, lc.k_view(), spec.scoring)?,
                ));
            }
        }
    }
    let raw_of = |layer: usize, s: select::Scoring| {
        raw.iter()
            .find(|(l, sc, _)| *l == layer && *sc == s)
            .map(|r| r.2.view())
    };
    let ends = if scorings.iter().any(|s| s.sentences) {
        engine.sentence_ends(tokens)
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for &layer in layers {
        for &spec in scorings {
            // A multi-layer scoring needs every layer of its span among the captured ones.
            let Some(per_layer) = spec
                .capture_layers(layer)
                .into_iter()
                .map(|l| raw_of(l, spec.scoring))
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let pooled = spec.ranked(&per_layer, &ends, protected)?;
            out.push(point(layer, spec, &pooled, top_k, protected, targets));
        }
    }
    Ok((out, pass.secs))
}

/// Recall and best rank of the targets under one pooled score vector.
fn point(
    layer: usize,
    scoring: ScoringSpec,
    pooled: &Array1<f32>,
    top_k: usize,
    protected: &[bool],
    targets: &[Range<usize>],
) -> LayerRecall {
    let indices = select::select_top_k(pooled.view(), top_k, protected);
    let mut order: Vec<usize> = (0..pooled.len())
        .filter(|&i| !protected.get(i).copied().unwrap_or(false))
        .collect();
    order.sort_by(|&a, &b| pooled[b].total_cmp(&pooled[a]).then(a.cmp(&b)));
    let best_rank = order
        .iter()
        .position(|i| targets.iter().any(|t| t.contains(i)))
        .unwrap_or(usize::MAX);
    #[allow(clippy::cast_precision_loss)]
    let recall = targets
        .iter()
        .map(|t| select::recall(&indices, t.clone()))
        .sum::<f64>()
        / targets.len().max(1) as f64;
    LayerRecall {
        layer,
        scoring,
        recall,
        best_rank,
    }
}

/// Recall per layer and scoring for one cell (`--layers` mode and calibrate).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurveRecord {
    pub key: String,
    pub model: String,
    pub length: usize,
    pub depth: u32,
    pub needle: String,
    pub variant: Variant,
    pub style: Style,
    pub k: usize,
    pub protect: Protect,
    pub prompt_tokens: usize,
    pub filter_pass_s: f64,
    pub points: Vec<LayerRecall>,
}

/// Mean recall per layer of one scoring, over cells.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub layer: usize,
    pub mean_recall: f64,
    pub min_recall: f64,
    /// Median over cells of the needle's best rank.
    pub median_best_rank: usize,
}

/// Curves per scoring (in first-seen order) from per-cell records.
#[must_use]
pub fn aggregate_curves(recs: &[CurveRecord]) -> Vec<(ScoringSpec, Vec<CurvePoint>)> {
    let mut order: Vec<ScoringSpec> = Vec::new();
    let mut acc: BTreeMap<(usize, usize), Vec<(f64, usize)>> = BTreeMap::new();
    for r in recs {
        for p in &r.points {
            let i = order
                .iter()
                .position(|&o| o == p.scoring)
                .unwrap_or_else(|| {
                    order.push(p.scoring);
                    order.len() - 1
                });
            acc.entry((i, p.layer))
                .or_default()
                .push((p.recall, p.best_rank));
        }
    }
    order
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let pts = acc
                .iter()
                .filter(|((sc, _), _)| *sc == i)
                .map(|((_, layer), v)| {
                    let mut ranks: Vec<usize> = v.iter().map(|x| x.1).collect();
                    ranks.sort_unstable();
                    CurvePoint {
                        layer: *layer,
                        mean_recall: mean(v.iter().map(|x| x.0)).unwrap_or(0.0),
                        min_recall: v.iter().map(|x| x.0).fold(f64::INFINITY, f64::min),
                        median_best_rank: ranks[ranks.len() / 2],
                    }
                })
                .collect();
            (s, pts)
        })
        .collect()
}

/// The curves as a table: one row per layer, one recall column per scoring.
#[must_use]
pub fn curve_table(curves: &[(ScoringSpec, Vec<CurvePoint>)]) -> String {
    let mut s = String::from("| layer |");
    for (name, _) in curves {
        let _ = write!(s, " {name} recall (min, median rank) |");
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(curves.len()));
    s.push('\n');
    let mut layers: Vec<usize> = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.layer))
        .collect();
    layers.sort_unstable();
    layers.dedup();
    for l in layers {
        let _ = write!(s, "| {l} |");
        for (_, pts) in curves {
            match pts.iter().find(|p| p.layer == l) {
                Some(p) => {
                    let _ = write!(
                        s,
                        " {:.3} ({:.2}, {}) |",
                        p.mean_recall, p.min_recall, p.median_best_rank
                    );
                }
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s
}
/// Inputs of a curve run shared by `niah --layers` and `calibrate`.
pub struct CurveJob<'a> {
    pub path: &'a Path,
    pub model_name: &'a str,
    pub load: LoadOptions,
    pub ctx: crate::engine::ContextOptions,
    pub haystack: Option<&'a Path>,
    pub style: Style,
    pub chat_template: Option<&'a str>,
    pub protect: Protect,
    pub layers: Vec<usize>,
    /// Scorings with their pooling kernels.
    pub scorings: Vec<ScoringSpec>,
    pub top_k: usize,
    /// `top_k` counts context tokens only (the protected question and template come on top),
    /// as self-calibration's probes do; otherwise it is the run's k, protected tokens included.
    pub context_k: bool,
    pub seed: u64,
}

/// The (layer, label) points a curve job computes per cell.
#[must_use]
pub fn wanted_points(job: &CurveJob<'_>) -> Vec<(usize, ScoringSpec)> {
    job.layers
        .iter()
        .flat_map(|&l| job.scorings.iter().map(move |&s| (l, s)))
        .collect()
}

/// Only the last record per key, with only the wanted points (a rerun with other layers or
/// scorings appends a fuller record for the same cell).
#[must_use]
#[allow(clippy::implicit_hasher)]
pub fn latest_records(
    recs: Vec<CurveRecord>,
    keys: &HashSet<String>,
    wanted: &[(usize, ScoringSpec)],
) -> Vec<CurveRecord> {
    let mut by_key: Vec<CurveRecord> = Vec::new();
    for mut r in recs.into_iter().filter(|r| keys.contains(&r.key)) {
        r.points.retain(|p| wanted.contains(&(p.layer, p.scoring)));
        match by_key.iter_mut().find(|x| x.key == r.key) {
            Some(x) => *x = r,
            None => by_key.push(r),
        }
    }
    by_key
}

/// Identity of a curve cell (what `--layers` reruns skip).
#[must_use]
pub fn curve_key(job: &CurveJob<'_>, c: &Cell) -> String {
    format!(
        "{}|{}|s:{:?}|seed{}|k{}|{:?}",
        job.model_name,
        c.id(),
        job.style,
        job.seed,
        job.top_k,
        job.protect
    )
    .to_lowercase()
}

/// Run the filter pass of each cell once (capturing every layer) and score all layers and
/// scorings; records already in `done` are skipped, new ones are handed to `sink` as they finish.
///
/// # Errors
/// Engine failures, prompt building, or sink errors.
pub fn curve_cells(
    job: &CurveJob<'_>,
    cells: &[Cell],
    existing: &[CurveRecord],
    sink: &mut dyn FnMut(CurveRecord) -> Result<()>,
) -> Result<usize> {
    let lines = !crate::messages::quiet();
    curve_cells_capped(job, cells, existing, sink, &mut |_| None, lines)
}

/// [`curve_cells`] where `deepest`, shown every record so far, may lower the deepest layer the
/// next filter passes run to (an early stop once a shallow layer is known to be good enough);
/// the passes never go deeper again. `progress`: the probes' progress on stderr ([`Probes`]).
///
/// # Errors
/// As [`curve_cells`].
pub fn curve_cells_capped(
    job: &CurveJob<'_>,
    cells: &[Cell],
    existing: &[CurveRecord],
    sink: &mut dyn FnMut(CurveRecord) -> Result<()>,
    deepest: &mut dyn FnMut(&[CurveRecord]) -> Option<usize>,
    progress: bool,
) -> Result<usize> {
    let key_of = |c: &Cell| curve_key(job, c);
    let wanted = wanted_points(job);
    let done: HashSet<&str> = existing
        .iter()
        .filter(|r| {
            wanted
                .iter()
                .all(|w| r.points.iter().any(|p| (p.layer, p.scoring) == *w))
        })
        .map(|r| r.key.as_str())
        .collect();
    let todo: Vec<&Cell> = cells
        .iter()
        .filter(|c| !done.contains(key_of(c).as_str()))
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let vocab = Engine::load_vocab(job.path, &job.load)?;
    let max_len = todo.iter().map(|c| c.length).max().unwrap_or(0);
    let text = grid::load_haystack(job.haystack)?;
    let hay = Hay::new(&vocab, &text, max_len + 64);
    let engine = Engine::load(job.path, &job.load)?;
    let probes = Probes::new(todo.len(), progress);
    let bar = &probes.bar;
    let mut layers = job.layers.clone();
    let mut done_recs: Vec<CurveRecord> = Vec::new();
    for (i, c) in todo.iter().enumerate() {
        let b = grid::build(&vocab, &hay, c, job.style, job.chat_template)?;
        let probe = format!("{} tokens, depth {}%, {}", c.length, c.depth, c.needle.id);
        let mut on_batch = probes.probe(i, &probe, b.asm.tokens.len());
        let protected = b.asm.protected(job.protect);
        let k = if job.context_k {
            job.top_k + protected.iter().filter(|&&p| p).count()
        } else {
            job.top_k
        };
        let (points, secs) = recall_curve_multi(
            &engine,
            &b.asm.tokens,
            &protected,
            &b.targets,
            &layers,
            &job.scorings,
            k,
            &job.ctx,
            false,
            &mut on_batch,
        )?;
        let best = points.iter().max_by(|a, b| a.recall.total_cmp(&b.recall));
        say(
            bar,
            &format!(
                "{:>6} tok  depth {:>3}%  {:<18} filter pass {:.1} s; best recall {:.2} ({} at layer {})",
                b.asm.tokens.len(),
                c.depth,
                c.needle.id,
                secs,
                best.map_or(0.0, |p| p.recall),
                best.map_or("-".into(), |p| p.scoring.to_string()),
                best.map_or(0, |p| p.layer)
            ),
        );
        let rec = CurveRecord {
            key: key_of(c),
            model: job.model_name.to_owned(),
            length: c.length,
            depth: c.depth,
            needle: c.needle.id.to_owned(),
            variant: c.variant,
            style: job.style,
            k: job.top_k,
            protect: job.protect,
            prompt_tokens: b.asm.tokens.len(),
            filter_pass_s: secs,
            points,
        };
        done_recs.push(rec.clone());
        if let Some(cap) = deepest(&done_recs) {
            // At least one layer stays: a pass needs a layer to stop after.
            if layers.iter().any(|&l| l <= cap) {
                layers.retain(|&l| l <= cap);
            }
        }
        sink(rec)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(todo.len())
}

/// Plain progress lines per probe: at most this many (a long probe has hundreds of ubatches).
const LINES_PER_PROBE: usize = 8;

/// The probes' progress on stderr, moving with every decoded ubatch of a probe: one rewritten
/// line on a terminal (probes done, and the tokens of the current one in its message), plain
/// lines otherwise (up to [`LINES_PER_PROBE`] per probe), nothing without `shown`.
struct Probes {
    bar: ProgressBar,
    n: usize,
    /// Plain lines (stderr is not a terminal).
    lines: bool,
    t0: Instant,
}

impl Probes {
    fn new(n: usize, shown: bool) -> Self {
        let bar = if shown {
            progress(n as u64, "filter passes")
        } else {
            ProgressBar::hidden()
        };
        // Elapsed time and the estimate keep moving between ubatches too.
        bar.enable_steady_tick(std::time::Duration::from_millis(500));
        Probes {
            lines: shown && bar.is_hidden(),
            bar,
            n,
            t0: Instant::now(),
        }
    }

    /// The observer of probe `i` (of `n_tokens` tokens): it moves the line after each ubatch.
    fn probe<'p>(&'p self, i: usize, what: &'p str, n_tokens: usize) -> impl FnMut(usize) + 'p {
        self.bar.set_message(format!("{what}: 0/{n_tokens} tokens"));
        let mut step = 0;
        move |done| {
            self.bar
                .set_message(format!("{what}: {done}/{n_tokens} tokens"));
            let at = done * LINES_PER_PROBE / n_tokens.max(1);
            if self.lines && at > step {
                step = at;
                let _ = writeln!(
                    std::io::stderr(),
                    "filter passes {}/{}: {what}: {done}/{n_tokens} tokens ({:.1} s)",
                    i + 1,
                    self.n,
                    self.t0.elapsed().as_secs_f64()
                );
            }
        }
    }
}

/// The recommendation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Choice {
    pub scoring: ScoringSpec,
    pub layer: usize,
    pub recall: f64,
    /// Best mean recall of any scoring and layer.
    pub best: f64,
}

/// Highest finite recall among the points.
fn best_recall<'a>(points: impl IntoIterator<Item = &'a (usize, f64)>) -> Option<f64> {
    let best = points
        .into_iter()
        .map(|p| p.1)
        .filter(|r| r.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    best.is_finite().then_some(best)
}

/// Lowest layer whose recall is at least `floor` (a hair of float slack).
fn lowest_at_least(curve: &[(usize, f64)], floor: f64) -> Option<(usize, f64)> {
    curve
        .iter()
        .filter(|p| p.1 >= floor - 1e-12)
        .min_by_key(|p| p.0)
        .copied()
}

/// Lowest layer whose recall is within `tol` of the curve's best.
#[must_use]
pub fn lowest_within(curve: &[(usize, f64)], tol: f64) -> Option<(usize, f64)> {
    lowest_at_least(curve, best_recall(curve)? - tol)
}

/// Pick the scoring and layer. B is the best recall over every curve; a (scoring, layer) is a
/// candidate when its recall is within `tol` of B. If the first scoring (the reference, the
/// default) has a candidate, its lowest candidate layer wins; otherwise the lowest candidate
/// layer of any scoring (the cheapest filter pass), ties going to the scoring listed first.
#[must_use]
pub fn choose(curves: &[(ScoringSpec, Vec<(usize, f64)>)], tol: f64) -> Option<Choice> {
    let best = best_recall(curves.iter().flat_map(|c| c.1.iter()))?;
    let pick = |&(scoring, (layer, recall)): &(ScoringSpec, (usize, f64))| Choice {
        scoring,
        layer,
        recall,
        best,
    };
    let candidates: Vec<(ScoringSpec, (usize, f64))> = curves
        .iter()
        .filter_map(|(s, pts)| lowest_at_least(pts, best - tol).map(|c| (*s, c)))
        .collect();
    if let (Some(first), Some(c)) = (curves.first(), candidates.first()) {
        if c.0 == first.0 {
            return Some(pick(c));
        }
    }
    candidates.iter().min_by_key(|c| c.1 .0).map(pick)
}

/// Self-calibration's tolerance: a candidate whose recall is at most this much below the best
/// is as good as the best, and the cheapest such candidate is chosen. A needle probe's recall
/// moves in steps of 1/(needle tokens × cells) (about 0.015 for three 23-token needles), so 0.05
/// is three such steps: a shallower layer is not given up for one or two tokens of one needle.
pub const COST_TOLERANCE: f64 = 0.05;

/// What scoring one query against every key of one layer costs, in filter-pass layers: a q·k
/// over all keys is 2·d FLOPs per token against some 24·d² for a layer (d ≥ 576 on every model
/// here), so 1/1024 rounds the ratio up; it orders scorings at one layer (the reference's one
/// query before a 32-query window, one layer before three) and never outweighs a layer.
pub const SCORE_QUERY_COST: f64 = 1.0 / 1024.0;

/// A candidate's filter cost as a share of the model's `n_layer` layers: the filter pass through
/// `layer` (`(layer + 1) / n_layer`) plus its scoring, [`SCORE_QUERY_COST`] per query per scored layer
/// (a multi-layer scoring reads layers the pass runs anyway: it costs scoring, not layers).
#[must_use]
pub fn filter_cost(scoring: ScoringSpec, layer: usize, n_layer: usize) -> f64 {
    let span = scoring.layers.clamp(1, layer + 1);
    #[allow(clippy::cast_precision_loss)]
    let layers = (layer + 1) as f64 + (span * scoring.queries_needed()) as f64 * SCORE_QUERY_COST;
    #[allow(clippy::cast_precision_loss)]
    let n = n_layer.max(1) as f64;
    layers / n
}

/// The cost-aware rule: B is the best recall over every (scoring, layer); of the candidates
/// whose recall is within `tol` of B, the one with the lowest [`filter_cost`] wins (equal costs:
/// the scoring listed first). A deeper layer or a dearer scoring is chosen only when it recalls
/// more than `tol` better than everything cheaper; multi-layer scorings and wider pools compete
/// because they can let a shallower layer select as well.
#[must_use]
pub fn choose_cheapest(curves: &[Series], n_layer: usize, tol: f64) -> Option<Choice> {
    let best = best_recall(curves.iter().flat_map(|c| c.1.iter()))?;
    let floor = best - tol - 1e-12;
    curves
        .iter()
        .flat_map(|(s, pts)| pts.iter().map(move |&(l, r)| (*s, l, r)))
        .filter(|c| c.2.is_finite() && c.2 >= floor)
        .min_by(|a, b| filter_cost(a.0, a.1, n_layer).total_cmp(&filter_cost(b.0, b.1, n_layer)))
        .map(|(scoring, layer, recall)| Choice {
            scoring,
            layer,
            recall,
            best,
        })
}

/// The early stop: the layer of the cheapest (scoring, layer) whose recall is at least `1 - tol`
/// on every record so far. Whatever deeper passes found, the best recall is at most 1, so that
/// candidate stays within `tol` of it and nothing deeper can be chosen: the next passes may stop
/// there. None while no candidate is that good everywhere.
#[must_use]
pub fn early_stop_layer(recs: &[CurveRecord], n_layer: usize, tol: f64) -> Option<usize> {
    let first = recs.first()?;
    first
        .points
        .iter()
        .filter(|p| {
            recs.iter().all(|r| {
                r.points.iter().any(|q| {
                    q.layer == p.layer && q.scoring == p.scoring && q.recall >= 1.0 - tol - 1e-12
                })
            })
        })
        .min_by(|a, b| {
            filter_cost(a.scoring, a.layer, n_layer)
                .total_cmp(&filter_cost(b.scoring, b.layer, n_layer))
        })
        .map(|p| p.layer)
}

/// The records with only the (layer, scoring) points every one of them has: after an early stop
/// the deeper layers were measured on the first cells only, and a mean over those few is not
/// comparable with the others.
#[must_use]
pub fn common_points(mut recs: Vec<CurveRecord>) -> Vec<CurveRecord> {
    let Some(first) = recs.first() else {
        return recs;
    };
    let keep: Vec<(usize, ScoringSpec)> = first
        .points
        .iter()
        .map(|p| (p.layer, p.scoring))
        .filter(|&(l, s)| {
            recs.iter()
                .all(|r| r.points.iter().any(|q| q.layer == l && q.scoring == s))
        })
        .collect();
    for r in &mut recs {
        r.points.retain(|p| keep.contains(&(p.layer, p.scoring)));
    }
    recs
}

/// One scoring's (layer, mean recall) points.
pub type Series = (ScoringSpec, Vec<(usize, f64)>);

/// Curves per scoring, from per-cell records.
pub type Curves = Vec<(ScoringSpec, Vec<CurvePoint>)>;

/// The records' curves at each prompt length, shortest first.
#[must_use]
pub fn curves_by_length(recs: &[CurveRecord]) -> Vec<(usize, Curves)> {
    let mut lengths: Vec<usize> = recs.iter().map(|r| r.length).collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
        .into_iter()
        .map(|l| {
            let at: Vec<CurveRecord> = recs.iter().filter(|r| r.length == l).cloned().collect();
            (l, aggregate_curves(&at))
        })
        .collect()
}

/// Per scoring and layer, the lowest mean recall over prompt lengths ([`curves_by_length`]): a
/// layer must hold up at every probe length to be chosen (a layer that is good at 8K and lost at
/// 16K is the fragile kind that is lost again at 32K). Layers missing at some length are dropped.
#[must_use]
pub fn worst_over_lengths(by_length: &[(usize, Curves)]) -> Vec<Series> {
    let Some((_, first)) = by_length.first() else {
        return Vec::new();
    };
    let recall = |curves: &Curves, scoring: ScoringSpec, layer: usize| {
        curves
            .iter()
            .find(|c| c.0 == scoring)
            .and_then(|c| c.1.iter().find(|p| p.layer == layer))
            .map(|p| p.mean_recall)
    };
    first
        .iter()
        .map(|(scoring, pts)| {
            let worst = pts
                .iter()
                .filter_map(|p| {
                    by_length
                        .iter()
                        .map(|(_, curves)| recall(curves, *scoring, p.layer))
                        .try_fold(f64::INFINITY, |m, r| r.map(|r| m.min(r)))
                        .map(|m| (p.layer, m))
                })
                .collect();
            (*scoring, worst)
        })
        .collect()
}

/// Curves as (scoring, [(layer, mean recall)]) series, what [`choose`] and the plots take.
#[must_use]
pub fn series(curves: &[(ScoringSpec, Vec<CurvePoint>)]) -> Vec<(ScoringSpec, Vec<(usize, f64)>)> {
    curves
        .iter()
        .map(|(s, pts)| (*s, pts.iter().map(|q| (q.layer, q.mean_recall)).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ScoringSpec {
        s.parse().unwrap()
    }

    #[test]
    fn a_layer_costs_more_than_any_scoring_and_scorings_are_ordered_at_one_layer() {
        let n = 24;
        let cost = |s: &str, l: usize| filter_cost(spec(s), l, n);
        assert!((cost("reference", 23) - (1.0 + 1.0 / 1024.0 / 24.0)).abs() < 1e-12);
        assert!(cost("window-softmax:32+layers3", 12) < cost("reference", 13));
        assert!(cost("reference", 13) < cost("reference+layers3", 13));
        assert!(cost("reference+layers3", 13) < cost("window-softmax:32", 13));
        assert!(cost("window-softmax:32", 13) < cost("window-softmax:32+layers3", 13));
        // Pooling and whole sentences cost nothing the rule counts.
        assert_eq!(
            cost("window-softmax:32", 13),
            cost("window-softmax:32+pool31+sent", 13)
        );
        // A span is cut where the model begins.
        assert_eq!(cost("reference+layers3", 0), cost("reference", 0));
    }

    #[test]
    fn the_cheapest_candidate_within_the_tolerance_of_the_best_wins() {
        // The Qwen2.5-Coder-0.5B shape: the best recall is deep and multi-layer, a single-layer
        // window 3 layers shallower is within 0.05; the reference is never close.
        let curves = vec![
            (spec("reference"), vec![(9, 0.2), (13, 0.6), (16, 0.8)]),
            (
                spec("window-softmax:32"),
                vec![(9, 0.7), (13, 0.93), (16, 0.9)],
            ),
            (
                spec("window-softmax:32+layers3"),
                vec![(9, 0.69), (13, 0.92), (16, 0.97)],
            ),
        ];
        let c = choose_cheapest(&curves, 24, COST_TOLERANCE).unwrap();
        assert_eq!((c.scoring, c.layer), (spec("window-softmax:32"), 13));
        assert!((c.recall - 0.93).abs() < 1e-12 && (c.best - 0.97).abs() < 1e-12);
        // With the old tolerance of 0.01 the deep multi-layer point is the only candidate.
        let c = choose_cheapest(&curves, 24, 0.01).unwrap();
        assert_eq!(
            (c.scoring, c.layer),
            (spec("window-softmax:32+layers3"), 16)
        );
        // A multi-layer scoring that lets a shallower layer select wins over a deeper single one.
        let curves = vec![
            (spec("reference"), vec![(9, 0.5), (15, 1.0)]),
            (spec("reference+layers3"), vec![(9, 0.96), (15, 1.0)]),
        ];
        let c = choose_cheapest(&curves, 24, COST_TOLERANCE).unwrap();
        assert_eq!((c.scoring, c.layer), (spec("reference+layers3"), 9));
        // At one layer, the cheaper scoring wins whatever the order they are listed in.
        let curves = vec![
            (spec("window-softmax:32"), vec![(11, 1.0)]),
            (spec("reference"), vec![(11, 0.96)]),
        ];
        let c = choose_cheapest(&curves, 24, COST_TOLERANCE).unwrap();
        assert_eq!(c.scoring, spec("reference"));
        // Just outside the tolerance is out.
        let curves = vec![(spec("reference"), vec![(4, 0.949), (8, 1.0)])];
        assert_eq!(
            choose_cheapest(&curves, 24, COST_TOLERANCE).unwrap().layer,
            8
        );
        // Nothing measured, nothing chosen; a NaN point is never a candidate.
        assert_eq!(choose_cheapest(&[], 24, COST_TOLERANCE), None);
        let curves = vec![(spec("reference"), vec![(2, f64::NAN), (5, 0.5)])];
        assert_eq!(
            choose_cheapest(&curves, 24, COST_TOLERANCE).unwrap().layer,
            5
        );
    }

    fn rec(points: &[(&str, usize, f64)]) -> CurveRecord {
        CurveRecord {
            key: String::new(),
            model: "m".into(),
            length: 1536,
            depth: 50,
            needle: "n".into(),
            variant: Variant::Single,
            style: Style::Chat,
            k: 48,
            protect: Protect::All,
            prompt_tokens: 1536,
            filter_pass_s: 1.0,
            points: points
                .iter()
                .map(|&(s, layer, recall)| LayerRecall {
                    layer,
                    scoring: spec(s),
                    recall,
                    best_rank: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn passes_stop_early_only_at_a_candidate_near_full_recall_on_every_cell() {
        let a = rec(&[
            ("reference", 5, 0.96),
            ("window-softmax:32", 5, 1.0),
            ("reference", 9, 1.0),
            ("window-softmax:32", 9, 1.0),
        ]);
        assert_eq!(
            early_stop_layer(std::slice::from_ref(&a), 24, COST_TOLERANCE),
            Some(5)
        );
        // Layer 5 falls below 0.95 on the next cell: only layer 9 is good everywhere.
        let b = rec(&[
            ("reference", 5, 0.9),
            ("window-softmax:32", 5, 0.94),
            ("reference", 9, 0.95),
            ("window-softmax:32", 9, 0.6),
        ]);
        assert_eq!(
            early_stop_layer(&[a.clone(), b.clone()], 24, COST_TOLERANCE),
            Some(9)
        );
        let c = rec(&[("reference", 5, 0.2), ("reference", 9, 0.8)]);
        assert_eq!(early_stop_layer(&[a, b, c], 24, COST_TOLERANCE), None);
        assert_eq!(early_stop_layer(&[], 24, COST_TOLERANCE), None);
    }

    #[test]
    fn after_an_early_stop_only_the_points_of_every_cell_are_compared() {
        let full = rec(&[
            ("reference", 5, 1.0),
            ("reference", 9, 1.0),
            ("reference", 13, 1.0),
        ]);
        let capped = rec(&[("reference", 5, 0.5), ("reference", 9, 0.97)]);
        let kept = common_points(vec![full, capped]);
        for r in &kept {
            let layers: Vec<usize> = r.points.iter().map(|p| p.layer).collect();
            assert_eq!(layers, [5, 9]);
        }
        assert!(common_points(Vec::new()).is_empty());
    }
}
