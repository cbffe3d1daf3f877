#!/usr/bin/env bash
# On the GPU machine (after scripts/gpu-kit.sh here): build the CUDA libraries once, write a
# random-weight model of a real shape, and run `gemfilter bench` on it.
# usage: scripts/gpu-bench.sh OUTDIR SHAPE LENGTHS [bench flags...]
#   e.g. scripts/gpu-bench.sh out llama-3.1-8b 8k,32k,128k -ctk q8_0 -ctv q8_0
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 shape=$2 lengths=$3
shift 3
LD_LIBRARY_PATH=$(scripts/gpu-libs.sh)
export LD_LIBRARY_PATH GEMFILTER_CACHE=${GEMFILTER_CACHE:-/tmp/gemfilter-cache}
gf=.gpu/bin/gemfilter
model=/tmp/$shape.q4_0.gguf
[ -f "$model" ] || "$gf" synth --shape "$shape" --type q4_0 -o "$model"
tag=$(echo "$shape $*" | tr -c 'A-Za-z0-9.\n-' '_' | tr -s _)
mkdir -p "$out"
"$gf" bench -m "$model" --lengths "$lengths" -fa on -o "$out/bench-$tag.json" "$@" | tee "$out/bench-$tag.txt"
