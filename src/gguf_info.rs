//! GGUF metadata read before llama.cpp touches the file: validates the path and the header and
//! gives presets and the CLI what they need (architecture, names, layer and head counts,
//! sliding windows).
//!
//! The header is walked by [`inspect`], a small pure parser over any buffered reader: every
//! count and length is checked against the bytes left in the file before anything is allocated
//! or looped over, big arrays are skipped rather than kept, and the rules of llama.cpp's own
//! reader (`ggml/src/gguf.cpp`) are applied, so a file that passes is one llama.cpp's reader
//! accepts too. Then the hyper-parameters llama.cpp asserts on (`GGML_ASSERT`, which aborts the
//! process) are checked: layer count, epsilons, alignment, head counts, dimensions, experts,
//! rope scaling and duplicate vocabulary entries. Error messages never hold raw bytes of the
//! file: names and values pass through [`crate::sanitize`].

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::sanitize;

/// llama.cpp's `LLAMA_MAX_LAYERS` (src/llama-hparams.h): `block_count` above it aborts.
pub const LLAMA_MAX_LAYERS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
pub const LLAMA_MAX_EXPERTS: u64 = 1024;
/// ggml's `GGML_MAX_NAME`: tensor names are shorter.
const GGML_MAX_NAME: u64 = 64;
/// The same, as an array length.
const NAME_BUF: usize = 64;
const GGML_MAX_DIMS: u32 = 4;
/// gguf.cpp's `GGUF_MAX_STRING_LENGTH` and `GGUF_MAX_ARRAY_ELEMENTS`.
const GGUF_MAX_STRING: u64 = 1 << 30;
const GGUF_MAX_ARRAY: u64 = 1 << 30;
/// ggml's `TENSOR_ALIGNMENT`: the CPU backend asserts that tensor data is this aligned.
const TENSOR_ALIGNMENT: u64 = 32;
/// Limits of our own, far above any real model, that bound memory and time on hostile input.
const MAX_KEY_LEN: u64 = 1 << 16;
const MAX_KV: u64 = 1 << 20;
const MAX_TENSORS: u64 = 1 << 20;
/// Strings up to this length are kept (names, architecture); longer ones only measured.
const KEEP_STRING: u64 = 1 << 12;
/// Numeric arrays up to this length are kept (per-layer values); longer ones skipped.
const KEEP_ARRAY: u64 = LLAMA_MAX_LAYERS;
/// What all kept strings and array elements may add up to (a hostile file of millions of short
/// keys would otherwise cost many times its size in memory); past that, values are only measured.
const KEEP_STRING_BYTES: u64 = 1 << 24;
const KEEP_ITEMS: u64 = 1 << 16;
/// Vocabulary entries checked for duplicates (real vocabularies have up to ~260K).
const CHECK_TOKENS: u64 = 1 << 22;
/// Skips up to this size read through the buffer; longer ones seek.
const SEEK_OVER: u64 = 1 << 16;

/// What gemfilter needs to know about a model file, from its GGUF header alone.
#[derive(Debug, Clone, Default)]
pub struct ModelMeta {
    pub architecture: String,
    pub name: Option<String>,
    pub basename: Option<String>,
    pub size_label: Option<String>,
    pub block_count: usize,
    pub context_length: Option<usize>,
    pub head_count: Option<usize>,
    pub head_count_kv: Option<usize>,
    /// Sliding-window size in tokens, for architectures that mix local and global layers.
    pub sliding_window: Option<usize>,
    /// Every `swa_pattern`-th layer (il % pattern == pattern - 1) is global; others slide.
    pub swa_pattern: Option<usize>,
    pub has_chat_template: bool,
    /// Where the tensor data starts (the header's length, padded to the alignment).
    pub data_offset: u64,
    /// End of the last tensor's data: the least size of a complete file.
    pub data_end: u64,
}

impl ModelMeta {
    /// True when layer `il` only attends within a sliding window (no use for selection).
    #[must_use]
    pub fn is_sliding_layer(&self, il: usize) -> bool {
        match (self.sliding_window, self.swa_pattern) {
            (Some(_), Some(p)) if p > 1 => il % p != p - 1,
            _ => false,
        }
    }

    /// Human-readable model name for messages.
    #[must_use]
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.basename.clone())
            .unwrap_or_else(|| self.architecture.clone())
    }
}

/// Architectures whose llama.cpp graph names the post-RoPE Q/K `Qcur-il`/`Kcur-il` with a
/// ROPE node; others are refused up front rather than failing mid-run.
pub const SUPPORTED_ARCHS: &[&str] = &[
    "llama", "qwen2", "qwen3", "gemma3", "mistral3", "phi3", "granite", "olmo2",
];

/// Read and validate the GGUF header at `path`.
///
/// # Errors
/// Missing file, a directory, not a GGUF file, a header that is malformed or that llama.cpp
/// would abort on, or a file shorter than its tensor data (truncated download).
pub fn read(path: &Path) -> Result<ModelMeta> {
    let shown = sanitize::path(path);
    let md =
        std::fs::metadata(path).with_context(|| format!("model file {shown} cannot be read"))?;
    if md.is_dir() {
        bail!("model path {shown} is a directory, not a GGUF file");
    }
    if !md.is_file() {
        // A FIFO would block the open below forever; devices are no model files either.
        bail!("model path {shown} is not a regular file");
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open model file {shown}"))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    inspect(&mut r, md.len()).map_err(|e| match e {
        Bad::NotGguf => anyhow::anyhow!("{shown} is not a GGUF model file (no GGUF magic)"),
        Bad::Truncated(m) => anyhow::anyhow!("{shown} is truncated: {m} (incomplete download?)"),
        Bad::Format(m) => anyhow::anyhow!("{shown} is not a valid GGUF file: {m}"),
        Bad::Model(m) => anyhow::anyhow!("{shown} is a malformed model: {m}"),
        Bad::Io(m) => anyhow::anyhow!("cannot read model file {shown}: {m}"),
    })
}

/// Why a header was refused. Every message is short and holds no raw bytes of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// No `GGUF` magic.
    NotGguf,
    /// The file ends before what its header describes.
    Truncated(String),
    /// The header breaks the GGUF format (as llama.cpp's reader checks it).
    Format(String),
    /// The header parses but holds values llama.cpp cannot load (or asserts on).
    Model(String),
    /// Reading failed.
    Io(String),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::NotGguf => write!(f, "not a GGUF file (no GGUF magic)"),
            Bad::Truncated(m) => write!(f, "truncated: {m}"),
            Bad::Format(m) => write!(f, "not a valid GGUF file: {m}"),
            Bad::Model(m) => write!(f, "malformed model: {m}"),
            Bad::Io(m) => write!(f, "read error: {m}"),
        }
    }
}

impl std::error::Error for Bad {}

/// Parse and check a GGUF header from `r`, positioned at the file's start, for a file of
/// `file_len` bytes. Only the header is read; the tensor data is never touched, so `r` may hold
/// just the header (reading past what it holds counts as truncation).
///
/// # Errors
/// See [`Bad`].
pub fn inspect<R: BufRead + Seek>(r: &mut R, file_len: u64) -> Result<ModelMeta, Bad> {
    let h = parse_header(r, file_len)?;
    check_model(&h)?;
    check_layout(&h, file_len)?;
    Ok(meta_of(&h))
}

/// One metadata value as far as gemfilter keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Decoded lossily; at most `KEEP_STRING` bytes.
    Str(String),
    /// A longer string, by length only.
    LongStr(u64),
    /// Element type, length and, for short numeric arrays, the elements.
    Array {
        ty: u32,
        len: u64,
        items: Vec<Value>,
    },
}

impl Value {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(u) => Some(u),
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }

    /// A printable form for messages (numbers as numbers, anything else by kind).
    fn show(&self) -> String {
        match self {
            Value::Uint(u) => u.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => format!("{x}"),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => sanitize::quote_max(s, 40),
            Value::LongStr(n) => format!("a string of {n} bytes"),
            Value::Array { ty, len, .. } => format!("an array of {len} {}", type_name(*ty)),
        }
    }
}

/// A key's GGUF type and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Kv {
    pub ty: u32,
    pub value: Value,
}

/// The parsed header.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub version: u32,
    pub kv: BTreeMap<String, Kv>,
    pub n_tensors: u64,
    pub alignment: u64,
    /// End of the tensor infos (before padding).
    pub header_end: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    /// End of the last tensor's data, relative to `data_offset`.
    pub data_len: u64,
    /// Whether some tensor's data starts at an offset not aligned to `TENSOR_ALIGNMENT`.
    pub misaligned_tensor: Option<u64>,
    /// Whether `tokenizer.ggml.tokens` holds the same (non-empty) string twice.
    pub duplicate_token: Option<u64>,
}

const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

fn type_name(ty: u32) -> &'static str {
    match ty {
        T_U8 => "u8",
        T_I8 => "i8",
        T_U16 => "u16",
        T_I16 => "i16",
        T_U32 => "u32",
        T_I32 => "i32",
        T_F32 => "f32",
        T_BOOL => "bool",
        T_STRING => "string",
        T_ARRAY => "array",
        T_U64 => "u64",
        T_I64 => "i64",
        T_F64 => "f64",
        _ => "unknown-type",
    }
}

/// Bytes per element of a fixed-size GGUF type.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        T_U8 | T_I8 | T_BOOL => Some(1),
        T_U16 | T_I16 => Some(2),
        T_U32 | T_I32 | T_F32 => Some(4),
        T_U64 | T_I64 | T_F64 => Some(8),
        _ => None,
    }
}

/// ggml's (block size, bytes per block) per `ggml_type`, from the vendored ggml.c type traits
/// and ggml-common.h; None for removed or unknown ids (llama.cpp refuses those).
#[must_use]
#[allow(clippy::match_same_arms)] // one row per type, as in ggml.c
pub fn ggml_type_traits(ty: u32) -> Option<(u64, u64)> {
    Some(match ty {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        40 => (64, 36),   // NVFP4
        41 => (128, 18),  // Q1_0
        42 => (64, 18),   // Q2_0
        _ => return None,
    })
}

/// A key in quotes for messages, escaped and cut only when shown.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&sanitize::quote_max(self.0, 60))
    }
}

/// Raw name bytes in quotes for messages, escaped only when shown.
struct QuotedBytes<'a>(&'a [u8]);

impl std::fmt::Display for QuotedBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&sanitize::quote_bytes(self.0, 63))
    }
}

/// A read error as a refusal: an early end of file is a truncation.
fn io_err(pos: u64, e: &std::io::Error, what: &dyn Fn() -> String) -> Bad {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Bad::Truncated(format!("{} at byte {pos} is cut off", what()))
    } else {
        Bad::Io(sanitize::quote_max(&e.to_string(), 80))
    }
}

/// A reader that knows how many bytes of the file are left and refuses to read or skip past
/// them, so no length from the file is trusted before it is compared with what remains.
struct Scan<'a, R> {
    r: &'a mut R,
    pos: u64,
    len: u64,
}

impl<R: BufRead + Seek> Scan<'_, R> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn need(&self, n: u64, what: &dyn Fn() -> String) -> Result<(), Bad> {
        if n > self.left() {
            return Err(Bad::Truncated(format!(
                "{} at byte {} needs {n} bytes, the file has {} left",
                what(),
                self.pos,
                self.left()
            )));
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8], what: &dyn Fn() -> String) -> Result<(), Bad> {
        self.need(buf.len() as u64, what)?;
        let pos = self.pos;
        self.r.read_exact(buf).map_err(|e| io_err(pos, &e, what))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, Bad> {
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, Bad> {
        let mut b = [0u8; 8];
        self.fill(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn skip(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<(), Bad> {
        self.need(n, what)?;
        if n <= SEEK_OVER {
            // Through the buffer: most skips are a token or two long.
            let mut left = n;
            while left > 0 {
                let pos = self.pos;
                let buf = self.r.fill_buf().map_err(|e| io_err(pos, &e, what))?;
                if buf.is_empty() {
                    return Err(Bad::Truncated(format!(
                        "{} at byte {} is cut off",
                        what(),
                        self.pos
                    )));
                }
                let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                self.r.consume(k);
                left -= k as u64;
                self.pos += k as u64;
            }
        } else {
            let delta = i64::try_from(n).map_err(|_| Bad::Format("offset overflow".into()))?;
            let pos = self.pos;
            self.r
                .seek(SeekFrom::Current(delta))
                .map_err(|e| io_err(pos, &e, what))?;
            self.pos += n;
        }
        Ok(())
    }

    /// Hash the next `n` bytes (n already checked) without keeping them.
    fn hash(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<u64, Bad> {
        self.need(n, what)?;
        let mut h = Fnv64::default();
        let mut left = n;
        while left > 0 {
            let pos = self.pos;
            let buf = self.r.fill_buf().map_err(|e| io_err(pos, &e, what))?;
            if buf.is_empty() {
                return Err(Bad::Truncated(format!(
                    "{} at byte {} is cut off",
                    what(),
                    self.pos
                )));
            }
            let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            h.write(&buf[..k]);
            self.r.consume(k);
            left -= k as u64;
            self.pos += k as u64;
        }
        Ok(h.0)
    }

    /// `n` bytes (n already known to be small).
    fn bytes(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<Vec<u8>, Bad> {
        self.need(n, what)?;
        let mut v = vec![0u8; usize::try_from(n).map_err(|_| Bad::Format("size overflow".into()))?];
        self.fill(&mut v, what)?;
        Ok(v)
    }

    /// A GGUF string's length, checked against llama.cpp's limit and the bytes left.
    fn str_len(&mut self, what: &dyn Fn() -> String) -> Result<u64, Bad> {
        let n = self.u64(what)?;
        if n > GGUF_MAX_STRING {
            return Err(Bad::Format(format!(
                "{} claims a length of {n} bytes (llama.cpp reads at most {GGUF_MAX_STRING})",
                what()
            )));
        }
        self.need(n, what)?;
        Ok(n)
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    // a is a power of two.
    x.checked_add(a - 1).map(|v| v & !(a - 1))
}

/// Walk the header: magic, version, counts, key/values, tensor infos, as gguf.cpp does.
///
/// # Errors
/// See [`Bad`].
#[allow(clippy::too_many_lines)]
pub fn parse_header<R: BufRead + Seek>(r: &mut R, file_len: u64) -> Result<Header, Bad> {
    let mut s = Scan {
        r,
        pos: 0,
        len: file_len,
    };
    let mut magic = [0u8; 4];
    if file_len < 4 || s.fill(&mut magic, &|| "magic".into()).is_err() || &magic != b"GGUF" {
        return Err(Bad::NotGguf);
    }
    let version = s.u32(&|| "the version".into())?;
    if version == 0 || version.trailing_zeros() >= 16 {
        return Err(Bad::Format(format!(
            "version {version} is not one llama.cpp reads (wrong byte order?)"
        )));
    }
    if version == 1 {
        return Err(Bad::Format(
            "GGUF version 1 is no longer supported by llama.cpp".into(),
        ));
    }
    if version > 3 {
        return Err(Bad::Format(format!(
            "GGUF version {version} is newer than llama.cpp reads (3)"
        )));
    }
    let n_tensors = s.u64(&|| "the tensor count".into())?;
    let n_kv = s.u64(&|| "the key/value count".into())?;
    // Smallest possible entries: a key/value is a length, one byte of key, a type and one byte
    // of value; a tensor info a length, ndims, a type and an offset.
    let min_need = u128::from(n_kv) * 14 + u128::from(n_tensors) * 24;
    if i64::try_from(n_tensors).is_err() || n_tensors > MAX_TENSORS {
        return Err(Bad::Format(format!(
            "it claims {n_tensors} tensors (at most {MAX_TENSORS} are plausible)"
        )));
    }
    if i64::try_from(n_kv).is_err() || n_kv > MAX_KV {
        return Err(Bad::Format(format!(
            "it claims {n_kv} metadata keys (at most {MAX_KV} are plausible)"
        )));
    }
    if min_need > u128::from(s.left()) {
        return Err(Bad::Truncated(format!(
            "its {n_kv} keys and {n_tensors} tensors need at least {min_need} bytes of header, the file has {} left",
            s.left()
        )));
    }

    let mut kv: BTreeMap<String, Kv> = BTreeMap::new();
    let mut duplicate_token = None;
    let (mut kept_bytes, mut kept_items) = (0u64, 0u64);
    for i in 0..n_kv {
        let klen = s.u64(&|| format!("the length of key #{i}"))?;
        if klen == 0 {
            return Err(Bad::Format(format!("key #{i} is empty")));
        }
        if klen > MAX_KEY_LEN {
            return Err(Bad::Format(format!(
                "key #{i} claims a length of {klen} bytes (at most {MAX_KEY_LEN} are plausible)"
            )));
        }
        let kbytes = s.bytes(klen, &|| format!("key #{i}"))?;
        let key = String::from_utf8_lossy(&kbytes).into_owned();
        let shown = Quoted(&key);
        if kv.contains_key(&key) {
            return Err(Bad::Format(format!("key {shown} appears twice")));
        }
        let what = || format!("the value of {shown}");
        let ty = s.u32(&what)?;
        let value = if ty == T_ARRAY {
            let ety = s.u32(&what)?;
            let n = s.u64(&what)?;
            if n > GGUF_MAX_ARRAY {
                return Err(Bad::Format(format!(
                    "{shown} claims an array of {n} elements (llama.cpp reads at most {GGUF_MAX_ARRAY})"
                )));
            }
            if ety == T_STRING {
                // Every string has at least its 8-byte length.
                if n.saturating_mul(8) > s.left() {
                    return Err(Bad::Truncated(format!(
                        "{shown} claims {n} strings, more than the {} bytes left can hold",
                        s.left()
                    )));
                }
                let tokens = key == "tokenizer.ggml.tokens";
                let mut seen: HashSet<u64> = HashSet::new();
                for j in 0..n {
                    let what_j = || format!("string #{j} of {shown}");
                    let len = s.str_len(&what_j)?;
                    if tokens && len > 0 && j < CHECK_TOKENS && duplicate_token.is_none() {
                        if !seen.insert(s.hash(len, &what_j)?) {
                            duplicate_token = Some(j);
                        }
                    } else {
                        s.skip(len, &what_j)?;
                    }
                }
                Value::Array {
                    ty: ety,
                    len: n,
                    items: Vec::new(),
                }
            } else if let Some(size) = fixed_size(ety) {
                let bytes = n * size; // n ≤ 2^30, size ≤ 8: no overflow
                if bytes > s.left() {
                    return Err(Bad::Truncated(format!(
                        "{shown} claims {n} elements of {}, {bytes} bytes; the file has {} left",
                        type_name(ety),
                        s.left()
                    )));
                }
                if n <= KEEP_ARRAY && kept_items + n <= KEEP_ITEMS {
                    kept_items += n;
                    let mut items = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
                    for _ in 0..n {
                        items.push(scalar(&mut s, ety, &what)?);
                    }
                    Value::Array {
                        ty: ety,
                        len: n,
                        items,
                    }
                } else {
                    s.skip(bytes, &what)?;
                    Value::Array {
                        ty: ety,
                        len: n,
                        items: Vec::new(),
                    }
                }
            } else {
                return Err(Bad::Format(format!(
                    "{shown} is an array of invalid type {ety}"
                )));
            }
        } else if ty == T_STRING {
            let len = s.str_len(&what)?;
            if len <= KEEP_STRING && kept_bytes + len <= KEEP_STRING_BYTES {
                kept_bytes += len;
                Value::Str(String::from_utf8_lossy(&s.bytes(len, &what)?).into_owned())
            } else {
                s.skip(len, &what)?;
                Value::LongStr(len)
            }
        } else if fixed_size(ty).is_some() {
            scalar(&mut s, ty, &what)?
        } else {
            return Err(Bad::Format(format!("{shown} has invalid type {ty}")));
        };
        kv.insert(key, Kv { ty, value });
    }

    let alignment = match kv.get("general.alignment") {
        None => 32,
        Some(Kv {
            ty: T_U32,
            value: Value::Uint(a),
        }) => {
            if *a == 0 || !a.is_power_of_two() {
                return Err(Bad::Format(format!(
                    "general.alignment is {a}, not a power of two"
                )));
            }
            *a
        }
        Some(k) => {
            return Err(Bad::Format(format!(
                "general.alignment must be a u32, it is {}",
                type_name(k.ty)
            )))
        }
    };

    // Names are under 64 bytes: kept inline (length byte + bytes), no allocation per tensor.
    let mut names: HashSet<[u8; NAME_BUF + 1]> = HashSet::new();
    let mut expected = 0u64; // next tensor's offset: all are packed in order, padded
    let mut data_len = 0u64;
    let mut offsets = Vec::new();
    for i in 0..n_tensors {
        let what = || format!("tensor #{i}");
        let nlen = s.u64(&|| format!("the name length of tensor #{i}"))?;
        if nlen >= GGML_MAX_NAME {
            return Err(Bad::Format(format!(
                "tensor #{i} claims a name of {nlen} bytes (llama.cpp allows at most {})",
                GGML_MAX_NAME - 1
            )));
        }
        let mut name = [0u8; NAME_BUF];
        let name = &mut name[..usize::try_from(nlen).unwrap_or(0)];
        s.fill(name, &what)?;
        let shown = QuotedBytes(name);
        let mut slot = [0u8; NAME_BUF + 1];
        slot[0] = u8::try_from(nlen).unwrap_or(u8::MAX);
        slot[1..=name.len()].copy_from_slice(name);
        if !names.insert(slot) {
            return Err(Bad::Format(format!("tensor name {shown} appears twice")));
        }
        let what = || format!("tensor {shown}");
        let n_dims = s.u32(&what)?;
        if n_dims > GGML_MAX_DIMS {
            return Err(Bad::Format(format!(
                "tensor {shown} has {n_dims} dimensions (at most {GGML_MAX_DIMS})"
            )));
        }
        let mut ne = [1u64; 4];
        for d in ne.iter_mut().take(n_dims as usize) {
            let v = s.u64(&what)?;
            if i64::try_from(v).is_err() {
                return Err(Bad::Format(format!(
                    "tensor {shown} has a negative dimension"
                )));
            }
            *d = v;
        }
        let mut nel: u64 = 1;
        for &d in &ne {
            nel = nel
                .checked_mul(d)
                .filter(|&x| i64::try_from(x).is_ok())
                .ok_or_else(|| {
                    Bad::Format(format!(
                        "tensor {shown} has more elements than fit in 63 bits"
                    ))
                })?;
        }
        let ty = s.u32(&what)?;
        let Some((blck, tsize)) = ggml_type_traits(ty) else {
            return Err(Bad::Format(format!(
                "tensor {shown} has unknown ggml type {ty}"
            )));
        };
        if ne[0] % blck != 0 {
            return Err(Bad::Format(format!(
                "tensor {shown} has {} elements per row, not a multiple of its type's block of {blck}",
                ne[0]
            )));
        }
        let nbytes = (nel / blck)
            .checked_mul(tsize)
            .ok_or_else(|| Bad::Format(format!("tensor {shown} is larger than 2^64 bytes")))?;
        let offset = s.u64(&what)?;
        if offset != expected {
            return Err(Bad::Format(format!(
                "tensor {shown} is at data offset {offset}, expected {expected}"
            )));
        }
        offsets.push(offset);
        let padded = align_up(nbytes, alignment)
            .ok_or_else(|| Bad::Format(format!("tensor {shown} size overflows")))?;
        data_len = offset
            .checked_add(nbytes)
            .ok_or_else(|| Bad::Format(format!("tensor {shown} ends past 2^64")))?;
        expected = expected
            .checked_add(padded)
            .ok_or_else(|| Bad::Format(format!("tensor {shown} ends past 2^64")))?;
    }
    let header_end = s.pos;
    let data_offset = if n_tensors > 0 {
        align_up(header_end, alignment).ok_or_else(|| Bad::Format("offset overflow".into()))?
    } else {
        header_end
    };
    let misaligned_tensor = offsets
        .iter()
        .map(|&o| data_offset.saturating_add(o))
        .find(|o| o % TENSOR_ALIGNMENT != 0);
    Ok(Header {
        version,
        kv,
        n_tensors,
        alignment,
        header_end,
        data_offset,
        data_len,
        misaligned_tensor,
        duplicate_token,
    })
}

fn scalar<R: BufRead + Seek>(
    s: &mut Scan<'_, R>,
    ty: u32,
    what: &dyn Fn() -> String,
) -> Result<Value, Bad> {
    Ok(match ty {
        T_U8 | T_I8 | T_BOOL => {
            let mut b = [0u8; 1];
            s.fill(&mut b, what)?;
            match ty {
                T_U8 => Value::Uint(u64::from(b[0])),
                T_I8 => Value::Int(i64::from(i8::from_le_bytes(b))),
                _ => Value::Bool(b[0] != 0),
            }
        }
        T_U16 | T_I16 => {
            let mut b = [0u8; 2];
            s.fill(&mut b, what)?;
            if ty == T_U16 {
                Value::Uint(u64::from(u16::from_le_bytes(b)))
            } else {
                Value::Int(i64::from(i16::from_le_bytes(b)))
            }
        }
        T_U32 | T_I32 | T_F32 => {
            let mut b = [0u8; 4];
            s.fill(&mut b, what)?;
            match ty {
                T_U32 => Value::Uint(u64::from(u32::from_le_bytes(b))),
                T_I32 => Value::Int(i64::from(i32::from_le_bytes(b))),
                _ => Value::Float(f64::from(f32::from_le_bytes(b))),
            }
        }
        _ => {
            let mut b = [0u8; 8];
            s.fill(&mut b, what)?;
            match ty {
                T_U64 => Value::Uint(u64::from_le_bytes(b)),
                T_I64 => Value::Int(i64::from_le_bytes(b)),
                _ => Value::Float(f64::from_le_bytes(b)),
            }
        }
    })
}

/// FNV-1a 64 (duplicate-token detection: equal strings collide by construction, different
/// ones with a chance of about 2^-64 per pair).
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The hyper-parameters llama.cpp asserts on (or divides by), checked with the key's name.
#[allow(clippy::too_many_lines)]
fn check_model(h: &Header) -> Result<(), Bad> {
    let bad = |m: String| Err(Bad::Model(m));
    let arch = match h.kv.get("general.architecture").map(|k| &k.value) {
        Some(Value::Str(a)) if !a.is_empty() => a.clone(),
        Some(v) => return bad(format!("general.architecture is {}", v.show())),
        None => return bad("it has no general.architecture".into()),
    };
    let qa = sanitize::quote_max(&arch, 40);
    let key = |k: &str| format!("{arch}.{k}");
    // Keys named in messages: the architecture part quoted only if it needs escaping.
    let named = |k: &str| {
        if arch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
            && arch.len() <= 40
        {
            format!("{arch}.{k}")
        } else {
            format!("{qa}.{k}")
        }
    };
    let get = |k: &str| h.kv.get(&key(k)).map(|kv| &kv.value);

    // A scalar count, or every element of a per-layer array (with its index).
    let counts = |k: &str| -> Option<Vec<(Option<usize>, &Value)>> {
        match get(k)? {
            Value::Array { items, .. } => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (Some(i), v))
                    .collect(),
            ),
            v => Some(vec![(None, v)]),
        }
    };

    let blocks = match get("block_count") {
        None => {
            return bad(format!(
                "{} (its number of layers) is missing",
                named("block_count")
            ))
        }
        Some(v) => match v.as_u64() {
            Some(0) => {
                return bad(format!(
                    "{} is 0: the model has no layers",
                    named("block_count")
                ))
            }
            Some(n) if n <= LLAMA_MAX_LAYERS => n,
            Some(n) => {
                return bad(format!(
                    "{} is {n}; llama.cpp supports at most {LLAMA_MAX_LAYERS} layers",
                    named("block_count")
                ))
            }
            None => {
                return bad(format!(
                    "{} is {}, not a layer count",
                    named("block_count"),
                    v.show()
                ))
            }
        },
    };
    if let Some(v) = get("nextn_predict_layers") {
        if v.as_u64().is_none_or(|n| n > blocks) {
            return bad(format!(
                "{} is {}, more than its {blocks} layers",
                named("nextn_predict_layers"),
                v.show()
            ));
        }
    }

    // Every float hyper-parameter must be a number; epsilons must not be negative.
    for (k, kv) in h.kv.range(format!("{arch}.")..) {
        if !k.starts_with(&format!("{arch}.")) {
            break;
        }
        let floats: Vec<f64> = match &kv.value {
            Value::Float(x) => vec![*x],
            Value::Array { items, .. } => items
                .iter()
                .filter_map(|v| {
                    if let Value::Float(x) = v {
                        Some(*x)
                    } else {
                        None
                    }
                })
                .collect(),
            _ => continue,
        };
        let shown_key = sanitize::quote_max(k, 80);
        for x in floats {
            if !x.is_finite() {
                return bad(format!("{shown_key} is {x}, not a finite number"));
            }
            if k.ends_with("epsilon") && x < 0.0 {
                return bad(format!("{shown_key} is {x}; an epsilon cannot be negative"));
            }
        }
    }

    if let Some(v) = get("rope.scaling.type") {
        if !matches!(v, Value::Str(s) if ["none", "linear", "yarn", "longrope"].contains(&s.as_str()))
        {
            return bad(format!(
                "{} is {} (llama.cpp knows none, linear, yarn, longrope)",
                named("rope.scaling.type"),
                v.show()
            ));
        }
    }

    // Experts and expert groups, as load_hparams asserts on them.
    let count = |k: &str| -> Result<u64, Bad> {
        match get(k) {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| Bad::Model(format!("{} is {}", named(k), v.show()))),
        }
    };
    let experts = count("expert_count")?;
    if experts > LLAMA_MAX_EXPERTS {
        return bad(format!(
            "{} is {experts}; llama.cpp supports at most {LLAMA_MAX_EXPERTS}",
            named("expert_count")
        ));
    }
    let mut used_max = 0;
    for (_, v) in counts("expert_used_count").unwrap_or_default() {
        match v.as_u64() {
            Some(u) if u <= experts => used_max = used_max.max(u),
            _ => {
                return bad(format!(
                    "{} is {} with {experts} experts",
                    named("expert_used_count"),
                    v.show()
                ))
            }
        }
    }
    if experts > 0 && used_max == 0 {
        return bad(format!(
            "{} routes to no expert of {experts}",
            named("expert_used_count")
        ));
    }
    let groups = count("expert_group_count")?;
    let group_used = count("expert_group_used_count")?;
    let groups_ok = if experts == 0 {
        groups == 0
    } else {
        groups < experts
            && (groups <= 1
                || (experts.is_multiple_of(groups) && group_used > 0 && group_used < groups))
    };
    if !groups_ok {
        return bad(format!(
            "{} {groups} (using {group_used}) does not fit {experts} experts",
            named("expert_group_count")
        ));
    }

    // Per-layer arrays longer than the layer count are refused by llama.cpp (a throw), but an
    // array of fewer elements than layers would be read past its end by our own code: refuse.
    for k in [
        "attention.head_count",
        "attention.head_count_kv",
        "feed_forward_length",
    ] {
        if let Some(Value::Array { len, .. }) = get(k) {
            if *len != blocks {
                return bad(format!(
                    "{} has {len} entries for {blocks} layers",
                    named(k)
                ));
            }
        }
    }

    if !crate::gguf_info::SUPPORTED_ARCHS.contains(&arch.as_str()) {
        // Shapes of other architectures are left to llama.cpp; gemfilter refuses them later.
        return Ok(());
    }
    let positive = |k: &str, required: bool| -> Result<Option<u64>, Bad> {
        match get(k) {
            None if required => Err(Bad::Model(format!("{} is missing", named(k)))),
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(Bad::Model(format!("{} is {}", named(k), v.show()))),
            },
        }
    };
    let n_embd = positive("embedding_length", true)?.unwrap_or(1);
    positive("context_length", true)?;
    let n_head_all = counts("attention.head_count")
        .ok_or_else(|| Bad::Model(format!("{} is missing", named("attention.head_count"))))?;
    if n_head_all.is_empty() {
        return bad(format!("{} is empty", named("attention.head_count")));
    }
    let kv_all = counts("attention.head_count_kv");
    for (i, (idx, v)) in n_head_all.iter().enumerate() {
        let at = idx.map_or(String::new(), |l| format!(" (layer {l})"));
        let Some(nh) = v.as_u64().filter(|&n| n > 0) else {
            return bad(format!(
                "{} is {}{at}",
                named("attention.head_count"),
                v.show()
            ));
        };
        let nkv = match &kv_all {
            None => nh,
            Some(all) => {
                let (_, kvv) = all
                    .get(i.min(all.len().saturating_sub(1)))
                    .copied()
                    .ok_or_else(|| {
                        Bad::Model(format!("{} is empty", named("attention.head_count_kv")))
                    })?;
                match kvv.as_u64() {
                    Some(n) if n > 0 => n,
                    _ => {
                        return bad(format!(
                            "{} is {}{at}",
                            named("attention.head_count_kv"),
                            kvv.show()
                        ))
                    }
                }
            }
        };
        if nh % nkv != 0 {
            return bad(format!(
                "{} {nkv} does not divide {} {nh}{at}",
                named("attention.head_count_kv"),
                named("attention.head_count")
            ));
        }
        let head_dim = if let Some(d) = positive("attention.key_length", false)? {
            d
        } else {
            if !n_embd.is_multiple_of(nh) {
                return bad(format!(
                    "{} {n_embd} is not a multiple of {} {nh}",
                    named("embedding_length"),
                    named("attention.head_count")
                ));
            }
            n_embd / nh
        };
        positive("attention.value_length", false)?;
        if let Some(v) = get("rope.dimension_count") {
            if v.as_u64().is_none_or(|r| r > head_dim || r % 2 != 0) {
                return bad(format!(
                    "{} is {} for heads of {head_dim}",
                    named("rope.dimension_count"),
                    v.show()
                ));
            }
        }
    }
    if let Some(ff) = counts("feed_forward_length") {
        for (idx, v) in ff {
            if v.as_u64().is_none_or(|n| n == 0) {
                let at = idx.map_or(String::new(), |l| format!(" (layer {l})"));
                return bad(format!(
                    "{} is {}{at}",
                    named("feed_forward_length"),
                    v.show()
                ));
            }
        }
    }
    if let Some(v) = get("attention.sliding_window") {
        if v.as_u64().is_none() {
            return bad(format!(
                "{} is {}",
                named("attention.sliding_window"),
                v.show()
            ));
        }
    }
    if let Some(j) = h.duplicate_token {
        return bad(format!(
            "tokenizer.ggml.tokens holds token #{j} twice (llama.cpp aborts on that)"
        ));
    }
    Ok(())
}

/// The data section: aligned as ggml needs it, and inside the file.
fn check_layout(h: &Header, file_len: u64) -> Result<(), Bad> {
    if h.n_tensors > 0 && h.data_offset > file_len {
        return Err(Bad::Truncated(format!(
            "its tensor data would start at byte {}, past the file's end at {file_len}",
            h.data_offset
        )));
    }
    if let Some(at) = h.misaligned_tensor {
        return Err(Bad::Model(format!(
            "general.alignment is {}: tensor data at byte {at} is not {TENSOR_ALIGNMENT}-byte aligned as llama.cpp needs",
            h.alignment
        )));
    }
    let data_end = h.data_offset.saturating_add(h.data_len);
    if file_len < data_end {
        return Err(Bad::Truncated(format!(
            "its tensors need {data_end} bytes, the file has {file_len}"
        )));
    }
    Ok(())
}

fn meta_of(h: &Header) -> ModelMeta {
    let s = |k: &str| match h.kv.get(k).map(|kv| &kv.value) {
        Some(Value::Str(v)) => Some(v.clone()),
        _ => None,
    };
    let arch = s("general.architecture").unwrap_or_default();
    let u = |k: &str| {
        h.kv.get(&format!("{arch}.{k}"))
            .and_then(|kv| match &kv.value {
                // Per-layer arrays (e.g. head_count_kv): take the first element.
                Value::Array { items, .. } => items.first().and_then(Value::as_u64),
                v => v.as_u64(),
            })
            .and_then(|x| usize::try_from(x).ok())
    };
    let sliding_window = u("attention.sliding_window").filter(|&w| w > 0);
    // llama.cpp hard-codes the local/global interleave for these architectures.
    let swa_pattern = u("attention.sliding_window_pattern").or(match arch.as_str() {
        "gemma3" => Some(6),
        "gemma2" => Some(2),
        _ => None,
    });
    ModelMeta {
        block_count: u("block_count").unwrap_or(0),
        context_length: u("context_length"),
        head_count: u("attention.head_count"),
        head_count_kv: u("attention.head_count_kv"),
        sliding_window,
        swa_pattern: sliding_window.and(swa_pattern),
        name: s("general.name"),
        basename: s("general.basename"),
        size_label: s("general.size_label"),
        has_chat_template: h.kv.contains_key("tokenizer.chat_template"),
        architecture: arch,
        data_offset: h.data_offset,
        data_end: h.data_offset.saturating_add(h.data_len),
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_global_layers() {
        let m = ModelMeta {
            sliding_window: Some(512),
            swa_pattern: Some(6),
            ..Default::default()
        };
        let global: Vec<usize> = (0..18).filter(|&il| !m.is_sliding_layer(il)).collect();
        assert_eq!(global, vec![5, 11, 17]);
        let plain = ModelMeta::default();
        assert!(!plain.is_sliding_layer(3));
    }

    #[test]
    fn rejects_non_gguf_and_dirs() {
        let dir = std::env::temp_dir().join(format!("gf-meta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read(&dir).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let f = dir.join("x.gguf");
        std::fs::write(&f, b"not a model").unwrap();
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("not a GGUF"), "{e}");
        let e = format!("{:#}", read(&dir.join("missing.gguf")).unwrap_err());
        assert!(e.contains("cannot be read"), "{e}");
        if Path::new("/dev/null").exists() {
            let e = read(Path::new("/dev/null")).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A little GGUF writer for hand-made headers.
    struct H(Vec<u8>);
    impl H {
        fn new(n_tensors: u64, n_kv: u64) -> Self {
            let mut v = b"GGUF".to_vec();
            v.extend(3u32.to_le_bytes());
            v.extend(n_tensors.to_le_bytes());
            v.extend(n_kv.to_le_bytes());
            H(v)
        }
        fn str(mut self, s: &str) -> Self {
            self.0.extend((s.len() as u64).to_le_bytes());
            self.0.extend(s.as_bytes());
            self
        }
        fn u32(mut self, x: u32) -> Self {
            self.0.extend(x.to_le_bytes());
            self
        }
        fn u64(mut self, x: u64) -> Self {
            self.0.extend(x.to_le_bytes());
            self
        }
        fn kv_str(self, k: &str, v: &str) -> Self {
            self.str(k).u32(T_STRING).str(v)
        }
        fn kv_u32(self, k: &str, v: u32) -> Self {
            self.str(k).u32(T_U32).u32(v)
        }
        fn kv_f32(self, k: &str, v: f32) -> Self {
            self.str(k).u32(T_F32).u32(v.to_bits())
        }
        fn llama(n_kv_extra: u64) -> Self {
            H::llama_with(n_kv_extra, &[])
        }
        /// The llama header with some of its u32 values replaced.
        fn llama_with(n_kv_extra: u64, over: &[(&str, u32)]) -> Self {
            let base = [
                ("llama.block_count", 30),
                ("llama.embedding_length", 576),
                ("llama.context_length", 8192),
                ("llama.attention.head_count", 9),
                ("llama.attention.head_count_kv", 3),
                ("llama.feed_forward_length", 1536),
            ];
            let mut h = H::new(0, 7 + n_kv_extra).kv_str("general.architecture", "llama");
            for (k, v) in base {
                let v = over.iter().find(|(o, _)| *o == k).map_or(v, |o| o.1);
                h = h.kv_u32(k, v);
            }
            h
        }
        fn check(&self) -> Result<ModelMeta, Bad> {
            inspect(&mut std::io::Cursor::new(&self.0), self.0.len() as u64)
        }
    }

    fn model_err(h: &H) -> String {
        match h.check() {
            Err(Bad::Model(m)) => m,
            other => panic!("expected a model error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_plain_header() {
        let m = H::llama(0).check().unwrap();
        assert_eq!(m.block_count, 30);
        assert_eq!(m.head_count_kv, Some(3));
    }

    #[test]
    fn hyper_parameters_llama_cpp_asserts_on() {
        let e = model_err(&H::new(0, 1).kv_str("general.architecture", "llama"));
        assert!(
            e.contains("llama.block_count") && e.contains("missing"),
            "{e}"
        );
        let mut h = H::new(0, 2).kv_str("general.architecture", "llama");
        h = h.kv_u32("llama.block_count", 0);
        assert!(model_err(&h).contains("llama.block_count is 0"));
        let h = H::new(0, 2)
            .kv_str("general.architecture", "llama")
            .kv_u32("llama.block_count", 1_000_000_000);
        let e = model_err(&h);
        assert!(e.contains("1000000000") && e.contains("at most 512"), "{e}");
        let e = model_err(&H::llama(1).kv_f32("llama.attention.layer_norm_rms_epsilon", f32::NAN));
        assert!(
            e.contains("layer_norm_rms_epsilon") && e.contains("NaN"),
            "{e}"
        );
        let e = model_err(&H::llama(1).kv_f32("llama.attention.layer_norm_epsilon", -1e-5));
        assert!(e.contains("negative"), "{e}");
        let e = model_err(&H::llama_with(0, &[("llama.attention.head_count_kv", 0)]));
        assert!(e.contains("llama.attention.head_count_kv is 0"), "{e}");
        let e = model_err(&H::llama_with(0, &[("llama.attention.head_count_kv", 4)]));
        assert!(e.contains("does not divide"), "{e}");
        let e = model_err(&H::llama_with(0, &[("llama.attention.head_count", 0)]));
        assert!(e.contains("llama.attention.head_count is 0"), "{e}");
        let e = model_err(&H::llama_with(0, &[("llama.embedding_length", 0)]));
        assert!(e.contains("llama.embedding_length is 0"), "{e}");
        let e = model_err(&H::llama_with(0, &[("llama.embedding_length", 577)]));
        assert!(e.contains("not a multiple"), "{e}");
        let e = model_err(&H::llama(1).kv_u32("llama.expert_group_count", 2));
        assert!(e.contains("expert_group_count"), "{e}");
        let e = model_err(&H::llama(1).kv_u32("llama.expert_count", 8));
        assert!(e.contains("routes to no expert"), "{e}");
        // A duplicate key is a format error.
        let h = H::llama(1).kv_u32("llama.block_count", 3);
        assert!(matches!(h.check(), Err(Bad::Format(m)) if m.contains("twice")));
        let e = model_err(&H::llama(1).kv_str("llama.rope.scaling.type", "\x1b[31mevil"));
        assert!(
            e.contains("rope.scaling.type") && !e.contains('\x1b'),
            "{e}"
        );
        // Unsupported architectures get only the generic checks (GemFilter refuses them later).
        let h = H::new(0, 2)
            .kv_str("general.architecture", "mamba")
            .kv_u32("mamba.block_count", 4);
        assert_eq!(h.check().unwrap().block_count, 4);
    }

    #[test]
    fn lengths_and_counts_are_checked_before_use() {
        // A u8 array of 2^40 elements in a tiny file: refused at once, nothing allocated.
        let h = H::new(0, 1)
            .str("general.languages")
            .u32(T_ARRAY)
            .u32(T_U8)
            .u64(1 << 40);
        let e = h.check().unwrap_err();
        assert!(
            e.to_string().contains("2^30") || e.to_string().contains("1073741824"),
            "{e}"
        );
        let h = H::new(0, 1).str("k").u32(T_ARRAY).u32(T_U8).u64(1 << 20);
        assert!(matches!(h.check(), Err(Bad::Truncated(_))));
        let h = H::new(0, 1)
            .str("k")
            .u32(T_ARRAY)
            .u32(T_STRING)
            .u64(1 << 29);
        assert!(matches!(h.check(), Err(Bad::Truncated(_))));
        // A key or string longer than the file.
        let h = H::new(0, 1).u64(50_000_000).u32(0);
        assert!(matches!(h.check(), Err(Bad::Format(_) | Bad::Truncated(_))));
        // Counts larger than the file can hold.
        assert!(matches!(H::new(1 << 40, 0).check(), Err(Bad::Format(_))));
        assert!(matches!(H::new(1000, 1000).check(), Err(Bad::Truncated(_))));
        assert!(matches!(H::new(0, u64::MAX).check(), Err(Bad::Format(_))));
        // A tensor name of 50,000,000 bytes: refused by its length, never read or shown.
        let h = H::llama(0);
        let mut v = h.0.clone();
        v[8..16].copy_from_slice(&1u64.to_le_bytes());
        v.extend(50_000_000u64.to_le_bytes());
        v.extend(vec![b'\n'; 4096]);
        let e = H(v).check().unwrap_err().to_string();
        assert!(
            e.contains("50000000") && e.len() < 200 && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn tensors_are_checked_like_gguf_cpp() {
        let tensor = |h: H, name: &str, ne: &[u64], ty: u32, off: u64| {
            let mut h = h.str(name).u32(ne.len() as u32);
            for &d in ne {
                h = h.u64(d);
            }
            h.u32(ty).u64(off)
        };
        let base = || {
            let mut h = H::llama(0);
            h.0[8..16].copy_from_slice(&2u64.to_le_bytes());
            h
        };
        let pad = |mut h: H, data: usize| {
            while !h.0.len().is_multiple_of(32) {
                h.0.push(0);
            }
            h.0.extend(vec![0u8; data]);
            h
        };
        let ok = tensor(tensor(base(), "a", &[8], 0, 0), "b", &[32, 2], 2, 32);
        let m = pad(ok, 32 + 36).check().unwrap();
        assert_eq!(m.data_end - m.data_offset, 32 + 36);
        // Truncated data.
        let short = tensor(tensor(base(), "a", &[8], 0, 0), "b", &[32, 2], 2, 32);
        assert!(matches!(pad(short, 40).check(), Err(Bad::Truncated(_))));
        // Wrong offset, duplicate name, bad type, row not a multiple of the block.
        let e = tensor(tensor(base(), "a", &[8], 0, 0), "b", &[32], 2, 0);
        assert!(pad(e, 100)
            .check()
            .unwrap_err()
            .to_string()
            .contains("expected 32"));
        let e = tensor(tensor(base(), "a", &[8], 0, 0), "a", &[32], 2, 32);
        assert!(pad(e, 100)
            .check()
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let e = tensor(tensor(base(), "a", &[8], 0, 0), "b", &[32], 4, 32);
        assert!(pad(e, 100)
            .check()
            .unwrap_err()
            .to_string()
            .contains("unknown ggml type 4"));
        let e = tensor(tensor(base(), "a", &[8], 0, 0), "b", &[16], 2, 32);
        assert!(pad(e, 100)
            .check()
            .unwrap_err()
            .to_string()
            .contains("block of 32"));
        let e = tensor(base(), "a", &[1 << 40, 1 << 40], 0, 0);
        assert!(e.check().unwrap_err().to_string().contains("63 bits"));
        // general.alignment 1: tensors land off ggml's 32-byte alignment.
        let mut h = H::llama(1).kv_u32("general.alignment", 1);
        h.0[8..16].copy_from_slice(&2u64.to_le_bytes());
        let h = tensor(tensor(h, "a", &[3], 0, 0), "b", &[8], 0, 12);
        let mut v = h.0;
        v.extend(vec![0u8; 64]);
        let e = H(v).check().unwrap_err().to_string();
        assert!(e.contains("general.alignment is 1"), "{e}");
        let e = H::llama(1)
            .kv_u32("general.alignment", 48)
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
    }

    #[test]
    fn duplicate_vocabulary_entries_are_refused() {
        let h = H::llama(1)
            .str("tokenizer.ggml.tokens")
            .u32(T_ARRAY)
            .u32(T_STRING)
            .u64(3)
            .str("a")
            .str("b")
            .str("a");
        assert!(model_err(&h).contains("token #2 twice"));
    }
}
