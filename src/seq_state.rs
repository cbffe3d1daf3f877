//! llama.cpp's sequence state file (`llama_state_seq_save_file`, version 4), checked in full
//! before llama.cpp reads it: llama.cpp trusts the file's counts and positions (a truncated file
//! ends in a `GGML_ASSERT`, positions beyond the context load and then fail every decode,
//! duplicate positions change the answer). The layout, from `llama-context.cpp` and
//! `llama-kv-cache.cpp` (`state_write`, `state_write_meta`, `state_write_data`):
//!
//! ```text
//! u32 magic 'ggsq', u32 version, u32 n_token, i32 token[n_token]
//! per KV cache (one; two for interleaved sliding-window models):
//!   u32 n_stream; per stream: u32 cell_count, and when it is not 0:
//!     per cell: i32 pos, u32 n_seq_id, [12-byte ext for M-RoPE models], i32 seq_id[n_seq_id]
//!     u32 v_trans, u32 n_layer, u32 n_rot_k, u32 n_rot_v
//!     per layer: i32 k_type, u64 k_row_bytes, k_row_bytes * cell_count
//!     per layer, v_trans 0: i32 v_type, u64 v_row_bytes, v_row_bytes * cell_count
//!     per layer, v_trans 1: i32 v_type, u32 v_el_bytes, u32 n_embd_v, v_el_bytes * n_embd_v * cell_count
//! ```
//!
//! A state gemfilter saved holds sequence 0 of a context that decoded the document's tokens at
//! positions `0..n` once: every cell belongs to sequence 0 alone, positions are distinct and
//! below `n`, and the full-attention cache holds all `n` cells.

use std::io::{BufReader, Read, Seek, SeekFrom};

use anyhow::{bail, ensure, Context, Result};

/// `LLAMA_STATE_SEQ_MAGIC` ('ggsq') and `LLAMA_STATE_SEQ_VERSION` of the vendored llama.cpp.
pub const MAGIC: u32 = 0x6767_7371;
pub const VERSION: u32 = 4;
/// Bounds no real model reaches; a file claiming more is damaged.
const MAX_STREAMS: u32 = 64;
const MAX_LAYERS: u32 = 4096;
const MAX_ROW_BYTES: u64 = 1 << 28;
const MAX_TYPE: i32 = 64;
/// `llama_kv_cell_ext`: x, y and a token, written only for M-RoPE and per-layer-embedding models.
const EXT_BYTES: u64 = 12;

/// Whether `head` (the first bytes of a file) starts like a sequence state file.
#[must_use]
pub fn looks_like(head: &[u8]) -> bool {
    head.get(..4) == Some(&MAGIC.to_le_bytes()[..])
}

/// A bounded reader that knows where it is.
struct Cursor<R> {
    r: R,
    at: u64,
    len: u64,
}

impl<R: Read + Seek> Cursor<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        ensure!(
            self.at + N as u64 <= self.len,
            "is truncated (ends at byte {})",
            self.len
        );
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).context("cannot read it")?;
        self.at += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32> {
        self.bytes().map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Result<i32> {
        self.bytes().map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64> {
        self.bytes().map(u64::from_le_bytes)
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        let end = self
            .at
            .checked_add(n)
            .context("is damaged (sizes overflow)")?;
        ensure!(end <= self.len, "is truncated (ends at byte {})", self.len);
        let d = i64::try_from(n).context("is damaged")?;
        self.r
            .seek(SeekFrom::Current(d))
            .context("cannot read it")?;
        self.at = end;
        Ok(())
    }
    fn rewind_to(&mut self, at: u64) -> Result<()> {
        self.r.seek(SeekFrom::Start(at)).context("cannot read it")?;
        self.at = at;
        Ok(())
    }
}

/// Check a sequence state file of `len` bytes against the document's `tokens`.
///
/// # Errors
/// Why it is not a state of exactly these tokens: another magic or version, other tokens,
/// a truncated or oversized body, positions outside `0..n` or repeated, cells of another
/// sequence, counts no cache has.
pub fn check<R: Read + Seek>(r: R, len: u64, tokens: &[i32]) -> Result<()> {
    let mut c = Cursor {
        r: BufReader::new(r),
        at: 0,
        len,
    };
    ensure!(c.u32()? == MAGIC, "is not a llama.cpp sequence state file");
    let version = c.u32()?;
    ensure!(
        version == VERSION,
        "has llama.cpp state version {version}, not {VERSION}"
    );
    let n = c.u32()?;
    ensure!(
        n as usize == tokens.len(),
        "holds {n} tokens, not the document's {}",
        tokens.len()
    );
    for &want in tokens {
        ensure!(
            c.i32()? == want,
            "holds other tokens than the document's (damaged)"
        );
    }
    let mut caches = 0;
    let mut most_cells = 0u32;
    while c.at < c.len {
        ensure!(caches < 2, "holds more KV caches than a model has");
        caches += 1;
        let n_stream = c.u32()?;
        ensure!(
            (1..=MAX_STREAMS).contains(&n_stream),
            "claims {n_stream} KV streams"
        );
        for _ in 0..n_stream {
            let cells = c.u32()?;
            ensure!(
                cells <= n,
                "holds {cells} cells for a document of {n} tokens"
            );
            if cells > 0 {
                stream(&mut c, cells, n)?;
            }
            most_cells = most_cells.max(cells);
        }
    }
    ensure!(caches > 0, "holds no KV cache");
    ensure!(
        most_cells == n,
        "holds {most_cells} cells for a document of {n} tokens"
    );
    Ok(())
}

/// One stream's cells and data; the cell layout (with or without the ext record) is the one
/// that parses.
fn stream<R: Read + Seek>(c: &mut Cursor<R>, cells: u32, n: u32) -> Result<()> {
    let start = c.at;
    let plain = cell_meta(c, cells, n, 0);
    if plain.is_ok() {
        return data(c, cells);
    }
    c.rewind_to(start)?;
    if cell_meta(c, cells, n, EXT_BYTES).is_ok() {
        return data(c, cells);
    }
    plain
}

fn cell_meta<R: Read + Seek>(c: &mut Cursor<R>, cells: u32, n: u32, ext: u64) -> Result<()> {
    let mut seen = vec![false; n as usize];
    for _ in 0..cells {
        let pos = c.i32()?;
        let n_seq = c.u32()?;
        c.skip(ext)?;
        ensure!(n_seq == 1, "has a cell of {n_seq} sequences");
        ensure!(c.i32()? == 0, "has a cell of another sequence");
        let Some(slot) = usize::try_from(pos).ok().and_then(|p| seen.get_mut(p)) else {
            bail!("has a cell at position {pos}, outside the document's 0..{n}");
        };
        ensure!(!*slot, "has two cells at position {pos}");
        *slot = true;
    }
    Ok(())
}

fn data<R: Read + Seek>(c: &mut Cursor<R>, cells: u32) -> Result<()> {
    let v_trans = c.u32()?;
    ensure!(v_trans <= 1, "is damaged (V layout {v_trans})");
    let n_layer = c.u32()?;
    ensure!(
        (1..=MAX_LAYERS).contains(&n_layer),
        "claims {n_layer} layers"
    );
    let _rot_k = c.u32()?;
    let _rot_v = c.u32()?;
    let cells = u64::from(cells);
    for _ in 0..n_layer {
        tensor_type(c)?;
        let row = c.u64()?;
        ensure!(
            (1..=MAX_ROW_BYTES).contains(&row),
            "claims key rows of {row} bytes"
        );
        c.skip(row * cells)?;
    }
    for _ in 0..n_layer {
        tensor_type(c)?;
        if v_trans == 0 {
            let row = c.u64()?;
            ensure!(
                (1..=MAX_ROW_BYTES).contains(&row),
                "claims value rows of {row} bytes"
            );
            c.skip(row * cells)?;
        } else {
            let el = u64::from(c.u32()?);
            let embd = u64::from(c.u32()?);
            ensure!(
                (1..=64).contains(&el) && (1..=MAX_ROW_BYTES).contains(&(el * embd)),
                "claims value rows of {embd} x {el} bytes"
            );
            c.skip(el * embd * cells)?;
        }
    }
    Ok(())
}

fn tensor_type<R: Read + Seek>(c: &mut Cursor<R>) -> Result<()> {
    let t = c.i32()?;
    ensure!((0..MAX_TYPE).contains(&t), "claims tensor type {t}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file as llama.cpp writes it: `positions` in one stream, 2 layers, rows of 8 bytes.
    fn state(tokens: &[i32], positions: &[i32], v_trans: bool) -> Vec<u8> {
        let mut b = Vec::new();
        let u32s = |b: &mut Vec<u8>, v: &[u32]| {
            for x in v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        };
        u32s(
            &mut b,
            &[MAGIC, VERSION, u32::try_from(tokens.len()).unwrap()],
        );
        for t in tokens {
            b.extend_from_slice(&t.to_le_bytes());
        }
        u32s(&mut b, &[1, u32::try_from(positions.len()).unwrap()]);
        for p in positions {
            b.extend_from_slice(&p.to_le_bytes());
            u32s(&mut b, &[1, 0]);
        }
        u32s(&mut b, &[u32::from(v_trans), 2, 0, 0]);
        let cells = positions.len();
        for _ in 0..2 {
            u32s(&mut b, &[1]);
            b.extend_from_slice(&8u64.to_le_bytes());
            b.extend(std::iter::repeat_n(7u8, 8 * cells));
        }
        for _ in 0..2 {
            u32s(&mut b, &[1]);
            if v_trans {
                u32s(&mut b, &[2, 4]);
            } else {
                b.extend_from_slice(&8u64.to_le_bytes());
            }
            b.extend(std::iter::repeat_n(7u8, 8 * cells));
        }
        b
    }

    fn verdict(b: &[u8], tokens: &[i32]) -> Result<()> {
        check(std::io::Cursor::new(b), b.len() as u64, tokens)
    }

    #[test]
    fn a_state_of_the_document_passes() {
        let toks = [5, 6, 7];
        assert!(verdict(&state(&toks, &[0, 1, 2], false), &toks).is_ok());
        assert!(verdict(&state(&toks, &[2, 0, 1], true), &toks).is_ok());
        assert!(looks_like(&state(&toks, &[0, 1, 2], false)));
        assert!(!looks_like(b"[package]"));
    }

    #[test]
    fn damaged_states_are_refused_with_the_reason() {
        let toks = [5, 6, 7];
        let good = state(&toks, &[0, 1, 2], false);
        let why = |b: &[u8]| verdict(b, &toks).unwrap_err().to_string();
        for cut in [3, 12, 20, 40, good.len() - 1] {
            assert!(why(&good[..cut]).contains("truncated"), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(why(&longer).contains("KV"), "{}", why(&longer));
        assert!(why(&state(&toks, &[0, 1, 99_999], false)).contains("position 99999"));
        assert!(why(&state(&toks, &[0, -1, 2], false)).contains("position -1"));
        assert!(why(&state(&toks, &[0, 1, 1], false)).contains("two cells at position 1"));
        assert!(why(&state(&toks, &[0, 1], false)).contains("2 cells"));
        assert!(verdict(&good, &[5, 6, 8])
            .unwrap_err()
            .to_string()
            .contains("other tokens"));
        let mut other_seq = good.clone();
        // The first cell's sequence id (after magic, version, count, 3 tokens, n_stream, cells,
        // pos and n_seq_id).
        other_seq[4 * 10] = 1;
        assert!(
            why(&other_seq).contains("another sequence"),
            "{}",
            why(&other_seq)
        );
        let mut huge_row = good.clone();
        let at = good.len() - 2 * (4 + 8 + 24) - 2 * (4 + 8 + 24) + 4;
        huge_row[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(why(&huge_row).contains("key rows"), "{}", why(&huge_row));
    }
}
