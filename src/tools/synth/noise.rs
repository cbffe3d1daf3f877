//! Random tensor bytes. Quantized weights are random blocks with a fixed scale (no quantizer:
//! timings depend on the layout, not the values); f32/f16 weights come from a table of normal
//! samples converted by ggml. Every weight has mean 0 and std [`WEIGHT_STD`], which keeps the
//! logits finite through 40 layers.

use std::f32::consts::PI;
use std::io::Write;

use anyhow::Result;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use super::{Fill, PlannedTensor};
use crate::engine::ffi::gguf::{f16_to_f32, f32_to_f16, f32_to_f16_row, TensorData, TensorType};

/// Target std of every random weight (a common init scale).
pub(super) const WEIGHT_STD: f32 = 0.02;
/// Bytes generated per work item; a multiple of every block size is taken below it.
const CHUNK_BYTES: u64 = 4 << 20;

/// `Q4_0` block: f16 d, 16 bytes of nibbles q, weights (q - 8) d. Nibbles are uniform over
/// 1..=15 with 8 twice (0 is remapped to 8): mean 8, variance 17.5, so the weights have mean 0
/// and std sqrt(17.5) d.
pub(super) fn q4_0_scale() -> u16 {
    f32_to_f16(WEIGHT_STD / 17.5f32.sqrt())
}

/// `Q8_0` block: f16 d, 32 int8 q, weights q d. Quants are uniform over -127..=127 with 0 twice
/// (-128 is remapped to 0): variance 5397.5.
pub(super) fn q8_0_scale() -> u16 {
    f32_to_f16(WEIGHT_STD / 5397.5f32.sqrt())
}

/// The fixed 16-byte head of every `Q4_K` block (128 bytes of random nibbles follow): f16 d,
/// f16 dmin = 8 d, and the 8 sub-block (scale, min) pairs all (32, 30), packed 6 bits each as
/// ggml's `get_scale_min_k4` reads them: bytes 0..4 hold scale j's low 6 bits and, in their
/// top 2 bits, scale j+4's high 2 bits (32 = `0b10_0000`: 0x80 | 0x20 = 0xa0); bytes 4..8 the
/// same for the mins (30 = `0b01_1110`: 0x40 | 0x1e = 0x5e); bytes 8..12 the low 4 bits of
/// scale and min j+4 (0 and 14: 0xe0). Weight = d*32*q - dmin*30 = 32 d (q - 7.5): mean 0 over
/// nibbles uniform on 0..=15 (variance 21.25).
pub(super) fn q4_k_head() -> [u8; 16] {
    let d = f32_to_f16(WEIGHT_STD / (32.0 * 21.25f32.sqrt()));
    let dmin = f32_to_f16(8.0 * f16_to_f32(d));
    let mut h = [0u8; 16];
    h[..2].copy_from_slice(&d.to_le_bytes());
    h[2..4].copy_from_slice(&dmin.to_le_bytes());
    h[4..8].fill(0xa0);
    h[8..12].fill(0x5e);
    h[12..].fill(0xe0);
    h
}

/// 65536 N(0, [`WEIGHT_STD`]) samples, indexed by random u16s to make f16/f32 noise cheaply.
pub(super) struct NoiseTable {
    f32s: Vec<f32>,
    f16s: Vec<u16>,
}

impl NoiseTable {
    pub(super) fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_7ab1e);
        let f32s: Vec<f32> = (0..1 << 16)
            .map(|_| {
                // Box-Muller; 1 - u keeps ln away from 0.
                let (u1, u2): (f32, f32) = (1.0 - rng.gen::<f32>(), rng.gen());
                (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos() * WEIGHT_STD
            })
            .collect();
        let f16s = f32_to_f16_row(&f32s);
        Self { f32s, f16s }
    }
}

/// One slice of one tensor's bytes, made independently of the others (so in parallel).
#[derive(Debug, Clone, Copy)]
pub(super) struct Job {
    tensor: usize,
    chunk: u64,
    offset: u64,
    len: usize,
}

pub(super) fn jobs(tensors: &[PlannedTensor]) -> Vec<Job> {
    let mut out = Vec::new();
    for (ti, t) in tensors.iter().enumerate() {
        let block = t.ty.type_size() as u64;
        let step = (CHUNK_BYTES / block).max(1) * block;
        let (mut offset, mut chunk) = (0, 0);
        while offset < t.nbytes {
            let len = step.min(t.nbytes - offset);
            out.push(Job {
                tensor: ti,
                chunk,
                offset,
                len: usize::try_from(len).expect("a chunk is at most CHUNK_BYTES"),
            });
            offset += len;
            chunk += 1;
        }
    }
    out
}

/// A stream per (seed, tensor, chunk), so the file does not depend on the thread count.
fn job_rng(seed: u64, job: &Job) -> SmallRng {
    let key = (((job.tensor as u64) << 32) | job.chunk).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    SmallRng::seed_from_u64(seed.rotate_left(17) ^ key)
}

/// The bytes of `job` into `buf`.
pub(super) fn fill(t: &PlannedTensor, job: &Job, seed: u64, table: &NoiseTable, buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(job.len, 0);
    let first = (job.offset / 4) as usize;
    let mut rng = job_rng(seed, job);
    match (&t.fill, t.ty) {
        (Fill::Ones, _) => put_f32s(buf, |_| 1.0),
        (Fill::Values(v), _) => put_f32s(buf, |i| v[first + i]),
        (Fill::Noise, TensorType::F32) => put_f32s(buf, |_| table.f32s[rng_u16(&mut rng)]),
        (Fill::Noise, TensorType::F16) => {
            for c in buf.chunks_mut(8) {
                let r = rng.next_u64();
                for (k, h) in c.chunks_exact_mut(2).enumerate() {
                    let x = table.f16s[((r >> (16 * k)) & 0xffff) as usize];
                    h.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        (Fill::Noise, TensorType::Q4_0) => {
            rng.fill_bytes(buf);
            let d = q4_0_scale().to_le_bytes();
            for b in buf.chunks_exact_mut(18) {
                b[..2].copy_from_slice(&d);
                for w in b[2..].chunks_exact_mut(8) {
                    let x = u64::from_le_bytes(w.try_into().unwrap_or_default());
                    w.copy_from_slice(&zero_nibbles_to_eight(x).to_le_bytes());
                }
            }
        }
        (Fill::Noise, TensorType::Q8_0) => {
            rng.fill_bytes(buf);
            let d = q8_0_scale().to_le_bytes();
            for b in buf.chunks_exact_mut(34) {
                b[..2].copy_from_slice(&d);
                // -128 has no +128 partner: map it to 0 so the quants are symmetric.
                b[2..]
                    .iter_mut()
                    .filter(|q| **q == 0x80)
                    .for_each(|q| *q = 0);
            }
        }
        (Fill::Noise, TensorType::Q4_K) => {
            rng.fill_bytes(buf);
            let head = q4_k_head();
            for b in buf.chunks_exact_mut(144) {
                b[..16].copy_from_slice(&head);
            }
        }
    }
}

fn put_f32s(buf: &mut [u8], mut f: impl FnMut(usize) -> f32) {
    for (i, c) in buf.chunks_exact_mut(4).enumerate() {
        c.copy_from_slice(&f(i).to_le_bytes());
    }
}

fn rng_u16(rng: &mut SmallRng) -> usize {
    (rng.next_u32() & 0xffff) as usize
}

/// Set every zero nibble of `x` to 8 (so `Q4_0` quants average exactly 8).
pub(super) fn zero_nibbles_to_eight(x: u64) -> u64 {
    const LOW: u64 = 0x1111_1111_1111_1111;
    let any = x | (x >> 1) | (x >> 2) | (x >> 3);
    x | ((!any & LOW) << 3)
}

/// Generate every tensor's bytes, a batch of chunks at a time on all cores, and stream them in
/// order into `out`.
pub(super) fn write_data<W: Write>(
    out: &mut TensorData<W>,
    tensors: &[PlannedTensor],
    seed: u64,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let jobs = jobs(tensors);
    let table = NoiseTable::new(seed);
    let n_workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .clamp(1, 16);
    let mut bufs = vec![Vec::new(); n_workers];
    for batch in jobs.chunks(n_workers) {
        std::thread::scope(|s| {
            for (job, buf) in batch.iter().zip(bufs.iter_mut()) {
                let table = &table;
                s.spawn(move || fill(&tensors[job.tensor], job, seed, table, buf));
            }
        });
        for buf in &bufs[..batch.len()] {
            out.write(buf)?;
            progress(buf.len() as u64);
        }
    }
    Ok(())
}
