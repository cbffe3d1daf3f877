//! Documents' filter state kept between requests, as the conversation mode keeps one document's:
//! keyed by the prompt's tokens up to the end of the document, least recently used out when the
//! byte budget (`--cache-ram`) is exceeded. A second question about a kept document decodes only
//! what follows it through the filter layers. One cache serves every slot (as llama-server picks
//! the slot whose cache matches), so a follow-up finds its document whichever slot takes it; each
//! entry names the slot that last used it, for `/slots` and `action=erase`.

use llama_cpp_2::token::LlamaToken;

use crate::conversation::Conversation;
use crate::engine::Engine;

struct Entry<'e> {
    key: Vec<LlamaToken>,
    conv: Conversation<'e>,
    bytes: u64,
    used: u64,
    /// The slot that last used it.
    owner: usize,
}

/// The server's kept documents.
pub struct DocCache<'e> {
    filter: &'e Engine,
    full: &'e Engine,
    entries: Vec<Entry<'e>>,
    budget: u64,
    kv_bytes_per_cell: u64,
    clock: u64,
}

/// Bytes one context cell of `filter` takes in its KV cache (keys and values of every layer,
/// f16).
#[must_use]
pub fn kv_bytes_per_cell(filter: &Engine) -> u64 {
    let m = &filter.model;
    let n_embd = u64::try_from(m.n_embd()).unwrap_or(0);
    let heads = u64::from(m.n_head().max(1));
    let kv_dim = n_embd * u64::from(m.n_head_kv()) / heads;
    u64::from(m.n_layer()) * 2 * kv_dim * 2
}

impl<'e> DocCache<'e> {
    #[must_use]
    pub fn new(filter: &'e Engine, full: &'e Engine, budget: u64) -> Self {
        DocCache {
            filter,
            full,
            entries: Vec::new(),
            budget,
            kv_bytes_per_cell: kv_bytes_per_cell(filter),
            clock: 0,
        }
    }

    /// The conversation kept for this document (true), or a new one (false). It leaves the
    /// cache while in use (a second request about it meanwhile filters it afresh); give it back
    /// with [`put`](Self::put) after the turn.
    pub fn take(&mut self, key: &[LlamaToken]) -> (Conversation<'e>, bool) {
        match self.entries.iter().position(|e| e.key == key) {
            Some(i) => (self.entries.swap_remove(i).conv, true),
            None => (Conversation::new(self.filter, Some(self.full)), false),
        }
    }

    /// Keep `conv` as the most recently used, then drop the least recently used until the
    /// kept state fits the budget (this one too, when it alone is larger).
    pub fn put(&mut self, key: Vec<LlamaToken>, conv: Conversation<'e>, owner: usize) {
        let Some((_, bytes)) = conv.kept_footprint(self.kv_bytes_per_cell) else {
            return;
        };
        self.clock += 1;
        self.entries.push(Entry {
            key,
            conv,
            bytes,
            used: self.clock,
            owner,
        });
        while self.bytes() > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.entries.swap_remove(oldest);
        }
    }

    /// Bytes of every kept document's filter state.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    /// Tokens of every kept document.
    #[must_use]
    pub fn tokens(&self) -> usize {
        self.entries.iter().map(|e| e.key.len()).sum()
    }

    /// Drop every kept document.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Drop the documents `slot` used last (`action=erase` on that slot).
    pub fn clear_owner(&mut self, slot: usize) {
        self.entries.retain(|e| e.owner != slot);
    }

    /// (documents, bytes, tokens) that `slot` used last.
    #[must_use]
    pub fn owned_by(&self, slot: usize) -> (usize, u64, usize) {
        self.entries
            .iter()
            .filter(|e| e.owner == slot)
            .fold((0, 0, 0), |(n, b, t), e| {
                (n + 1, b + e.bytes, t + e.key.len())
            })
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
