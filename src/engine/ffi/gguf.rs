//! GGUF files through llama.cpp's own gguf API (ggml/include/gguf.h). Writing: key/values and
//! tensor metadata go into a `gguf_context`, [`Gguf::write_meta`] writes what
//! `gguf_get_meta_data` serialises, and the caller streams the tensor data through
//! [`TensorData`], which pads each tensor to the context's alignment as `gguf_write_to_file`
//! would; nothing holds the weights in memory, so multi-GB files stream. Reading: [`Gguf::open`]
//! loads a file's metadata (no tensor data) with gguf's own reader. ggml's f16 conversion and
//! `to_float` are here too. Every `unsafe` block states the invariant it relies on; gguf and
//! ggml abort the process on misuse, so every argument they would assert on is checked first.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::io::Write;
use std::path::Path;
use std::ptr::NonNull;

use anyhow::{bail, ensure, Context, Result};
use llama_cpp_sys_2 as sys;

/// The tensor storage types gemfilter writes (ggml's names).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q8_0,
    Q4_K,
}

impl TensorType {
    fn raw(self) -> sys::ggml_type {
        match self {
            TensorType::F32 => sys::GGML_TYPE_F32,
            TensorType::F16 => sys::GGML_TYPE_F16,
            TensorType::Q4_0 => sys::GGML_TYPE_Q4_0,
            TensorType::Q8_0 => sys::GGML_TYPE_Q8_0,
            TensorType::Q4_K => sys::GGML_TYPE_Q4_K,
        }
    }

    /// The `ggml_type` id stored in the file.
    #[must_use]
    pub fn id(self) -> u32 {
        self.raw()
    }

    /// ggml's name (`q4_0`, `q4_K`, `f16`).
    #[must_use]
    pub fn name(self) -> &'static str {
        // SAFETY: ggml_type_name returns a pointer into ggml's static, NUL-terminated type
        // table for every valid type (all of ours are), never freed.
        let name = unsafe { CStr::from_ptr(sys::ggml_type_name(self.raw())) };
        name.to_str().unwrap_or("?")
    }

    /// Values per block (1 for f32/f16).
    #[must_use]
    pub fn block_size(self) -> usize {
        // SAFETY: a read of ggml's static type table for a valid type.
        let n = unsafe { sys::ggml_blck_size(self.raw()) };
        usize::try_from(n).unwrap_or(1)
    }

    /// Bytes per block.
    #[must_use]
    pub fn type_size(self) -> usize {
        // SAFETY: a read of ggml's static type table for a valid type.
        unsafe { sys::ggml_type_size(self.raw()) }
    }

    /// Whether a row of `ne0` values is whole blocks of this type.
    #[must_use]
    pub fn fits_row(self, ne0: u64) -> bool {
        ne0 > 0 && ne0.is_multiple_of(self.block_size() as u64)
    }

    /// Bytes of a tensor of `dims` (ne0 first), or None when rows are not whole blocks.
    #[must_use]
    pub fn nbytes(self, dims: &[u64]) -> Option<u64> {
        let (&ne0, rest) = dims.split_first()?;
        if !self.fits_row(ne0) {
            return None;
        }
        let rows = rest.iter().try_fold(1u64, |a, &d| a.checked_mul(d))?;
        (ne0 / self.block_size() as u64)
            .checked_mul(self.type_size() as u64)?
            .checked_mul(rows)
    }
}

/// ggml's f32 → f16 (IEEE half bits).
#[must_use]
pub fn f32_to_f16(x: f32) -> u16 {
    // SAFETY: a pure function of its argument.
    unsafe { sys::ggml_fp32_to_fp16(x) }
}

/// ggml's f16 → f32.
#[must_use]
pub fn f16_to_f32(h: u16) -> f32 {
    // SAFETY: a pure function of its argument.
    unsafe { sys::ggml_fp16_to_fp32(h) }
}

/// ggml's row conversion of `src` to f16 bits.
#[must_use]
pub fn f32_to_f16_row(src: &[f32]) -> Vec<u16> {
    let mut out = vec![0u16; src.len()];
    let n = i64::try_from(src.len()).unwrap_or(i64::MAX);
    // SAFETY: `src` holds and `out` has room for exactly `n` values; the call reads and writes
    // only those.
    unsafe { sys::ggml_fp32_to_fp16_row(src.as_ptr(), out.as_mut_ptr(), n) };
    out
}

/// The values of `raw` (whole blocks of `ty`), through ggml's `to_float`.
///
/// # Errors
/// `raw` is not whole blocks.
pub fn to_f32(ty: TensorType, raw: &[u8]) -> Result<Vec<f32>> {
    let bs = ty.type_size();
    ensure!(
        raw.len().is_multiple_of(bs),
        "{} bytes are not whole {} blocks",
        raw.len(),
        ty.name()
    );
    let mut out = vec![0f32; raw.len() / bs * ty.block_size()];
    if ty == TensorType::F32 {
        for (v, c) in out.iter_mut().zip(raw.chunks_exact(4)) {
            *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    } else {
        super::convert_to_f32(ty.raw(), raw, &mut out).map_err(anyhow::Error::msg)?;
    }
    Ok(out)
}

fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{what} {s:?} contains a NUL byte"))
}

/// A tensor index as gguf takes it (indices come from gguf's own i64 count).
fn tensor_id(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// A NUL-terminated string owned by gguf, copied into JSON.
///
/// # Safety
/// `p` points at a NUL-terminated string alive for the call.
unsafe fn c_str_json(p: *const c_char) -> serde_json::Value {
    // SAFETY: the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    serde_json::Value::String(s.to_string_lossy().into_owned())
}

/// Element `i` of a buffer of GGUF scalars of type `ty`, as JSON (None for non-scalar types).
///
/// # Safety
/// `data` points at least `i + 1` values of `ty`.
unsafe fn scalar_json(ty: sys::gguf_type, data: *const u8, i: usize) -> Option<serde_json::Value> {
    // SAFETY: the caller's contract; reads are unaligned-safe.
    unsafe {
        let at = |size: usize| data.add(i * size);
        Some(match ty {
            sys::GGUF_TYPE_UINT8 => at(1).read().into(),
            sys::GGUF_TYPE_INT8 => at(1).cast::<i8>().read().into(),
            sys::GGUF_TYPE_UINT16 => at(2).cast::<u16>().read_unaligned().into(),
            sys::GGUF_TYPE_INT16 => at(2).cast::<i16>().read_unaligned().into(),
            sys::GGUF_TYPE_UINT32 => at(4).cast::<u32>().read_unaligned().into(),
            sys::GGUF_TYPE_INT32 => at(4).cast::<i32>().read_unaligned().into(),
            sys::GGUF_TYPE_FLOAT32 => at(4).cast::<f32>().read_unaligned().into(),
            sys::GGUF_TYPE_BOOL => (at(1).read() != 0).into(),
            sys::GGUF_TYPE_UINT64 => at(8).cast::<u64>().read_unaligned().into(),
            sys::GGUF_TYPE_INT64 => at(8).cast::<i64>().read_unaligned().into(),
            sys::GGUF_TYPE_FLOAT64 => at(8).cast::<f64>().read_unaligned().into(),
            _ => return None,
        })
    }
}

/// A `ggml_context` that only holds tensor metadata (`no_alloc`), freed on drop.
struct MetaContext(NonNull<sys::ggml_context>);

impl MetaContext {
    /// Room for the metadata of one tensor.
    fn one_tensor() -> Result<Self> {
        // SAFETY: plain-data parameters; with no_alloc ggml allocates only the object headers
        // (mem_size, one tensor's overhead) and no tensor data.
        let ctx = unsafe {
            sys::ggml_init(sys::ggml_init_params {
                mem_size: sys::ggml_tensor_overhead(),
                mem_buffer: std::ptr::null_mut(),
                no_alloc: true,
            })
        };
        NonNull::new(ctx)
            .map(Self)
            .context("ggml_init could not allocate a context")
    }
}

impl Drop for MetaContext {
    fn drop(&mut self) {
        // SAFETY: the pointer came from ggml_init and is freed exactly once, here.
        unsafe { sys::ggml_free(self.0.as_ptr()) };
    }
}

/// One tensor's entry in a GGUF's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ne0 first, trailing dimensions of 1 dropped (as `ggml_n_dims` counts them).
    pub dims: Vec<u64>,
    /// The `ggml_type` id ([`TensorType::id`]).
    pub type_id: u32,
    /// Offset in the data section.
    pub offset: u64,
    pub size: u64,
}

/// A GGUF's metadata: an owned `gguf_context` (freed on drop), empty to build a file or read
/// from one.
#[derive(Debug)]
pub struct Gguf {
    ctx: NonNull<sys::gguf_context>,
}

impl Default for Gguf {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Gguf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from gguf_init_empty or gguf_init_from_file and is freed
        // exactly once, here.
        unsafe { sys::gguf_free(self.ctx.as_ptr()) };
    }
}

impl Gguf {
    /// An empty GGUF (version 3, default alignment).
    ///
    /// # Panics
    /// If `gguf_init_empty` returns null (it uses C++ `new`, which aborts instead).
    #[must_use]
    pub fn new() -> Self {
        // SAFETY: no arguments; returns a fresh heap context owned by the caller.
        let ctx = unsafe { sys::gguf_init_empty() };
        Self {
            ctx: NonNull::new(ctx).expect("gguf_init_empty returned null"),
        }
    }

    /// The metadata of the GGUF at `path` (gguf's own reader; no tensor data is read).
    ///
    /// # Errors
    /// A path with a NUL byte, or a file gguf refuses (its reason goes to llama.cpp's log).
    pub fn open(path: &Path) -> Result<Self> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes())
            .with_context(|| format!("path {} contains a NUL byte", path.display()))?;
        let params = sys::gguf_init_params {
            no_alloc: true,
            ctx: std::ptr::null_mut(),
        };
        // SAFETY: `cpath` is NUL-terminated and alive across the call; with a null `ctx` gguf
        // creates no ggml context and reads only the metadata, returning null on any error.
        let ctx = unsafe { sys::gguf_init_from_file(cpath.as_ptr(), params) };
        let ctx =
            NonNull::new(ctx).with_context(|| format!("gguf could not read {}", path.display()))?;
        Ok(Self { ctx })
    }

    /// The value of `key` as JSON (numbers, bools, strings and arrays of them), or None when
    /// the key is absent.
    #[must_use]
    pub fn value(&self, key: &str) -> Option<serde_json::Value> {
        let k = CString::new(key).ok()?;
        let ctx = self.ctx.as_ptr();
        // SAFETY: `self.ctx` is live and `k` NUL-terminated; gguf_find_key returns -1 or a
        // valid index.
        let id = unsafe { sys::gguf_find_key(ctx, k.as_ptr()) };
        if id < 0 {
            return None;
        }
        // SAFETY: `id` is a valid key index. Strings are read with the string getters and
        // copied out at once; other values with gguf_get_val_data (one element) or
        // gguf_get_arr_data (gguf_get_arr_n elements) of the type gguf reports, which is what
        // those buffers hold.
        unsafe {
            match sys::gguf_get_kv_type(ctx, id) {
                sys::GGUF_TYPE_STRING => Some(c_str_json(sys::gguf_get_val_str(ctx, id))),
                sys::GGUF_TYPE_ARRAY => {
                    let (ty, n) = (
                        sys::gguf_get_arr_type(ctx, id),
                        sys::gguf_get_arr_n(ctx, id),
                    );
                    if ty == sys::GGUF_TYPE_STRING {
                        let strs = (0..n).map(|i| c_str_json(sys::gguf_get_arr_str(ctx, id, i)));
                        return Some(serde_json::Value::Array(strs.collect()));
                    }
                    let data = sys::gguf_get_arr_data(ctx, id).cast::<u8>();
                    (0..n).map(|i| scalar_json(ty, data, i)).collect()
                }
                ty => scalar_json(ty, sys::gguf_get_val_data(ctx, id).cast::<u8>(), 0),
            }
        }
    }

    /// Offset of the data section in the file (read files only; 0 for a built one).
    #[must_use]
    pub fn data_offset(&self) -> u64 {
        // SAFETY: `self.ctx` is live.
        unsafe { sys::gguf_get_data_offset(self.ctx.as_ptr()) as u64 }
    }

    /// Every tensor's metadata, in file order.
    #[must_use]
    pub fn tensors(&self) -> Vec<TensorInfo> {
        let ctx = self.ctx.as_ptr();
        (0..self.n_tensors())
            .map(|i| {
                let (offset, size) = self.tensor_extent(i);
                // SAFETY: `i` is below gguf_get_n_tensors; the name is NUL-terminated and
                // copied at once, and ne points at GGML_MAX_DIMS (4) values.
                let (name, ne, ty) = unsafe {
                    let id = tensor_id(i);
                    let ne = std::slice::from_raw_parts(sys::gguf_get_tensor_ne(ctx, id), 4);
                    (
                        CStr::from_ptr(sys::gguf_get_tensor_name(ctx, id))
                            .to_string_lossy()
                            .into_owned(),
                        ne.to_vec(),
                        sys::gguf_get_tensor_type(ctx, id),
                    )
                };
                let n_dims = ne.iter().rposition(|&d| d != 1).map_or(1, |p| p + 1);
                TensorInfo {
                    name,
                    dims: ne[..n_dims].iter().map(|&d| d.unsigned_abs()).collect(),
                    type_id: ty,
                    offset,
                    size,
                }
            })
            .collect()
    }

    /// The key as a C string; `general.alignment` is refused (gguf asserts on its type and the
    /// padding of [`TensorData`] follows the context's own alignment).
    fn key(key: &str) -> Result<CString> {
        if key == "general.alignment" {
            bail!("general.alignment cannot be set here");
        }
        c_string("key", key)
    }

    /// # Errors
    /// A key or value with a NUL byte.
    pub fn set_str(&mut self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (Self::key(key)?, c_string("value", value)?);
        // SAFETY: `self.ctx` is live; both strings are NUL-terminated and gguf copies them.
        unsafe { sys::gguf_set_val_str(self.ctx.as_ptr(), k.as_ptr(), v.as_ptr()) };
        Ok(())
    }

    /// # Errors
    /// A key with a NUL byte.
    pub fn set_u32(&mut self, key: &str, value: u32) -> Result<()> {
        let k = Self::key(key)?;
        // SAFETY: `self.ctx` is live; the key is NUL-terminated and copied by gguf.
        unsafe { sys::gguf_set_val_u32(self.ctx.as_ptr(), k.as_ptr(), value) };
        Ok(())
    }

    /// # Errors
    /// A key with a NUL byte.
    pub fn set_f32(&mut self, key: &str, value: f32) -> Result<()> {
        let k = Self::key(key)?;
        // SAFETY: `self.ctx` is live; the key is NUL-terminated and copied by gguf.
        unsafe { sys::gguf_set_val_f32(self.ctx.as_ptr(), k.as_ptr(), value) };
        Ok(())
    }

    /// # Errors
    /// A key with a NUL byte.
    pub fn set_bool(&mut self, key: &str, value: bool) -> Result<()> {
        let k = Self::key(key)?;
        // SAFETY: `self.ctx` is live; the key is NUL-terminated and copied by gguf.
        unsafe { sys::gguf_set_val_bool(self.ctx.as_ptr(), k.as_ptr(), value) };
        Ok(())
    }

    /// # Errors
    /// A key or string with a NUL byte.
    pub fn set_arr_str<S: AsRef<str>>(&mut self, key: &str, values: &[S]) -> Result<()> {
        let k = Self::key(key)?;
        let owned = values
            .iter()
            .map(|s| c_string("array string", s.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let mut ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        // SAFETY: `self.ctx` is live; `ptrs` holds `ptrs.len()` NUL-terminated strings kept
        // alive by `owned` across the call; gguf only reads and copies them (the
        // `char **` is not written through).
        unsafe {
            sys::gguf_set_arr_str(self.ctx.as_ptr(), k.as_ptr(), ptrs.as_mut_ptr(), ptrs.len());
        };
        Ok(())
    }

    /// # Errors
    /// A key with a NUL byte.
    pub fn set_arr_f32(&mut self, key: &str, values: &[f32]) -> Result<()> {
        let k = Self::key(key)?;
        // SAFETY: `self.ctx` is live; `values` holds `values.len()` f32s (GGUF_TYPE_FLOAT32 is
        // 4 bytes each), which gguf copies.
        unsafe {
            sys::gguf_set_arr_data(
                self.ctx.as_ptr(),
                k.as_ptr(),
                sys::GGUF_TYPE_FLOAT32,
                values.as_ptr().cast::<c_void>(),
                values.len(),
            );
        }
        Ok(())
    }

    /// # Errors
    /// A key with a NUL byte.
    pub fn set_arr_i32(&mut self, key: &str, values: &[i32]) -> Result<()> {
        let k = Self::key(key)?;
        // SAFETY: `self.ctx` is live; `values` holds `values.len()` i32s (GGUF_TYPE_INT32 is
        // 4 bytes each), which gguf copies.
        unsafe {
            sys::gguf_set_arr_data(
                self.ctx.as_ptr(),
                k.as_ptr(),
                sys::GGUF_TYPE_INT32,
                values.as_ptr().cast::<c_void>(),
                values.len(),
            );
        }
        Ok(())
    }

    /// Add the metadata of a tensor of `dims` (ne0 first, 1 to 4 dims); its data follows the
    /// previous tensor's in the file.
    ///
    /// # Errors
    /// A name that is a duplicate, too long or has a NUL byte; bad dims; rows that are not
    /// whole blocks of `ty`.
    pub fn add_tensor(&mut self, name: &str, dims: &[u64], ty: TensorType) -> Result<()> {
        let cname = c_string("tensor name", name)?;
        ensure!(
            (1..=4).contains(&dims.len()) && dims.iter().all(|&d| d > 0),
            "tensor {name}: bad dims {dims:?}"
        );
        ensure!(
            ty.nbytes(dims).is_some_and(|n| i64::try_from(n).is_ok()),
            "tensor {name}: {dims:?} is not whole {} rows",
            ty.name()
        );
        let ne = dims
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<Result<Vec<_>, _>>()?;
        let n_dims = i32::try_from(ne.len())?;
        // SAFETY: `self.ctx` is live and `cname` NUL-terminated.
        let exists = unsafe { sys::gguf_find_tensor(self.ctx.as_ptr(), cname.as_ptr()) } >= 0;
        ensure!(!exists, "duplicate tensor name {name}");
        let meta = MetaContext::one_tensor()?;
        // SAFETY: `meta` has room for one tensor header (no data: no_alloc); type, n_dims
        // (1..=4) and ne (positive, whole blocks, size fits i64) were checked above, which is
        // all ggml_new_tensor asserts on. `ne` outlives the call.
        let t = unsafe { sys::ggml_new_tensor(meta.0.as_ptr(), ty.raw(), n_dims, ne.as_ptr()) };
        let t = NonNull::new(t).context("ggml_new_tensor failed")?;
        // SAFETY: `t` points at the tensor just created in `meta`, alive until `meta` drops.
        let room = unsafe { t.as_ref().name.len() };
        ensure!(
            name.len() < room,
            "tensor name {name} is longer than ggml's {} bytes",
            room - 1
        );
        // SAFETY: `t` is live; the name fits the inline name buffer (checked) and is copied.
        // gguf_add_tensor copies the whole ggml_tensor struct (name inline, data null), so the
        // gguf context keeps nothing that points into `meta`, which is freed on return.
        unsafe {
            sys::ggml_set_name(t.as_ptr(), cname.as_ptr());
            sys::gguf_add_tensor(self.ctx.as_ptr(), t.as_ptr());
        }
        Ok(())
    }

    /// Tensors added so far.
    #[must_use]
    pub fn n_tensors(&self) -> usize {
        // SAFETY: `self.ctx` is live.
        let n = unsafe { sys::gguf_get_n_tensors(self.ctx.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Alignment of the data section and of every tensor in it.
    #[must_use]
    pub fn alignment(&self) -> u64 {
        // SAFETY: `self.ctx` is live.
        unsafe { sys::gguf_get_alignment(self.ctx.as_ptr()) as u64 }
    }

    /// (offset in the data section, bytes) of tensor `i`.
    ///
    /// # Panics
    /// If `i` is not below [`Gguf::n_tensors`].
    #[must_use]
    pub fn tensor_extent(&self, i: usize) -> (u64, u64) {
        assert!(i < self.n_tensors(), "tensor {i} of {}", self.n_tensors());
        let id = tensor_id(i);
        // SAFETY: `self.ctx` is live and `id` is a valid tensor index (checked above).
        unsafe {
            (
                sys::gguf_get_tensor_offset(self.ctx.as_ptr(), id) as u64,
                sys::gguf_get_tensor_size(self.ctx.as_ptr(), id) as u64,
            )
        }
    }

    /// Bytes of the data section: every tensor, each padded to the alignment.
    #[must_use]
    pub fn data_len(&self) -> u64 {
        match self.n_tensors() {
            0 => 0,
            n => {
                let (offset, size) = self.tensor_extent(n - 1);
                offset + size.next_multiple_of(self.alignment())
            }
        }
    }

    /// The metadata exactly as gguf writes it: header, key/values, tensor infos, padding.
    #[must_use]
    pub fn meta(&self) -> Vec<u8> {
        // SAFETY: `self.ctx` is live; gguf_get_meta_data writes exactly gguf_get_meta_size
        // bytes, which `buf` holds, and nothing changes the context between the two calls.
        unsafe {
            let mut buf = vec![0u8; sys::gguf_get_meta_size(self.ctx.as_ptr())];
            sys::gguf_get_meta_data(self.ctx.as_ptr(), buf.as_mut_ptr().cast::<c_void>());
            buf
        }
    }

    /// Size of the whole file.
    #[must_use]
    pub fn file_len(&self) -> u64 {
        // SAFETY: `self.ctx` is live.
        let meta = unsafe { sys::gguf_get_meta_size(self.ctx.as_ptr()) } as u64;
        meta + self.data_len()
    }

    /// Write the metadata to `out`; the tensor data follows through the returned writer.
    ///
    /// # Errors
    /// Write errors.
    pub fn write_meta<W: Write>(&self, mut out: W) -> Result<TensorData<W>> {
        out.write_all(&self.meta())
            .context("writing the GGUF header")?;
        Ok(TensorData {
            out,
            sizes: (0..self.n_tensors())
                .map(|i| self.tensor_extent(i).1)
                .collect(),
            alignment: self.alignment(),
            current: 0,
            written: 0,
        })
    }
}

/// The data section, streamed: every tensor's bytes in order, padded as gguf pads them.
#[derive(Debug)]
pub struct TensorData<W: Write> {
    out: W,
    sizes: Vec<u64>,
    alignment: u64,
    current: usize,
    written: u64,
}

impl<W: Write> TensorData<W> {
    /// The next bytes of the current tensor; its padding follows once it is complete.
    ///
    /// # Errors
    /// Bytes beyond the last tensor or past the current one's end; write errors.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let size = *self
            .sizes
            .get(self.current)
            .context("tensor data past the last tensor")?;
        let len = bytes.len() as u64;
        ensure!(
            self.written + len <= size,
            "tensor {}: {} bytes written past its {size}",
            self.current,
            self.written + len
        );
        self.out.write_all(bytes)?;
        self.written += len;
        if self.written == size {
            let pad = size.next_multiple_of(self.alignment) - size;
            self.out.write_all(&vec![0u8; usize::try_from(pad)?])?;
            self.current += 1;
            self.written = 0;
        }
        Ok(())
    }

    /// The underlying writer, once every tensor is complete.
    ///
    /// # Errors
    /// Tensors still missing data.
    pub fn finish(self) -> Result<W> {
        ensure!(
            self.current == self.sizes.len(),
            "tensor data incomplete: {} of {} tensors written",
            self.current,
            self.sizes.len()
        );
        Ok(self.out)
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact conversions
mod tests {
    use super::*;

    #[test]
    fn types_follow_ggml() {
        assert_eq!(TensorType::Q4_0.nbytes(&[64, 3]), Some(2 * 18 * 3));
        assert_eq!(TensorType::Q4_K.nbytes(&[256]), Some(144));
        assert_eq!(TensorType::Q8_0.nbytes(&[32, 2, 2]), Some(34 * 4));
        assert_eq!(TensorType::F16.nbytes(&[3]), Some(6));
        assert_eq!(TensorType::Q4_0.nbytes(&[48]), None);
        assert_eq!(TensorType::Q4_K.name(), "q4_K");
        assert_eq!(TensorType::Q8_0.id(), 8);
        assert_eq!(f16_to_f32(f32_to_f16(0.5)), 0.5);
        assert_eq!(f32_to_f16_row(&[1.0, -2.0]), [0x3c00, 0xc000]);
        let mut q8 = vec![0u8; 34];
        q8[..2].copy_from_slice(&f32_to_f16(0.5).to_le_bytes());
        q8[2] = 4;
        assert_eq!(to_f32(TensorType::Q8_0, &q8).unwrap()[..2], [2.0, 0.0]);
        assert!(to_f32(TensorType::Q8_0, &q8[..33]).is_err());
    }

    #[test]
    fn metadata_and_padded_data_round_trip() {
        let mut g = Gguf::new();
        g.set_str("general.architecture", "llama").unwrap();
        g.set_u32("llama.block_count", 2).unwrap();
        g.set_arr_str("tokenizer.ggml.tokens", &["a", "b"]).unwrap();
        g.set_arr_f32("s", &[1.0, 2.0]).unwrap();
        g.add_tensor("a", &[3], TensorType::F32).unwrap();
        g.add_tensor("b", &[32, 2], TensorType::Q4_0).unwrap();
        assert!(g.add_tensor("a", &[3], TensorType::F32).is_err());
        assert!(g.add_tensor("c", &[33], TensorType::Q4_0).is_err());
        assert!(g
            .add_tensor(&"x".repeat(64), &[1], TensorType::F32)
            .is_err());
        assert!(g.set_u32("general.alignment", 64).is_err());
        assert!(g.set_str("k", "a\0b").is_err());
        assert_eq!(g.n_tensors(), 2);
        assert_eq!(g.tensor_extent(1), (32, 36));
        assert_eq!(g.data_len(), 32 + 64);
        let meta = g.meta();
        assert_eq!(&meta[..4], b"GGUF");
        assert_eq!(meta.len() % 32, 0);

        let mut w = g.write_meta(Vec::new()).unwrap();
        w.write(&[0u8; 12]).unwrap();
        assert!(w.write(&[0u8; 37]).is_err());
        w.write(&[7u8; 36]).unwrap();
        assert!(w.write(&[0]).is_err());
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() as u64, g.file_len());

        let path = std::env::temp_dir().join(format!("gguf_rt_{}.gguf", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let f = Gguf::open(&path);
        std::fs::remove_file(&path).unwrap();
        let f = f.unwrap();
        assert_eq!(f.value("llama.block_count"), Some(serde_json::json!(2)));
        assert_eq!(
            f.value("tokenizer.ggml.tokens"),
            Some(serde_json::json!(["a", "b"]))
        );
        assert_eq!(f.value("s"), Some(serde_json::json!([1.0, 2.0])));
        assert_eq!(f.value("missing"), None);
        let t = &f.tensors()[1];
        assert_eq!(
            (t.name.as_str(), t.dims.as_slice(), t.offset, t.size),
            ("b", &[32u64, 2][..], 32, 36)
        );
        assert_eq!(t.type_id, TensorType::Q4_0.id());
        assert_eq!(f.data_offset(), meta.len() as u64);
        let start = usize::try_from(f.data_offset() + 32).unwrap();
        assert_eq!(bytes[start..start + 36], [7u8; 36]);
    }
}
