# One NVIDIA H200 (16 cores), 2026-12-02 17:41-18:05 UTC, from the repository root of the GPU machine, with
# .gpu/bin/gemfilter (scripts/gpu.sh kit) and the real models copied there (sha256 prefixes: 0.5B 1d961463,
# 1.5B cc324af0).
Q05=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
Q15=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
scripts/gpu.sh libs
scripts/gpu.sh synth llama-3.2-1b llama-3.1-8b mistral-nemo-12b   # Q4_0, random weights
L1=models/llama-3.2-1b.q4_0.gguf L8=models/llama-3.1-8b.q4_0.gguf N12=models/mistral-nemo-12b.q4_0.gguf
# benches.txt: one at a time, the GPU otherwise idle.
scripts/gpu.sh bench . $L8 127k --gem-draft $L1 --gem-draft-layer 6                 # bench-8b-draft
scripts/gpu.sh bench . $L8 127k --turns 3                                           # bench-8b-turns
scripts/gpu.sh bench . $N12 127k --gem-draft $L1 --gem-draft-layer 6                # bench-12b-draft
scripts/gpu.sh bench . $L8 127k --gem-draft $L1 --gem-draft-layer 6 --gem-positions original --no-standard  # bench-8b-draft-orig
scripts/gpu.sh bench . $N12 127k --turns 3                                          # bench-12b-turns
scripts/gpu.sh bench . $L8 32k,64k --gem-draft $L1 --gem-draft-layer 6              # bench-8b-draft-short
scripts/gpu.sh bench . $L8 127k --gem-draft $L1 --gem-draft-layer 6                 # bench-8b-draft-rep2
# Accuracy, after the benches, in parallel with each other: the presets and cells of
# ../2026-12-02-h200-selfcal-suite/ seeded (copied into each output; niah skips the cells it holds), so this
# adds the reference scoring at the self-calibrated layers (0.5B 16, 1.5B 19), the 1.5B's unfinished 31K
# cells, and the draft suite with --gem-positions original (the 0.5B selects, the 1.5B answers).
scripts/gpu.sh suite q05 $Q05 10 8k,16k,31k
scripts/gpu.sh suite q15 $Q15 10 8k,16k,31k
GEMFILTER_PRESETS=$PWD/q05/presets.toml METHODS=full,gem scripts/gpu.sh suite draft-original $Q15 10 8k,16k,31k \
    --gem-draft $Q05 --gem-positions original
# Tables (here):
R=bench/runs/2026-12-02-h200-draft-turns-suite S=bench/runs/2026-12-02-h200-selfcal-suite
python3 scripts/suite-tables.py q05-8k=$R/q05-suite-8k.jsonl.gz q05-16k=$R/q05-suite-16k.jsonl.gz q05-31k=$R/q05-suite-31k.jsonl.gz \
  q15-8k=$R/q15-suite-8k.jsonl.gz q15-16k=$R/q15-suite-16k.jsonl.gz q15-31k=$R/q15-suite-31k.jsonl.gz \
  draft-8k=$S/draft-q05-q15-compact-8k.jsonl.gz,$R/draft-q05-q15-original-8k.jsonl.gz \
  draft-16k=$S/draft-q05-q15-compact-16k.jsonl.gz,$R/draft-q05-q15-original-16k.jsonl.gz \
  draft-31k=$S/draft-q05-q15-compact-31k.jsonl.gz,$R/draft-q05-q15-original-31k.jsonl.gz > $R/tables.md
