"""Paired tests of veil.train.stats against scikit-learn, scipy and closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import norm, wilcoxon
from sklearn.metrics import f1_score

from veil.train.stats import (
    MIN_SEEDS_FOR_WILCOXON,
    bootstrap_p_value,
    f1_indicator,
    paired_bootstrap,
    wilcoxon_over_seeds,
)


def _random_multilabel(rng: np.random.Generator, n: int, labels: int) -> np.ndarray:
    y = (rng.random((n, labels)) < 0.3).astype(int)
    y[:, -1] = 0  # a label without support
    return y


def _noisy(rng: np.random.Generator, y: np.ndarray, flip: float) -> np.ndarray:
    return np.where(rng.random(y.shape) < flip, 1 - y, y)


@pytest.mark.parametrize("average", ["weighted", "micro", "macro"])
def test_f1_indicator_equals_sklearn(average: str) -> None:
    rng = np.random.default_rng(1)
    y = _random_multilabel(rng, 80, 6)
    p = _noisy(rng, y, 0.2)
    expected = f1_score(y, p, average=average, zero_division=0)
    assert f1_indicator(y, p, average) == pytest.approx(expected, abs=1e-12)  # type: ignore[arg-type]


def test_identical_predictions_give_zero_difference_and_p_half() -> None:
    rng = np.random.default_rng(2)
    y = _random_multilabel(rng, 60, 4)
    p = _noisy(rng, y, 0.25)
    res = paired_bootstrap(y, p, p.copy(), rng=np.random.default_rng(0), n_boot=500)
    assert res.observed_diff == 0.0
    assert res.ci_low <= 0.0 <= res.ci_high
    assert res.p_value == pytest.approx((0.5 * 500 + 1) / 501)
    assert abs(res.p_value - 0.5) < 0.01


def test_model_worse_on_every_example_has_tiny_p() -> None:
    rng = np.random.default_rng(3)
    y = np.eye(3, dtype=int)[rng.integers(0, 3, size=50)]  # single-label, one-hot
    wrong = np.roll(y, 1, axis=1)  # A wrong everywhere, B right everywhere
    res = paired_bootstrap(y, wrong, y, rng=np.random.default_rng(0), n_boot=1000)
    assert res.observed_diff == pytest.approx(-1.0)
    assert res.p_value < 0.01
    assert res.ci_high < 0
    flipped = paired_bootstrap(y, y, wrong, rng=np.random.default_rng(0), n_boot=1000,
                               alternative="greater")
    assert flipped.p_value < 0.01


def test_matches_independent_sklearn_bootstrap_with_seed_pooling() -> None:
    rng = np.random.default_rng(4)
    n, n_boot = 40, 200
    y = _random_multilabel(rng, n, 5)
    pa = np.stack([_noisy(rng, y, 0.3) for _ in range(2)])
    pb = np.stack([_noisy(rng, y, 0.15) for _ in range(3)])
    res = paired_bootstrap(y, pa, pb, rng=np.random.default_rng(7), n_boot=n_boot)

    draw = np.random.default_rng(7)
    diffs = []
    for _ in range(n_boot):
        idx = draw.integers(0, n, size=n)
        fa = np.mean([f1_score(y[idx], p[idx], average="weighted", zero_division=0) for p in pa])
        fb = np.mean([f1_score(y[idx], p[idx], average="weighted", zero_division=0) for p in pb])
        diffs.append(fa - fb)
    d = np.array(diffs)
    obs = (np.mean([f1_score(y, p, average="weighted", zero_division=0) for p in pa])
           - np.mean([f1_score(y, p, average="weighted", zero_division=0) for p in pb]))
    assert res.observed_diff == pytest.approx(obs, abs=1e-12)
    assert res.ci_low == pytest.approx(np.quantile(d, 0.025), abs=1e-12)
    assert res.ci_high == pytest.approx(np.quantile(d, 0.975), abs=1e-12)
    k = np.sum(d > 0) + 0.5 * np.sum(d == 0)
    assert res.p_value == pytest.approx((k + 1) / (n_boot + 1), abs=1e-12)
    assert (res.seeds_a, res.seeds_b, res.n_examples) == (2, 3, n)


def test_accuracy_difference_matches_normal_closed_form() -> None:
    # Single-label micro F1 is accuracy, so the difference is a mean of per-example
    # differences d_i; its bootstrap distribution is ~ N(mean d, var(d) / n).
    rng = np.random.default_rng(5)
    n, classes = 400, 4
    truth = rng.integers(0, classes, size=n)
    y = np.eye(classes, dtype=int)[truth]
    correct_a = rng.random(n) < 0.78
    correct_b = rng.random(n) < 0.83
    pa = np.eye(classes, dtype=int)[np.where(correct_a, truth, (truth + 1) % classes)]
    pb = np.eye(classes, dtype=int)[np.where(correct_b, truth, (truth + 2) % classes)]
    d = correct_a.astype(float) - correct_b.astype(float)
    sd = np.sqrt(np.mean((d - d.mean()) ** 2) / n)
    res = paired_bootstrap(y, pa, pb, rng=np.random.default_rng(11), n_boot=4000,
                           average="micro")
    assert res.observed_diff == pytest.approx(d.mean(), abs=1e-12)
    width = res.ci_high - res.ci_low
    assert width == pytest.approx(2 * norm.ppf(0.975) * sd, rel=0.08)
    assert res.p_value == pytest.approx(norm.cdf(d.mean() / sd), abs=0.02)


def test_p_value_rules() -> None:
    d = np.array([-0.2, -0.1, 0.0, 0.1])
    assert bootstrap_p_value(d, "less") == pytest.approx((1 + 0.5 + 1) / 5)
    assert bootstrap_p_value(d, "greater") == pytest.approx((2 + 0.5 + 1) / 5)
    assert bootstrap_p_value(d, "two-sided") == pytest.approx(min(1.0, 2 * 2.5 / 5))


def test_bad_shapes_and_settings() -> None:
    y = np.zeros((10, 3), dtype=int)
    with pytest.raises(ValueError):
        paired_bootstrap(y, np.zeros((10, 2)), y, rng=np.random.default_rng(0))
    with pytest.raises(ValueError):
        paired_bootstrap(y, y, y, rng=np.random.default_rng(0), n_boot=10)
    with pytest.raises(ValueError):
        paired_bootstrap(y, y, y, rng=np.random.default_rng(0), confidence=1.0)


def _exact_signed_rank_p_less(diffs: np.ndarray) -> float:
    """P(W+ <= observed W+) under H0 by enumerating all 2^n sign patterns (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(diffs))) + 1
    observed = ranks[diffs > 0].sum()
    hits = sum(1 for signs in itertools.product((0, 1), repeat=len(diffs))
               if np.dot(signs, ranks) <= observed)
    return hits / 2 ** len(diffs)


def test_wilcoxon_equals_scipy_and_exact_enumeration() -> None:
    a = np.array([0.80, 0.83, 0.79, 0.85, 0.81, 0.84])
    b = np.array([0.86, 0.82, 0.88, 0.90, 0.845, 0.80])
    res = wilcoxon_over_seeds(a, b, alternative="less")
    ref = wilcoxon(a, b, alternative="less")
    assert res.p_value == pytest.approx(float(ref.pvalue), abs=1e-12)
    assert res.statistic == pytest.approx(float(ref.statistic))
    assert res.p_value == pytest.approx(_exact_signed_rank_p_less(a - b), abs=1e-12)
    assert res.n_pairs == 6 and res.mean_diff == pytest.approx(float(np.mean(a - b)))
    two = wilcoxon_over_seeds(a, b, alternative="two-sided")
    assert two.p_value == pytest.approx(float(wilcoxon(a, b).pvalue), abs=1e-12)


def test_wilcoxon_needs_enough_seeds_and_handles_all_ties() -> None:
    with pytest.raises(ValueError):
        wilcoxon_over_seeds(np.ones(MIN_SEEDS_FOR_WILCOXON - 1),
                            np.zeros(MIN_SEEDS_FOR_WILCOXON - 1))
    same = np.linspace(0.5, 0.9, 5)
    assert wilcoxon_over_seeds(same, same).p_value == 1.0
