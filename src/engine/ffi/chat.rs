//! llama.cpp's common chat templates (its jinja engine, as `--jinja` runs it in llama.cpp's own
//! tools), through the crate's `llama_rs_chat_apply` wrapper.

use std::ffi::{c_char, CStr, CString};

use llama_cpp_sys_2 as sys;

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
    enable_thinking: bool,
) -> Result<String, String> {
    let c = |s: &str| CString::new(s).map_err(|_| "a NUL byte in the chat".to_owned());
    let (template, bos, eos) = (c(template)?, c(bos)?, c(eos)?);
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
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer is to a NUL-terminated string (or an array of them, of
    // `messages.len()` entries) that outlives the call; the wrapper only reads them, catches
    // every C++ exception, and sets `out`/`err` to NULL or to a malloc'd string.
    let status = unsafe {
        sys::llama_rs_chat_apply(
            template.as_ptr(),
            bos.as_ptr(),
            eos.as_ptr(),
            role_ptrs.as_ptr(),
            content_ptrs.as_ptr(),
            messages.len(),
            add_generation_prompt,
            true,
            enable_thinking,
            &raw mut out,
            &raw mut err,
        )
    };
    let take = |p: *mut c_char| {
        (!p.is_null()).then(|| {
            // SAFETY: a non-null `p` is the wrapper's malloc'd NUL-terminated string, read once
            // and then freed by the wrapper's own free.
            let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
            // SAFETY: `p` came from the wrapper's allocator and is not used again.
            unsafe { sys::llama_rs_string_free(p) };
            s
        })
    };
    let (out, err) = (take(out), take(err));
    match (status, out) {
        (sys::LLAMA_RS_STATUS_OK, Some(prompt)) => Ok(prompt),
        _ => Err(err.unwrap_or_else(|| format!("status {status}"))),
    }
}
