#!/usr/bin/env python3
# The issue-6 tables of bench/RESULTS.md from an eval summary.json: score / fidelity per task, prompt
# length and method (dense, shadowkv, yakv, yakv with residual landmarks), then GPU KV bytes per
# token (pooled over tasks) and decode tok/s per length.  Usage: summary_md.py DIR/summary.json
import json, sys
if len(sys.argv) != 2:
    sys.exit('usage: summary_md.py DIR/summary.json')
try:
    s = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    sys.exit(f'summary_md.py: cannot read {sys.argv[1]}: {e}')
cells = s['cells']
def mname(c):
    if c['method'] != 'yakv': return c['method']
    return 'yakv residual' if 'residual' in c['knobs'] else 'yakv'
methods = ['dense', 'shadowkv', 'yakv', 'yakv residual']
tasks = []
for c in cells:
    if c['task'] not in tasks: tasks.append(c['task'])
by = {(c['task'], c['length'], mname(c)): c for c in cells}
print('| task | prompt | ' + ' | '.join(methods) + ' |')
print('| --- | --- | ' + ' | '.join(['---'] * len(methods)) + ' |')
for t in tasks:
    for L in ['2k', '4k', '8k']:
        row = []
        for m in methods:
            c = by.get((t, L, m))
            row.append('%.1f / %.1f' % (c['score'], c['fidelity']) if c else '-')
        print(f'| {t} | {L.upper()} | ' + ' | '.join(row) + ' |')
print()
print('| prompt | ' + ' | '.join(f'{m} GPU KV B/token (of dense)' for m in methods) + ' | ' + ' | '.join(f'{m} decode tok/s' for m in methods) + ' |')
print('| --- | ' + ' | '.join(['---'] * 2 * len(methods)) + ' |')
for L in ['2k', '4k', '8k']:
    g, d = [], []
    for m in methods:
        cs = [c for c in cells if c['length'] == L and mname(c) == m]
        gb = sum(c['sums']['gpu_bytes'] for c in cs) / sum(c['sums']['kv_capacity'] for c in cs)
        fr = sum(c['sums']['paired_gpu_bytes'] for c in cs) / sum(c['sums']['paired_dense_gpu_bytes'] for c in cs)
        dt = sum(c['sums']['decode_tokens'] for c in cs) / sum(c['sums']['decode_seconds'] for c in cs)
        g.append(f'{gb:,.0f} ({fr:.3f})'); d.append(f'{dt:.0f}')
    print(f'| {L.upper()} | ' + ' | '.join(g) + ' | ' + ' | '.join(d) + ' |')
