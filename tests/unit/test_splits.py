"""Site splits: IID matches the global label mix, Dirichlet skews it as Dir(alpha) says."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from veil.splits import split_sites, write_site_files

CLASSES = ("a", "b", "c", "d", "e", "f")


def _labels(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    probs = np.array([0.35, 0.25, 0.15, 0.1, 0.1, 0.05])
    return [CLASSES[i] for i in rng.choice(len(CLASSES), size=n, p=probs)]


def _table(labels: list[str], assignment: np.ndarray, n_sites: int) -> np.ndarray:
    table = np.zeros((n_sites, len(CLASSES)))
    for lab, site in zip(labels, assignment, strict=True):
        table[site, CLASSES.index(lab)] += 1
    return table


def _mean_tv(table: np.ndarray) -> float:
    glob = table.sum(0) / table.sum()
    site = table / table.sum(1, keepdims=True)
    return float(np.mean(0.5 * np.abs(site - glob).sum(1)))


def test_iid_sites_match_global_mix() -> None:
    labels = _labels(3000)
    a = split_sites(labels, 5, iid=True, rng=np.random.default_rng(1))
    sizes = np.bincount(a, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    table = _table(labels, a, 5)
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_dirichlet_small_alpha_is_far_more_skewed_than_iid() -> None:
    labels = _labels(3000)
    iid = _mean_tv(_table(labels, split_sites(labels, 5, iid=True,
                                              rng=np.random.default_rng(2)), 5))
    skew = _mean_tv(_table(labels, split_sites(labels, 5, alpha=0.1,
                                               rng=np.random.default_rng(2)), 5))
    assert skew >= 3 * iid
    table = _table(labels, split_sites(labels, 5, alpha=0.1, rng=np.random.default_rng(3)), 5)
    assert stats.chi2_contingency(table + 0.5).pvalue < 1e-6


def test_site_share_follows_dirichlet_marginal() -> None:
    """One class: site 0's share is Beta(alpha, (K-1) alpha), the Dir(alpha 1_K) marginal."""
    alpha, k, n = 0.5, 4, 2000
    labels = ["x"] * n
    rng = np.random.default_rng(7)
    shares = [np.mean(split_sites(labels, k, alpha=alpha, rng=rng) == 0) for _ in range(1000)]
    assert stats.kstest(shares, stats.beta(alpha, (k - 1) * alpha).cdf).pvalue > 0.001


def test_every_site_non_empty_even_when_extremely_skewed() -> None:
    labels = _labels(200)
    for seed in range(20):
        a = split_sites(labels, 10, alpha=0.01, rng=np.random.default_rng(seed))
        assert np.bincount(a, minlength=10).min() >= 1
        assert a.min() == 0 and a.max() == 9
    a = split_sites(labels[:7], 7, alpha=0.05, rng=np.random.default_rng(0))
    assert sorted(a.tolist()) == list(range(7))


def test_deterministic_per_seed() -> None:
    labels = _labels(500)
    for iid in (True, False):
        a1 = split_sites(labels, 4, iid=iid, alpha=0.3, rng=np.random.default_rng(5))
        a2 = split_sites(labels, 4, iid=iid, alpha=0.3, rng=np.random.default_rng(5))
        a3 = split_sites(labels, 4, iid=iid, alpha=0.3, rng=np.random.default_rng(6))
        assert a1.dtype == np.int64 and a1.shape == (500,)
        assert np.array_equal(a1, a2)
        assert not np.array_equal(a1, a3)


@pytest.mark.parametrize(
    ("n_sites", "alpha", "iid"),
    [(0, 0.5, False), (-1, 0.5, True), (11, 0.5, False), (11, None, True), (2.5, 0.5, False),
     (3, None, False), (3, 0.0, False), (3, -1.0, False), (3, float("nan"), False)],
)
def test_invalid_inputs(n_sites: int, alpha: float | None, iid: bool) -> None:
    with pytest.raises(ValueError):
        split_sites(_labels(10), n_sites, iid=iid, alpha=alpha, rng=np.random.default_rng(0))


def test_write_site_files(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "text": f"line {i}, with comma\nand newline", "labels": ["a", "b"]}
            for i in range(6)]
    assignment = np.array([0, 2, 0, 2, 2, 0])
    paths = write_site_files(rows, assignment, tmp_path / "csv", "csv", n_sites=4)
    assert [p.name for p in paths] == ["site_0.csv", "site_1.csv", "site_2.csv", "site_3.csv"]
    with paths[2].open(newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert [r["id"] for r in got] == ["r1", "r3", "r4"]
    assert got[0]["text"] == rows[1]["text"] and got[0]["labels"] == "a;b"
    with paths[1].open(newline="", encoding="utf-8") as fh:
        assert list(csv.DictReader(fh)) == []
    jpaths = write_site_files(rows, assignment, tmp_path / "j", "jsonl")
    assert len(jpaths) == 3
    lines = jpaths[0].read_text("utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [rows[0], rows[2], rows[5]]
    with pytest.raises(ValueError):
        write_site_files(rows, assignment[:5], tmp_path / "bad", "csv")
    with pytest.raises(ValueError):
        write_site_files(rows, assignment, tmp_path / "bad", "xlsx")
