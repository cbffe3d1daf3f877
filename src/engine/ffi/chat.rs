//! llama.cpp's common chat templates (its jinja engine, as `--jinja` runs it in llama.cpp's own
//! tools), through the crate's `llama_rs_chat_apply` wrapper.

use std::ffi::{c_char, CStr, CString};

use llama_cpp_sys_2 as sys;

/// llama.cpp's chat options, as llama-cli hands them to its in-process server.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// `--jinja`: the jinja engine instead of the built-in formatter.
    pub jinja: bool,
    /// `--reasoning`: -1 auto, 0 off, 1 on.
    pub reasoning: i32,
    /// The template's extra variables: a JSON object of values ("" for none).
    pub kwargs: &'a str,
    /// A `--reasoning-format` name.
    pub reasoning_format: &'a str,
}

/// What the engine reports beside the prompt (llama.cpp's `common_chat_params`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Rendered {
    #[serde(skip)]
    pub prompt: String,
    /// The template's `enable_thinking` as rendered.
    pub enable_thinking: bool,
    /// The template reacts to `enable_thinking`.
    pub supports_thinking: bool,
    /// The chat format the engine recognised (its parser for the answer).
    pub format: String,
    /// What the template writes after the last turn to open the answer.
    pub generation_prompt: String,
    pub thinking_start_tag: String,
    /// Empty when the template has no thinking block.
    pub thinking_end_tags: Vec<String>,
    /// llama.cpp's `common_chat_format`, for [`parse`].
    pub format_id: i32,
    /// The answer's parser (serialized), for [`parse`]; may be empty.
    pub parser: String,
}

/// An answer split as llama-cli's server splits a reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Parsed {
    /// Its text outside the thinking block.
    pub content: String,
    /// Its thinking.
    pub reasoning_content: String,
}

/// Render `messages` (role, content) through `template` (its text, or a built-in name such as
/// `chatml`), with the model's BOS and EOS texts.
///
/// # Errors
/// A NUL byte in an argument, or the template engine's own message when it fails.
pub fn apply(
    template: &str,
    bos: &str,
    eos: &str,
    messages: &[(&str, &str)],
    add_generation_prompt: bool,
    opts: Options<'_>,
) -> Result<Rendered, String> {
    let c = |s: &str| CString::new(s).map_err(|_| "a NUL byte in the chat".to_owned());
    let (template, bos, eos) = (c(template)?, c(bos)?, c(eos)?);
    let (kwargs, format) = (c(opts.kwargs)?, c(opts.reasoning_format)?);
    let roles = messages
        .iter()
        .map(|(r, _)| c(r))
        .collect::<Result<Vec<_>, _>>()?;
    let contents = messages
        .iter()
        .map(|(_, t)| c(t))
        .collect::<Result<Vec<_>, _>>()?;
    let role_ptrs: Vec<*const c_char> = roles.iter().map(|s| s.as_ptr()).collect();
    let content_ptrs: Vec<*const c_char> = contents.iter().map(|s| s.as_ptr()).collect();
    let mut out: *mut c_char = std::ptr::null_mut();
    let mut info: *mut c_char = std::ptr::null_mut();
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer is to a NUL-terminated string (or an array of them, of
    // `messages.len()` entries) that outlives the call; the wrapper only reads them, catches
    // every C++ exception, and sets `out`/`info`/`err` to NULL or to a malloc'd string.
    let status = unsafe {
        sys::llama_rs_chat_apply(
            template.as_ptr(),
            bos.as_ptr(),
            eos.as_ptr(),
            role_ptrs.as_ptr(),
            content_ptrs.as_ptr(),
            messages.len(),
            add_generation_prompt,
            opts.jinja,
            opts.reasoning,
            kwargs.as_ptr(),
            format.as_ptr(),
            &raw mut out,
            &raw mut info,
            &raw mut err,
        )
    };
    let (out, info, err) = (take(out), take(info), take(err));
    match (status, out, info) {
        (sys::LLAMA_RS_STATUS_OK, Some(prompt), Some(info)) => {
            let mut r: Rendered = serde_json::from_str(&info)
                .map_err(|e| format!("the chat engine's report: {e}"))?;
            r.prompt = prompt;
            Ok(r)
        }
        _ => Err(err.unwrap_or_else(|| format!("status {status}"))),
    }
}

/// `text` (an answer, `partial` while it is being generated) split as llama-cli's server splits
/// a reply under `rendered`'s template and a `--reasoning-format` name.
///
/// # Errors
/// A NUL byte in the text, or the parser's own message.
pub fn parse(
    rendered: &Rendered,
    reasoning_format: &str,
    text: &str,
    partial: bool,
) -> Result<Parsed, String> {
    let c = |s: &str| CString::new(s).map_err(|_| "a NUL byte in the answer".to_owned());
    let (format, prompt) = (c(reasoning_format)?, c(&rendered.generation_prompt)?);
    let (parser, text) = (c(&rendered.parser)?, c(text)?);
    let mut out: *mut c_char = std::ptr::null_mut();
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer is to a NUL-terminated string that outlives the call; the wrapper
    // only reads them, catches every C++ exception, and sets `out`/`err` to NULL or to a
    // malloc'd string.
    let status = unsafe {
        sys::llama_rs_chat_parse(
            rendered.format_id,
            format.as_ptr(),
            prompt.as_ptr(),
            parser.as_ptr(),
            text.as_ptr(),
            partial,
            &raw mut out,
            &raw mut err,
        )
    };
    match (status, take(out)) {
        (sys::LLAMA_RS_STATUS_OK, Some(json)) => {
            serde_json::from_str(&json).map_err(|e| format!("the chat parser's answer: {e}"))
        }
        _ => Err(take(err).unwrap_or_else(|| format!("status {status}"))),
    }
}

/// A string the wrapper returned (NULL: None), freed.
fn take(p: *mut c_char) -> Option<String> {
    (!p.is_null()).then(|| {
        // SAFETY: a non-null `p` is the wrapper's malloc'd NUL-terminated string, read once and
        // then freed by the wrapper's own free.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: `p` came from the wrapper's allocator and is not used again.
        unsafe { sys::llama_rs_string_free(p) };
        s
    })
}
