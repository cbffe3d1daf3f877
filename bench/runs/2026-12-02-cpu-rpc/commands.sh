# 2-core machine, CPU only, 2 threads; from the repository root (2026-12-02).
# The same bench (standard llama.cpp vs GemFilter, one process) locally and with every layer on a
# `gemfilter rpc-server` worker on localhost (the worker computes; the client only drives it).
set -e
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
D=bench/runs/2026-12-02-cpu-rpc
target/release/gemfilter bench -m $M -ngl 0 -t 2 --lengths 4k --n-decode 16 \
  -o $D/local.json > $D/local.txt 2> $D/local.log
target/release/gemfilter rpc-server -p 50052 -t 2 > $D/worker.log 2>&1 &
WORKER=$!
trap 'kill $WORKER' EXIT
sleep 1
target/release/gemfilter bench -m $M -t 2 --lengths 4k --n-decode 16 --rpc 127.0.0.1:50052 \
  -o $D/rpc.json > $D/rpc.txt 2> $D/rpc.log
