# 2-core Xeon, 2 threads, CPU only; run from the repository root (2026-12-02)
export GEMFILTER_PRESETS=/tmp/cpu/presets.toml   # written by the self-calibration in selfcalibration-q05-cpu.log: layer 13, window-softmax:32+pool31
M=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
T=niah_single_3,niah_multikey_3
target/release/gemfilter niah -m $M -ngl 0 --style chat --tasks $T --samples 5 --lengths 4k --methods gem --gem-scoring window-softmax:32+pool31+sent -o /tmp/cpu/sent > /tmp/cpu/sent.log 2>&1
target/release/gemfilter niah -m $M -ngl 0 --style chat --tasks $T --samples 5 --lengths 4k --methods gem -o /tmp/cpu/gem > /tmp/cpu/gem.log 2>&1
