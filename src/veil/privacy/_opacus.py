"""Opacus's RDP and PRV accountants, wrapped for veil: orders, grid accuracy, speed.

Private to :mod:`veil.privacy.accounting`. Nothing here re-derives RDP or PRV
mathematics; it chooses Opacus's parameters: the RDP orders, and the PRV
``eps_error`` (the grid) so that the reported ε — always a rigorous upper
bound — sits within a stated margin of the exact value at bounded run time.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np

#: Opacus's default RDP orders, and larger ones (up to 1024, as dp-accounting's)
#: tried when the best order is the largest default: without orders in the
#: hundreds RDP cannot certify ε below ~0.1 at δ = 1e-5. Opacus returns NaN
#: (ignored) above ~1030, where its binomial coefficients overflow.
_BASE_ORDERS: tuple[float, ...] = tuple(1 + x / 10.0 for x in range(1, 100)) + tuple(
    float(a) for a in range(12, 64)
)
_LARGE_ORDERS: tuple[float, ...] = (64.0, 80.0, 96.0, 128.0, 160.0, 192.0, 256.0, 320.0,
                                    384.0, 448.0, 512.0, 640.0, 768.0, 896.0, 1024.0)
RDP_ORDERS: tuple[float, ...] = _BASE_ORDERS + _LARGE_ORDERS

#: PRV ε is a rigorous upper bound at most max(0.2 % of ε, 2e-5) above the exact ε
#: (a finer grid costs run time in proportion).
PRV_RELATIVE_ERROR = 2e-3
PRV_ABSOLUTE_ERROR = 2e-5


def rdp_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    """Opacus RDP ε over :data:`RDP_ORDERS` (large orders only when they can matter)."""
    from opacus.accountants.analysis import rdp as rdp_analysis

    def best(orders: tuple[float, ...]) -> tuple[float, float]:
        rdp = np.zeros(len(orders))
        for sigma, q, steps in history:
            rdp += np.asarray(rdp_analysis.compute_rdp(
                q=q, noise_multiplier=sigma, steps=steps, orders=list(orders)))
        with warnings.catch_warnings():  # "optimal order is the largest alpha": still valid
            warnings.simplefilter("ignore")
            eps, order = rdp_analysis.get_privacy_spent(orders=list(orders), rdp=rdp, delta=delta)
        return float(eps), float(order)

    eps, order = best(_BASE_ORDERS)
    if order >= _BASE_ORDERS[-1]:  # ε(α) is unimodal in practice: look further only here
        eps = min(eps, best(_LARGE_ORDERS)[0])
    return eps


def prv_upper(history: list[tuple[float, float, int]], delta: float, eps_error: float) -> float:
    """Opacus PRV upper bound on ε: exact ε (at δ·(1 − 1e-3)) plus at most ``eps_error``."""
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    accountant.history = list(history)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eps_error = _fft_friendly_error(history, delta / 1000, eps_error)
        return float(accountant.get_epsilon(delta, eps_error=eps_error))


def _fft_friendly_error(
    history: list[tuple[float, float, int]], delta_error: float, eps_error: float
) -> float:
    """Shrink ``eps_error`` slightly so that Opacus's PRV grid has an FFT-fast size.

    Opacus builds a grid of ``2(m + 1)`` points, ``m = ceil(L / mesh)`` with
    ``mesh = eps_error / sqrt(N ln(12/δ_err) / 2)``; a size with a large prime
    factor makes its FFT tens of times slower. Only speed depends on this: any
    ``eps_error`` gives a valid upper bound.
    """
    from opacus.accountants.analysis.prv import (
        PoissonSubsampledGaussianPRV,
        compute_safe_domain_size,
    )
    from scipy.fft import next_fast_len

    steps = [n for _, _, n in history]
    factor = math.sqrt(sum(steps) * math.log(12 / delta_error) / 2)
    if 6 * factor / eps_error < 2**17:  # small grid (half-width L > 3): FFT cheap anyway
        return eps_error
    prvs = [PoissonSubsampledGaussianPRV(q, sigma) for sigma, q, _ in history]
    half_width = compute_safe_domain_size(prvs, steps, eps_error, delta_error)
    m = next_fast_len(math.ceil(half_width * factor / eps_error) + 1, real=True) - 1
    return min(eps_error, half_width / (m - 0.5) * factor)


@lru_cache(maxsize=512)
def prv_epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """PRV ε whose upper-bound slack is :func:`prv_error` of ε itself.

    The PRV grid (and run time) scales with 1 / eps_error, so a coarse pass
    (slack 10 % of the RDP bound) locates ε first; its estimate (upper bound
    minus slack) is accurate far beyond the slack and sets the fine pass.
    """
    entries = list(history)
    scale = rdp_epsilon(entries, delta)  # an upper bound on the tight ε
    if scale == 0.0:
        return 0.0
    coarse_error = 0.1 * scale
    estimate = max(prv_upper(entries, delta, coarse_error) - coarse_error, 1e-3 * scale)
    return prv_upper(entries, delta, prv_error(estimate))


def prv_error(epsilon: float) -> float:
    """The PRV slack allowed at ε: ``PRV_RELATIVE_ERROR·ε``, at least ``PRV_ABSOLUTE_ERROR``."""
    return max(PRV_RELATIVE_ERROR * epsilon, PRV_ABSOLUTE_ERROR)
