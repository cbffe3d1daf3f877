//! Draft selection: a small sibling model runs the filter pass and picks the tokens, the target
//! answers from them. Both must read token ids the same way; this module holds that check.

use std::path::PathBuf;

use anyhow::{bail, Result};
use llama_cpp_2::token::LlamaToken;

use crate::engine::Engine;
use crate::sanitize::quote;

/// The model that selects instead of the target.
#[derive(Debug, Clone)]
pub struct Draft {
    pub path: PathBuf,
    /// Its layer count (its filter layer is the run's `GemSettings::layer`).
    pub n_layer: usize,
    /// Its file name without the extension, as records name it.
    pub name: String,
}

/// Every token's text as the vocabulary stores it (`tokenizer.ggml.tokens`), by id.
#[must_use]
pub fn token_texts(engine: &Engine) -> Vec<Vec<u8>> {
    let vocab = engine.model.vocab();
    (0..engine.model.n_vocab().max(0))
        .map(|id| {
            vocab
                .text(LlamaToken(id))
                .map(|c| c.to_bytes().to_vec())
                .unwrap_or_default()
        })
        .collect()
}

/// The draft may select for the target only if every id both vocabularies have means the same
/// text (one of them may have a padded tail of extra ids). Returns how many ids they share.
///
/// # Errors
/// The first id whose text differs, or no shared ids at all.
pub fn same_tokenizer(target: &[Vec<u8>], draft: &[Vec<u8>]) -> Result<usize> {
    let shared = target.len().min(draft.len());
    if shared == 0 {
        bail!("the draft model has no vocabulary in common with the target");
    }
    if let Some(id) = (0..shared).find(|&i| target[i] != draft[i]) {
        let text = |t: &[u8]| quote(&String::from_utf8_lossy(t));
        bail!(
            "the draft model's tokenizer differs from the target's (token {id} is {} in the target, {} in the draft); --gem-draft needs a model with the same tokenizer",
            text(&target[id]),
            text(&draft[id])
        );
    }
    Ok(shared)
}

/// Every prompt token must be one of the shared ids.
///
/// # Errors
/// The first token id outside the shared range.
pub fn check_prompt(tokens: &[LlamaToken], shared: usize) -> Result<()> {
    if let Some(t) = tokens
        .iter()
        .find(|t| usize::try_from(t.0).map_or(true, |id| id >= shared))
    {
        bail!(
            "prompt token {} is outside the draft model's vocabulary ({shared} tokens); --gem-draft needs a model with the same tokenizer",
            t.0
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_padded_tail_is_fine_a_changed_id_is_not() {
        let target = v(&["<s>", "a", "b", "[PAD3]", "[PAD4]"]);
        assert_eq!(same_tokenizer(&target, &v(&["<s>", "a", "b"])).unwrap(), 3);
        let e = same_tokenizer(&target, &v(&["<s>", "a", "c"])).unwrap_err();
        assert!(e.to_string().contains("token 2"), "{e}");
        assert!(same_tokenizer(&target, &[]).is_err());
    }

    #[test]
    fn prompt_ids_must_be_shared() {
        assert!(check_prompt(&[LlamaToken(0), LlamaToken(2)], 3).is_ok());
        let e = check_prompt(&[LlamaToken(1), LlamaToken(3)], 3).unwrap_err();
        assert!(e.to_string().contains("prompt token 3"), "{e}");
        assert!(check_prompt(&[LlamaToken(-1)], 3).is_err());
    }
}
