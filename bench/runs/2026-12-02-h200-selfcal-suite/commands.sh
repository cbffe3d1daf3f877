# One NVIDIA H200 (16 cores), 2026-12-02, from the repository root of the GPU machine, with .gpu/bin/gemfilter
# (scripts/gpu.sh kit) and Qwen2.5-Coder-0.5B/1.5B-Instruct Q4_K_M (scripts/fetch-models.sh qwen05 qwen15) copied there.
Q05=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
Q15=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
scripts/gpu.sh libs
# Each model's first run, alone on the GPU, from an empty presets file: the timed self-calibration
# (q05-selfcalibration.log, q15-selfcalibration.log; the chosen entries in q05-presets.toml, q15-presets.toml).
scripts/gpu.sh calibrate q05 $Q05
scripts/gpu.sh calibrate q15 $Q15
# The suite, 10 samples per task, 8K/16K/31K, GemFilter as calibrated (full-prompt and reference cells of the same
# seeds came from ../2026-12-02-h200-calibration-rule/: niah skips the cells its output already holds).
METHODS=full,gem scripts/gpu.sh suite q05 $Q05 10 8k,16k,31k
METHODS=full,gem scripts/gpu.sh suite q15 $Q15 10 8k,16k,31k
# Draft selection: the 0.5B's calibrated preset selects, the 1.5B answers.
GEMFILTER_PRESETS=$PWD/q05/presets.toml METHODS=full,gem scripts/gpu.sh suite draft-compact $Q15 10 8k,16k,31k \
    --gem-draft $Q05 --gem-positions compact
# Each suite process runs, per length:
#   gemfilter niah -m $Q15 -ngl 99 -fa on --style chat --tasks all --lengths 8k --methods full,gem -o OUT --samples 10
# Tables (tables.md), here:
scripts/suite-tables.py "q15 8k=bench/runs/2026-12-02-h200-selfcal-suite/q15-suite-8k.jsonl.gz"
