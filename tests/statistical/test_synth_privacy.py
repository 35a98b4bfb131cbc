"""Per-site privacy of veil synth against closed forms and an independent accountant.

- profile noise: its std is the analytic-Gaussian σ (Balle & Wang's condition,
  re-implemented here with scipy) and its distribution is normal (KS test);
- the composed per-site ε of each role's noise plan, recomputed with
  dp-accounting's PLD and RDP accountants from the plan's σ, q and steps,
  lands within 2 % of the target and not above it (beyond accountant slack).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import dp_event, pld, rdp
from scipy import stats

from veil.errors import BadInput
from veil.synth.budget import NoisePlan, plan_for_role, site_report
from veil.synth.config import SynthConfig
from veil.synth.profile import noisy_counts

DELTA = 1e-5


def bw_delta(sigma: float, eps: float) -> float:
    """Balle & Wang (2018), Thm 8, sensitivity 1, straight from the normal CDF."""
    return float(stats.norm.cdf(0.5 / sigma - eps * sigma)
                 - math.exp(eps) * stats.norm.cdf(-0.5 / sigma - eps * sigma))


def _events(plan: NoisePlan, phases: tuple[str, ...] | None = None) -> dp_event.DpEvent:
    events: list[dp_event.DpEvent] = []
    for phase in phases or plan.phases:
        if phase == "train":
            step = dp_event.PoissonSampledDpEvent(
                plan.sample_rate, dp_event.GaussianDpEvent(plan.noise_multiplier))
            events.append(dp_event.SelfComposedDpEvent(step, plan.steps))
        elif phase == "profile":
            events.append(dp_event.GaussianDpEvent(plan.sigma_profile))
        elif phase == "vote":
            events.append(dp_event.GaussianDpEvent(plan.sigma_vote))
    return dp_event.ComposedDpEvent(events)


def pld_epsilon(plan: NoisePlan, phases: tuple[str, ...] | None = None) -> float:
    acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(_events(plan, phases))
    return float(acc.get_epsilon(plan.delta))


def rdp_epsilon(plan: NoisePlan) -> float:
    acc = rdp.RdpAccountant(orders=[1 + x / 10 for x in range(1, 100)] + list(range(12, 257)))
    acc.compose(_events(plan))
    return float(acc.get_epsilon(plan.delta))


def test_profile_noise_is_the_analytic_gaussian() -> None:
    cfg = SynthConfig(epsilon=2.0, delta=DELTA)
    plan = plan_for_role(cfg, "weak")  # profile + vote, equal shares
    assert plan.sigma_profile == pytest.approx(plan.sigma_vote, rel=1e-12)
    # two equal Gaussians compose to one with sigma / sqrt(2), which must be exactly (2, 1e-5)-DP
    sigma_eff = plan.sigma_profile / math.sqrt(2)
    assert bw_delta(sigma_eff, 2.0) == pytest.approx(DELTA, rel=1e-6)
    counts = np.arange(20000, dtype=float) % 7
    noise = noisy_counts(counts, plan.sigma_profile, np.random.default_rng(0)) - counts
    assert noise.std() == pytest.approx(plan.sigma_profile, rel=0.02)
    assert stats.kstest(noise / plan.sigma_profile, "norm").pvalue > 1e-3
    assert not np.any(noise == 0)


def test_weak_site_plan_composes_exactly_to_the_target() -> None:
    for eps in (1.0, 8.0):
        plan = plan_for_role(SynthConfig(epsilon=eps, delta=DELTA), "weak")
        assert plan.epsilon == pytest.approx(eps, rel=1e-9)
        assert pld_epsilon(plan) == pytest.approx(eps, rel=0.01)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_strong_site_plan_matches_dp_accounting(accountant: str) -> None:
    cfg = SynthConfig(epsilon=8.0, delta=DELTA, rounds=2, local_epochs=1.0, sample_rate=0.1,
                      strong_vote=True, accountant=accountant)  # type: ignore[arg-type]
    plan = plan_for_role(cfg, "strong")
    assert plan.phases == ("profile", "train", "vote") and plan.steps == 20
    assert 0.99 * 8.0 <= plan.epsilon <= 8.0
    reference = pld_epsilon(plan) if accountant == "prv" else rdp_epsilon(plan)
    assert reference == pytest.approx(8.0, rel=0.02)
    assert reference <= 8.0 * 1.005
    # the shares order the noise: train (0.8) is the least noisy per unit of its budget
    assert plan.sigma_profile == pytest.approx(plan.sigma_vote)
    assert plan.noise_multiplier is not None and plan.noise_multiplier < plan.sigma_profile


def test_report_covers_only_released_phases() -> None:
    cfg = SynthConfig(epsilon=4.0, delta=DELTA, accountant="rdp", rounds=2, sample_rate=0.25)
    plan = plan_for_role(cfg, "weak")
    rep = site_report("site_9", plan, ["profile"], clipping_norm=1.0, target_epsilon=4.0,
                      failed_at="vote")
    alone = pld_epsilon(plan, ("profile",))
    assert rep.epsilon == pytest.approx(alone, rel=0.01) and rep.epsilon < 4.0
    assert rep.extra["failed_at"] == "vote" and rep.extra["phases_released"] == ["profile"]
    assert "site_9" in rep.statement and rep.unit == "record"


def test_too_small_epsilon_is_refused_and_infinite_means_no_noise() -> None:
    with pytest.raises(BadInput, match="too small"):
        plan_for_role(SynthConfig(epsilon=0.08, delta=DELTA), "weak")
    assert plan_for_role(SynthConfig(epsilon=0.08, delta=DELTA, refine=False),
                         "weak").sigma_profile is not None
    inf = plan_for_role(SynthConfig(epsilon=math.inf, delta=DELTA), "strong")
    assert inf.sigma_profile == 0.0 and inf.noise_multiplier == 0.0 and math.isinf(inf.epsilon)
