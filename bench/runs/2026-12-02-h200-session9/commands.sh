# One H200 (device tool), session 9, 2026-12-02. From the repository root of the GPU machine, with
# .gpu/bin/gemfilter (scripts/gpu-kit.sh here) and the models assembled by scripts/gpu-model.sh.
scripts/gpu-verify.sh libs                  # CUDA libraries, from a copy of the source
scripts/gpu-verify.sh calib                 # each model's first run: self-calibration, alone, timed
POSITIONS=compact scripts/gpu-verify.sh suites 10   # 9 niah processes at once (trust ×6, draft ×3)
# What each suite process runs (5 samples per task first, then 10; full-prompt cells reused):
export GEMFILTER_PRESETS=/tmp/trust/q15/presets.toml
gemfilter niah -m q15.gguf -ngl 99 -fa on --style chat --tasks all --lengths 8k --methods full,gem -o out --samples 10
export GEMFILTER_PRESETS=/tmp/trust/q05/presets.toml
gemfilter niah -m q15.gguf --gem-draft q05.gguf --gem-positions compact -ngl 99 -fa on --style chat \
    --tasks all --lengths 8k --methods full,gem -o out-draft --samples 10
# Tables (tables.md):
scripts/suite-tables.py "q15 8k=q15-suite-8k.jsonl"
