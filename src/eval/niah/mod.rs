//! `gemfilter niah`: needle-in-a-haystack over a grid of lengths × depths (× needles ×
//! variants), full prompt vs GemFilter per cell in one process, with selection recall; or, with
//! `--layers`, recall per filter layer from filter passes alone.
//!
//! Output directory: `cells.jsonl` (one line per cell and method, appended as it completes),
//! `summary.md`, `heatmap-*.{png,svg}`; in `--layers` mode `layers.jsonl`, `layers.json`,
//! `layers.{png,svg}`. A rerun skips what the JSONL files already hold.

pub mod grid;
pub mod heatmap;
pub mod needles;
pub mod report;
pub mod score;
pub mod tasks;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::curves::{
    aggregate_curves, choose_cheapest, curve_cells, curve_key, curve_table, latest_records, series,
    wanted_points, CurveJob, CurveRecord, COST_TOLERANCE,
};
use super::{progress, say};
use crate::engine::Engine;
use crate::eval::ruler::Task;
use crate::generate::{Discard, GenLimits, Sampling};
use crate::pipeline::{answer, GemSettings, Job, Models, Outcome, Positions};
use crate::prompt::Protect;
use crate::scoring::ScoringSpec;
use crate::select;
use crate::settings::ModelSettings;
pub use grid::Method;
use grid::{Built, Cell, Hay, Style, Variant};
use needles::Needle;
use report::CellRecord;
use tasks::TaskCell;

/// What `gemfilter niah` runs, resolved from its flags.
#[derive(Debug, Clone)]
pub struct NiahSettings {
    pub model: ModelSettings,
    pub gem: GemSettings,
    pub protect: Protect,
    pub haystack: Option<PathBuf>,
    pub lengths: Vec<usize>,
    pub depths: Vec<u32>,
    pub needles: Vec<&'static Needle>,
    pub variants: Vec<Variant>,
    pub style: Style,
    pub chat_template: Option<String>,
    /// Only `full` with `--gem off`.
    pub methods: Vec<Method>,
    pub n_predict: i32,
    pub seed: u64,
    pub output: PathBuf,
    pub experiment: Experiment,
    pub fresh: bool,
    pub report_only: bool,
}

/// What `niah` measures, chosen once from its flags.
#[derive(Debug, Clone)]
pub enum Experiment {
    /// The needle grid (lengths × depths × needles × variants): every method answers every
    /// cell, scored and with the selection's recall of the needle.
    Needles,
    /// RULER-style tasks (`--tasks`), `samples` per task and length, scored by RULER's rule.
    Tasks { tasks: Vec<Task>, samples: usize },
    /// Recall per filter layer (`--layers`) over the needle grid, from filter passes alone (no
    /// generation), for each scoring.
    Layers {
        layers: Vec<usize>,
        scorings: Vec<ScoringSpec>,
    },
}

impl NiahSettings {
    fn task_cells(&self, tasks: &[Task], samples: usize) -> Vec<TaskCell> {
        tasks::task_cells(tasks, &self.lengths, &self.depths, samples, self.seed)
    }

    fn cells(&self) -> Vec<Cell> {
        grid::cells(
            &self.lengths,
            &self.depths,
            &self.needles,
            &self.variants,
            self.seed,
        )
    }

    fn method_key(&self, m: Method) -> String {
        match m {
            Method::Full => format!("m:full|n{}", self.n_predict),
            Method::Gem | Method::Reference => {
                let g = self.gem_for(m).unwrap_or_else(|| self.gem.clone());
                // Draft and original positions only appear when used: older keys stay valid.
                let draft = g
                    .draft
                    .as_ref()
                    .map_or(String::new(), |d| format!("|d:{}", d.name));
                let positions = match g.positions {
                    Positions::Compact => "",
                    Positions::Original => "|pos:original",
                };
                format!(
                    "m:{}|r{}|k{}|{}|{}|n{}{draft}{positions}",
                    if m == Method::Gem { "gem" } else { "ref" },
                    g.layer,
                    g.top_k,
                    g.spec,
                    protect_name(self.protect),
                    self.n_predict
                )
            }
        }
    }

    /// The GemFilter settings a method answers with (None: the whole prompt).
    fn gem_for(&self, m: Method) -> Option<GemSettings> {
        match m {
            Method::Full => None,
            Method::Gem => Some(self.gem.clone()),
            Method::Reference => Some(GemSettings {
                spec: ScoringSpec::REFERENCE,
                ..self.gem.clone()
            }),
        }
    }

    fn cell_key(&self, c: &Cell) -> String {
        format!(
            "{}|{}|s:{:?}|seed{}",
            self.model.name(),
            c.id(),
            self.style,
            self.seed
        )
        .to_lowercase()
    }
}

fn protect_name(p: Protect) -> &'static str {
    match p {
        Protect::All => "all",
        Protect::None => "none",
    }
}

fn prepare_output(dir: &Path, files: &[&str], fresh: bool) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory '{}'", dir.display()))?;
    if fresh {
        for f in files {
            let p = dir.join(f);
            if p.exists() {
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove '{}'", p.display()))?;
            }
        }
    }
    Ok(())
}

/// `gemfilter niah`.
///
/// # Errors
/// Engine failures, or output files that cannot be written.
pub fn run(s: &NiahSettings) -> Result<()> {
    match &s.experiment {
        Experiment::Needles => run_needles(s),
        Experiment::Tasks { tasks, samples } => run_tasks(s, tasks, *samples),
        Experiment::Layers { layers, scorings } => run_layers(s, layers, scorings),
    }
}

/// The needle grid: every (cell, method), appended as each finishes, then the report.
fn run_needles(s: &NiahSettings) -> Result<()> {
    prepare_output(&s.output, &["cells.jsonl"], s.fresh)?;
    let out = s.output.join("cells.jsonl");
    let cells = s.cells();
    let wanted: Vec<(String, &Cell, Method)> = cells
        .iter()
        .flat_map(|c| s.methods.iter().map(move |&m| (c, m)))
        .map(|(c, m)| (format!("{}|{}", s.cell_key(c), s.method_key(m)), c, m))
        .collect();
    if !s.report_only {
        let done: HashSet<String> = report::read_jsonl::<CellRecord>(&out)?
            .into_iter()
            .map(|r| r.key)
            .collect();
        let todo: Vec<&(String, &Cell, Method)> =
            wanted.iter().filter(|w| !done.contains(&w.0)).collect();
        if todo.len() < wanted.len() {
            crate::notice!(
                "{} of {} cell runs already in {}: skipped",
                wanted.len() - todo.len(),
                wanted.len(),
                out.display()
            );
        }
        if !todo.is_empty() {
            generate_cells(s, &todo, &out)?;
        }
    }
    let keys: HashSet<&str> = wanted.iter().map(|w| w.0.as_str()).collect();
    let recs: Vec<CellRecord> = report::read_jsonl::<CellRecord>(&out)?
        .into_iter()
        .filter(|r| keys.contains(r.key.as_str()))
        .collect();
    write_report(s, &recs)
}

/// Answer every (cell, method) in `todo`, appending a record as each finishes.
fn generate_cells(s: &NiahSettings, todo: &[&(String, &Cell, Method)], out: &Path) -> Result<()> {
    let vocab = Engine::load_vocab(&s.model.path, &s.model.load)?;
    let max_len = todo.iter().map(|t| t.1.length).max().unwrap_or(0);
    let text = grid::load_haystack(s.haystack.as_deref())?;
    let hay = Hay::new(&vocab, &text, max_len + 64);
    let mut models = Models::new(&s.model, Some(&s.gem));
    let bar = progress(todo.len() as u64, "niah");
    let mut built: Option<(String, Built)> = None;
    for (key, cell, method) in todo.iter().map(|t| (&t.0, t.1, t.2)) {
        bar.set_message(
            format!(
                "{} tokens, depth {}%, {}, {method:?}",
                cell.length, cell.depth, cell.needle.id
            )
            .to_lowercase(),
        );
        let id = cell.id();
        if built.as_ref().is_none_or(|b| b.0 != id) {
            let b = grid::build(&vocab, &hay, cell, s.style, s.chat_template.as_deref())?;
            built = Some((id, b));
        }
        let Some((_, b)) = built.as_ref() else {
            continue;
        };
        let limits = GenLimits {
            n_predict: s.n_predict,
            ignore_eos: false,
            reverse_prompts: vec!["\nQuestion:".into()],
            special: false,
            shift: None,
        };
        let o = answer_cell(s, &mut models, b, method, limits)?;
        let rec = record(s, key, cell, method, b, &o);
        report::append_jsonl(out, &rec)?;
        say(
            &bar,
            &format!(
                "{:>6} tok  depth {:>3}%  {:<18} {:<5} exact {:.2} rouge {:.2}{}  {:.1} s  {:?}",
                rec.prompt_tokens,
                rec.depth,
                rec.needle,
                format!("{:?}", rec.method).to_lowercase(),
                rec.score_exact,
                rec.score_rouge,
                rec.recall
                    .map_or(String::new(), |r| format!(" recall {r:.2}")),
                rec.total_s,
                score::scored_part(&rec.answer)
                    .chars()
                    .take(60)
                    .collect::<String>()
            ),
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// One method's answer on one built cell (greedy).
/// One method's greedy answer on one built prompt (needle or task cell).
fn answer_cell(
    s: &NiahSettings,
    models: &mut Models,
    b: &Built,
    method: Method,
    limits: GenLimits,
) -> Result<Outcome> {
    let protected = b.asm.protected(s.protect);
    let job = Job {
        tokens: &b.asm.tokens,
        protected: &protected,
        gem: s.gem_for(method),
        ctx: s.model.ctx.clone(),
        ctx_limit: s.model.ctx_limit(),
        ctx_fixed: false,
        sampling: Sampling::greedy(),
        limits,
        progress: false,
    };
    answer(models, &job, &mut Discard)
}

/// Mean share of each target's tokens that the selection kept (None: nothing was selected —
/// the full-prompt method, or a prompt GemFilter answered whole).
fn target_recall(o: &Outcome, targets: &[std::ops::Range<usize>]) -> Option<f64> {
    let sel = o.selected.as_ref()?;
    let sum: f64 = targets
        .iter()
        .map(|t| select::recall(&sel.indices, t.clone()))
        .sum();
    Some(sum / targets.len().max(1) as f64)
}

/// The record of one answer: scores against the needles asked, and selection recall.
fn record(
    s: &NiahSettings,
    key: &str,
    cell: &Cell,
    method: Method,
    b: &Built,
    o: &Outcome,
) -> CellRecord {
    let gem = s.gem_for(method);
    let gem = gem.as_ref();
    let asked = cell.asked();
    let scored = score::scored_part(&o.generated.text);
    let expected: Vec<&str> = asked.iter().map(|n| n.answer).collect();
    let rouge = asked.iter().map(|n| n.text).collect::<Vec<_>>().join(" ");
    // With a primed answer the sentence the model gave is the lead plus its continuation.
    let sentence = match (s.style, asked.as_slice()) {
        (Style::Primed, [one]) => format!("{} {scored}", one.lead),
        _ => scored.to_owned(),
    };
    let recall = target_recall(o, &b.targets);
    CellRecord {
        key: key.to_owned(),
        task: None,
        model: s.model.name(),
        length: cell.length,
        depth: cell.depth,
        needle: cell.needle.id.to_owned(),
        variant: cell.variant,
        hidden: cell.hidden.iter().map(|h| h.0.id.to_owned()).collect(),
        style: s.style,
        method,
        layer: gem.map(|g| g.layer),
        k: gem.map(|g| g.top_k),
        scoring: gem.map(|g| g.spec),
        protect: gem.map(|_| s.protect),
        draft: gem.and_then(|g| g.draft.as_ref()).map(|d| d.name.clone()),
        positions: gem.map(|g| g.positions),
        seed: s.seed,
        prompt_tokens: b.asm.tokens.len(),
        needle_tokens: b.targets.iter().map(|t| [t.start, t.end]).collect(),
        selected_tokens: o.n_rerun,
        answer: o.generated.text.clone(),
        expected: expected.iter().map(|e| (*e).to_owned()).collect(),
        score_rouge: score::rouge1(&rouge, &sentence),
        score_exact: score::exact(&expected, scored),
        recall,
        filter_skipped: o.skipped.clone(),
        filter_pass_s: o.timings.filter_pass_s,
        rerun_s: o.timings.rerun_s,
        first_token_s: o.timings.first_token_s,
        total_s: o.timings.total_s,
    }
}

/// How a heatmap reads one record.
type Metric = fn(&CellRecord) -> Option<f64>;

fn write_report(s: &NiahSettings, recs: &[CellRecord]) -> Result<()> {
    if recs.is_empty() {
        bail!("no results for this grid in {}", s.output.display());
    }
    let rows = report::summary_markdown(&report::summarize(recs));
    let g = &s.gem;
    let model_name = s.model.name();
    let head = format!(
        "# NIAH: {}\n\nstyle {:?}, GemFilter layer {}, k {}, scoring {}, protect {}; {} records\n\n",
        model_name,
        s.style,
        g.layer,
        g.top_k,
        g.spec,
        protect_name(s.protect),
        recs.len()
    )
    .to_lowercase();
    std::fs::write(s.output.join("summary.md"), format!("{head}{rows}"))?;
    if !crate::messages::quiet() {
        eprint!("{rows}");
    }
    let label = |xs: Vec<usize>| xs.into_iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let dl = |ys: Vec<u32>| ys.into_iter().map(|y| format!("{y}%")).collect::<Vec<_>>();
    let plots: [(&str, Method, &str, Metric); 5] = [
        (
            "heatmap-full-exact",
            Method::Full,
            "full prompt: exact answer",
            |r| Some(r.score_exact),
        ),
        (
            "heatmap-gem-exact",
            Method::Gem,
            "GemFilter: exact answer",
            |r| Some(r.score_exact),
        ),
        (
            "heatmap-full-rouge",
            Method::Full,
            "full prompt: ROUGE-1 (reference scorer)",
            |r| Some(r.score_rouge),
        ),
        (
            "heatmap-gem-rouge",
            Method::Gem,
            "GemFilter: ROUGE-1 (reference scorer)",
            |r| Some(r.score_rouge),
        ),
        (
            "heatmap-recall",
            Method::Gem,
            "GemFilter: selection recall of the needle",
            |r| r.recall,
        ),
    ];
    let mut files = Vec::new();
    for (stem, method, title, metric) in plots {
        if !recs.iter().any(|r| r.method == method) {
            continue;
        }
        let (xs, ys, z) = report::grid(recs, method, metric);
        let t = format!("{model_name} — {title}");
        files.extend(heatmap::heatmap(
            &s.output.join(stem),
            &t,
            "prompt tokens",
            &label(xs),
            "needle depth",
            &dl(ys),
            &z,
        )?);
    }
    crate::notice!(
        "wrote {} and {} plots in {}",
        "summary.md",
        files.len(),
        s.output.display()
    );
    Ok(())
}

fn run_layers(s: &NiahSettings, layers: &[usize], scorings: &[ScoringSpec]) -> Result<()> {
    let cells = s.cells();
    let model_name = s.model.name();
    prepare_output(&s.output, &["layers.jsonl"], s.fresh)?;
    let out = s.output.join("layers.jsonl");
    let job = CurveJob {
        path: &s.model.path,
        model_name: &model_name,
        load: s.model.load.clone(),
        ctx: s.model.ctx.clone(),
        haystack: s.haystack.as_deref(),
        style: s.style,
        chat_template: s.chat_template.as_deref(),
        protect: s.protect,
        layers: layers.to_vec(),
        scorings: scorings.to_vec(),
        top_k: s.gem.top_k,
        context_k: false,
        seed: s.seed,
    };
    let existing: Vec<CurveRecord> = report::read_jsonl(&out)?;
    if !s.report_only {
        let n = curve_cells(&job, &cells, &existing, &mut |r| {
            report::append_jsonl(&out, &r)
        })?;
        if n < cells.len() {
            crate::notice!(
                "{} of {} cells already in {}: skipped",
                cells.len() - n,
                cells.len(),
                out.display()
            );
        }
    }
    let keys: HashSet<String> = cells.iter().map(|c| curve_key(&job, c)).collect();
    let recs = latest_records(report::read_jsonl(&out)?, &keys, &wanted_points(&job));
    if recs.is_empty() {
        bail!("no curve results for this grid in {}", out.display());
    }
    let curves = aggregate_curves(&recs);
    let table = curve_table(&curves);
    let series = series(&curves);
    // The recommendation is self-calibration's rule: the cheapest filter pass within the tolerance.
    let choice = choose_cheapest(&series, s.model.meta.block_count, COST_TOLERANCE);
    let json = serde_json::json!({
        "model": model_name,
        "k": s.gem.top_k,
        "protect": s.protect,
        "cells": recs.len(),
        "prompt_tokens_mean": recs.iter().map(|r| r.prompt_tokens).sum::<usize>() / recs.len(),
        "curves": curves.iter().map(|(sc, pts)| serde_json::json!({"scoring": sc, "points": pts})).collect::<Vec<_>>(),
        "recommended": choice,
    });
    std::fs::write(
        s.output.join("layers.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let title = format!(
        "{}: selection recall at k={} ({} cells)",
        model_name,
        s.gem.top_k,
        recs.len()
    );
    heatmap::curves(&s.output.join("layers"), &title, &series)?;
    if !crate::messages::quiet() {
        eprint!("{table}");
        if let Some(c) = &choice {
            eprintln!(
                "cheapest filter pass within {} of the best: layer {} with {} (recall {:.3}; best {:.3})",
                COST_TOLERANCE, c.layer, c.scoring, c.recall, c.best
            );
        }
    }
    std::fs::write(s.output.join("layers.md"), table)?;
    crate::notice!(
        "wrote layers.json, layers.md and layers.png/svg in {}",
        s.output.display()
    );
    Ok(())
}

/// `niah --tasks`: every (task cell, method), appended as each finishes, then the task table.
fn run_tasks(s: &NiahSettings, tasks: &[Task], samples: usize) -> Result<()> {
    prepare_output(&s.output, &["cells.jsonl"], s.fresh)?;
    let out = s.output.join("cells.jsonl");
    let cells = s.task_cells(tasks, samples);
    let key = |c: &TaskCell, m: Method| {
        format!(
            "{}|{}|s:{:?}|{}",
            s.model.name(),
            c.id(),
            s.style,
            s.method_key(m)
        )
        .to_lowercase()
    };
    let wanted: Vec<(String, &TaskCell, Method)> = cells
        .iter()
        .flat_map(|c| s.methods.iter().map(move |&m| (key(c, m), c, m)))
        .collect();
    if !s.report_only {
        let done: HashSet<String> = report::read_jsonl::<CellRecord>(&out)?
            .into_iter()
            .map(|r| r.key)
            .collect();
        let todo: Vec<&(String, &TaskCell, Method)> =
            wanted.iter().filter(|w| !done.contains(&w.0)).collect();
        if !todo.is_empty() {
            answer_tasks(s, &todo, &out)?;
        }
    }
    let keys: HashSet<&str> = wanted.iter().map(|w| w.0.as_str()).collect();
    let recs: Vec<CellRecord> = report::read_jsonl::<CellRecord>(&out)?
        .into_iter()
        .filter(|r| keys.contains(r.key.as_str()))
        .collect();
    if recs.is_empty() {
        bail!("no results for these tasks in {}", s.output.display());
    }
    let table = report::task_table(&recs);
    let head = format!(
        "# RULER-style tasks: {}\n\nstyle {:?}, GemFilter layer {}, k {}, scoring {}, protect {}; {} records; scores by RULER's rule (0-1)\n\n",
        s.model.name(),
        s.style,
        s.gem.layer,
        s.gem.top_k,
        s.gem.spec,
        protect_name(s.protect),
        recs.len()
    );
    std::fs::write(s.output.join("summary.md"), format!("{head}{table}"))?;
    if !crate::messages::quiet() {
        eprint!("{table}");
    }
    Ok(())
}

fn answer_tasks(s: &NiahSettings, todo: &[&(String, &TaskCell, Method)], out: &Path) -> Result<()> {
    let vocab = Engine::load_vocab(&s.model.path, &s.model.load)?;
    let haystack = grid::load_haystack(s.haystack.as_deref())?;
    let mut models = Models::new(&s.model, Some(&s.gem));
    let bar = progress(todo.len() as u64, "tasks");
    let mut built: Option<(String, tasks::BuiltTask)> = None;
    for (key, cell, method) in todo.iter().map(|t| (&t.0, t.1, t.2)) {
        bar.set_message(
            format!("{} tokens, {}, {method:?}", cell.length, cell.task).to_lowercase(),
        );
        if built.as_ref().is_none_or(|b| b.0 != cell.id()) {
            let b = tasks::build(&vocab, &haystack, cell, s.style, s.chat_template.as_deref())?;
            built = Some((cell.id(), b));
        }
        let Some((_, b)) = built.as_ref() else {
            continue;
        };
        let limits = GenLimits {
            n_predict: i32::try_from(cell.task.tokens_to_generate()).unwrap_or(128),
            ignore_eos: false,
            reverse_prompts: Vec::new(),
            special: false,
            shift: None,
        };
        let o = answer_cell(s, &mut models, &b.built, method, limits)?;
        let gem = s.gem_for(method);
        let score = b.sample.score(&o.generated.text);
        let recall = target_recall(&o, &b.built.targets);
        let g = gem.as_ref();
        let rec = CellRecord {
            key: key.clone(),
            task: Some(cell.task),
            model: s.model.name(),
            length: cell.length,
            depth: cell.depth,
            needle: cell.task.to_string(),
            variant: Variant::Single,
            hidden: Vec::new(),
            style: s.style,
            method,
            layer: g.map(|g| g.layer),
            k: g.map(|g| g.top_k),
            scoring: g.map(|g| g.spec),
            protect: g.map(|_| s.protect),
            draft: g.and_then(|g| g.draft.as_ref()).map(|d| d.name.clone()),
            positions: g.map(|g| g.positions),
            seed: cell.seed,
            prompt_tokens: b.built.asm.tokens.len(),
            needle_tokens: b.built.targets.iter().map(|t| [t.start, t.end]).collect(),
            selected_tokens: o.n_rerun,
            answer: o.generated.text.clone(),
            expected: b.sample.answers.clone(),
            score_rouge: score,
            score_exact: score,
            recall,
            filter_skipped: o.skipped.clone(),
            filter_pass_s: o.timings.filter_pass_s,
            rerun_s: o.timings.rerun_s,
            first_token_s: o.timings.first_token_s,
            total_s: o.timings.total_s,
        };
        report::append_jsonl(out, &rec)?;
        say(
            &bar,
            &format!(
                "{:>6} tok  {:<16} {:<9} score {:.2}{}  {:.1} s  {:?}",
                rec.prompt_tokens,
                cell.task.to_string(),
                format!("{method:?}").to_lowercase(),
                score,
                recall.map_or(String::new(), |r| format!(" recall {r:.2}")),
                rec.total_s,
                o.generated.text.trim().chars().take(50).collect::<String>()
            ),
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}
