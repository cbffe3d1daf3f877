//! `gemfilter calibrate -m MODEL`: which filter layer for this model? Recall-per-layer curves
//! on built-in needles at a few lengths (filter passes only, every global layer captured in one
//! prefill per cell), then the lowest layer whose mean recall is within [`TOLERANCE`] of the
//! best. `--write` stores it in the user presets file, which overrides models.toml.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cli::llama::ModelArgs;
use crate::gguf_info::{self, ModelMeta};
use crate::presets::{self, Entry, PresetFile};
use crate::prompt::Protect;
use crate::select::{self, Scoring};
use crate::eval::layers::parse_scorings;
use crate::eval::niah::grid::{self, Cell, Style, Variant};
use crate::eval::niah::{self, needles, report, CurveJob};

/// A layer is "as good as the best" when its recall is at most this much lower.
pub const TOLERANCE: f64 = 0.01;

/// Needles calibrate hides, one per cell in turn (a number, a name, the reference sentence).
const CALIBRATION_NEEDLES: &[&str] = &[
    "sf-sandwich",
    "vault-passkey",
    "museum-founder",
    "treasure-location",
    "flight-number",
    "secret-ingredient",
];

#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Prompt lengths in tokens (default: 2000 and min(6000, context - 256)).
    #[arg(long = "lengths", value_name = "LIST")]
    pub lengths: Option<String>,

    /// Needle depths in percent.
    #[arg(long = "depths", default_value = "25,50,75", value_name = "LIST")]
    pub depths: String,

    /// Scorings to compare; the first wins ties (the reference stays the default until another
    /// is better by more than the tolerance).
    #[arg(
        long = "scorings",
        default_value = "reference,head-softmax,window-softmax:32",
        value_name = "LIST"
    )]
    pub scorings: String,

    /// Tokens kept (k) at which recall is measured.
    #[arg(long = "gem-topk", default_value_t = 1024, value_name = "K")]
    pub top_k: usize,

    /// What is always kept (as in the run).
    #[arg(long = "gem-protect", value_enum, default_value = "all")]
    pub protect: Protect,

    /// Prompt wording (plain suits base and small models).
    #[arg(long = "style", value_enum, default_value = "plain")]
    pub style: Style,

    /// Haystack directory or file (default: the bundled essays).
    #[arg(long = "haystack", value_name = "DIR|FILE")]
    pub haystack: Option<PathBuf>,

    /// Store the recommendation in the user presets file ($GEMFILTER_PRESETS, else
    /// ~/.config/gemfilter/presets.toml), replacing an earlier entry for this model.
    #[arg(long = "write")]
    pub write: bool,
}

/// The recommendation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Choice {
    pub scoring: String,
    pub layer: usize,
    pub recall: f64,
    /// Best mean recall of any scoring and layer.
    pub best: f64,
}

/// Lowest layer whose recall is within `tol` of the curve's best.
#[must_use]
pub fn lowest_within(curve: &[(usize, f64)], tol: f64) -> Option<(usize, f64)> {
    let best = curve
        .iter()
        .map(|p| p.1)
        .filter(|r| r.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !best.is_finite() {
        return None;
    }
    curve
        .iter()
        .filter(|p| p.1 >= best - tol - 1e-12)
        .min_by_key(|p| p.0)
        .copied()
}

/// Pick the scoring and layer. B is the best recall over every curve; a (scoring, layer) is a
/// candidate when its recall is within `tol` of B. If the first scoring (the reference, the
/// default) has a candidate, its lowest candidate layer wins; otherwise the lowest candidate
/// layer of any scoring (the cheapest filter pass), ties going to the scoring listed first.
#[must_use]
pub fn choose(curves: &[(String, Vec<(usize, f64)>)], tol: f64) -> Option<Choice> {
    let best = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.1))
        .filter(|r| r.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !best.is_finite() {
        return None;
    }
    let candidates = |pts: &[(usize, f64)]| -> Option<(usize, f64)> {
        pts.iter()
            .filter(|p| p.1 >= best - tol - 1e-12)
            .min_by_key(|p| p.0)
            .copied()
    };
    let pick = |name: &String, (layer, recall): (usize, f64)| Choice {
        scoring: name.clone(),
        layer,
        recall,
        best,
    };
    if let Some((name, pts)) = curves.first() {
        if let Some(c) = candidates(pts) {
            return Some(pick(name, c));
        }
    }
    curves
        .iter()
        .filter_map(|(name, pts)| candidates(pts).map(|c| (name, c)))
        .min_by_key(|(_, c)| c.0)
        .map(|(name, c)| pick(name, c))
}

/// The presets entry for `meta` with the chosen settings.
#[must_use]
pub fn entry_for(meta: &ModelMeta, choice: &Choice, top_k: usize) -> Entry {
    let (scoring, window) = match choice.scoring.split_once(':') {
        Some((s, w)) => (s.to_owned(), w.parse().ok()),
        None => (choice.scoring.clone(), None),
    };
    Entry {
        label: format!("{} (calibrated)", meta.display_name()),
        architecture: Some(meta.architecture.clone()),
        block_count: Some(meta.block_count),
        size_label: meta.size_label.clone(),
        name: meta.basename.clone().or_else(|| meta.name.clone()),
        filter_layer: choice.layer,
        top_k: Some(top_k),
        scoring: Some(scoring),
        window,
        // Calibration measures with the reference pooling kernel.
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

fn write_preset(meta: &ModelMeta, choice: &Choice, top_k: usize, note: &str) -> Result<PathBuf> {
    let path =
        presets::user_presets_path().context("no presets path: set GEMFILTER_PRESETS or HOME")?;
    let mut file = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        presets::parse(&text, &path.display().to_string())?
    } else {
        PresetFile {
            fallback: None,
            models: Vec::new(),
        }
    };
    merge(&mut file, entry_for(meta, choice, top_k));
    let body = toml::to_string(&file).context("cannot serialise the presets")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = format!("# gemfilter user presets (override models.toml); written by `gemfilter calibrate --write`.\n# Last: {note}\n\n{body}");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn default_lengths(meta: &ModelMeta) -> Vec<usize> {
    let ctx = meta.context_length.unwrap_or(8192);
    let long = 6000.min(ctx.saturating_sub(256));
    let mut v = vec![2000.min(long), long];
    v.dedup();
    v
}

/// `gemfilter calibrate`.
///
/// # Errors
/// Bad input, engine failures, or an unwritable presets file.
pub fn run(args: &CalibrateArgs) -> Result<()> {
    crate::messages::set_quiet(args.model.log_disable);
    let path = crate::run::model_path(&args.model)?.to_path_buf();
    let meta = gguf_info::read(&path)?;
    if !gguf_info::SUPPORTED_ARCHS.contains(&meta.architecture.as_str()) {
        bail!(
            "architecture '{}' is not supported by GemFilter",
            meta.architecture
        );
    }
    if args.top_k == 0 {
        bail!("--gem-topk must be at least 1");
    }
    let lengths = match &args.lengths {
        Some(s) => grid::parse_lengths(s)?,
        None => default_lengths(&meta),
    };
    if let (Some(ctx), Some(&l)) = (meta.context_length, lengths.last()) {
        if l >= ctx {
            bail!("length {l} does not fit the model's training context of {ctx} tokens");
        }
    }
    let depths = grid::parse_depths(&args.depths)?;
    let scorings: Vec<Scoring> = parse_scorings(&args.scorings, select::DEFAULT_WINDOW)?;
    let layers = niah::probe_layers(None, &meta)?;
    // One needle per cell, in turn: the curve averages over needles without multiplying cells.
    let mut cells: Vec<Cell> = Vec::new();
    for &l in &lengths {
        for &d in &depths {
            let id = CALIBRATION_NEEDLES[cells.len() % CALIBRATION_NEEDLES.len()];
            let n = needles::by_id(id).context("calibration needle missing from the set")?;
            cells.extend(grid::cells(&[l], &[d], &[n], &[Variant::Single], 0));
        }
    }
    let model_name = path
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let job = CurveJob {
        path: &path,
        model_name: &model_name,
        load: crate::run::load_options(&args.model)?,
        ctx: crate::run::context_options(&args.model)?,
        haystack: args.haystack.as_deref(),
        style: args.style,
        chat_template: None,
        protect: args.protect,
        layers,
        scorings,
        top_k: args.top_k,
        pools: vec![select::POOL_KERNEL],
        seed: 0,
    };
    crate::notice!(
        "calibrating {}: {} cells (lengths {:?}, depths {:?}), layers {:?}, k {}",
        meta.display_name(),
        cells.len(),
        lengths,
        depths,
        job.layers,
        args.top_k
    );
    let mut recs = Vec::new();
    niah::curve_cells(&job, &cells, &[], &mut |r| {
        recs.push(r);
        Ok(())
    })?;
    let curves = report::aggregate_curves(&recs);
    let series: Vec<(String, Vec<(usize, f64)>)> = curves
        .iter()
        .map(|(s, pts)| {
            (
                s.clone(),
                pts.iter().map(|q| (q.layer, q.mean_recall)).collect(),
            )
        })
        .collect();
    let choice = choose(&series, TOLERANCE).context("no recall measured")?;
    if !crate::messages::quiet() {
        eprint!("{}", report::curve_table(&curves));
    }
    let line = format!(
        "{}: layer {} with {} (mean recall {:.3} at k {}; best {:.3}; {} cells up to {} tokens)",
        meta.display_name(),
        choice.layer,
        choice.scoring,
        choice.recall,
        args.top_k,
        choice.best,
        recs.len(),
        lengths.last().copied().unwrap_or(0)
    );
    eprintln!("recommended: {line}");
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({
            "model": model_name,
            "recommended": choice,
            "k": args.top_k,
            "curves": curves.iter().map(|(s, pts)| serde_json::json!({"scoring": s, "points": pts})).collect::<Vec<_>>(),
        }))?
    );
    if args.write {
        let p = write_preset(&meta, &choice, args.top_k, &line)?;
        crate::notice!("preset written to {}", p.display());
    }
    Ok(())
}
