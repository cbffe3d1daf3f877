#!/usr/bin/env bash
# On the GPU machine: the RULER-style suite on a model assembled by scripts/gpu-model.sh, within
# a time budget; resumable (results stay in /tmp/suite/NAME while the machine is warm) and copied
# to OUTDIR after every call. The first run of a model with no preset self-calibrates it (the
# line with its time is in the log).
# usage: BUDGET_S=500 scripts/gpu-suite.sh NAME OUTDIR [niah args...]
set -uo pipefail
cd "$(dirname "$0")/.."
name=$1 out=$2; shift 2
mkdir -p "$out" /tmp/suite/"$name"
LD_LIBRARY_PATH=$(scripts/gpu-libs.sh) || { echo "library build failed"; exit 1; }
export LD_LIBRARY_PATH GEMFILTER_CACHE=/tmp/gemfilter-cache GEMFILTER_PRESETS=/tmp/suite/presets.toml
timeout "${BUDGET_S:-500}" .gpu/bin/gemfilter niah -m /tmp/models/"$name".gguf -ngl 99 -fa on \
  -o /tmp/suite/"$name" "$@" >>/tmp/suite/"$name"/log.txt 2>&1
echo "niah rc $?"
cp /tmp/suite/"$name"/{cells.jsonl,summary.md,log.txt} /tmp/suite/presets.toml "$out"/ 2>/dev/null
tail -5 /tmp/suite/"$name"/log.txt
