//! The model shapes synth knows: the published hyperparameters that decide tensor shapes, and
//! the tokenizer every synthetic file carries.

use std::f64::consts::PI;

use anyhow::{ensure, Context, Result};

/// llama.cpp architecture whose loader the tensors are laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

impl Arch {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// Llama 3.1's `llama3` rope scaling, stored as the `rope_freqs.weight` tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Rope {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_ctx: f64,
}

/// The hyperparameters of a published model that decide its tensor shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    pub arch: Arch,
    /// For general.name: "synthetic {display} shape".
    pub display: &'static str,
    pub basename: &'static str,
    /// The published size label; computed from the parameter count when None or when
    /// --layers changes the depth.
    pub size_label: Option<&'static str>,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub n_ff: u32,
    /// None: the minimal byte-fallback vocab (see [`base_vocab_len`]).
    pub n_vocab: Option<u32>,
    pub n_ctx: u32,
    pub rope_base: f32,
    pub rms_eps: f32,
    /// Q/K/V projection biases (Qwen2).
    pub qkv_bias: bool,
    pub llama3_rope: Option<Llama3Rope>,
    /// The output projection is the token embedding (no `output.weight` tensor).
    pub tied_embd: bool,
    pub note: &'static str,
}

/// The known shapes. Hyperparameters are the models' published config.json values (Hugging
/// Face: meta-llama/Llama-3.1-8B, meta-llama/Llama-3.2-1B, mistralai/Mistral-Nemo-Base-2407,
/// Qwen/Qwen2-7B, Qwen/Qwen2.5-0.5B, Qwen/Qwen2.5-1.5B, Qwen/Qwen2.5-7B-Instruct).
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "llama-3.1-8b",
        arch: Arch::Llama,
        display: "Llama-3.1-8B",
        basename: "Llama-3.1",
        size_label: Some("8B"),
        n_layer: 32,
        n_embd: 4096,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        n_ff: 14336,
        n_vocab: Some(128_256),
        n_ctx: 131_072,
        rope_base: 500_000.0,
        rms_eps: 1e-5,
        qkv_bias: false,
        llama3_rope: Some(Llama3Rope {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_ctx: 8192.0,
        }),
        tied_embd: false,
        note: "rope_freqs.weight carries the llama3 RoPE scaling, as converted files do",
    },
    Shape {
        // hidden 2048, intermediate 8192, 32/8 heads (head_dim 64), 16 layers, vocab 128256,
        // rope_theta 500000 with llama3 scaling (factor 32, low 1, high 4, original 8192),
        // max_position_embeddings 131072, rms 1e-5, tie_word_embeddings true: 1.24B params.
        name: "llama-3.2-1b",
        arch: Arch::Llama,
        display: "Llama-3.2-1B",
        basename: "Llama-3.2",
        size_label: Some("1B"),
        n_layer: 16,
        n_embd: 2048,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 64,
        n_ff: 8192,
        n_vocab: Some(128_256),
        n_ctx: 131_072,
        rope_base: 500_000.0,
        rms_eps: 1e-5,
        qkv_bias: false,
        llama3_rope: Some(Llama3Rope {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_ctx: 8192.0,
        }),
        tied_embd: true,
        note: "tied embeddings; llama3 RoPE factor 32 in rope_freqs.weight",
    },
    Shape {
        name: "mistral-nemo-12b",
        arch: Arch::Llama,
        display: "Mistral-Nemo-12B",
        basename: "Mistral-Nemo",
        size_label: Some("12B"),
        n_layer: 40,
        n_embd: 5120,
        n_head: 32,
        n_head_kv: 8,
        // Not n_embd / n_head (160): Q is 4096 wide, so key_length/value_length are written.
        head_dim: 128,
        n_ff: 14336,
        n_vocab: Some(131_072),
        // config.json says 1024000; 131072 is what Mistral documents and tests.
        n_ctx: 131_072,
        rope_base: 1_000_000.0,
        rms_eps: 1e-5,
        qkv_bias: false,
        llama3_rope: None,
        tied_embd: false,
        note: "real max_position_embeddings is 1024000; 131072 written",
    },
    Shape {
        name: "qwen2-7b",
        arch: Arch::Qwen2,
        display: "Qwen2-7B",
        basename: "Qwen2",
        size_label: Some("7B"),
        n_layer: 28,
        n_embd: 3584,
        n_head: 28,
        n_head_kv: 4,
        head_dim: 128,
        n_ff: 18944,
        n_vocab: Some(152_064),
        // Qwen2-7B-Instruct's native window is 32768 (YaRN to 131072); the base config says 131072.
        n_ctx: 131_072,
        rope_base: 1_000_000.0,
        rms_eps: 1e-6,
        qkv_bias: true,
        llama3_rope: None,
        tied_embd: false,
        note: "Instruct's native context is 32768 (131072 with YaRN); 131072 written",
    },
    Shape {
        // hidden 896, intermediate 4864, 14/2 heads (head_dim 64), 24 layers, vocab 151936,
        // rope_theta 1e6, max_position_embeddings 32768, rms 1e-6, QKV biases,
        // tie_word_embeddings true: 0.49B params.
        name: "qwen2.5-0.5b",
        arch: Arch::Qwen2,
        display: "Qwen2.5-0.5B",
        basename: "Qwen2.5",
        size_label: Some("0.5B"),
        n_layer: 24,
        n_embd: 896,
        n_head: 14,
        n_head_kv: 2,
        head_dim: 64,
        n_ff: 4864,
        n_vocab: Some(151_936),
        n_ctx: 32_768,
        rope_base: 1_000_000.0,
        rms_eps: 1e-6,
        qkv_bias: true,
        llama3_rope: None,
        tied_embd: true,
        note: "tied embeddings; hidden 896 is not whole Q4_K blocks",
    },
    Shape {
        // hidden 1536, intermediate 8960, 12/2 heads (head_dim 128), 28 layers, vocab 151936,
        // rope_theta 1e6, max_position_embeddings 32768, rms 1e-6, QKV biases,
        // tie_word_embeddings true: 1.54B params.
        name: "qwen2.5-1.5b",
        arch: Arch::Qwen2,
        display: "Qwen2.5-1.5B",
        basename: "Qwen2.5",
        size_label: Some("1.5B"),
        n_layer: 28,
        n_embd: 1536,
        n_head: 12,
        n_head_kv: 2,
        head_dim: 128,
        n_ff: 8960,
        n_vocab: Some(151_936),
        n_ctx: 32_768,
        rope_base: 1_000_000.0,
        rms_eps: 1e-6,
        qkv_bias: true,
        llama3_rope: None,
        tied_embd: true,
        note: "tied embeddings; the 0.5B drafts for it (same vocabulary)",
    },
    Shape {
        // hidden 3584, intermediate 18944, 28/4 heads (head_dim 128), 28 layers, vocab 152064,
        // rope_theta 1e6, rms 1e-6, QKV biases, untied: 7.62B params, the tensors of Qwen2-7B.
        name: "qwen2.5-7b",
        arch: Arch::Qwen2,
        display: "Qwen2.5-7B",
        basename: "Qwen2.5",
        size_label: Some("7B"),
        n_layer: 28,
        n_embd: 3584,
        n_head: 28,
        n_head_kv: 4,
        head_dim: 128,
        n_ff: 18944,
        n_vocab: Some(152_064),
        // The Instruct model's native window (131072 with YaRN); the base config says 131072.
        n_ctx: 32_768,
        rope_base: 1_000_000.0,
        rms_eps: 1e-6,
        qkv_bias: true,
        llama3_rope: None,
        tied_embd: false,
        note: "Instruct's native context 32768 written (131072 with YaRN)",
    },
    Shape {
        name: "tiny-llama",
        arch: Arch::Llama,
        display: "tiny-llama",
        basename: "tiny-llama",
        size_label: None,
        n_layer: 6,
        n_embd: 256,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_ff: 512,
        n_vocab: None,
        n_ctx: 8192,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        qkv_bias: false,
        llama3_rope: None,
        tied_embd: false,
        note: "test model, a few MB",
    },
    Shape {
        name: "tiny-qwen2",
        arch: Arch::Qwen2,
        display: "tiny-qwen2",
        basename: "tiny-qwen2",
        size_label: None,
        n_layer: 6,
        n_embd: 256,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_ff: 512,
        n_vocab: None,
        n_ctx: 8192,
        rope_base: 1_000_000.0,
        rms_eps: 1e-6,
        qkv_bias: true,
        llama3_rope: None,
        tied_embd: false,
        note: "test model, a few MB",
    },
];

/// Look a shape up by name (case-insensitive).
///
/// # Errors
/// An unknown name; the message lists the known ones.
pub fn find_shape(name: &str) -> Result<&'static Shape> {
    SHAPES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .with_context(|| {
            let known: Vec<_> = SHAPES.iter().map(|s| s.name).collect();
            format!("unknown shape '{name}'; known shapes: {}", known.join(", "))
        })
}

/// `convert_hf_to_gguf`'s `llama3` `rope_freqs`: 1 for short wavelengths, `factor` for long ones,
/// smoothly in between.
#[allow(clippy::cast_possible_truncation)] // factors between 1 and `factor`
pub(super) fn llama3_rope_factors(head_dim: u32, base: f64, r: &Llama3Rope) -> Vec<f32> {
    let dim = f64::from(head_dim);
    let low_wavelen = r.original_ctx / r.low_freq_factor;
    let high_wavelen = r.original_ctx / r.high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf(f64::from(2 * i) / dim);
            let wavelen = 2.0 * PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                r.factor
            } else {
                let smooth = (r.original_ctx / wavelen - r.low_freq_factor)
                    / (r.high_freq_factor - r.low_freq_factor);
                1.0 / ((1.0 - smooth) / r.factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// `LLAMA_TOKEN_TYPE_*` values.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_UNKNOWN: i32 = 2;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_BYTE: i32 = 6;
const SPACE: char = '\u{2581}';

/// An SPM ("llama") vocab: specials, the 256 byte-fallback tokens, every printable ASCII
/// character alone and after "▁" (so English comes out at about one token per character),
/// then unique fillers up to `n`. Used for qwen2 too: llama.cpp takes any tokenizer model
/// with any architecture, and a BPE vocab would need merges.
pub(super) fn vocab(n: u32) -> Result<(Vec<String>, Vec<f32>, Vec<i32>)> {
    let n = n as usize;
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(TOKEN_BYTE);
    }
    let printable = || (b'!'..=b'~').map(char::from);
    let words = std::iter::once(SPACE.to_string())
        .chain(printable().map(String::from))
        .chain(printable().map(|c| format!("{SPACE}{c}")));
    for w in words {
        tokens.push(w);
        types.push(TOKEN_NORMAL);
    }
    ensure!(
        n >= tokens.len(),
        "vocab of {n} is smaller than the {} base tokens",
        tokens.len()
    );
    let base = tokens.len();
    for i in base..n {
        tokens.push(format!("<synth_{i}>"));
        types.push(TOKEN_NORMAL);
    }
    // SPM merges by score; only the normal tokens compete, earlier ones first.
    let scores = types
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if t == TOKEN_NORMAL {
                #[allow(clippy::cast_precision_loss)] // below 2^24: exact
                -((i + 1 - 259) as f32)
            } else {
                0.0
            }
        })
        .collect();
    Ok((tokens, scores, types))
}

/// Size of the vocab without fillers (the tiny shapes use exactly this).
#[must_use]
pub fn base_vocab_len() -> u32 {
    3 + 256 + 1 + 2 * 94
}
