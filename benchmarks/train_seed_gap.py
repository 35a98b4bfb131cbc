"""How far DP runs fall behind non-private ones over training seeds, with a 95 % CI.

Reads the results.json of several `results_train_iu_xray.py --seed S --out DIR` folders,
one group per side, and prints each seed's test weighted F1, the means ± sd, the gap
(non-private mean − DP mean) with Welch's 95 % confidence interval (scipy), and the
one-sided Welch p-value against "the gap is at least GOAL" (small p: the gap is below GOAL).

    python benchmarks/train_seed_gap.py --nonprivate R/np-seed{0..4} --dp R/dp-seed{0..4}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats


def weighted_f1(folder: Path, spec: str | None) -> float:
    """The test weighted F1 of the one run in FOLDER/results.json (or of the `spec` row)."""
    rows = json.loads((folder / "results.json").read_text())
    if spec is None:
        if len(rows) != 1:
            raise SystemExit(f"{folder}/results.json holds {len(rows)} rows: "
                             "pick one with --nonprivate-spec / --dp-spec")
        (row,) = rows.values()
    else:
        row = rows[spec]
    return float(row["weighted_f1"]["value"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nonprivate", type=Path, nargs="+", required=True)
    parser.add_argument("--dp", type=Path, nargs="+", required=True)
    parser.add_argument("--nonprivate-spec", default=None, help="e.g. lora:inf")
    parser.add_argument("--dp-spec", default=None, help="e.g. lora:10")
    parser.add_argument("--goal", type=float, default=0.03)
    args = parser.parse_args()
    a = np.array([weighted_f1(f, args.nonprivate_spec) for f in args.nonprivate])
    b = np.array([weighted_f1(f, args.dp_spec) for f in args.dp])
    if min(len(a), len(b)) < 2:
        raise SystemExit("need at least two seeds per side")
    for name, values in (("non-private", a), ("DP", b)):
        print(f"{name}: {' / '.join(f'{v:.3f}' for v in values)} = "
              f"{values.mean():.3f} ± {values.std(ddof=1):.3f} ({len(values)} seeds)")
    gap = a.mean() - b.mean()
    welch = stats.ttest_ind(a, b, equal_var=False)
    low, high = welch.confidence_interval(0.95)
    below = stats.ttest_ind(a - args.goal, b, equal_var=False, alternative="less")
    print(f"gap {gap:.3f}, Welch 95 % CI [{low:.3f}, {high:.3f}] (df {welch.df:.1f}); "
          f"one-sided p(gap ≥ {args.goal:g}) = {below.pvalue:.2f}")


if __name__ == "__main__":
    main()
