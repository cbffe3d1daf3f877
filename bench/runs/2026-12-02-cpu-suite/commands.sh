# 2-core Xeon, CPU, 2 threads, 2026-12-02: the 0.5B on the RULER-style suite at 4K with this
# machine's own self-calibrated preset (layer 13, window-softmax:32+pool31+sent, from 3K CPU probes).
S=bench/runs/2026-12-02-cpu-suite
GEMFILTER_PRESETS=$S/q05-cpu-presets.toml target/release/gemfilter niah -m models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
  -t 2 --style chat --tasks all --samples 1 --lengths 4k --methods full,gem -o $S/q05-4k > $S/q05-4k.log 2>&1
