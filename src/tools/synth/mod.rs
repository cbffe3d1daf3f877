//! `gemfilter synth`: a random-weight GGUF with the exact tensor shapes of a real model.
//!
//! No model hub is reachable from the project's machines, so 8B/12B benchmarks run on these
//! files. Speed and memory depend on shapes and quant types, not on values, so timings are
//! real; the answers are noise. The file is written through llama.cpp's own gguf API
//! ([`crate::engine::ffi::gguf`]); the tensor data is streamed, never held in memory.

mod noise;
pub mod shapes;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::engine::ffi::gguf::{Gguf, TensorType};
pub use shapes::{base_vocab_len, find_shape, Arch, Llama3Rope, Shape, SHAPES};

/// Storage type of the 2-D weights.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    Q4_0,
    Q4_K,
    Q8_0,
    F16,
    F32,
}

impl WeightType {
    #[must_use]
    pub fn tensor_type(self) -> TensorType {
        match self {
            WeightType::Q4_0 => TensorType::Q4_0,
            WeightType::Q4_K => TensorType::Q4_K,
            WeightType::Q8_0 => TensorType::Q8_0,
            WeightType::F16 => TensorType::F16,
            WeightType::F32 => TensorType::F32,
        }
    }

    /// `general.file_type` (`llama_ftype`). There is no "all `Q4_K`" ftype; `Q4_K_S` (14) is
    /// the closest.
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

/// The table `--list` prints.
#[must_use]
pub fn list_shapes() -> String {
    let mut s = format!(
        "{:<18}{:<7}{:>7}{:>7}{:>7}{:>5}{:>5}{:>7}{:>8}{:>9}{:>10}  note\n",
        "shape", "arch", "layers", "hidden", "heads", "kv", "hdim", "ffn", "vocab", "ctx", "q4_0"
    );
    for sh in SHAPES {
        let cfg = Config::new(sh, sh.n_layer, sh.n_ctx, WeightType::Q4_0);
        let size = plan(&cfg).map_or(0, |p| p.gguf.file_len());
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
        let n_vocab = shape.n_vocab.unwrap_or(base_vocab_len());
        Self {
            shape,
            n_layer,
            n_ctx,
            n_vocab,
            weight_type,
        }
    }
}

/// How a tensor's values are made.
#[derive(Debug, Clone, PartialEq)]
enum Fill {
    /// Norm weights.
    Ones,
    /// Random values with mean 0 and std [`noise::WEIGHT_STD`].
    Noise,
    Values(Vec<f32>),
}

#[derive(Debug, Clone)]
struct PlannedTensor {
    name: String,
    dims: Vec<u64>,
    ty: TensorType,
    fill: Fill,
    nbytes: u64,
}

/// Everything to write, before any byte is written.
struct Plan {
    gguf: Gguf,
    tensors: Vec<PlannedTensor>,
    /// (tensor, type it fell back to)
    fallbacks: Vec<(String, TensorType)>,
    n_params: u64,
}

/// The requested type if a row of `ne0` fills whole blocks, else the nearest that does.
fn weight_type_for(requested: TensorType, ne0: u64) -> TensorType {
    if requested.fits_row(ne0) {
        requested
    } else if requested == TensorType::Q4_K && TensorType::Q4_0.fits_row(ne0) {
        TensorType::Q4_0
    } else {
        TensorType::F16
    }
}

/// Tensor names and shapes as llama.cpp's loader creates them for `LLM_ARCH_LLAMA` and
/// `LLM_ARCH_QWEN2` (src/models/llama.cpp, qwen2.cpp): (name, dims ne0 first, fill). With tied
/// embeddings there is no `output.weight` and the loader reuses `token_embd.weight`.
fn tensor_list(cfg: &Config) -> Vec<(String, Vec<u64>, Fill)> {
    let sh = cfg.shape;
    let (embd, vocab, ff) = (
        u64::from(sh.n_embd),
        u64::from(cfg.n_vocab),
        u64::from(sh.n_ff),
    );
    let q = u64::from(sh.n_head * sh.head_dim);
    let kv = u64::from(sh.n_head_kv * sh.head_dim);
    let matrix = |name: String, dims: Vec<u64>| (name, dims, Fill::Noise);
    let norm = |name: String| (name, vec![embd], Fill::Ones);
    let mut t = vec![matrix("token_embd.weight".into(), vec![embd, vocab])];
    if let Some(r) = &sh.llama3_rope {
        let f = shapes::llama3_rope_factors(sh.head_dim, f64::from(sh.rope_base), r);
        t.push((
            "rope_freqs.weight".into(),
            vec![f.len() as u64],
            Fill::Values(f),
        ));
    }
    for i in 0..cfg.n_layer {
        let p = |s: &str| format!("blk.{i}.{s}");
        t.push(norm(p("attn_norm.weight")));
        for (n, out) in [("q", q), ("k", kv), ("v", kv)] {
            t.push(matrix(p(&format!("attn_{n}.weight")), vec![embd, out]));
            if sh.qkv_bias {
                t.push((p(&format!("attn_{n}.bias")), vec![out], Fill::Noise));
            }
        }
        t.push(matrix(p("attn_output.weight"), vec![q, embd]));
        t.push(norm(p("ffn_norm.weight")));
        t.push(matrix(p("ffn_gate.weight"), vec![embd, ff]));
        t.push(matrix(p("ffn_up.weight"), vec![embd, ff]));
        t.push(matrix(p("ffn_down.weight"), vec![ff, embd]));
    }
    t.push(norm("output_norm.weight".into()));
    if !sh.tied_embd {
        t.push(matrix("output.weight".into(), vec![embd, vocab]));
    }
    t
}

/// "8B", "12B", "3.5M" in the style of `convert_hf_to_gguf`.
#[allow(clippy::cast_precision_loss)] // a rounded label
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
    let requested = cfg.weight_type.tensor_type();
    let mut g = Gguf::new();
    let mut tensors = Vec::new();
    for (name, dims, fill) in tensor_list(cfg) {
        // The 2-D tensors are the weight matrices; norms, biases and rope factors stay f32.
        let ty = match dims[..] {
            [ne0, _] => weight_type_for(requested, ne0),
            _ => TensorType::F32,
        };
        g.add_tensor(&name, &dims, ty)?;
        let nbytes = g.tensor_extent(g.n_tensors() - 1).1;
        tensors.push(PlannedTensor {
            name,
            dims,
            ty,
            fill,
            nbytes,
        });
    }
    let n_params = tensors.iter().map(|t| t.dims.iter().product::<u64>()).sum();
    let fallbacks = tensors
        .iter()
        .filter(|t| t.dims.len() == 2 && t.ty != requested)
        .map(|t| (t.name.clone(), t.ty))
        .collect();

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
    g.set_str("general.architecture", arch)?;
    g.set_str("general.type", "model")?;
    g.set_str("general.name", &name)?;
    g.set_str("general.basename", &format!("synthetic-{}", sh.basename))?;
    g.set_str("general.size_label", &label)?;
    g.set_str("general.description", NOISE_NOTE)?;
    g.set_u32("general.file_type", cfg.weight_type.file_type())?;
    if !matches!(cfg.weight_type, WeightType::F16 | WeightType::F32) {
        g.set_u32("general.quantization_version", 2)?;
    }
    let k = |key: &str| format!("{arch}.{key}");
    for (key, v) in [
        ("block_count", cfg.n_layer),
        ("context_length", cfg.n_ctx),
        ("embedding_length", sh.n_embd),
        ("feed_forward_length", sh.n_ff),
        ("attention.head_count", sh.n_head),
        ("attention.head_count_kv", sh.n_head_kv),
        ("attention.key_length", sh.head_dim),
        ("attention.value_length", sh.head_dim),
        ("rope.dimension_count", sh.head_dim),
        ("vocab_size", cfg.n_vocab),
    ] {
        g.set_u32(&k(key), v)?;
    }
    g.set_f32(&k("attention.layer_norm_rms_epsilon"), sh.rms_eps)?;
    g.set_f32(&k("rope.freq_base"), sh.rope_base)?;
    let (tokens, scores, types) = shapes::vocab(cfg.n_vocab)?;
    g.set_str("tokenizer.ggml.model", "llama")?;
    g.set_arr_str("tokenizer.ggml.tokens", &tokens)?;
    g.set_arr_f32("tokenizer.ggml.scores", &scores)?;
    g.set_arr_i32("tokenizer.ggml.token_type", &types)?;
    g.set_u32("tokenizer.ggml.bos_token_id", 1)?;
    g.set_u32("tokenizer.ggml.eos_token_id", 2)?;
    g.set_u32("tokenizer.ggml.unknown_token_id", 0)?;
    g.set_bool("tokenizer.ggml.add_bos_token", true)?;
    g.set_bool("tokenizer.ggml.add_eos_token", false)?;
    Ok(Plan {
        gguf: g,
        tensors,
        fallbacks,
        n_params,
    })
}

#[allow(clippy::cast_precision_loss)] // a rounded size
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

/// One clear error before any work if the file cannot be created there. Only a regular file
/// is ever replaced: a device, FIFO, socket or symlink at the path is refused, not written
/// through, blocked on or unlinked.
fn check_output(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        bail!("output {} is a directory; give a file path", path.display());
    }
    crate::fsutil::regular_or_absent(path, "output")?;
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

/// One notice per fallback type, naming up to three of the matrices.
fn fallback_notices(requested: TensorType, fallbacks: &[(String, TensorType)]) -> Vec<String> {
    let mut by_type: Vec<(TensorType, Vec<&str>)> = Vec::new();
    for (name, ty) in fallbacks {
        match by_type.iter_mut().find(|(t, _)| t == ty) {
            Some((_, v)) => v.push(name),
            None => by_type.push((*ty, vec![name])),
        }
    }
    by_type
        .into_iter()
        .map(|(ty, names)| {
            let more = match names.len() {
                n if n > 3 => format!(" and {} more", n - 3),
                _ => String::new(),
            };
            // F16 is the fallback when a row is not even whole 32-element blocks.
            let block = if ty == TensorType::F16 {
                32
            } else {
                requested.block_size()
            };
            format!(
                "synth: notice: {} {} stored as {} instead of {} (rows not a multiple of \
                 {block}): {}{more}",
                names.len(),
                if names.len() == 1 {
                    "matrix"
                } else {
                    "matrices"
                },
                ty.name(),
                requested.name(),
                names[..names.len().min(3)].join(", "),
            )
        })
        .collect()
}

/// What [`synthesize`] wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    pub n_tensors: usize,
    pub n_params: u64,
    pub bytes: u64,
}

/// Write the GGUF for `cfg` to `path`; `quiet` turns off the stderr notices and progress.
///
/// # Errors
/// An output path that cannot be written, or a write failure. The model is written to a temp
/// file beside `path` and renamed over it at the end: on failure only that temp file is
/// removed, and whatever was at `path` before stays.
pub fn synthesize(cfg: &Config, seed: u64, path: &Path, quiet: bool) -> Result<Summary> {
    check_output(path)?;
    let p = plan(cfg)?;
    if !quiet {
        for n in fallback_notices(cfg.weight_type.tensor_type(), &p.fallbacks) {
            eprintln!("{n}");
        }
    }
    let file_len = p.gguf.file_len();
    let mut tmp = crate::fsutil::TempFile::beside(path)?;
    let result = (|| -> Result<()> {
        let file = tmp.file().context("the temp file is closed")?;
        let mut out = p.gguf.write_meta(BufWriter::with_capacity(8 << 20, file))?;
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
        bar.set_position(file_len - p.gguf.data_len());
        noise::write_data(&mut out, &p.tensors, seed, |n| bar.inc(n))?;
        bar.finish_and_clear();
        out.finish()?
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .map(drop)
            .map_err(|e| crate::fsutil::write_error(path, &e))
    })();
    if let Err(e) = result.and_then(|()| tmp.commit(path)) {
        // The temp file is gone with `tmp`; a half-written model is never left at `path`.
        return Err(e.context(format!("writing {} failed", path.display())));
    }
    Ok(Summary {
        n_tensors: p.tensors.len(),
        n_params: p.n_params,
        bytes: file_len,
    })
}

/// Said in `--help` and written into every file's `general.description`.
pub const NOISE_NOTE: &str =
    "The weights are random: timings and memory use are those of the real \
model (they depend on shapes and quant types, not on values), but its answers are noise. Use it \
for speed and memory benchmarks only, never for quality.";

/// What `gemfilter synth` does, resolved from its flags.
#[derive(Debug, Clone)]
pub enum SynthJob {
    /// Print the known shapes.
    List,
    /// Write one file.
    Write {
        cfg: Config,
        seed: u64,
        path: PathBuf,
    },
}

impl SynthJob {
    /// The job for `--list`, or for writing `shape` to `output` (both required then).
    ///
    /// # Errors
    /// A missing or unknown shape, or a missing output path.
    pub fn new(
        list: bool,
        shape: Option<&str>,
        output: Option<PathBuf>,
        weight_type: WeightType,
        seed: u64,
        layers: Option<u32>,
        ctx: Option<u32>,
    ) -> Result<Self> {
        if list {
            return Ok(Self::List);
        }
        let shape = find_shape(shape.context("--shape is required (see --list)")?)?;
        Ok(Self::Write {
            cfg: Config::new(
                shape,
                layers.unwrap_or(shape.n_layer),
                ctx.unwrap_or(shape.n_ctx),
                weight_type,
            ),
            seed,
            path: output.context("--output is required")?,
        })
    }
}

/// `gemfilter synth`.
///
/// # Errors
/// An unwritable output file.
pub fn run(job: &SynthJob) -> Result<()> {
    let (cfg, seed, path) = match job {
        SynthJob::List => {
            print!("{}", list_shapes());
            return Ok(());
        }
        SynthJob::Write { cfg, seed, path } => (cfg, *seed, path.as_path()),
    };
    let start = Instant::now();
    let s = synthesize(cfg, seed, path, false)?;
    eprintln!(
        "synth: wrote {} ({}, {} layers, {} tensors, {} params, {}) in {:.1} s. Random \
         weights: timings are real, answers are noise.",
        path.display(),
        cfg.shape.name,
        cfg.n_layer,
        s.n_tensors,
        size_label(s.n_params),
        human_bytes(s.bytes),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
