//! Who selects and on what, and when a prompt is answered whole: decided here once for the
//! single answer (`pipeline`), the conversation, the benches and the server, so they cannot
//! drift apart.
//!
//! - The model that selects is the draft (`--gem-draft`) or else the target.
//! - Its filter pass runs on its prefix model (layers 0..=r, cached on disk) with
//!   `--gem-prefix on` when r is not its last layer; a prefix that cannot be written costs
//!   memory, not the answer: the filter pass falls back to the whole model, said once.
//! - A draft selects only if it reads token ids as the target does (vocabularies compared
//!   once, every prompt's ids checked).
//! - A prompt no longer than what would be kept, or shorter than `--gem-min-tokens`, is
//!   answered whole.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use llama_cpp_2::token::LlamaToken;

use crate::draft::{self, Draft};
use crate::engine::{prefix, Engine, LoadOptions};
use crate::settings::{GemSettings, ModelSettings};

/// The selection decisions of one run, built once from its settings.
#[derive(Debug)]
pub struct Selector {
    target: PathBuf,
    load: LoadOptions,
    draft: Option<Draft>,
    /// The model whose filter pass selects: the draft, or the target.
    path: PathBuf,
    n_layer: usize,
    /// Its filter layer.
    layer: usize,
    /// `--gem-prefix on`.
    prefix: bool,
    /// The prefix model once written; None where there is none or it could not be written.
    prefix_path: OnceLock<Option<PathBuf>>,
    /// Token ids target and draft share, once compared.
    shared_ids: OnceLock<usize>,
}

impl Selector {
    #[must_use]
    pub fn new(model: &ModelSettings, gem: &GemSettings) -> Self {
        let (path, n_layer) = gem.draft.as_ref().map_or_else(
            || (model.path.clone(), model.meta.block_count),
            |d| (d.path.clone(), d.n_layer),
        );
        Selector {
            target: model.path.clone(),
            load: model.load.clone(),
            draft: gem.draft.clone(),
            path,
            n_layer,
            layer: gem.layer,
            prefix: gem.prefix,
            prefix_path: OnceLock::new(),
            shared_ids: OnceLock::new(),
        }
    }

    /// The draft that selects instead of the target, if any.
    #[must_use]
    pub fn draft(&self) -> Option<&Draft> {
        self.draft.as_ref()
    }

    /// The prefix model of the selecting model, written on first use; None when the filter
    /// layer is its last, with `--gem-prefix off`, or when it cannot be written (said once:
    /// the filter pass then runs on the whole model).
    pub fn prefix_model(&self) -> Option<&Path> {
        self.prefix_path
            .get_or_init(|| {
                if !self.prefix || self.layer + 1 >= self.n_layer {
                    return None;
                }
                prefix::prefix_model(&self.path, self.layer + 1, self.n_layer, self.load.verbose)
                    .map_err(|e| {
                        crate::notice!("{e:#}; running the filter pass on the full model");
                    })
                    .ok()
            })
            .as_deref()
    }

    /// The file the filter pass loads when it is not the target itself (the prefix model, or
    /// the draft); None: the filter pass runs on the full target.
    #[must_use]
    pub fn filter_file(&self) -> Option<PathBuf> {
        self.prefix_model()
            .map(Path::to_path_buf)
            .or_else(|| self.draft.as_ref().map(|d| d.path.clone()))
    }

    /// The filter model loaded for a run that keeps it resident (conversation, server); None:
    /// the filter pass runs on the full target.
    ///
    /// # Errors
    /// A filter model that cannot be loaded.
    pub fn load_filter(&self) -> Result<Option<Engine>> {
        self.filter_file()
            .map(|p| Engine::load(&p, &self.load.for_filter()))
            .transpose()
    }

    /// The draft reads this prompt's ids as the target does (nothing to check without one):
    /// the vocabularies are compared once (vocab-only loads), the prompt's ids every time.
    ///
    /// # Errors
    /// A draft with another tokenizer, or a prompt id outside the shared vocabulary.
    pub fn check_tokens(&self, tokens: &[LlamaToken]) -> Result<()> {
        let Some(d) = &self.draft else {
            return Ok(());
        };
        let shared = if let Some(&n) = self.shared_ids.get() {
            n
        } else {
            let n = shared_ids(&self.target, &d.path, &self.load)?;
            *self.shared_ids.get_or_init(|| n)
        };
        draft::check_prompt(tokens, shared)
    }
}

/// The token ids `draft` shares with `target` when it reads them the same way (vocab-only
/// loads, compared id by id): the one check of a draft, also run before a draft is calibrated.
///
/// # Errors
/// A vocabulary that cannot be loaded, or a draft with another tokenizer.
pub fn shared_ids(target: &Path, draft: &Path, load: &LoadOptions) -> Result<usize> {
    let texts = |p: &Path| Engine::load_vocab(p, load).map(|e| draft::token_texts(&e));
    draft::same_tokenizer(&texts(target)?, &texts(draft)?)
}

/// Why a prompt of `n` tokens, `n_protected` of them always kept, is answered whole under
/// `gem` (the server's requests may change `top_k` and `min_tokens`); None: filter it.
#[must_use]
pub fn skip(gem: &GemSettings, n: usize, n_protected: usize) -> Option<String> {
    skip_reason(gem.top_k, gem.min_tokens, n, n_protected)
}

fn skip_reason(top_k: usize, min_tokens: usize, n: usize, n_protected: usize) -> Option<String> {
    let kept = top_k.max(n_protected);
    if n <= kept {
        return Some(format!(
            "prompt has {n} tokens, no more than the {kept} that would be kept: answering from the whole prompt"
        ));
    }
    if n < min_tokens {
        return Some(format!(
            "prompt has {n} tokens, fewer than --gem-min-tokens {min_tokens}: below that the \
             filter pass costs more than it saves, answering from the whole prompt"
        ));
    }
    None
}

/// A prompt that will be filtered fits the scoring (its pooling kernel is no wider than the
/// prompt); one that is answered whole needs nothing.
///
/// # Errors
/// The scoring cannot run on this prompt.
pub fn check_prompt(gem: &GemSettings, n: usize, n_protected: usize) -> Result<()> {
    if skip(gem, n, n_protected).is_none() {
        gem.spec.validate(Some(n)).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Said before a selection whose k leaves no room for the document.
pub fn warn_if_nothing_kept(gem: &GemSettings, n_protected: usize) {
    if gem.top_k <= n_protected {
        crate::notice!(
            "--gem-topk {} is not more than the {n_protected} tokens always kept (chat template, system prompt, -p): no document token is kept; raise --gem-topk above {n_protected} or use --gem-protect none",
            gem.top_k
        );
    }
}

#[cfg(test)]
mod tests {
    use super::skip_reason;

    #[test]
    fn short_prompts_and_prompts_below_min_tokens_are_answered_whole() {
        let skip = |n, n_protected| skip_reason(100, 0, n, n_protected);
        assert!(skip(100, 0).unwrap().contains("no more than the 100"));
        assert!(skip(101, 0).is_none());
        // The protected tokens count when they are more than k.
        assert!(skip(150, 150).unwrap().contains("the 150 that"));
        let skip = |n| skip_reason(100, 500, n, 0);
        assert!(skip(499)
            .unwrap()
            .contains("fewer than --gem-min-tokens 500: below that the filter pass costs more"));
        assert!(skip(500).is_none());
    }
}
