//! Where a piece of text sits among a prompt's tokens (needle spans for recall).

use std::ops::Range;

use crate::engine::Engine;

/// Byte offset where each token's text starts, for tokens of plain text (no specials).
#[must_use]
pub fn token_offsets(engine: &Engine, tokens: &[llama_cpp_2::token::LlamaToken]) -> Vec<usize> {
    let vocab = engine.model.vocab();
    let mut at = 0;
    tokens
        .iter()
        .map(|&t| {
            let start = at;
            at += vocab.token_to_piece(t, false, None).len();
            start
        })
        .collect()
}

/// Tokens (indices into `offsets`, shifted by `base`) overlapping the byte range `bytes`.
#[must_use]
pub fn tokens_covering(offsets: &[usize], bytes: Range<usize>, base: usize) -> Range<usize> {
    let first = offsets
        .partition_point(|&o| o <= bytes.start)
        .saturating_sub(1);
    let end = offsets.partition_point(|&o| o < bytes.end);
    base + first..base + end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering() {
        let offs = [0, 3, 7, 10, 15];
        assert_eq!(tokens_covering(&offs, 7..10, 100), 102..103);
        assert_eq!(tokens_covering(&offs, 5..11, 0), 1..4);
        assert_eq!(tokens_covering(&offs, 0..1, 0), 0..1);
    }
}
