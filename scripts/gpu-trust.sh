#!/usr/bin/env bash
# On the GPU machine: the trust issue's measurement of one real model assembled by gpu-model.sh.
#  1. self-calibration from scratch, as a user meets it (timed, in calibrate.log);
#  2. recall curves per layer and scoring at 8K/16K/31K (curves.json), to check the choice rule
#     against lengths it did not probe;
#  3. the RULER-style suite (full prompt, GemFilter self-calibrated, reference scoring at the
#     chosen layer), one process per length in parallel (small models leave the H200 mostly idle).
# Resumable: results stay in /tmp/trust/NAME while the machine is warm; niah skips done cells.
# usage: scripts/gpu-trust.sh NAME [SAMPLES] [LENGTHS...]
set -uo pipefail
cd "$(dirname "$0")/.."
name=$1 samples=${2:-10}; shift 2 || shift $#
lengths=${*:-8k 16k 31k}
out=/tmp/trust/$name
mkdir -p "$out"
LD_LIBRARY_PATH=$(scripts/gpu-libs.sh) || { echo "library build failed"; exit 1; }
export LD_LIBRARY_PATH GEMFILTER_CACHE=/tmp/gemfilter-cache GEMFILTER_PRESETS=$out/presets.toml
bin=.gpu/bin/gemfilter
common=(-m /tmp/models/"$name".gguf -ngl 99 -fa on)
scripts/gpu-verify.sh calib "$name"    # the first run calibrates, timed, into $out/presets.toml
scorings=reference,reference+pool15,reference+pool31,reference+layers3,reference+pool15+layers3,reference+pool31+layers3
scorings=$scorings,${scorings//reference/window-softmax:32}
if [ ! -s "$out/curves.json" ]; then
  $bin calibrate "${common[@]}" --style chat --lengths 8k,16k,31k --depths 10,30,50,70,90 \
    --scorings "$scorings" --gem-topk 1024 >"$out/curves.json" 2>"$out/curves.log" &
fi
for L in $lengths; do
  $bin niah "${common[@]}" --style chat --tasks all --samples "$samples" --lengths "$L" \
    --methods full,gem,reference -o "$out/suite-$L" >>"$out/suite-$L.log" 2>&1 &
done
wait
grep -h "calibrated\|first run" "$out/calibrate.log"
for L in $lengths; do tail -3 "$out/suite-$L.log"; done
