"""Distribution checks for veil.privacy.mechanisms against closed forms, scipy and mpmath.

References are computed independently here (mpmath Bessel ratios, scipy.stats laws,
exact softmax probabilities); none comes from the code under test.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
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

ALPHA = 1e-3  # per-test significance level for KS / chi-square (seeds are fixed)


def mean_cos_ref(d: int, kappa: float) -> float:
    """A_d(κ) = I_{d/2}(κ) / I_{d/2-1}(κ) with mpmath (0 at κ = 0)."""
    if kappa == 0:
        return 0.0
    with mpmath.workdps(40):
        nu = mpmath.mpf(d) / 2
        k = mpmath.mpf(kappa)
        return float(mpmath.besseli(nu, k) / mpmath.besseli(nu - 1, k))


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def orthogonal_unit(rng: np.random.Generator, mu: np.ndarray) -> np.ndarray:
    """For each row of mu, a random unit vector orthogonal to it."""
    e = rng.standard_normal(mu.shape)
    e -= np.einsum("ij,ij->i", e, mu)[:, None] * mu
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def beta_ks_pvalue(x: np.ndarray, a: float) -> float:
    """KS p-value of (1 + x)/2 against Beta(a, a)."""
    return float(stats.kstest((1.0 + x) / 2.0, stats.beta(a, a).cdf).pvalue)


# ---------------------------------------------------------------- vMF
@pytest.mark.parametrize("d", [3, 384, 768])
@pytest.mark.parametrize("kappa", [0.0, 1.0, 50.0, 1000.0, 20000.0])
def test_vmf_mean_cosine_and_tangent(d: int, kappa: float) -> None:
    rng = np.random.default_rng(1000 * d + int(kappa))
    n = 12000
    mu = unit_rows(rng, n, d)
    mu[:3] = 0.0
    mu[0, 0], mu[1, 0], mu[2, -1] = 1.0, -1.0, 1.0  # Householder edge cases μ = ±e₁
    u = sample_vmf(mu, kappa, rng)
    assert u.shape == (n, d)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-12)
    cos = np.einsum("ij,ij->i", u, mu)
    ref = mean_cos_ref(d, kappa)
    se = cos.std(ddof=1) / math.sqrt(n)
    assert abs(cos.mean() - ref) < 4 * se + 1e-12, (cos.mean(), ref, se)
    # Tangent part uniform on μ's orthogonal sphere S^{d-2}: (1 + ξ·e)/2 ~ Beta((d-2)/2, (d-2)/2).
    e = orthogonal_unit(rng, mu)
    xi_e = np.einsum("ij,ij->i", u, e) / np.sqrt(np.maximum(1.0 - cos**2, 1e-300))
    assert beta_ks_pvalue(np.clip(xi_e, -1, 1), (d - 2) / 2) > ALPHA


@pytest.mark.parametrize("kappa", [0.0, 2.0, 500.0])
@pytest.mark.parametrize("which", ["random", "e1", "-e1", "near-e1"])
def test_vmf_d3_tangent_angle_uniform(kappa: float, which: str) -> None:
    """d = 3, fixed μ: the angle of u around μ (in a fixed basis of μ⊥) is uniform."""
    rng = np.random.default_rng(int(kappa) + len(which))
    mu = {
        "random": unit_rows(rng, 1, 3)[0],
        "e1": np.array([1.0, 0.0, 0.0]),
        "-e1": np.array([-1.0, 0.0, 0.0]),
        "near-e1": np.array([1.0, 1e-9, -1e-9]) / np.sqrt(1 + 2e-18),
    }[which]
    f1 = orthogonal_unit(rng, mu[None, :])[0]
    f2 = np.cross(mu, f1)
    u = sample_vmf(np.tile(mu, (20000, 1)), kappa, rng)
    phi = np.arctan2(u @ f2, u @ f1)
    assert stats.kstest(phi, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > ALPHA


@pytest.mark.parametrize("d", [3, 384, 768])
@pytest.mark.parametrize("kappa", [0.0, 5.0, 300.0])
def test_vmf_mean_direction(d: int, kappa: float) -> None:
    """The sample mean's part orthogonal to μ is noise: n(d−1)‖m⊥‖²/(1 − E w²) ≈ χ²_{d−1}."""
    rng = np.random.default_rng(7 + d + int(kappa))
    n = 8000
    mu = unit_rows(rng, 1, d)[0]
    u = sample_vmf(np.tile(mu, (n, 1)), kappa, rng)
    m = u.mean(axis=0)
    w = u @ mu
    perp = m - (m @ mu) * mu
    stat = n * (d - 1) * (perp @ perp) / (1.0 - np.mean(w**2))
    assert stats.chi2.sf(stat, d - 1) > ALPHA
    assert stats.chi2.cdf(stat, d - 1) > ALPHA  # not suspiciously small either
    if mean_cos_ref(d, kappa) > 10 / math.sqrt(n):  # signal well above the noise floor
        assert m @ mu / np.linalg.norm(m) > 0.9


@pytest.mark.parametrize("d", [3, 50, 768])
def test_vmf_kappa_zero_is_uniform(d: int) -> None:
    """κ = 0: cos with μ and with any fixed axis follows the uniform-sphere Beta law."""
    rng = np.random.default_rng(d)
    n = 10000
    mu = unit_rows(rng, 1, d)[0]
    u = sample_vmf(np.tile(mu, (n, 1)), 0.0, rng)
    axis = unit_rows(rng, 1, d)[0]
    a = (d - 1) / 2
    assert beta_ks_pvalue(u @ mu, a) > ALPHA
    assert beta_ks_pvalue(u @ axis, a) > ALPHA
    assert np.linalg.norm(u.mean(axis=0)) < 5 / math.sqrt(n)


@pytest.mark.parametrize("kappa", [0.0, 0.5, 5.0, 50.0, 1e4])
def test_vmf_d3_cosine_cdf(kappa: float) -> None:
    """d = 3: density of w = cos ∝ exp(κw) on [−1, 1]."""
    rng = np.random.default_rng(int(kappa * 10) + 3)
    mu = unit_rows(rng, 1, 3)[0]
    w = sample_vmf(np.tile(mu, (20000, 1)), kappa, rng) @ mu

    def cdf(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, -1.0, 1.0)
        if kappa == 0:
            return (x + 1) / 2
        return np.exp(kappa * (x - 1)) * np.expm1(-kappa * (x + 1)) / np.expm1(-2 * kappa)

    assert stats.kstest(w, cdf).pvalue > ALPHA


@pytest.mark.parametrize("kappa", [0.0, 1.0, 30.0, 1000.0, 1e5])
def test_vmf_d2_angle_is_von_mises(kappa: float) -> None:
    rng = np.random.default_rng(int(kappa) + 2)
    mu = unit_rows(rng, 1, 2)[0]
    perp = np.array([-mu[1], mu[0]])
    u = sample_vmf(np.tile(mu, (20000, 1)), kappa, rng)
    assert np.isfinite(u).all()
    theta = np.arctan2(u @ perp, u @ mu)
    law = stats.uniform(-np.pi, 2 * np.pi) if kappa == 0 else stats.vonmises(kappa)
    assert stats.kstest(theta, law.cdf).pvalue > ALPHA


@pytest.mark.parametrize(("d", "kappa"), [(2, 1e5), (4096, 1e5), (4096, 0.0), (4096, 1.0)])
def test_vmf_extremes_finite_and_unbiased(d: int, kappa: float) -> None:
    rng = np.random.default_rng(d)
    n = 1500
    mu = unit_rows(rng, n, d)
    u = sample_vmf(mu, kappa, rng)
    assert np.isfinite(u).all()
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-12)
    cos = np.einsum("ij,ij->i", u, mu)
    se = cos.std(ddof=1) / math.sqrt(n)
    assert abs(cos.mean() - mean_cos_ref(d, kappa)) < 4 * se + 1e-12


def test_vmf_per_row_kappa_mixture() -> None:
    rng = np.random.default_rng(11)
    d, n = 384, 16000
    levels = np.array([0.0, 10.0, 300.0, 5000.0])
    kappa = levels[np.arange(n) % 4]
    mu = unit_rows(rng, n, d)
    cos = np.einsum("ij,ij->i", sample_vmf(mu, kappa, rng), mu)
    for k in levels:
        c = cos[kappa == k]
        se = c.std(ddof=1) / math.sqrt(c.size)
        assert abs(c.mean() - mean_cos_ref(d, k)) < 4 * se + 1e-12, k


# ---------------------------------------------------------------- Laplace, Gaussian
def test_laplace_and_gaussian_ks() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(200, 100)) * 10
    lap = laplace(values, 0.7, rng)
    assert stats.kstest(((lap - values) / 0.7).ravel(), stats.laplace.cdf).pvalue > ALPHA
    gau = gaussian(values, 2.5, rng)
    assert stats.kstest(((gau - values) / 2.5).ravel(), stats.norm.cdf).pvalue > ALPHA
    # Broadcast per-column scale.
    scales = np.linspace(0.1, 3.0, 100)
    lap2 = laplace(values, scales, rng)
    assert stats.kstest(((lap2 - values) / scales).ravel(), stats.laplace.cdf).pvalue > ALPHA


# ---------------------------------------------------------------- d_chi
@pytest.mark.parametrize(("d", "eps"), [(1, 2.0), (2, 0.5), (50, 10.0), (384, 3.0)])
def test_dchi_radius_gamma_and_direction_uniform(d: int, eps: float) -> None:
    rng = np.random.default_rng(d)
    n = 10000
    x = rng.normal(size=(n, d))
    z = sample_dchi(x, eps, rng) - x
    r = np.linalg.norm(z, axis=1)
    assert stats.kstest(r, stats.gamma(a=d, scale=1 / eps).cdf).pvalue > ALPHA
    if d >= 2:
        axis = unit_rows(rng, 1, d)[0]
        assert beta_ks_pvalue(z @ axis / r, (d - 1) / 2) > ALPHA
    else:
        assert abs(np.mean(z > 0) - 0.5) < 4 * 0.5 / math.sqrt(n)


def test_dchi_per_row_epsilon() -> None:
    rng = np.random.default_rng(3)
    d, n = 20, 12000
    eps = np.where(np.arange(n) % 2 == 0, 0.2, 5.0)
    r = np.linalg.norm(sample_dchi(np.zeros((n, d)), eps, rng), axis=1)
    for e in (0.2, 5.0):
        assert stats.kstest(r[eps == e], stats.gamma(a=d, scale=1 / e).cdf).pvalue > ALPHA


# ---------------------------------------------------------------- exponential mechanism
def chisq_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square goodness of fit; cells are pooled (smallest first) until each expects >= 5."""
    expected = probs * counts.sum()
    assert counts[expected == 0].sum() == 0  # nothing sampled where the probability is zero
    order = np.argsort(expected)
    obs_cells, exp_cells = [], []
    acc_o, acc_e = 0.0, 0.0
    for i in order:
        acc_o += counts[i]
        acc_e += expected[i]
        if acc_e >= 5:
            obs_cells.append(acc_o)
            exp_cells.append(acc_e)
            acc_o, acc_e = 0.0, 0.0
    obs_cells[-1] += acc_o  # leftover (< 5 expected) joins the largest cell
    exp_cells[-1] += acc_e
    return float(stats.chisquare(obs_cells, exp_cells).pvalue)


def test_exponential_dense_chisquare() -> None:
    rng = np.random.default_rng(21)
    scores = rng.normal(size=40) * 3
    scores[5] = -np.inf  # never chosen
    eps, delta, n = 1.5, 2.0, 60000
    probs = softmax(np.where(np.isfinite(scores), eps * scores / (2 * delta), -np.inf))
    idx = exponential_mechanism(np.tile(scores, (n, 1)), eps, delta, rng)
    assert chisq_pvalue(np.bincount(idx, minlength=40), probs) > ALPHA
    # ε = 0: uniform over the finite scores.
    idx0 = exponential_mechanism(np.tile(scores, (n, 1)), 0.0, delta, rng)
    uni = np.where(np.isfinite(scores), 1.0, 0.0) / 39
    assert chisq_pvalue(np.bincount(idx0, minlength=40), uni) > ALPHA


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exponential_nearest_chunked_matches_exact(metric: str) -> None:
    rng = np.random.default_rng(4)
    V, d, n, eps = 300, 16, 40000, 6.0
    table = rng.normal(size=(V, d))
    q = rng.normal(size=d)
    if metric == "euclidean":
        dist = np.linalg.norm(table - q, axis=1)
    else:
        dist = 1 - table @ q / (np.linalg.norm(table, axis=1) * np.linalg.norm(q))
    probs = softmax(-eps * dist / 2.0)
    queries = np.tile(q, (n, 1))
    chunked = exponential_mechanism_nearest(queries, table, eps, rng, chunk_size=37, metric=metric)
    counts_c = np.bincount(chunked, minlength=V)
    assert chisq_pvalue(counts_c, probs) > ALPHA
    dense = exponential_mechanism(np.tile(-dist, (n, 1)), eps, 1.0, rng)
    counts_d = np.bincount(dense, minlength=V)
    assert chisq_pvalue(counts_d, probs) > ALPHA
    # Two-sample test: chunked and dense draw from the same law.
    both = np.stack([counts_c, counts_d])
    keep = both.sum(axis=0) >= 10
    table2 = both[:, keep]
    if both[:, ~keep].sum() > 0:
        table2 = np.column_stack([table2, both[:, ~keep].sum(axis=1)])
    assert stats.chi2_contingency(table2).pvalue > ALPHA


def test_exponential_nearest_per_row_epsilon_and_many_queries() -> None:
    rng = np.random.default_rng(8)
    V, d = 50, 4
    table = rng.normal(size=(V, d))
    queries = rng.normal(size=(3, d))
    eps = np.array([0.5, 3.0, 8.0])
    reps = 20000
    out = exponential_mechanism_nearest(
        np.repeat(queries, reps, axis=0),
        table,
        np.repeat(eps, reps),
        rng,
        chunk_size=8,
        sensitivity=0.5,
    ).reshape(3, reps)
    for i in range(3):
        dist = np.linalg.norm(table - queries[i], axis=1)
        probs = softmax(-eps[i] * dist / (2 * 0.5))
        assert chisq_pvalue(np.bincount(out[i], minlength=V), probs) > ALPHA
