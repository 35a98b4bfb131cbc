"""Privacy accounting: calibrate Gaussian noise and compute ε.

Every ε here is a record-level (ε, δ)-DP guarantee under the add/remove-one
neighbouring relation: it bounds how much any single record (one report, one
note — whatever the caller's unit is) can change the distribution of the
release. Subsampled-Gaussian accounting (DP-SGD, noisy counts, noisy votes) is
done by Opacus's accountants — ``"prv"`` (numerical composition of privacy-loss
random variables, Gopi et al. 2021; tight) or ``"rdp"`` (Rényi DP, Mironov 2017;
a looser but cheap upper bound). Nothing here re-implements them. The analytic
Gaussian mechanism calibration (Balle & Wang, ICML 2018) is a closed-form
condition solved numerically below. Composition of several releases
(:func:`compose`, :class:`ReleasePart`) lives in :mod:`veil.privacy.composition`
and is re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr

from veil.privacy._opacus import (
    PRV_ABSOLUTE_ERROR,
    PRV_RELATIVE_ERROR,
    RDP_ORDERS,
    prv_epsilon,
    prv_error,
    prv_upper,
    rdp_epsilon,
)
from veil.privacy.composition import ComposedGuarantee, ReleasePart, compose

Accountant = Literal["prv", "rdp"]
ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp")
History = Sequence[tuple[float, float, int]]

__all__ = [
    "ACCOUNTANTS",
    "PRV_ABSOLUTE_ERROR",
    "PRV_RELATIVE_ERROR",
    "RDP_ORDERS",
    "ComposedGuarantee",
    "ReleasePart",
    "analytic_gaussian_delta",
    "analytic_gaussian_sigma",
    "calibrate_noise_multiplier",
    "compose",
    "default_delta",
    "epsilon_from_history",
    "epsilon_spent",
]


def default_delta(n_records: int) -> float:
    """The δ veil uses when the user gives none: ``min(1e-5, 1 / (10 · n))``.

    δ is the probability with which the ε guarantee may fail for a record; it
    must be well below ``1/n`` (a mechanism that publishes one random record in
    full satisfies (0, 1/n)-DP). The rule keeps δ at least ten times below
    ``1/n`` and never above the customary 1e-5.

    Args:
        n_records: number of privacy units (records) in the dataset, ≥ 1.

    Returns:
        δ, strictly below ``1 / n_records``.
    """
    if n_records < 1:
        raise ValueError(f"n_records must be >= 1, got {n_records}")
    return min(1e-5, 1.0 / (10.0 * n_records))


def _check_delta(delta: float) -> None:
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def _check_entry(sigma: float, q: float, steps: int) -> None:
    if math.isnan(sigma) or sigma < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {sigma!r}")
    if not (0.0 < q <= 1.0):
        raise ValueError(f"sample_rate must be in (0, 1], got {q!r}")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")


def _merge(history: History) -> list[tuple[float, float, int]]:
    """Merge entries with the same (σ, q); drop no-op entries (0 steps or σ = ∞)."""
    merged: dict[tuple[float, float], int] = {}
    for sigma, q, steps in history:
        _check_entry(sigma, q, steps)
        if steps == 0 or sigma == math.inf:
            continue
        key = (float(sigma), float(q))
        merged[key] = merged.get(key, 0) + int(steps)
    return [(s, q, n) for (s, q), n in merged.items()]


def epsilon_from_history(
    history: History, delta: float, accountant: Accountant = "prv"
) -> float:
    """ε of a composition of (Poisson-subsampled) Gaussian releases on one dataset.

    Args:
        history: ``(noise_multiplier, sample_rate, steps)`` per kind of release;
            ``noise_multiplier`` is σ divided by the L2 sensitivity per record,
            ``sample_rate = 1`` means no subsampling (plain Gaussian mechanism).
        delta: target δ of the whole composition, in (0, 1).
        accountant: ``"prv"`` (tight, numerical) or ``"rdp"`` (looser upper bound).

    Returns:
        ε such that the composition is (ε, δ)-DP per record; ``inf`` if any
        entry has zero noise; 0 if the history is empty.
    """
    _check_delta(delta)
    _check_accountant(accountant)
    merged = _merge(history)
    if not merged:
        return 0.0
    if any(sigma == 0.0 for sigma, _, _ in merged):
        return math.inf
    if accountant == "rdp":
        return rdp_epsilon(merged, delta)
    return prv_epsilon(tuple(merged), delta)


def epsilon_spent(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: Accountant = "prv",
) -> float:
    """ε spent by ``steps`` Poisson-subsampled Gaussian steps (e.g. DP-SGD).

    Args:
        noise_multiplier: σ / clipping norm (noise std per unit of per-record sensitivity).
        sample_rate: Poisson sampling probability of each record per step, in (0, 1].
        steps: number of steps (noisy releases).
        delta: target δ.
        accountant: ``"prv"`` or ``"rdp"``.

    Returns:
        The record-level ε at ``delta``.
    """
    return epsilon_from_history([(noise_multiplier, sample_rate, steps)], delta, accountant)


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: Accountant = "prv",
    rtol: float = 1e-3,
) -> float:
    """The noise multiplier σ at which ``steps`` subsampled-Gaussian steps end at ε.

    The result satisfies ``ε(σ) ≤ target`` exactly as :func:`epsilon_spent`
    reports it with the same accountant, and wastes little budget: RDP lands
    within 1e-8 (relative) below the target, PRV within ``rtol`` plus its own
    slack (``PRV_RELATIVE_ERROR``), i.e. about 0.3 % below.

    Args:
        target_epsilon: record-level ε to reach at the end; ``inf`` means no
            privacy, returned as σ = 0 (no noise).
        delta: target δ, in (0, 1).
        sample_rate: Poisson sampling probability per step, in (0, 1].
        steps: number of steps, ≥ 1.
        accountant: ``"prv"`` or ``"rdp"``.
        rtol: relative tolerance of the PRV search (below the target, never above).

    Returns:
        σ, the Gaussian noise std divided by the per-record L2 sensitivity.
    """
    if math.isnan(target_epsilon) or target_epsilon <= 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon!r}")
    _check_delta(delta)
    _check_accountant(accountant)
    if not (0.0 < sample_rate <= 1.0):
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if target_epsilon == math.inf:
        return 0.0
    n = int(steps)
    aim = target_epsilon - prv_error(target_epsilon) - 0.75 * rtol * target_epsilon

    @cache
    def gap(log_sigma: float, acc: str) -> float:
        """log ε(σ) − log target, by ``"rdp"``, ``"prv"`` or PRV's central estimate."""
        history = [(math.exp(log_sigma), sample_rate, n)]
        if acc == "rdp":
            eps = rdp_epsilon(history, delta)
        elif acc == "prv":  # exactly what epsilon_spent will report for this σ
            eps = prv_epsilon(tuple(history), delta)
        else:  # the estimate is accurate to ~1e-4 even on a coarse grid; aim below
            err = 0.03 * target_epsilon  # the target by the final check's slack
            eps = (prv_upper(history, delta, err) - err) * target_epsilon / aim
        return math.log(max(eps, 1e-300)) - math.log(target_epsilon)

    if accountant == "prv" and target_epsilon < 10 * PRV_ABSOLUTE_ERROR:
        raise ValueError(f"target_epsilon {target_epsilon:g} is below the PRV resolution")
    # RDP bounds PRV from above, so the RDP σ brackets both from above.
    root = 0.0
    while gap(root, "rdp") > 0 and root < math.log(1e6):
        root += math.log(4.0)
    if gap(root, "rdp") <= 0:
        lo = root - math.log(4.0)
        while gap(lo, "rdp") <= 0:
            root, lo = lo, lo - math.log(4.0)
        ftol = 1e-8 if accountant == "rdp" else 1e-2
        root = _solve_below(lambda x: gap(x, "rdp"), lo, root, ftol)
    elif accountant == "rdp":
        raise ValueError(f"RDP (orders up to {RDP_ORDERS[-1]:g}) cannot certify epsilon "
                         f"{target_epsilon:g} at delta {delta:g}; use accountant='prv'")
    else:  # Gaussian without subsampling amplification: exact ε ≤ target, a valid bracket
        root = math.log(analytic_gaussian_sigma(target_epsilon, delta) * math.sqrt(n))
    if accountant == "prv":
        hi, step = root, 0.01
        while gap(hi, "prv-estimate") > 0:  # rare: PRV's estimate a hair above RDP
            hi, step = hi + step, 2 * step
        # Newton step with RDP's log-log slope (PRV's is similar), overshot by 20 %.
        slope = (gap(hi, "rdp") - gap(hi - 0.02, "rdp")) / 0.02
        width = min(max(1.2 * gap(hi, "prv-estimate") / min(slope, -0.1), 0.005), 0.5)
        lo = hi - width
        while gap(lo, "prv-estimate") <= 0:  # widen fast: far below RDP's σ at small ε
            width *= 2
            hi, lo = lo, lo - width
        root = _solve_below(lambda x: gap(x, "prv-estimate"), lo, hi, rtol / 2)
        # Keep the guarantee: step σ up until the rigorous PRV bound is ≤ target.
        step = rtol / 10
        while gap(root, "prv") > 0:
            root, step = root + step, 2 * step
    return math.exp(root)


def _solve_below(f: Callable[[float], float], lo: float, hi: float, ftol: float) -> float:
    """A point x in [lo, hi] with −ftol ≤ f(x) ≤ 0, for f decreasing, f(lo) > 0 ≥ f(hi).

    Regula falsi with the Illinois modification: superlinear on smooth f, and it
    stops on the function value, on the safe side (ε ≤ target), not on the bracket.
    """
    f_lo, f_hi = f(lo), f(hi)
    w_lo, w_hi, side = f_lo, f_hi, 0  # interpolation weights (Illinois-halved)
    while not (-ftol <= f_hi <= 0.0) and hi - lo > 1e-13:
        x = hi - w_hi * (hi - lo) / (w_hi - w_lo)
        if not (lo < x < hi):
            x = 0.5 * (lo + hi)
        fx = f(x)
        if fx > 0:
            lo, f_lo, w_lo = x, fx, fx
            w_hi = w_hi / 2 if side == -1 else w_hi
            side = -1
        else:
            hi, f_hi, w_hi = x, fx, fx
            w_lo = w_lo / 2 if side == 1 else w_lo
            side = 1
    return hi


def analytic_gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The smallest δ for which the Gaussian mechanism with std ``sigma`` is (ε, δ)-DP.

    Balle & Wang (ICML 2018), Theorem 8: with Δ the L2 sensitivity,
    ``δ = Φ(Δ/(2σ) − εσ/Δ) − e^ε Φ(−Δ/(2σ) − εσ/Δ)``. Evaluated in log space.

    Args:
        sigma: noise standard deviation (absolute, not a multiplier), > 0.
        epsilon: ε ≥ 0 of the per-record guarantee.
        sensitivity: L2 sensitivity Δ of the released statistic to one record.

    Returns:
        δ in [0, 1].
    """
    if sigma <= 0 or sensitivity <= 0 or epsilon < 0:
        raise ValueError("sigma and sensitivity must be > 0 and epsilon >= 0")
    a = sensitivity / (2 * sigma) - epsilon * sigma / sensitivity
    b = -sensitivity / (2 * sigma) - epsilon * sigma / sensitivity
    log_first, log_second = float(log_ndtr(a)), epsilon + float(log_ndtr(b))
    if log_second >= log_first:
        return 0.0
    return math.exp(log_first + math.log1p(-math.exp(log_second - log_first)))


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest Gaussian noise std giving (ε, δ)-DP (analytic Gaussian mechanism).

    Solves Balle & Wang's exact condition (see :func:`analytic_gaussian_delta`)
    for σ by root finding; valid for every ε > 0, unlike the classical
    ``Δ·sqrt(2 ln(1.25/δ))/ε`` which needs ε < 1 and is loose.

    Args:
        epsilon: per-record ε > 0 of one release.
        delta: δ in (0, 1).
        sensitivity: L2 sensitivity Δ of the statistic to one record.

    Returns:
        σ (absolute standard deviation) with ``analytic_gaussian_delta(σ, ε, Δ) ≤ δ``.
    """
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be finite and > 0, got {epsilon!r}")
    _check_delta(delta)
    if sensitivity <= 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity!r}")

    def gap(log_s: float) -> float:
        d = analytic_gaussian_delta(math.exp(log_s), epsilon, sensitivity)
        return (math.log(d) if d > 0 else -800.0) - math.log(delta)

    lo = hi = math.log(sensitivity)
    while gap(hi) > 0:
        hi += 1.0
    while gap(lo) <= 0:
        lo -= 1.0
    root = brentq(gap, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    while analytic_gaussian_delta(math.exp(root), epsilon, sensitivity) > delta:
        root = float(np.nextafter(root, math.inf))  # the guarantee must hold exactly
    return math.exp(root)
