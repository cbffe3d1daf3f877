//! The HTTP side: axum handlers that check the request, queue it for a worker and relay what
//! the worker sends (one JSON body, or server-sent events ending with `data: [DONE]`). They never
//! run inference; tokenizing runs on the blocking pool.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use llama_cpp_2::token::LlamaToken;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout_at;

use super::error::ApiError;
use super::metrics::slots_json;
use super::openai::{self, Finished, Kind, Meta};
use super::slot_files;
use super::worker::{Event, Task};
use super::Shared;

type St = State<Arc<Shared>>;

/// The router with every endpoint and the API key check.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new();
    if shared.settings.webui {
        r = r.route("/", get(page));
    }
    r.route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/completion", post(native))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/props", get(props))
        .route("/slots", get(slots))
        .route("/slots/{id}", post(slot_action))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

/// Paths open without the API key: the liveness probe and the page (static; it asks for the
/// key itself and sends it with every call).
fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/v1/health" | "/")
}

/// Equal bytes, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn key_of(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        return Some(v.strip_prefix(b"Bearer ").unwrap_or(v));
    }
    headers
        .get("x-api-key")
        .map(axum::http::HeaderValue::as_bytes)
}

async fn auth(State(st): St, req: HttpRequest, next: Next) -> Response {
    if let Some(key) = &st.settings.api_key {
        if !is_public(req.uri().path())
            && !key_of(req.headers()).is_some_and(|k| same(k, key.as_bytes()))
        {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn not_found(req: HttpRequest) -> ApiError {
    ApiError::not_found(format!("no endpoint {}", req.uri().path()))
}

async fn not_allowed(req: HttpRequest) -> ApiError {
    ApiError::not_allowed(format!(
        "{} is not served on {}",
        req.method(),
        req.uri().path()
    ))
}

async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("page.html"),
    )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn models(State(st): St) -> Json<Value> {
    let m = &st.settings.model;
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.model_id, "object": "model", "created": now(), "owned_by": "gemfilter",
            "meta": {
                "n_ctx_train": m.meta.context_length,
                "n_vocab": st.n_vocab,
                "architecture": m.meta.architecture,
            },
        }],
    }))
}

async fn props(State(st): St) -> Json<Value> {
    let s = &st.settings;
    let p = &st.defaults.sampling;
    Json(json!({
        "default_generation_settings": {
            "n_ctx": s.model.ctx_limit(),
            "params": {
                "n_predict": st.defaults.n_predict, "temperature": p.temp, "top_k": p.top_k,
                "top_p": p.top_p, "min_p": p.min_p, "seed": p.seed,
            },
        },
        "total_slots": s.parallel,
        "model_path": s.model.path.display().to_string(),
        "model_alias": st.model_id,
        "chat_template": st.chat_template,
        "build_info": format!("gemfilter {}", env!("CARGO_PKG_VERSION")),
        "gem": s.gem.as_ref().map(|g| json!({
            "layer": g.layer, "top_k": g.top_k, "scoring": g.spec.to_string(),
            "min_tokens": g.min_tokens,
        })),
    }))
}

async fn slots(State(st): St) -> Result<Json<Value>, ApiError> {
    if !st.settings.slots {
        return Err(ApiError::not_supported(
            "This server does not support slots endpoint. Start it with `--slots`",
        ));
    }
    Ok(Json(slots_json(&st.slots, st.settings.model.ctx_limit())))
}

/// llama-server's `POST /slots/{id}?action=save|restore|erase` (`{"filename": …}` for the first
/// two).
async fn slot_action(
    State(st): St,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Some(dir) = st.settings.slot_save_path.clone() else {
        return Err(ApiError::not_supported(
            "This server does not support slots action. Start it with `--slot-save-path`",
        ));
    };
    let slot = id
        .parse::<usize>()
        .ok()
        .filter(|&i| i < st.slots.len())
        .ok_or_else(|| {
            ApiError::bad(format!(
                "Invalid slot ID {id:?} (0 to {})",
                st.slots.len() - 1
            ))
        })?;
    let action = q.get("action").map_or("", String::as_str);
    let state = &st.slots[slot];
    if action == "erase" {
        let n = state.doc_tokens.load(Relaxed);
        state.erase.store(true, Relaxed);
        return Ok(Json(json!({"id_slot": slot, "n_erased": n})));
    }
    if !matches!(action, "save" | "restore") {
        return Err(ApiError::bad(format!(
            "Invalid action {action:?} (save, restore or erase)"
        )));
    }
    let o = json_body(&read_body(&st, body).await?)?;
    let Some(Value::String(name)) = o.get("filename") else {
        return Err(ApiError::bad("\"filename\" must be a string"));
    };
    let (name, save) = (name.clone(), action == "save");
    let latest = state.latest.lock().ok().and_then(|l| l.clone());
    tokio::task::spawn_blocking(move || {
        if save {
            slot_files::save(&dir, slot, latest.as_deref(), &name)
        } else {
            slot_files::restore(&dir, slot, &name)
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("the slot action failed: {e}")))?
    .map(Json)
}

async fn metrics(State(st): St) -> Response {
    if !st.settings.metrics {
        return ApiError::not_supported(
            "This server does not support metrics endpoint. Start it with `--metrics`",
        )
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.prometheus(&st.slots),
    )
        .into_response()
}

/// The request body, within the size limit and `--timeout`: a client that stalls mid-body
/// gets 408 and its connection is closed.
async fn read_body(st: &Shared, body: Body) -> Result<Bytes, ApiError> {
    let limit = st.settings.body_limit;
    let read = axum::body::to_bytes(body, limit);
    match tokio::time::timeout(st.settings.timeout, read).await {
        Err(_) => Err(ApiError::timeout(st.settings.timeout.as_secs())),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) if too_large(&e) => Err(ApiError::too_large(format!(
            "the request body is larger than {limit} bytes"
        ))),
        Ok(Err(e)) => Err(ApiError::bad(format!("cannot read the request body: {e}"))),
    }
}

/// Whether reading a body failed at the size limit.
fn too_large(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

fn json_body(b: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice(b) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::bad("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

async fn tokenize(State(st): St, body: Body) -> Result<Json<Value>, ApiError> {
    let o = json_body(&read_body(&st, body).await?)?;
    let Some(Value::String(text)) = o.get("content") else {
        return Err(ApiError::bad("\"content\" must be a string"));
    };
    let add_special = o
        .get("add_special")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let text = text.clone();
    let engine = st.engine;
    let tokens = tokio::task::spawn_blocking(move || {
        engine
            .model
            .vocab()
            .tokenize(text.as_bytes(), add_special, true)
            .into_iter()
            .map(|t| t.0)
            .collect::<Vec<i32>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))?;
    Ok(Json(json!({"tokens": tokens})))
}

async fn detokenize(State(st): St, body: Body) -> Result<Json<Value>, ApiError> {
    let o = json_body(&read_body(&st, body).await?)?;
    let Some(Value::Array(ids)) = o.get("tokens") else {
        return Err(ApiError::bad("\"tokens\" must be a list of token ids"));
    };
    let tokens = ids
        .iter()
        .map(|v| {
            v.as_i64()
                .and_then(|t| i32::try_from(t).ok())
                .filter(|t| (0..st.n_vocab).contains(t))
                .map(LlamaToken::new)
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "\"tokens\": {v} is not a token id of this model (0..{})",
                        st.n_vocab
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let engine = st.engine;
    let text = tokio::task::spawn_blocking(move || {
        String::from_utf8_lossy(&engine.model.vocab().detokenize(&tokens, false, false))
            .into_owned()
    })
    .await
    .map_err(|e| ApiError::internal(format!("detokenizing failed: {e}")))?;
    Ok(Json(json!({"content": text})))
}

async fn chat(State(st): St, body: Body) -> Response {
    complete(st, Kind::Chat, body).await
}

async fn completions(State(st): St, body: Body) -> Response {
    complete(st, Kind::Completion, body).await
}

async fn native(State(st): St, body: Body) -> Response {
    complete(st, Kind::Native, body).await
}

fn failed(st: &Shared, e: ApiError) -> Response {
    st.metrics.errors.fetch_add(1, Relaxed);
    e.into_response()
}

/// Check, queue, then answer in one body or as a stream.
async fn complete(st: Arc<Shared>, kind: Kind, body: Body) -> Response {
    let req = match read_body(&st, body)
        .await
        .and_then(|b| openai::parse(kind, &b, &st.defaults))
    {
        Ok(r) => r,
        Err(e) => return failed(&st, e),
    };
    let deadline = tokio::time::Instant::now() + st.settings.timeout;
    let (stream, include_usage) = (req.stream, req.include_usage);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let id = st.next_id.fetch_add(1, Relaxed);
    let task = Task {
        id,
        req,
        events: tx,
        queued: Instant::now(),
    };
    st.metrics.deferred.fetch_add(1, Relaxed);
    if let Err(e) = st.queue.try_send(task) {
        st.metrics.deferred.fetch_sub(1, Relaxed);
        return failed(
            &st,
            ApiError::unavailable(match e {
                TrySendError::Full(_) => "every slot is busy and the queue is full; retry later",
                TrySendError::Disconnected(_) => "the server is stopping",
            }),
        );
    }
    st.metrics.requests.fetch_add(1, Relaxed);
    let secs = st.settings.timeout.as_secs();
    // The first event says whether the prompt was accepted: an error is a plain error response.
    match timeout_at(deadline, rx.recv()).await {
        Ok(Some(Event::Started | Event::Text(_))) => {}
        Ok(Some(Event::Failed(e))) => return e.into_response(),
        Ok(Some(Event::Done(f))) if !stream => return done(kind, &meta(&st, kind, id), &f),
        Ok(_) => {
            return failed(
                &st,
                ApiError::internal("the worker ended without an answer"),
            )
        }
        Err(_) => return failed(&st, ApiError::timeout(secs)),
    }
    let m = meta(&st, kind, id);
    if stream {
        return sse(kind, m, rx, deadline, include_usage, secs);
    }
    loop {
        match timeout_at(deadline, rx.recv()).await {
            Ok(Some(Event::Done(f))) => return done(kind, &m, &f),
            Ok(Some(Event::Failed(e))) => return e.into_response(),
            Ok(Some(_)) => {}
            Ok(None) => {
                return failed(
                    &st,
                    ApiError::internal("the worker ended without an answer"),
                )
            }
            Err(_) => return failed(&st, ApiError::timeout(secs)),
        }
    }
}

fn meta(st: &Shared, kind: Kind, id: u64) -> Meta {
    Meta {
        id: format!(
            "{}-{id}",
            if kind == Kind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            }
        ),
        created: now(),
        model: st.model_id.clone(),
    }
}

fn done(kind: Kind, m: &Meta, f: &Finished) -> Response {
    Json(openai::response(kind, m, f)).into_response()
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

struct Stream {
    rx: UnboundedReceiver<Event>,
    first: bool,
    over: bool,
}

/// Server-sent events: one chunk per piece of text, the last one with the finish reason,
/// timings and what GemFilter kept, then `data: [DONE]` (OpenAI endpoints). An error after the
/// stream started is one `data: {"error": …}` event.
fn sse(
    kind: Kind,
    m: Meta,
    rx: UnboundedReceiver<Event>,
    deadline: tokio::time::Instant,
    include_usage: bool,
    secs: u64,
) -> Response {
    let state = Stream {
        rx,
        first: true,
        over: false,
    };
    let chunks = futures_util::stream::unfold(state, move |mut s| {
        let m = m.clone();
        async move {
            if s.over {
                return None;
            }
            let out = match timeout_at(deadline, s.rx.recv()).await {
                Ok(Some(Event::Started)) => Bytes::new(),
                Ok(Some(Event::Text(t))) => {
                    let b = event(&openai::chunk(kind, &m, &t, s.first, None));
                    s.first = false;
                    b
                }
                Ok(Some(Event::Done(f))) => {
                    s.over = true;
                    let mut text = String::from_utf8_lossy(&event(&openai::chunk(
                        kind,
                        &m,
                        "",
                        s.first,
                        Some(&f),
                    )))
                    .into_owned();
                    if include_usage && kind != Kind::Native {
                        let _ = write!(text, "data: {}\n\n", openai::usage_chunk(kind, &m, &f));
                    }
                    if kind != Kind::Native {
                        text.push_str("data: [DONE]\n\n");
                    }
                    Bytes::from(text)
                }
                Ok(Some(Event::Failed(e))) => {
                    s.over = true;
                    event(&e.body())
                }
                Ok(None) => {
                    s.over = true;
                    event(&ApiError::internal("the worker ended without an answer").body())
                }
                Err(_) => {
                    s.over = true;
                    event(&ApiError::timeout(secs).body())
                }
            };
            Some((Ok::<_, Infallible>(out), s))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|_| ApiError::internal("cannot build the stream").into_response())
}
