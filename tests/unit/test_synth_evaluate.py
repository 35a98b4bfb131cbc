"""Synthetic-data evaluation measures against closed forms and obvious cases."""

from __future__ import annotations

import numpy as np
import pytest

from veil.synth.evaluate import downstream, frechet_distance, knn_precision_recall


def test_frechet_matches_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(0)
    n, d = 40000, 3
    sx, sy = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    mx, my = np.zeros(d), np.array([1.0, -2.0, 0.0])
    x = mx + rng.normal(size=(n, d)) * sx
    y = my + rng.normal(size=(n, d)) * sy
    # independent axes: ||mx - my||^2 + sum (sx - sy)^2
    expected = float(((mx - my) ** 2).sum() + ((sx - sy) ** 2).sum())
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.03)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_knn_precision_recall_extremes_and_partial_coverage() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(200, 2))
    assert knn_precision_recall(real, real.copy(), k=3) == (1.0, 1.0)
    far = rng.normal(size=(200, 2)) + 100.0
    assert knn_precision_recall(real, far, k=3) == (0.0, 0.0)
    half = real[real[:, 0] > 0]  # covers half of the real data, all of it realistic
    precision, recall = knn_precision_recall(real, half, k=3)
    assert precision == 1.0 and 0.3 < recall < 0.8


def test_downstream_learns_separable_codes_and_handles_one_class() -> None:
    rng = np.random.default_rng(2)
    centers = {"a": np.array([5.0, 0.0]), "b": np.array([-5.0, 0.0])}
    y = ["a", "b"] * 50
    x = np.stack([centers[c] + rng.normal(size=2) for c in y])
    acc, f1 = downstream(x, y, x[::-1], y[::-1])
    assert acc == 1.0 and f1 == 1.0
    acc1, _ = downstream(x[:1], ["a"], x, y)
    assert acc1 == 0.5
