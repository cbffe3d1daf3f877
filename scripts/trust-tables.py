#!/usr/bin/env python3
"""Tables of the trust measurement (bench/runs/2026-12-02-h200-trust): per model, length and
RULER-style task, the exact-match score of the full prompt, GemFilter at the layer the pool-5
curves choose (window-softmax:32+pool31), the reference scoring at that layer, and the first
self-calibration rule's choice (pool 31 probes: layer 9 / 6) with its reference.
usage: scripts/trust-tables.py [RUN_DIR]"""
import collections, glob, json, sys

root = sys.argv[1] if len(sys.argv) > 1 else "bench/runs/2026-12-02-h200-trust"

def load(paths):
    out = {}
    for p in paths:
        for line in open(p):
            r = json.loads(line)
            out[r["key"]] = r  # the last record of a cell wins (runs resume)
    return list(out.values())

COLS = ["full", "gem", "gem-ref", "first-rule", "first-rule-ref"]
for name, layer in [("q05", 13), ("q15", 16)]:
    for length in ["8k", "16k", "31k"]:
        extra = glob.glob(f"{root}/var-{name}-{layer}-window-softmax_32_pool31.jsonl") if length == "16k" else []
        groups, recall = collections.defaultdict(list), collections.defaultdict(list)
        for r in load([f"{root}/{name}-suite-{length}.jsonl"]):
            m = {"full": "full", "gem": "first-rule", "reference": "first-rule-ref"}[r["method"]]
            groups[(m, r["task"])].append(r["score_exact"])
            if r["recall"] is not None:
                recall[m].append(r["recall"])
        for r in load(glob.glob(f"{root}/var-{name}-{layer}-{length}.jsonl") + extra):
            m = {"gem": "gem", "reference": "gem-ref"}[r["method"]]
            groups[(m, r["task"])].append(r["score_exact"])
            if r["recall"] is not None:
                recall[m].append(r["recall"])
        tasks = sorted({t for _, t in groups})
        print(f"\n{name} at {length} (gem = layer {layer}, window-softmax:32+pool31; cells in brackets)\n")
        print("| task | " + " | ".join(COLS) + " |\n|---|" + "---|" * len(COLS))
        cell = lambda m, t: f"{sum(groups[(m, t)]) / len(groups[(m, t)]):.2f} ({len(groups[(m, t)])})" if groups[(m, t)] else "-"
        for t in tasks:
            print(f"| {t} | " + " | ".join(cell(m, t) for m in COLS) + " |")
        def avg(m):
            v = [sum(groups[(m, t)]) / len(groups[(m, t)]) for t in tasks if groups[(m, t)]]
            return f"{sum(v) / len(v):.3f}" if v else "-"
        print("| **mean over tasks** | " + " | ".join(avg(m) for m in COLS) + " |")
        print("| needle recall | " + " | ".join(f"{sum(recall[m]) / len(recall[m]):.3f}" if recall[m] else "-" for m in COLS) + " |")
