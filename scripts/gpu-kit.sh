#!/usr/bin/env bash
# Prepare .gpu/ (git-ignored) for a GPU machine that has nvcc and cmake but no Rust:
#   .gpu/bin/gemfilter   the binary, linked against libllama/libggml as shared libraries
# The llama.cpp source travels with the checkout (vendor/llama-cpp-sys-2/llama.cpp, patched).
# Then, on the GPU machine, scripts/gpu-libs.sh builds the CUDA libraries from that source and
# prints the LD_LIBRARY_PATH to run .gpu/bin/gemfilter with. See README, "GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
ver=$(awk -F'"' '/^version/{print $2; exit}' vendor/llama-cpp-sys-2/Cargo.toml)
# llama-cpp-sys-2 hard-links the shared libraries next to the binary and fails on stale links.
find target/gpu/release -maxdepth 2 -name "lib*.so*" -delete 2>/dev/null || true
CARGO_TARGET_DIR=target/gpu cargo build --release --features dynamic-link
rm -rf .gpu/llama.cpp .gpu/bin .gpu/build
mkdir -p .gpu/bin
cp target/gpu/release/gemfilter .gpu/bin/gemfilter
strip .gpu/bin/gemfilter
echo "llama-cpp-sys-2 $ver (vendor/, patched)" > .gpu/VERSION
du -sh .gpu
