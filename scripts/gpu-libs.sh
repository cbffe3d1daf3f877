#!/usr/bin/env bash
# On the GPU machine: build libllama/libggml with CUDA from vendor/llama-cpp-sys-2/llama.cpp (the
# patched source the binary was built against) into .gpu/build, once; print the directory to put
# on LD_LIBRARY_PATH.
# CUDA_ARCH defaults to 90 (H100/H200). LLAMA_SRC: build from a copy of that source instead (a device
# call re-syncs the working tree, which breaks a build running in the background from it).
set -euo pipefail
cd "$(dirname "$0")/../.gpu"
if [ ! -f build/bin/libllama.so ]; then
  cmake -S "${LLAMA_SRC:-../vendor/llama-cpp-sys-2/llama.cpp}" -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DGGML_CUDA=ON -DGGML_RPC=ON -DGGML_RPC_RDMA=OFF -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
  cmake --build build --target llama -j "$(nproc)" >>build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
fi
echo "$PWD/build/bin"
