//! GemFilter with a wider average-pooling kernel than the reference's 5, for `niah --gem-pool`.
//!
//! The runtime's selection (`pipeline::answer`) always pools with kernel 5. The `--layers`
//! curves show that a wider kernel keeps whole needle sentences on the small models, so this
//! path measures what answers would be with it: the same filter pass (prefix model, early exit),
//! the same scoring, pooling with kernel `pool`, the same top-k, then the selected tokens are
//! answered through `pipeline::answer` as a fresh prompt, exactly as the re-run step does.
//! Adopting it in the runtime needs a `pool` field in `GemSettings` passed to `avg_pool`.

use std::time::Instant;

use anyhow::Result;
use llama_cpp_2::token::LlamaToken;

use crate::capture::CaptureSpec;
use crate::engine::{prefix, Engine};
use crate::generate::TokenSink;
use crate::pipeline::{answer, GemSettings, Job, Models, Outcome, Selected};
use crate::select;

/// Answer `job` (whose `gem` is ignored) with GemFilter settings `gem` and pooling kernel `pool`.
///
/// # Errors
/// Prefix writing, model loading, filter pass, scoring or generation failures.
pub fn answer_pooled(
    models: &mut Models,
    job: &Job<'_>,
    gem: &GemSettings,
    pool: usize,
    sink: &mut dyn TokenSink,
) -> Result<Outcome> {
    anyhow::ensure!(pool % 2 == 1, "pooling kernel {pool} must be odd");
    let n = job.tokens.len();
    let n_protected = job.protected.iter().filter(|&&p| p).count();
    if n <= gem.top_k.max(n_protected) {
        let full = Job {
            gem: None,
            ..job.clone()
        };
        let mut o = answer(models, &full, sink)?;
        o.skipped = Some(format!(
            "prompt has {n} tokens, no more than the {} that would be kept",
            gem.top_k.max(n_protected)
        ));
        return Ok(o);
    }
    let t_start = Instant::now();
    models.release_full();
    let path = if gem.prefix && gem.layer + 1 < models.n_layer {
        prefix::prefix_model(&models.path, gem.layer + 1, models.n_layer)?
    } else {
        models.path.clone()
    };
    let t_load = Instant::now();
    let engine = Engine::load(&path, &models.opts)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let spec = CaptureSpec {
        layers: vec![gem.layer],
        n_tokens: n,
        q_window: gem.scoring.queries_needed().clamp(1, n),
        stop_after_last: !gem.no_early_exit,
        trace_layers: false,
    };
    let pass = engine.filter_pass(job.tokens, spec, &job.ctx, job.progress)?;
    drop(engine);
    let t_sel = Instant::now();
    let lc = &pass.capture.layers[0];
    let raw = select::scores(lc.q_view(), lc.k_view(), gem.scoring)?;
    let pooled = select::avg_pool(raw.view(), pool);
    let indices = select::select_top_k(pooled.view(), gem.top_k, job.protected);
    let selection_s = t_sel.elapsed().as_secs_f64();
    let kept: Vec<LlamaToken> = indices.iter().map(|&i| job.tokens[i]).collect();
    let rerun = Job {
        tokens: &kept,
        protected: &[],
        gem: None,
        ..job.clone()
    };
    let mut o = answer(models, &rerun, sink)?;
    let before = t_sel.duration_since(t_start).as_secs_f64() + selection_s;
    o.timings.filter_pass_s = pass.secs;
    o.timings.selection_s = selection_s;
    o.timings.first_token_s += before;
    o.timings.total_s += before;
    o.load_secs += load_s;
    o.selected = Some(Selected {
        indices,
        filter_secs: pass.secs,
        selection_secs: selection_s,
        device_mem: pass.device_mem,
        max_layer_reached: None,
        early_exits: pass.capture.early_exits,
    });
    Ok(o)
}
