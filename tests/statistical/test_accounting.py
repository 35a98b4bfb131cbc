"""veil's accounting (Opacus underneath) against Google's independent dp-accounting.

References: dp_accounting's RdpAccountant (same RDP orders as ours), its PLD
accountant (a fine value discretisation), and its exact Gaussian-mechanism
helpers; the analytic Gaussian condition of Balle & Wang is re-evaluated here
with plain ``scipy.stats.norm.cdf``.
"""

from __future__ import annotations

import itertools
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.gaussian_mechanism import get_epsilon_gaussian, get_sigma_gaussian
from scipy.stats import norm

from veil.privacy.accounting import (
    RDP_ORDERS,
    ReleasePart,
    analytic_gaussian_delta,
    analytic_gaussian_sigma,
    calibrate_noise_multiplier,
    compose,
    default_delta,
    epsilon_from_history,
    epsilon_spent,
)

DELTA = 1e-5

# (target ε, sample rate q, steps): ε 0.01 … 10, q 1e-3 … 0.1, steps 10 … 10,000.
CONFIGS = [
    (0.01, 1e-3, 10),
    (0.02, 3e-3, 30),
    (0.05, 0.01, 10),
    (0.05, 1e-3, 100),
    (0.1, 0.1, 10),
    (0.1, 1e-3, 1000),
    (0.2, 0.01, 100),
    (0.3, 1e-3, 10_000),
    (0.5, 0.1, 50),
    (0.5, 0.01, 1000),
    (1.0, 1e-3, 5000),
    (1.0, 0.01, 1000),
    (1.0, 0.1, 100),
    (2.0, 0.1, 300),
    (3.0, 0.01, 10_000),
    (4.0, 0.1, 1000),
    (5.0, 3e-3, 10_000),
    (8.0, 0.1, 1000),
    (10.0, 0.03, 10_000),
    (10.0, 0.1, 3000),
]


def _events(sigma: float, q: float, steps: int) -> dp_event.DpEvent:
    inner = dp_event.GaussianDpEvent(sigma)
    one = inner if q == 1.0 else dp_event.PoissonSampledDpEvent(q, inner)
    return dp_event.SelfComposedDpEvent(one, steps)


def ref_rdp(sigma: float, q: float, steps: int, delta: float = DELTA) -> float:
    acc = dp_accounting.rdp.RdpAccountant(orders=RDP_ORDERS)
    acc.compose(_events(sigma, q, steps))
    return float(acc.get_epsilon(delta))


def ref_pld(event: dp_event.DpEvent, eps_hint: float, delta: float = DELTA) -> float:
    """PLD ε; the grid (1e-4, finer for small ε) keeps its own error ≲ 0.1 %."""
    acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=min(1e-4, eps_hint / 300))
    acc.compose(event)
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize(("eps", "q", "steps"), CONFIGS)
def test_rdp_agrees_with_dp_accounting_and_calibrates(eps: float, q: float, steps: int) -> None:
    sigma = calibrate_noise_multiplier(eps, DELTA, q, steps, accountant="rdp")
    assert epsilon_spent(sigma, q, steps, DELTA, accountant="rdp") <= eps  # never overshoots
    assert ref_rdp(sigma, q, steps) == pytest.approx(eps, rel=0.01)
    for s in (0.8 * sigma, 1.25 * sigma):  # ε away from the calibration point too
        assert epsilon_spent(s, q, steps, DELTA, accountant="rdp") == pytest.approx(
            ref_rdp(s, q, steps), rel=0.01
        )


@pytest.mark.parametrize(("eps", "q", "steps"), CONFIGS)
def test_prv_agrees_with_pld_and_calibrates(eps: float, q: float, steps: int) -> None:
    sigma = calibrate_noise_multiplier(eps, DELTA, q, steps, accountant="prv")
    ours = epsilon_spent(sigma, q, steps, DELTA, accountant="prv")
    pld = ref_pld(_events(sigma, q, steps), eps)
    assert ours <= eps  # the reported bound never exceeds the target
    assert pld == pytest.approx(eps, rel=0.01)  # the calibrated σ really reaches ε
    assert ours == pytest.approx(pld, rel=0.01)
    # RDP is a valid but looser bound than the (near-exact) PLD value.
    assert epsilon_spent(sigma, q, steps, DELTA, accountant="rdp") >= pld * 0.999


def test_heterogeneous_history_matches_pld() -> None:
    history = [(1.2, 0.01, 500), (2.0, 0.05, 200), (3.0, 1.0, 4)]
    event = dp_event.ComposedDpEvent([_events(*h) for h in history])
    ours = epsilon_from_history(history, DELTA, accountant="prv")
    assert ours == pytest.approx(ref_pld(event, ours), rel=0.01)
    rdp = dp_accounting.rdp.RdpAccountant(orders=RDP_ORDERS)
    rdp.compose(event)
    assert epsilon_from_history(history, DELTA, "rdp") == pytest.approx(
        rdp.get_epsilon(DELTA), rel=1e-6
    )


def _delta_closed_form(sigma: float, eps: float, sens: float) -> float:
    """Balle & Wang (2018) Thm 8, evaluated directly (no log space)."""
    return float(
        norm.cdf(sens / (2 * sigma) - eps * sigma / sens)
        - math.exp(eps) * norm.cdf(-sens / (2 * sigma) - eps * sigma / sens)
    )


@pytest.mark.parametrize("eps", [0.05, 0.3, 1.0, 3.0, 8.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-8])
@pytest.mark.parametrize("sens", [1.0, 2.5])
def test_analytic_gaussian_sigma(eps: float, delta: float, sens: float) -> None:
    sigma = analytic_gaussian_sigma(eps, delta, sensitivity=sens)
    achieved = _delta_closed_form(sigma, eps, sens)
    assert abs(achieved - delta) <= 1e-9 * delta
    assert analytic_gaussian_delta(sigma, eps, sens) <= delta
    # dp-accounting's exact Gaussian calibration (sensitivity 1; σ scales with Δ).
    assert sigma == pytest.approx(sens * get_sigma_gaussian(eps, delta), rel=1e-6)
    assert get_epsilon_gaussian(sigma / sens, delta) == pytest.approx(eps, rel=1e-6)
    if eps < 1:  # the classical calibration is valid only there, and looser
        assert sigma < sens * math.sqrt(2 * math.log(1.25 / delta)) / eps


def test_analytic_gaussian_delta_monotone_and_validated() -> None:
    deltas = [analytic_gaussian_delta(s, 1.0) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in itertools.pairwise(deltas))
    with pytest.raises(ValueError):
        analytic_gaussian_sigma(0.0, 1e-5)
    with pytest.raises(ValueError):
        analytic_gaussian_sigma(1.0, 0.0)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_compose_identical_gaussians_is_one_history_entry(accountant: str) -> None:
    k, sigma = 8, 3.0
    parts = [ReleasePart(f"count {i}", "gaussian", noise_multiplier=sigma) for i in range(k)]
    composed = compose(parts, DELTA, accountant=accountant)  # type: ignore[arg-type]
    single = epsilon_spent(sigma, 1.0, k, DELTA, accountant=accountant)  # type: ignore[arg-type]
    assert composed.epsilon == pytest.approx(single, rel=1e-12)
    assert composed.rule == "accountant"
    # k Gaussian releases with multiplier σ are exactly one with σ/√k.
    exact = get_epsilon_gaussian(sigma / math.sqrt(k), DELTA)
    if accountant == "prv":
        assert composed.epsilon == pytest.approx(exact, rel=0.01)
        assert composed.epsilon >= exact
    else:
        assert composed.epsilon >= exact


def test_compose_pure_parts_add() -> None:
    parts = [ReleasePart("laplace", "pure", epsilon=0.5), ReleasePart("exp", "pure", epsilon=0.3)]
    out = compose(parts, DELTA)
    assert out.epsilon == pytest.approx(0.8)
    assert out.delta == 0.0
    assert out.rule == "basic"
    assert out.accountant is None


def test_compose_mixed_parts() -> None:
    sigma, k, d_approx = 4.0, 5, 2e-6
    parts = [
        ReleasePart("votes", "gaussian", noise_multiplier=sigma, steps=k),
        ReleasePart("laplace", "pure", epsilon=0.25),
        ReleasePart("black box", "approx", epsilon=0.1, delta=d_approx),
    ]
    out = compose(parts, DELTA)
    expected = get_epsilon_gaussian(sigma / math.sqrt(k), DELTA - d_approx) + 0.35
    assert out.epsilon == pytest.approx(expected, rel=0.01)
    assert out.delta == pytest.approx(DELTA)
    assert out.rule == "accountant+basic"
    assert len(out.parts_as_dicts()) == 3
    with pytest.raises(ValueError):
        compose([ReleasePart("x", "approx", epsilon=1.0, delta=1e-3)], DELTA)


def test_release_part_validation() -> None:
    with pytest.raises(ValueError):
        ReleasePart("x", "gaussian")  # no noise multiplier
    with pytest.raises(ValueError):
        ReleasePart("x", "subsampled_gaussian", noise_multiplier=1.0)  # no q
    with pytest.raises(ValueError):
        ReleasePart("x", "pure", epsilon=1.0, delta=1e-6)
    with pytest.raises(ValueError):
        ReleasePart("x", "bogus", epsilon=1.0)  # type: ignore[arg-type]


def test_calibration_validation_and_edge_cases() -> None:
    assert calibrate_noise_multiplier(math.inf, DELTA, 0.01, 100) == 0.0
    for bad in (
        dict(target_epsilon=0.0),
        dict(target_epsilon=-1.0),
        dict(delta=0.0),
        dict(delta=1.0),
        dict(sample_rate=0.0),
        dict(sample_rate=1.5),
        dict(steps=0),
        dict(accountant="gdp"),
    ):
        args = dict(target_epsilon=1.0, delta=DELTA, sample_rate=0.01, steps=100) | bad
        with pytest.raises(ValueError):
            calibrate_noise_multiplier(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RDP"):  # RDP cannot certify ε this small
        calibrate_noise_multiplier(0.001, DELTA, 1e-3, 10, accountant="rdp")
    with pytest.raises(ValueError, match="resolution"):
        calibrate_noise_multiplier(1e-5, DELTA, 1e-3, 10, accountant="prv")
    assert epsilon_spent(0.0, 0.01, 10, DELTA) == math.inf
    assert epsilon_spent(1.0, 0.01, 0, DELTA) == 0.0


@pytest.mark.parametrize("n", [1, 9, 10, 1000, 99_999, 100_000, 10**7])
def test_default_delta(n: int) -> None:
    d = default_delta(n)
    assert d < 1 / n
    assert d == min(1e-5, 1 / (10 * n))
    assert np.isfinite(d)
