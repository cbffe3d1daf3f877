//! Hostile GGUF files from the real `SmolLM2` model, and a seeded in-process fuzz test of the
//! header inspection (`gemfilter::gguf_info::inspect`).
//!
//! The generator walks the real header once (a trusted file, so this walker can be simple),
//! records where every count, length, type and value sits, and then mutates those fields at
//! their offsets: truncations, random byte edits biased towards the recorded fields, and
//! targeted values (0, 1, 2^31, 2^32-1, 2^40, 2^63, `u64::MAX`, NaN, ...). `hostile.rs` writes
//! some of the same mutants to disk and runs the binary on them.
#![allow(
    clippy::cast_possible_truncation,
    clippy::many_single_char_names,
    clippy::too_many_lines,
    clippy::type_complexity
)]

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gemfilter::gguf_info::inspect;

use crate::util::smollm2;

/// What sits at a recorded offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// u64 tensor or key/value count of the file header.
    Count,
    /// u64 length of a key, a string value or a string array element.
    StrLen,
    /// u32 GGUF type of a value.
    Type,
    /// u32 element type of an array.
    ArrayType,
    /// u64 element count of an array.
    ArrayLen,
    /// A scalar value of `size` bytes.
    Value(u32),
    /// u64 tensor name length.
    NameLen,
    /// u32 tensor dimension count.
    NDims,
    /// u64 tensor dimension.
    Dim,
    /// u32 ggml type of a tensor.
    TensorType,
    /// u64 data offset of a tensor.
    TensorOffset,
}

impl Kind {
    fn width(self) -> usize {
        match self {
            Kind::Type | Kind::ArrayType | Kind::NDims | Kind::TensorType => 4,
            Kind::Value(n) => n as usize,
            _ => 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub off: usize,
    pub kind: Kind,
    /// The key (or tensor name) the field belongs to.
    pub owner: String,
}

/// One key/value of the real header.
#[derive(Debug, Clone)]
pub struct KvAt {
    pub key: String,
    /// Offset of the key's length field (the entry's start) and of the entry's end.
    pub start: usize,
    pub end: usize,
    pub ty_off: usize,
    pub ty: u32,
    pub value_off: usize,
}

/// The real model's header, walked.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The header bytes (up to the data section), unchanged.
    pub header: Vec<u8>,
    pub file_len: u64,
    pub data_offset: usize,
    pub tensors_start: usize,
    pub header_end: usize,
    pub fields: Vec<Field>,
    pub kvs: Vec<KvAt>,
    /// (name, start of its name length field) of every tensor.
    pub tensors: Vec<(String, usize)>,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn fixed(ty: u32) -> Option<u32> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

impl Layout {
    /// Walk the header of the GGUF at `bytes` (a valid file).
    pub fn walk(bytes: &[u8], file_len: u64) -> Layout {
        let mut fields = Vec::new();
        let mut f = |off: usize, kind: Kind, owner: &str| {
            fields.push(Field {
                off,
                kind,
                owner: owner.to_owned(),
            });
        };
        assert_eq!(&bytes[..4], b"GGUF");
        let n_tensors = u64_at(bytes, 8);
        let n_kv = u64_at(bytes, 16);
        f(8, Kind::Count, "tensor count");
        f(16, Kind::Count, "key count");
        let mut p = 24;
        let mut kvs = Vec::new();
        for _ in 0..n_kv {
            let start = p;
            let klen = u64_at(bytes, p) as usize;
            let key = String::from_utf8_lossy(&bytes[p + 8..p + 8 + klen]).into_owned();
            f(p, Kind::StrLen, &key);
            p += 8 + klen;
            let ty = u32_at(bytes, p);
            let ty_off = p;
            f(p, Kind::Type, &key);
            p += 4;
            let value_off = p;
            match ty {
                8 => {
                    f(p, Kind::StrLen, &key);
                    p += 8 + u64_at(bytes, p) as usize;
                }
                9 => {
                    let ety = u32_at(bytes, p);
                    f(p, Kind::ArrayType, &key);
                    let n = u64_at(bytes, p + 4);
                    f(p + 4, Kind::ArrayLen, &key);
                    p += 12;
                    for j in 0..n {
                        if ety == 8 {
                            // Only the first few string lengths: the fields list stays small.
                            if j < 8 {
                                f(p, Kind::StrLen, &key);
                            }
                            p += 8 + u64_at(bytes, p) as usize;
                        } else {
                            let w = fixed(ety).unwrap();
                            if j < 8 {
                                f(p, Kind::Value(w), &key);
                            }
                            p += w as usize;
                        }
                    }
                }
                t => {
                    let w = fixed(t).unwrap();
                    f(p, Kind::Value(w), &key);
                    p += w as usize;
                }
            }
            kvs.push(KvAt {
                key,
                start,
                end: p,
                ty_off,
                ty,
                value_off,
            });
        }
        let tensors_start = p;
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let nlen = u64_at(bytes, p) as usize;
            let name = String::from_utf8_lossy(&bytes[p + 8..p + 8 + nlen]).into_owned();
            tensors.push((name.clone(), p));
            f(p, Kind::NameLen, &name);
            p += 8 + nlen;
            let nd = u32_at(bytes, p);
            f(p, Kind::NDims, &name);
            p += 4;
            for _ in 0..nd {
                f(p, Kind::Dim, &name);
                p += 8;
            }
            f(p, Kind::TensorType, &name);
            p += 4;
            f(p, Kind::TensorOffset, &name);
            p += 8;
        }
        let header_end = p;
        let data_offset = header_end.div_ceil(32) * 32;
        Layout {
            header: bytes[..data_offset].to_vec(),
            file_len,
            data_offset,
            tensors_start,
            header_end,
            fields,
            kvs,
            tensors,
        }
    }

    pub fn kv(&self, key: &str) -> &KvAt {
        self.kvs
            .iter()
            .find(|k| k.key == key)
            .unwrap_or_else(|| panic!("no key {key}"))
    }

    /// The same header with every array cut to at most `keep` elements: parses in
    /// microseconds, same keys and tensors, same (virtual) data section.
    pub fn slim(&self, keep: u64) -> Layout {
        let b = &self.header;
        let mut out = b[..24].to_vec();
        for kv in &self.kvs {
            if kv.ty == 9 {
                let ety = u32_at(b, kv.value_off);
                let n = u64_at(b, kv.value_off + 4);
                let mut p = kv.value_off + 12;
                let take = n.min(keep);
                for _ in 0..take {
                    p += match fixed(ety) {
                        Some(w) => w as usize,
                        None => 8 + u64_at(b, p) as usize,
                    };
                }
                out.extend_from_slice(&b[kv.start..kv.value_off + 4]);
                out.extend_from_slice(&take.to_le_bytes());
                out.extend_from_slice(&b[kv.value_off + 12..p]);
            } else {
                out.extend_from_slice(&b[kv.start..kv.end]);
            }
        }
        out.extend_from_slice(&b[self.tensors_start..self.header_end]);
        out.resize(out.len().div_ceil(32) * 32, 0);
        let data_len = self.file_len - self.data_offset as u64;
        let file_len = out.len() as u64 + data_len;
        Layout::walk(&out, file_len)
    }
}

/// The real `SmolLM2` header, walked once per test process.
pub fn smollm2_layout() -> &'static Layout {
    static L: OnceLock<Layout> = OnceLock::new();
    L.get_or_init(|| {
        use std::io::Read;
        let path = smollm2();
        let len = std::fs::metadata(&path).unwrap().len();
        let mut head = vec![0u8; 4 << 20];
        let mut f = std::fs::File::open(&path).unwrap();
        let mut got = 0;
        while got < head.len() {
            let n = f.read(&mut head[got..]).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        head.truncate(got);
        Layout::walk(&head, len)
    })
}

/// A mutated header and the file length it claims to be part of.
#[derive(Debug, Clone)]
pub struct Mutant {
    pub bytes: Vec<u8>,
    pub file_len: u64,
    pub what: String,
}

/// xorshift64*: seeded, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values worth trying in a field of `width` bytes.
pub fn interesting(width: usize, rng: &mut Rng) -> Vec<u8> {
    let v: u64 = match rng.below(16) {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 0x7f,
        4 => 0xff,
        5 => 1 << 31,
        6 => u64::from(u32::MAX),
        7 => 1 << 32,
        8 => 1 << 40,
        9 => 1 << 63,
        10 => u64::MAX,
        11 => u64::MAX - 1,
        12 => 50_000_000,
        13 => 100_000,
        14 => u64::from(f32::NAN.to_bits()),
        _ => rng.next(),
    };
    v.to_le_bytes()[..width.min(8)].to_vec()
}

/// A seeded random mutant of `base`: field edits, byte edits or truncations.
pub fn mutate(base: &Layout, rng: &mut Rng) -> Mutant {
    let mut bytes = base.header.clone();
    let mut file_len = base.file_len;
    let what;
    match rng.below(10) {
        0..=4 => {
            // A recorded field set to an interesting value (or off by one).
            let fl = &base.fields[rng.below(base.fields.len())];
            let w = fl.kind.width();
            let new = if rng.below(4) == 0 {
                let mut x = [0u8; 8];
                x[..w].copy_from_slice(&bytes[fl.off..fl.off + w]);
                let v = u64::from_le_bytes(x);
                let v = if rng.below(2) == 0 {
                    v.wrapping_add(1)
                } else {
                    v.wrapping_sub(1)
                };
                v.to_le_bytes()[..w].to_vec()
            } else {
                interesting(w, rng)
            };
            bytes[fl.off..fl.off + w].copy_from_slice(&new);
            what = format!(
                "{:?} of {:?} at {} := {new:02x?}",
                fl.kind, fl.owner, fl.off
            );
        }
        5..=7 => {
            // 1-8 random bytes anywhere in the header.
            let n = 1 + rng.below(8);
            let mut at = Vec::new();
            for _ in 0..n {
                let o = rng.below(bytes.len());
                bytes[o] = rng.next() as u8;
                at.push(o);
            }
            what = format!("random bytes at {at:?}");
        }
        8 => {
            // Truncated inside the header.
            let cut = rng.below(bytes.len());
            bytes.truncate(cut);
            file_len = cut as u64;
            what = format!("truncated at {cut}");
        }
        _ => {
            // Truncated inside the data section.
            let data = base.file_len - base.data_offset as u64;
            let cut = base.data_offset as u64 + rng.next() % data;
            file_len = cut;
            what = format!("file cut at {cut}");
        }
    }
    Mutant {
        bytes,
        file_len,
        what,
    }
}

/// Inspect one mutant in-process: Ok(None) when accepted, Ok(Some(message)) when refused,
/// Err when the inspection panicked.
pub fn inspect_mutant(m: &Mutant) -> Result<Option<String>, String> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        inspect(&mut Cursor::new(&m.bytes), m.file_len)
    }));
    match r {
        Ok(Ok(_)) => Ok(None),
        Ok(Err(e)) => Ok(Some(e.to_string())),
        Err(_) => Err(format!("panic on {}", m.what)),
    }
}

fn assert_clean(msg: &str, what: &str) {
    assert!(
        msg.chars().count() < 240,
        "message too long ({} chars) for {what}: {msg:.300}",
        msg.len()
    );
    assert!(
        !msg.chars().any(char::is_control),
        "control character in message for {what}: {msg:?}"
    );
}

#[test]
fn gguf_fuzz_real_header_is_accepted_and_slim_matches() {
    let full = smollm2_layout();
    let t = Instant::now();
    let m = inspect(&mut Cursor::new(&full.header), full.file_len).unwrap();
    eprintln!(
        "real header inspected in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!((m.architecture.as_str(), m.block_count), ("llama", 30));
    assert_eq!(m.data_offset, full.data_offset as u64);
    assert_eq!(
        m.data_end, full.file_len,
        "SmolLM2's last tensor ends at the file's end"
    );
    let slim = full.slim(16);
    assert!(slim.header.len() < 64 << 10, "{}", slim.header.len());
    let s = inspect(&mut Cursor::new(&slim.header), slim.file_len).unwrap();
    assert_eq!(s.block_count, 30);
    assert_eq!(s.data_end - s.data_offset, m.data_end - m.data_offset);
}

/// Tens of thousands of seeded mutations of the (slim) `SmolLM2` header plus a few hundred of
/// the full one: no panic, every refusal one short clean message, bounded time.
#[test]
fn gguf_fuzz_header_mutations() {
    let full = smollm2_layout();
    let slim = full.slim(16);
    let seed = std::env::var("GEMFILTER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    let (mut accepted, mut refused) = (0usize, 0usize);
    let mut slowest = (Duration::ZERO, String::new());
    let mut run = |base: &Layout, n: usize, rng: &mut Rng| {
        for _ in 0..n {
            let m = mutate(base, rng);
            let t = Instant::now();
            let out = inspect_mutant(&m).unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
            let dt = t.elapsed();
            if std::env::var_os("GEMFILTER_FUZZ_SLOW").is_some() && dt > Duration::from_millis(3) {
                eprintln!(
                    "slow {:.1} ms: {} (len {})",
                    dt.as_secs_f64() * 1e3,
                    m.what,
                    m.bytes.len()
                );
            }
            if dt > slowest.0 {
                slowest = (dt, m.what.clone());
            }
            match out {
                None => accepted += 1,
                Some(msg) => {
                    refused += 1;
                    assert_clean(&msg, &m.what);
                }
            }
        }
    };
    let t = Instant::now();
    run(&slim, 20_000, &mut rng);
    eprintln!("slim: {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    run(full, 100, &mut rng);
    eprintln!("full: {:.2} s", t.elapsed().as_secs_f64());
    // Every recorded field of the slim header set to each interesting value once.
    for fl in &slim.fields {
        for v in [0u64, 1, u64::from(u32::MAX), 1 << 40, u64::MAX] {
            let mut bytes = slim.header.clone();
            let w = fl.kind.width();
            bytes[fl.off..fl.off + w].copy_from_slice(&v.to_le_bytes()[..w]);
            let m = Mutant {
                bytes,
                file_len: slim.file_len,
                what: format!("{:?} of {:?} := {v}", fl.kind, fl.owner),
            };
            match inspect_mutant(&m).unwrap_or_else(|e| panic!("{e}")) {
                None => accepted += 1,
                Some(msg) => {
                    refused += 1;
                    assert_clean(&msg, &m.what);
                }
            }
        }
    }
    let total = t0.elapsed();
    eprintln!(
        "gguf fuzz: {} mutants ({accepted} accepted, {refused} refused) in {:.2} s; slowest {:.1} ms ({})",
        accepted + refused,
        total.as_secs_f64(),
        slowest.0.as_secs_f64() * 1e3,
        slowest.1
    );
    assert!(
        refused > accepted / 4,
        "too few refusals: the mutations are not biting"
    );
    assert!(
        slowest.0 < Duration::from_millis(500),
        "one inspection took {:?}: {}",
        slowest.0,
        slowest.1
    );
    assert!(total < Duration::from_secs(20), "fuzzing took {total:?}");
}

/// The targeted hostile edits, in-process: each refused with a message that names it.
#[test]
fn gguf_fuzz_targeted_edits_are_refused_by_name() {
    let full = smollm2_layout();
    for (m, want) in targeted(full) {
        let t = Instant::now();
        let msg = inspect_mutant(&m)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("accepted: {}", m.what));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{}: {:?}",
            m.what,
            t.elapsed()
        );
        assert!(msg.contains(want), "{}: {msg:?} lacks {want:?}", m.what);
        assert_clean(&msg, &m.what);
    }
}

/// Replace `len` bytes at `at` with `new` (sizes may differ), keeping the data section's
/// alignment: the padding before the data absorbs the change when it can.
pub fn splice(base: &Layout, at: usize, len: usize, new: &[u8]) -> Mutant {
    let mut b = base.header[..base.header_end].to_vec();
    b.splice(at..at + len, new.iter().copied());
    let data_offset = b.len().div_ceil(32) * 32;
    b.resize(data_offset, 0);
    let data_len = base.file_len - base.data_offset as u64;
    Mutant {
        file_len: data_offset as u64 + data_len,
        bytes: b,
        what: String::new(),
    }
}

/// A key/value entry's bytes.
pub fn kv_bytes(key: &str, ty: u32, value: &[u8]) -> Vec<u8> {
    let mut v = (key.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(value);
    v
}

/// Add one key/value at the end of the key list.
pub fn add_kv(base: &Layout, key: &str, ty: u32, value: &[u8]) -> Mutant {
    let mut m = splice(base, base.tensors_start, 0, &kv_bytes(key, ty, value));
    let n = u64_at(&m.bytes, 16) + 1;
    m.bytes[16..24].copy_from_slice(&n.to_le_bytes());
    m
}

/// The targeted hostile edits, with a word the refusal must contain.
pub fn targeted(base: &Layout) -> Vec<(Mutant, &'static str)> {
    let mut out = Vec::new();
    let set = |key: &str, v: &[u8], what: &str| {
        let kv = base.kv(key);
        let mut m = splice(base, 0, 0, &[]);
        m.bytes[kv.value_off..kv.value_off + v.len()].copy_from_slice(v);
        what.clone_into(&mut m.what);
        m
    };
    out.push((
        set(
            "llama.block_count",
            &1_000_000_000u32.to_le_bytes(),
            "block_count 10^9",
        ),
        "block_count",
    ));
    out.push((
        set(
            "llama.block_count",
            &u32::MAX.to_le_bytes(),
            "block_count 2^32-1",
        ),
        "block_count",
    ));
    out.push((
        set("llama.block_count", &0u32.to_le_bytes(), "block_count 0"),
        "llama.block_count is 0",
    ));
    // block_count retyped to u64 2^40.
    let kv = base.kv("llama.block_count");
    let mut v = 10u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let mut m = splice(base, kv.ty_off, 8, &v);
    m.what = "block_count u64 2^40".into();
    out.push((m, "block_count"));
    // block_count missing: its key renamed.
    let mut m = splice(base, 0, 0, &[]);
    let k = kv.start + 8;
    m.bytes[k..k + 5].copy_from_slice(b"LLAMA");
    m.what = "block_count missing".into();
    out.push((m, "llama.block_count (its number of layers) is missing"));
    out.push((
        set(
            "llama.attention.layer_norm_rms_epsilon",
            &f32::NAN.to_bits().to_le_bytes(),
            "epsilon NaN",
        ),
        "layer_norm_rms_epsilon",
    ));
    out.push((
        set(
            "llama.attention.layer_norm_rms_epsilon",
            &(-1e-5f32).to_bits().to_le_bytes(),
            "epsilon negative",
        ),
        "layer_norm_rms_epsilon",
    ));
    out.push((
        set(
            "llama.attention.head_count_kv",
            &0u32.to_le_bytes(),
            "head_count_kv 0",
        ),
        "head_count_kv",
    ));
    out.push((
        set(
            "llama.attention.head_count",
            &0u32.to_le_bytes(),
            "head_count 0",
        ),
        "head_count",
    ));
    out.push((
        set(
            "llama.embedding_length",
            &0u32.to_le_bytes(),
            "embedding_length 0",
        ),
        "embedding_length",
    ));
    let mut m = add_kv(base, "general.alignment", 4, &1u32.to_le_bytes());
    m.what = "alignment 1 added".into();
    out.push((m, "general.alignment"));
    let mut m = add_kv(base, "general.alignment", 4, &48u32.to_le_bytes());
    m.what = "alignment 48 added".into();
    out.push((m, "general.alignment"));
    // general.languages (a string array) retyped to a u8 array of 2^40 items.
    let kv = base.kv("general.languages");
    let mut m = splice(base, 0, 0, &[]);
    m.bytes[kv.value_off..kv.value_off + 4].copy_from_slice(&0u32.to_le_bytes());
    m.bytes[kv.value_off + 4..kv.value_off + 12].copy_from_slice(&(1u64 << 40).to_le_bytes());
    m.what = "languages as u8[2^40]".into();
    out.push((m, "general.languages"));
    // Tensor name lengths of 100,000 and 50,000,000.
    for n in [100_000u64, 50_000_000] {
        let (_, at) = &base.tensors[3];
        let mut m = splice(base, 0, 0, &[]);
        m.bytes[*at..*at + 8].copy_from_slice(&n.to_le_bytes());
        m.what = format!("tensor name length {n}");
        out.push((m, "name of"));
    }
    // Counts beyond the file.
    let mut m = splice(base, 0, 0, &[]);
    m.bytes[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    m.what = "tensor count 2^40".into();
    out.push((m, "tensors"));
    let mut m = splice(base, 0, 0, &[]);
    m.bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    m.what = "key count 2^64-1".into();
    out.push((m, "keys"));
    // A tensor with 5 dimensions, and one of an unknown type.
    let (_, at) = &base.tensors[0];
    let nlen = u64_at(&base.header, *at) as usize;
    let mut m = splice(base, 0, 0, &[]);
    m.bytes[at + 8 + nlen..at + 12 + nlen].copy_from_slice(&5u32.to_le_bytes());
    m.what = "ndims 5".into();
    out.push((m, "dimensions"));
    // Duplicate vocabulary entry: a token overwritten with an earlier one of the same length.
    let kv = base.kv("tokenizer.ggml.tokens");
    let mut p = kv.value_off + 12;
    let mut by_len: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for _ in 0..1000 {
        let l = u64_at(&base.header, p) as usize;
        if let Some(&q) = by_len.get(&l) {
            let mut m = splice(base, 0, 0, &[]);
            let first = base.header[q + 8..q + 8 + l].to_vec();
            m.bytes[p + 8..p + 8 + l].copy_from_slice(&first);
            m.what = "duplicate token".into();
            out.push((m, "twice"));
            break;
        }
        by_len.insert(l, p);
        p += 8 + l;
    }
    out
}

/// The bounded parser reads the real models as the independent gguf-rs reader does.
#[test]
fn header_matches_an_independent_reader() {
    for m in [smollm2(), crate::util::gemma3()] {
        let ours = gemfilter::gguf_info::read(&m).unwrap();
        let theirs = gguf_rs::get_gguf_container_array_size(m.to_str().unwrap(), 4)
            .and_then(|mut c| c.decode())
            .unwrap();
        let kv = theirs.metadata();
        let arch = kv["general.architecture"].as_str().unwrap();
        assert_eq!(ours.architecture, arch);
        let num = |k: &str| kv[&format!("{arch}.{k}")].as_u64().unwrap() as usize;
        assert_eq!(ours.block_count, num("block_count"));
        assert_eq!(ours.context_length, Some(num("context_length")));
        assert_eq!(ours.head_count, Some(num("attention.head_count")));
        let data_end = theirs
            .tensors()
            .iter()
            .map(|t| theirs.data_offset() + t.offset + t.size)
            .max()
            .unwrap();
        assert_eq!(ours.data_end, data_end, "{}", m.display());
        assert_eq!(ours.data_offset, theirs.data_offset());
    }
}
