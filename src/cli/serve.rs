//! `gemfilter serve`: llama-server's own flags, over the drop-in CLI's model, sampling and
//! `--gem-*` flags, resolved once into [`ServeSettings`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Result};

use super::llama::RunArgs;
use crate::generate::Sampling;
use crate::pipeline::GemSettings;
use crate::server::ServeSettings;
use crate::settings::ModelSettings;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Address to listen on. Anything but this machine (`127.0.0.1`, `::1`, `localhost`) should come
    /// with --api-key.
    #[arg(long = "host", default_value = "127.0.0.1", value_name = "HOST")]
    pub host: String,

    /// Port to listen on (0: any free port, printed at start).
    #[arg(long = "port", default_value_t = 8080, value_name = "PORT")]
    pub port: u16,

    /// API key every endpoint but /health and the page requires (`Authorization: Bearer KEY`).
    #[arg(long = "api-key", value_name = "KEY", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,

    /// Read the API key from this file (its first line).
    #[arg(long = "api-key-file", value_name = "FNAME")]
    pub api_key_file: Option<PathBuf>,

    /// Slots (-np): requests answered at once, each on its own thread; more wait in a queue.
    #[arg(long = "parallel", default_value_t = 1, value_name = "N")]
    pub parallel: usize,

    /// Longest a request may take in seconds, waiting in the queue included (-to).
    #[arg(long = "timeout", default_value_t = 600, value_name = "N")]
    pub timeout: u64,

    /// MiB of documents' filter state kept between requests (least recently used out; 0: none).
    #[arg(long = "cache-ram", default_value_t = 8192, value_name = "MiB")]
    pub cache_ram: u64,

    /// The model's name in /v1/models (default: its file name).
    #[arg(long = "alias", value_name = "NAME")]
    pub alias: Option<String>,

    /// Serve GET /metrics (Prometheus text); off by default, as in llama-server.
    #[arg(long = "metrics")]
    pub metrics: bool,

    /// Serve GET /slots (on by default, as in llama-server).
    #[arg(long = "slots", overrides_with = "no_slots")]
    pub slots: bool,

    /// Answer GET /slots with 501.
    #[arg(long = "no-slots", overrides_with = "slots")]
    pub no_slots: bool,

    /// Serve the page at / (on by default).
    #[arg(long = "webui", visible_alias = "ui", overrides_with = "no_webui")]
    pub webui: bool,

    /// No page at / (404), the API only.
    #[arg(long = "no-webui", visible_alias = "no-ui", overrides_with = "webui")]
    pub no_webui: bool,

    /// Threads for HTTP (-1: the slots plus two, at least the CPUs less one, as llama-server).
    /// Inference runs on the slots' own threads either way.
    #[arg(long = "threads-http", default_value_t = -1, value_name = "N", allow_negative_numbers = true)]
    pub threads_http: i32,

    /// Directory for POST /slots/ID?action=save|restore|erase and for documents' filter state
    /// on disk: every document a slot filters is written there and read back when it is asked
    /// about again after leaving memory (another slot, a restart).
    #[arg(long = "slot-save-path", value_name = "DIR")]
    pub slot_save_path: Option<PathBuf>,
}

/// llama-server's multi-letter single-dash names, as the long names clap knows.
#[must_use]
pub fn long_names(argv: Vec<OsString>) -> Vec<OsString> {
    argv.into_iter()
        .map(|a| match a.to_str() {
            Some("-np") => "--parallel".into(),
            Some("-to") => "--timeout".into(),
            Some("-a") => "--alias".into(),
            _ => a,
        })
        .collect()
}

/// Most slots: each is a thread with its own contexts.
const MAX_SLOTS: usize = 256;

/// Bytes of JSON a request may carry per token of context (text plus escaping), and never less
/// than 2 MiB.
const BODY_BYTES_PER_TOKEN: u64 = 64;
const MIN_BODY_BYTES: u64 = 2 << 20;
const MAX_BODY_BYTES: u64 = 512 << 20;

/// `serve`'s own checks, before the model is read: the prompt comes from each request.
///
/// # Errors
/// A prompt flag, a bad `-n`, `--parallel` or `--timeout`.
pub fn check(a: &ServeArgs) -> Result<()> {
    let r = &a.run;
    let p = &r.prompt;
    ensure!(
        p.prompt.is_none()
            && p.file.is_none()
            && p.system_prompt.is_none()
            && p.system_prompt_file.is_none()
            && p.prompt_cache.is_none()
            && !p.conversation,
        "serve takes the prompt from each request: drop -p, -f, -sys, -sysf, --prompt-cache and -cnv"
    );
    ensure!(
        r.sampling.n_predict >= -1,
        "-n must be -1 (unlimited) or a count"
    );
    ensure!(
        (1..=MAX_SLOTS).contains(&a.parallel),
        "--parallel (-np) must be 1 to {MAX_SLOTS}"
    );
    ensure!(a.timeout >= 1, "--timeout must be at least 1 second");
    let unapplied = not_applied(a);
    if !unapplied.is_empty() {
        crate::notice!(
            "serve does not apply {} (chat messages go through llama.cpp's built-in template formatter; each answer is its response)",
            unapplied.join(", ")
        );
    }
    ensure!(
        a.threads_http == -1 || (1..=MAX_HTTP_THREADS).contains(&a.threads_http),
        "--threads-http must be -1 (automatic) or 1 to {MAX_HTTP_THREADS}"
    );
    Ok(())
}

/// The CLI's options given here that serve takes but does not apply: said once at start, never
/// silently dropped.
fn not_applied(a: &ServeArgs) -> Vec<&'static str> {
    let (p, g) = (&a.run.prompt, &a.run.gem);
    [
        (p.jinja, "--jinja"),
        (p.reasoning.is_some(), "--reasoning"),
        (p.chat_template_kwargs.is_some(), "--chat-template-kwargs"),
        (p.reasoning_format.is_some(), "--reasoning-format"),
        (p.reasoning_effort.is_some(), "--reasoning-effort"),
        (p.reasoning_budget.is_some(), "--reasoning-budget"),
        (
            p.reasoning_budget_message.is_some(),
            "--reasoning-budget-message",
        ),
        (
            p.reasoning_preserve || p.no_reasoning_preserve,
            "--reasoning-preserve",
        ),
        (p.output_file.is_some(), "-o"),
        (g.gem_show, "--gem-show"),
        (g.json, "--json"),
    ]
    .into_iter()
    .filter_map(|(given, name)| given.then_some(name))
    .collect()
}

/// Most HTTP threads.
const MAX_HTTP_THREADS: i32 = 1024;

/// `--slot-save-path`: an existing directory (made if missing), as an absolute path with links
/// resolved, so that nothing under it can name a place outside.
///
/// # Errors
/// The path is not a directory and cannot be made one.
pub fn save_dir(dir: &std::path::Path) -> Result<PathBuf> {
    let shown = crate::sanitize::quote(&dir.display().to_string());
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("--slot-save-path {shown}: cannot create it ({e})"))?;
    }
    ensure!(dir.is_dir(), "--slot-save-path {shown} is not a directory");
    dir.canonicalize()
        .map_err(|e| anyhow::anyhow!("--slot-save-path {shown}: {e}"))
}

/// `serve`'s settings from its flags and the pieces `resolve` made of the shared ones.
///
/// # Errors
/// `--gem-draft` (the document cache keeps the target's own filter state), an empty API key, a
/// `--slot-save-path` that is not a directory.
pub fn settings(
    a: &ServeArgs,
    model: ModelSettings,
    sampling: Sampling,
    gem: Option<GemSettings>,
    api_key: Option<String>,
) -> Result<ServeSettings> {
    ensure!(
        gem.as_ref().is_none_or(|g| g.draft.is_none()),
        "--gem-draft is not available in serve (the document cache keeps the target's own filter state)"
    );
    if api_key.as_deref().is_some_and(str::is_empty) {
        bail!("--api-key is empty");
    }
    let r = &a.run;
    let body = (u64::from(model.ctx_limit()).saturating_mul(BODY_BYTES_PER_TOKEN))
        .clamp(MIN_BODY_BYTES, MAX_BODY_BYTES);
    Ok(ServeSettings {
        gem,
        protect: r.gem.gem_protect,
        sampling,
        n_predict: r.sampling.n_predict,
        chat_template: r.prompt.chat_template.clone(),
        host: a.host.clone(),
        port: a.port,
        api_key,
        parallel: a.parallel,
        timeout: Duration::from_secs(a.timeout),
        cache_bytes: a.cache_ram.saturating_mul(1 << 20),
        body_limit: usize::try_from(body).unwrap_or(usize::MAX),
        alias: a.alias.clone(),
        metrics: a.metrics,
        slots: !a.no_slots,
        webui: !a.no_webui,
        threads_http: usize::try_from(a.threads_http).ok().unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            (a.parallel + 2).max(cpus.saturating_sub(1))
        }),
        slot_save_path: a.slot_save_path.as_deref().map(save_dir).transpose()?,
        model,
    })
}

/// The API key: `--api-key`, else the first line of `--api-key-file` (read by `read`).
///
/// # Errors
/// An unreadable key file or an empty first line.
pub fn api_key(
    a: &ServeArgs,
    read: impl Fn(&std::path::Path) -> Result<String>,
) -> Result<Option<String>> {
    let f = match (&a.api_key, &a.api_key_file) {
        (Some(k), _) => return Ok(Some(k.clone())),
        (None, Some(f)) => f,
        (None, None) => return Ok(None),
    };
    let shown = crate::sanitize::quote(&f.display().to_string());
    let text = read(f).map_err(|e| anyhow::anyhow!("--api-key-file {shown}: {e:#}"))?;
    let key = text.lines().next().unwrap_or("").trim().to_owned();
    ensure!(
        !key.is_empty(),
        "--api-key-file {shown}: its first line is empty"
    );
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_server_short_names_become_long_ones() {
        let argv: Vec<OsString> = ["gemfilter", "serve", "-np", "4", "-to", "9", "-n", "5"]
            .iter()
            .map(Into::into)
            .collect();
        let out = long_names(argv);
        assert_eq!(out[2], "--parallel");
        assert_eq!(out[4], "--timeout");
        assert_eq!(out[6], "-n");
    }
}
