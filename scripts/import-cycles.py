#!/usr/bin/env python3
"""List import cycles among src/ files: file A imports file B when A names a path (crate::x::y,
super::z, self::w) that resolves to B's module. `mod` declarations are not imports."""
import os, re, sys
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
mods = {}  # module path tuple -> file
for d, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith(".rs"):
            continue
        p = os.path.relpath(os.path.join(d, f), root)[:-3].split(os.sep)
        if p[-1] in ("mod", "lib", "main"):
            p = p[:-1]
        mods[tuple(p)] = os.path.join(d, f)
def resolve(cur, path):
    parts = path.split("::")
    if parts[0] == "crate": base, rest = (), parts[1:]
    elif parts[0] == "super": base, rest = cur[:-1], parts[1:]
    elif parts[0] == "self": base, rest = cur, parts[1:]
    else: return None
    while rest and rest[0] == "super":
        base, rest = base[:-1], rest[1:]
    best = None
    for i in range(len(rest) + 1):
        cand = base + tuple(rest[:i])
        if cand in mods: best = cand
    return best
edges = {}
for m, f in mods.items():
    text = open(f).read()
    text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
    deps = set()
    for use in re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", text):
        r = resolve(m, use)
        if r is not None and r != m and r != ():
            deps.add(r)
    # `use super::{a, b}` groups
    for base, group in re.findall(r"\b((?:crate|super|self)(?:::\w+)*)::\{([^}]*)\}", text):
        for name in re.split(r"[,\s]+", group):
            name = name.split("::")[0].strip()
            if name:
                r = resolve(m, base + "::" + name)
                if r is not None and r != m and r != ():
                    deps.add(r)
    edges[m] = deps
# Tarjan SCC
index, low, st, on, sccs, n = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            sc(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in list(edges):
    if v not in index: sc(v)
for c in sccs:
    print("cycle:", ", ".join(sorted("/".join(x) or "lib" for x in c)))
sys.exit(1 if sccs else 0)
