#!/usr/bin/env bash
# Prepare .gpu/ (git-ignored) for a GPU machine that has nvcc and cmake but no Rust:
#   .gpu/bin/gemfilter   the binary, linked against libllama/libggml as shared libraries
#   .gpu/llama.cpp/      the exact llama.cpp source llama-cpp-sys-2 builds (CUDA/CPU backends only)
# Then, on the GPU machine, scripts/gpu-libs.sh builds the CUDA libraries from that source and
# prints the LD_LIBRARY_PATH to run .gpu/bin/gemfilter with. See README, "GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
ver=$(awk '/^name = "llama-cpp-sys-2"/{getline; gsub(/"/,"",$3); print $3}' Cargo.lock)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-"$ver"/llama.cpp | head -1)
[ -d "$src" ] || { echo "error: llama-cpp-sys-2 $ver source not found (run cargo fetch)" >&2; exit 1; }
CARGO_TARGET_DIR=target/gpu cargo build --release --features dynamic-link
rm -rf .gpu/llama.cpp .gpu/bin
mkdir -p .gpu/bin
cp target/gpu/release/gemfilter .gpu/bin/gemfilter
strip .gpu/bin/gemfilter
cp -r "$src" .gpu/llama.cpp
chmod -R u+w .gpu/llama.cpp
# Backends the GPU build does not use, and everything that is not a library.
(cd .gpu/llama.cpp/ggml/src && rm -rf ggml-et ggml-metal ggml-hexagon ggml-sycl ggml-vulkan ggml-opencl \
    ggml-webgpu ggml-cann ggml-openvino ggml-zdnn ggml-zendnn ggml-virtgpu ggml-rpc)
(cd .gpu/llama.cpp && rm -rf tools examples tests pocs docs models gguf-py grammars ci)
echo "llama-cpp-sys-2 $ver" > .gpu/VERSION
du -sh .gpu
