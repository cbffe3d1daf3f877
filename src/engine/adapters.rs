//! What llama-cli loads on top of the model's weights: low-rank adapters (`--lora`,
//! `--lora-scaled`), control vectors (`--control-vector*`), metadata overrides (`--override-kv`)
//! and `--check-tensors`, applied as llama.cpp's `common_init_from_params` does: overrides and
//! the tensor check in the model parameters, adapters loaded once per model and set on every
//! context made from it.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{bail, ensure, Context, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::params::kv_overrides::ParamOverrideValue;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};

use super::ffi::gguf::Gguf;
use crate::sanitize;

/// One `--override-kv` value (llama.cpp's `llama_model_kv_override`).
#[derive(Debug, Clone, PartialEq)]
pub enum KvValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// At most 127 bytes, as llama.cpp's fixed buffer holds.
    Str(String),
}

/// Adapters and overrides for every load of the model (the filter pass's too).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adjust {
    /// `--lora`/`--lora-scaled`: adapter files and their scales, in command-line order.
    pub lora: Vec<(PathBuf, f32)>,
    /// `--control-vector`/`--control-vector-scaled`: files and strengths, summed as llama.cpp does.
    pub control_vectors: Vec<(PathBuf, f32)>,
    /// `--control-vector-layer-range START END` (≤ 0: llama.cpp's default, 1 and the last layer).
    pub cvec_layers: (i32, i32),
    /// `--override-kv`, in order.
    pub kv_overrides: Vec<(String, KvValue)>,
    /// `--check-tensors`.
    pub check_tensors: bool,
}

impl Adjust {
    /// Nothing beyond the weights as stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The model parameters with the overrides and the tensor check.
    ///
    /// # Errors
    /// A key or string value llama.cpp's fixed buffers cannot hold (refused when parsed too).
    pub fn apply_params(&self, params: LlamaModelParams) -> Result<LlamaModelParams> {
        let mut params = params.with_check_tensors(self.check_tensors);
        for (key, value) in &self.kv_overrides {
            ensure!(
                key.len() < 128,
                "--override-kv: key {} is longer than 127 bytes",
                sanitize::quote(key)
            );
            let k = CString::new(key.as_str()).context("--override-kv: a key with a NUL byte")?;
            let v = match value {
                KvValue::Int(i) => ParamOverrideValue::Int(*i),
                KvValue::Float(f) => ParamOverrideValue::Float(*f),
                KvValue::Bool(b) => ParamOverrideValue::Bool(*b),
                KvValue::Str(s) => {
                    ensure!(
                        s.len() < 128 && !s.contains('\0'),
                        "--override-kv: the value of {} is longer than 127 bytes",
                        sanitize::quote(key)
                    );
                    let mut buf = [0 as std::ffi::c_char; 128];
                    for (d, &b) in buf.iter_mut().zip(s.as_bytes()) {
                        *d = std::ffi::c_char::from_ne_bytes([b]);
                    }
                    ParamOverrideValue::Str(buf)
                }
            };
            // The parameters are Unpin: the overrides live in a Vec the struct owns.
            Pin::new(&mut params).append_kv_override(&k, v);
        }
        Ok(params)
    }
}

/// The adapters of one loaded model, set on each of its contexts.
#[derive(Default)]
pub struct Loaded {
    lora: Vec<LlamaLoraAdapter>,
    scales: Vec<f32>,
    /// Control vector data (layer 1 first), `n_embd`, first and last layer.
    cvec: Option<(Vec<f32>, i32, i32, i32)>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("lora", &self.lora.len())
            .field("cvec", &self.cvec.is_some())
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// Load `adjust`'s adapters for `model`. A prefix model gets the control vector of the
    /// layers it has (llama.cpp applies one per layer, so its first layers see what the full
    /// model's do).
    ///
    /// # Errors
    /// An adapter llama.cpp refuses (not an adapter GGUF, another base model), or a bad control
    /// vector file; one line naming the file.
    pub fn load(model: &mut LlamaModel, adjust: &Adjust) -> Result<Self> {
        let mut out = Self::default();
        for (path, scale) in &adjust.lora {
            let a = model.lora_adapter_init(path).map_err(|e| {
                anyhow::anyhow!(
                    "--lora: llama.cpp could not load the adapter {} ({e}); it must be a LoRA GGUF made for this model (run with -v for llama.cpp's reason)",
                    sanitize::path(path)
                )
            })?;
            out.lora.push(a);
            out.scales.push(*scale);
        }
        if !adjust.control_vectors.is_empty() {
            let n_layer = usize::try_from(model.n_layer()).unwrap_or(usize::MAX);
            let (data, n_embd) = control_vectors(&adjust.control_vectors, n_layer)?;
            let model_embd = model.n_embd();
            ensure!(
                n_embd == model_embd,
                "--control-vector: the vectors have {n_embd} values per layer, the model's embedding has {model_embd}"
            );
            let last = i32::try_from(model.n_layer()).unwrap_or(i32::MAX);
            let (start, end) = adjust.cvec_layers;
            out.cvec = Some((
                data,
                n_embd,
                if start <= 0 { 1 } else { start },
                if end <= 0 { last } else { end },
            ));
        }
        Ok(out)
    }

    /// Set the adapters on a fresh context of this model.
    ///
    /// # Errors
    /// llama.cpp refusing them (its code in the message).
    pub fn set_on(&self, ctx: &mut LlamaContext<'_>) -> Result<()> {
        if !self.lora.is_empty() {
            ctx.lora_adapters_set(&self.lora, &self.scales)
                .map_err(|e| {
                    anyhow::anyhow!("--lora: llama.cpp could not set the adapters ({e})")
                })?;
        }
        if let Some((data, n_embd, start, end)) = &self.cvec {
            ctx.adapter_cvec_set(data, *n_embd, *start, *end)
                .map_err(|e| {
                    anyhow::anyhow!("--control-vector: llama.cpp could not set it ({e})")
                })?;
        }
        Ok(())
    }
}

/// llama.cpp's `common_control_vector_load`: each file's `direction.N` tensors (N ≥ 1, F32,
/// one dimension, all of one length), times its strength, summed per layer; layer 1 first.
/// Directions past the model's `n_layer` layers are skipped (llama.cpp never applies them).
fn control_vectors(files: &[(PathBuf, f32)], n_layer: usize) -> Result<(Vec<f32>, i32)> {
    let mut data: Vec<f32> = Vec::new();
    let mut n_embd: Option<usize> = None;
    for (path, strength) in files {
        let bad = |why: &str| anyhow::anyhow!("--control-vector: {} {why}", sanitize::path(path));
        let g = Gguf::open(path).map_err(|_| bad("is not a readable GGUF file"))?;
        let mut file = crate::fsutil::open_following(path, "--control-vector file")?;
        let base = g.data_offset();
        for t in g.tensors() {
            let layer = t
                .name
                .strip_prefix("direction.")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    bad(&format!(
                        "has a tensor {} that is not direction.<layer>",
                        sanitize::quote(&t.name)
                    ))
                })?;
            if layer == 0 {
                bail!(bad("has a direction for layer 0 (layers count from 1)"));
            }
            if t.type_id != 0 || t.dims.len() != 1 {
                bail!(bad(
                    "has a direction that is not a one-dimensional F32 tensor"
                ));
            }
            let n = usize::try_from(t.dims[0]).unwrap_or(usize::MAX);
            match n_embd {
                None => n_embd = Some(n),
                Some(m) if m != n => bail!(bad("has directions of different lengths")),
                Some(_) => {}
            }
            // Bounded before anything is allocated from the file's counts.
            ensure!(
                (1..=1 << 20).contains(&n) && t.size == 4 * t.dims[0],
                bad("has a direction of a bad size")
            );
            if layer > n_layer {
                continue;
            }
            let mut raw = vec![0u8; n * 4];
            file.seek(SeekFrom::Start(base + t.offset))
                .and_then(|_| file.read_exact(&mut raw))
                .map_err(|_| bad("is truncated"))?;
            if data.len() < n * layer {
                data.resize(n * layer, 0.0);
            }
            let dst = &mut data[n * (layer - 1)..n * layer];
            for (d, c) in dst.iter_mut().zip(raw.chunks_exact(4)) {
                *d += f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * strength;
            }
        }
    }
    let n = n_embd.context("--control-vector: the files hold no direction tensors")?;
    Ok((
        data,
        i32::try_from(n).context("--control-vector: vectors too long")?,
    ))
}

/// `--override-kv KEY=TYPE:VALUE,...` as llama.cpp's `string_parse_kv_override` reads each item.
///
/// # Errors
/// An item without `=`, an unknown type, a bad bool, a key or string over 127 bytes.
pub fn parse_kv_override(item: &str) -> Result<(String, KvValue)> {
    let bad = |why: &str| anyhow::anyhow!("--override-kv: {} {why}", sanitize::quote(item));
    let (key, rest) = item
        .split_once('=')
        .ok_or_else(|| bad("is not KEY=TYPE:VALUE (types: int, float, bool, str)"))?;
    ensure!(
        !key.is_empty() && key.len() < 128,
        bad("has an empty key or one over 127 bytes")
    );
    let (ty, v) = rest
        .split_once(':')
        .ok_or_else(|| bad("has no TYPE: (int, float, bool or str)"))?;
    let value = match ty {
        "int" => KvValue::Int(v.trim().parse().map_err(|_| bad("has a bad int"))?),
        "float" => KvValue::Float(v.trim().parse().map_err(|_| bad("has a bad float"))?),
        "bool" => match v {
            "true" => KvValue::Bool(true),
            "false" => KvValue::Bool(false),
            _ => bail!(bad("has a bool that is neither true nor false")),
        },
        "str" => {
            ensure!(v.len() <= 127, bad("has a string over 127 bytes"));
            KvValue::Str(v.to_owned())
        }
        _ => bail!(bad("has an unknown type (int, float, bool or str)")),
    };
    Ok((key.to_owned(), value))
}

/// A path for an adapter option, checked to be a readable regular file.
///
/// # Errors
/// A missing or unreadable file, named with the option.
pub fn adapter_file(flag: &str, name: &str) -> Result<PathBuf> {
    crate::fsutil::open_following(Path::new(name), &format!("{flag} file"))?;
    Ok(PathBuf::from(name))
}
