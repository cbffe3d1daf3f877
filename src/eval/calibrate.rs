//! Which filter layer and scoring for this model? Recall-per-layer curves on built-in needles
//! (filter passes only, every candidate layer captured in one prefill per cell), then the cheapest
//! candidate within a tolerance of the best ([`choose_cheapest`]) on each layer's worst probe
//! length. `gemfilter calibrate` prints it (`--write`
//! stores it in the user presets file, which overrides models.toml); [`auto`] does the same
//! unasked, once, for a model with no preset.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::curves::{
    aggregate_curves, choose_cheapest, common_points, curve_cells_capped, curve_table,
    curves_by_length, early_stop_layer, filter_cost, worst_over_lengths, Choice, CurveJob,
    CurvePoint, Curves, COST_TOLERANCE,
};
use super::niah::grid::{self, Cell, Style, Variant};
use super::niah::needles;
use crate::gguf_info::ModelMeta;
use crate::presets::{self, Entry, PresetFile};
use crate::prompt::Protect;
use crate::scoring::ScoringSpec;
use crate::select::Scoring;
use crate::settings::ModelSettings;

/// What `gemfilter calibrate` measures, resolved from its flags.
#[derive(Debug, Clone)]
pub struct CalibrateSettings {
    pub model: ModelSettings,
    pub lengths: Vec<usize>,
    pub depths: Vec<u32>,
    /// Compared in this order; the first wins ties.
    pub scorings: Vec<ScoringSpec>,
    /// Every global layer.
    pub layers: Vec<usize>,
    pub top_k: usize,
    pub protect: Protect,
    pub style: Style,
    pub haystack: Option<PathBuf>,
    /// Store the recommendation in the user presets file.
    pub write: bool,
    /// `top_k` counts context tokens only (self-calibration's scaled probes).
    pub context_k: bool,
}

/// Needles calibrate hides, one per cell in turn (a number, a name, the reference sentence).
const CALIBRATION_NEEDLES: &[&str] = &[
    "sf-sandwich",
    "vault-passkey",
    "museum-founder",
    "treasure-location",
    "flight-number",
    "secret-ingredient",
];

/// The presets entry for `meta` with the chosen settings (`top_k` None: the fallback's k).
#[must_use]
pub fn entry_for(meta: &ModelMeta, choice: &Choice, top_k: Option<usize>) -> Entry {
    Entry {
        label: format!("{} (calibrated)", meta.display_name()),
        architecture: Some(meta.architecture.clone()),
        block_count: Some(meta.block_count),
        size_label: meta.size_label.clone(),
        name: meta.basename.clone().or_else(|| meta.name.clone()),
        filter_layer: choice.layer,
        top_k,
        scoring: Some(choice.scoring),
        window: None,
        pool: None,
    }
}

/// Put `entry` into `file`, replacing an entry that matches the same model keys.
pub fn merge(file: &mut PresetFile, entry: Entry) {
    let same = |e: &Entry| {
        e.architecture == entry.architecture
            && e.block_count == entry.block_count
            && e.name == entry.name
            && e.size_label == entry.size_label
    };
    if let Some(e) = file.models.iter_mut().find(|e| same(e)) {
        *e = entry;
    } else {
        file.models.push(entry);
    }
}

fn write_preset(
    meta: &ModelMeta,
    choice: &Choice,
    top_k: Option<usize>,
    note: &str,
) -> Result<PathBuf> {
    let path =
        presets::user_presets_path().context("no presets path: set GEMFILTER_PRESETS or HOME")?;
    presets::store(&path, &entry_for(meta, choice, top_k), note)?;
    Ok(path)
}

/// Calibration lengths when none are given: 2000 and min(6000, context - 256).
#[must_use]
pub fn default_lengths(meta: &ModelMeta) -> Vec<usize> {
    let ctx = meta.context_length.unwrap_or(8192);
    let long = 6000.min(ctx.saturating_sub(256));
    let mut v = vec![2000.min(long), long];
    v.dedup();
    v
}

/// The scorings self-calibration compares, the reference first (it stays the choice while it
/// is within the tolerance of the best): reference and window-softmax over the last 32 queries,
/// on the filter layer alone and on the 3 layers ending there, all with the reference's pool of 5.
/// A narrow pool keeps recall a measure of how well a layer ranks the needle's own tokens: with a
/// wide pool, one well-ranked token drags its whole neighbourhood in and weak layers look perfect
/// (measured on both Qwen2.5-Coder models: pool 31 at k 512 chose layers 9 and 6, whose answers
/// lost every UUID; pool 5 curves at 8K-31K put them at 13 and 16, the layers that answer).
#[must_use]
pub fn auto_scorings() -> Vec<ScoringSpec> {
    let windowed = ScoringSpec {
        scoring: Scoring::WindowSoftmax { window: 32 },
        ..ScoringSpec::REFERENCE
    };
    let mut v = Vec::new();
    for base in [ScoringSpec::REFERENCE, windowed] {
        for layers in [1, 3] {
            v.push(base.with_layers(layers));
        }
    }
    v
}

/// The pool a calibrated windowed scoring answers with: the chosen layer ranks the key of a fact
/// highest, and its value follows the key; a pool of 31 keeps values as long as a UUID whole
/// (Qwen2.5-Coder-0.5B, layer 13, RULER suite at 16K, 5 samples per task: pool 5 0.51, pool 15
/// 0.64, pool 31 0.78; UUID needles 0.0, 0.0, 0.8). The reference keeps the paper's pool of 5.
pub const ANSWER_POOL: usize = 31;

/// What a calibration stores: the chosen scoring and layer; a windowed scoring widened to
/// [`ANSWER_POOL`] and selecting whole sentences (`+sent`), so a value longer than the pool is not
/// cut where the pool ends (Qwen2.5-Coder-0.5B, layer 13, CPU, 4K, 5 samples: `niah_multikey_3`
/// 0.2 with pool 31 alone, answers like `0aa4215a-159c2.`; 0.8 with `+sent`, recall 0.83 → 1.00).
#[must_use]
pub fn answer_choice(mut c: Choice) -> Choice {
    if c.scoring.scoring != Scoring::Reference {
        c.scoring = c.scoring.with_pool(ANSWER_POOL).with_sentences(true);
    }
    c
}

/// The prompt length GemFilter is for, against which probe budgets are scaled.
const TARGET_TOKENS: usize = 32_768;

/// The context tokens a probe of `len` tokens keeps when its recall is measured: the share of
/// the prompt that `top_k` is of a long prompt ([`TARGET_TOKENS`]), so short, cheap probes are
/// as selective as the prompts GemFilter serves (at 2K tokens, k = 1024 would keep half the
/// prompt and every layer would look perfect). The question and template come on top.
#[must_use]
pub fn probe_k(top_k: usize, len: usize) -> usize {
    (top_k.saturating_mul(len) / TARGET_TOKENS).clamp(16, top_k.max(16))
}

/// Self-calibration's probe lengths: what the machine prefills in seconds (8K and 16K tokens on
/// a GPU; 1.5K on a CPU, where a 0.5B model prefills some 60 tokens a second on two cores),
/// within the model's context.
#[must_use]
pub fn auto_lengths(meta: &ModelMeta, gpu: bool) -> Vec<usize> {
    let ctx = meta
        .context_length
        .unwrap_or(8192)
        .saturating_sub(512)
        .max(600);
    let want: &[usize] = if gpu {
        &[8192, 16384]
    } else {
        &[CPU_PROBE_TOKENS]
    };
    let mut v: Vec<usize> = want.iter().map(|&l| l.min(ctx)).collect();
    v.dedup();
    v
}

/// A CPU probe's length: three of them through three quarters of a 0.5B model's layers fit
/// first use in a minute on two cores.
const CPU_PROBE_TOKENS: usize = 1536;

/// Self-calibration's needle depths: five on a GPU (seconds each), three on a CPU.
#[must_use]
pub fn auto_depths(gpu: bool) -> Vec<u32> {
    if gpu {
        vec![10, 30, 50, 70, 90]
    } else {
        vec![20, 50, 80]
    }
}

/// The deepest share of the model a self-calibrated filter pass may run through. Past it the
/// filter pass saves too little of a prefill to be worth the re-run, and on both Qwen2.5-Coder
/// models' curves (8K-31K, bench/runs/2026-12-02-h200-calibration-rule) no layer past it recalled
/// better than the best before it; the probes stop there, a quarter cheaper.
pub const MAX_FILTER_SHARE: f64 = 0.75;

/// The candidate filter layers of self-calibration: `layers` through [`MAX_FILTER_SHARE`] of the
/// model's `n_layer` (the shallowest one at least, whatever the share).
#[must_use]
pub fn candidate_layers(mut layers: Vec<usize>, n_layer: usize) -> Vec<usize> {
    #[allow(clippy::cast_precision_loss)]
    let within = |l: usize| (l + 1) as f64 <= MAX_FILTER_SHARE * n_layer as f64;
    let shallowest = layers.iter().min().copied();
    layers.retain(|&l| within(l));
    if layers.is_empty() {
        layers.extend(shallowest);
    }
    layers
}

/// One needle per cell, in turn: the curve averages over needles without multiplying cells.
fn cells(lengths: &[usize], depths: &[u32]) -> Result<Vec<Cell>> {
    let mut cells: Vec<Cell> = Vec::new();
    for &l in lengths {
        for &d in depths {
            let id = CALIBRATION_NEEDLES[cells.len() % CALIBRATION_NEEDLES.len()];
            let n = needles::by_id(id).context("calibration needle missing from the set")?;
            cells.extend(grid::cells(&[l], &[d], &[n], &[Variant::Single], 0));
        }
    }
    Ok(cells)
}

/// What a calibration found.
pub struct Calibration {
    pub choice: Choice,
    /// Curves at the longest length (what the choice is made on).
    pub curves: Vec<(ScoringSpec, Vec<CurvePoint>)>,
    /// Curves over every cell.
    pub curves_all: Vec<(ScoringSpec, Vec<CurvePoint>)>,
    /// Curves per probe length, shortest first.
    pub by_length: Vec<(usize, Curves)>,
    pub cells: usize,
    /// The layer the early stop ended the later filter passes at, if it did.
    pub stopped_at: Option<usize>,
}

/// Recall per layer and scoring on the probe cells, then the cost-aware choice
/// ([`choose_cheapest`], within [`COST_TOLERANCE`] of the best) on each layer's worst length: a
/// layer must hold up at every probe length (one that is good at 8K and lost at 16K is lost
/// again at 32K; short cells alone do not predict long prompts). With `early_stop`, once a
/// candidate recalls at least 1 - [`COST_TOLERANCE`] on every cell so far, the next filter
/// passes stop at its layer ([`early_stop_layer`]): nothing deeper could be chosen.
/// `progress`: the probes' progress on stderr, moving with every decoded ubatch.
///
/// # Errors
/// Engine failures.
pub fn calibrate(s: &CalibrateSettings, early_stop: bool, progress: bool) -> Result<Calibration> {
    let cells = cells(&s.lengths, &s.depths)?;
    let model_name = s.model.name();
    let job = CurveJob {
        path: &s.model.path,
        model_name: &model_name,
        load: s.model.load.clone(),
        ctx: s.model.ctx.clone(),
        haystack: s.haystack.as_deref(),
        style: s.style,
        chat_template: None,
        protect: s.protect,
        layers: s.layers.clone(),
        scorings: s.scorings.clone(),
        top_k: s.top_k,
        context_k: s.context_k,
        seed: 0,
    };
    let n_layer = s.model.meta.block_count;
    let mut recs = Vec::new();
    let mut stopped_at = None;
    curve_cells_capped(
        &job,
        &cells,
        &[],
        &mut |r| {
            recs.push(r);
            Ok(())
        },
        &mut |done| {
            let cap = early_stop
                .then(|| early_stop_layer(done, n_layer, COST_TOLERANCE))
                .flatten();
            stopped_at = cap.or(stopped_at);
            cap
        },
        progress,
    )?;
    let recs = common_points(recs);
    let by_length = curves_by_length(&recs);
    let curves = by_length.last().map(|c| c.1.clone()).unwrap_or_default();
    let choice = choose_cheapest(&worst_over_lengths(&by_length), n_layer, COST_TOLERANCE)
        .context("no recall measured")?;
    Ok(Calibration {
        choice,
        curves,
        curves_all: aggregate_curves(&recs),
        by_length,
        cells: recs.len(),
        stopped_at,
    })
}

/// Calibrate a model with no preset on first use, store the result in the user presets file and
/// say so in one line; the stored entry is what later runs resolve, so this happens once.
///
/// # Errors
/// Engine failures or an unwritable presets file.
pub fn auto(model: &ModelSettings, top_k: usize, layers: Vec<usize>) -> Result<Entry> {
    let t0 = std::time::Instant::now();
    let gpu = model.load.offloads_to_gpu();
    let lengths = auto_lengths(&model.meta, gpu);
    let k = probe_k(top_k, lengths.last().copied().unwrap_or(TARGET_TOKENS));
    let s = CalibrateSettings {
        lengths,
        depths: auto_depths(gpu),
        scorings: auto_scorings(),
        layers: candidate_layers(layers, model.meta.block_count),
        top_k: k,
        protect: Protect::All,
        style: if model.meta.has_chat_template {
            Style::Chat
        } else {
            Style::Plain
        },
        haystack: None,
        write: true,
        context_k: true,
        model: model.clone(),
    };
    crate::notice!(
        "calibrating the filter layer of {} on {} built-in needle prompts of {:?} tokens, recall at k {k} (once for this model)",
        model.meta.display_name(),
        s.lengths.len() * s.depths.len(),
        s.lengths
    );
    // The probes' own notices are silenced; their progress line shows unless the user asked
    // for quiet.
    let quiet = crate::messages::quiet();
    crate::messages::set_quiet(true);
    let c = calibrate(&s, true, !quiet);
    crate::messages::set_quiet(quiet);
    let mut c = c?;
    c.choice = answer_choice(c.choice);
    let secs = t0.elapsed().as_secs_f64();
    let stop = c
        .stopped_at
        .map(|l| format!("; later probes stopped at layer {l}"))
        .unwrap_or_default();
    let line = format!(
        "calibrated {} in {secs:.1} s: layer {} with {}, the cheapest filter pass within {COST_TOLERANCE} of the best recall ({:.0}% of the model; needle recall {:.2}, best {:.2}, with pool 5 at the share k {k} is of {} tokens, worst over {} prompts of {:?} tokens{stop})",
        model.meta.display_name(),
        c.choice.layer,
        c.choice.scoring,
        100.0 * filter_cost(c.choice.scoring, c.choice.layer, model.meta.block_count),
        c.choice.recall,
        c.choice.best,
        TARGET_TOKENS,
        c.cells,
        s.lengths
    );
    // A calibration whose best recall is within the tolerance of none chose nothing (a layer
    // that recalls nothing would be "as good as the best"): never stored as the model's preset.
    anyhow::ensure!(
        c.choice.best > COST_TOLERANCE,
        "calibrating {} failed (needle recall {:.2} at best, within {COST_TOLERANCE} of none at every layer); nothing stored: give --gem-layer, or --gem-calibrate off",
        model.meta.display_name(),
        c.choice.best
    );
    // The run's k (maybe a one-off --gem-topk) is not stored as the model's default.
    let path = write_preset(&model.meta, &c.choice, None, &line)?;
    crate::notice!("{line}; stored in {}", path.display());
    Ok(entry_for(&model.meta, &c.choice, Some(top_k)))
}

/// `gemfilter calibrate`.
///
/// # Errors
/// Engine failures, or an unwritable presets file.
pub fn run(s: &CalibrateSettings) -> Result<()> {
    let meta = &s.model.meta;
    // Keeping the whole prompt, every layer finds every needle: the choice would be layer 0 by
    // the tie rule and mean nothing.
    if let Some(&shortest) = s.lengths.iter().min() {
        if s.top_k >= shortest {
            bail!(
                "--gem-topk {} keeps every token of the {shortest}-token probes: every layer would score recall 1 and the recommendation would mean nothing; give --gem-topk below {shortest} or longer --lengths",
                s.top_k
            );
        }
    }
    crate::notice!(
        "calibrating {}: {} cells (lengths {:?}, depths {:?}), layers {:?}, k {}",
        meta.display_name(),
        s.lengths.len() * s.depths.len(),
        s.lengths,
        s.depths,
        s.layers,
        s.top_k
    );
    let c = calibrate(s, false, !crate::messages::quiet())?;
    if !crate::messages::quiet() {
        for (len, curves) in &c.by_length {
            eprintln!("mean recall at {len} tokens:");
            eprint!("{}", curve_table(curves));
        }
    }
    let choice = &c.choice;
    let line = format!(
        "{}: layer {} with {} (mean recall {:.3} at k {}, worst over lengths; best {:.3}; {} cells of {:?} tokens)",
        meta.display_name(),
        choice.layer,
        choice.scoring,
        choice.recall,
        s.top_k,
        choice.best,
        c.cells,
        s.lengths
    );
    eprintln!("recommended: {line}");
    let json = |curves: &[(ScoringSpec, Vec<CurvePoint>)]| {
        curves
            .iter()
            .map(|(sc, pts)| serde_json::json!({"scoring": sc, "points": pts}))
            .collect::<Vec<_>>()
    };
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({
            "model": s.model.name(),
            "recommended": choice,
            "k": s.top_k,
            "curves": json(&c.curves),
            "curves_all_lengths": json(&c.curves_all),
            "curves_by_length": c.by_length.iter().map(|(l, cv)| serde_json::json!({"length": l, "curves": json(cv)})).collect::<Vec<_>>(),
        }))?
    );
    if s.write {
        let p = write_preset(meta, &answer_choice(choice.clone()), Some(s.top_k), &line)?;
        crate::notice!("preset written to {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_measure_at_the_share_of_a_long_prompt() {
        assert_eq!(probe_k(1024, 16_384), 512);
        assert_eq!(probe_k(1024, 3072), 96);
        assert_eq!(probe_k(1024, 100), 16);
        assert_eq!(probe_k(8, 100), 16);
        assert_eq!(probe_k(1024, 1 << 20), 1024);
    }

    #[test]
    fn a_windowed_choice_answers_with_the_wide_pool_and_the_reference_stays_exact() {
        let pick = |s: &str| Choice {
            scoring: s.parse().unwrap(),
            layer: 13,
            recall: 1.0,
            best: 1.0,
        };
        assert_eq!(
            answer_choice(pick("window-softmax:32+layers3"))
                .scoring
                .to_string(),
            "window-softmax:32+pool31+layers3+sent"
        );
        assert_eq!(
            answer_choice(pick("reference")).scoring,
            ScoringSpec::REFERENCE
        );
    }

    #[test]
    fn candidates_stop_at_three_quarters_of_the_model() {
        let all: Vec<usize> = (0..24).collect();
        assert_eq!(candidate_layers(all, 24), (0..18).collect::<Vec<_>>());
        // Gemma-3-270M: global layers 5, 11, 17 of 18; 17 is the whole model.
        assert_eq!(candidate_layers(vec![5, 11, 17], 18), [5, 11]);
        // A model whose only global layer is past the share keeps it.
        assert_eq!(candidate_layers(vec![20], 24), [20]);
    }

    #[test]
    fn cpu_probes_are_short_and_within_the_context() {
        let meta = |ctx: Option<usize>| ModelMeta {
            context_length: ctx,
            ..ModelMeta::default()
        };
        assert_eq!(auto_lengths(&meta(Some(32_768)), false), [CPU_PROBE_TOKENS]);
        assert_eq!(auto_lengths(&meta(Some(32_768)), true), [8192, 16384]);
        assert_eq!(auto_lengths(&meta(Some(1024)), false), [600]);
        assert_eq!(auto_depths(false).len(), 3);
    }

    #[test]
    fn self_calibration_compares_the_reference_first() {
        let v = auto_scorings();
        assert_eq!(v[0], ScoringSpec::REFERENCE);
        assert!(v
            .iter()
            .any(|s| s.to_string() == "window-softmax:32+layers3"));
        assert!(
            v.iter().all(|s| s.pool == 5),
            "recall is measured at pool 5"
        );
        assert_eq!(v.len(), 4);
    }
}
