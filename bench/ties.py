"""Ties on the demo's round-0 samples: the per-prompt quantile filter (alpha 0.5) under both tie rules, and the
global threshold, on the stored CoT-Binary verdicts (docs/results.md, section 5). Needs the demo's round 0 in
the warehouse (`selfimprove demo`); prints one markdown row per filter:

    .venv/bin/python bench/ties.py
"""

import numpy as np

from selfimprove import filters, metrics
from selfimprove.assets.scoring import method_scores
from selfimprove.definitions import warehouse_root
from selfimprove.resources.warehouse import Warehouse

wh = Warehouse(warehouse_root())
g, v = wh.read("generations", "demo", 0), wh.read("verifications", "demo", 0)
ids = g.column("prompt_id").to_pylist()
y = np.asarray(g.column("correct").to_pylist(), float)
s = method_scores(g, v, ["cot_binary"], "neutral")["cot_binary"]
print("distinct scores", sorted(set(np.round(s, 3))))
for name, w in [
    ("quantile(alpha=0.5, ties=keep)", filters.quantile_filter(ids, s, 0.5, "keep")),
    ("quantile(alpha=0.5, ties=drop)", filters.quantile_filter(ids, s, 0.5, "drop")),
    ("threshold(tau=0.5)", filters.threshold_filter(s, 0.5)),
]:
    r = metrics.gap_with_ci(ids, y, w, n_boot=1000, seed=0)
    zero = float(((w > 0) & (s < 0.5)).sum() / max(1, (w > 0).sum()))
    ci = f"[{r.gap_ci[0]:+.3f}, {r.gap_ci[1]:+.3f}]"
    print(f"| {name} | {r.kept_fraction:.3f} | {zero:.3f} | {r.j_fw:.3f} | {r.gap:+.3f} {ci} |")
