//! Selection recall per layer: one prefill captures post-RoPE Q/K at every layer, then each
//! layer and scoring is scored as the filter pass would. This is how filter layers are chosen.

use std::ops::Range;

use anyhow::Result;
use serde::Serialize;

use crate::capture::{CaptureSpec, KSource};
use crate::engine::{ContextOptions, Engine};
use crate::select::{self, Scoring};

/// Recall of one layer under one scoring.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LayerRecall {
    pub layer: usize,
    pub scoring: String,
    /// Share of the target tokens among the selected.
    pub recall: f64,
    /// Best (lowest) rank of any target token among the unprotected candidates, 0-based.
    pub best_rank: usize,
}

/// Byte offset where each token's text starts, for tokens of plain text (no specials).
#[must_use]
pub fn token_offsets(engine: &Engine, tokens: &[llama_cpp_2::token::LlamaToken]) -> Vec<usize> {
    let vocab = engine.model.vocab();
    let mut at = 0;
    tokens
        .iter()
        .map(|&t| {
            let start = at;
            at += vocab.token_to_piece(t, false, None).len();
            start
        })
        .collect()
}

/// Tokens (indices into `offsets`, shifted by `base`) overlapping the byte range `bytes`.
#[must_use]
pub fn tokens_covering(offsets: &[usize], bytes: Range<usize>, base: usize) -> Range<usize> {
    let first = offsets
        .partition_point(|&o| o <= bytes.start)
        .saturating_sub(1);
    let end = offsets.partition_point(|&o| o < bytes.end);
    base + first..base + end
}

/// Name of a scoring with its window (`window-softmax:32`), as curves and presets label it.
#[must_use]
pub fn scoring_label(s: Scoring) -> String {
    match s {
        Scoring::WindowSoftmax { window } => format!("window-softmax:{window}"),
        o => o.to_string(),
    }
}

/// Labels [`recall_curve_multi`] gives its points for these scorings and pooling kernels.
#[must_use]
pub fn curve_labels(scorings: &[Scoring], pools: &[usize]) -> Vec<String> {
    scorings
        .iter()
        .flat_map(|&s| pools.iter().map(move |&p| pool_label(s, p)))
        .collect()
}

fn pool_label(s: Scoring, pool: usize) -> String {
    if pool == select::POOL_KERNEL {
        scoring_label(s)
    } else {
        format!("{}+pool{pool}", scoring_label(s))
    }
}

/// Parse a comma list of scorings; `window-softmax:W` sets the window, plain `window-softmax`
/// gets `default_window`.
///
/// # Errors
/// Unknown names or a zero/malformed window.
pub fn parse_scorings(list: &str, default_window: usize) -> Result<Vec<Scoring>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, window) = match part.split_once(':') {
            Some((n, w)) => {
                let w: usize = w
                    .parse()
                    .map_err(|_| anyhow::anyhow!("bad window in scoring '{part}'"))?;
                (n, Some(w))
            }
            None => (part, None),
        };
        let sc = name.parse::<Scoring>()?;
        let sc = match sc {
            Scoring::WindowSoftmax { .. } => {
                let window = window.unwrap_or(default_window);
                anyhow::ensure!(window > 0, "window-softmax needs a window of at least 1");
                Scoring::WindowSoftmax { window }
            }
            o => {
                anyhow::ensure!(
                    window.is_none(),
                    "only window-softmax takes a window ('{part}')"
                );
                o
            }
        };
        if !out.contains(&sc) {
            out.push(sc);
        }
    }
    anyhow::ensure!(!out.is_empty(), "no scorings given");
    Ok(out)
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
    scorings: &[Scoring],
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
        &[select::POOL_KERNEL],
        ctx,
        true,
    )?
    .0)
}

/// [`recall_curve`] for several targets: recall is the mean of the targets' recalls and the
/// best rank the lowest rank of any target token. Each scoring is also tried with every
/// average-pooling kernel in `pools` (labelled `+poolP` unless it is the reference's 5).
/// Also returns the filter pass's seconds.
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
    scorings: &[Scoring],
    top_k: usize,
    pools: &[usize],
    ctx: &ContextOptions,
    progress: bool,
) -> Result<(Vec<LayerRecall>, f64)> {
    anyhow::ensure!(
        pools.iter().all(|&p| p % 2 == 1),
        "pooling kernels must be odd"
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
    let pass = engine.filter_pass(tokens, spec, ctx, progress)?;
    let mut out = Vec::new();
    for (lc, &layer) in pass.capture.layers.iter().zip(layers) {
        for &s in scorings {
            let q = lc.q_view();
            let rows = q.shape()[0];
            let need = s.queries_needed().min(rows);
            let q = q.slice_move(ndarray::s![rows - need.., .., ..]);
            let raw = select::scores(q, lc.k_view(), s)?;
            for &pool in pools {
                let pooled = select::avg_pool(raw.view(), pool);
                let indices = select::select_top_k(pooled.view(), top_k, protected);
                let mut order: Vec<usize> = (0..tokens.len())
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
                let scoring = pool_label(s, pool);
                out.push(LayerRecall {
                    layer,
                    scoring,
                    recall,
                    best_rank,
                });
            }
        }
    }
    Ok((out, pass.secs))
}

/// `gemfilter layers`: recall per layer for one prompt whose context contains `--needle`.
#[derive(Debug, Clone, clap::Args)]
pub struct LayersArgs {
    #[command(flatten)]
    pub run: crate::cli::RunArgs,
    /// Text inside the -f context whose tokens should be selected.
    #[arg(long = "needle", value_name = "TEXT")]
    pub needle: String,
    /// Layers to probe, e.g. 0-29 (default: every global layer).
    #[arg(long = "layers", value_name = "A-B")]
    pub layers: Option<String>,
    /// Scorings to compare, comma-separated (`window-softmax:W` picks a window).
    #[arg(
        long = "scorings",
        default_value = "reference,head-softmax,window-softmax",
        value_name = "LIST"
    )]
    pub scorings: String,
}

/// Parse "a-b" or "a,b,c" into layer indices.
///
/// # Errors
/// Malformed lists.
pub fn parse_layers(s: &str) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',') {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
            anyhow::ensure!(a <= b, "bad layer range '{part}'");
            v.extend(a..=b);
        } else {
            v.push(part.trim().parse()?);
        }
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// # Errors
/// Bad input or engine failures.
pub fn run(args: &LayersArgs) -> Result<()> {
    use anyhow::Context;
    let r = &args.run;
    let file = r
        .prompt
        .file
        .as_deref()
        .context("--file with the haystack is required")?;
    let context = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read '{}'", file.display()))?;
    let needle_at = context
        .find(&args.needle)
        .context("the needle text is not in the -f file")?;
    let (meta, engine, _) = crate::run::open_model(&r.model)?;
    let ctx = crate::run::context_options(&r.model)?;
    let input = crate::prompt::PromptInput {
        system: r.prompt.system_prompt.clone(),
        context: Some(context),
        question: r.prompt.prompt.clone(),
    };
    let template = crate::prompt::choose_template(
        &engine.model,
        r.prompt.no_conversation,
        r.prompt.chat_template.as_deref(),
    )?;
    let asm = crate::prompt::assemble(&engine.model, &input, &template)?;
    let offsets = token_offsets(&engine, &asm.tokens[asm.context.clone()]);
    let target = tokens_covering(
        &offsets,
        needle_at..needle_at + args.needle.len(),
        asm.context.start,
    );
    let layers = match &args.layers {
        Some(s) => parse_layers(s)?,
        None => (0..meta.block_count)
            .filter(|&il| !meta.is_sliding_layer(il))
            .collect(),
    };
    anyhow::ensure!(
        layers.iter().all(|&l| l < meta.block_count),
        "layer out of range (model has {})",
        meta.block_count
    );
    let scorings = parse_scorings(&args.scorings, r.gem.gem_window.unwrap_or(32))?;
    let protected = asm.protected(r.gem.gem_protect);
    let k = r.gem.gem_topk.unwrap_or(1024);
    let curve = recall_curve(
        &engine,
        &asm.tokens,
        &protected,
        target.clone(),
        &layers,
        &scorings,
        k,
        &ctx,
    )?;
    let shown = engine
        .model
        .vocab()
        .detokenize(&asm.tokens[target.clone()], false, false);
    eprintln!(
        "prompt {} tokens, needle tokens {:?} = {:?}, k {k}",
        asm.tokens.len(),
        target,
        String::from_utf8_lossy(&shown)
    );
    eprintln!(
        "{:>5} {:>16} {:>7} {:>9}",
        "layer", "scoring", "recall", "best rank"
    );
    for c in &curve {
        eprintln!(
            "{:>5} {:>16} {:>7.3} {:>9}",
            c.layer, c.scoring, c.recall, c.best_rank
        );
    }
    println!("{}", serde_json::to_string(&curve)?);
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn covering() {
        let offs = [0, 3, 7, 10, 15];
        assert_eq!(tokens_covering(&offs, 7..10, 100), 102..103);
        assert_eq!(tokens_covering(&offs, 5..11, 0), 1..4);
        assert_eq!(tokens_covering(&offs, 0..1, 0), 0..1);
    }
    #[test]
    fn layer_lists() {
        assert_eq!(parse_layers("3-5,1,4").unwrap(), vec![1, 3, 4, 5]);
        assert!(parse_layers("5-3").is_err());
    }
    #[test]
    fn scoring_lists() {
        let v = parse_scorings("reference,window-softmax:8,window-softmax", 32).unwrap();
        assert_eq!(
            v,
            vec![
                Scoring::Reference,
                Scoring::WindowSoftmax { window: 8 },
                Scoring::WindowSoftmax { window: 32 }
            ]
        );
        assert_eq!(scoring_label(v[1]), "window-softmax:8");
        assert!(parse_scorings("reference:3", 32).is_err());
        assert!(parse_scorings("bogus", 32).is_err());
    }
}
