#!/usr/bin/env python3
"""Per task, the RULER-style suite's exact-match score of every method found in niah cells.jsonl
files, plain or gzip-compressed as bench/runs keeps them (full prompt, GemFilter, reference,
draft selection), with the mean over tasks and needle recall. A method is named by its key's
method part (method, layer, scoring, draft, positions).
usage: scripts/suite-tables.py TITLE=FILE[,FILE...] ...
  e.g. scripts/suite-tables.py "q05 8k=bench/runs/2026-12-02-h200-draft-turns-suite/q05-suite-8k.jsonl.gz"
"""
import collections, gzip, json, sys


def load(paths):
    out = {}
    for p in paths:
        opener = gzip.open if p.endswith(".gz") else open
        for line in opener(p, "rt", encoding="utf-8"):
            line = line.strip()
            if line:
                r = json.loads(line)
                out[r["key"]] = r  # the last record of a cell wins (runs resume)
    return list(out.values())


def label(r):
    if r["method"] == "full":
        return "full"
    parts = [r["method"], f"r{r['layer']}", r["scoring"] or ""]
    key = r["key"]
    for tag in ("|d:", "|pos:"):
        if tag in key:
            parts.append(key.split(tag, 1)[1].split("|")[0])
    return " ".join(p for p in parts if p)


for arg in sys.argv[1:]:
    title, files = arg.split("=", 1)
    recs = load(files.split(","))
    groups, recall = collections.defaultdict(list), collections.defaultdict(list)
    for r in recs:
        m = label(r)
        groups[(m, r["task"])].append(r["score_exact"])
        if r.get("recall") is not None:
            # cwe's "needle" is every occurrence of the common words (most of the prompt), so
            # its recall is bounded by k / n; the needle tasks and vt are counted apart from it.
            recall[(m, r["task"] == "cwe")].append(r["recall"])
    methods = sorted({m for m, _ in groups}, key=lambda m: (m != "full", m))
    tasks = sorted({t for _, t in groups})
    print(f"\n### {title}\n")
    print("| task | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods))

    def cell(m, t):
        g = groups[(m, t)]
        return f"{sum(g) / len(g):.2f} ({len(g)})" if g else "-"

    for t in tasks:
        print(f"| {t} | " + " | ".join(cell(m, t) for m in methods) + " |")

    def avg(m):
        v = [sum(groups[(m, t)]) / len(groups[(m, t)]) for t in tasks if groups[(m, t)]]
        n = sum(1 for t in tasks if groups[(m, t)])
        return f"**{sum(v) / len(v):.3f}**" + (f" ({n} tasks)" if n < len(tasks) else "") if v else "-"

    print("| mean over tasks | " + " | ".join(avg(m) for m in methods) + " |")
    for cwe, name in ((False, "needle recall (niah_*, vt)"), (True, "cwe recall")):
        print(f"| {name} | " + " | ".join(
            f"{sum(recall[(m, cwe)]) / len(recall[(m, cwe)]):.3f}" if recall[(m, cwe)] else "-"
            for m in methods) + " |")
