//! A capturing context that stays alive across decodes: a document's early-layer state in a
//! conversation. The prefix model's layers keep the document's KV; each turn decodes only the
//! tokens after it (earlier turns and the new question), captures their Q/K at the filter layer,
//! and forgets them again, so the document is filtered once and questioned many times.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;

use super::ffi::CaptureHandle;
use super::{out_of_memory, prefill, ContextOptions, Engine};
use crate::capture::{CaptureSpec, CaptureState, KSource};

/// The capture of one decode.
#[derive(Debug)]
pub struct Decoded {
    pub capture: CaptureState,
    pub secs: f64,
}

/// A live capturing context. Field order matters: the context is dropped before the handle
/// whose state its callback points to.
pub struct CaptureSession<'a> {
    ctx: LlamaContext<'a>,
    handle: CaptureHandle,
}

impl std::fmt::Debug for CaptureSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureSession").finish_non_exhaustive()
    }
}

/// Nothing to record: the state between decodes.
fn idle() -> CaptureState {
    CaptureState::new(CaptureSpec {
        layers: Vec::new(),
        n_tokens: 0,
        q_window: 1,
        stop_after_last: false,
        trace_layers: false,
        k_source: KSource::Ubatch,
    })
}

impl<'a> CaptureSession<'a> {
    /// A capturing context with room for `n_ctx` tokens.
    ///
    /// # Errors
    /// When llama.cpp cannot allocate the context (out of memory).
    pub fn new(engine: &'a Engine, opts: &ContextOptions, n_ctx: u32) -> Result<Self> {
        let handle = CaptureHandle::new(idle());
        let mut ctx = engine
            .model
            .new_context(
                engine.backend,
                handle.params(Engine::context_params(opts, n_ctx)),
            )
            .map_err(|e| out_of_memory(e, n_ctx))?;
        engine.adapt(&mut ctx)?;
        Ok(Self { ctx, handle })
    }

    /// Decode `tokens` at positions `pos0..` after what the context holds, recording as `spec`
    /// says (its `n_tokens` is `tokens.len()`; keys are read per ubatch).
    ///
    /// # Errors
    /// Decode failures, or tensors that were not where expected.
    pub fn decode(
        &mut self,
        tokens: &[LlamaToken],
        pos0: usize,
        spec: CaptureSpec,
    ) -> Result<Decoded> {
        let _ = self.handle.replace(CaptureState::new(CaptureSpec {
            n_tokens: tokens.len(),
            k_source: KSource::Ubatch,
            ..spec
        }));
        let t0 = Instant::now();
        let res = prefill(&mut self.ctx, tokens, pos0, None);
        let capture = self.handle.replace(idle());
        res?;
        capture
            .finish()
            .map_err(|e| anyhow::anyhow!("filter pass failed: {e}"))?;
        Ok(Decoded {
            capture,
            secs: t0.elapsed().as_secs_f64(),
        })
    }

    /// Save the KV of the tokens the context holds (llama.cpp's sequence state file).
    ///
    /// # Errors
    /// An unwritable path.
    pub fn save_kv(&self, path: &Path, tokens: &[LlamaToken]) -> Result<()> {
        self.ctx
            .state_seq_save_file(path, 0, tokens)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(())
    }

    /// Load a KV saved by [`Self::save_kv`] into the (empty) context; returns its tokens.
    ///
    /// # Errors
    /// A file llama.cpp cannot read into this context.
    pub fn load_kv(&mut self, path: &Path, max_tokens: usize) -> Result<Vec<LlamaToken>> {
        let (tokens, _) = self
            .ctx
            .state_seq_load_file(path, 0, max_tokens)
            .map_err(|e| anyhow::anyhow!("llama.cpp cannot load it ({e})"))?;
        Ok(tokens)
    }

    /// Forget every cell at position `pos` and after (the turn's tokens, keeping the document).
    ///
    /// # Errors
    /// A position beyond what llama.cpp accepts.
    pub fn forget_from(&mut self, pos: usize) -> Result<()> {
        let p0 = u32::try_from(pos).context("position overflow")?;
        self.ctx
            .clear_kv_cache_seq(Some(0), Some(p0), None)
            .map_err(|e| anyhow::anyhow!("cannot trim the KV cache: {e}"))?;
        Ok(())
    }
}
