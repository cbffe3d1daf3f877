# 2-core Xeon, CPU only, 2 threads, quiet machine (2026-12-02); from the repository root.
# Draft selection: Qwen2.5-Coder-0.5B (layer 13) selects for the 1.5B, beside standard llama.cpp
# on the 1.5B, in one process; then the 1.5B's own GemFilter (layer 16) on the same prompt.
set -e
Q05=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
Q15=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
D=bench/runs/2026-12-02-cpu-draft
target/release/gemfilter bench -m $Q15 -ngl 0 -t 2 --lengths 8k --n-decode 16 --gem-calibrate off \
  --gem-draft $Q05 --gem-draft-layer 13 --gem-scoring window-softmax:32+pool31 -o $D/draft.json > $D/draft.txt 2> $D/draft.log
target/release/gemfilter bench -m $Q15 -ngl 0 -t 2 --lengths 8k --n-decode 16 --gem-calibrate off \
  --gem-layer 16 --gem-scoring window-softmax:32+pool31 --no-standard -o $D/own.json > $D/own.txt 2> $D/own.log
