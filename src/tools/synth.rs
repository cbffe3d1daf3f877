//! `gemfilter synth`: a random-weight GGUF with the exact tensor shapes of a real model.
//!
//! No model hub is reachable from the project's machines, so 8B/12B benchmarks run on these
//! files. Speed and memory depend on shapes and quant types, not on values, so timings are
//! real; the answers are noise.

use std::f64::consts::PI;
use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::ValueEnum;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::tools::gguf_writer::{self as gw, GgmlType, GgufWriter};

const NOISE_NOTE: &str = "The weights are random: timings and memory use are those of the real \
model (they depend on shapes and quant types, not on values), but its answers are noise. Use it \
for speed and memory benchmarks only, never for quality.";

/// Write a random-weight GGUF with the exact tensor shapes of a real model.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = NOISE_NOTE)]
pub struct SynthArgs {
    /// Model shape to copy (see --list): llama-3.1-8b, mistral-nemo-12b, qwen2-7b, tiny-llama,
    /// tiny-qwen2.
    #[arg(long, value_name = "NAME", required_unless_present = "list")]
    pub shape: Option<String>,

    /// GGUF file to write (overwritten if it exists).
    #[arg(
        short = 'o',
        long,
        value_name = "PATH",
        required_unless_present = "list"
    )]
    pub output: Option<PathBuf>,

    /// Type of the 2-D weight matrices (norms and biases stay f32). Rows that don't fill whole
    /// blocks fall back: q4_k to q4_0, q4_0 and q8_0 to f16.
    #[arg(long = "type", value_enum, value_name = "TYPE", default_value_t = WeightType::Q4_0)]
    pub weight_type: WeightType,

    /// Random seed; the same seed gives the same file.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Number of layers instead of the real block count (small test models).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub layers: Option<u32>,

    /// Training context length to write instead of the shape's.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub ctx: Option<u32>,

    /// Print the known shapes and exit.
    #[arg(long)]
    pub list: bool,
}

/// Storage type of the 2-D weights.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeightType {
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_k")]
    Q4_K,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "f16")]
    F16,
    #[value(name = "f32")]
    F32,
}

impl WeightType {
    #[must_use]
    pub fn ggml(self) -> GgmlType {
        match self {
            WeightType::Q4_0 => GgmlType::Q4_0,
            WeightType::Q4_K => GgmlType::Q4_K,
            WeightType::Q8_0 => GgmlType::Q8_0,
            WeightType::F16 => GgmlType::F16,
            WeightType::F32 => GgmlType::F32,
        }
    }

    /// `general.file_type` (llama_ftype). There is no "all Q4_K" ftype; Q4_K_S (14) is the
    /// closest.
    #[must_use]
    pub fn file_type(self) -> u32 {
        match self {
            WeightType::F32 => 0,
            WeightType::F16 => 1,
            WeightType::Q4_0 => 2,
            WeightType::Q8_0 => 7,
            WeightType::Q4_K => 14,
        }
    }
}

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

/// Llama 3.1's "llama3" RoPE scaling, stored as the `rope_freqs.weight` tensor.
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
    pub note: &'static str,
}

/// The known shapes. Hyperparameters are the models' published config.json values.
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
        note: "rope_freqs.weight carries the llama3 RoPE scaling, as converted files do",
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
        note: "Instruct's native context is 32768 (131072 with YaRN); 131072 written",
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
        note: "test model, a few MB",
    },
];

/// Look a shape up by name (case-insensitive).
pub fn find_shape(name: &str) -> Result<&'static Shape> {
    SHAPES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .with_context(|| {
            let known: Vec<_> = SHAPES.iter().map(|s| s.name).collect();
            format!("unknown shape '{name}'; known shapes: {}", known.join(", "))
        })
}

/// The table `--list` prints.
#[must_use]
pub fn list_shapes() -> String {
    let mut s = format!(
        "{:<18}{:<7}{:>7}{:>7}{:>7}{:>5}{:>5}{:>7}{:>8}{:>9}{:>10}  note\n",
        "shape", "arch", "layers", "hidden", "heads", "kv", "hdim", "ffn", "vocab", "ctx", "q4_0"
    );
    for sh in SHAPES {
        let cfg = Config::new(sh, sh.n_layer, sh.n_ctx, WeightType::Q4_0);
        let size = plan(&cfg).map_or(0, |p| p.file_len);
        let _ = writeln!(
            s,
            "{:<18}{:<7}{:>7}{:>7}{:>7}{:>5}{:>5}{:>7}{:>8}{:>9}{:>10}  {}",
            sh.name,
            sh.arch.name(),
            sh.n_layer,
            sh.n_embd,
            sh.n_head,
            sh.n_head_kv,
            sh.head_dim,
            sh.n_ff,
            cfg.n_vocab,
            sh.n_ctx,
            human_bytes(size),
            sh.note
        );
    }
    s
}

/// A shape with the command's overrides applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub shape: &'static Shape,
    pub n_layer: u32,
    pub n_ctx: u32,
    pub n_vocab: u32,
    pub weight_type: WeightType,
}

impl Config {
    #[must_use]
    pub fn new(shape: &'static Shape, n_layer: u32, n_ctx: u32, weight_type: WeightType) -> Self {
        let n_vocab = shape.n_vocab.unwrap_or(base_vocab_len() as u32);
        Self {
            shape,
            n_layer,
            n_ctx,
            n_vocab,
            weight_type,
        }
    }
}

// ---- tokenizer ----

/// LLAMA_TOKEN_TYPE_* values.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_UNKNOWN: i32 = 2;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_BYTE: i32 = 6;
const SPACE: char = '\u{2581}';

/// An SPM ("llama") vocab: specials, the 256 byte-fallback tokens, every printable ASCII
/// character alone and after "▁" (so English comes out at about one token per character),
/// then unique fillers up to `n`. Used for qwen2 too: llama.cpp takes any tokenizer model
/// with any architecture, and a BPE vocab would need merges.
fn vocab(n: u32) -> Result<(Vec<String>, Vec<f32>, Vec<i32>)> {
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
pub fn base_vocab_len() -> usize {
    3 + 256 + 1 + 2 * 94
}

// ---- tensors ----

/// How a tensor's values are made.
#[derive(Debug, Clone, PartialEq)]
enum Fill {
    /// Norm weights.
    Ones,
    /// Random values with std ~0.02 (quant blocks are built to match).
    Noise,
    Values(Vec<f32>),
}

#[derive(Debug, Clone)]
struct PlannedTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    fill: Fill,
    nbytes: u64,
}

/// Everything to write, before any byte is written.
struct Plan {
    writer: GgufWriter,
    tensors: Vec<PlannedTensor>,
    /// (tensor, type it fell back to)
    fallbacks: Vec<(String, GgmlType)>,
    n_params: u64,
    file_len: u64,
}

/// The requested type if a row of `ne0` fills whole blocks, else the nearest that does.
fn weight_type_for(requested: GgmlType, ne0: u64) -> GgmlType {
    if requested.fits_row(ne0) {
        requested
    } else if requested == GgmlType::Q4_K && GgmlType::Q4_0.fits_row(ne0) {
        GgmlType::Q4_0
    } else {
        GgmlType::F16
    }
}

/// Tensor names and shapes as llama.cpp's loader creates them for LLM_ARCH_LLAMA and
/// LLM_ARCH_QWEN2 (src/models/llama.cpp, qwen2.cpp); GGUF dims are ne0 first.
fn tensor_list(cfg: &Config) -> Vec<(String, Vec<u64>, Fill, bool)> {
    let sh = cfg.shape;
    let (embd, vocab, ff) = (
        u64::from(sh.n_embd),
        u64::from(cfg.n_vocab),
        u64::from(sh.n_ff),
    );
    let q = u64::from(sh.n_head * sh.head_dim);
    let kv = u64::from(sh.n_head_kv * sh.head_dim);
    // (name, dims, fill, is a weight matrix)
    let mut t = vec![(
        "token_embd.weight".to_owned(),
        vec![embd, vocab],
        Fill::Noise,
        true,
    )];
    if let Some(r) = &sh.llama3_rope {
        t.push((
            "rope_freqs.weight".into(),
            vec![u64::from(sh.head_dim / 2)],
            Fill::Values(llama3_rope_factors(sh.head_dim, f64::from(sh.rope_base), r)),
            false,
        ));
    }
    for i in 0..cfg.n_layer {
        let p = format!("blk.{i}");
        t.push((
            format!("{p}.attn_norm.weight"),
            vec![embd],
            Fill::Ones,
            false,
        ));
        for (n, out) in [("q", q), ("k", kv), ("v", kv)] {
            t.push((
                format!("{p}.attn_{n}.weight"),
                vec![embd, out],
                Fill::Noise,
                true,
            ));
            if sh.qkv_bias {
                t.push((format!("{p}.attn_{n}.bias"), vec![out], Fill::Noise, false));
            }
        }
        t.push((
            format!("{p}.attn_output.weight"),
            vec![q, embd],
            Fill::Noise,
            true,
        ));
        t.push((
            format!("{p}.ffn_norm.weight"),
            vec![embd],
            Fill::Ones,
            false,
        ));
        t.push((
            format!("{p}.ffn_gate.weight"),
            vec![embd, ff],
            Fill::Noise,
            true,
        ));
        t.push((
            format!("{p}.ffn_up.weight"),
            vec![embd, ff],
            Fill::Noise,
            true,
        ));
        t.push((
            format!("{p}.ffn_down.weight"),
            vec![ff, embd],
            Fill::Noise,
            true,
        ));
    }
    t.push(("output_norm.weight".into(), vec![embd], Fill::Ones, false));
    t.push(("output.weight".into(), vec![embd, vocab], Fill::Noise, true));
    t
}

/// convert_hf_to_gguf's llama3 rope_freqs: 1 for short wavelengths, `factor` for long ones,
/// smoothly in between.
fn llama3_rope_factors(head_dim: u32, base: f64, r: &Llama3Rope) -> Vec<f32> {
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

/// "8B", "12B", "3.5M" in the style of convert_hf_to_gguf.
fn size_label(n_params: u64) -> String {
    let n = n_params as f64;
    let (v, unit) = match n {
        n if n >= 1e12 => (n / 1e12, "T"),
        n if n >= 1e9 => (n / 1e9, "B"),
        n if n >= 1e6 => (n / 1e6, "M"),
        _ => (n / 1e3, "K"),
    };
    if v >= 10.0 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

fn plan(cfg: &Config) -> Result<Plan> {
    let sh = cfg.shape;
    let requested = cfg.weight_type.ggml();
    let mut tensors = Vec::new();
    let mut fallbacks = Vec::new();
    let mut n_params = 0u64;
    for (name, dims, fill, matrix) in tensor_list(cfg) {
        let ty = if matrix {
            weight_type_for(requested, dims[0])
        } else {
            GgmlType::F32
        };
        if matrix && ty != requested {
            fallbacks.push((name.clone(), ty));
        }
        n_params += dims.iter().product::<u64>();
        let nbytes = ty.nbytes(&dims).context("tensor size")?;
        tensors.push(PlannedTensor {
            name,
            dims,
            ty,
            fill,
            nbytes,
        });
    }

    let arch = sh.arch.name();
    let real_depth = cfg.n_layer == sh.n_layer;
    let label = match sh.size_label {
        Some(l) if real_depth => l.to_owned(),
        _ => size_label(n_params),
    };
    let name = if real_depth {
        format!("synthetic {} shape", sh.display)
    } else {
        format!(
            "synthetic {} shape ({} of {} layers)",
            sh.display, cfg.n_layer, sh.n_layer
        )
    };
    let (tokens, scores, types) = vocab(cfg.n_vocab)?;

    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", arch)?;
    w.add_kv("general.type", "model")?;
    w.add_kv("general.name", name)?;
    w.add_kv("general.basename", format!("synthetic-{}", sh.basename))?;
    w.add_kv("general.size_label", label)?;
    w.add_kv("general.description", NOISE_NOTE)?;
    w.add_kv("general.file_type", cfg.weight_type.file_type())?;
    if !matches!(cfg.weight_type, WeightType::F16 | WeightType::F32) {
        w.add_kv("general.quantization_version", 2u32)?;
    }
    let k = |key: &str| format!("{arch}.{key}");
    w.add_kv(k("block_count"), cfg.n_layer)?;
    w.add_kv(k("context_length"), cfg.n_ctx)?;
    w.add_kv(k("embedding_length"), sh.n_embd)?;
    w.add_kv(k("feed_forward_length"), sh.n_ff)?;
    w.add_kv(k("attention.head_count"), sh.n_head)?;
    w.add_kv(k("attention.head_count_kv"), sh.n_head_kv)?;
    w.add_kv(k("attention.key_length"), sh.head_dim)?;
    w.add_kv(k("attention.value_length"), sh.head_dim)?;
    w.add_kv(k("attention.layer_norm_rms_epsilon"), sh.rms_eps)?;
    w.add_kv(k("rope.freq_base"), sh.rope_base)?;
    w.add_kv(k("rope.dimension_count"), sh.head_dim)?;
    w.add_kv(k("vocab_size"), cfg.n_vocab)?;
    w.add_kv("tokenizer.ggml.model", "llama")?;
    w.add_kv("tokenizer.ggml.tokens", tokens)?;
    w.add_kv("tokenizer.ggml.scores", scores)?;
    w.add_kv("tokenizer.ggml.token_type", types)?;
    w.add_kv("tokenizer.ggml.bos_token_id", 1u32)?;
    w.add_kv("tokenizer.ggml.eos_token_id", 2u32)?;
    w.add_kv("tokenizer.ggml.unknown_token_id", 0u32)?;
    w.add_kv("tokenizer.ggml.add_bos_token", true)?;
    w.add_kv("tokenizer.ggml.add_eos_token", false)?;
    for t in &tensors {
        w.add_tensor(t.name.clone(), &t.dims, t.ty)?;
    }
    let file_len = w.file_len();
    Ok(Plan {
        writer: w,
        tensors,
        fallbacks,
        n_params,
        file_len,
    })
}

// ---- random data ----

/// Target std of every random weight (a common init scale; keeps 40 layers finite).
const WEIGHT_STD: f64 = 0.02;
/// Bytes generated per work item; a multiple of every block size is taken below it.
const CHUNK_BYTES: u64 = 4 << 20;

/// Q4_0 nibbles are uniform over 1..=15 with 8 twice (0 is remapped to 8): mean 8, so the
/// weights (q - 8) * d have mean 0 and variance 17.5 d².
fn q4_0_scale() -> u16 {
    gw::f32_to_f16((WEIGHT_STD / 17.5f64.sqrt()) as f32)
}

/// Q8_0 quants are uniform over -127..=127 with 0 twice (-128 is remapped to 0): variance
/// 5397.5 d².
fn q8_0_scale() -> u16 {
    gw::f32_to_f16((WEIGHT_STD / 5397.5f64.sqrt()) as f32)
}

/// Q4_K: nibbles uniform over 0..=15 (mean 7.5, variance 21.25); every sub-block scale 32
/// and min 30 with dmin = 8 d, so d*32*7.5 == dmin*30 exactly and the weights have mean 0.
fn q4_k_head() -> [u8; 16] {
    let d = gw::f16_to_f32(gw::f32_to_f16(
        (WEIGHT_STD / (32.0 * 21.25f64.sqrt())) as f32,
    ));
    gw::q4_k_head(d, d * 8.0, &[32; 8], &[30; 8])
}

/// 65536 N(0, 0.02) samples, indexed by random u16s to make f16/f32 noise cheaply.
struct NoiseTable {
    f32s: Vec<f32>,
    f16s: Vec<u16>,
}

impl NoiseTable {
    fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_7ab1e);
        let f32s: Vec<f32> = (0..1 << 16)
            .map(|_| {
                // Box-Muller; 1 - u keeps ln away from 0.
                let (u1, u2): (f64, f64) = (1.0 - rng.gen::<f64>(), rng.gen());
                ((-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos() * WEIGHT_STD) as f32
            })
            .collect();
        let f16s = f32s.iter().map(|&x| gw::f32_to_f16(x)).collect();
        Self { f32s, f16s }
    }
}

/// One slice of one tensor's bytes, made independently of the others (so in parallel).
#[derive(Debug, Clone, Copy)]
struct Job {
    tensor: usize,
    chunk: u64,
    offset: u64,
    len: usize,
}

fn jobs(tensors: &[PlannedTensor]) -> Vec<Job> {
    let mut out = Vec::new();
    for (ti, t) in tensors.iter().enumerate() {
        let step = (CHUNK_BYTES / t.ty.type_size()).max(1) * t.ty.type_size();
        let mut offset = 0;
        let mut chunk = 0;
        while offset < t.nbytes {
            let len = step.min(t.nbytes - offset);
            out.push(Job {
                tensor: ti,
                chunk,
                offset,
                len: len as usize,
            });
            offset += len;
            chunk += 1;
        }
    }
    out
}

/// A stream per (seed, tensor, chunk), so the file does not depend on the thread count.
fn job_rng(seed: u64, job: &Job) -> SmallRng {
    let key = ((job.tensor as u64) << 32 | job.chunk).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    SmallRng::seed_from_u64(seed.rotate_left(17) ^ key)
}

fn fill(t: &PlannedTensor, job: &Job, seed: u64, table: &NoiseTable, buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(job.len, 0);
    let first = (job.offset / t.ty.type_size()) as usize;
    match (&t.fill, t.ty) {
        (Fill::Ones, _) => f32_fill(buf, |_| 1.0),
        (Fill::Values(v), _) => f32_fill(buf, |i| v[first + i]),
        (Fill::Noise, GgmlType::F32) => {
            let mut rng = job_rng(seed, job);
            for c in buf.chunks_exact_mut(4) {
                let x = table.f32s[(rng.next_u32() & 0xffff) as usize];
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        (Fill::Noise, GgmlType::F16) => {
            let mut rng = job_rng(seed, job);
            for c in buf.chunks_mut(8) {
                let r = rng.next_u64();
                for (k, h) in c.chunks_exact_mut(2).enumerate() {
                    let x = table.f16s[((r >> (16 * k)) & 0xffff) as usize];
                    h.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        (Fill::Noise, GgmlType::Q4_0) => {
            job_rng(seed, job).fill_bytes(buf);
            let d = q4_0_scale().to_le_bytes();
            for b in buf.chunks_exact_mut(gw::Q4_0_BYTES) {
                b[..2].copy_from_slice(&d);
                for w in b[2..].chunks_exact_mut(8) {
                    let x = u64::from_le_bytes(w.try_into().unwrap_or_default());
                    w.copy_from_slice(&zero_nibbles_to_eight(x).to_le_bytes());
                }
            }
        }
        (Fill::Noise, GgmlType::Q8_0) => {
            job_rng(seed, job).fill_bytes(buf);
            let d = q8_0_scale().to_le_bytes();
            for b in buf.chunks_exact_mut(gw::Q8_0_BYTES) {
                b[..2].copy_from_slice(&d);
                for q in &mut b[2..] {
                    // -128 has no +128 partner: map it to 0 so the quants are symmetric.
                    if *q == 0x80 {
                        *q = 0;
                    }
                }
            }
        }
        (Fill::Noise, GgmlType::Q4_K) => {
            job_rng(seed, job).fill_bytes(buf);
            let head = q4_k_head();
            for b in buf.chunks_exact_mut(gw::Q4_K_BYTES) {
                b[..16].copy_from_slice(&head);
            }
        }
        (Fill::Noise, other) => unreachable!("synth never plans {other:?} noise"),
    }
}

fn f32_fill(buf: &mut [u8], f: impl Fn(usize) -> f32) {
    for (i, c) in buf.chunks_exact_mut(4).enumerate() {
        c.copy_from_slice(&f(i).to_le_bytes());
    }
}

/// Set every zero nibble of `x` to 8 (so Q4_0 quants average exactly 8).
fn zero_nibbles_to_eight(x: u64) -> u64 {
    const LOW: u64 = 0x1111_1111_1111_1111;
    let any = x | (x >> 1) | (x >> 2) | (x >> 3);
    x | ((!any & LOW) << 3)
}

/// Generate every tensor's bytes on worker threads, in order, into `out`.
fn write_data<W: std::io::Write>(
    out: &mut gw::TensorDataWriter<W>,
    tensors: &[PlannedTensor],
    seed: u64,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let jobs = jobs(tensors);
    let table = NoiseTable::new(seed);
    let n_workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 16);
    std::thread::scope(|s| -> Result<()> {
        // Worker w makes jobs w, w+n, ...; the writer takes them round-robin, so order holds.
        // Buffers go back to their worker to be reused.
        let mut filled = Vec::new();
        let mut recycle = Vec::new();
        for w in 0..n_workers {
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(2);
            let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
            let (jobs, table) = (&jobs, &table);
            s.spawn(move || {
                for job in jobs.iter().skip(w).step_by(n_workers) {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    fill(&tensors[job.tensor], job, seed, table, &mut buf);
                    if tx.send(buf).is_err() {
                        return;
                    }
                }
            });
            filled.push(rx);
            recycle.push(back_tx);
        }
        for i in 0..jobs.len() {
            let w = i % n_workers;
            let buf = filled[w].recv().context("a generator thread stopped")?;
            out.write_data(&buf)?;
            progress(buf.len() as u64);
            // A worker that has finished no longer takes buffers back; that is fine.
            let _ = recycle[w].send(buf);
        }
        Ok(())
    })
}

// ---- the command ----

fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.0} kB", n / 1e3)
    }
}

/// One clear error before any work if the file cannot be created there.
fn check_output(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("output {} is a directory; give a file path", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!(
                "cannot write {}: directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// What [`synthesize`] wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    pub n_tensors: usize,
    pub n_params: u64,
    pub bytes: u64,
}

/// Write the GGUF for `cfg` to `path`; `quiet` turns off the stderr notices and progress.
pub fn synthesize(cfg: &Config, seed: u64, path: &Path, quiet: bool) -> Result<Summary> {
    check_output(path)?;
    let Plan {
        writer,
        tensors,
        fallbacks,
        n_params,
        file_len,
    } = plan(cfg)?;
    if !quiet && !fallbacks.is_empty() {
        let mut by_type: Vec<(GgmlType, Vec<&str>)> = Vec::new();
        for (name, ty) in &fallbacks {
            match by_type.iter_mut().find(|(t, _)| t == ty) {
                Some((_, v)) => v.push(name),
                None => by_type.push((*ty, vec![name])),
            }
        }
        for (ty, names) in by_type {
            let more = if names.len() > 3 {
                format!(" and {} more", names.len() - 3)
            } else {
                String::new()
            };
            let requested = cfg.weight_type.ggml();
            // F16 is the fallback when a row is not even whole 32-element blocks.
            let block = if ty == GgmlType::F16 {
                32
            } else {
                requested.block_size()
            };
            eprintln!(
                "synth: notice: {} {} stored as {} instead of {} (rows not a multiple of {block}): {}{more}",
                names.len(),
                if names.len() == 1 { "matrix" } else { "matrices" },
                ty.name(),
                requested.name(),
                names[..names.len().min(3)].join(", "),
            );
        }
    }
    let n_tensors = tensors.len();
    let header_len = file_len - writer.data_len();
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let result = (|| -> Result<()> {
        let mut out = writer.write_header(BufWriter::with_capacity(8 << 20, file))?;
        let bar = if quiet || file_len < (256 << 20) {
            indicatif::ProgressBar::hidden()
        } else {
            let bar = indicatif::ProgressBar::new(file_len);
            let style = indicatif::ProgressStyle::with_template(
                "synth: {bar:30} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta}",
            );
            if let Ok(style) = style {
                bar.set_style(style);
            }
            bar
        };
        bar.set_position(header_len);
        write_data(&mut out, &tensors, seed, |n| bar.inc(n))?;
        bar.finish_and_clear();
        let f = out.finish()?;
        f.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .context("flushing to disk")?;
        Ok(())
    })();
    if let Err(e) = result {
        // A half-written model would fail later with a far less clear message.
        let _ = std::fs::remove_file(path);
        return Err(e.context(format!(
            "writing {} failed (partial file removed)",
            path.display()
        )));
    }
    Ok(Summary {
        n_tensors,
        n_params,
        bytes: file_len,
    })
}

/// `gemfilter synth`.
pub fn run(args: &SynthArgs) -> Result<()> {
    if args.list {
        print!("{}", list_shapes());
        return Ok(());
    }
    let name = args
        .shape
        .as_deref()
        .context("--shape is required (see --list)")?;
    let shape = find_shape(name)?;
    let path = args.output.as_deref().context("--output is required")?;
    let cfg = Config::new(
        shape,
        args.layers.unwrap_or(shape.n_layer),
        args.ctx.unwrap_or(shape.n_ctx),
        args.weight_type,
    );
    let start = Instant::now();
    let s = synthesize(&cfg, args.seed, path, false)?;
    eprintln!(
        "synth: wrote {} ({}, {} layers, {} tensors, {} params, {}) in {:.1} s. Random \
         weights: timings are real, answers are noise.",
        path.display(),
        shape.name,
        cfg.n_layer,
        s.n_tensors,
        size_label(s.n_params),
        human_bytes(s.bytes),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::gguf_writer::tests::{dequant_q4_0, dequant_q4_k, dequant_q8_0};
    use serde_json::json;

    fn temp_path(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        std::env::temp_dir().join(format!("synth_{tag}_{}_{nanos}.gguf", std::process::id()))
    }

    fn args(shape: &str, ty: WeightType, out: &Path) -> SynthArgs {
        SynthArgs {
            shape: Some(shape.into()),
            output: Some(out.into()),
            weight_type: ty,
            seed: 7,
            layers: None,
            ctx: None,
            list: false,
        }
    }

    /// What a tensor should look like: (name, dims, ggml type id).
    fn expected(shape: &Shape, n_layer: u32, ty: WeightType) -> Vec<(String, Vec<u64>, u32)> {
        let (e, v, f) = (
            u64::from(shape.n_embd),
            base_vocab_len() as u64,
            u64::from(shape.n_ff),
        );
        let q = u64::from(shape.n_head * shape.head_dim);
        let kv = u64::from(shape.n_head_kv * shape.head_dim);
        let m = |ne0: u64| weight_type_for(ty.ggml(), ne0).id();
        let mut t = vec![("token_embd.weight".to_owned(), vec![e, v], m(e))];
        for i in 0..n_layer {
            let b = |s: &str| format!("blk.{i}.{s}");
            t.push((b("attn_norm.weight"), vec![e], 0));
            for (n, out) in [("q", q), ("k", kv), ("v", kv)] {
                t.push((b(&format!("attn_{n}.weight")), vec![e, out], m(e)));
                if shape.qkv_bias {
                    t.push((b(&format!("attn_{n}.bias")), vec![out], 0));
                }
            }
            t.push((b("attn_output.weight"), vec![q, e], m(q)));
            t.push((b("ffn_norm.weight"), vec![e], 0));
            t.push((b("ffn_gate.weight"), vec![e, f], m(e)));
            t.push((b("ffn_up.weight"), vec![e, f], m(e)));
            t.push((b("ffn_down.weight"), vec![f, e], m(f)));
        }
        t.push(("output_norm.weight".into(), vec![e], 0));
        t.push(("output.weight".into(), vec![e, v], m(e)));
        t
    }

    fn check_file(shape_name: &str, ty: WeightType) {
        let path = temp_path(&format!("{shape_name}_{ty:?}"));
        run(&args(shape_name, ty, &path)).unwrap();
        let shape = find_shape(shape_name).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let model = gguf_rs::get_gguf_container_array_size(path.to_str().unwrap(), u64::MAX)
            .unwrap()
            .decode()
            .unwrap();
        std::fs::remove_file(&path).unwrap();

        let md = model.metadata();
        let arch = shape.arch.name();
        assert_eq!(md["general.architecture"], json!(arch));
        assert_eq!(md[&format!("{arch}.block_count")], json!(6));
        assert_eq!(md[&format!("{arch}.attention.head_count")], json!(4));
        assert_eq!(md[&format!("{arch}.attention.head_count_kv")], json!(2));
        assert_eq!(md[&format!("{arch}.attention.key_length")], json!(64));
        assert_eq!(md[&format!("{arch}.rope.dimension_count")], json!(64));
        assert_eq!(md[&format!("{arch}.embedding_length")], json!(256));
        assert_eq!(md[&format!("{arch}.context_length")], json!(8192));
        assert_eq!(md[&format!("{arch}.vocab_size")], json!(base_vocab_len()));
        assert_eq!(md["general.file_type"], json!(ty.file_type()));
        assert_eq!(md["tokenizer.ggml.model"], json!("llama"));
        let tokens = md["tokenizer.ggml.tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), base_vocab_len());
        assert_eq!(tokens[..3], [json!("<unk>"), json!("<s>"), json!("</s>")]);
        assert_eq!(tokens[3 + 0x0a], json!("<0x0A>"));
        let types = md["tokenizer.ggml.token_type"].as_array().unwrap();
        assert_eq!(
            (types[0].clone(), types[1].clone(), types[3].clone()),
            (json!(2), json!(3), json!(6))
        );
        assert_eq!(md["tokenizer.ggml.add_bos_token"], json!(true));

        let want = expected(shape, 6, ty);
        let got = model.tensors();
        assert_eq!(got.len(), want.len());
        assert_eq!(
            got.iter().any(|t| t.name.ends_with(".bias")),
            shape.qkv_bias
        );
        let mut offset = 0;
        for (t, (name, dims, kind)) in got.iter().zip(&want) {
            assert_eq!(&t.name, name);
            assert_eq!(&t.shape, dims, "{name}");
            assert_eq!(t.kind, *kind, "{name}");
            assert_eq!(t.offset, offset, "{name}");
            offset += gw::align_up(t.size, 32);
        }
        assert_eq!(
            bytes.len() as u64,
            model.data_offset() + offset,
            "header + aligned data"
        );

        // Spot-check values: norms are 1, weights are finite with std near 0.02.
        let data = |name: &str| {
            let t = got.iter().find(|t| t.name == name).unwrap();
            let start = (model.data_offset() + t.offset) as usize;
            &bytes[start..start + t.size as usize]
        };
        assert!(data("blk.0.ffn_norm.weight")
            .chunks(4)
            .all(|c| c == 1.0f32.to_le_bytes()));
        let w = data("blk.1.ffn_up.weight");
        let vals: Vec<f32> = match ty {
            WeightType::Q4_0 => w.chunks(18).flat_map(dequant_q4_0).collect(),
            WeightType::Q8_0 => w.chunks(34).flat_map(dequant_q8_0).collect(),
            WeightType::Q4_K => w.chunks(144).flat_map(dequant_q4_k).collect(),
            WeightType::F16 => w
                .chunks(2)
                .map(|c| gw::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            WeightType::F32 => w
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        };
        assert_eq!(vals.len(), 256 * 512);
        let mean = vals.iter().map(|&v| f64::from(v)).sum::<f64>() / vals.len() as f64;
        let var = vals
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / vals.len() as f64;
        assert!(vals.iter().all(|v| v.is_finite()));
        assert!(mean.abs() < 1e-3, "{ty:?} mean {mean}");
        assert!(
            (var.sqrt() - 0.02).abs() < 0.002,
            "{ty:?} std {}",
            var.sqrt()
        );
    }

    #[test]
    fn tiny_llama_all_types() {
        for ty in [
            WeightType::Q4_0,
            WeightType::Q4_K,
            WeightType::Q8_0,
            WeightType::F16,
            WeightType::F32,
        ] {
            check_file("tiny-llama", ty);
        }
    }

    #[test]
    fn tiny_qwen2_all_types() {
        for ty in [
            WeightType::Q4_0,
            WeightType::Q4_K,
            WeightType::Q8_0,
            WeightType::F16,
            WeightType::F32,
        ] {
            check_file("tiny-qwen2", ty);
        }
    }

    #[test]
    fn same_seed_same_file() {
        let (a, b) = (temp_path("seed_a"), temp_path("seed_b"));
        let mut x = args("tiny-qwen2", WeightType::Q4_K, &a);
        x.layers = Some(2);
        run(&x).unwrap();
        x.output = Some(b.clone());
        run(&x).unwrap();
        let (da, db) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        x.seed = 8;
        run(&x).unwrap();
        let dc = std::fs::read(&b).unwrap();
        std::fs::remove_file(&a).unwrap();
        std::fs::remove_file(&b).unwrap();
        assert_eq!(da, db);
        assert_eq!(da.len(), dc.len());
        assert_ne!(da, dc);
    }

    #[test]
    fn overrides_and_metadata() {
        let path = temp_path("override");
        let mut a = args("tiny-llama", WeightType::Q8_0, &path);
        a.layers = Some(2);
        a.ctx = Some(1024);
        run(&a).unwrap();
        let model = gguf_rs::get_gguf_container(path.to_str().unwrap())
            .unwrap()
            .decode();
        std::fs::remove_file(&path).unwrap();
        let model = model.unwrap();
        let md = model.metadata();
        assert_eq!(md["llama.block_count"], json!(2));
        assert_eq!(md["llama.context_length"], json!(1024));
        assert_eq!(
            md["general.name"],
            json!("synthetic tiny-llama shape (2 of 6 layers)")
        );
        assert_eq!(md["general.size_label"], json!("1.4M"));
        assert_eq!(model.tensors().len(), 1 + 2 * 9 + 2);

        // An 8B shape cut to one layer is still ~1.2 GB (embeddings): check the plan only.
        let sh = find_shape("llama-3.1-8b").unwrap();
        let p = plan(&Config::new(sh, 1, 4096, WeightType::Q4_0)).unwrap();
        assert_eq!(p.tensors.len(), 1 + 1 + 9 + 2);
        assert_eq!(p.tensors[1].name, "rope_freqs.weight");
        assert!(p.fallbacks.is_empty());
        let h = p.writer.header_bytes();
        let has = |s: &str| h.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(has("synthetic Llama-3.1-8B shape (1 of 32 layers)"));
        let full = plan(&Config::new(sh, 32, sh.n_ctx, WeightType::Q4_0)).unwrap();
        let fh = full.writer.header_bytes();
        assert!(fh.windows(2).any(|w| w == b"8B"));
    }

    #[test]
    fn real_shapes_have_published_sizes() {
        let params = |name: &str| {
            let sh = find_shape(name).unwrap();
            plan(&Config::new(sh, sh.n_layer, sh.n_ctx, WeightType::Q4_0))
                .unwrap()
                .n_params
        };
        // Published parameter counts: 8.03B, 12.25B, 7.62B.
        assert_eq!(params("llama-3.1-8b"), 8_030_261_312);
        assert_eq!(params("mistral-nemo-12b"), 12_247_782_400);
        assert_eq!(params("qwen2-7b"), 7_615_616_512);
        let nemo = find_shape("mistral-nemo-12b").unwrap();
        let p = plan(&Config::new(nemo, 1, 1024, WeightType::Q4_K)).unwrap();
        let q = p
            .tensors
            .iter()
            .find(|t| t.name == "blk.0.attn_q.weight")
            .unwrap();
        assert_eq!(q.dims, [5120, 4096]);
        let o = p
            .tensors
            .iter()
            .find(|t| t.name == "blk.0.attn_output.weight")
            .unwrap();
        assert_eq!((o.dims.clone(), o.ty), (vec![4096, 5120], GgmlType::Q4_K));
        let qwen = find_shape("qwen2-7b").unwrap();
        let p = plan(&Config::new(qwen, 1, 1024, WeightType::Q4_0)).unwrap();
        let kb = p
            .tensors
            .iter()
            .find(|t| t.name == "blk.0.attn_k.bias")
            .unwrap();
        assert_eq!((kb.dims.clone(), kb.ty), (vec![512], GgmlType::F32));
    }

    #[test]
    fn odd_rows_fall_back_and_still_write() {
        // hidden 288 (a multiple of 32, not of 256) and ffn 100 (not a multiple of 32).
        let shape: &'static Shape = Box::leak(Box::new(Shape {
            name: "odd",
            n_embd: 288,
            n_head: 4,
            head_dim: 72,
            n_ff: 100,
            ..find_shape("tiny-llama").unwrap().clone()
        }));
        let path = temp_path("odd");
        let cfg = Config::new(shape, 1, 512, WeightType::Q4_K);
        let s = synthesize(&cfg, 1, &path, true).unwrap();
        let model = gguf_rs::get_gguf_container(path.to_str().unwrap())
            .unwrap()
            .decode();
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::remove_file(&path).unwrap();
        let model = model.unwrap();
        let kind = |n: &str| model.tensors().iter().find(|t| t.name == n).unwrap().kind;
        assert_eq!(kind("blk.0.attn_q.weight"), GgmlType::Q4_0.id());
        assert_eq!(kind("blk.0.ffn_down.weight"), GgmlType::F16.id());
        assert_eq!(kind("output.weight"), GgmlType::Q4_0.id());
        assert_eq!(plan(&cfg).unwrap().fallbacks.len(), 9);
        assert_eq!(len, s.bytes);
    }

    #[test]
    fn type_fallbacks() {
        assert_eq!(weight_type_for(GgmlType::Q4_K, 4096), GgmlType::Q4_K);
        assert_eq!(weight_type_for(GgmlType::Q4_K, 4160), GgmlType::Q4_0);
        assert_eq!(weight_type_for(GgmlType::Q4_K, 100), GgmlType::F16);
        assert_eq!(weight_type_for(GgmlType::Q4_0, 100), GgmlType::F16);
        assert_eq!(weight_type_for(GgmlType::Q8_0, 96), GgmlType::Q8_0);
        assert_eq!(weight_type_for(GgmlType::F32, 3), GgmlType::F32);
    }

    #[test]
    fn llama3_rope_factors_match_converter() {
        let sh = find_shape("llama-3.1-8b").unwrap();
        let f = llama3_rope_factors(128, 500_000.0, sh.llama3_rope.as_ref().unwrap());
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
        assert!(f.iter().any(|&x| x > 1.0 && x < 8.0), "smooth band present");
    }

    #[test]
    fn vocab_layout() {
        let (tokens, scores, types) = vocab(1000).unwrap();
        assert_eq!(
            (tokens.len(), scores.len(), types.len()),
            (1000, 1000, 1000)
        );
        assert_eq!(tokens[3], "<0x00>");
        assert_eq!(tokens[258], "<0xFF>");
        assert_eq!(tokens[259], "\u{2581}");
        assert!(tokens.contains(&"\u{2581}a".to_owned()));
        let unique: std::collections::HashSet<_> = tokens.iter().collect();
        assert_eq!(unique.len(), tokens.len());
        assert!(scores[260] < scores[259]);
        assert!(vocab(100).is_err());
    }

    #[test]
    fn random_blocks_follow_ggml_layout() {
        let table = NoiseTable::new(0);
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_K] {
            let dims = vec![256u64, 64];
            let t = PlannedTensor {
                name: "w".into(),
                nbytes: ty.nbytes(&dims).unwrap(),
                dims,
                ty,
                fill: Fill::Noise,
            };
            let js = jobs(std::slice::from_ref(&t));
            assert_eq!(js.len(), 1);
            let mut buf = Vec::new();
            fill(&t, &js[0], 3, &table, &mut buf);
            assert_eq!(buf.len() as u64, t.nbytes);
            let bs = ty.type_size() as usize;
            for b in buf.chunks(bs) {
                match ty {
                    GgmlType::Q4_0 => {
                        assert_eq!(u16::from_le_bytes([b[0], b[1]]), q4_0_scale());
                        // No nibble 0: quants are -7..=7 times d.
                        assert!(b[2..].iter().all(|&q| q & 0x0f != 0 && q >> 4 != 0));
                        let d = gw::f16_to_f32(q4_0_scale());
                        assert!(dequant_q4_0(b).iter().all(|v| v.abs() <= 7.0 * d));
                    }
                    GgmlType::Q8_0 => {
                        assert_eq!(u16::from_le_bytes([b[0], b[1]]), q8_0_scale());
                        assert!(b[2..].iter().all(|&q| q != 0x80));
                        let d = gw::f16_to_f32(q8_0_scale());
                        assert!(dequant_q8_0(b).iter().all(|v| v.abs() <= 127.0 * d));
                    }
                    _ => {
                        assert_eq!(b[..16], q4_k_head());
                        // Symmetric: nibble 0 gives -30 dmin = -240 d, nibble 15 gives
                        // 15*32 d - 240 d = +240 d.
                        let d = gw::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                        let y = dequant_q4_k(b);
                        assert!(y.iter().all(|v| v.abs() <= 240.0 * d * 1.0001));
                        assert!(
                            y.iter().any(|v| *v > 200.0 * d) && y.iter().any(|v| *v < -200.0 * d)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nibble_remap() {
        assert_eq!(zero_nibbles_to_eight(0), 0x8888_8888_8888_8888);
        assert_eq!(
            zero_nibbles_to_eight(0x1234_5678_9abc_def0),
            0x1234_5678_9abc_def8
        );
        assert_eq!(
            zero_nibbles_to_eight(0xf0f0_0000_0000_0001),
            0xf8f8_8888_8888_8881
        );
    }

    #[test]
    fn errors_are_clear() {
        let e = find_shape("llama-9b").unwrap_err().to_string();
        assert!(
            e.contains("llama-3.1-8b") && e.contains("tiny-qwen2"),
            "{e}"
        );
        assert!(find_shape("Qwen2-7B").is_ok());
        let missing = std::env::temp_dir()
            .join("synth_no_such_dir_x9")
            .join("m.gguf");
        let e = run(&args("tiny-llama", WeightType::Q4_0, &missing)).unwrap_err();
        assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
        let e = run(&args("tiny-llama", WeightType::Q4_0, &std::env::temp_dir())).unwrap_err();
        assert!(format!("{e:#}").contains("is a directory"), "{e:#}");
        let mut a = args("nope", WeightType::Q4_0, &missing);
        assert!(run(&a).is_err());
        a.shape = None;
        assert!(run(&a).is_err());
    }

    #[test]
    fn list_names_every_shape() {
        let l = list_shapes();
        for s in SHAPES {
            assert!(l.contains(s.name));
        }
    }

    #[test]
    fn clap_args_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: SynthArgs,
        }
        let c = Cli::try_parse_from([
            "x", "--shape", "qwen2-7b", "-o", "m.gguf", "--type", "q4_k", "--layers", "2",
        ])
        .unwrap();
        assert_eq!(
            (c.a.weight_type, c.a.layers, c.a.seed),
            (WeightType::Q4_K, Some(2), 0)
        );
        assert!(Cli::try_parse_from(["x", "--list"]).unwrap().a.list);
        assert!(Cli::try_parse_from(["x", "--shape", "qwen2-7b"]).is_err());
        assert!(Cli::try_parse_from(["x", "--shape", "a", "-o", "b", "--layers", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--shape", "a", "-o", "b", "--type", "q5_0"]).is_err());
    }
}
