//! `gemfilter serve`: llama-server's HTTP API (OpenAI's chat and text completions, llama-server's
//! `/completion`, `/tokenize`, `/detokenize`, `/props`, `/slots`, `/metrics`) with GemFilter on
//! every long prompt. The models load once and stay resident; `-np N` worker threads answer
//! (inference never runs on the async runtime), requests beyond them wait in a bounded queue,
//! and each worker keeps documents' filter state between requests (`doc_cache`).

pub mod doc_cache;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod slot_files;
pub mod worker;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::engine::Engine;
use crate::generate::Sampling;
use crate::notice;
use crate::pipeline::GemSettings;
use crate::prompt::{self, Protect, Template};
use crate::settings::ModelSettings;
use doc_cache::DocCache;
use metrics::{Metrics, Slot};
use openai::Defaults;
use worker::{Engines, Task};

/// Everything `serve` needs, resolved from the flags.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub model: ModelSettings,
    /// None with `--gem off` (every request answered from the whole prompt).
    pub gem: Option<GemSettings>,
    pub protect: Protect,
    /// Sampling defaults; each request may override them.
    pub sampling: Sampling,
    pub n_predict: i32,
    pub chat_template: Option<String>,
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// Worker threads (slots).
    pub parallel: usize,
    /// Longest a request may take, queueing included.
    pub timeout: Duration,
    /// Byte budget of kept document filter state, over all slots.
    pub cache_bytes: u64,
    pub body_limit: usize,
    /// The name `/v1/models` gives the model.
    pub alias: Option<String>,
    /// Endpoints llama-server also switches: `/metrics` (off by default), `/slots`, the page.
    pub metrics: bool,
    pub slots: bool,
    pub webui: bool,
    /// Threads of the HTTP runtime.
    pub threads_http: usize,
    /// `--slot-save-path`, absolute with links resolved.
    pub slot_save_path: Option<std::path::PathBuf>,
}

/// State every handler and worker reads.
pub struct Shared {
    pub settings: ServeSettings,
    pub defaults: Defaults,
    pub model_id: String,
    pub n_vocab: i32,
    pub chat_template: Option<String>,
    pub template: Template,
    /// The full model, for tokenizing (its vocabulary is read-only).
    pub engine: &'static Engine,
    pub queue: SyncSender<Task>,
    pub metrics: Metrics,
    pub slots: Vec<Slot>,
    pub next_id: AtomicU64,
    /// Documents' filter state, shared by the slots (`--cache-ram`).
    pub docs: Mutex<DocCache<'static>>,
}

/// Requests that may wait per slot before the server answers 503.
const QUEUE_PER_SLOT: usize = 64;

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Load the models (they stay for the life of the process) and return (filter, full).
fn load(s: &ServeSettings) -> Result<(&'static Engine, &'static Engine)> {
    let (filter, full) = match &s.gem {
        Some(g) => crate::conversation::load_models(&s.model, g)?,
        None => (None, Some(Engine::load(&s.model.path, &s.model.load)?)),
    };
    let full = full.context(
        "the full model does not fit beside the filter model; serve needs both resident (try --gem off or a smaller -c)",
    )?;
    let full: &'static Engine = Box::leak(Box::new(full));
    let filter: &'static Engine = match filter {
        Some(f) => Box::leak(Box::new(f)),
        None => full,
    };
    Ok((filter, full))
}

/// Serve until Ctrl-C or SIGTERM.
///
/// # Errors
/// The address cannot be bound, a model cannot be loaded, or the runtime fails to start.
pub fn run(s: ServeSettings) -> Result<()> {
    let addr = format!("{}:{}", s.host, s.port);
    let listener = TcpListener::bind(&addr)
        .with_context(|| format!("cannot listen on {}", crate::sanitize::quote(&addr)))?;
    let local: SocketAddr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    if !is_loopback(&s.host) && s.api_key.is_none() {
        notice!(
            "warning: listening on {local} (not this machine only) without --api-key: anyone who can reach it can use the model"
        );
    }
    let (filter, full) = load(&s)?;
    let template = prompt::choose_template(&full.model, false, s.chat_template.as_deref())?;
    let chat_template = match &template {
        Template::Chat(name) => name.clone().or_else(|| {
            full.model
                .chat_template(None)
                .ok()
                .and_then(|t| t.to_string().ok())
        }),
        Template::Raw => None,
    };
    let stem = s.model.name();
    let file = s
        .model
        .path
        .file_name()
        .map_or_else(|| stem.clone(), |f| f.to_string_lossy().into_owned());
    let model_id = s.alias.clone().unwrap_or_else(|| file.clone());
    let mut names = vec![
        model_id.clone(),
        file,
        stem,
        s.model.path.display().to_string(),
    ];
    names.dedup();
    let n_vocab = full.model.n_vocab();
    let (queue, rx) = std::sync::mpsc::sync_channel::<Task>(QUEUE_PER_SLOT * s.parallel);
    let parallel = s.parallel;
    let shared = Arc::new(Shared {
        defaults: Defaults {
            sampling: s.sampling.clone(),
            n_predict: s.n_predict,
            model_names: names,
            n_vocab,
        },
        model_id,
        n_vocab,
        chat_template,
        template,
        engine: full,
        queue,
        metrics: Metrics::default(),
        slots: (0..parallel).map(|_| Slot::default()).collect(),
        next_id: AtomicU64::new(1),
        docs: Mutex::new(DocCache::new(filter, full, s.cache_bytes)),
        settings: s,
    });
    let rx = Arc::new(Mutex::new(rx));
    for slot in 0..parallel {
        let (shared, rx) = (shared.clone(), rx.clone());
        std::thread::Builder::new()
            .name(format!("slot-{slot}"))
            .spawn(move || worker::run(slot, &shared, Engines { filter, full }, &rx))
            .context("cannot start a worker thread")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shared.settings.threads_http)
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let app = routes::router(shared.clone());
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        notice!(
            "serving {} on http://{local} with {parallel} slot{} ({})",
            shared.model_id,
            if parallel == 1 { "" } else { "s" },
            if shared.settings.webui {
                "the page is at /, the API at /v1"
            } else {
                "the API at /v1"
            }
        );
        accept(listener, app, shared.settings.timeout).await;
        Ok::<(), anyhow::Error>(())
    })?;
    notice!("stopped");
    Ok(())
}

/// Accept connections until Ctrl-C or SIGTERM. A connection that is idle, or sends its request
/// head slower than `read_timeout` allows, is closed (hyper's header read timeout, which also
/// runs between requests on a kept-alive connection); a stalled body is the handlers' timeout.
async fn accept(listener: tokio::net::TcpListener, app: axum::Router, read_timeout: Duration) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => return,
            r = listener.accept() => r,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, or a connection reset before it was taken: wait a moment
            // rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
