//! Token scores computed where the keys are: a small ggml graph over layer r's KV cache, run on
//! the cache's own device, that brings back one score per prompt token instead of every key.
//!
//! Per chunk of KV heads: the cached keys (any cache type, converted to f32) times the captured
//! queries, optionally a causal softmax per (query, head) row with `1/sqrt(d)`, summed over
//! queries and heads: exactly [`crate::select::scores`] (the host path, kept as the oracle and
//! for RPC devices). Chunks keep the logits under a byte budget at 128K tokens and 32 heads.

use std::ffi::c_void;
use std::sync::Mutex;

use llama_cpp_sys_2 as sys;

use crate::select::Scoring;

/// Layer r's keys as they sit in its KV cache: cells `0..n` hold positions `0..n`.
pub(super) struct CacheKeys<'a> {
    /// The cache tensor, `[n_head_kv * head_dim, cells]`, rows contiguous.
    pub tensor: &'a sys::ggml_tensor,
    pub n: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

/// The captured queries of the last `rows` prompt tokens, `[rows, n_head, head_dim]` row-major,
/// already rotated the way the cache's keys were.
pub(super) struct Queries<'a> {
    pub q: &'a [f32],
    pub n_head: usize,
    /// How the last rows vote: the reference (raw q·k of the last row) or a softmax scoring.
    pub scoring: Scoring,
}

/// Bytes of logits one chunk may hold (`n * window * heads` floats), so that 128K tokens with a
/// wide window and many heads do not allocate gigabytes at once.
pub const LOGIT_BUDGET: usize = 256 << 20;

/// One backend per device, created on first use and kept: creating a CUDA backend (stream and
/// cuBLAS handle) per layer would cost more than the scoring itself. The lock serialises use.
struct Backends(Vec<(usize, usize)>);

// SAFETY: the pointers are only dereferenced by ggml while the mutex is held.
unsafe impl Send for Backends {}

static BACKENDS: Mutex<Backends> = Mutex::new(Backends(Vec::new()));

/// Whether the graph path should score keys held in `buffer`: a device's memory that is not the
/// host's and not a remote RPC server's (whose graph would travel over the network).
pub(super) fn on_device(buffer: sys::ggml_backend_buffer_t) -> bool {
    if buffer.is_null() {
        return false;
    }
    // SAFETY: a live buffer of a computed tensor; these are read-only lookups.
    unsafe {
        if sys::ggml_backend_buffer_is_host(buffer) {
            return false;
        }
        let dev = sys::ggml_backend_buft_get_device(sys::ggml_backend_buffer_get_type(buffer));
        !dev.is_null() && !super::is_rpc(dev)
    }
}

/// Start the scoring backend of every local GPU and run a tiny graph through it, so that the
/// first real scoring does not pay for the backend, the cuBLAS handle and loading the kernels.
/// Meant to run beside the filter pass; errors are left to the real scoring, which falls back
/// to the host.
pub fn warm_up() {
    // Backends are kept for the process, so once is enough (a server selects many times).
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(warm_up_devices);
}

/// Query rows of the warm-up graphs. ggml-cuda multiplies keys by at most 8 query rows with its
/// own vector kernel, by at most 16 with tensor-core kernels when the keys are a whole number of
/// 32-row blocks, and by more through cuBLAS, whose handle each backend creates on first use
/// (ggml-cuda's `mul_mat` dispatch): one graph of each, so that `window-softmax:32` does not pay
/// for that inside the first selection.
const WARM_UP_ROWS: [usize; 4] = [1, 2, 16, 32];

const WARM_UP_HEAD_DIM: usize = 64;
const WARM_UP_KEYS: usize = 256;

fn warm_up_devices() {
    let mut devices = Vec::new();
    super::for_each_gpu(|dev| devices.push(dev as usize));
    for dev in devices {
        let keys = vec![0.5; WARM_UP_HEAD_DIM * WARM_UP_KEYS];
        if let Ok(keys) = DeviceKeys::upload_to(&keys, 1, WARM_UP_HEAD_DIM, F16, 0, dev as _) {
            let _ = warm_up_graphs(&keys);
        }
    }
}

/// One scoring graph per entry of [`WARM_UP_ROWS`] over `keys` (one KV head of
/// [`WARM_UP_HEAD_DIM`]); the first error, if any.
fn warm_up_graphs(keys: &DeviceKeys) -> Result<(), String> {
    // Two query heads on the one KV head: the grouped-query broadcast of real models.
    let q = [0.25f32; 32 * 2 * WARM_UP_HEAD_DIM];
    for rows in WARM_UP_ROWS {
        let scoring = if rows == 1 {
            Scoring::Reference
        } else {
            Scoring::WindowSoftmax { window: rows }
        };
        keys.scores(&q[..rows * 2 * WARM_UP_HEAD_DIM], 2, scoring, LOGIT_BUDGET)?;
    }
    Ok(())
}

/// Per-token scores of the cached keys under the queries, computed by ggml on the device that
/// holds the cache. Shapes are checked here, before ggml (which aborts on a bad shape) sees them.
pub(super) fn graph_scores(
    keys: &CacheKeys<'_>,
    queries: &Queries<'_>,
    budget: usize,
) -> Result<Vec<f32>, String> {
    let CacheKeys {
        tensor,
        n,
        n_head_kv,
        head_dim,
    } = *keys;
    let Queries { q, n_head, scoring } = *queries;
    let (window, softmax) = (scoring.queries_needed(), scoring != Scoring::Reference);
    let row = n_head * head_dim;
    if n == 0 || n_head_kv == 0 || head_dim == 0 || n_head == 0 || row == 0 {
        return Err("empty shapes".into());
    }
    if !n_head.is_multiple_of(n_head_kv) || !q.len().is_multiple_of(row) {
        return Err(format!(
            "{n_head} query heads over {n_head_kv} KV heads, {} query values",
            q.len()
        ));
    }
    let rows = q.len() / row;
    let w = window.min(rows);
    if w == 0 || w > n {
        return Err(format!(
            "a window of {window} over {rows} queries and {n} keys"
        ));
    }
    let row_elems = n_head_kv * head_dim;
    let [ne0, ne1] = [tensor.ne[0], tensor.ne[1]].map(|v| usize::try_from(v).unwrap_or(0));
    // SAFETY: a plain lookup in ggml's static type table.
    let row_bytes = unsafe { sys::ggml_row_size(tensor.type_, tensor.ne[0]) };
    if ne0 != row_elems || ne1 < n || tensor.nb[1] != row_bytes || tensor.buffer.is_null() {
        return Err(format!("cache shape {:?} / {:?}", tensor.ne, tensor.nb));
    }
    // SAFETY: a live buffer (checked non-null above); read-only lookups. Host buffer types
    // may name no device (the CPU one does not): they are the CPU's.
    let dev = unsafe {
        let dev =
            sys::ggml_backend_buft_get_device(sys::ggml_backend_buffer_get_type(tensor.buffer));
        if dev.is_null() && sys::ggml_backend_buffer_is_host(tensor.buffer) {
            sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU)
        } else {
            dev
        }
    };
    if dev.is_null() {
        return Err("the cache's buffer has no device".into());
    }
    let group = n_head / n_head_kv;
    // KV heads per chunk: as many as the logit budget allows, at least one.
    let per_kv_head = n * w * group * 4;
    let chunk = (budget / per_kv_head.max(1)).clamp(1, n_head_kv);

    // Queries as ggml wants them: [head_dim, w, n_head], the last w captured rows.
    let mut q_dev = Vec::with_capacity(w * row);
    for h in 0..n_head {
        for i in rows - w..rows {
            let at = (i * n_head + h) * head_dim;
            q_dev.extend_from_slice(&q[at..at + head_dim]);
        }
    }
    // Causal mask of the window's queries: query i sits at position n - w + i and sees keys
    // 0..=n - w + i (only the last w - 1 - i keys of its row are hidden).
    let mut mask = vec![0f32; if softmax && w > 1 { n * w } else { 0 }];
    for (i, row) in mask.chunks_exact_mut(n).enumerate() {
        row[n - w + i + 1..].fill(f32::NEG_INFINITY);
    }
    #[allow(clippy::cast_precision_loss)]
    let scale = 1.0 / (head_dim as f32).sqrt();

    let mut backends = BACKENDS
        .lock()
        .map_err(|_| "scoring backend lock poisoned")?;
    let backend = backend_for(&mut backends, dev)?;
    let dims = Dims {
        n,
        w,
        n_head,
        n_head_kv,
        head_dim,
        chunk,
        softmax,
        scale,
    };
    // SAFETY: every shape was checked above; the graph reads the cache tensor, live for this
    // call (the scheduler is stopped in the eval callback, or the test owns it).
    unsafe { run_graph(backend, tensor, &dims, &q_dev, &mask) }
}

struct Dims {
    n: usize,
    w: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    chunk: usize,
    softmax: bool,
    scale: f32,
}

fn backend_for(
    backends: &mut Backends,
    dev: sys::ggml_backend_dev_t,
) -> Result<sys::ggml_backend_t, String> {
    let key = dev as usize;
    if let Some(&(_, b)) = backends.0.iter().find(|(d, _)| *d == key) {
        return Ok(b as sys::ggml_backend_t);
    }
    // SAFETY: `dev` is a registered device (from a live buffer's type).
    let b = unsafe { sys::ggml_backend_dev_init(dev, std::ptr::null()) };
    if b.is_null() {
        return Err("could not start a backend on the cache's device".into());
    }
    backends.0.push((key, b as usize));
    Ok(b)
}

fn i64_of(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Frees what [`run_graph`] allocated, on every path out of it.
struct Owned {
    ctx: *mut sys::ggml_context,
    galloc: sys::ggml_gallocr_t,
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: both were created by run_graph (or are null) and are freed once, here.
        unsafe {
            if !self.galloc.is_null() {
                sys::ggml_gallocr_free(self.galloc);
            }
            if !self.ctx.is_null() {
                sys::ggml_free(self.ctx);
            }
        }
    }
}

/// Build, allocate and compute the scoring graph; return its n sums.
///
/// # Safety
/// `backend` is live and runs on the device of `cache`'s buffer; `cache` is live, holds at
/// least `d.n` rows of `n_head_kv * head_dim` values with contiguous rows; `q` holds
/// `head_dim * w * n_head` values and `mask` `n * w`.
unsafe fn run_graph(
    backend: sys::ggml_backend_t,
    cache: &sys::ggml_tensor,
    d: &Dims,
    q: &[f32],
    mask: &[f32],
) -> Result<Vec<f32>, String> {
    const MAX_NODES: usize = 2048;
    let row_elems = d.n_head_kv * d.head_dim;
    // SAFETY (whole block): ggml calls on a context we own; every tensor passed is from that
    // context or is `cache`; shapes follow from the checks in `graph_scores`.
    unsafe {
        let params = sys::ggml_init_params {
            mem_size: sys::ggml_tensor_overhead() * MAX_NODES
                + sys::ggml_graph_overhead_custom(MAX_NODES, false),
            mem_buffer: std::ptr::null_mut(),
            no_alloc: true,
        };
        let mut owned = Owned {
            ctx: sys::ggml_init(params),
            galloc: std::ptr::null_mut(),
        };
        let ctx = owned.ctx;
        if ctx.is_null() {
            return Err("ggml_init failed".into());
        }
        let cache_ptr = std::ptr::from_ref(cache).cast_mut();
        let keys = sys::ggml_view_2d(
            ctx,
            cache_ptr,
            i64_of(row_elems),
            i64_of(d.n),
            cache.nb[1],
            0,
        );
        // Every cache type (f16, bf16, q8_0, …) as f32, rows contiguous: [row_elems, n].
        let keys = if cache.type_ == sys::GGML_TYPE_F32 {
            keys
        } else {
            sys::ggml_cast(ctx, keys, sys::GGML_TYPE_F32)
        };
        let q_all = sys::ggml_new_tensor_3d(
            ctx,
            sys::GGML_TYPE_F32,
            i64_of(d.head_dim),
            i64_of(d.w),
            i64_of(d.n_head),
        );
        sys::ggml_set_input(q_all);
        let mask_t = if d.softmax && d.w > 1 {
            let m = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, i64_of(d.n), i64_of(d.w));
            sys::ggml_set_input(m);
            m
        } else {
            std::ptr::null_mut()
        };
        let f32_size = std::mem::size_of::<f32>();
        let mut total: *mut sys::ggml_tensor = std::ptr::null_mut();
        let mut g0 = 0;
        while g0 < d.n_head_kv {
            let gc = d.chunk.min(d.n_head_kv - g0);
            let sums = chunk_sums(ctx, keys, q_all, mask_t, d, g0, gc);
            total = if total.is_null() {
                sums
            } else {
                sys::ggml_add(ctx, total, sums)
            };
            g0 += gc;
        }
        sys::ggml_set_output(total);
        let gf = sys::ggml_new_graph_custom(ctx, MAX_NODES, false);
        sys::ggml_build_forward_expand(gf, total);
        for i in 0..sys::ggml_graph_n_nodes(gf) {
            let node = sys::ggml_graph_node(gf, i);
            if !sys::ggml_backend_supports_op(backend, node) {
                return Err(format!("the device cannot run ggml op {}", (*node).op));
            }
        }
        if sys::ggml_backend_is_cpu(backend) {
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            sys::ggml_backend_cpu_set_n_threads(backend, i32::try_from(threads).unwrap_or(1));
        }
        owned.galloc = sys::ggml_gallocr_new(sys::ggml_backend_get_default_buffer_type(backend));
        if owned.galloc.is_null() || !sys::ggml_gallocr_alloc_graph(owned.galloc, gf) {
            return Err("could not allocate the scoring graph on the device".into());
        }
        sys::ggml_backend_tensor_set(
            q_all,
            q.as_ptr().cast::<c_void>(),
            0,
            std::mem::size_of_val(q),
        );
        if !mask_t.is_null() {
            sys::ggml_backend_tensor_set(
                mask_t,
                mask.as_ptr().cast::<c_void>(),
                0,
                std::mem::size_of_val(mask),
            );
        }
        if sys::ggml_backend_graph_compute(backend, gf) != sys::GGML_STATUS_SUCCESS {
            return Err("the scoring graph failed on the device".into());
        }
        let mut out = vec![0f32; d.n];
        sys::ggml_backend_tensor_get(total, out.as_mut_ptr().cast::<c_void>(), 0, d.n * f32_size);
        Ok(out)
    }
}

/// One chunk of KV heads `g0..g0 + gc`: its keys times its query heads, the softmax per row when
/// asked, summed per key: `[1, n]`.
///
/// # Safety
/// As [`run_graph`]; `ctx` owns `q_all` and `mask_t` (or it is null) and `keys` is `[row, n]` f32.
unsafe fn chunk_sums(
    ctx: *mut sys::ggml_context,
    keys: *mut sys::ggml_tensor,
    q_all: *mut sys::ggml_tensor,
    mask_t: *mut sys::ggml_tensor,
    d: &Dims,
    g0: usize,
    gc: usize,
) -> *mut sys::ggml_tensor {
    let group = d.n_head / d.n_head_kv;
    let row_elems = d.n_head_kv * d.head_dim;
    let f32_size = std::mem::size_of::<f32>();
    // SAFETY: per the contract; views stay inside `keys` and `q_all` (g0 + gc <= n_head_kv).
    unsafe {
        // This chunk's KV heads, [head_dim, n, gc] contiguous.
        let k = sys::ggml_view_3d(
            ctx,
            keys,
            i64_of(d.head_dim),
            i64_of(gc),
            i64_of(d.n),
            d.head_dim * f32_size,
            row_elems * f32_size,
            g0 * d.head_dim * f32_size,
        );
        let k = sys::ggml_cont(ctx, sys::ggml_permute(ctx, k, 0, 2, 1, 3));
        // Their query heads (GQA: head h reads KV head h / group), [head_dim, w, gc*group].
        let qc = sys::ggml_view_3d(
            ctx,
            q_all,
            i64_of(d.head_dim),
            i64_of(d.w),
            i64_of(gc * group),
            d.head_dim * f32_size,
            d.head_dim * d.w * f32_size,
            g0 * group * d.head_dim * d.w * f32_size,
        );
        // [n, w, heads]: one row of logits per (query, head).
        let mut kq = sys::ggml_mul_mat(ctx, k, qc);
        sys::ggml_mul_mat_set_prec(kq, sys::GGML_PREC_F32);
        if d.softmax {
            kq = sys::ggml_soft_max_ext(ctx, kq, mask_t, d.scale, 0.0);
        }
        let rows = sys::ggml_reshape_2d(ctx, kq, i64_of(d.n), i64_of(d.w * gc * group));
        let by_key = sys::ggml_cont(ctx, sys::ggml_transpose(ctx, rows));
        sys::ggml_sum_rows(ctx, by_key)
    }
}

/// Keys placed on a device the way a KV cache holds them (rows of `n_head_kv * head_dim` values
/// of a ggml type), to score outside a filter pass: the criterion benches and the tests.
pub struct DeviceKeys {
    ctx: *mut sys::ggml_context,
    buf: sys::ggml_backend_buffer_t,
    t: *mut sys::ggml_tensor,
    n: usize,
    n_head_kv: usize,
    head_dim: usize,
}

/// Which device [`DeviceKeys::upload`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The first GPU, or the CPU when there is none.
    Gpu,
    Cpu,
}

/// The f16 cache type, the usual `-ctk`.
pub const F16: sys::ggml_type = sys::GGML_TYPE_F16;

impl DeviceKeys {
    /// Upload `k` (`[n, n_head_kv, head_dim]` f32, row-major) as `ty` (`F16`, or any type with
    /// a reference conversion; rows a whole number of blocks), with `spare` unused cells after.
    ///
    /// # Errors
    /// Bad shapes, a type without conversion, or no memory on the device.
    pub fn upload(
        k: &[f32],
        n_head_kv: usize,
        head_dim: usize,
        ty: sys::ggml_type,
        spare: usize,
        place: Place,
    ) -> Result<Self, String> {
        // SAFETY: read-only registry lookups.
        let dev = unsafe {
            let mut dev = std::ptr::null_mut();
            if place == Place::Gpu {
                dev = sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_GPU);
            }
            if dev.is_null() {
                dev = sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU);
            }
            dev
        };
        if dev.is_null() {
            return Err("no ggml device".into());
        }
        Self::upload_to(k, n_head_kv, head_dim, ty, spare, dev)
    }

    /// [`DeviceKeys::upload`] to a given registered device.
    fn upload_to(
        k: &[f32],
        n_head_kv: usize,
        head_dim: usize,
        ty: sys::ggml_type,
        spare: usize,
        dev: sys::ggml_backend_dev_t,
    ) -> Result<Self, String> {
        let row = n_head_kv * head_dim;
        if row == 0 || k.is_empty() || !k.len().is_multiple_of(row) {
            return Err(format!("{} key values in rows of {row}", k.len()));
        }
        let n = k.len() / row;
        let cells = n + spare;
        // SAFETY: `dev` is a registered device; a private context and buffer; sizes follow from
        // `row` and `cells`; the conversion writes exactly ggml_row_size(ty, row * cells) bytes.
        unsafe {
            let traits = sys::ggml_get_type_traits(ty)
                .as_ref()
                .ok_or("unknown ggml type")?;
            if traits.blck_size <= 0 || i64_of(row) % traits.blck_size != 0 {
                return Err(format!("rows of {row} are not whole blocks of type {ty}"));
            }
            let ctx = sys::ggml_init(sys::ggml_init_params {
                mem_size: sys::ggml_tensor_overhead() * 4,
                mem_buffer: std::ptr::null_mut(),
                no_alloc: true,
            });
            if ctx.is_null() {
                return Err("ggml_init failed".into());
            }
            let t = sys::ggml_new_tensor_2d(ctx, ty, i64_of(row), i64_of(cells));
            let buf = sys::ggml_backend_alloc_ctx_tensors_from_buft(
                ctx,
                sys::ggml_backend_dev_buffer_type(dev),
            );
            if buf.is_null() {
                sys::ggml_free(ctx);
                return Err("no memory for the keys on the device".into());
            }
            let mut padded = k.to_vec();
            padded.resize(row * cells, 0.0);
            let bytes = sys::ggml_row_size(ty, i64_of(row * cells));
            let mut raw = vec![0u8; bytes];
            if ty == sys::GGML_TYPE_F32 {
                raw.copy_from_slice(std::slice::from_raw_parts(
                    padded.as_ptr().cast::<u8>(),
                    bytes,
                ));
            } else if let Some(from) = traits.from_float_ref {
                from(
                    padded.as_ptr(),
                    raw.as_mut_ptr().cast(),
                    i64_of(row * cells),
                );
            } else {
                sys::ggml_backend_buffer_free(buf);
                sys::ggml_free(ctx);
                return Err(format!("no conversion to type {ty}"));
            }
            sys::ggml_backend_tensor_set(t, raw.as_ptr().cast(), 0, bytes);
            Ok(Self {
                ctx,
                buf,
                t,
                n,
                n_head_kv,
                head_dim,
            })
        }
    }

    /// The device's name (e.g. `CUDA0`, `CPU`).
    #[must_use]
    pub fn device(&self) -> String {
        // SAFETY: a live buffer; names are NUL-terminated strings owned by ggml.
        unsafe {
            let dev =
                sys::ggml_backend_buft_get_device(sys::ggml_backend_buffer_get_type(self.buf));
            if dev.is_null() {
                return "CPU".into();
            }
            std::ffi::CStr::from_ptr(sys::ggml_backend_dev_name(dev))
                .to_string_lossy()
                .into_owned()
        }
    }

    /// The keys as stored, back as f32 (what the host path would read from the cache).
    ///
    /// # Errors
    /// A type without conversion.
    pub fn read(&self) -> Result<Vec<f32>, String> {
        let mut out = vec![0f32; self.n * self.n_head_kv * self.head_dim];
        // SAFETY: live tensor of at least n rows of this width.
        unsafe {
            let t = &*self.t;
            super::rows_to_f32(t, 0, self.n, t.nb[1], &mut out)?;
        }
        Ok(out)
    }

    /// Per-token scores of these keys under queries `q` (`[rows, n_head, head_dim]`), as the
    /// filter pass computes them on the device.
    ///
    /// # Errors
    /// Bad shapes, or the device cannot run the graph.
    pub fn scores(
        &self,
        q: &[f32],
        n_head: usize,
        scoring: Scoring,
        budget: usize,
    ) -> Result<Vec<f32>, String> {
        graph_scores(
            &CacheKeys {
                // SAFETY: live for as long as self.
                tensor: unsafe { &*self.t },
                n: self.n,
                n_head_kv: self.n_head_kv,
                head_dim: self.head_dim,
            },
            &Queries { q, n_head, scoring },
            budget,
        )
    }
}

impl Drop for DeviceKeys {
    fn drop(&mut self) {
        // SAFETY: created in `upload`, freed once.
        unsafe {
            sys::ggml_backend_buffer_free(self.buf);
            sys::ggml_free(self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select;
    use ndarray::Array3;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                #[allow(clippy::cast_precision_loss)]
                let u = (x % 20_001) as f32 / 10_000.0 - 1.0;
                u * 2.0
            })
            .collect()
    }

    /// Graph scores against the host oracle for one scoring, cache type and budget.
    fn check(scoring: Scoring, ty: sys::ggml_type, budget: usize) {
        let (n, n_head, n_head_kv, head_dim, rows) = (300, 6, 2, 32, 8);
        let k = values(n * n_head_kv * head_dim, 7);
        let q = values(rows * n_head * head_dim, 11);
        // The oracle sees the keys the cache holds (rounded to its type).
        let cache = DeviceKeys::upload(&k, n_head_kv, head_dim, ty, 45, Place::Cpu).unwrap();
        let qa = Array3::from_shape_vec((rows, n_head, head_dim), q.clone()).unwrap();
        let ka = Array3::from_shape_vec((n, n_head_kv, head_dim), cache.read().unwrap()).unwrap();
        let want = select::scores(qa.view(), ka.view(), scoring).unwrap();
        let got = cache.scores(&q, n_head, scoring, budget).unwrap();
        assert_eq!(got.len(), n);
        let top = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (j, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * top.max(1.0),
                "{scoring:?} type {ty} key {j}: graph {g} vs host {w}"
            );
        }
        let top_k = |s: &[f32]| {
            let mut idx: Vec<usize> = (0..s.len()).collect();
            idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
            idx.truncate(40);
            idx.sort_unstable();
            idx
        };
        assert_eq!(
            top_k(&got),
            top_k(want.as_slice().unwrap()),
            "{scoring:?}: same top 40"
        );
    }

    #[test]
    fn graph_scores_match_the_host_oracle() {
        for scoring in [
            Scoring::Reference,
            Scoring::HeadSoftmax,
            Scoring::WindowSoftmax { window: 4 },
            Scoring::WindowSoftmax { window: 50 },
        ] {
            check(scoring, sys::GGML_TYPE_F32, LOGIT_BUDGET);
            check(scoring, sys::GGML_TYPE_F16, LOGIT_BUDGET);
            // A budget of one KV head per chunk: the chunked sum equals the whole.
            check(scoring, sys::GGML_TYPE_F16, 1);
        }
        check(Scoring::WindowSoftmax { window: 4 }, sys::GGML_TYPE_Q8_0, 1);
    }

    /// The warm-up's graphs are scorings the device accepts (an error would leave the GPU cold
    /// without a word): checked on the CPU backend, as the other graphs are.
    #[test]
    fn warm_up_graphs_are_valid_scorings() {
        let keys = vec![0.5; WARM_UP_HEAD_DIM * WARM_UP_KEYS];
        let keys = DeviceKeys::upload(&keys, 1, WARM_UP_HEAD_DIM, F16, 0, Place::Cpu).unwrap();
        assert_eq!(warm_up_graphs(&keys), Ok(()));
    }

    #[test]
    fn bad_shapes_are_errors_not_aborts() {
        let cache =
            DeviceKeys::upload(&values(64, 3), 1, 16, sys::GGML_TYPE_F32, 0, Place::Cpu).unwrap();
        // SAFETY: live test tensor.
        let t = unsafe { &*cache.t };
        let q = values(16, 5);
        let keys = |n, heads| CacheKeys {
            tensor: t,
            n,
            n_head_kv: heads,
            head_dim: 16,
        };
        let queries = Queries {
            q: &q,
            n_head: 1,
            scoring: Scoring::HeadSoftmax,
        };
        assert!(
            graph_scores(&keys(5, 1), &queries, LOGIT_BUDGET).is_err(),
            "past the cells"
        );
        assert!(
            graph_scores(&keys(4, 2), &queries, LOGIT_BUDGET).is_err(),
            "wrong row width"
        );
        assert!(graph_scores(&keys(0, 1), &queries, LOGIT_BUDGET).is_err());
        assert_eq!(
            graph_scores(&keys(4, 1), &queries, LOGIT_BUDGET)
                .unwrap()
                .len(),
            4
        );
        assert!(DeviceKeys::upload(&values(10, 1), 1, 16, F16, 0, Place::Cpu).is_err());
        assert!(
            DeviceKeys::upload(&values(48, 1), 1, 48, sys::GGML_TYPE_Q8_0, 0, Place::Cpu).is_err()
        );
    }
}
