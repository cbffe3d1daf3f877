# One NVIDIA H200 (16 cores), session 10, 2026-12-02 17:41-18:05 UTC; from the repository root on the GPU machine,
# with .gpu/bin/gemfilter from scripts/gpu-kit.sh (commit of this directory) and the real models assembled from
# 42 MB pieces (scripts/gpu-model.sh q05 1d961463; scripts/gpu-model.sh q15 cc324af0).
scripts/gpu-verify.sh libs            # CUDA libraries from a copy of vendor/llama-cpp-sys-2/llama.cpp
scripts/gpu-verify.sh synth           # llama-3.2-1b, llama-3.1-8b, mistral-nemo-12b shapes, q4_0, random weights
scripts/gpu-verify.sh benches         # benches.txt: 8B+1B draft, 8B --turns 3, 12B+1B draft, 8B+1B original positions
# after the benches, with the GPU otherwise idle:
gemfilter bench -m /tmp/mistral-nemo-12b.gguf --turns 3 --lengths 127k -fa on -o bench-12b-turns.json
gemfilter bench -m /tmp/llama-3.1-8b.gguf --gem-draft /tmp/llama-3.2-1b.gguf --gem-draft-layer 6 --lengths 32k,64k -fa on -o bench-8b-draft-short.json
gemfilter bench -m /tmp/llama-3.1-8b.gguf --gem-draft /tmp/llama-3.2-1b.gguf --gem-draft-layer 6 --lengths 127k -fa on -o bench-8b-draft-rep2.json
# Accuracy (in parallel with each other, after the benches): session 9's presets and cells seeded, so this adds
# the reference scoring at the self-calibrated layers (q05 16, q15 19), the 1.5B's unfinished 31K cells, and the
# draft suite with --gem-positions original (q05 selects, q15 answers; full-prompt cells from session 9).
scripts/gpu-verify.sh trust2 10
# Tables (here):
R=bench/runs/2026-12-02-h200-session10 S9=bench/runs/2026-12-02-h200-session9
python3 scripts/suite-tables.py q05-8k=$R/q05-suite-8k.jsonl q05-16k=$R/q05-suite-16k.jsonl q05-31k=$R/q05-suite-31k.jsonl \
  q15-8k=$R/q15-suite-8k.jsonl q15-16k=$R/q15-suite-16k.jsonl q15-31k=$R/q15-suite-31k.jsonl \
  draft-8k=$S9/draft-q05-q15-compact-8k.jsonl,$R/draft-q05-q15-original-8k.jsonl \
  draft-16k=$S9/draft-q05-q15-compact-16k.jsonl,$R/draft-q05-q15-original-16k.jsonl \
  draft-31k=$S9/draft-q05-q15-compact-31k.jsonl,$R/draft-q05-q15-original-31k.jsonl > $R/tables.md
