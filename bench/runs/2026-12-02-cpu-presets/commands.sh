# 2-core Xeon, CPU, 2 threads, 2026-12-02: self-calibration (the rule a user's first run applies,
# forced on models that have a models.toml entry) for the two CI models, each into an empty presets file.
D=bench/runs/2026-12-02-cpu-presets
head -c 3000 ../shared/data/pg-essays/$(ls ../shared/data/pg-essays | head -1) > /tmp/doc.txt
for m in SmolLM2-135M-Instruct.Q4_1 gemma-3-270m-q4_k_m; do
  rm -f $D/$m-presets.toml
  GEMFILTER_PRESETS=$D/$m-presets.toml target/release/gemfilter -m models/$m.gguf -t 2 -f /tmp/doc.txt \
    -p "What is this essay about?" -n 8 -st --gem-calibrate force > $D/$m.txt 2> $D/$m.log
done
# Gemma-3-270M: models.toml's preset (layer 5, window-softmax:32+pool31) against the self-calibrated one
# (layer 11, reference) on the RULER-style suite at 8K (plain prompts: the GGUF has no chat template),
# GemFilter only (recall judges the selection).
G=models/gemma-3-270m-q4_k_m.gguf
GEMFILTER_PRESETS=/dev/null target/release/gemfilter niah -m $G -t 2 --tasks all --samples 2 --lengths 8k --methods gem -o $D/gemma-models-toml > $D/gemma-models-toml.log 2>&1
GEMFILTER_PRESETS=$D/gemma-3-270m-q4_k_m-presets.toml target/release/gemfilter niah -m $G -t 2 --tasks all --samples 2 --lengths 8k --methods gem -o $D/gemma-calibrated > $D/gemma-calibrated.log 2>&1
# The calibration curves behind Gemma-3's choice: the CPU's probes (3K, k 96), then the GPU's (8K/16K, k 512).
S=reference,reference+layers3,window-softmax:32,window-softmax:32+layers3
target/release/gemfilter calibrate -m $G -t 2 --lengths 3072 --depths 25,50,75 --gem-topk 96 --scorings $S > $D/gemma-curves-3k.txt 2> $D/gemma-curves-3k.log
target/release/gemfilter calibrate -m $G -t 2 --lengths 8192,16384 --depths 10,30,50,70,90 --gem-topk 512 --scorings $S > $D/gemma-curves-16k.txt 2> $D/gemma-curves-16k.log
