#!/usr/bin/env bash
# Selection scored on the GPU (a ggml graph over layer r's KV cache) against the host path, and the
# filter layer's cost: random-weight Q4_0 models of real shapes (`scripts/gpu.sh synth`), f16 KV,
# flash attention on, k 1024, GemFilter and standard llama.cpp in one process.
# Usage: commands.sh OUT [qwen|llama|cost]
set -uo pipefail
out=${1:?usage: commands.sh OUT [qwen|llama|cost]}
Q15=models/qwen2.5-1.5b.q4_0.gguf Q05=models/qwen2.5-0.5b.q4_0.gguf
L8=models/llama-3.1-8b.q4_0.gguf L1=models/llama-3.2-1b.q4_0.gguf
# Qwen2.5 is 32K-native: YaRN x4 reads 120K (122,880 tokens), as llama-cli does with these flags.
Y=(-c 131072 --rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 32768)
W="window-softmax:32+pool31"
b() { scripts/gpu.sh bench "$out" "$@" 2>&1 | grep -vE '^\s*$' | tail -n 8; }
case ${2:-qwen} in
qwen)
  # The 1.5B alone at the layer its recall-only calibration chose (19 of 28): GPU vs host scoring.
  b $Q15 120k "${Y[@]}" --gem-layer 19 --gem-scoring "$W+sent"
  b $Q15 120k "${Y[@]}" --gem-layer 19 --gem-scoring "$W+sent" --gem-score-on host --no-standard
  # The 0.5B drafting: layer 16 of 24 (recall only), then cheaper layers.
  b $Q15 120k "${Y[@]}" --gem-draft $Q05 --gem-draft-layer 16 --gem-scoring "$W+layers3+sent" --no-standard
  b $Q15 120k "${Y[@]}" --gem-draft $Q05 --gem-draft-layer 16 --gem-scoring "$W+layers3+sent" --gem-score-on host --no-standard
  for l in 12 8; do
    b $Q15 120k "${Y[@]}" --gem-draft $Q05 --gem-draft-layer $l --gem-scoring "$W+layers3+sent" --no-standard
  done
  b $Q15 120k "${Y[@]}" --gem-layer 12 --gem-scoring "$W+layers3+sent" --no-standard ;;
cost)
  # The cost-aware calibration's choices (docs/presets.md): the 0.5B at layer 13, the 1.5B at 14.
  b $Q15 120k "${Y[@]}" --gem-draft $Q05 --gem-draft-layer 13 --gem-scoring "$W+sent"
  b $Q15 120k "${Y[@]}" --gem-draft $Q05 --gem-draft-layer 16 --gem-scoring "$W+layers3+sent" --no-standard
  b $Q15 120k "${Y[@]}" --gem-layer 14 --gem-scoring "$W+sent" --no-standard
  b $Q15 120k "${Y[@]}" --gem-layer 19 --gem-scoring "$W+sent" --no-standard ;;
llama)
  # The 8B shape with the 1B shape drafting at layer 6 (reference scoring), as before.
  b $L8 127k --gem-draft $L1 --gem-draft-layer 6
  b $L8 127k --gem-draft $L1 --gem-draft-layer 6 --gem-scoring "$W+layers3+sent" --no-standard ;;
esac
