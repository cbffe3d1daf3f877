# 2-core Xeon, CPU only, 2 threads, quiet machine (2026-12-02); from the repository root.
# doc.txt: the bundled haystack (9,000 chars) with two facts, at 15% and 85%.
M=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
D=bench/runs/2026-12-02-cpu-conversation
FLAGS="-n 12 --temp 0 -t 2 --json --gem-calibrate off --gem-layer 13 --gem-scoring window-softmax:32+pool15 --gem-topk 256"
# Two turns in one process (the second question from standard input), state saved:
printf 'Who founded the museum? Answer with the name.\n/exit\n' | target/release/gemfilter -m $M -f $D/doc.txt -cnv \
  -p "What is the secret passkey for the vault? Answer with the number." $FLAGS --prompt-cache /tmp/two.state > $D/turns.jsonl
# A second process asks with the saved state (no filter pass over the document):
target/release/gemfilter -m $M -f $D/doc.txt -cnv -p "Who founded the museum? Answer with the name." $FLAGS \
  --prompt-cache /tmp/two.state < /dev/null > $D/second-process.jsonl
