"""Empirical per-token privacy of the STAMP token mechanisms on a small vocabulary.

The released token is post-processing of the noisy vector, so for the polar mechanism
``P(out = j | a) ≤ exp(ε‖ē_a − ē_b‖) · P(out = j | b)`` for every j (STAMP Thm 3). We
estimate both sides from samples and test with Clopper–Pearson bounds (no significant
violation), and check that a mechanism run at κ = 3ε (a negative control) is caught.
The exponential baseline is compared with its closed form, P ∝ exp(−ε d / 2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, chi2_contingency, chisquare

from veil.privatize.baselines import exponential_release, laplace_release
from veil.privatize.polar import ReleaseOptions, polar_release
from veil.privatize.vocab import Vocabulary

V, D, N = 20, 8, 40_000
ALPHA = 1e-6  # per-cell Clopper–Pearson level (many cells are tested)


@pytest.fixture(scope="module")
def toy() -> Vocabulary:
    rng = np.random.default_rng(11)
    table = rng.standard_normal((V, D))
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return Vocabulary("toy", table.astype(np.float32), np.zeros(V, np.int8),
                      [f"t{i}" for i in range(V)])


def _counts(release, toy: Vocabulary, eps: float, inputs: list[int],  # type: ignore[no-untyped-def]
            seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for a in inputs:
        o = release(toy, np.full(N, a, np.int64), np.zeros(N, np.int8), np.full(N, eps), rng,
                    ReleaseOptions())
        out[a] = np.bincount(o, minlength=V)
    return out


def _max_excess(counts: dict[int, np.ndarray], bound) -> float:  # type: ignore[no-untyped-def]
    """max over (a, b, j) of log(lower CP bound p_a,j / upper CP bound p_b,j) − bound(a, b)."""
    worst = -math.inf
    for a, ca in counts.items():
        for b, cb in counts.items():
            if a == b:
                continue
            for j in range(V):
                if ca[j] == 0:
                    continue
                lo = beta.ppf(ALPHA, ca[j], N - ca[j] + 1)
                hi = beta.ppf(1 - ALPHA, cb[j] + 1, N - cb[j]) if cb[j] < N else 1.0
                worst = max(worst, math.log(lo / hi) - bound(a, b))
    return worst


def test_polar_empirical_metric_ldp(toy: Vocabulary) -> None:
    eps = 3.0
    unit = toy.unit.astype(np.float64)

    def bound(a: int, b: int) -> float:
        return eps * float(np.linalg.norm(unit[a] - unit[b]))

    inputs = [0, 1, 2, 3, 4]
    assert _max_excess(_counts(polar_release, toy, eps, inputs, 0), bound) <= 0.0
    # negative control: κ = 3ε must show a significant violation of the ε bound
    assert _max_excess(_counts(polar_release, toy, 3 * eps, inputs, 1), bound) > 0.5


def test_laplace_baseline_ldp(toy: Vocabulary) -> None:
    eps = 6.0
    table = toy.table.astype(np.float64)

    def bound(a: int, b: int) -> float:  # ε‖e_a − e_b‖₁/Δ₁ ≤ ε: the metric form of pure ε-LDP
        return eps * float(np.abs(table[a] - table[b]).sum()) / toy.l1_diameter

    inputs = [0, 1, 2]
    assert _max_excess(_counts(laplace_release, toy, eps, inputs, 2), bound) <= 0.0
    assert _max_excess(_counts(laplace_release, toy, 4 * eps, inputs, 3), bound) > 0.3


def test_exponential_baseline_matches_closed_form(toy: Vocabulary) -> None:
    eps = 4.0
    rng = np.random.default_rng(4)
    table = toy.table.astype(np.float64)
    for a in (0, 7):
        out = exponential_release(toy, np.full(N, a, np.int64), np.zeros(N, np.int8),
                                  np.full(N, eps), rng)
        d = np.linalg.norm(table - table[a], axis=1)
        p = np.exp(-eps * d / 2)
        p /= p.sum()
        assert chisquare(np.bincount(out, minlength=V), N * p).pvalue > 1e-4


def test_kappa_scale_code_is_eps_over_pi(toy: Vocabulary) -> None:
    n, eps = 20_000, 9.0
    rng = np.random.default_rng(5)
    ids = np.full(n, 3, np.int64)
    kinds = np.zeros(n, np.int8)
    code = polar_release(toy, ids, kinds, np.full(n, eps), rng, ReleaseOptions(kappa_scale="code"))
    paper = polar_release(toy, ids, kinds, np.full(n, eps / math.pi), rng)
    full = polar_release(toy, ids, kinds, np.full(n, eps), rng)
    table = np.stack([np.bincount(code, minlength=V), np.bincount(paper, minlength=V)])
    table = table[:, table.sum(axis=0) > 0]
    assert chi2_contingency(table).pvalue > 1e-4  # same law
    assert np.mean(full == 3) > np.mean(code == 3) + 0.05  # κ = ε concentrates more
