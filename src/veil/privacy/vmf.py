"""von Mises–Fisher sampling on the unit sphere S^{d-1} and its mean cosine.

Low-level numpy half of the Polar (vMF) mechanism; :func:`veil.privacy.mechanisms.sample_vmf`
is the public entry point (it also accepts a ``torch.Generator``). The density of
vMF(μ, κ) is ``C_d(κ) exp(κ μᵀu)`` on ‖u‖ = 1. Releasing ``u ~ vMF(μ, κ)`` is
κ-metric-LDP for the chordal distance ‖μ − μ'‖₂ between unit inputs (STAMP, Thm 3):
``log p(u|μ)/p(u|μ') = κ uᵀ(μ − μ') ≤ κ‖μ − μ'‖₂``; so κ is ε per unit of chordal distance
(at most 2κ-LDP overall, since ‖μ − μ'‖₂ ≤ 2).

Sampling is Wood (1994): the cosine ``w = uᵀμ`` by rejection from a Beta proposal,
written in a cancellation-free form (``b = (d−1)/(2κ + √(4κ²+(d−1)²))``, ``1 − w`` and
``1 + w`` computed directly, the acceptance test in log space), then a tangent direction
uniform on μ's orthogonal complement, combined with a Householder reflection that maps
e₁ to ±μ. Everything is vectorised over rows; the only loop is over rejection rounds
on the rows still pending.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_MAX_ROUNDS = 10_000
_BLOCK_ELEMS = 1 << 16  # floats per row block in the Householder step
_TINY = 1e-280  # below this, scipy's ive values are subnormal or zero: use mpmath


def _wood_cosine(
    d: int, kappa: npt.NDArray[np.float64], rng: np.random.Generator
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sample ``w = cos(u, μ)`` for vMF(·, κ_i) on S^{d-1}, one per entry of ``kappa``.

    Returns ``(w, 1 − w, 1 + w)``, each computed without cancellation.
    κ must be finite and ≥ 0 (checked by the caller).
    """
    n = kappa.shape[0]
    kappa = np.minimum(kappa, 1e300)  # beyond this 2κ overflows; w = 1 to double precision
    dm1 = float(d - 1)
    half = dm1 / 2.0
    b = dm1 / (2.0 * kappa + np.hypot(2.0 * kappa, dm1))  # stable form of Wood's b
    x0 = (1.0 - b) / (1.0 + b)
    one_minus_x0 = 2.0 * b / (1.0 + b)
    log1p_x0 = np.log1p(x0)

    w = np.empty(n)
    omw = np.empty(n)
    opw = np.empty(n)
    pending = np.arange(n)
    for _ in range(_MAX_ROUNDS):
        if pending.size == 0:
            return w, omw, opw
        m = pending.size
        g1 = rng.standard_gamma(half, size=m)
        g2 = rng.standard_gamma(half, size=m)
        tot = g1 + g2
        z = g1 / tot  # Z ~ Beta(half, half)
        omz = g2 / tot  # 1 − Z, exact
        bp, kp, x0p, omx0p = b[pending], kappa[pending], x0[pending], one_minus_x0[pending]
        den = omz + bp * z  # = 1 − (1 − b) Z
        omw_p = 2.0 * bp * z / den  # 1 − W
        opw_p = 2.0 * omz / den  # 1 + W
        # Wood: accept iff κW + (d−1)log(1 − x0 W) − κx0 − (d−1)log(1 − x0²) ≥ log U.
        log_acc = kp * (omx0p - omw_p) + dm1 * (np.log1p(x0p * omw_p / omx0p) - log1p_x0[pending])
        ok = log_acc >= np.log(rng.random(m))
        acc = pending[ok]
        w[acc] = (omz[ok] - bp[ok] * z[ok]) / den[ok]
        omw[acc] = omw_p[ok]
        opw[acc] = opw_p[ok]
        pending = pending[~ok]
    raise RuntimeError("vMF rejection sampler did not converge")  # pragma: no cover


def sample_vmf(
    mu: npt.NDArray[np.float64], kappa: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Draw one vMF(μ_i, κ_i) sample per row (numpy Generator only, inputs pre-validated).

    Args:
        mu: (n, d) float64 unit rows, d ≥ 2.
        kappa: (n,) float64 concentrations, each ≥ 0 or +inf (inf returns μ_i exactly).
        rng: numpy Generator.

    Returns:
        (n, d) unit rows.
    """
    n, d = mu.shape
    finite = np.isfinite(kappa)
    if not finite.all():  # κ = ∞: no noise (ε = ∞ means "release verbatim")
        out = mu.copy()
        if finite.any():
            out[finite] = sample_vmf(mu[finite], kappa[finite], rng)
        return out
    out = np.empty((n, d))
    w, omw, opw = _wood_cosine(d, kappa, rng)
    s = np.sqrt(omw * opw)  # sin of the angle to μ
    # Householder H = I − 2vvᵀ/vᵀv with v = e₁ − σμ maps e₁ to σμ; σ = −sign(μ₁) keeps
    # vᵀv = 2(1 + |μ₁|) ≥ 2 (no cancellation). Apply H to y = (σw, s·g/‖g‖), where g is
    # Gaussian in e₁'s complement. Done in row blocks that stay in cache.
    sigma = np.where(mu[:, 0] > 0.0, -1.0, 1.0)
    one_abs = 1.0 + np.abs(mu[:, 0])
    step = max(1, _BLOCK_ELEMS // d)
    for r0 in range(0, n, step):
        sl = slice(r0, r0 + step)
        blk = out[sl]  # contiguous view; its column 0 is overwritten below
        rng.standard_normal(out=blk)
        g = blk[:, 1:]
        t = s[sl] / np.sqrt(np.einsum("ij,ij->i", g, g))
        mu_dot_g = np.einsum("ij,ij->i", mu[sl, 1:], g)
        coef = sigma[sl] * (w[sl] - t * mu_dot_g / one_abs[sl])  # 2(vᵀy)/(vᵀv)
        cs = coef * sigma[sl]
        g *= t[:, None]
        g += mu[sl, 1:] * cs[:, None]
        blk[:, 0] = cs * mu[sl, 0] + sigma[sl] * w[sl] - coef
    return out


def vmf_mean_cosine(d: int, kappa: float | npt.ArrayLike) -> float | npt.NDArray[np.float64]:
    """Expected cosine to the mean direction, ``A_d(κ) = I_{d/2}(κ) / I_{d/2−1}(κ)``.

    ``E[uᵀμ]`` for ``u ~ vMF(μ, κ)`` on S^{d-1}: 0 at κ = 0 (uniform), → 1 as κ → ∞.
    Uses the exponentially scaled Bessel ratio (scipy ``ive``) and falls back to mpmath
    where ``ive`` underflows (large d with small κ).

    Args:
        d: ambient dimension (≥ 2).
        kappa: concentration(s) κ ≥ 0 (scalar or array; ``inf`` gives 1).

    Returns:
        A float for scalar ``kappa``, else an array of the same shape.
    """
    from scipy.special import ive

    if int(d) != d or d < 2:
        raise ValueError(f"d must be an integer >= 2, got {d}")
    k = np.asarray(kappa, dtype=np.float64)
    if np.isnan(k).any() or (k < 0).any():
        raise ValueError("kappa must be >= 0")
    flat = k.reshape(-1)
    res = np.zeros_like(flat)
    pos = flat > 0
    res[np.isinf(flat)] = 1.0
    fin = pos & np.isfinite(flat)
    with np.errstate(all="ignore"):
        num = ive(d / 2.0, flat[fin])
        den = ive(d / 2.0 - 1.0, flat[fin])
        ratio = num / den
    bad = ~((num > _TINY) & (den > _TINY) & np.isfinite(ratio))
    if bad.any():
        import mpmath

        fin_idx = np.flatnonzero(fin)
        with mpmath.workdps(30):
            for j in np.flatnonzero(bad):
                kk = mpmath.mpf(float(flat[fin_idx[j]]))
                nu = mpmath.mpf(d) / 2
                ratio[j] = float(mpmath.besseli(nu, kk) / mpmath.besseli(nu - 1, kk))
    res[fin] = ratio
    if k.ndim == 0:
        return float(res[0])
    return res.reshape(k.shape)
