"""Design check for `--adapter evidence` on training records only: the summary columns per label.

Cross-validation on the IU X-ray *training and validation* records only (the 20 % test
split of results_train_iu_xray.py is never read): the pooled records are cut into K
seeded folds; in round k, fold k is scored, fold k+1 tunes the per-label thresholds and
the remaining K − 2 folds train, with the evidence recipe of results_train_iu_xray.py
(DP-SGD through veil's own loop, `--head-init labels`). Two block layouts over the same
features (veil.train.evidence):

* ``related`` (veil's): a label sees its own summary pair (evidence for / against), and
  every label's when its descriptions negate a term ("normal");
* ``all`` (veil-label-evidence/1): every label sees every label's summary pair.

Prints mean weighted F1 per (layout, ε) and the paired difference over the same rounds
and seeds, with a 95 % t interval; writes design_cv.json in --out.

Usage:
    python benchmarks/evidence_design_cv.py [--eps 1,10,inf] [--folds 8] [--seeds 2]
        [--out /tmp/veil-evidence-cv]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from results_train_iu_xray import DATA, _config  # type: ignore[import-not-found]

LAYOUTS = ("related", "all")


def layout_blocks(evidence: Any, layout: str) -> tuple[list[list[int]], list[list[float]]]:
    """Per-label columns and prior for a layout ("all": the whole summary for every label)."""
    blocks, prior = evidence.blocks(), evidence.prior()
    if layout == "related":
        return blocks, prior
    v, n_lab = evidence.n_terms, len(evidence.labels)
    summary = set(range(2 * v, 2 * v + 2 * n_lab))
    out_b, out_p = [], []
    for block, weights in zip(blocks, prior, strict=True):
        w = dict(zip(block, weights, strict=True))
        kept = [c for c in block if c not in summary]
        terms = [c for c in kept if c < 2 * v]
        cols = terms + sorted(summary) + [c for c in kept if c >= 2 * v]
        out_b.append(cols)
        out_p.append([w.get(c, 0.0) for c in cols])
    return out_b, out_p


def one_round(x: np.ndarray, y: np.ndarray, names: list[str], folds: list[np.ndarray],
              k: int, blocks: list[list[int]], prior: list[list[float]], config: Any) -> float:
    """Weighted F1 on fold k, thresholds from fold k+1, trained on the others."""
    import torch
    from sklearn.metrics import f1_score

    from veil.train import evaluate as ev
    from veil.train.evidence_model import EvidenceClassifier
    from veil.train.evidence_pipeline import probabilities
    from veil.train.loop import fit

    scored, tuning = folds[k], folds[(k + 1) % len(folds)]
    train_idx = np.concatenate([f for i, f in enumerate(folds)
                                if i not in (k, (k + 1) % len(folds))])
    model = EvidenceClassifier(blocks, x.shape[1], True, prior)
    examples = [({"features": torch.from_numpy(x[i])}, torch.from_numpy(y[i]))
                for i in train_idx]
    fit(model, examples, config)
    rule = ev.tune_thresholds(probabilities(model, x[tuning], True), y[tuning], names,
                              "per-label")
    pred = ev.decide(probabilities(model, x[scored], True), rule, names)
    return float(f1_score(y[scored], pred, average="weighted", zero_division=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eps", default="1,10,inf")
    parser.add_argument("--folds", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/veil-evidence-cv"))
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"dataset not found: {DATA}")
    import dataclasses

    import torch

    from veil.progress import set_quiet
    from veil.train.data import prepare_data
    from veil.train.evidence_pipeline import build, cached_features
    from veil.train.teacher import load_descriptions

    # results_train_iu_xray.py's defaults (the LoRA and window options do not reach evidence)
    ns = argparse.Namespace(data=DATA, model="minilm", lr=None, epochs=None, batch_size=None,
                            lr_schedule=None, ema_decay=None, lora_r=8,
                            lora_targets="query,value", lora_layers=2, lora_freeze_a=False,
                            max_length=128, clipping="flat", head_init=None,
                            head_init_scale=30.0, label_descriptions=None, seed=0, quiet=True)
    set_quiet(True)
    args.out.mkdir(parents=True, exist_ok=True)
    base = _config("evidence", math.inf, ns, args.out)
    data = prepare_data(base)
    space = data.space
    if data.val is None:
        raise SystemExit("the recipe carves no validation split")
    texts = list(data.train.texts) + list(data.val.texts)
    y = np.vstack([space.onehot(data.train.y), space.onehot(data.val.y)]).astype(np.float32)
    folds = np.array_split(np.random.default_rng(12345).permutation(len(texts)), args.folds)
    n_train = len(texts) - len(folds[0]) - len(folds[1])
    if n_train <= int(_config("evidence", 1.0, ns, args.out).batch_size):
        raise SystemExit(f"--folds {args.folds} leaves {n_train} training records, fewer than "
                         "the DP recipe's expected batch: use more folds")
    evidence, _ = build(space.names, load_descriptions(base.label_descriptions, space.names),
                        base.model, True)
    start = time.perf_counter()
    x, _ = cached_features(evidence, base.model, texts)
    print(f"features for {len(texts)} records in {time.perf_counter() - start:.0f} s")
    rows: dict[str, list[float]] = {}
    for eps_text in args.eps.split(","):
        eps = math.inf if eps_text == "inf" else float(eps_text)
        recipe = _config("evidence", eps, ns, args.out)
        for layout in LAYOUTS:
            blocks, prior = layout_blocks(evidence, layout)
            scores = []
            for k in range(args.folds):
                for s in range(args.seeds):
                    torch.manual_seed(s)
                    config = dataclasses.replace(recipe, seed=1000 * s + k, quiet=True,
                                                 ledger=None)
                    scores.append(one_round(x, y, list(space.names), folds, k, blocks, prior,
                                            config))
            rows[f"{layout}:{eps_text}"] = scores
            n_weights = sum(len(b) for b in blocks)
            per_fold = np.reshape(scores, (args.folds, args.seeds)).mean(1)
            print(f"{layout:8s} ε = {eps_text:4s} {n_weights:4d} weights (+ biases)  weighted "
                  f"F1 {per_fold.mean():.4f} ± {per_fold.std(ddof=1) / math.sqrt(args.folds):.4f}"
                  " (mean ± se over folds)", flush=True)
    from scipy import stats

    summary = {}
    for eps_text in args.eps.split(","):
        a, b = np.array(rows[f"related:{eps_text}"]), np.array(rows[f"all:{eps_text}"])
        # the seeds of one fold share its records: the fold means are the independent units
        d = (a - b).reshape(args.folds, args.seeds).mean(1)
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        summary[eps_text] = {"related": float(a.mean()), "all": float(b.mean()),
                             "difference": float(d.mean()),
                             "ci95": [float(d.mean() - half), float(d.mean() + half)]}
        print(f"ε = {eps_text}: related − all = {d.mean():+.4f} "
              f"[{d.mean() - half:+.4f}, {d.mean() + half:+.4f}] (paired t over the "
              f"{len(d)} fold means)")
    (args.out / "design_cv.json").write_text(json.dumps(
        {"folds": args.folds, "seeds": args.seeds, "scores": rows, "summary": summary},
        indent=2))


if __name__ == "__main__":
    main()
