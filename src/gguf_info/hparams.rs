//! A copy of the hyper-parameter checks llama.cpp makes with `GGML_ASSERT` (which aborts the
//! process) or divides by: layer count, epsilons, alignment, head counts, dimensions, experts,
//! rope scaling and duplicate vocabulary entries, each refused with the key's name instead.

use super::parse::{Header, Value};
use super::{Bad, LLAMA_MAX_EXPERTS, LLAMA_MAX_LAYERS, TENSOR_ALIGNMENT};
use crate::sanitize;

/// The hyper-parameters llama.cpp asserts on (or divides by), checked with the key's name.
#[allow(clippy::too_many_lines)]
pub(super) fn check_model(h: &Header) -> Result<(), Bad> {
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
pub(super) fn check_layout(h: &Header, file_len: u64) -> Result<(), Bad> {
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
