#!/usr/bin/env bash
# The main job on the default small model: a ~6K-token document (bundled essays with one fact
# hidden in the middle) and a question about it, answered with GemFilter and with the full
# prompt, each with its timings.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
BIN=target/release/gemfilter
DOC=$(mktemp --suffix=.txt)
trap 'rm -f "$DOC"' EXIT
python3 - "$DOC" <<'PY'
import sys
text = open("data/haystack.txt").read()[:26000]
text = text[: text.rfind(". ") + 1]
needle = " The secret passkey for the vault is 48213. "
at = text.find(". ", len(text) // 2) + 1
open(sys.argv[1], "w").write(text[:at] + needle + text[at:])
PY
QUESTION="Question: What is the secret passkey for the vault? Answer:"
COMMON=(-m "$MODEL" -f "$DOC" -p "$QUESTION" -n 24 --temp 0 -no-cnv --no-display-prompt --perf)
echo "Document: $(wc -c <"$DOC") bytes of essays with one hidden fact; question: \"$QUESTION\""
echo
echo "== GemFilter: filter pass through the first layers, answer from the top 1024 tokens"
"$BIN" "${COMMON[@]}"
echo
echo "== Standard llama.cpp: the full prompt"
"$BIN" "${COMMON[@]}" --gem off
