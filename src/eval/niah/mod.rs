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

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::llama::{GemArgs, ModelArgs, OnOff};
use crate::engine::Engine;
use crate::generate::{GenLimits, Sampling, TokenSink};
use crate::gguf_info::{self, ModelMeta};
use crate::pipeline::{answer, GemSettings, Job, Models};
use crate::select;
use crate::eval::layers::{parse_layers, parse_scorings, recall_curve_multi, scoring_label};
use grid::{Cell, Hay, Style, Variant};
use report::{CellRecord, CurveRecord};

/// Which answers a cell gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// The whole prompt.
    Full,
    /// GemFilter: filter pass, top-k, answer from the selection.
    Gem,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NiahArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gem: GemArgs,

    /// Haystack: a directory of .txt files (concatenated in name order, as the reference
    /// harness does; ../shared/data/pg-essays is the standard one) or one file. Default: the
    /// bundled essays (repeated as needed).
    #[arg(long = "haystack", value_name = "DIR|FILE")]
    pub haystack: Option<PathBuf>,

    /// Prompt lengths in tokens, comma-separated (`2000,7.5k`).
    #[arg(
        long = "lengths",
        default_value = "1000,2000,4000",
        value_name = "LIST"
    )]
    pub lengths: String,

    /// Needle depths in percent of the context, comma-separated.
    #[arg(
        long = "depths",
        default_value = "0,10,20,30,40,50,60,70,80,90,100",
        value_name = "LIST"
    )]
    pub depths: String,

    /// Needles: reference, all, own (the 23 beside the reference), or ids, comma-separated.
    #[arg(long = "needles", default_value = "reference", value_name = "LIST")]
    pub needles: String,

    /// Needle variants, comma-separated: single, distractors (two more needles hidden, one
    /// asked), multi (three hidden, all asked).
    #[arg(
        long = "variants",
        value_enum,
        value_delimiter = ',',
        default_value = "single",
        value_name = "LIST"
    )]
    pub variants: Vec<Variant>,

    /// Prompt wording: plain (`… Question: Q Answer:`), primed (plain plus the start of the
    /// answer sentence), book (the GemFilter harness's), or chat (the model's chat template).
    #[arg(long = "style", value_enum, default_value = "plain")]
    pub style: Style,

    /// Built-in chat template name for --style chat (default: the model's own).
    #[arg(long = "chat-template", value_name = "NAME")]
    pub chat_template: Option<String>,

    /// Methods per cell, comma-separated.
    #[arg(
        long = "methods",
        value_enum,
        value_delimiter = ',',
        default_value = "full,gem",
        value_name = "LIST"
    )]
    pub methods: Vec<Method>,

    /// Tokens to generate per answer (greedy).
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 32,
        value_name = "N"
    )]
    pub n_predict: i32,

    /// Seed for the companion needles of the multi-needle variants.
    #[arg(long = "seed", default_value_t = 0, value_name = "SEED")]
    pub seed: u64,

    /// Output directory (created; cells already in it are skipped).
    #[arg(
        short = 'o',
        long = "output",
        default_value = "niah-out",
        value_name = "DIR"
    )]
    pub output: PathBuf,

    /// Recall-per-layer mode: filter passes only, no generation; e.g. 0-29 or 5,11,17.
    #[arg(long = "layers", value_name = "A-B")]
    pub layers: Option<String>,

    /// Scorings compared in --layers mode (`window-softmax:W` picks a window).
    #[arg(
        long = "scorings",
        default_value = "reference,head-softmax,window-softmax:32",
        value_name = "LIST"
    )]
    pub scorings: String,

    /// Average-pooling kernels tried with every scoring in --layers mode, comma-separated odd
    /// numbers (5 is the reference's; others are an experiment the runtime does not use yet).
    #[arg(long = "pools", default_value = "5", value_name = "LIST")]
    pub pools: String,

    /// Discard earlier results in the output directory instead of resuming.
    #[arg(long = "fresh")]
    pub fresh: bool,

    /// Only rebuild the summary and plots from the output directory.
    #[arg(long = "report-only")]
    pub report_only: bool,
}

/// Discards generated text (the answer is kept in the outcome).
struct Quiet;

impl TokenSink for Quiet {
    fn text(&mut self, _piece: &str) -> Result<bool> {
        Ok(true)
    }
}

/// Everything resolved from the arguments before the first model load.
struct Plan {
    meta: ModelMeta,
    path: PathBuf,
    model_name: String,
    cells: Vec<Cell>,
    gem: GemSettings,
    protect: String,
}

fn model_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
}

fn plan(args: &NiahArgs) -> Result<Plan> {
    let lengths = grid::parse_lengths(&args.lengths)?;
    let depths = grid::parse_depths(&args.depths)?;
    let needles = needles::parse_list(&args.needles)?;
    if args.variants.is_empty() || args.methods.is_empty() {
        bail!("--variants and --methods need at least one value");
    }
    if args.n_predict < 1 {
        bail!("-n must be at least 1");
    }
    if let Some(h) = &args.haystack {
        if !h.exists() {
            bail!("haystack '{}' does not exist", h.display());
        }
    }
    let path = crate::run::model_path(&args.model)?.to_path_buf();
    let meta = gguf_info::read(&path)?;
    if let Some(ctx) = meta.context_length {
        if let Some(&l) = lengths
            .iter()
            .find(|&&l| l + usize::try_from(args.n_predict).unwrap_or(0) >= ctx)
        {
            bail!(
                "length {l} does not fit the model's training context of {ctx} tokens (with -n {})",
                args.n_predict
            );
        }
    }
    let gem = crate::run::gem_settings(&args.gem, &meta)?;
    let protect = format!("{:?}", args.gem.gem_protect).to_lowercase();
    let cells = grid::cells(&lengths, &depths, &needles, &args.variants, args.seed);
    Ok(Plan {
        model_name: model_name(&path),
        meta,
        path,
        cells,
        gem,
        protect,
    })
}

fn method_key(args: &NiahArgs, p: &Plan, m: Method) -> String {
    match m {
        Method::Full => format!("m:full|n{}", args.n_predict),
        Method::Gem => format!(
            "m:gem|r{}|k{}|{}|{}|n{}",
            p.gem.layer,
            p.gem.top_k,
            gem_label(p),
            p.protect,
            args.n_predict
        ),
    }
}

/// The GemFilter scoring as recorded: `head-softmax`, `window-softmax:32+pool15`, ...
fn gem_label(p: &Plan) -> String {
    if p.gem.pool == select::POOL_KERNEL {
        scoring_label(p.gem.scoring)
    } else {
        format!("{}+pool{}", scoring_label(p.gem.scoring), p.gem.pool)
    }
}

fn cell_key(args: &NiahArgs, p: &Plan, c: &Cell, style: Style) -> String {
    format!("{}|{}|s:{style:?}|seed{}", p.model_name, c.id(), args.seed).to_lowercase()
}

fn progress(n: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(n);
    b.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_prefix(what.to_owned());
    b
}

/// A line above the progress bar, or on stderr when the bar is hidden (not a terminal).
fn say(bar: &ProgressBar, line: &str) {
    if crate::messages::quiet() {
        return;
    }
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
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
/// Bad input (one line), engine failures, or output files that cannot be written.
pub fn run(args: &NiahArgs) -> Result<()> {
    crate::messages::set_quiet(args.model.log_disable);
    let p = plan(args)?;
    if args.layers.is_some() {
        return run_layers(args, &p);
    }
    prepare_output(&args.output, &["cells.jsonl"], args.fresh)?;
    let out = args.output.join("cells.jsonl");
    let methods: Vec<Method> = if args.gem.gem == OnOff::Off {
        vec![Method::Full]
    } else {
        args.methods.clone()
    };
    let wanted: Vec<(String, &Cell, Method)> = p
        .cells
        .iter()
        .flat_map(|c| {
            let ck = cell_key(args, &p, c, args.style);
            methods.iter().map(move |&m| (ck.clone(), c, m))
        })
        .map(|(ck, c, m)| (format!("{ck}|{}", method_key(args, &p, m)), c, m))
        .collect();
    if !args.report_only {
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
            generate_cells(args, &p, &todo, &out)?;
        }
    }
    let keys: HashSet<&str> = wanted.iter().map(|w| w.0.as_str()).collect();
    let recs: Vec<CellRecord> = report::read_jsonl::<CellRecord>(&out)?
        .into_iter()
        .filter(|r| keys.contains(r.key.as_str()))
        .collect();
    write_report(args, &p, &recs)
}

fn generate_cells(
    args: &NiahArgs,
    p: &Plan,
    todo: &[&(String, &Cell, Method)],
    out: &Path,
) -> Result<()> {
    let load = crate::run::load_options(&args.model)?;
    let ctx = crate::run::context_options(&args.model)?;
    let vocab = Engine::load_vocab(&p.path, &load)?;
    let max_len = todo.iter().map(|t| t.1.length).max().unwrap_or(0);
    let text = grid::load_haystack(args.haystack.as_deref())?;
    let hay = Hay::new(&vocab, &text, max_len + 64);
    let mut models = Models::new(p.path.clone(), p.meta.block_count, load);
    let ctx_limit = p
        .meta
        .context_length
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(u32::MAX);
    let bar = progress(todo.len() as u64, "niah");
    let mut built_for: Option<(String, grid::Built)> = None;
    for (key, cell, method) in todo.iter().map(|t| (&t.0, t.1, t.2)) {
        bar.set_message(
            format!(
                "{} tokens, depth {}%, {}, {:?}",
                cell.length, cell.depth, cell.needle.id, method
            )
            .to_lowercase(),
        );
        let id = cell.id();
        if built_for.as_ref().is_none_or(|b| b.0 != id) {
            built_for = Some((
                id.clone(),
                grid::build(
                    &vocab,
                    &hay,
                    cell,
                    args.style,
                    args.chat_template.as_deref(),
                )?,
            ));
        }
        let Some((_, b)) = built_for.as_ref() else {
            continue;
        };
        let protected = b.asm.protected(args.gem.gem_protect);
        let gem = (method == Method::Gem).then(|| p.gem.clone());
        let job = Job {
            tokens: &b.asm.tokens,
            protected: &protected,
            gem: gem.clone(),
            ctx: ctx.clone(),
            ctx_limit,
            ctx_fixed: false,
            sampling: Sampling::greedy(),
            limits: GenLimits {
                n_predict: args.n_predict,
                ignore_eos: false,
                reverse_prompts: vec!["\nQuestion:".into()],
            },
            progress: false,
        };
        let o = answer(&mut models, &job, &mut Quiet)?;
        let asked = cell.asked();
        let scored = score::scored_part(&o.generated.text);
        let expected: Vec<&str> = asked.iter().map(|n| n.answer).collect();
        let rouge = asked.iter().map(|n| n.text).collect::<Vec<_>>().join(" ");
        // With a primed answer the sentence the model gave is the lead plus its continuation.
        let sentence = match (args.style, asked.as_slice()) {
            (Style::Primed, [one]) => format!("{} {scored}", one.lead),
            _ => scored.to_owned(),
        };
        let recall = gem.as_ref().map(|_| {
            o.selected.as_ref().map_or(1.0, |s| {
                #[allow(clippy::cast_precision_loss)]
                let r = b
                    .targets
                    .iter()
                    .map(|t| select::recall(&s.indices, t.clone()))
                    .sum::<f64>()
                    / b.targets.len().max(1) as f64;
                r
            })
        });
        let rec = CellRecord {
            key: key.clone(),
            model: p.model_name.clone(),
            length: cell.length,
            depth: cell.depth,
            needle: cell.needle.id.to_owned(),
            variant: cell.variant.name().to_owned(),
            hidden: cell.hidden.iter().map(|h| h.0.id.to_owned()).collect(),
            style: format!("{:?}", args.style).to_lowercase(),
            method: if gem.is_some() { "gem" } else { "full" }.to_owned(),
            layer: gem.as_ref().map(|g| g.layer),
            k: gem.as_ref().map(|g| g.top_k),
            scoring: gem.as_ref().map(|_| gem_label(p)),
            protect: gem.as_ref().map(|_| p.protect.clone()),
            seed: args.seed,
            prompt_tokens: b.asm.tokens.len(),
            needle_tokens: b.targets.iter().map(|t| [t.start, t.end]).collect(),
            selected_tokens: o.n_rerun,
            answer: o.generated.text.clone(),
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            score_rouge: score::rouge1(&rouge, &sentence),
            score_exact: score::exact(&expected, scored),
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
                "{:>6} tok  depth {:>3}%  {:<18} {:<5} exact {:.2} rouge {:.2}{}  {:.1} s  {:?}",
                rec.prompt_tokens,
                rec.depth,
                rec.needle,
                rec.method,
                rec.score_exact,
                rec.score_rouge,
                rec.recall
                    .map_or(String::new(), |r| format!(" recall {r:.2}")),
                rec.total_s,
                scored.chars().take(60).collect::<String>()
            ),
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn write_report(args: &NiahArgs, p: &Plan, recs: &[CellRecord]) -> Result<()> {
    if recs.is_empty() {
        bail!("no results for this grid in {}", args.output.display());
    }
    let rows = report::summary_markdown(&report::summarize(recs));
    let g = &p.gem;
    let head = format!(
        "# NIAH: {}\n\nstyle {:?}, GemFilter layer {}, k {}, scoring {}, protect {}; {} records\n\n",
        p.model_name,
        args.style,
        g.layer,
        g.top_k,
        gem_label(p),
        p.protect,
        recs.len()
    )
    .to_lowercase();
    std::fs::write(args.output.join("summary.md"), format!("{head}{rows}"))?;
    if !crate::messages::quiet() {
        eprint!("{rows}");
    }
    let label = |xs: Vec<usize>| xs.into_iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let dl = |ys: Vec<u32>| ys.into_iter().map(|y| format!("{y}%")).collect::<Vec<_>>();
    type Metric = fn(&CellRecord) -> Option<f64>;
    let plots: [(&str, &str, &str, Metric); 5] = [
        (
            "heatmap-full-exact",
            "full",
            "full prompt: exact answer",
            |r| Some(r.score_exact),
        ),
        ("heatmap-gem-exact", "gem", "GemFilter: exact answer", |r| {
            Some(r.score_exact)
        }),
        (
            "heatmap-full-rouge",
            "full",
            "full prompt: ROUGE-1 (reference scorer)",
            |r| Some(r.score_rouge),
        ),
        (
            "heatmap-gem-rouge",
            "gem",
            "GemFilter: ROUGE-1 (reference scorer)",
            |r| Some(r.score_rouge),
        ),
        (
            "heatmap-recall",
            "gem",
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
        let t = format!("{} — {title}", p.model_name);
        files.extend(heatmap::heatmap(
            &args.output.join(stem),
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
        args.output.display()
    );
    Ok(())
}

/// Parse `--pools`: odd kernel sizes.
///
/// # Errors
/// Even, zero or malformed sizes.
pub fn parse_pools(s: &str) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let k: usize = part
            .parse()
            .map_err(|_| anyhow::anyhow!("bad pooling kernel '{part}'"))?;
        if k % 2 == 0 {
            bail!("pooling kernel {k} must be odd");
        }
        if !v.contains(&k) {
            v.push(k);
        }
    }
    if v.is_empty() {
        bail!("--pools is empty");
    }
    Ok(v)
}

/// Layers to probe: the given list, else every global layer.
///
/// # Errors
/// Out-of-range layers.
pub fn probe_layers(spec: Option<&str>, meta: &ModelMeta) -> Result<Vec<usize>> {
    let all = match spec {
        Some(s) => parse_layers(s).map_err(|e| anyhow::anyhow!("bad --layers '{s}': {e}"))?,
        None => (0..meta.block_count).collect(),
    };
    if let Some(&l) = all.iter().find(|&&l| l >= meta.block_count) {
        bail!(
            "layer {l} is out of range: the model has {} layers (0..{})",
            meta.block_count,
            meta.block_count.saturating_sub(1)
        );
    }
    let global: Vec<usize> = all
        .into_iter()
        .filter(|&l| !meta.is_sliding_layer(l))
        .collect();
    if global.is_empty() {
        bail!("every listed layer is a sliding-window layer, which cannot select");
    }
    Ok(global)
}

/// Inputs of a curve run shared by `niah --layers` and `calibrate`.
pub struct CurveJob<'a> {
    pub path: &'a Path,
    pub model_name: &'a str,
    pub load: crate::engine::LoadOptions,
    pub ctx: crate::engine::ContextOptions,
    pub haystack: Option<&'a Path>,
    pub style: Style,
    pub chat_template: Option<&'a str>,
    pub protect: crate::prompt::Protect,
    pub layers: Vec<usize>,
    pub scorings: Vec<select::Scoring>,
    pub top_k: usize,
    /// Average-pooling kernels tried with every scoring (5 = the reference).
    pub pools: Vec<usize>,
    pub seed: u64,
}

/// The (layer, label) points a curve job computes per cell.
#[must_use]
pub fn wanted_points(job: &CurveJob<'_>) -> Vec<(usize, String)> {
    let labels = crate::eval::layers::curve_labels(&job.scorings, &job.pools);
    job.layers
        .iter()
        .flat_map(|&l| labels.iter().map(move |s| (l, s.clone())))
        .collect()
}

/// Only the last record per key, with only the wanted points (a rerun with other layers or
/// scorings appends a fuller record for the same cell).
#[must_use]
pub fn latest_records(
    recs: Vec<CurveRecord>,
    keys: &HashSet<String>,
    wanted: &[(usize, String)],
) -> Vec<CurveRecord> {
    let want: HashSet<(usize, &str)> = wanted.iter().map(|(l, s)| (*l, s.as_str())).collect();
    let mut by_key: Vec<CurveRecord> = Vec::new();
    for mut r in recs.into_iter().filter(|r| keys.contains(&r.key)) {
        r.points
            .retain(|p| want.contains(&(p.layer, p.scoring.as_str())));
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
    let key_of = |c: &Cell| curve_key(job, c);
    let wanted = wanted_points(job);
    let done: HashSet<&str> = existing
        .iter()
        .filter(|r| {
            let have: HashSet<(usize, &str)> = r
                .points
                .iter()
                .map(|p| (p.layer, p.scoring.as_str()))
                .collect();
            wanted.iter().all(|(l, s)| have.contains(&(*l, s.as_str())))
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
    let bar = progress(todo.len() as u64, "filter passes");
    for c in &todo {
        bar.set_message(format!(
            "{} tokens, depth {}%, {}",
            c.length, c.depth, c.needle.id
        ));
        let b = grid::build(&vocab, &hay, c, job.style, job.chat_template)?;
        let protected = b.asm.protected(job.protect);
        let (points, secs) = recall_curve_multi(
            &engine,
            &b.asm.tokens,
            &protected,
            &b.targets,
            &job.layers,
            &job.scorings,
            job.top_k,
            &job.pools,
            &job.ctx,
            false,
        )?;
        let best = points.iter().max_by(|a, b| a.recall.total_cmp(&b.recall));
        say(
            &bar,
            &format!(
                "{:>6} tok  depth {:>3}%  {:<18} filter pass {:.1} s; best recall {:.2} ({} at layer {})",
                b.asm.tokens.len(),
                c.depth,
                c.needle.id,
                secs,
                best.map_or(0.0, |p| p.recall),
                best.map_or("-", |p| p.scoring.as_str()),
                best.map_or(0, |p| p.layer)
            ),
        );
        sink(CurveRecord {
            key: key_of(c),
            model: job.model_name.to_owned(),
            length: c.length,
            depth: c.depth,
            needle: c.needle.id.to_owned(),
            variant: c.variant.name().to_owned(),
            style: format!("{:?}", job.style).to_lowercase(),
            k: job.top_k,
            protect: format!("{:?}", job.protect).to_lowercase(),
            prompt_tokens: b.asm.tokens.len(),
            filter_pass_s: secs,
            points,
        })?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(todo.len())
}

fn run_layers(args: &NiahArgs, p: &Plan) -> Result<()> {
    let layers = probe_layers(args.layers.as_deref(), &p.meta)?;
    let scorings = parse_scorings(
        &args.scorings,
        args.gem.gem_window.unwrap_or(select::DEFAULT_WINDOW),
    )?;
    let pools = parse_pools(&args.pools)?;
    prepare_output(&args.output, &["layers.jsonl"], args.fresh)?;
    let out = args.output.join("layers.jsonl");
    let job = CurveJob {
        path: &p.path,
        model_name: &p.model_name,
        load: crate::run::load_options(&args.model)?,
        ctx: crate::run::context_options(&args.model)?,
        haystack: args.haystack.as_deref(),
        style: args.style,
        chat_template: args.chat_template.as_deref(),
        protect: args.gem.gem_protect,
        layers: layers.clone(),
        scorings,
        top_k: p.gem.top_k,
        pools,
        seed: args.seed,
    };
    let existing: Vec<CurveRecord> = report::read_jsonl(&out)?;
    if !args.report_only {
        let n = curve_cells(&job, &p.cells, &existing, &mut |r| {
            report::append_jsonl(&out, &r)
        })?;
        if n < p.cells.len() {
            crate::notice!(
                "{} of {} cells already in {}: skipped",
                p.cells.len() - n,
                p.cells.len(),
                out.display()
            );
        }
    }
    let keys: HashSet<String> = p.cells.iter().map(|c| curve_key(&job, c)).collect();
    let recs = latest_records(report::read_jsonl(&out)?, &keys, &wanted_points(&job));
    if recs.is_empty() {
        bail!("no curve results for this grid in {}", out.display());
    }
    let curves = report::aggregate_curves(&recs);
    let table = report::curve_table(&curves);
    let series: Vec<(String, Vec<(usize, f64)>)> = curves
        .iter()
        .map(|(s, pts)| {
            (
                s.clone(),
                pts.iter().map(|q| (q.layer, q.mean_recall)).collect(),
            )
        })
        .collect();
    let choice = crate::eval::calibrate::choose(&series, crate::eval::calibrate::TOLERANCE);
    let json = serde_json::json!({
        "model": p.model_name,
        "k": p.gem.top_k,
        "protect": p.protect,
        "cells": recs.len(),
        "prompt_tokens_mean": recs.iter().map(|r| r.prompt_tokens).sum::<usize>() / recs.len(),
        "curves": curves.iter().map(|(s, pts)| serde_json::json!({"scoring": s, "points": pts})).collect::<Vec<_>>(),
        "recommended": choice,
    });
    std::fs::write(
        args.output.join("layers.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let title = format!(
        "{}: selection recall at k={} ({} cells)",
        p.model_name,
        p.gem.top_k,
        recs.len()
    );
    heatmap::curves(&args.output.join("layers"), &title, &series)?;
    if !crate::messages::quiet() {
        eprint!("{table}");
        if let Some(c) = &choice {
            eprintln!(
                "lowest layer within {} of the best: {} with {} (recall {:.3}; best {:.3})",
                crate::eval::calibrate::TOLERANCE,
                c.layer,
                c.scoring,
                c.recall,
                c.best
            );
        }
    }
    std::fs::write(args.output.join("layers.md"), table)?;
    crate::notice!(
        "wrote layers.json, layers.md and layers.png/svg in {}",
        args.output.display()
    );
    Ok(())
}
