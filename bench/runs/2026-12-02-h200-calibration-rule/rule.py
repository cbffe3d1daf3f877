import re,sys
# Apply the new choice rule (worst over 8K/16K, reference first within 0.01, else lowest layer) to a curves.log table.
for f in sys.argv[1:]:
    tabs={}; cur=None; cols=None
    for line in open(f):
        m=re.match(r'mean recall at (\d+) tokens',line)
        if m: cur=int(m.group(1)); tabs[cur]={}; continue
        if cur and line.startswith('| layer'):
            cols=[c.split(' recall')[0].strip() for c in line.strip('|\n').split('|')[1:]]; continue
        if cur and re.match(r'\| \d+ \|',line):
            parts=[p.strip() for p in line.strip('|\n').split('|')]
            L=int(parts[0])
            for c,v in zip(cols,parts[1:]): tabs[cur].setdefault(c,{})[L]=float(v.split()[0])
    lens=[l for l in sorted(tabs) if l<=16384]
    worst={c:{L:min(tabs[l][c][L] for l in lens) for L in tabs[lens[0]][c]} for c in cols}
    best=max(v for c in worst for v in worst[c].values())
    cand=[(c,min(L for L,v in worst[c].items() if v>=best-0.01-1e-12)) for c in cols if any(v>=best-0.01-1e-12 for v in worst[c].values())]
    pick=cand[0] if cand and cand[0][0]==cols[0] else min(cand,key=lambda x:x[1])
    print(f, 'lengths',lens,'best',best,'->',pick, 'recall', worst[pick[0]][pick[1]])
