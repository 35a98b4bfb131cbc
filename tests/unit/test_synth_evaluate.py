"""Synthetic-data evaluation measures against closed forms and obvious cases."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from veil.synth import evaluate
from veil.synth.evaluate import (
    downstream,
    frechet_distance,
    knn_precision_recall,
    mauve_buckets,
    mauve_score,
)


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


def _gaussian_pair(seed: int, n: int = 400, d: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, d))


def test_mauve_is_one_on_identical_sets_and_high_on_one_distribution() -> None:
    real, synth = _gaussian_pair(3)
    # same points: identical histograms, the divergence frontier collapses to (1, 1)
    assert mauve_score(real, real.copy(), seed=0) == pytest.approx(1.0, abs=1e-9)
    assert mauve_score(real, synth, seed=0) > 0.9


def test_mauve_is_low_on_separated_sets_and_falls_as_one_side_moves_away() -> None:
    real, synth = _gaussian_pair(4)
    shift = np.zeros(real.shape[1])
    shift[0] = 1.0
    assert mauve_score(real, synth + 20.0 * shift, seed=0) < 0.1
    scores = [mauve_score(real, synth + s * shift, seed=0) for s in (1.5, 3.0, 6.0)]
    assert scores[0] > scores[1] > scores[2]
    assert scores[0] > 2 * scores[1] and scores[1] > 2 * scores[2]


def test_mauve_bucket_rule_and_no_faiss_size_warning(capfd: pytest.CaptureFixture[str]) -> None:
    assert mauve_buckets(400, 1000) == 40
    assert mauve_buckets(64, 120) == 6
    assert mauve_buckets(3, 500) == 2
    real, synth = _gaussian_pair(5, n=60, d=8)
    assert 0.0 <= mauve_score(real, synth, seed=0) <= 1.0
    assert "WARNING clustering" not in capfd.readouterr().err
    with pytest.raises(ValueError, match="two points"):
        mauve_score(real[:1], synth, seed=0)


def test_evaluate_texts_reports_mauve_or_a_note_when_the_package_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    emb = {f"r{i}": v for i, v in enumerate(rng.normal(size=(60, 8)))}
    emb |= {f"s{i}": v + 10.0 for i, v in enumerate(rng.normal(size=(40, 8)))}
    monkeypatch.setattr("veil.models.load_sentence_encoder", lambda name: None)
    monkeypatch.setattr("veil.synth.voting.embed",
                        lambda enc, texts, bs: np.stack([emb[t] for t in texts]))
    real = [f"r{i}" for i in range(60)]
    synth = [f"s{i}" for i in range(40)]
    labels_r, labels_s = ["a", "b"] * 30, ["a", "b"] * 20
    result = evaluate.evaluate_texts(synth, labels_s, real, labels_r, seed=0)
    assert result.mauve is not None and result.mauve < 0.1
    assert result.mauve_buckets == 4 and result.mauve_note is None
    monkeypatch.setitem(sys.modules, "mauve", None)  # import mauve -> ImportError
    missing = evaluate.evaluate_texts(synth, labels_s, real, labels_r, seed=0)
    assert missing.mauve is None and missing.mauve_buckets is None
    assert missing.mauve_note == evaluate.MAUVE_MISSING
    assert missing.to_dict()["mauve"] is None and missing.frechet == result.frechet
