# 2-core Xeon (24 GB, no GPU), 2 threads, 2026-12-06, run from the repository root on a shared,
# busy machine: each log's *.time file has `uptime` before and after. First use of a model
# without a preset (SmolLM2 and Gemma-3 have entries: --gem-calibrate force), each into an empty
# presets file; "before" is the binary of 2026-12-06 11:52 (recall-only rule, 3K probes), "after"
# this commit's (cost-aware rule, 1.5K probes through three quarters of the model).
D=bench/runs/2026-12-06-cpu-calibration-cost
head -c 3000 ../shared/data/pg-essays/addiction.txt > /tmp/doc.txt
first_use() { # BIN TAG MODEL [flags]
  B=$1 T=$2 M=$3; shift 3; rm -f $D/$T-presets.toml; uptime > $D/$T.time
  /usr/bin/time -f "wall %e s, user %U s, sys %S s" env GEMFILTER_PRESETS=$D/$T-presets.toml $B -m $M -t 2 \
    -f /tmp/doc.txt -p "What is this essay about?" -n 8 -st "$@" > $D/$T.txt 2> $D/$T.log
  tail -1 $D/$T.log >> $D/$T.time; uptime >> $D/$T.time
}
first_use $BEFORE before-q05 models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
first_use $BEFORE before-smollm2 models/SmolLM2-135M-Instruct.Q4_1.gguf --gem-calibrate force
first_use target/release/gemfilter after-q05 models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
first_use target/release/gemfilter after-smollm2 models/SmolLM2-135M-Instruct.Q4_1.gguf --gem-calibrate force
first_use target/release/gemfilter after-gemma3 models/gemma-3-270m-q4_k_m.gguf --gem-calibrate force
# idle-q05: the same first use at 17:53, the machine idle (load 1.3), binary of commit 12a3bb3.
first_use target/release/gemfilter idle-q05 models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
# after-q05-first and after-smollm2-first: the same two runs an hour earlier (load ~4) with a build
# of the same rule and probes (bash `time`, the same flags).
# The 0.5B's curves on the CPU probes (every layer, no early stop; k counts the ~52 protected
# template and question tokens here, so 100 is about the 48 context tokens of self-calibration).
S=reference,reference+layers3,window-softmax:32,window-softmax:32+layers3
target/release/gemfilter calibrate -m models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf -t 2 --style chat \
  --lengths 1536 --depths 20,50,80 --gem-topk 100 --scorings $S > $D/q05-curves-1536.txt 2> $D/q05-curves-1536.log
target/release/gemfilter calibrate -m models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf -t 2 --style chat \
  --lengths 1024 --depths 20,50,80 --gem-topk 84 --scorings $S > $D/q05-curves-1024.txt 2> $D/q05-curves-1024.log
# The cost-aware rule on the H200 curves of 2026-12-02.
python3 $D/rule_cost.py bench/runs/2026-12-02-h200-calibration-rule/q{05,15}-curves.log > $D/rule-on-h200-curves.txt
# SmolLM2's presets on the passkey at 3.7K tokens, k 256, depths 20/50/80: after's calibrated one
# (layer 17), before's (23) and models.toml's entry (18, an empty user file). tests/util.rs's haystack().
: > /tmp/empty.toml
for P in $D/after-smollm2-presets.toml $D/before-smollm2-presets.toml /tmp/empty.toml; do for d in 20 50 80; do
  python3 -c "t=open('data/haystack.txt').read()[:16000]; t=t[:t.rfind('. ')+1]; a=int(len(t)*$d/100); p=t.find('. ',a)+1; print(t[:p]+' The secret passkey for the vault is 48213.'+t[p:],end='')" > /tmp/needle-$d.txt
  GEMFILTER_PRESETS=$P target/release/gemfilter -m models/SmolLM2-135M-Instruct.Q4_1.gguf -t 2 -f /tmp/needle-$d.txt \
    -p "What is the secret passkey for the vault?" -n 16 --temp 0 --json --gem-show --gem-topk 256 --gem-calibrate off 2>/tmp/show.log |
    python3 -c "import json,sys; r=json.load(sys.stdin); print(r['layer'], r['scoring'], r['prompt_tokens'], r.get('selected_tokens'), repr(r['answer']))"
  echo "depth $d kept-needle $(grep -c 48213 /tmp/show.log)"
done; done > $D/smollm2-passkey.txt
