//! The header checks on hand-made and real headers.
#![allow(clippy::cast_possible_truncation)]

use super::parse::{T_ARRAY, T_F32, T_STRING, T_U32, T_U8};
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
