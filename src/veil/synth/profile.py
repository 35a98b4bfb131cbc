"""Phase 2, DP profiling: noisy per-code counts at each site, summed at the server.

Site side (:func:`noisy_counts`): the vector of record counts per control code
gets i.i.d. Gaussian noise ``N(0, σ²)`` per code. Adding or removing one record
changes exactly one count by 1, so the L2 sensitivity is 1 and the release is
the Gaussian mechanism with noise multiplier σ (calibrated by
:mod:`veil.synth.budget`; ε per record of the site). The exact counts never
leave the site. Server side (:func:`global_profile`): sum the noisy vectors,
clip at 0 and normalise — post-processing, no further privacy cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from veil.privacy.mechanisms import gaussian


def exact_counts(code_index: Sequence[int | None], n_codes: int) -> np.ndarray:
    """Per-code record counts (records outside the vocabulary are not counted).

    This vector is private: it must only leave the site through :func:`noisy_counts`.
    """
    idx = np.asarray([j for j in code_index if j is not None], dtype=np.int64)
    return np.bincount(idx, minlength=n_codes).astype(np.float64)


def noisy_counts(counts: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The released profile: ``counts + N(0, σ²)`` per code (σ = 0: exact, ε = ∞).

    Args:
        counts: exact per-code counts of one site.
        sigma: noise std = noise multiplier (per-record L2 sensitivity is 1).
        rng: source of the noise.
    """
    if sigma == 0.0:
        return np.asarray(counts, dtype=np.float64).copy()
    return np.asarray(gaussian(np.asarray(counts, dtype=np.float64), sigma, rng))


@dataclass(frozen=True)
class GlobalProfile:
    """The server's view of the code mix, built from noisy site profiles only.

    Attributes:
        noisy_sum: the summed noisy counts per code (may be negative).
        proportions: ``max(sum, 0)`` normalised; uniform when every code clipped to 0.
        uniform_fallback: True when the clipped sum was all zeros.
    """

    noisy_sum: np.ndarray
    proportions: np.ndarray
    uniform_fallback: bool


def global_profile(site_vectors: Sequence[np.ndarray], n_codes: int) -> GlobalProfile:
    """Sum the sites' noisy count vectors, clip at 0 and normalise."""
    total = np.zeros(n_codes, dtype=np.float64)
    for vec in site_vectors:
        total += np.asarray(vec, dtype=np.float64)
    clipped = np.clip(total, 0.0, None)
    mass = float(clipped.sum())
    if mass <= 0.0:
        return GlobalProfile(total, np.full(n_codes, 1.0 / n_codes), True)
    return GlobalProfile(total, clipped / mass, False)


def quotas(proportions: np.ndarray, total: int) -> np.ndarray:
    """``round(s·p̂_j)`` samples per code, adjusted so that they sum to exactly ``s``.

    Rounding is by largest remainder (Hamilton's method), so the sum is exact
    and each quota is ``floor`` or ``ceil`` of ``s·p̂_j``.
    """
    raw = np.asarray(proportions, dtype=np.float64) * total
    base = np.floor(raw).astype(np.int64)
    left = int(total - base.sum())
    if left > 0:
        order = np.argsort(-(raw - base), kind="stable")
        base[order[:left]] += 1
    return base
