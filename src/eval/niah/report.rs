//! What a niah run writes: one JSON line per (cell, method) or per curve cell, appended as each
//! finishes (so a crash loses at most the cell in flight and a rerun skips what is done), and
//! the summaries computed from those lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::eval::niah::grid::{Method, Style, Variant};
use crate::prompt::Protect;
use crate::scoring::ScoringSpec;

/// One method's run on one cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellRecord {
    /// Identity used to skip done work on a rerun.
    pub key: String,
    /// The RULER-style task of a `--tasks` cell (its `score_exact` is RULER's score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<crate::eval::ruler::Task>,
    pub model: String,
    /// Requested prompt length (tokens).
    pub length: usize,
    /// Needle depth (% of the context).
    pub depth: u32,
    pub needle: String,
    pub variant: Variant,
    /// Every needle hidden in the context (the first is `needle`).
    pub hidden: Vec<String>,
    pub style: Style,
    /// "full" or "gem".
    pub method: Method,
    pub layer: Option<usize>,
    pub k: Option<usize>,
    pub scoring: Option<ScoringSpec>,
    pub protect: Option<Protect>,
    /// The draft model that selected (`--gem-draft`), if any.
    #[serde(default)]
    pub draft: Option<String>,
    /// Where the re-run put the selected tokens (gem only).
    #[serde(default)]
    pub positions: Option<crate::settings::Positions>,
    pub seed: u64,
    pub prompt_tokens: usize,
    /// Token ranges [start, end) of the asked needles.
    pub needle_tokens: Vec<[usize; 2]>,
    pub selected_tokens: usize,
    pub answer: String,
    /// Answers the exact scorer looked for.
    pub expected: Vec<String>,
    /// Reference scorer: ROUGE-1 F of the needle sentence(s) vs the answer, 0..1.
    pub score_rouge: f64,
    /// Share of expected answers found in the answer.
    pub score_exact: f64,
    /// Share of the asked needles' tokens among the selected (gem only).
    pub recall: Option<f64>,
    pub filter_skipped: Option<String>,
    pub filter_pass_s: f64,
    pub rerun_s: f64,
    pub first_token_s: f64,
    pub total_s: f64,
}

/// Read a JSONL file; a missing file is empty. A torn last line (a run killed mid-write) is
/// ignored; a bad line elsewhere is an error naming the line.
///
/// # Errors
/// Unreadable file or a malformed line before the last.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read '{}'", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() => {
                crate::notice!("ignoring a torn last line in {}", path.display());
            }
            Err(e) => anyhow::bail!(
                "{} line {} is not a record of this tool ({e})",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(out)
}

/// Append one record as a line and flush it to disk.
///
/// # Errors
/// I/O errors.
pub fn append_jsonl<T: Serialize>(path: &Path, rec: &T) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write '{}'", path.display()))?;
    let mut line = serde_json::to_string(rec)?;
    line.push('\n');
    f.write_all(line.as_bytes())?;
    f.sync_data()?;
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
/// Mean of the values, None for none.
#[must_use]
pub fn mean(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// One row of the summary table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SummaryRow {
    pub length: usize,
    /// Cells with both methods (or whichever ran).
    pub cells: usize,
    pub prompt_tokens: Option<f64>,
    pub full_rouge: Option<f64>,
    pub full_exact: Option<f64>,
    pub gem_rouge: Option<f64>,
    pub gem_exact: Option<f64>,
    pub gem_recall: Option<f64>,
    pub full_s: Option<f64>,
    pub gem_s: Option<f64>,
}

/// Means by length (plus an "all" row with length 0).
#[must_use]
pub fn summarize(recs: &[CellRecord]) -> Vec<SummaryRow> {
    let mut by_len: BTreeMap<usize, Vec<&CellRecord>> = BTreeMap::new();
    for r in recs {
        by_len.entry(r.length).or_default().push(r);
    }
    let row = |length: usize, rs: &[&CellRecord]| {
        let of = |m: Method| rs.iter().copied().filter(move |r| r.method == m);
        let mut cells: Vec<&str> = rs
            .iter()
            .map(|r| r.key.split("|m:").next().unwrap_or(""))
            .collect();
        cells.sort_unstable();
        cells.dedup();
        SummaryRow {
            length,
            cells: cells.len(),
            #[allow(clippy::cast_precision_loss)]
            prompt_tokens: mean(rs.iter().map(|r| r.prompt_tokens as f64)),
            full_rouge: mean(of(Method::Full).map(|r| r.score_rouge)),
            full_exact: mean(of(Method::Full).map(|r| r.score_exact)),
            gem_rouge: mean(of(Method::Gem).map(|r| r.score_rouge)),
            gem_exact: mean(of(Method::Gem).map(|r| r.score_exact)),
            gem_recall: mean(of(Method::Gem).filter_map(|r| r.recall)),
            full_s: mean(of(Method::Full).map(|r| r.total_s)),
            gem_s: mean(of(Method::Gem).map(|r| r.total_s)),
        }
    };
    let mut out: Vec<SummaryRow> = by_len.iter().map(|(&l, rs)| row(l, rs)).collect();
    if out.len() > 1 {
        let all: Vec<&CellRecord> = recs.iter().collect();
        out.push(row(0, &all));
    }
    out
}

fn f(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The summary as a Markdown table.
#[must_use]
pub fn summary_markdown(rows: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| length | cells | prompt tokens | full exact | GemFilter exact | full ROUGE-1 | GemFilter ROUGE-1 | GemFilter recall | full s/cell | GemFilter s/cell |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let len = if r.length == 0 {
            "all".to_owned()
        } else {
            r.length.to_string()
        };
        let _ = writeln!(
            s,
            "| {len} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.cells,
            f(r.prompt_tokens, 0),
            f(r.full_exact, 3),
            f(r.gem_exact, 3),
            f(r.full_rouge, 3),
            f(r.gem_rouge, 3),
            f(r.gem_recall, 3),
            f(r.full_s, 1),
            f(r.gem_s, 1),
        );
    }
    s
}

/// Mean of `metric` over the records of `method` per (length, depth): lengths along x, depths
/// along y.
#[must_use]
pub fn grid(
    recs: &[CellRecord],
    method: Method,
    metric: fn(&CellRecord) -> Option<f64>,
) -> (Vec<usize>, Vec<u32>, Vec<Vec<Option<f64>>>) {
    let mut xs: Vec<usize> = recs.iter().map(|r| r.length).collect();
    let mut ys: Vec<u32> = recs.iter().map(|r| r.depth).collect();
    xs.sort_unstable();
    xs.dedup();
    ys.sort_unstable();
    ys.dedup();
    let z = ys
        .iter()
        .map(|&d| {
            xs.iter()
                .map(|&l| {
                    mean(
                        recs.iter()
                            .filter(|r| r.method == method && r.length == l && r.depth == d)
                            .filter_map(metric),
                    )
                })
                .collect()
        })
        .collect();
    (xs, ys, z)
}

/// RULER-style results: one row per task and length with the mean score of each method (RULER's
/// rule, 0-1), GemFilter's mean selection recall, and the number of samples; then the average
/// over tasks per length.
#[must_use]
pub fn task_table(recs: &[CellRecord]) -> String {
    let methods = [Method::Full, Method::Gem, Method::Reference];
    let mut keys: Vec<(usize, String)> = recs
        .iter()
        .filter_map(|r| r.task.map(|t| (r.length, t.to_string())))
        .collect();
    keys.sort();
    keys.dedup();
    let mut s = String::from(
        "| length | task | n | full | GemFilter | reference scoring | GemFilter recall |\n|---|---|---|---|---|---|---|\n",
    );
    let cell = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.2}"));
    let mut lengths: Vec<usize> = keys.iter().map(|k| k.0).collect();
    lengths.dedup();
    for &len in &lengths {
        let mut per_method: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
        for (_, task) in keys.iter().filter(|k| k.0 == len) {
            let of = |m: Method| {
                recs.iter().filter(move |r| {
                    r.length == len
                        && r.method == m
                        && r.task.is_some_and(|t| t.to_string() == *task)
                })
            };
            let n = of(Method::Full).count().max(of(Method::Gem).count());
            let means: Vec<Option<f64>> = methods
                .iter()
                .map(|&m| mean(of(m).map(|r| r.score_exact)))
                .collect();
            for (acc, m) in per_method.iter_mut().zip(&means) {
                acc.extend(m.iter().copied());
            }
            let _ = writeln!(
                s,
                "| {len} | {task} | {n} | {} | {} | {} | {} |",
                cell(means[0]),
                cell(means[1]),
                cell(means[2]),
                cell(mean(of(Method::Gem).filter_map(|r| r.recall)))
            );
        }
        let _ = writeln!(
            s,
            "| {len} | **average** | | **{}** | **{}** | **{}** | |",
            cell(mean(per_method[0].iter().copied())),
            cell(mean(per_method[1].iter().copied())),
            cell(mean(per_method[2].iter().copied()))
        );
    }
    s
}
