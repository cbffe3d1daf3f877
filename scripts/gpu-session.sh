#!/usr/bin/env bash
# One device call's worth of measurements (README "GPU"): builds the CUDA libraries if missing,
# writes the 8B-shape model, then runs the benches named in $STEPS while time remains.
# usage: scripts/gpu-session.sh OUTDIR [STEP...]
#   steps: main, prefix, ubatch, short, nommap, nommap-short, q8, q4, nemo
set -uo pipefail
cd "$(dirname "$0")/.."
out=$1; shift
mkdir -p "$out"
log=$out/log.txt
budget=${BUDGET_S:-560}
t0=$SECONDS
say() { echo "[$((SECONDS - t0)) s] $*" | tee -a "$log"; }
left() { echo $((budget - (SECONDS - t0))); }
LD_LIBRARY_PATH=$(scripts/gpu-libs.sh) || { say "library build failed"; exit 1; }
export LD_LIBRARY_PATH GEMFILTER_CACHE=${GEMFILTER_CACHE:-/tmp/gemfilter-cache}
say "libraries ready; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader)"
gf=.gpu/bin/gemfilter
model() { # shape -> path
  local m=/tmp/$1.q4_0.gguf
  [ -f "$m" ] || "$gf" synth --shape "$1" --type q4_0 -o "$m" >>"$log" 2>&1
  echo "$m"
}
bench() { # name need_s args...
  local name=$1 need=$2; shift 2
  if [ "$(left)" -lt "$need" ]; then say "skip $name (time)"; return; fi
  say "start $name: gemfilter bench $*"
  timeout "$(left)" "$gf" bench "$@" -fa on -o "$out/$name.json" >>"$log" 2>&1
  say "end $name (rc $?)"
}
l8=$(model llama-3.1-8b); say "model ready"
for step in "$@"; do
  case $step in
    main) bench main 120 -m "$l8" --lengths 128k ;;
    prefix) p=$(ls "$GEMFILTER_CACHE"/*.gguf 2>/dev/null | head -1)
      [ -n "$p" ] && bench prefix 60 -m "$p" --gem-layer 13 --gem-prefix off --lengths 128k ;;
    ubatch) p=$(ls "$GEMFILTER_CACHE"/*.gguf 2>/dev/null | head -1)
      [ -n "$p" ] && bench ubatch 45 -m "$p" --gem-layer 13 --gem-prefix off --gem-k-source ubatch --no-standard --lengths 128k ;;
    short) bench short 60 -m "$l8" --lengths 8k,16k,32k,64k ;;
    nommap) bench nommap 70 -m "$l8" --lengths 8k,128k --no-mmap ;;
    nommap-short) bench nommap-short 40 -m "$l8" --lengths 16k,32k --no-mmap ;;
    q8) bench q8 110 -m "$l8" --lengths 128k -ctk q8_0 -ctv q8_0 ;;
    q4) bench q4 110 -m "$l8" --lengths 128k -ctk q4_0 -ctv q4_0 ;;
    nemo) n=$(model mistral-nemo-12b); bench nemo 150 -m "$n" --lengths 128k ;;
  esac
done
say "done"
