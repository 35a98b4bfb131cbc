"""Metrics (vs scikit-learn), bootstrap intervals, and threshold tuning on the validation split."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from veil.train.evaluate import GRID, decide, tune_thresholds
from veil.train.metrics import classification_metrics, weighted_auroc


def _data(seed: int, n: int = 200, labels: int = 4) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < [0.5, 0.2, 0.05, 0.3][:labels]).astype(float)
    scores = np.clip(0.6 * y + rng.normal(0.2, 0.25, y.shape), 0, 1).round(2)  # ties too
    pred = (scores >= 0.5).astype(float)
    return y, pred, scores


def test_point_estimates_match_scikit_learn() -> None:
    y, pred, scores = _data(0)
    names = ["a", "b", "c", "d"]
    m = classification_metrics(y, pred, scores, names, np.random.default_rng(1), n_boot=50)
    assert m["weighted_f1"]["value"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["micro_f1"]["value"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert m["macro_f1"]["value"] == pytest.approx(f1_score(y, pred, average="macro"))
    per_p = precision_score(y, pred, average=None, zero_division=0)
    per_r = recall_score(y, pred, average=None, zero_division=0)
    aucs = [roc_auc_score(y[:, j], scores[:, j]) for j in range(4)]
    for j, name in enumerate(names):
        row = m["per_label"][name]
        assert row["precision"]["value"] == pytest.approx(per_p[j])
        assert row["recall"]["value"] == pytest.approx(per_r[j])
        assert row["support"] == int(y[:, j].sum())
        assert row["auroc"]["value"] == pytest.approx(aucs[j])
    assert m["auroc_macro"]["value"] == pytest.approx(np.mean(aucs))


def test_multiclass_micro_f1_is_accuracy() -> None:
    rng = np.random.default_rng(2)
    true = rng.integers(0, 3, 120)
    guess = np.where(rng.random(120) < 0.7, true, rng.integers(0, 3, 120))
    y, p = np.eye(3)[true], np.eye(3)[guess]
    m = classification_metrics(y, p, p, ["x", "y", "z"], np.random.default_rng(0),
                               multi_label=False, n_boot=20)
    assert m["accuracy"]["value"] == pytest.approx(np.mean(true == guess))
    assert m["weighted_f1"]["value"] == pytest.approx(f1_score(true, guess, average="weighted"))


def test_weighted_auroc_equals_sklearn_with_sample_weights() -> None:
    y, _, scores = _data(3, n=80, labels=1)
    w = np.random.default_rng(4).integers(0, 4, (5, 80)).astype(float)
    got = weighted_auroc(scores[:, 0], y[:, 0], w)
    for b in range(5):
        assert got[b] == pytest.approx(roc_auc_score(y[:, 0], scores[:, 0], sample_weight=w[b]))
    assert np.isnan(weighted_auroc(scores[:, 0], np.zeros(80), w[:1]))[0]


def test_bootstrap_interval_covers_the_truth_at_about_95_percent() -> None:
    """Binomial case: recall of a classifier that finds each positive with probability 0.8."""
    hits = 0
    trials = 60
    for t in range(trials):
        rng = np.random.default_rng(100 + t)
        y = np.ones((300, 1))
        p = (rng.random((300, 1)) < 0.8).astype(float)
        m = classification_metrics(y, p, p, ["a"], rng, n_boot=300)
        lo, hi = m["per_label"]["a"]["recall"]["ci95"]
        hits += lo <= 0.8 <= hi
    assert hits >= 52  # 95% coverage: at least 52 of 60 (P[X <= 51] < 0.6% for Bin(60, .95))


def test_bootstrap_is_seeded() -> None:
    y, pred, scores = _data(5)
    a = classification_metrics(y, pred, scores, list("abcd"), np.random.default_rng(7), n_boot=40)
    b = classification_metrics(y, pred, scores, list("abcd"), np.random.default_rng(7), n_boot=40)
    assert a == b


def test_thresholds_maximise_f1_on_validation() -> None:
    y, _, scores = _data(6, n=300)
    names = list("abcd")
    rule = tune_thresholds(scores, y, names, "per-label")
    assert rule["tuned_on"] == "validation split"
    for j, name in enumerate(names):
        f1s = [f1_score(y[:, j], scores[:, j] >= t, zero_division=0) for t in GRID]
        t = rule["thresholds"][name]
        if y[:, j].sum() >= 5:
            assert f1_score(y[:, j], scores[:, j] >= t) == pytest.approx(max(f1s))
        else:
            assert t == rule["global"]
    glob = tune_thresholds(scores, y, names, "global")
    best = max(f1_score(y, scores >= t, average="weighted", zero_division=0) for t in GRID)
    got = f1_score(y, decide(scores, glob, names), average="weighted")
    assert got == pytest.approx(best)
    fixed = tune_thresholds(scores, y, names, "fixed")
    assert set(fixed["thresholds"].values()) == {0.5}


def test_argmax_rule_for_multiclass() -> None:
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    rule = tune_thresholds(probs, np.eye(3)[[1, 0]], "xyz", "per-label", multi_label=False)
    assert rule["rule"] == "argmax"
    assert decide(probs, rule, "xyz").tolist() == [[0, 1, 0], [1, 0, 0]]
