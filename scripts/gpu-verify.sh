#!/usr/bin/env bash
# On the GPU machine: one session's measurements for the trust, draft and conversation issues,
# as background steps that outlive a device call (the machine stays warm while calls poll).
# Models: /tmp/models/q05.gguf and q15.gguf from scripts/gpu-model.sh; synthetic shapes here.
# Results under /tmp/v; `status` prints progress, `pack DIR` tars everything small into DIR.
# usage: scripts/gpu-verify.sh libs|synth|calib [NAMES]|benches|suites [SAMPLES]|trust2 [SAMPLES]|status|pack DIR
set -uo pipefail
cd "$(dirname "$0")/.."
v=/tmp/v
mkdir -p "$v"
bg() { # name command... : run detached, log in $v/NAME.log, done-marker $v/NAME.done
  local name=$1; shift
  (setsid nohup bash -c "$* ; echo \$? > $v/$name.done" >"$v/$name.log" 2>&1 </dev/null &)
}
libs() { # the libraries from the background build (never a second build beside it)
  if [ -f "$v/libs.log" ] && [ ! -f "$v/libs.done" ]; then echo "libraries still building"; exit 1; fi
  LD_LIBRARY_PATH=$(scripts/gpu-libs.sh) || exit 1; export LD_LIBRARY_PATH
}
export GEMFILTER_CACHE=/tmp/gemfilter-cache
gf=.gpu/bin/gemfilter
common=(-ngl 99 -fa on)
runs=bench/runs/2026-12-02-h200-trust

trust_suite() { # MODEL LENGTH METHODS SAMPLES: the suite on one model and length, in the background
  local o=/tmp/trust/$1/suite-$2
  # 5 samples of every task first, then the rest: a run cut short still covers every task.
  local n="$gf niah -m /tmp/models/$1.gguf ${common[*]} --style chat --tasks all --lengths $2 --methods $3 -o $o --samples"
  bg suite-$1-$2 "export LD_LIBRARY_PATH=$LD_LIBRARY_PATH GEMFILTER_PRESETS=/tmp/trust/$1/presets.toml;" "$n 5; $n $4"
}
draft_suites() { # SEED_DIR SAMPLES POSITIONS...: q05 selects for q15; full cells from SEED_DIR
  local seeds=$1 samples=$2 pos L o n; shift 2
  for pos in "$@"; do
    for L in 8k 16k 31k; do
      o=/tmp/draft/$pos-$L; mkdir -p "$o"
      [ -f "$o/cells.jsonl" ] || grep -h '"method":"full"' $seeds/q15-suite-$L.jsonl >"$o/cells.jsonl"
      n="$gf niah -m /tmp/models/q15.gguf --gem-draft /tmp/models/q05.gguf --gem-positions $pos ${common[*]} --style chat --tasks all --lengths $L --methods full,gem -o $o --samples"
      bg draft-$pos-$L "export LD_LIBRARY_PATH=$LD_LIBRARY_PATH GEMFILTER_PRESETS=/tmp/trust/q05/presets.toml;" \
        "$n 5; $n $samples"
    done
  done
}

case $1 in
libs) # from a copy of the source: each device call re-syncs the tree under a running build
  rm -rf /tmp/llsrc && cp -r vendor/llama-cpp-sys-2/llama.cpp /tmp/llsrc && mkdir -p /tmp/llbuild && ln -sfn /tmp/llbuild .gpu/build
  rm -f "$v/libs.done"
  bg libs LLAMA_SRC=/tmp/llsrc scripts/gpu-libs.sh ;;
synth)
  libs
  cmd=""
  for s in llama-3.2-1b llama-3.1-8b mistral-nemo-12b; do
    cmd+="[ -f /tmp/$s.gguf ] || $gf synth --shape $s --type q4_0 -o /tmp/$s.gguf;"
  done
  bg synth "export LD_LIBRARY_PATH=$LD_LIBRARY_PATH; $cmd true" ;;
calib)
  # A user's first run on each model: self-calibration, alone on the GPU, timed.
  libs
  for m in ${2:-q15 q05}; do
    mkdir -p /tmp/trust/$m
    [ -s /tmp/trust/$m/presets.toml ] && continue
    s0=$(date +%s%N)
    GEMFILTER_PRESETS=/tmp/trust/$m/presets.toml $gf niah -m /tmp/models/$m.gguf "${common[@]}" \
      --style chat --tasks niah_single_1 --samples 1 --lengths 4k --methods gem \
      -o /tmp/trust/$m/first >/tmp/trust/$m/calibrate.log 2>&1
    echo "first run with calibration: $((($(date +%s%N) - s0) / 1000000)) ms" >>/tmp/trust/$m/calibrate.log
    grep -h "calibrat\|first run" /tmp/trust/$m/calibrate.log
    cat /tmp/trust/$m/presets.toml
  done ;;
benches)
  # Timing runs, one at a time with the GPU otherwise idle.
  libs
  d="--gem-draft /tmp/llama-3.2-1b.gguf --gem-draft-layer 6"
  cmd="export LD_LIBRARY_PATH=$LD_LIBRARY_PATH;"
  cmd+="$gf bench -m /tmp/llama-3.1-8b.gguf $d --lengths 127k -fa on -o $v/bench-8b-draft.json > $v/bench-8b-draft.txt 2>&1;"
  cmd+="$gf bench -m /tmp/llama-3.1-8b.gguf --turns 3 --lengths 127k -fa on -o $v/bench-8b-turns.json > $v/bench-8b-turns.txt 2>&1;"
  cmd+="$gf bench -m /tmp/mistral-nemo-12b.gguf $d --lengths 127k -fa on -o $v/bench-12b-draft.json > $v/bench-12b-draft.txt 2>&1;"
  cmd+="$gf bench -m /tmp/llama-3.1-8b.gguf $d --gem-positions original --lengths 127k --no-standard -fa on -o $v/bench-8b-draft-orig.json > $v/bench-8b-draft-orig.txt 2>&1"
  bg benches "$cmd" ;;
suites)
  # Accuracy runs in parallel (small models leave the H200 mostly idle). Earlier full-prompt
  # and reference cells of the same seeds are reused (niah skips keys it already holds).
  libs
  for m in q05 q15; do
    for L in 8k 16k 31k; do
      o=/tmp/trust/$m/suite-$L; mkdir -p "$o"
      [ -f "$o/cells.jsonl" ] || cat $runs/$m-suite-$L.jsonl $runs/var-$m-*-$L.jsonl 2>/dev/null |
        grep -v '"method":"gem"' >"$o/cells.jsonl"
      trust_suite $m $L full,gem "${2:-10}"
    done
  done
  draft_suites $runs "${2:-10}" ${POSITIONS:-compact original} ;;
trust2)
  # Reference scoring at the self-calibrated layers and the 1.5B's unfinished 31K cells: seeds
  # session 9's presets and cells (niah skips keys it holds), then the draft suite (POSITIONS).
  libs
  s9=bench/runs/2026-12-02-h200-session9
  for m in q05 q15; do
    mkdir -p /tmp/trust/$m && cp $s9/$m-presets.toml /tmp/trust/$m/presets.toml
    for L in 8k 16k 31k; do
      o=/tmp/trust/$m/suite-$L; mkdir -p "$o"
      [ -f "$o/cells.jsonl" ] || cp $s9/$m-suite-$L.jsonl "$o/cells.jsonl"
      trust_suite $m $L full,gem,reference "${2:-10}"
    done
  done
  draft_suites $s9 "${2:-10}" ${POSITIONS:-original} ;;
status)
  ls /tmp/models 2>/dev/null | tr '\n' ' '; echo
  for f in "$v"/*.done; do [ -f "$f" ] && echo "$(basename "$f" .done): rc $(cat "$f")"; done
  for f in /tmp/trust/*/suite-*/cells.jsonl /tmp/draft/*/cells.jsonl; do
    [ -f "$f" ] && echo "$f $(grep -c '"method":"gem"' "$f") gem, $(grep -c '"method":"reference"' "$f") ref, $(wc -l <"$f") lines"
  done
  tail -2 "$v"/benches.log 2>/dev/null
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null ;;
pack)
  out=${2:?}
  tar -C /tmp -cJf "$out/v.tar.xz" v trust draft --exclude='*.gguf' 2>/dev/null
  ls -la "$out" ;;
esac
