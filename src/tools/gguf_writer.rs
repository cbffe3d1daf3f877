//! A small GGUF v3 writer: metadata of every GGUF value type, tensor infos, and tensor data
//! streamed in order, so a multi-gigabyte file never has to sit in memory.
//!
//! Layout (ggml/include/gguf.h): magic, version, tensor count, KV count, the KV pairs, the
//! tensor infos, padding to the alignment, then each tensor's data padded to the alignment
//! (the last one too, as ggml's own writer does). Little-endian only.
//!
//! Also here: the ggml block layouts this project writes (f16, Q4_0, Q8_0, Q4_K), because a
//! writer of quantized tensors has to agree with ggml-common.h byte for byte.

// A general writer: today's callers use only some types, value kinds and helpers.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::Write;

use anyhow::{bail, ensure, Context, Result};

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const GGUF_VERSION: u32 = 3;
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml's GGML_MAX_NAME is 64 including the terminating NUL.
pub const MAX_TENSOR_NAME_LEN: usize = 63;
pub const MAX_DIMS: usize = 4;

/// GGUF metadata value type ids (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

/// A metadata value. Arrays of arrays are not representable: llama.cpp's reader rejects them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Array),
}

/// A homogeneous metadata array.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

macro_rules! value_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Self {
                Value::$v(x)
            }
        }
        impl From<Vec<$t>> for Value {
            fn from(x: Vec<$t>) -> Self {
                Value::Array(Array::$v(x))
            }
        }
    )*};
}
value_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64);

impl From<&str> for Value {
    fn from(x: &str) -> Self {
        Value::String(x.to_owned())
    }
}

impl From<Vec<&str>> for Value {
    fn from(x: Vec<&str>) -> Self {
        Value::Array(Array::String(x.into_iter().map(str::to_owned).collect()))
    }
}

impl From<Array> for Value {
    fn from(x: Array) -> Self {
        Value::Array(x)
    }
}

impl Value {
    #[must_use]
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
            Value::Array(_) => ValueType::Array,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(v) => out.push(*v),
            Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Bool(v) => out.push(u8::from(*v)),
            Value::String(v) => put_str(out, v),
            Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Array(a) => a.encode(out),
        }
    }
}

impl Array {
    #[must_use]
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn encode(&self, out: &mut Vec<u8>) {
        fn each<T: Copy, const N: usize>(out: &mut Vec<u8>, v: &[T], f: impl Fn(T) -> [u8; N]) {
            out.reserve(v.len() * N);
            for &x in v {
                out.extend_from_slice(&f(x));
            }
        }
        out.extend_from_slice(&(self.element_type() as u32).to_le_bytes());
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        match self {
            Array::U8(v) => out.extend_from_slice(v),
            Array::I8(v) => each(out, v, i8::to_le_bytes),
            Array::U16(v) => each(out, v, u16::to_le_bytes),
            Array::I16(v) => each(out, v, i16::to_le_bytes),
            Array::U32(v) => each(out, v, u32::to_le_bytes),
            Array::I32(v) => each(out, v, i32::to_le_bytes),
            Array::F32(v) => each(out, v, f32::to_le_bytes),
            Array::Bool(v) => each(out, v, |b| [u8::from(b)]),
            Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
            Array::U64(v) => each(out, v, u64::to_le_bytes),
            Array::I64(v) => each(out, v, i64::to_le_bytes),
            Array::F64(v) => each(out, v, f64::to_le_bytes),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// ggml tensor types with their ids (`enum ggml_type`) and block geometry.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

impl GgmlType {
    /// The id stored in the tensor info.
    #[must_use]
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::BF16 => 30,
        }
    }

    /// Elements per block; a row (ne0) must be a multiple of it.
    #[must_use]
    pub fn block_size(self) -> u64 {
        match self {
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
                QK_K as u64
            }
            _ => 1,
        }
    }

    /// Bytes per block (`sizeof(block_xxx)` in ggml-common.h).
    #[must_use]
    pub fn type_size(self) -> u64 {
        match self {
            GgmlType::F32 | GgmlType::I32 => 4,
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => 2,
            GgmlType::I8 => 1,
            GgmlType::I64 | GgmlType::F64 => 8,
            GgmlType::Q4_0 => Q4_0_BYTES as u64,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => Q8_0_BYTES as u64,
            GgmlType::Q2_K => 84,
            GgmlType::Q3_K => 110,
            GgmlType::Q4_K => Q4_K_BYTES as u64,
            GgmlType::Q5_K => 176,
            GgmlType::Q6_K => 210,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q2_K => "q2_K",
            GgmlType::Q3_K => "q3_K",
            GgmlType::Q4_K => "q4_K",
            GgmlType::Q5_K => "q5_K",
            GgmlType::Q6_K => "q6_K",
            GgmlType::I8 => "i8",
            GgmlType::I16 => "i16",
            GgmlType::I32 => "i32",
            GgmlType::I64 => "i64",
            GgmlType::F64 => "f64",
            GgmlType::BF16 => "bf16",
        }
    }

    /// Whether rows of `ne0` elements can be stored in this type.
    #[must_use]
    pub fn fits_row(self, ne0: u64) -> bool {
        ne0.is_multiple_of(self.block_size())
    }

    /// Bytes of a tensor of this type and shape (ggml_nbytes for a contiguous tensor), or
    /// `None` when a row does not fill whole blocks or the size overflows.
    #[must_use]
    pub fn nbytes(self, dims: &[u64]) -> Option<u64> {
        let ne0 = dims.first().copied().unwrap_or(1);
        if !self.fits_row(ne0) {
            return None;
        }
        let n = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        (n / self.block_size()).checked_mul(self.type_size())
    }
}

/// `x` rounded up to a multiple of `align` (a power of two).
#[must_use]
pub fn align_up(x: u64, align: u64) -> u64 {
    x.div_ceil(align) * align
}

/// Where and how one tensor sits in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ne0 first (the contiguous dimension), as GGUF lists them.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the data section; a multiple of the alignment.
    pub offset: u64,
    /// Unpadded size in bytes.
    pub nbytes: u64,
}

/// Collects metadata and tensor infos, then writes the header and hands out a
/// [`TensorDataWriter`] for the data.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    kv: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
    alignment: u64,
    data_len: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    #[must_use]
    pub fn new() -> Self {
        Self {
            kv: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
            alignment: DEFAULT_ALIGNMENT,
            data_len: 0,
        }
    }

    /// Add a metadata pair. Keys must be unique (llama.cpp refuses duplicates);
    /// `general.alignment` must be a u32 power of two and set before any tensor.
    pub fn add_kv(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Result<()> {
        let key = key.into();
        let value = value.into();
        ensure!(!key.is_empty(), "GGUF metadata key is empty");
        ensure!(
            !self.keys.contains(&key),
            "duplicate GGUF metadata key '{key}'"
        );
        if key == ALIGNMENT_KEY {
            let Value::U32(a) = value else {
                bail!(
                    "{ALIGNMENT_KEY} must be a u32, got {:?}",
                    value.value_type()
                );
            };
            ensure!(
                a.is_power_of_two(),
                "{ALIGNMENT_KEY} {a} is not a power of two"
            );
            ensure!(
                self.tensors.is_empty(),
                "set {ALIGNMENT_KEY} before adding tensors"
            );
            self.alignment = u64::from(a);
        }
        self.keys.insert(key.clone());
        self.kv.push((key, value));
        Ok(())
    }

    /// Use a non-default alignment (writes `general.alignment`).
    pub fn set_alignment(&mut self, alignment: u32) -> Result<()> {
        self.add_kv(ALIGNMENT_KEY, alignment)
    }

    /// Declare the next tensor; data must later be written in declaration order.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
    ) -> Result<()> {
        let name = name.into();
        ensure!(!name.is_empty(), "tensor name is empty");
        ensure!(
            name.len() <= MAX_TENSOR_NAME_LEN,
            "tensor name '{name}' is longer than {MAX_TENSOR_NAME_LEN} bytes"
        );
        ensure!(
            !self.names.contains(&name),
            "duplicate tensor name '{name}'"
        );
        ensure!(
            (1..=MAX_DIMS).contains(&dims.len()),
            "tensor '{name}' has {} dimensions (1 to {MAX_DIMS} allowed)",
            dims.len()
        );
        ensure!(
            dims.iter().all(|&d| i64::try_from(d).is_ok()),
            "tensor '{name}' has a dimension beyond i64"
        );
        let nbytes = ty.nbytes(dims).with_context(|| {
            format!(
                "tensor '{name}' {dims:?}: row of {} elements is not a multiple of {}'s block of {}, \
                 or its size overflows",
                dims[0],
                ty.name(),
                ty.block_size()
            )
        })?;
        let offset = self.data_len;
        self.data_len = offset
            .checked_add(align_up(nbytes, self.alignment))
            .context("GGUF data section size overflows")?;
        self.names.insert(name.clone());
        self.tensors.push(TensorInfo {
            name,
            dims: dims.to_vec(),
            ty,
            offset,
            nbytes,
        });
        Ok(())
    }

    #[must_use]
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    #[must_use]
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Serialized header: everything before the padding that precedes the data section.
    #[must_use]
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 16);
        out.extend_from_slice(GGUF_MAGIC);
        out.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (key, value) in &self.kv {
            put_str(&mut out, key);
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            value.encode(&mut out);
        }
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&t.offset.to_le_bytes());
        }
        out
    }

    /// Padded data section length (sum of every tensor's size rounded up to the alignment).
    #[must_use]
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Size of the finished file.
    #[must_use]
    pub fn file_len(&self) -> u64 {
        align_up(self.header_bytes().len() as u64, self.alignment) + self.data_len
    }

    /// Write the header and the padding after it; the returned writer takes the tensor data.
    pub fn write_header<W: Write>(self, mut w: W) -> Result<TensorDataWriter<W>> {
        let mut header = self.header_bytes();
        let padded = align_up(header.len() as u64, self.alignment);
        header.resize(usize::try_from(padded)?, 0);
        w.write_all(&header).context("writing GGUF header")?;
        let mut tw = TensorDataWriter {
            w,
            tensors: self.tensors,
            alignment: self.alignment,
            current: 0,
            in_current: 0,
            data_written: 0,
        };
        tw.skip_empty()?;
        Ok(tw)
    }
}

/// Takes tensor data in declaration order, in chunks of any size, and pads each tensor.
#[derive(Debug)]
pub struct TensorDataWriter<W: Write> {
    w: W,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    current: usize,
    in_current: u64,
    data_written: u64,
}

impl<W: Write> TensorDataWriter<W> {
    /// Append bytes to the current tensor; a chunk may not run past its end.
    pub fn write_data(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(t) = self.tensors.get(self.current) else {
            bail!("tensor data written past the last tensor");
        };
        let left = t.nbytes - self.in_current;
        ensure!(
            bytes.len() as u64 <= left,
            "{} bytes written to tensor '{}', which has {left} left",
            bytes.len(),
            t.name
        );
        self.w
            .write_all(bytes)
            .with_context(|| format!("writing tensor '{}'", t.name))?;
        self.in_current += bytes.len() as u64;
        self.data_written += bytes.len() as u64;
        self.skip_empty()
    }

    /// Pad and move past every finished tensor (zero-sized ones included).
    fn skip_empty(&mut self) -> Result<()> {
        while let Some(t) = self.tensors.get(self.current) {
            if self.in_current < t.nbytes {
                break;
            }
            let pad = align_up(t.nbytes, self.alignment) - t.nbytes;
            self.w
                .write_all(&vec![0u8; usize::try_from(pad)?])
                .context("writing padding")?;
            self.data_written += pad;
            self.current += 1;
            self.in_current = 0;
        }
        Ok(())
    }

    /// The tensor that the next bytes belong to, if any is left.
    #[must_use]
    pub fn current_tensor(&self) -> Option<&TensorInfo> {
        self.tensors.get(self.current)
    }

    /// Bytes of the data section written so far, padding included.
    #[must_use]
    pub fn data_written(&self) -> u64 {
        self.data_written
    }

    /// Check that every tensor got all its bytes, flush, and return the sink.
    pub fn finish(mut self) -> Result<W> {
        if let Some(t) = self.tensors.get(self.current) {
            bail!(
                "tensor '{}' got {} of its {} bytes ({} tensors unwritten)",
                t.name,
                self.in_current,
                t.nbytes,
                self.tensors.len() - self.current
            );
        }
        self.w.flush().context("flushing GGUF file")?;
        Ok(self.w)
    }
}

// ---- ggml block layouts (ggml-common.h) ----

pub const QK4_0: usize = 32;
pub const QK8_0: usize = 32;
pub const QK_K: usize = 256;
/// `block_q4_0`: f16 d, 16 bytes of nibbles; x = (q - 8) * d, low nibbles are elements 0..16.
pub const Q4_0_BYTES: usize = 2 + QK4_0 / 2;
/// `block_q8_0`: f16 d, 32 i8; x = q * d.
pub const Q8_0_BYTES: usize = 2 + QK8_0;
/// `block_q4_K`: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles;
/// x = d * sc[j] * q - dmin * m[j] for sub-block j of 32.
pub const Q4_K_BYTES: usize = 2 + 2 + 12 + QK_K / 2;

/// f32 to IEEE half, rounding to nearest even (as ggml's GGML_FP32_TO_FP16 does).
#[must_use]
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        // Inf stays Inf; NaN keeps a quiet bit.
        return sign | 0x7c00 | if man != 0 { 0x0200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal half: shift the full mantissa (with its implicit 1) into place.
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = u32::from(rem > mid || (rem == mid && (half & 1) == 1));
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round = u32::from(rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1));
    // A carry out of the mantissa correctly bumps the exponent (up to Inf).
    sign | (half + round) as u16
}

/// IEEE half to f32 (exact).
#[must_use]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// One Q4_0 block from 32 quants (0..=15 each) and a scale.
#[must_use]
pub fn encode_q4_0(d: f32, q: &[u8; QK4_0]) -> [u8; Q4_0_BYTES] {
    let mut b = [0u8; Q4_0_BYTES];
    b[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for j in 0..QK4_0 / 2 {
        b[2 + j] = (q[j] & 0x0f) | ((q[j + QK4_0 / 2] & 0x0f) << 4);
    }
    b
}

/// ggml's reference Q4_0 quantizer (quantize_row_q4_0_ref) for one block.
#[must_use]
pub fn quantize_q4_0(x: &[f32; QK4_0]) -> [u8; Q4_0_BYTES] {
    let max = x
        .iter()
        .copied()
        .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0u8; QK4_0];
    for (qi, &xi) in q.iter_mut().zip(x) {
        *qi = ((xi * id + 8.5) as i8).clamp(0, 15) as u8;
    }
    encode_q4_0(d, &q)
}

/// One Q8_0 block from 32 quants and a scale.
#[must_use]
pub fn encode_q8_0(d: f32, q: &[i8; QK8_0]) -> [u8; Q8_0_BYTES] {
    let mut b = [0u8; Q8_0_BYTES];
    b[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (o, &v) in b[2..].iter_mut().zip(q) {
        *o = v.to_le_bytes()[0];
    }
    b
}

/// ggml's reference Q8_0 quantizer (quantize_row_q8_0_ref) for one block.
#[must_use]
pub fn quantize_q8_0(x: &[f32; QK8_0]) -> [u8; Q8_0_BYTES] {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; QK8_0];
    for (qi, &xi) in q.iter_mut().zip(x) {
        *qi = (xi * id).round() as i8;
    }
    encode_q8_0(d, &q)
}

/// Pack eight 6-bit sub-block scales and mins the way get_scale_min_k4 unpacks them:
/// sub-blocks 0..4 use the low 6 bits of bytes 0..4 (scales) and 4..8 (mins); 4..8 put
/// their low nibbles in bytes 8..12 and their top 2 bits in the top bits of bytes 0..8.
#[must_use]
pub fn pack_q4_k_scales(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = sc[j] & 63;
        q[j + 4] = m[j] & 63;
    }
    for j in 4..8 {
        q[j + 4] = (sc[j] & 0x0f) | ((m[j] & 0x0f) << 4);
        q[j - 4] |= ((sc[j] >> 4) & 3) << 6;
        q[j] |= ((m[j] >> 4) & 3) << 6;
    }
    q
}

/// The 16-byte head of a Q4_K block (d, dmin, packed scales); 128 nibble bytes follow.
#[must_use]
pub fn q4_k_head(d: f32, dmin: f32, sc: &[u8; 8], m: &[u8; 8]) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    h[2..4].copy_from_slice(&f32_to_f16(dmin).to_le_bytes());
    h[4..].copy_from_slice(&pack_q4_k_scales(sc, m));
    h
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// ggml's dequantize_row_q4_0 for one block.
    pub(crate) fn dequant_q4_0(b: &[u8]) -> Vec<f32> {
        let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        let mut y = vec![0.0; QK4_0];
        for j in 0..QK4_0 / 2 {
            y[j] = (i32::from(b[2 + j] & 0x0f) - 8) as f32 * d;
            y[j + QK4_0 / 2] = (i32::from(b[2 + j] >> 4) - 8) as f32 * d;
        }
        y
    }

    /// ggml's dequantize_row_q8_0 for one block.
    pub(crate) fn dequant_q8_0(b: &[u8]) -> Vec<f32> {
        let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        b[2..].iter().map(|&q| f32::from(q as i8) * d).collect()
    }

    /// ggml's get_scale_min_k4.
    pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
        if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            (
                (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
                (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
            )
        }
    }

    /// ggml's dequantize_row_q4_K for one block.
    pub(crate) fn dequant_q4_k(b: &[u8]) -> Vec<f32> {
        let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        let dmin = f16_to_f32(u16::from_le_bytes([b[2], b[3]]));
        let scales = &b[4..16];
        let mut q = &b[16..];
        let mut y = Vec::with_capacity(QK_K);
        for is in (0..8).step_by(2) {
            let (sc1, m1) = scale_min_k4(is, scales);
            let (sc2, m2) = scale_min_k4(is + 1, scales);
            let (d1, mm1) = (d * f32::from(sc1), dmin * f32::from(m1));
            let (d2, mm2) = (d * f32::from(sc2), dmin * f32::from(m2));
            y.extend(q[..32].iter().map(|&v| d1 * f32::from(v & 0xf) - mm1));
            y.extend(q[..32].iter().map(|&v| d2 * f32::from(v >> 4) - mm2));
            q = &q[32..];
        }
        y
    }

    fn temp_path(tag: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        std::env::temp_dir().join(format!(
            "gguf_writer_{tag}_{}_{nanos}.gguf",
            std::process::id()
        ))
    }

    #[test]
    fn block_sizes_match_ggml() {
        assert_eq!(
            (GgmlType::Q4_0.type_size(), GgmlType::Q4_0.block_size()),
            (18, 32)
        );
        assert_eq!(
            (GgmlType::Q8_0.type_size(), GgmlType::Q8_0.block_size()),
            (34, 32)
        );
        assert_eq!(
            (GgmlType::Q4_K.type_size(), GgmlType::Q4_K.block_size()),
            (144, 256)
        );
        assert_eq!(Q4_0_BYTES, 18);
        assert_eq!(Q8_0_BYTES, 34);
        assert_eq!(Q4_K_BYTES, 144);
        assert_eq!(GgmlType::Q4_0.nbytes(&[4096, 2]), Some(2 * 128 * 18));
        assert_eq!(GgmlType::Q4_K.nbytes(&[128, 2]), None);
        assert_eq!(GgmlType::F16.nbytes(&[3, 5]), Some(30));
    }

    #[test]
    fn f16_conversion() {
        for (x, h) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (0.5, 0x3800),
            (65504.0, 0x7bff),
            (1e6, 0x7c00),
            (6.103_515_6e-5, 0x0400),
            (5.960_464_5e-8, 0x0001),
            (1.0 + 1.0 / 2048.0, 0x3c00), // tie rounds to even
            (1.0 + 3.0 / 2048.0, 0x3c02),
        ] {
            assert_eq!(f32_to_f16(x), h, "{x}");
        }
        for h in (0u16..0x7c00).step_by(7) {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h);
        }
    }

    #[test]
    fn q4_0_round_trip() {
        let x: [f32; 32] = std::array::from_fn(|i| ((i as f32) * 0.37).sin() * 0.05);
        let b = quantize_q4_0(&x);
        assert_eq!(b.len(), 18);
        let y = dequant_q4_0(&b);
        let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]])).abs();
        // q4_0 spans -8d..7d with d signed, so values at the far end from the signed max
        // clip (in ggml too); everything inside is within half a step.
        let sd = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        let (lo, hi) = ((-8.0 * sd).min(7.0 * sd), (-8.0 * sd).max(7.0 * sd));
        for (a, b) in x.iter().zip(&y) {
            let tol = if (lo..=hi).contains(a) { d * 0.5 } else { d };
            assert!((a - b).abs() <= tol + 1e-6, "{a} vs {b} (d {d})");
        }
        // Explicit quants: element j is low nibble of byte j, element j+16 the high one.
        let q: [u8; 32] = std::array::from_fn(|i| (i % 16) as u8);
        let b = encode_q4_0(0.25, &q);
        assert_eq!(b[2], 0x00);
        assert_eq!(b[3], 0x11);
        let y = dequant_q4_0(&b);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, ((i % 16) as f32 - 8.0) * 0.25);
        }
    }

    #[test]
    fn q8_0_round_trip() {
        let x: [f32; 32] = std::array::from_fn(|i| ((i as f32) * 0.91).cos() * 0.03 - 0.01);
        let b = quantize_q8_0(&x);
        assert_eq!(b.len(), 34);
        let y = dequant_q8_0(&b);
        let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        for (a, b) in x.iter().zip(&y) {
            // Half a step, plus the f16 rounding of d scaled by the largest quant.
            assert!((a - b).abs() <= d * 0.5 + 127.0 * d / 1024.0, "{a} vs {b}");
        }
        let q: [i8; 32] = std::array::from_fn(|i| (i as i16 * 8 - 128) as i8);
        let y = dequant_q8_0(&encode_q8_0(0.5, &q));
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, f32::from(q[i]) * 0.5);
        }
    }

    #[test]
    fn q4_k_scales_pack_like_ggml() {
        let sc = [0, 1, 63, 32, 17, 48, 63, 5];
        let m = [63, 2, 30, 0, 33, 1, 62, 47];
        let packed = pack_q4_k_scales(&sc, &m);
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &packed), (sc[j], m[j]), "sub-block {j}");
        }
        let mut block = q4_k_head(0.001, 0.002, &sc, &m).to_vec();
        block.extend((0..128).map(|i| i as u8));
        assert_eq!(block.len(), 144);
        let y = dequant_q4_k(&block);
        assert_eq!(y.len(), 256);
        let (d, dmin) = (f16_to_f32(f32_to_f16(0.001)), f16_to_f32(f32_to_f16(0.002)));
        // Element 32 is the high nibble of byte 0 in sub-block 1.
        assert_eq!(y[32], d * f32::from(sc[1]) * 0.0 - dmin * f32::from(m[1]));
        assert_eq!(y[65], d * f32::from(sc[2]) * 1.0 - dmin * f32::from(m[2]));
    }

    #[test]
    fn header_layout_and_alignment() {
        let mut w = GgufWriter::new();
        w.add_kv("a.u8", 7u8).unwrap();
        w.add_kv("a.str", "hi").unwrap();
        w.add_kv("a.strs", vec!["x", "yz", ""]).unwrap();
        w.add_kv("a.f32s", vec![1.5f32, -2.0]).unwrap();
        assert!(w.add_kv("a.u8", 1u8).is_err(), "duplicate key");
        w.add_tensor("t0", &[3], GgmlType::F32).unwrap(); // 12 bytes -> padded to 32
        w.add_tensor("t1", &[64, 2], GgmlType::Q4_0).unwrap(); // 72 bytes -> 96
        assert!(
            w.add_tensor("t1", &[1], GgmlType::F32).is_err(),
            "duplicate name"
        );
        assert!(
            w.add_tensor("bad", &[48], GgmlType::Q4_K).is_err(),
            "row not whole blocks"
        );
        assert!(
            w.add_tensor("x".repeat(64), &[1], GgmlType::F32).is_err(),
            "long name"
        );
        assert_eq!(w.tensors()[1].offset, 32);
        assert_eq!(w.data_len(), 32 + 96);

        let h = w.header_bytes();
        assert_eq!(&h[..4], b"GGUF");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(h[8..16].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(h[16..24].try_into().unwrap()), 4);
        // First KV: key "a.u8", type 0, value 7.
        assert_eq!(u64::from_le_bytes(h[24..32].try_into().unwrap()), 4);
        assert_eq!(&h[32..36], b"a.u8");
        assert_eq!(u32::from_le_bytes(h[36..40].try_into().unwrap()), 0);
        assert_eq!(h[40], 7);
        // The string array: type 9, element type 8, count 3, then length-prefixed strings.
        let key = b"a.strs";
        let pos = h.windows(key.len()).position(|win| win == key).unwrap() + key.len();
        assert_eq!(u32::from_le_bytes(h[pos..pos + 4].try_into().unwrap()), 9);
        assert_eq!(
            u32::from_le_bytes(h[pos + 4..pos + 8].try_into().unwrap()),
            8
        );
        assert_eq!(
            u64::from_le_bytes(h[pos + 8..pos + 16].try_into().unwrap()),
            3
        );
        assert_eq!(
            u64::from_le_bytes(h[pos + 16..pos + 24].try_into().unwrap()),
            1
        );
        assert_eq!(h[pos + 24], b'x');

        let file_len = w.file_len();
        let data_start = align_up(h.len() as u64, 32);
        let mut out = w.write_header(Vec::new()).unwrap();
        assert!(out.write_data(&[0u8; 13]).is_err(), "overrun of t0");
        out.write_data(&[1u8; 12]).unwrap();
        assert_eq!(out.current_tensor().unwrap().name, "t1");
        out.write_data(&[2u8; 40]).unwrap();
        assert!(out.write_data(&[2u8; 33]).is_err());
        out.write_data(&[2u8; 32]).unwrap();
        assert!(out.current_tensor().is_none());
        assert!(out.write_data(&[0]).is_err());
        let bytes = out.finish().unwrap();
        assert_eq!(bytes.len() as u64, file_len);
        assert_eq!(bytes.len() as u64, data_start + 128);
        assert!(bytes[h.len()..data_start as usize].iter().all(|&b| b == 0));
        assert_eq!(bytes[data_start as usize], 1);
        assert!(bytes[data_start as usize + 12..data_start as usize + 32]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(bytes[data_start as usize + 32], 2);
    }

    #[test]
    fn unfinished_data_is_an_error() {
        let mut w = GgufWriter::new();
        w.add_tensor("t", &[8], GgmlType::F32).unwrap();
        let mut out = w.write_header(Vec::new()).unwrap();
        out.write_data(&[0; 16]).unwrap();
        assert!(out.finish().is_err());
    }

    #[test]
    fn custom_alignment() {
        let mut w = GgufWriter::new();
        assert!(w.set_alignment(48).is_err());
        assert!(w.add_kv(ALIGNMENT_KEY, 64u64).is_err(), "must be u32");
        w.set_alignment(64).unwrap();
        w.add_tensor("a", &[5], GgmlType::F16).unwrap();
        w.add_tensor("b", &[5], GgmlType::F16).unwrap();
        assert_eq!(w.tensors()[1].offset, 64);
        let len = w.file_len();
        let mut out = w.write_header(Vec::new()).unwrap();
        out.write_data(&[0; 10]).unwrap();
        out.write_data(&[0; 10]).unwrap();
        let bytes = out.finish().unwrap();
        assert_eq!(bytes.len() as u64, len);
        assert_eq!(len % 64, 0);
    }

    /// Every value type, read back by gguf-rs.
    #[test]
    fn all_value_types_read_back() {
        let mut w = GgufWriter::new();
        w.add_kv("v.u8", 200u8).unwrap();
        w.add_kv("v.i8", -5i8).unwrap();
        w.add_kv("v.u16", 60000u16).unwrap();
        w.add_kv("v.i16", -3000i16).unwrap();
        w.add_kv("v.u32", 4_000_000_000u32).unwrap();
        w.add_kv("v.i32", -7i32).unwrap();
        w.add_kv("v.f32", 0.25f32).unwrap();
        w.add_kv("v.bool", true).unwrap();
        w.add_kv("v.str", "héllo ▁").unwrap();
        w.add_kv("v.u64", u64::MAX).unwrap();
        w.add_kv("v.i64", i64::MIN).unwrap();
        w.add_kv("v.f64", -1.5f64).unwrap();
        w.add_kv("a.strs", vec!["<s>".to_owned(), "▁a".to_owned()])
            .unwrap();
        w.add_kv("a.i32", vec![1i32, -2, 3]).unwrap();
        w.add_kv("a.f32", vec![0.5f32, -0.5]).unwrap();
        w.add_kv("a.u8", vec![1u8, 2]).unwrap();
        w.add_kv("a.bool", vec![true, false]).unwrap();
        w.add_kv("a.u64", vec![9u64]).unwrap();
        w.add_kv("a.f64", Vec::<f64>::new()).unwrap();
        w.add_tensor("w", &[32, 3], GgmlType::Q8_0).unwrap();
        let path = temp_path("values");
        let file = std::fs::File::create(&path).unwrap();
        let mut out = w.write_header(std::io::BufWriter::new(file)).unwrap();
        out.write_data(&[0; 3 * 34]).unwrap();
        out.finish().unwrap();

        let model = gguf_rs::get_gguf_container_array_size(path.to_str().unwrap(), u64::MAX)
            .unwrap()
            .decode();
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::remove_file(&path).unwrap();
        let model = model.unwrap();
        let md = model.metadata();
        use serde_json::json;
        assert_eq!(md["v.u8"], json!(200));
        assert_eq!(md["v.i8"], json!(-5));
        assert_eq!(md["v.u16"], json!(60000));
        assert_eq!(md["v.i16"], json!(-3000));
        assert_eq!(md["v.u32"], json!(4_000_000_000u32));
        assert_eq!(md["v.i32"], json!(-7));
        assert_eq!(md["v.f32"], json!(0.25));
        assert_eq!(md["v.bool"], json!(true));
        assert_eq!(md["v.str"], json!("héllo ▁"));
        assert_eq!(md["v.u64"], json!(u64::MAX));
        assert_eq!(md["v.i64"], json!(i64::MIN));
        assert_eq!(md["v.f64"], json!(-1.5));
        assert_eq!(md["a.strs"], json!(["<s>", "▁a"]));
        assert_eq!(md["a.i32"], json!([1, -2, 3]));
        assert_eq!(md["a.f32"], json!([0.5, -0.5]));
        assert_eq!(md["a.u8"], json!([1, 2]));
        assert_eq!(md["a.bool"], json!([true, false]));
        assert_eq!(md["a.u64"], json!([9]));
        assert_eq!(md["a.f64"], json!([]));
        let t = &model.tensors()[0];
        assert_eq!(
            (t.name.as_str(), t.kind, t.shape.clone(), t.offset),
            ("w", 8, vec![32, 3], 0)
        );
        assert_eq!(len, model.data_offset() + align_up(3 * 34, 32));
    }
}
