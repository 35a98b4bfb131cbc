"""Paired significance tests for comparing classifiers on one fixed test set.

Two tests, both *paired* (the compared models are scored on the same test
examples or with the same seeds):

* :func:`paired_bootstrap` — the primary test. Test examples are resampled with
  replacement; on each resample the F1 of model A and of model B is computed on
  the *same* resampled examples and their difference kept. Several training
  seeds per model are pooled by **averaging each model's F1 over its seeds
  within every resample** (so the statistic is the difference of seed-averaged
  F1; seeds need not pair up for this test). The result carries the observed
  difference, a percentile confidence interval and a one-sided p-value.
* :func:`wilcoxon_over_seeds` — the secondary test, used when there are at
  least :data:`MIN_SEEDS_FOR_WILCOXON` seeds: Wilcoxon signed-rank over the
  per-seed scores, seed ``s`` of A paired with seed ``s`` of B
  (``scipy.stats.wilcoxon``).

These tests measure utility only; they spend no privacy budget (the test split
is evaluated non-privately, as in the paper). Predictions are label-indicator
matrices (``n_examples × n_labels``, 0/1); single-label data is passed one-hot.
F1 follows scikit-learn's definitions with ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Average = Literal["weighted", "micro", "macro"]
Alternative = Literal["less", "greater", "two-sided"]

MIN_SEEDS_FOR_WILCOXON = 5
_CHUNK = 256  # resamples scored per matrix product


@dataclass(frozen=True)
class PairedBootstrap:
    """Result of :func:`paired_bootstrap` (difference = metric(A) − metric(B)).

    Attributes:
        metric: e.g. ``"weighted_f1"``.
        observed_diff: the seed-averaged difference on the full test set.
        ci_low: lower end of the percentile confidence interval of the difference.
        ci_high: upper end.
        confidence: the interval's level (e.g. 0.95).
        p_value: one-sided (or two-sided) bootstrap p-value, see :func:`paired_bootstrap`.
        alternative: ``"less"`` (H1: A worse than B), ``"greater"`` or ``"two-sided"``.
        n_boot: number of resamples.
        n_examples: test examples resampled.
        seeds_a: seeds pooled for A.
        seeds_b: seeds pooled for B.
        pooling: how seeds were pooled (a sentence, for reports).
    """

    metric: str
    observed_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    alternative: str
    n_boot: int
    n_examples: int
    seeds_a: int
    seeds_b: int
    pooling: str = "F1 averaged over seeds within each resample"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class WilcoxonResult:
    """Result of :func:`wilcoxon_over_seeds` (scipy's statistic and p-value)."""

    statistic: float
    p_value: float
    alternative: str
    n_pairs: int
    mean_diff: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def _as_stack(pred: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """Predictions as a float (seeds, n, L) stack; a single (n, L) matrix is one seed."""
    arr = np.asarray(pred)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != shape or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape {shape} or (seeds, *{shape}), got {arr.shape}")
    return (arr != 0).astype(np.float64)


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                   average: Average) -> np.ndarray:
    """F1 from per-label counts with shape ``(..., L)``; ``zero_division=0`` as scikit-learn.

    Returns:
        An array with the leading shape of the counts (the label axis reduced).
    """
    if average == "micro":
        tp, fp, fn = tp.sum(-1), fp.sum(-1), fn.sum(-1)
        den = 2 * tp + fp + fn
        return np.divide(2 * tp, den, out=np.zeros_like(den, dtype=float), where=den > 0)
    den = 2 * tp + fp + fn
    per_label = np.divide(2 * tp, den, out=np.zeros_like(den, dtype=float), where=den > 0)
    if average == "macro":
        return np.asarray(per_label.mean(-1))
    support = tp + fn
    total = support.sum(-1)
    weighted = (per_label * support).sum(-1)
    return np.divide(weighted, total, out=np.zeros_like(total, dtype=float), where=total > 0)


def f1_indicator(y_true: np.ndarray, y_pred: np.ndarray, average: Average = "weighted") -> float:
    """F1 of 0/1 indicator matrices (equals ``sklearn.metrics.f1_score(..., zero_division=0)``)."""
    y = (np.asarray(y_true) != 0).astype(float)
    p = (np.asarray(y_pred) != 0).astype(float)
    return float(f1_from_counts((y * p).sum(0), ((1 - y) * p).sum(0), (y * (1 - p)).sum(0),
                                average))


def _resampled_f1(counts: np.ndarray, y: np.ndarray, stack: np.ndarray,
                  average: Average) -> np.ndarray:
    """Seed-averaged F1 for each resample (row of ``counts``, example multiplicities)."""
    out = np.zeros(counts.shape[0])
    pos = counts @ y  # weighted support per label, shape (C, L)
    for p in stack:
        tp = counts @ (y * p)
        fp = counts @ ((1 - y) * p)
        out += f1_from_counts(tp, fp, pos - tp, average)
    return out / stack.shape[0]


def paired_bootstrap(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    *,
    rng: np.random.Generator,
    n_boot: int = 2000,
    average: Average = "weighted",
    confidence: float = 0.95,
    alternative: Alternative = "less",
) -> PairedBootstrap:
    """Paired bootstrap over test examples of the F1 difference A − B.

    Resample ``b`` (for ``b = 0 .. n_boot-1``, in order) draws the example indices
    ``rng.integers(0, n, size=n)``. On each resample both models are scored on the
    same examples; with several seeds (a ``(seeds, n, L)`` stack) each model's F1
    is averaged over its seeds. The percentile interval is taken from the
    ``n_boot`` differences ``d*``. With ``k = #{d* > 0} + ½·#{d* = 0}`` the
    one-sided p-value for ``alternative="less"`` (H1: A is worse than B) is
    ``(k + 1) / (n_boot + 1)``; ``"greater"`` mirrors it; ``"two-sided"`` is twice
    the smaller one-sided value (capped at 1). Identical models give p ≈ 0.5.

    Args:
        y_true: gold labels, ``(n, L)`` 0/1 indicator matrix.
        pred_a: predictions of A, ``(n, L)`` or ``(seeds, n, L)``.
        pred_b: predictions of B (the reference, e.g. non-private LoRA), same forms.
        rng: the generator that draws the resamples.
        n_boot: number of resamples (≥ 100).
        average: F1 averaging: ``"weighted"`` (by support), ``"micro"`` or ``"macro"``.
        confidence: level of the interval, in (0, 1).
        alternative: the alternative hypothesis.

    Returns:
        A :class:`PairedBootstrap`. No privacy is spent: this is test-set evaluation.

    Raises:
        ValueError: on mismatched shapes or invalid settings.
    """
    y = np.asarray(y_true)
    if y.ndim != 2 or y.shape[0] < 1:
        raise ValueError(f"y_true must be an (n, L) indicator matrix, got shape {y.shape}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be >= 100, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if alternative not in ("less", "greater", "two-sided"):
        raise ValueError(f"unknown alternative {alternative!r}")
    yf = (y != 0).astype(np.float64)
    n = yf.shape[0]
    stack_a = _as_stack(pred_a, yf.shape, "pred_a")
    stack_b = _as_stack(pred_b, yf.shape, "pred_b")
    ones = np.ones((1, n))
    observed = float(_resampled_f1(ones, yf, stack_a, average)[0]
                     - _resampled_f1(ones, yf, stack_b, average)[0])
    diffs = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        size = min(_CHUNK, n_boot - start)
        counts = np.zeros((size, n))
        for row in range(size):
            counts[row] = np.bincount(rng.integers(0, n, size=n), minlength=n)
        diffs[start:start + size] = (_resampled_f1(counts, yf, stack_a, average)
                                     - _resampled_f1(counts, yf, stack_b, average))
    alpha = 1.0 - confidence
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return PairedBootstrap(
        metric=f"{average}_f1", observed_diff=observed, ci_low=float(low), ci_high=float(high),
        confidence=confidence, p_value=bootstrap_p_value(diffs, alternative),
        alternative=alternative, n_boot=n_boot, n_examples=n,
        seeds_a=stack_a.shape[0], seeds_b=stack_b.shape[0],
    )


def bootstrap_p_value(diffs: np.ndarray, alternative: Alternative = "less") -> float:
    """Bootstrap p-value from resampled differences A − B (ties count one half).

    ``"less"``: ``(#{d > 0} + ½·#{d = 0} + 1) / (B + 1)``; ``"greater"`` swaps the
    sign; ``"two-sided"``: twice the smaller of the two, capped at 1.
    """
    d = np.asarray(diffs, dtype=float)
    ties = 0.5 * float(np.sum(d == 0))
    p_less = (float(np.sum(d > 0)) + ties + 1.0) / (d.size + 1.0)
    p_greater = (float(np.sum(d < 0)) + ties + 1.0) / (d.size + 1.0)
    if alternative == "less":
        return p_less
    if alternative == "greater":
        return p_greater
    return min(1.0, 2.0 * min(p_less, p_greater))


def wilcoxon_over_seeds(scores_a: Sequence[float] | np.ndarray,
                        scores_b: Sequence[float] | np.ndarray,
                        alternative: Alternative = "less") -> WilcoxonResult:
    """Wilcoxon signed-rank test on per-seed scores, seed ``s`` of A paired with seed ``s`` of B.

    A thin, checked wrapper of ``scipy.stats.wilcoxon(scores_a, scores_b,
    alternative=...)`` (zero differences dropped, scipy's default; exact
    distribution for small samples). When every difference is zero there is no
    evidence either way and the p-value is 1.

    Args:
        scores_a: one score per seed for A (e.g. weighted F1 at some ε).
        scores_b: one score per seed for B, same seeds in the same order.
        alternative: ``"less"`` (H1: A's scores are lower), ``"greater"`` or ``"two-sided"``.

    Returns:
        A :class:`WilcoxonResult`.

    Raises:
        ValueError: on unequal lengths or fewer than :data:`MIN_SEEDS_FOR_WILCOXON` pairs.
    """
    from scipy.stats import wilcoxon

    a = np.asarray(scores_a, dtype=float).ravel()
    b = np.asarray(scores_b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"need one score per seed for both models, got {a.size} and {b.size}")
    if a.size < MIN_SEEDS_FOR_WILCOXON:
        raise ValueError(f"the Wilcoxon test needs >= {MIN_SEEDS_FOR_WILCOXON} seeds, "
                         f"got {a.size}")
    mean_diff = float(np.mean(a - b))
    if np.all(a == b):
        return WilcoxonResult(0.0, 1.0, alternative, int(a.size), mean_diff)
    res = wilcoxon(a, b, alternative=alternative)
    return WilcoxonResult(float(res.statistic), float(res.pvalue), alternative, int(a.size),
                          mean_diff)
