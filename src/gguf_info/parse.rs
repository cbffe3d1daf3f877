//! The bounded GGUF header parser: every count and length is checked against the bytes left in
//! the file before anything is allocated or looped over, big arrays are skipped rather than kept,
//! and the rules of llama.cpp's own reader (`ggml/src/gguf.cpp`) are applied.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Seek, SeekFrom};

use super::{Bad, LLAMA_MAX_LAYERS, TENSOR_ALIGNMENT};
use crate::sanitize;

/// ggml's `GGML_MAX_NAME`: tensor names are shorter.
const GGML_MAX_NAME: u64 = 64;
/// The same, as an array length.
const NAME_BUF: usize = 64;
const GGML_MAX_DIMS: u32 = 4;
/// gguf.cpp's `GGUF_MAX_STRING_LENGTH` and `GGUF_MAX_ARRAY_ELEMENTS`.
const GGUF_MAX_STRING: u64 = 1 << 30;
const GGUF_MAX_ARRAY: u64 = 1 << 30;
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
    pub(super) fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(u) => Some(u),
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }

    /// A printable form for messages (numbers as numbers, anything else by kind).
    pub(super) fn show(&self) -> String {
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

pub(super) const T_U8: u32 = 0;
pub(super) const T_I8: u32 = 1;
pub(super) const T_U16: u32 = 2;
pub(super) const T_I16: u32 = 3;
pub(super) const T_U32: u32 = 4;
pub(super) const T_I32: u32 = 5;
pub(super) const T_F32: u32 = 6;
pub(super) const T_BOOL: u32 = 7;
pub(super) const T_STRING: u32 = 8;
pub(super) const T_ARRAY: u32 = 9;
pub(super) const T_U64: u32 = 10;
pub(super) const T_I64: u32 = 11;
pub(super) const T_F64: u32 = 12;

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
