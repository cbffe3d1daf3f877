# The cost-aware rule (calibrate::MAX_FILTER_SHARE, curves::choose_cheapest) applied to a `gemfilter calibrate` curves log:
# usage: python3 rule_cost.py bench/runs/2026-12-02-h200-calibration-rule/q{05,15}-curves.log
import re,sys
# Cost-aware rule: worst recall over 8K/16K per (scoring, layer); candidates with (layer+1) <= 0.75 n;
# cheapest (layer+1 + span*queries/1024) within 0.05 of the best.

for f in sys.argv[1:]:
    n=24 if 'q05' in f else 28
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
    def cost(c,L):
        span=3 if 'layers3' in c else 1; q=32 if 'window' in c else 1
        return (L+1+min(span,L+1)*q/1024)/n
    for cap in (1.0,0.75):
        worst={(c,L):min(tabs[l][c][L] for l in lens) for c in cols for L in tabs[lens[0]][c] if (L+1)<=cap*n}
        best=max(worst.values())
        for tol in (0.01,0.05):
            cand=[k for k,v in worst.items() if v>=best-tol-1e-12]
            pick=min(cand,key=lambda k:cost(*k))
            print(f.split('/')[-1],'cap',cap,'tol',tol,'best',best,'->',pick,'recall',worst[pick],'cost %.2f'%cost(*pick))
