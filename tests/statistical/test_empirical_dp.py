"""Empirical privacy checks: neighbouring inputs, histogram the outputs, compare log-ratios.

For each mechanism we sample from M(x) and M(x'), bin a statistic of the output (any
function of the output is post-processing, so its bin masses obey the same bound), and
require that no bin's estimated |log ratio| exceeds the claimed bound by more than
Z standard errors. A negative control runs the same estimator on a deliberately
under-noised mechanism (3× the claimed ε) and must flag it, proving the check has power.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import softmax

from veil.privacy.mechanisms import (
    exponential_mechanism,
    exponential_mechanism_nearest,
    gaussian,
    laplace,
    sample_dchi,
    sample_vmf,
)

Z = 4.5  # allowed excess, in standard errors of the binned log ratio
N = 300_000  # samples per neighbour
MIN_COUNT = 400  # bins with fewer samples (either side) are ignored


def log_ratios(ca: np.ndarray, cb: np.ndarray, na: int, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell log(P̂a/P̂b) and its delta-method standard error, cells with enough mass."""
    keep = (ca >= MIN_COUNT) & (cb >= MIN_COUNT)
    ca, cb = ca[keep].astype(float), cb[keep].astype(float)
    return np.log(ca / na) - np.log(cb / nb), np.sqrt(1 / ca + 1 / cb)


def hist_log_ratios(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    ca, _ = np.histogram(a, edges)
    cb, _ = np.histogram(b, edges)
    return log_ratios(ca, cb, a.size, b.size)


def max_excess_z(lr: np.ndarray, se: np.ndarray, bound: float) -> float:
    """Largest (|log ratio| − bound) in units of its standard error."""
    assert lr.size >= 5, "too few populated bins for a meaningful check"
    return float(np.max((np.abs(lr) - bound) / se))


def check_bound(a: np.ndarray, b: np.ndarray, edges: np.ndarray, bound: float) -> float:
    lr, se = hist_log_ratios(a, b, edges)
    return max_excess_z(lr, se, bound)


# ---------------------------------------------------------------- Laplace (pure ε-DP)
def test_laplace_empirical_dp() -> None:
    rng = np.random.default_rng(1)
    eps, sens = 1.0, 1.0
    x, x2 = np.zeros(N), np.ones(N)  # |x − x'| = Δ
    edges = np.arange(-6.0, 7.01, 0.25)
    a, b = laplace(x, sens / eps, rng), laplace(x2, sens / eps, rng)
    lr, se = hist_log_ratios(a, b, edges)
    assert max_excess_z(lr, se, eps) < Z
    assert np.abs(lr).max() > 0.85 * eps  # the bound is attained in the tails: the check is tight
    # Negative control: scale Δ/(3ε) claimed as ε.
    a3, b3 = laplace(x, sens / (3 * eps), rng), laplace(x2, sens / (3 * eps), rng)
    assert check_bound(a3, b3, edges, eps) > Z


# ---------------------------------------------------------------- Gaussian ((ε, δ)-DP)
def test_gaussian_log_ratio_matches_closed_form() -> None:
    rng = np.random.default_rng(2)
    sigma, sens = 1.0, 1.0
    edges = np.arange(-4.0, 5.01, 0.25)
    a, b = gaussian(np.zeros(N), sigma, rng), gaussian(np.full(N, sens), sigma, rng)

    def z_vs_exact(a: np.ndarray, b: np.ndarray) -> float:
        ca, _ = np.histogram(a, edges)
        cb, _ = np.histogram(b, edges)
        keep = (ca >= MIN_COUNT) & (cb >= MIN_COUNT)
        pa = np.diff(stats.norm.cdf(edges, 0.0, sigma))[keep]
        pb = np.diff(stats.norm.cdf(edges, sens, sigma))[keep]
        lr, se = log_ratios(ca, cb, a.size, b.size)
        return float(np.max(np.abs(lr - np.log(pa / pb)) / se))

    assert z_vs_exact(a, b) < Z
    a3 = gaussian(np.zeros(N), sigma / 3, rng)
    b3 = gaussian(np.full(N, sens), sigma / 3, rng)
    assert z_vs_exact(a3, b3) > Z  # negative control: under-noised


def empirical_delta(a: np.ndarray, b: np.ndarray, eps: float) -> float:
    """max_t P̂a(y ≤ t) − e^ε P̂b(y ≤ t): threshold sets are optimal for a mean shift."""
    grid = np.sort(a)[:: max(1, a.size // 4000)]
    fa = np.searchsorted(np.sort(a), grid, side="right") / a.size
    fb = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(np.max(fa - np.exp(eps) * fb))


def test_gaussian_delta_curve_matches_dp_accounting() -> None:
    from dp_accounting.pld import privacy_loss_distribution

    rng = np.random.default_rng(3)
    sigma, sens = 1.0, 1.0
    pld = privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=sigma, sensitivity=sens
    )
    a, b = gaussian(np.zeros(N), sigma, rng), gaussian(np.full(N, sens), sigma, rng)
    for eps in (0.25, 1.0, 2.0):
        claimed = pld.get_delta_for_epsilon(eps)
        assert abs(empirical_delta(a, b, eps) - claimed) < 0.01, eps
    a3 = gaussian(np.zeros(N), sigma / 3, rng)
    b3 = gaussian(np.full(N, sens), sigma / 3, rng)
    assert empirical_delta(a3, b3, 1.0) > pld.get_delta_for_epsilon(1.0) + 0.1


# ---------------------------------------------------------------- vMF (κ-metric-LDP, chordal)
def test_vmf_metric_ldp_d3() -> None:
    rng = np.random.default_rng(4)
    eps = 3.0
    mu = np.array([1.0, 0.0, 0.0])
    mu2 = np.array([0.5, np.sqrt(3) / 2, 0.0])  # 60° apart: chordal distance 1
    dist = np.linalg.norm(mu - mu2)
    e = (mu - mu2) / dist
    edges = np.linspace(-1.0, 1.0, 41)

    def proj(m: np.ndarray, kappa: float) -> np.ndarray:
        return sample_vmf(np.tile(m, (N, 1)), kappa, rng) @ e

    lr, se = hist_log_ratios(proj(mu, eps), proj(mu2, eps), edges)
    assert max_excess_z(lr, se, eps * dist) < Z
    assert np.abs(lr).max() > 0.8 * eps * dist  # near-tight at projection ±1
    # Negative control: κ = 3ε released under the claim κ = ε.
    assert check_bound(proj(mu, 3 * eps), proj(mu2, 3 * eps), edges, eps * dist) > Z


# ---------------------------------------------------------------- d_χ (ε-metric-DP, Euclidean)
def test_dchi_metric_dp_d2() -> None:
    rng = np.random.default_rng(5)
    eps = 1.5
    x, x2 = np.zeros(2), np.array([1.0, 0.0])
    dist = 1.0
    edges = np.linspace(-1.0, 1.0, 41)

    def stat(point: np.ndarray, e: float) -> np.ndarray:
        y = sample_dchi(np.tile(point, (N, 1)), e, rng)
        # ‖y − x'‖ − ‖y − x‖: the log-likelihood-ratio statistic, in [−dist, dist].
        return np.linalg.norm(y - x2, axis=1) - np.linalg.norm(y - x, axis=1)

    lr, se = hist_log_ratios(stat(x, eps), stat(x2, eps), edges)
    assert max_excess_z(lr, se, eps * dist) < Z
    assert np.abs(lr).max() > 0.8 * eps * dist
    assert check_bound(stat(x, 3 * eps), stat(x2, 3 * eps), edges, eps * dist) > Z


# ---------------------------------------------------------------- exponential mechanism (ε-DP)
def test_exponential_mechanism_dp() -> None:
    rng = np.random.default_rng(6)
    eps, sens = 1.0, 1.0
    scores = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    scores2 = scores + sens * np.array([-1, 1, 1, 1, 1, 1])  # every score moves by ≤ Δ
    exact = np.log(softmax(eps * scores / (2 * sens)) / softmax(eps * scores2 / (2 * sens)))
    assert np.abs(exact).max() <= eps + 1e-12  # the standard bound on the exact law

    def counts(s: np.ndarray, e: float) -> np.ndarray:
        return np.bincount(exponential_mechanism(np.tile(s, (N, 1)), e, sens, rng), minlength=6)

    lr, se = log_ratios(counts(scores, eps), counts(scores2, eps), N, N)
    assert max_excess_z(lr, se, eps) < Z
    assert np.abs(lr).max() > 0.7 * eps
    lr3, se3 = log_ratios(counts(scores, 3 * eps), counts(scores2, 3 * eps), N, N)
    assert max_excess_z(lr3, se3, eps) > Z


def test_exponential_nearest_metric_dp() -> None:
    rng = np.random.default_rng(7)
    eps, r = 2.0, 0.5
    pos = np.arange(-3.0, 3.01, 0.25)
    table = np.column_stack([pos, np.zeros_like(pos)])
    q, q2 = np.zeros(2), np.array([r, 0.0])
    bound = eps * r  # ε · ‖q − q'‖ / Δ with Δ = 1
    V, n = len(pos), N // 2

    def counts(point: np.ndarray, e: float) -> np.ndarray:
        out = exponential_mechanism_nearest(np.tile(point, (n, 1)), table, e, rng, chunk_size=7)
        return np.bincount(out, minlength=V)

    def exact_max(e: float) -> float:
        da, db = np.abs(pos), np.abs(pos - r)
        return float(np.abs(np.log(softmax(-e * da / 2) / softmax(-e * db / 2))).max())

    assert exact_max(eps) <= bound + 1e-12
    lr, se = log_ratios(counts(q, eps), counts(q2, eps), n, n)
    assert max_excess_z(lr, se, bound) < Z
    assert exact_max(3 * eps) > bound  # the control really is under-noised...
    lr3, se3 = log_ratios(counts(q, 3 * eps), counts(q2, 3 * eps), n, n)
    assert max_excess_z(lr3, se3, bound) > Z  # ...and the estimator sees it
