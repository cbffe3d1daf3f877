#!/usr/bin/env bash
# gemfilter on a GPU machine: build, models, benches, the accuracy suite and its tables, in one
# flow (docs/gpu.md). Run from anywhere; paths are relative to the repository root.
#
#   scripts/gpu.sh kit                          # on a machine with Rust: .gpu/bin/gemfilter and the
#                                               #   selection benches, linked against shared llama.cpp
#                                               #   libraries
#   scripts/gpu.sh libs                         # on the GPU machine (nvcc, cmake): the CUDA libraries
#                                               #   from the vendored llama.cpp, into .gpu/build, once
#   scripts/gpu.sh run ARGS...                  # gemfilter with those libraries (any subcommand)
#   scripts/gpu.sh models NAME...               # real models into models/ (scripts/fetch-models.sh)
#   scripts/gpu.sh synth SHAPE...               # random-weight Q4_0 models of real shapes into models/
#   scripts/gpu.sh bench OUT MODEL LENGTHS [FLAGS...]
#                                               # standard llama.cpp vs GemFilter: OUT/NAME.{json,txt}
#   scripts/gpu.sh calibrate OUT MODEL          # a first run with an empty presets file: the timed
#                                               #   self-calibration of a model without a preset
#   scripts/gpu.sh curves OUT MODEL [LENGTHS]   # recall per layer and scoring: OUT/curves-NAME.txt
#   scripts/gpu.sh suite OUT MODEL [SAMPLES] [LENGTHS] [NIAH FLAGS...]
#                                               # the RULER-style suite, one process per length
#   scripts/gpu.sh tables OUT...                # per-task tables of every suite under each OUT
#   scripts/gpu.sh pack OUT                     # gzip OUT's cells.jsonl records for the repository
#   scripts/gpu.sh criterion [LENGTHS] [FILTER] # the criterion selection benches on this machine's GPU
#                                               #   (default 32768,131072 and score/: host vs device)
#   scripts/gpu.sh test                         # the GPU-only tests (needs Rust and CUDA there)
#
# Environment: GEMFILTER (the binary; default .gpu/bin/gemfilter when built, else
# target/release/gemfilter, e.g. from `cargo build --release --features cuda`), CUDA_ARCH (90:
# H100/H200), GPU_FLAGS (default "-ngl 99 -fa on"), METHODS and TASKS (the suite's, default
# full,gem,reference and all), GEMFILTER_CACHE (prefix models).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GEMFILTER_CACHE=${GEMFILTER_CACHE:-$root/.gpu/cache}
read -r -a gpu_flags <<<"${GPU_FLAGS:--ngl 99 -fa on}"

die() { echo "error: $*" >&2; exit 1; }
name_of() { basename "$1" .gguf; }
abs() { case $1 in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }

# Build libllama/libggml with CUDA and RPC from vendor/llama-cpp-sys-2/llama.cpp (the patched source
# the binary was built against); print the directory to put on LD_LIBRARY_PATH.
libs() {
  local src=vendor/llama-cpp-sys-2/llama.cpp build=.gpu/build
  [ -d "$src" ] || die "$src is missing (a checkout of this repository with vendor/ is needed)"
  if [ ! -f "$build/bin/libllama-common.so" ]; then
    command -v nvcc >/dev/null || die "nvcc not found (the CUDA toolkit is needed to build the libraries)"
    mkdir -p "$build"
    echo "building the CUDA libraries for sm_${CUDA_ARCH:-90} into $build (log $build/build.log)" >&2
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
      -DGGML_CUDA=ON -DGGML_RPC=ON -DGGML_RPC_RDMA=OFF -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
      -DGGML_NATIVE=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
      -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >"$build/build.log" 2>&1 || { tail -30 "$build/build.log" >&2; exit 1; }
    # llama-common: the chat templates, LoRA and control-vector loading the binary links.
    cmake --build "$build" --target llama llama-common -j "$(nproc)" >>"$build/build.log" 2>&1 ||
      { tail -30 "$build/build.log" >&2; exit 1; }
  fi
  echo "$root/$build/bin"
}

# The binary to run, with the CUDA libraries on the library path when it is the shared-library one.
gf() {
  local bin=${GEMFILTER:-}
  if [ -z "$bin" ]; then
    if [ -x .gpu/bin/gemfilter ]; then bin=.gpu/bin/gemfilter; else bin=target/release/gemfilter; fi
  fi
  [ -x "$bin" ] || die "no gemfilter binary at $bin (scripts/gpu.sh kit, or cargo build --release --features cuda)"
  if [ "$bin" = .gpu/bin/gemfilter ]; then
    LD_LIBRARY_PATH=$(libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$bin" "$@"
  else
    "$bin" "$@"
  fi
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case $cmd in
kit)
  # llama-cpp-sys-2 hard-links the shared libraries next to the binary and fails on stale links.
  find target/gpu/release -maxdepth 2 -name "lib*.so*" -delete 2>/dev/null || true
  CARGO_TARGET_DIR=target/gpu cargo build --release --features dynamic-link
  # Libraries built for an older binary would not match this one: libs builds them again.
  rm -rf .gpu/bin .gpu/build
  mkdir -p .gpu/bin
  cp target/gpu/release/gemfilter .gpu/bin/gemfilter
  strip .gpu/bin/gemfilter
  bench_exe=$(CARGO_TARGET_DIR=target/gpu cargo bench --features dynamic-link --bench select --no-run \
    --message-format=json 2>/dev/null | sed -n 's/.*"executable":"\([^"]*select-[^"]*\)".*/\1/p' | tail -1)
  [ -n "$bench_exe" ] || die "the selection benches did not build"
  cp "$bench_exe" .gpu/bin/select-bench
  strip .gpu/bin/select-bench
  echo ".gpu/bin/gemfilter ready: copy the checkout with .gpu/ to the GPU machine, then scripts/gpu.sh libs there" ;;
libs) libs ;;
run) gf "$@" ;;
models) scripts/fetch-models.sh "$@" ;;
synth)
  [ $# -gt 0 ] || die "usage: scripts/gpu.sh synth SHAPE... (e.g. llama-3.2-1b llama-3.1-8b mistral-nemo-12b)"
  mkdir -p models
  for s in "$@"; do
    [ -f "models/$s.q4_0.gguf" ] || gf synth --shape "$s" --type q4_0 -o "models/$s.q4_0.gguf"
    echo "models/$s.q4_0.gguf"
  done ;;
bench)
  [ $# -ge 3 ] || die "usage: scripts/gpu.sh bench OUT MODEL LENGTHS [bench flags...]"
  out=$1 model=$2 lengths=$3
  shift 3
  tag=$(echo "$(name_of "$model") $*" | tr -c 'A-Za-z0-9.\n-' '_' | tr -s _ | sed 's/_$//')
  mkdir -p "$out"
  gf bench -m "$model" --lengths "$lengths" -fa on -o "$out/bench-$tag.json" "$@" | tee "$out/bench-$tag.txt" ;;
calibrate)
  [ $# -eq 2 ] || die "usage: scripts/gpu.sh calibrate OUT MODEL"
  out=$1 model=$2
  mkdir -p "$out"
  [ -s "$out/presets.toml" ] && die "$out/presets.toml exists: a model calibrates once (remove it to time it again)"
  t0=$(date +%s%N)
  GEMFILTER_PRESETS=$(abs "$out")/presets.toml gf niah -m "$model" "${gpu_flags[@]}" --style chat \
    --tasks niah_single_1 --samples 1 --lengths 4k --methods gem -o "$out/first-run" 2>&1 |
    tee "$out/calibrate-$(name_of "$model").log" | grep -i "calibrat" || true
  echo "first run with calibration: $((($(date +%s%N) - t0) / 1000000)) ms" | tee -a "$out/calibrate-$(name_of "$model").log"
  cat "$out/presets.toml" ;;
curves)
  [ $# -ge 2 ] || die "usage: scripts/gpu.sh curves OUT MODEL [LENGTHS]"
  out=$1 model=$2 lengths=${3:-8k,16k,31k}
  mkdir -p "$out"
  gf calibrate -m "$model" "${gpu_flags[@]}" --style chat --lengths "$lengths" --depths 10,30,50,70,90 \
    --scorings reference,reference+layers3,window-softmax:32,window-softmax:32+layers3 --gem-topk 1024 \
    >"$out/curves-$(name_of "$model").txt" 2>"$out/curves-$(name_of "$model").log"
  cat "$out/curves-$(name_of "$model").txt" ;;
suite)
  [ $# -ge 2 ] || die "usage: scripts/gpu.sh suite OUT MODEL [SAMPLES] [LENGTHS] [niah flags...]"
  out=$1 model=$2 samples=${3:-10} lengths=${4:-8k,16k,31k}
  shift $(($# < 4 ? $# : 4))
  mkdir -p "$out"
  # One presets file per OUT: a model without an entry calibrates on its first run and keeps it.
  export GEMFILTER_PRESETS=${GEMFILTER_PRESETS:-$(abs "$out")/presets.toml}
  # Small models leave a large GPU mostly idle: one process per length, in parallel. Each runs 5
  # samples of every task first, so a run cut short still covers every task; niah resumes.
  pids=()
  for L in ${lengths//,/ }; do
    o=$out/$(name_of "$model")-$L
    (for n in $((samples < 5 ? samples : 5)) "$samples"; do
      gf niah -m "$model" "${gpu_flags[@]}" --style chat --tasks "${TASKS:-all}" --lengths "$L" --samples "$n" \
        --methods "${METHODS:-full,gem,reference}" -o "$o" "$@" || exit 1
    done) >>"$o.log" 2>&1 &
    pids+=($!)
  done
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  for L in ${lengths//,/ }; do tail -2 "$out/$(name_of "$model")-$L.log"; done
  exit $rc ;;
tables)
  [ $# -gt 0 ] || die "usage: scripts/gpu.sh tables OUT..."
  args=()
  for out in "$@"; do
    for f in "$out"/*/cells.jsonl "$out"/*/cells.jsonl.gz; do
      [ -f "$f" ] && args+=("$(basename "$(dirname "$f")")=$f")
    done
  done
  [ ${#args[@]} -gt 0 ] || die "no */cells.jsonl under $*"
  python3 scripts/suite-tables.py "${args[@]}" ;;
pack)
  [ $# -eq 1 ] || die "usage: scripts/gpu.sh pack OUT"
  find "$1" -name '*.jsonl' -exec gzip -9n {} \;
  du -sh "$1" ;;
criterion)
  [ -x .gpu/bin/select-bench ] || die "no .gpu/bin/select-bench (scripts/gpu.sh kit)"
  GEMFILTER_BENCH_N=${1:-32768,131072} LD_LIBRARY_PATH=$(libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    .gpu/bin/select-bench --bench "${2:-score/}" ;;
test)
  # Tests marked #[ignore = "needs a GPU: ..."]; they build the CUDA binary (cargo, the CUDA toolkit).
  cargo test --release --features cuda --test tests -- --ignored --test-threads=1 "$@" ;;
help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) die "unknown subcommand '$cmd' (scripts/gpu.sh help)" ;;
esac
