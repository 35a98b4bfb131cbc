"""Classification metrics with 95% bootstrap confidence intervals over test examples.

Weighted, micro and macro F1, per-label precision / recall / F1 / support and
AUROC, for multi-label (0/1 matrices) and multi-class data (one-hot rows; micro
F1 is then the accuracy). Definitions follow scikit-learn (zero division gives
0). Confidence intervals: percentile bootstrap, resampling test examples with
replacement (``n_boot`` resamples from an explicit generator); every resample
is evaluated at once through multiplicity weights, so 1,000 resamples cost a
few matrix products. Metrics are computed on held-out records: they are not
covered by the training ε.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den, dtype=float), where=den > 0)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(b, dtype=float), where=b > 0)


def _counts(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted TP, FP, FN per label: ``w`` (B, n) multiplicities, ``y``/``p`` (n, L) 0/1."""
    return w @ (y * p), w @ ((1 - y) * p), w @ (y * (1 - p))


def weighted_auroc(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of one label under each row of multiplicity weights ``w`` (B, n); NaN if undefined.

    The Mann-Whitney statistic with ties counted one half, as
    ``sklearn.metrics.roc_auc_score(..., sample_weight=w_b)``.
    """
    order = np.argsort(scores, kind="mergesort")
    s, yy, ww = scores[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(ww * yy, starts, axis=1)
    neg = np.add.reduceat(ww * (1 - yy), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(1)
    den = pos.sum(1) * neg.sum(1)
    return np.divide(num, den, out=np.full(len(w), np.nan), where=den > 0)


def _summary(point: float | None, boot: np.ndarray, level: float) -> dict[str, Any]:
    if point is None or (isinstance(point, float) and math.isnan(point)):
        return {"value": None, "ci95": None}
    finite = boot[np.isfinite(boot)]
    if len(finite) == 0:
        return {"value": float(point), "ci95": None}
    lo, hi = np.percentile(finite, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {"value": float(point), "ci95": [float(lo), float(hi)]}


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    rng: np.random.Generator,
    *,
    multi_label: bool = True,
    n_boot: int = 1000,
    level: float = 0.95,
) -> dict[str, Any]:
    """All metrics, each ``{"value": x, "ci95": [lo, hi]}``.

    Args:
        y_true: (n, L) 0/1 targets (one-hot rows for multi-class).
        y_pred: (n, L) 0/1 decisions.
        scores: (n, L) probabilities (for AUROC).
        labels: the L label names.
        rng: source of the bootstrap resamples.
        multi_label: labels independent (else one-hot classes; micro F1 = accuracy).
        n_boot: number of bootstrap resamples.
        level: confidence level of the intervals.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    n, n_labels = y.shape
    w = np.vstack([np.ones((1, n)), rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)])
    tp, fp, fn = _counts(w, y, p)
    support = tp + fn
    f1 = _f1(tp, fp, fn)
    prec, rec = _ratio(tp, tp + fp), _ratio(tp, support)
    total = support.sum(1)
    weighted = _ratio((f1 * support).sum(1), total)
    micro = _f1(tp.sum(1), fp.sum(1), fn.sum(1))
    macro = f1.mean(1)
    auc = np.stack([weighted_auroc(scores[:, j], y[:, j], w) for j in range(n_labels)], 1)
    with np.errstate(all="ignore"):
        defined = np.isfinite(auc)
        auc_macro = np.where(defined.any(1), np.nansum(auc, 1) / np.maximum(defined.sum(1), 1),
                             np.nan)
    out: dict[str, Any] = {
        "n_examples": int(n),
        "weighted_f1": _summary(weighted[0], weighted[1:], level),
        "micro_f1": _summary(micro[0], micro[1:], level),
        "macro_f1": _summary(macro[0], macro[1:], level),
        "auroc_macro": _summary(float(auc_macro[0]), auc_macro[1:], level),
        "per_label": {},
        "bootstrap": {"resamples": n_boot, "level": level, "method": "percentile",
                      "unit": "test example (record)"},
    }
    if not multi_label:
        out["accuracy"] = out["micro_f1"]
    for j, name in enumerate(labels):
        out["per_label"][name] = {
            "precision": _summary(prec[0, j], prec[1:, j], level),
            "recall": _summary(rec[0, j], rec[1:, j], level),
            "f1": _summary(f1[0, j], f1[1:, j], level),
            "support": round(float(support[0, j])),
            "auroc": _summary(float(auc[0, j]), auc[1:, j], level),
        }
    return out


def headline(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The point values of the summary metrics (for printing and tables)."""
    keys = ("weighted_f1", "micro_f1", "macro_f1", "auroc_macro")
    return {k: metrics[k]["value"] for k in keys}
