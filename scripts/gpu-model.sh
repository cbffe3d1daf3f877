#!/usr/bin/env bash
# On the GPU machine: append the model pieces that travelled with this call (.pieces/NAME/partNN,
# an ignored folder named in the call's carry) to /tmp/models/NAME.gguf, each piece once, and say
# whether the model is complete (its sha256 prefix matches). A real model (hundreds of MB) reaches
# the GPU machine in pieces of 42 MB, one or two per call, while the machine stays warm.
# Here:  split -b 42000000 -d -a 2 models/X.gguf .pieces/NAME/part
# usage: scripts/gpu-model.sh NAME SHA256_PREFIX
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 want=$2
dir=/tmp/models
mkdir -p "$dir/$name.parts"
for p in .pieces/"$name"/part*; do
  [ -f "$p" ] || continue
  cp "$p" "$dir/$name.parts/$(basename "$p")"
done
have=$(ls "$dir/$name.parts" | wc -l)
cat "$dir/$name.parts"/part* > "$dir/$name.gguf.tmp"
if sha256sum "$dir/$name.gguf.tmp" | grep -q "^$want"; then
  mv "$dir/$name.gguf.tmp" "$dir/$name.gguf"
  echo "$name complete: $have pieces, $(stat -c %s "$dir/$name.gguf") bytes"
else
  rm -f "$dir/$name.gguf.tmp"
  echo "$name: $have pieces so far"
fi
