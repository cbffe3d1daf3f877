//! The only module with `unsafe`: the eval-callback trampoline that reads layer r's post-RoPE
//! Q and K (per ubatch, or K from the KV cache in the last ubatch) out of llama.cpp's graph and
//! stops it there, plus the few C calls llama-cpp-2 does not wrap (GPU devices and their memory,
//! llama.cpp's `prune_layers` writer, ggml's type conversion). Submodules hold the rest of the
//! FFI. Every block states the invariant it relies on.
#![allow(unsafe_code)]

pub mod abort;
pub mod chat;
pub mod gguf;
pub mod log;
pub mod rpc;
pub mod score;
pub mod signal;

use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_sys_2 as sys;

use crate::capture::{
    hadamard_blocks, parse_cache_k_name, parse_qk_name, CaptureState, KSource, Role,
};
use crate::select::Scoring;

/// Owns a [`CaptureState`] lent to llama.cpp as `cb_eval_user_data`.
///
/// The state lives on the heap at a fixed address. It is only reachable through the callback
/// while a context built from [`CaptureHandle::params`] is alive; [`CaptureHandle::finish`]
/// takes that context by value, drops it, and only then hands the state back.
#[derive(Debug)]
pub struct CaptureHandle {
    state: *mut CaptureState,
}

// SAFETY: the handle owns its boxed state exclusively, as a `Box<CaptureState>` would. llama.cpp
// reaches the state only inside `llama_decode`, on the thread that decodes through the session
// owning this handle (which takes `&mut`), so moving the handle with its session to another
// thread between decodes (the server's document cache) moves that exclusive ownership. The state
// itself is `Send` (checked below).
unsafe impl Send for CaptureHandle {}

const _: () = {
    const fn send<T: Send>() {}
    send::<CaptureState>();
};

impl CaptureHandle {
    #[must_use]
    pub fn new(state: CaptureState) -> Self {
        Self {
            state: Box::into_raw(Box::new(state)),
        }
    }

    /// Context parameters that route every graph node through [`trampoline`].
    #[must_use]
    pub fn params(&self, params: LlamaContextParams) -> LlamaContextParams {
        // SAFETY: `self.state` stays valid until `finish`/`drop`, and `finish` drops the only
        // context made from these params before it reclaims the box; `trampoline` matches
        // `ggml_backend_sched_eval_callback` and only casts user_data back to CaptureState.
        unsafe { params.with_cb_eval(Some(trampoline), self.state.cast::<c_void>()) }
    }

    /// Swap in a fresh state for the next decode of a context that stays alive (a conversation
    /// turn: `engine::session`), returning what the last decode captured.
    #[must_use]
    pub fn replace(&mut self, state: CaptureState) -> CaptureState {
        // SAFETY: `self.state` is the live box from `new` (only `finish`, which consumes self,
        // reclaims it). llama.cpp calls back only inside `llama_decode`, on this thread, and no
        // decode is running while we hold `&mut self` here, so this is the only reference.
        std::mem::replace(unsafe { &mut *self.state }, state)
    }

    /// Drop the context that used this capture, then return what was captured.
    #[must_use]
    pub fn finish(mut self, ctx: LlamaContext<'_>) -> CaptureState {
        drop(ctx);
        let ptr = std::mem::replace(&mut self.state, std::ptr::null_mut());
        // SAFETY: ptr came from Box::into_raw in `new`, is non-null (only `finish` nulls it and
        // it consumes self), and no context can call back into it any more.
        *unsafe { Box::from_raw(ptr) }
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        if !self.state.is_null() {
            // SAFETY: not yet reclaimed by `finish`; any context using it was created inside the
            // owner's scope and is dropped before the handle (declared earlier, dropped later).
            drop(unsafe { Box::from_raw(self.state) });
        }
    }
}

/// `cb_eval`: with `ask`, say whether we want to see node `t` once computed; without `ask`,
/// read it and return false to stop the rest of this graph split (the early exit).
unsafe extern "C" fn trampoline(
    t: *mut sys::ggml_tensor,
    ask: bool,
    user_data: *mut c_void,
) -> bool {
    if t.is_null() || user_data.is_null() {
        return !ask;
    }
    // SAFETY: user_data is the CaptureState pointer set in `CaptureHandle::params`, valid while
    // the context lives; llama.cpp calls back on the decoding thread only, so no aliasing.
    let state = unsafe { &mut *user_data.cast::<CaptureState>() };
    // SAFETY: the scheduler passes a live graph node for the duration of the call.
    let tensor = unsafe { &*t };
    let out = catch_unwind(AssertUnwindSafe(|| on_node(state, tensor, ask)));
    out.unwrap_or_else(|_| {
        state.error = Some("internal error while reading a graph tensor".into());
        false
    })
}

fn node_name(t: &sys::ggml_tensor) -> &[u8] {
    // SAFETY: ggml keeps `name` NUL-terminated within its 64 bytes (ggml_set_name truncates).
    unsafe { CStr::from_ptr(t.name.as_ptr()) }.to_bytes()
}

/// What a graph node is to the capture.
#[derive(Clone, Copy)]
enum Target {
    /// Post-RoPE `Qcur-<il>` / `Kcur-<il>` of a target layer.
    Rope(Role, usize),
    /// The write of this ubatch's K into a target layer's KV cache (`SET_ROWS` into
    /// `cache_k_l<il>`); its destination, `src[2]`, is the whole cache tensor.
    CacheK(usize),
}

fn target_of(state: &CaptureState, t: &sys::ggml_tensor) -> Option<Target> {
    match t.op {
        sys::GGML_OP_ROPE => {
            let (role, il) = parse_qk_name(node_name(t))?;
            Some(Target::Rope(role, state.slot(il)?))
        }
        sys::GGML_OP_SET_ROWS if state.spec.k_source == KSource::Cache => {
            // SAFETY: src pointers of a live graph node are null or live tensors of the graph.
            let dst = unsafe { t.src[2].as_ref() }?;
            let il = parse_cache_k_name(node_name(dst))?;
            Some(Target::CacheK(state.slot(il)?))
        }
        _ => None,
    }
}

fn on_node(state: &mut CaptureState, t: &sys::ggml_tensor, ask: bool) -> bool {
    let target = target_of(state, t);
    if ask {
        state.note_node(node_name(t));
        return match target {
            // Queries are only needed for the last tokens: skip observing (and the sync that
            // observing costs) in every ubatch that has none of them, but keep count.
            Some(Target::Rope(Role::Q, slot)) => {
                let n_ub = usize::try_from(t.ne[2]).unwrap_or(0);
                if state.wanted_rows(slot, Role::Q, n_ub).is_none() {
                    state.skip_rows(slot, Role::Q, n_ub);
                    false
                } else {
                    true
                }
            }
            // Cache mode: keys are read from the cache at the end; only count rows here.
            Some(Target::Rope(Role::K, slot)) if state.spec.k_source == KSource::Cache => {
                let [head_dim, heads, n_ub] =
                    [t.ne[0], t.ne[1], t.ne[2]].map(|v| usize::try_from(v).unwrap_or(0));
                state.note_k_rows(slot, head_dim, heads, n_ub);
                false
            }
            Some(Target::Rope(Role::K, _)) => true,
            Some(Target::CacheK(slot)) => state.cache_due(slot),
            None => false,
        };
    }
    let res = match target {
        Some(Target::Rope(role, slot)) => read_wanted(state, slot, role, t).map(|()| slot),
        Some(Target::CacheK(slot)) => read_cache(state, slot, t).map(|()| slot),
        None => return true,
    };
    let slot = match res {
        Ok(slot) => slot,
        Err(e) => {
            state.error = Some(format!("{}: {e}", String::from_utf8_lossy(node_name(t))));
            return false;
        }
    };
    let last_slot = slot + 1 == state.layers.len();
    // Cache mode: this layer's keys are in once its cache was read or scored (last ubatch).
    let k_in = state.spec.k_source == KSource::Ubatch || state.keys_in(slot);
    if state.spec.stop_after_last && last_slot && k_in && state.ubatch_done() {
        state.early_exits += 1;
        return false;
    }
    true
}

/// Cache mode: read the first `n_tokens` rows of a target layer's KV cache (after the last
/// ubatch wrote into it) and convert them to f32, whatever the cache type (`-ctk`).
fn read_cache(state: &mut CaptureState, slot: usize, t: &sys::ggml_tensor) -> Result<(), String> {
    // SAFETY: as in `target_of`; `target_of` already found it non-null.
    let cache = unsafe { t.src[2].as_ref() }.ok_or("no cache tensor")?;
    let lc = &state.layers[slot];
    let n = state.spec.n_tokens;
    let row_elems = lc.n_head_kv * lc.head_dim;
    let [ne0, ne1] = [cache.ne[0], cache.ne[1]].map(|v| usize::try_from(v).unwrap_or(0));
    if ne0 != row_elems || ne1 < n || row_elems == 0 {
        return Err(format!(
            "cache shape {:?} does not hold {n} rows of {row_elems}",
            cache.ne
        ));
    }
    if cache.buffer.is_null() {
        return Err("cache tensor has no backend buffer".into());
    }
    if let Some(graph) = state.graph_scoring {
        if graph.on_host || score::on_device(cache.buffer) {
            let t0 = std::time::Instant::now();
            match score_on_device(state, slot, cache, graph.scoring, k_rotation(t)) {
                Ok(scores) => {
                    state.score_secs += t0.elapsed().as_secs_f64();
                    state.record_scores(slot, scores);
                    return Ok(());
                }
                // The host path below still gives the right answer, only slower.
                Err(e) => state.graph_fallback = Some(e),
            }
        }
    }
    // SAFETY: a plain lookup in ggml's static type table.
    let row_bytes = unsafe { sys::ggml_row_size(cache.type_, cache.ne[0]) };
    if row_bytes != cache.nb[1] {
        return Err(format!("non-contiguous cache rows (nb {:?})", cache.nb));
    }
    let t0 = std::time::Instant::now();
    // At 128K this is 268 MB to copy and 134M values to convert: split the rows over every
    // core, each copying and converting its share (0.25-0.27 s in all on the H100 host,
    // bench/runs/2026-11-28-h100; copying per thread measured no faster than one copy).
    let mut rows = vec![0f32; n * row_elems];
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let rows_per = n.div_ceil(threads).max(1);
    let cache = SharedTensor(cache);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows
            .chunks_mut(rows_per * row_elems)
            .enumerate()
            .map(|(i, dst)| {
                let cache = &cache;
                s.spawn(move || {
                    let (first, count) = (i * rows_per, dst.len() / row_elems);
                    // SAFETY: buffer non-null (checked above); rows first..first+count lie
                    // inside the tensor (first + count <= n <= ne1) and hold dst.len() values.
                    unsafe { rows_to_f32(cache.0, first, count, row_bytes, dst) }
                })
            })
            .collect();
        parts.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err("reader thread panicked".into()))
        })
    })?;
    state.read_secs += t0.elapsed().as_secs_f64();
    state.record_cache_k(slot, rows, k_rotation(t));
    Ok(())
}

/// A layer's scores from its cache on the device: the captured queries (rotated as the cache's
/// keys were) against the first `n_tokens` cells.
fn score_on_device(
    state: &CaptureState,
    slot: usize,
    cache: &sys::ggml_tensor,
    scoring: Scoring,
    rotation: Option<usize>,
) -> Result<Vec<f32>, String> {
    let lc = &state.layers[slot];
    let mut q = lc.q.clone();
    if let Some(n) = rotation {
        if !n.is_power_of_two() || !lc.head_dim.is_multiple_of(n) {
            return Err(format!("K cache rotated in blocks of {n}"));
        }
        hadamard_blocks(&mut q, n);
    }
    score::graph_scores(
        &score::CacheKeys {
            tensor: cache,
            n: state.spec.n_tokens,
            n_head_kv: lc.n_head_kv,
            head_dim: lc.head_dim,
        },
        &score::Queries {
            q: &q,
            n_head: lc.n_head,
            scoring,
        },
        score::LOGIT_BUDGET,
    )
}

/// A cache tensor read from several threads at once.
struct SharedTensor<'a>(&'a sys::ggml_tensor);

// SAFETY: the threads only read the tensor's metadata and copy disjoint row ranges out of its
// buffer with ggml_backend_tensor_get, which is safe to call concurrently (CUDA: one stream per
// thread, then a sync of that stream; CPU: memcpy); the graph is stopped in the callback meanwhile.
unsafe impl Sync for SharedTensor<'_> {}

/// Size of the Hadamard rotation llama.cpp applied to K between `Kcur` and the cache write
/// (a `MUL_MAT` by the `attn_inp_k_rot` input; it does this for quantized K caches), if any.
fn k_rotation(set_rows: &sys::ggml_tensor) -> Option<usize> {
    let mut cur = set_rows.src[0];
    // set_rows <- view <- reshape <- mul_mat(rot, ...) <- ... <- Kcur (rope): a few hops.
    for _ in 0..8 {
        // SAFETY: src/view_src pointers of live graph nodes are null or live tensors.
        let t = unsafe { cur.as_ref() }?;
        match t.op {
            sys::GGML_OP_ROPE => return None,
            sys::GGML_OP_MUL_MAT => {
                // SAFETY: as above.
                let rot = unsafe { t.src[0].as_ref() }?;
                return (node_name(rot) == b"attn_inp_k_rot")
                    .then(|| usize::try_from(rot.ne[0]).ok())
                    .flatten();
            }
            _ => {}
        }
        cur = if t.view_src.is_null() {
            t.src[0]
        } else {
            t.view_src
        };
    }
    None
}

fn read_wanted(
    state: &mut CaptureState,
    slot: usize,
    role: Role,
    t: &sys::ggml_tensor,
) -> Result<(), String> {
    let [head_dim, heads, n_ub, rest] = t.ne.map(|v| usize::try_from(v).unwrap_or(0));
    if rest != 1 || head_dim == 0 || heads == 0 || n_ub == 0 {
        return Err(format!("unexpected shape {:?}", t.ne));
    }
    let elem = match t.type_ {
        sys::GGML_TYPE_F32 => 4,
        sys::GGML_TYPE_F16 => 2,
        other => return Err(format!("unsupported tensor type {other}")),
    };
    if t.nb[0] != elem || t.nb[1] != elem * head_dim || t.nb[2] != elem * head_dim * heads {
        return Err(format!("non-contiguous tensor (nb {:?})", t.nb));
    }
    let Some((first, n)) = state.wanted_rows(slot, role, n_ub) else {
        state.skip_rows(slot, role, n_ub);
        return Ok(());
    };
    if t.buffer.is_null() {
        return Err("tensor has no backend buffer".into());
    }
    let row_bytes = t.nb[2];
    state.record_with(
        slot,
        role,
        head_dim,
        heads,
        n_ub,
        n * head_dim * heads,
        |dst| {
            // SAFETY: buffer checked non-null above; first + n <= n_ub, so the rows lie inside the
            // tensor, and they hold n * head_dim * heads = dst.len() values.
            unsafe { rows_to_f32(t, first, n, row_bytes, dst) }
        },
    )
}

/// Copy rows `first..first + n` (each `row_bytes` long) of a computed tensor into `dst` as f32,
/// converting with ggml's own `to_float` (f16, bf16, `q8_0`, `q4_0`, …) unless it is F32 already.
///
/// # Safety
/// `t` is computed, has a buffer, and holds those rows; they contain `dst.len()` values.
unsafe fn rows_to_f32(
    t: &sys::ggml_tensor,
    first: usize,
    n: usize,
    row_bytes: usize,
    dst: &mut [f32],
) -> Result<(), String> {
    let (offset, size) = (first * row_bytes, n * row_bytes);
    if t.type_ == sys::GGML_TYPE_F32 {
        if size != std::mem::size_of_val(dst) {
            return Err(format!("{size} bytes of f32 rows for {} values", dst.len()));
        }
        // SAFETY: the caller's contract; `dst` holds exactly `size` bytes (checked above).
        unsafe { tensor_get(t, dst.as_mut_ptr().cast::<c_void>(), offset, size) };
        return Ok(());
    }
    let mut raw = vec![0u8; size];
    // SAFETY: the caller's contract; `raw` holds exactly `size` bytes.
    unsafe { tensor_get(t, raw.as_mut_ptr().cast::<c_void>(), offset, size) };
    convert_to_f32(t.type_, &raw, dst)
}

/// ggml's conversion of `raw` (whole rows of `ty`) into the f32 values `dst`.
fn convert_to_f32(ty: sys::ggml_type, raw: &[u8], dst: &mut [f32]) -> Result<(), String> {
    // SAFETY: a plain lookup in ggml's static type table.
    let (traits, want) = unsafe {
        let n = i64::try_from(dst.len()).map_err(|_| "too many values")?;
        (
            sys::ggml_get_type_traits(ty).as_ref(),
            sys::ggml_row_size(ty, n),
        )
    };
    let to_float = traits
        .and_then(|tr| tr.to_float)
        .ok_or_else(|| format!("no conversion to f32 for tensor type {ty}"))?;
    if want != raw.len() {
        return Err(format!(
            "{} bytes of type {ty} for {} values",
            raw.len(),
            dst.len()
        ));
    }
    let k = i64::try_from(dst.len()).map_err(|_| "too many values")?;
    // SAFETY: `raw` holds exactly the bytes of dst.len() values of `ty` (ggml_row_size, checked
    // above, so whole quantization blocks) and `dst` room for them; to_float only reads and
    // writes those.
    unsafe { to_float(raw.as_ptr().cast::<c_void>(), dst.as_mut_ptr(), k) };
    Ok(())
}

/// Copy `size` bytes at `offset` of a computed tensor into `dst`.
///
/// # Safety
/// `t` is computed and has a buffer, `offset + size <= ggml_nbytes(t)`, and `dst` points to at
/// least `size` writable bytes.
unsafe fn tensor_get(t: &sys::ggml_tensor, dst: *mut c_void, offset: usize, size: usize) {
    // SAFETY: forwarded from the caller's contract above.
    unsafe { sys::ggml_backend_tensor_get(std::ptr::from_ref(t).cast_mut(), dst, offset, size) }
}

/// Calls `f` on every local GPU device llama.cpp has registered. RPC devices, which ggml also
/// types as GPUs, are left out: their memory is another machine's, and asking costs a round trip.
fn for_each_gpu(mut f: impl FnMut(sys::ggml_backend_dev_t)) {
    // SAFETY: read-only enumeration of registered devices; indices are below
    // ggml_backend_dev_count and null devices are skipped.
    unsafe {
        for i in 0..sys::ggml_backend_dev_count() {
            let dev = sys::ggml_backend_dev_get(i);
            if !dev.is_null()
                && sys::ggml_backend_dev_type(dev) == sys::GGML_BACKEND_DEVICE_TYPE_GPU
                && !is_rpc(dev)
            {
                f(dev);
            }
        }
    }
}

/// The device belongs to ggml's RPC backend (a registry named "RPC[host:port]").
///
/// # Safety
/// `dev` is a registered, non-null device.
unsafe fn is_rpc(dev: sys::ggml_backend_dev_t) -> bool {
    // SAFETY: per the contract; registry names are NUL-terminated and owned by ggml.
    unsafe {
        let reg = sys::ggml_backend_dev_backend_reg(dev);
        if reg.is_null() {
            return false;
        }
        let name = sys::ggml_backend_reg_name(reg);
        !name.is_null() && CStr::from_ptr(name).to_bytes().starts_with(b"RPC")
    }
}

/// Bytes in use on all GPU devices (total − free), or None when there is no GPU backend.
#[must_use]
pub fn device_memory_used() -> Option<u64> {
    let mut used = 0u64;
    let mut any = false;
    for_each_gpu(|dev| {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: `dev` is a registered device; the out-pointers point at live locals.
        unsafe { sys::ggml_backend_dev_memory(dev, &raw mut free, &raw mut total) };
        used += (total.saturating_sub(free)) as u64;
        any = true;
    });
    any.then_some(used)
}

/// Write a copy of the GGUF at `input` that keeps only layers `0..keep_layers` (tensors copied
/// as they are, `block_count` updated) — llama.cpp's own `prune_layers` path of
/// `llama_model_quantize`. The filter pass runs on it so that neither weights nor KV cache of
/// the later layers ever reach the device.
///
/// # Errors
/// Paths that are not valid C strings, `keep_layers` ≥ `n_layer`, or llama.cpp failing to write.
pub fn write_prefix_model(
    input: &std::path::Path,
    output: &std::path::Path,
    keep_layers: usize,
    n_layer: usize,
) -> Result<(), String> {
    use std::ffi::CString;
    if keep_layers == 0 || keep_layers >= n_layer {
        return Err(format!("cannot keep {keep_layers} of {n_layer} layers"));
    }
    let cin = CString::new(input.as_os_str().as_encoded_bytes())
        .map_err(|_| "model path has a NUL byte")?;
    let cout = CString::new(output.as_os_str().as_encoded_bytes())
        .map_err(|_| "cache path has a NUL byte")?;
    let mut prune: Vec<i32> = (keep_layers..n_layer)
        .map(|l| i32::try_from(l).unwrap_or(i32::MAX))
        .collect();
    prune.push(-1);
    // SAFETY: default params are plain data; we point prune_layers at a -1-terminated vector that
    // outlives the call, and both paths are NUL-terminated C strings alive across the call.
    let rc = unsafe {
        let mut p = sys::llama_model_quantize_default_params();
        p.only_copy = true;
        p.prune_layers = prune.as_ptr();
        sys::llama_model_quantize(cin.as_ptr(), cout.as_ptr(), &raw const p)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("llama_model_quantize returned {rc}"))
    }
}

/// Names of the GPU devices llama.cpp sees ("NVIDIA H100 80GB HBM3"), or None without one.
#[must_use]
pub fn gpu_names() -> Option<String> {
    let mut names = Vec::new();
    for_each_gpu(|dev| {
        // SAFETY: `dev` is a registered device; its description is owned by ggml and
        // NUL-terminated, copied out at once.
        unsafe {
            let d = sys::ggml_backend_dev_description(dev);
            if !d.is_null() {
                names.push(CStr::from_ptr(d).to_string_lossy().into_owned());
            }
        }
    });
    (!names.is_empty()).then(|| names.join(" + "))
}

#[cfg(test)]
mod tests {
    use super::{convert_to_f32, sys};

    fn f16_to_f32(h: u16) -> f32 {
        let mut out = [0f32];
        convert_to_f32(sys::GGML_TYPE_F16, &h.to_le_bytes(), &mut out).unwrap();
        out[0]
    }

    #[test]
    fn half_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(f16_to_f32(0), 0.0);
    }

    #[test]
    fn conversion_checks_sizes_and_types() {
        let mut out = [0f32; 2];
        assert!(convert_to_f32(sys::GGML_TYPE_F16, &[0; 2], &mut out).is_err());
        // q8_0: blocks of 32 values in 34 bytes (f16 scale, 32 int8).
        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&0x3800u16.to_le_bytes()); // scale 0.5
        block[2] = 4;
        block[3] = 0xfe; // -2
        let mut out = [0f32; 32];
        convert_to_f32(sys::GGML_TYPE_Q8_0, &block, &mut out).unwrap();
        assert_eq!(&out[..3], &[2.0, -1.0, 0.0]);
    }
}
