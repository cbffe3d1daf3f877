//! Request bodies in, response bodies out: OpenAI's chat and text completions and llama-server's
//! own `/completion`, read leniently (unknown fields are ignored, as OpenAI and llama-server do)
//! but checked strictly (a wrong type or range is a 400 naming the field).
//!
//! Where the document is: GemFilter selects from a document and always keeps the question. In a
//! chat, the document is the first user message, less its last paragraph (text after the last
//! blank line), which is the question; a message given as several text parts has the last part
//! as the question and the rest as the document. A raw prompt is split the same way. Later
//! turns of a chat are kept whole, as the conversation mode keeps them.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use crate::generate::Sampling;
use crate::prompt::{Exchange, PromptInput};

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completion,
    /// llama-server's `POST /completion`.
    Native,
}

/// GemFilter options of one request (the `"gem"` extension field).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GemRequest {
    /// `"off": true` answers from the whole prompt.
    pub off: Option<bool>,
    pub top_k: Option<usize>,
    pub min_tokens: Option<usize>,
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    pub input: PromptInput,
    /// Through the model's chat template (chat), or raw text (completions).
    pub templated: bool,
    pub sampling: Sampling,
    /// -1: until end of generation or a full context.
    pub n_predict: i32,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    pub gem: GemRequest,
}

/// What a request falls back to, and what it is checked against.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub sampling: Sampling,
    pub n_predict: i32,
    /// Names the `model` field may take.
    pub model_names: Vec<String>,
    pub n_vocab: i32,
}

/// Most stop strings one request may give.
const MAX_STOPS: usize = 16;

/// Parse and check one request body.
///
/// # Errors
/// A 400 naming the problem.
pub fn parse(kind: Kind, body: &[u8], d: &Defaults) -> Result<Request, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(o) = v else {
        return Err(ApiError::bad("the request body must be a JSON object"));
    };
    if kind != Kind::Native {
        if let Some(m) = o.get("model") {
            let m = m
                .as_str()
                .ok_or_else(|| ApiError::bad("\"model\" must be a string"))?;
            if !d.model_names.iter().any(|n| n == m) {
                return Err(ApiError::bad(format!(
                    "model {m:?} is not served here; GET /v1/models lists {:?}",
                    d.model_names.first().map_or("", String::as_str)
                )));
            }
        }
    }
    if let Some(n) = o.get("n") {
        if n.as_u64() != Some(1) {
            return Err(ApiError::bad("\"n\": only one choice per request (n = 1)"));
        }
    }
    let grammar = grammar(&o, body)?;
    let (input, templated) = match kind {
        Kind::Chat => (chat_input(&o)?, true),
        Kind::Completion | Kind::Native => (raw_input(&o)?, false),
    };
    let mut n_predict = d.n_predict;
    for f in ["n_predict", "max_tokens", "max_completion_tokens"] {
        if let Some(v) = o.get(f).filter(|v| !v.is_null()) {
            n_predict = v
                .as_i64()
                .filter(|&n| n >= -1)
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| ApiError::bad(format!("\"{f}\" must be an integer, -1 or more")))?;
        }
    }
    let stream = opt_bool(&o, "stream")?.unwrap_or(false);
    let include_usage = match o.get("stream_options") {
        Some(Value::Object(so)) => opt_bool(so, "include_usage")?.unwrap_or(false),
        _ => false,
    };
    let mut sampling = sampling(&o, d)?;
    if grammar.is_some() {
        sampling.grammar = grammar;
    }
    Ok(Request {
        kind,
        input,
        templated,
        sampling,
        n_predict,
        stop: stops(&o)?,
        stream,
        include_usage,
        gem: gem(&o)?,
    })
}

/// Where a request's JSON schema sits, kept as its text: llama.cpp's converter follows the
/// properties in the order written (as llama-server's ordered JSON does), which a parsed map
/// would lose.
#[derive(Deserialize, Default)]
struct RawSchemas<'a> {
    #[serde(borrow, default)]
    json_schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_format: Option<RawFormat<'a>>,
}

#[derive(Deserialize, Default)]
struct RawFormat<'a> {
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    json_schema: Option<RawWrapper<'a>>,
}

#[derive(Deserialize, Default)]
struct RawWrapper<'a> {
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
}

/// The grammar the answer must follow, as llama-server reads it: `response_format`
/// (`json_object`, with an optional `schema`, or `json_schema` with `json_schema.schema`), a
/// `json_schema` field, or a GBNF `grammar`. A schema becomes a grammar through llama.cpp's own
/// converter (as `-j` does); an empty one means any object, as in llama-server.
fn grammar(o: &Map<String, Value>, body: &[u8]) -> Result<Option<String>, ApiError> {
    let raw: RawSchemas<'_> = serde_json::from_slice(body).unwrap_or_default();
    let mut schema = o
        .get("json_schema")
        .filter(|v| !v.is_null())
        .map(|v| (v, raw.json_schema));
    let gbnf = match o.get("grammar") {
        None | Some(Value::Null) => None,
        Some(Value::String(g)) => Some(g.clone()).filter(|g| !g.trim().is_empty()),
        Some(_) => return Err(ApiError::bad("\"grammar\" must be a string (GBNF)")),
    };
    let empty = json!({});
    if let Some(rf) = o.get("response_format").filter(|v| !v.is_null()) {
        let Value::Object(rf) = rf else {
            return Err(ApiError::bad("\"response_format\" must be an object"));
        };
        let rraw = raw.response_format.unwrap_or_default();
        match rf.get("type").and_then(Value::as_str).unwrap_or("") {
            "" | "text" => {}
            "json_object" => {
                if rf.contains_key("schema") || schema.is_none() {
                    schema = Some(rf.get("schema").map_or((&empty, None), |v| (v, rraw.schema)));
                }
            }
            "json_schema" => {
                let inner = rf.get("json_schema").and_then(|w| w.get("schema"));
                let inner_raw = rraw.json_schema.and_then(|w| w.schema);
                schema = Some(inner.map_or((&empty, None), |v| (v, inner_raw)));
            }
            t => {
                return Err(ApiError::bad(format!(
                    "\"response_format\" type must be \"text\", \"json_object\" or \"json_schema\", got {t:?}"
                )))
            }
        }
    }
    let Some((schema, text)) = schema else {
        return Ok(gbnf);
    };
    if gbnf.is_some() {
        return Err(ApiError::bad(
            "a JSON schema (\"json_schema\" or \"response_format\") and \"grammar\" cannot both be given",
        ));
    }
    let text = match schema {
        Value::Object(m) if m.is_empty() => r#"{"type":"object"}"#.to_owned(),
        Value::Object(_) => text.map_or_else(|| schema.to_string(), |r| r.get().to_owned()),
        _ => return Err(ApiError::bad("the JSON schema must be an object")),
    };
    llama_cpp_2::json_schema_to_grammar(&text)
        .map(Some)
        .map_err(|e| {
            ApiError::bad(format!(
                "the JSON schema is not one llama.cpp can convert to a grammar ({e})"
            ))
        })
}

fn opt_bool(o: &Map<String, Value>, f: &str) -> Result<Option<bool>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad(format!("\"{f}\" must be true or false"))),
    }
}

/// A number field within `lo..=hi`, if given (sampling parameters are f32 in llama.cpp).
#[allow(clippy::cast_possible_truncation)]
fn opt_num(o: &Map<String, Value>, f: &str, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && (lo..=hi).contains(x))
            .map(|x| Some(x as f32))
            .ok_or_else(|| ApiError::bad(format!("\"{f}\" must be a number from {lo} to {hi}"))),
    }
}

#[allow(clippy::cast_possible_truncation)] // biases are f32 in llama.cpp
fn sampling(o: &Map<String, Value>, d: &Defaults) -> Result<Sampling, ApiError> {
    let mut s = d.sampling.clone();
    if let Some(t) = opt_num(o, "temperature", 0.0, 100.0)? {
        s.temp = t;
    }
    if let Some(p) = opt_num(o, "top_p", 0.0, 1.0)? {
        s.top_p = p;
    }
    if let Some(p) = opt_num(o, "min_p", 0.0, 1.0)? {
        s.min_p = p;
    }
    if let Some(p) = opt_num(o, "presence_penalty", -2.0, 2.0)? {
        s.presence_penalty = p;
    }
    if let Some(p) = opt_num(o, "frequency_penalty", -2.0, 2.0)? {
        s.frequency_penalty = p;
    }
    if let Some(p) = opt_num(o, "repeat_penalty", 0.0, 100.0)? {
        s.repeat_penalty = p;
    }
    if let Some(k) = o.get("top_k").filter(|v| !v.is_null()) {
        s.top_k = k
            .as_i64()
            .and_then(|k| i32::try_from(k).ok())
            .ok_or_else(|| ApiError::bad("\"top_k\" must be an integer"))?;
    }
    if let Some(seed) = o.get("seed").filter(|v| !v.is_null()) {
        let n = seed
            .as_i64()
            .ok_or_else(|| ApiError::bad("\"seed\" must be an integer"))?;
        // llama-server keeps the low 32 bits; -1 is its "random".
        s.seed = u32::try_from(n & 0xffff_ffff).unwrap_or(u32::MAX);
    }
    if let Some(b) = o.get("logit_bias").filter(|v| !v.is_null()) {
        let Value::Object(m) = b else {
            return Err(ApiError::bad(
                "\"logit_bias\" must be an object of token id → bias",
            ));
        };
        for (k, v) in m {
            let id = k
                .parse::<i32>()
                .ok()
                .filter(|&t| (0..d.n_vocab).contains(&t))
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "\"logit_bias\": {k:?} is not a token id of this model (0..{})",
                        d.n_vocab
                    ))
                })?;
            let bias = v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| ApiError::bad("\"logit_bias\" values must be numbers"))?;
            s.logit_bias.push((id, bias as f32));
        }
    }
    Ok(s)
}

fn stops(o: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::bad(format!(
            "\"stop\" must be a string or up to {MAX_STOPS} strings"
        ))
    };
    let list = match o.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= MAX_STOPS => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
}

fn gem(o: &Map<String, Value>) -> Result<GemRequest, ApiError> {
    let mut g = GemRequest::default();
    let Some(v) = o.get("gem").filter(|v| !v.is_null()) else {
        return Ok(g);
    };
    let Value::Object(m) = v else {
        return Err(ApiError::bad("\"gem\" must be an object"));
    };
    for (k, v) in m {
        let count = || {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| ApiError::bad(format!("\"gem.{k}\" must be a non-negative integer")))
        };
        match k.as_str() {
            "off" => g.off = opt_bool(m, "off")?,
            "top_k" => {
                g.top_k = Some(count()?).filter(|&n| n > 0);
                if g.top_k.is_none() {
                    return Err(ApiError::bad("\"gem.top_k\" must be at least 1"));
                }
            }
            "min_tokens" => g.min_tokens = Some(count()?),
            _ => {
                return Err(ApiError::bad(format!(
                    "\"gem.{k}\" is not a GemFilter option (off, top_k, min_tokens)"
                )))
            }
        }
    }
    Ok(g)
}

/// Split a text into the document and its question: the question is the last paragraph (after
/// the last blank line) when there is text on both sides; otherwise the whole text is the
/// document. The prompt is `document + "\n\n" + question`, the text as given.
#[must_use]
pub fn split_document(text: &str) -> (String, Option<String>) {
    match text.rfind("\n\n") {
        Some(i) if !text[..i].trim().is_empty() && !text[i + 2..].trim().is_empty() => {
            (text[..i].to_owned(), Some(text[i + 2..].to_owned()))
        }
        _ => (text.to_owned(), None),
    }
}

fn no_nul(what: &str, text: &str) -> Result<(), ApiError> {
    match text.find('\0') {
        Some(at) => Err(ApiError::bad(format!(
            "{what} holds a NUL character (at byte {at})"
        ))),
        None => Ok(()),
    }
}

fn raw_input(o: &Map<String, Value>) -> Result<PromptInput, ApiError> {
    let prompt = match o.get("prompt") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or(""),
        None => return Err(ApiError::bad("\"prompt\" is missing")),
        Some(_) => return Err(ApiError::bad("\"prompt\" must be a string")),
    };
    if prompt.trim().is_empty() {
        return Err(ApiError::bad("\"prompt\" is empty"));
    }
    no_nul("\"prompt\"", prompt)?;
    let (doc, question) = split_document(prompt);
    Ok(PromptInput {
        context: Some(doc),
        question,
        ..PromptInput::default()
    })
}

/// One message's text parts.
fn parts(i: usize, m: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let what = format!("message {i}");
    let out = match m.get("content") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(
                |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => Ok(t.clone()),
                    (t, _) => Err(ApiError::bad(format!(
                        "{what}: content parts of type {:?} are not supported (only text)",
                        t.unwrap_or("")
                    ))),
                },
            )
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad(format!(
                "{what}: \"content\" must be a string or a list of text parts"
            )))
        }
    };
    for p in &out {
        no_nul(&what, p)?;
    }
    Ok(out)
}

/// A chat's messages as the prompt's parts: system text, the document with the first question,
/// the exchanges after it and the current question.
fn chat_input(o: &Map<String, Value>) -> Result<PromptInput, ApiError> {
    let Some(Value::Array(messages)) = o.get("messages") else {
        return Err(ApiError::bad("\"messages\" must be a list of messages"));
    };
    let mut system: Vec<String> = Vec::new();
    // Consecutive messages of one role are one turn.
    let mut turns: Vec<(bool, Vec<String>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::bad(format!("message {i} must be an object")));
        };
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let user = match role {
            "system" | "developer" => {
                system.push(parts(i, m)?.join("\n\n"));
                continue;
            }
            "user" => true,
            "assistant" => false,
            _ => {
                return Err(ApiError::bad(format!(
                    "message {i}: role {role:?} is not supported (system, user, assistant)"
                )))
            }
        };
        let p = parts(i, m)?;
        match turns.last_mut() {
            Some((u, text)) if *u == user => text.extend(p),
            _ => turns.push((user, p)),
        }
    }
    match (turns.first(), turns.last()) {
        (Some((true, _)), Some((true, _))) => {}
        (None, _) => return Err(ApiError::bad("\"messages\" has no user message")),
        (Some((false, _)), _) => {
            return Err(ApiError::bad(
                "the first message after the system prompt must be the user's",
            ))
        }
        _ => return Err(ApiError::bad("the last message must be the user's")),
    }
    let (doc, first_q) = {
        let first = &turns[0].1;
        if first.len() > 1 {
            (first[..first.len() - 1].join("\n\n"), first.last().cloned())
        } else {
            split_document(&first[0])
        }
    };
    if doc.trim().is_empty() && first_q.is_none() {
        return Err(ApiError::bad("the first user message is empty"));
    }
    let texts: Vec<String> = turns.iter().map(|(_, p)| p.join("\n\n")).collect();
    let (history, question) = if texts.len() == 1 {
        (Vec::new(), first_q)
    } else {
        let mut history = Vec::new();
        let mut q = first_q.unwrap_or_default();
        for pair in texts[1..].chunks(2) {
            if let [answer, next] = pair {
                history.push(Exchange {
                    question: std::mem::take(&mut q),
                    answer: answer.clone(),
                });
                q.clone_from(next);
            }
        }
        (history, Some(q))
    };
    Ok(PromptInput {
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        context: Some(doc),
        question,
        history,
    })
}

/// What a finished request reports.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The answer, stop string excluded.
    pub content: String,
    /// OpenAI's `finish_reason`: "stop" or "length".
    pub finish: &'static str,
    /// The stop string that ended it, if one did.
    pub stopping_word: Option<String>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The answer's `--json` record with what the server adds (the `"gem"` extension field,
    /// [`crate::report::RequestRecord`]).
    pub gem: Value,
    /// llama-server's `"timings"`, as llama-server names them.
    pub timings: Value,
}

/// The identity of one response.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

fn usage(f: &Finished) -> Value {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
    })
}

/// The whole (non-streamed) response.
#[must_use]
pub fn response(kind: Kind, m: &Meta, f: &Finished) -> Value {
    match kind {
        Kind::Chat => json!({
            "id": m.id, "object": "chat.completion", "created": m.created, "model": m.model,
            "choices": [{"index": 0, "finish_reason": f.finish,
                "message": {"role": "assistant", "content": f.content}}],
            "usage": usage(f), "timings": f.timings, "gem": f.gem,
        }),
        Kind::Completion => json!({
            "id": m.id, "object": "text_completion", "created": m.created, "model": m.model,
            "choices": [{"index": 0, "finish_reason": f.finish, "text": f.content, "logprobs": null}],
            "usage": usage(f), "timings": f.timings, "gem": f.gem,
        }),
        Kind::Native => native(m, &f.content, Some(f)),
    }
}

fn native(m: &Meta, content: &str, f: Option<&Finished>) -> Value {
    let mut v = json!({"content": content, "stop": f.is_some(), "model": m.model});
    if let Some(f) = f {
        v["tokens_predicted"] = json!(f.completion_tokens);
        v["tokens_evaluated"] = json!(f.prompt_tokens);
        v["stop_type"] = json!(match (&f.stopping_word, f.finish) {
            (Some(_), _) => "word",
            (None, "length") => "limit",
            _ => "eos",
        });
        v["stopping_word"] = json!(f.stopping_word.as_deref().unwrap_or(""));
        v["truncated"] = json!(false);
        v["timings"] = f.timings.clone();
        v["gem"] = f.gem.clone();
    }
    v
}

/// One streamed chunk: a piece of text, or (with `f`) the last chunk with the finish reason,
/// usage, timings and what GemFilter kept (llama-server also puts its timings there).
#[must_use]
pub fn chunk(kind: Kind, m: &Meta, text: &str, first: bool, f: Option<&Finished>) -> Value {
    let finish = f.map(|f| f.finish);
    let mut v = match kind {
        Kind::Chat => {
            let delta = match (first, f) {
                (_, Some(_)) => json!({}),
                (true, None) => json!({"role": "assistant", "content": text}),
                (false, None) => json!({"content": text}),
            };
            json!({"id": m.id, "object": "chat.completion.chunk", "created": m.created,
                "model": m.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        }
        Kind::Completion => json!({"id": m.id, "object": "text_completion", "created": m.created,
            "model": m.model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}]}),
        Kind::Native => return native(m, text, f),
    };
    if let Some(f) = f {
        v["timings"] = f.timings.clone();
        v["gem"] = f.gem.clone();
    }
    v
}

/// The usage-only chunk OpenAI sends last with `stream_options.include_usage`.
#[must_use]
pub fn usage_chunk(kind: Kind, m: &Meta, f: &Finished) -> Value {
    let object = if kind == Kind::Chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    json!({"id": m.id, "object": object, "created": m.created, "model": m.model,
        "choices": [], "usage": usage(f)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            sampling: Sampling::default(),
            n_predict: -1,
            model_names: vec!["m.gguf".into(), "m".into()],
            n_vocab: 100,
        }
    }

    fn chat(body: &str) -> Result<Request, ApiError> {
        parse(Kind::Chat, body.as_bytes(), &defaults())
    }

    #[test]
    fn the_last_paragraph_is_the_question() {
        assert_eq!(
            split_document("doc one.\n\ndoc two.\n\nWho?"),
            ("doc one.\n\ndoc two.".into(), Some("Who?".into()))
        );
        assert_eq!(split_document("just text"), ("just text".into(), None));
        assert_eq!(split_document("text\n\n  "), ("text\n\n  ".into(), None));
    }

    #[test]
    fn a_chat_becomes_document_exchanges_and_question() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"DOC"},{"type":"text","text":"Q1"}]},
            {"role":"assistant","content":"A1"},{"role":"user","content":"Q2"}],
            "temperature":0,"max_tokens":7,"stop":"\n","seed":-1,"gem":{"top_k":64}}"#,
        )
        .unwrap();
        let i = &r.input;
        assert_eq!(i.system.as_deref(), Some("Be brief."));
        assert_eq!(i.context.as_deref(), Some("DOC"));
        assert_eq!(i.question.as_deref(), Some("Q2"));
        assert_eq!(i.history.len(), 1);
        assert_eq!(
            (i.history[0].question.as_str(), i.history[0].answer.as_str()),
            ("Q1", "A1")
        );
        assert_eq!(
            (r.n_predict, r.sampling.temp, r.sampling.seed),
            (7, 0.0, u32::MAX)
        );
        assert_eq!(r.stop, ["\n"]);
        assert_eq!(r.gem.top_k, Some(64));
    }

    #[test]
    fn bad_requests_name_the_field() {
        for (body, what) in [
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"messages":[]}"#, "no user message"),
            (
                r#"{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}"#,
                "not served",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"temperature":-1}"#,
                "temperature",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":"9"}"#,
                "max_tokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
                "one choice",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"gem":{"topk":3}}"#,
                "gem.topk",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"logit_bias":{"100":1}}"#,
                "token id",
            ),
            (
                r#"{"messages":[{"role":"assistant","content":"x"}]}"#,
                "user's",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a\u0000b"}]}"#,
                "NUL",
            ),
        ] {
            let e = chat(body).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(what), "{body}: {}", e.message);
        }
    }

    #[test]
    fn a_json_schema_becomes_a_grammar_with_its_properties_in_order() {
        let r = chat(
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema",
            "json_schema":{"schema":{"type":"object","properties":{"zeta":{"type":"string"},
            "alpha":{"type":"integer"}},"required":["zeta","alpha"]}}}}"#,
        )
        .unwrap();
        let g = r.sampling.grammar.unwrap();
        let root = g.lines().find(|l| l.starts_with("root ::=")).unwrap();
        assert!(root.find("zeta") < root.find("alpha"), "{g}");
        let any = chat(r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#)
            .unwrap();
        assert!(any.sampling.grammar.is_some());
        let text = chat(
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"text"}}"#,
        )
        .unwrap();
        assert!(text.sampling.grammar.is_none());
    }

    #[test]
    fn error_body_is_openais() {
        let b = ApiError::unauthorized().body();
        assert_eq!(b["error"]["code"], 401);
        assert_eq!(b["error"]["type"], "authentication_error");
    }
}
