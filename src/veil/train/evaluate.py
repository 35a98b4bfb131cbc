"""Decision rules: thresholds tuned on the validation split, and applying them.

Multi-label models output one probability per label; a label is predicted when
its probability reaches its threshold. Thresholds are tuned on the
**validation split only** (never on test data): ``global`` picks one threshold
maximising the weighted F1, ``per-label`` picks each label's own F1-maximising
threshold (labels with fewer than :data:`MIN_POSITIVES` validation positives
keep the global one, so rare labels do not get a threshold fitted to one or two
examples), ``fixed`` keeps 0.5. Multi-class models predict the arg-max.

Privacy: the validation records are held out from DP training, and their use
here is *not* covered by the training ε (the thresholds are a non-private
statistic of those records; see the privacy statement).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

GRID = np.round(np.arange(0.02, 0.981, 0.01), 2)
MIN_POSITIVES = 5


def _f1_grid(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-label F1 and support at every grid threshold: shapes (G, L) and (L,)."""
    pred = probs[None, :, :] >= GRID[:, None, None]
    yb = y.astype(bool)[None]
    tp = (pred & yb).sum(1).astype(float)
    fp = (pred & ~yb).sum(1).astype(float)
    fn = (~pred & yb).sum(1).astype(float)
    den = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)
    return f1, y.sum(0).astype(float)


def _best(values: np.ndarray) -> float:
    """The middle of the arg-max plateau of ``values`` over :data:`GRID`."""
    top = np.flatnonzero(values >= values.max() - 1e-12)
    return float(GRID[top[len(top) // 2]])


def tune_thresholds(probs: np.ndarray, y: np.ndarray, labels: Sequence[str], rule: str,
                    multi_label: bool = True) -> dict[str, Any]:
    """The decision rule for ``thresholds.json``, tuned on validation ``probs`` / ``y``.

    Args:
        probs: (n, L) validation probabilities (None-free).
        y: (n, L) 0/1 validation targets.
        labels: label names.
        rule: "global", "per-label" or "fixed".
        multi_label: False gives the arg-max rule.
    """
    if not multi_label:
        return {"rule": "argmax", "thresholds": None, "tuned_on": None}
    names = list(labels)
    if rule == "fixed" or len(probs) == 0:
        return {"rule": "fixed", "thresholds": dict.fromkeys(names, 0.5), "tuned_on": None}
    f1, support = _f1_grid(probs, y)
    total = support.sum()
    weighted = (f1 * support).sum(1) / total if total > 0 else f1.mean(1)
    t_global = _best(weighted)
    thresholds = dict.fromkeys(names, t_global)
    if rule == "per-label":
        for j, name in enumerate(names):
            if support[j] >= MIN_POSITIVES:
                thresholds[name] = _best(f1[:, j])
    return {"rule": rule, "thresholds": thresholds, "global": t_global,
            "tuned_on": "validation split", "n_validation": len(probs),
            "min_positives_per_label": MIN_POSITIVES}


def decide(probs: np.ndarray, rule: dict[str, Any], labels: Sequence[str]) -> np.ndarray:
    """0/1 decisions (n, L) from probabilities and a ``thresholds.json`` rule."""
    if rule["rule"] == "argmax":
        out = np.zeros_like(probs)
        out[np.arange(len(probs)), probs.argmax(1)] = 1.0
        return out
    t = np.array([rule["thresholds"][name] for name in labels], dtype=float)
    return (probs >= t[None, :]).astype(float)


def validator(enc: Any, y: np.ndarray, multi_label: bool, pool: str
              ) -> Callable[[Any], dict[str, float]]:
    """Per-epoch validation figures of a transformer classifier on encoded windows ``enc``."""
    from veil.train.features import score

    return validator_for(lambda model: score(model, enc, multi_label, pool), y, multi_label)


def validator_for(probabilities: Callable[[Any], np.ndarray], y: np.ndarray, multi_label: bool
                  ) -> Callable[[Any], dict[str, float]]:
    """Per-epoch validation figures for the curve: mean loss and weighted F1 at 0.5 / arg-max.

    ``probabilities(model)`` scores the validation records. The loss is the mean BCE
    per label (multi-label) or the mean cross-entropy. These are statistics of the
    validation records (not covered by ε).
    """
    from veil.train.metrics import _f1

    def validate(model: Any) -> dict[str, float]:
        probs = probabilities(model)
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        if multi_label:
            yy = y.astype(float)
            loss = float(-(yy * np.log(p) + (1 - yy) * np.log(1 - p)).mean())
            pred = (probs >= 0.5).astype(float)
        else:
            yy = np.eye(probs.shape[1])[y]
            loss = float(-np.log(p[np.arange(len(y)), y]).mean())
            pred = decide(probs, {"rule": "argmax"}, [])
        f1 = _f1((yy * pred).sum(0), ((1 - yy) * pred).sum(0), (yy * (1 - pred)).sum(0))
        support = yy.sum(0)
        wf1 = float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
        return {"val_loss": loss, "val_weighted_f1": wf1}

    return validate
