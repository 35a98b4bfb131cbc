"""Per-site privacy budget: split ε across phases, calibrate the noise, compose, report.

Unit of privacy: **one record of one site** (add/remove-one neighbours). Sites
hold disjoint data, so each site's guarantee is computed over the releases
*that site* made (parallel composition across sites; summing ε over sites is
the wrong unit). A strong site releases DP-SGD-trained LoRA adapters (R rounds
of Poisson-subsampled Gaussian steps), a noisy count vector and optionally a
noisy vote vector; a weak site releases the count vector and the vote vector.

Calibration. ``--epsilon`` is the site's TOTAL ε at the run's δ. Phase ``i``
gets a share ``w_i`` (default weights train 8 : profile 1 : vote 1, renormalised
over the phases the site takes part in: strong 0.8/0.1/0.1 or 0.89/0.11 without
voting; weak 0.5/0.5). Each phase is first calibrated alone at ``w_i·ε`` (the
analytic Gaussian mechanism for counts and votes, the Gaussian-DP central limit
approximation of Bu et al. 2020 for DP-SGD);
since composition is not additive, all noise scales are then multiplied by one
common factor chosen so that the *composed* ε equals the target: exactly for
Gaussian-only sites (Gaussian DP: ``μ² = Σ 1/σ_i²``), and within 1 % below the
target via the PRV (or RDP) accountant when DP-SGD is involved. ε too small for
the requested phases (a share below :data:`MIN_PHASE_EPSILON`) is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from scipy.optimize import brentq

from veil.errors import BadInput
from veil.privacy.accounting import (
    analytic_gaussian_delta,
    analytic_gaussian_sigma,
    epsilon_from_history,
)
from veil.privacy.composition import ReleasePart
from veil.privacy.report import PrivacyReport, default_statement
from veil.synth.config import SynthConfig

MIN_PHASE_EPSILON = 0.05
"""Smallest ε share a phase may get; below it the noise swamps any signal."""
_TOL = 0.01  # composed ε lands in [(1 - _TOL)·target, target]


@dataclass(frozen=True)
class NoisePlan:
    """The noise a site of one role adds in each phase, and the ε it adds up to.

    Attributes:
        role: ``"strong"`` or ``"weak"``.
        phases: the phases the role takes part in.
        epsilon: planned composed ε per record over all phases (≤ the target).
        delta: δ of the whole guarantee.
        accountant: how ``epsilon`` was composed (``"gaussian-dp"`` = exact, or prv/rdp).
        sigma_profile: noise std on each per-code count (L2 sensitivity 1).
        sigma_vote: noise std on each candidate's vote (L2 sensitivity 1).
        noise_multiplier: DP-SGD σ / C.
        sample_rate: DP-SGD Poisson rate q.
        steps: DP-SGD steps over all rounds.
    """

    role: str
    phases: tuple[str, ...]
    epsilon: float
    delta: float
    accountant: str
    sigma_profile: float | None = None
    sigma_vote: float | None = None
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (ε = ∞ as ``"inf"``)."""
        data = asdict(self)
        data["phases"] = list(self.phases)
        data["epsilon"] = "inf" if math.isinf(self.epsilon) else self.epsilon
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoisePlan:
        """Inverse of :meth:`to_dict`."""
        kwargs = dict(data)
        kwargs["phases"] = tuple(kwargs["phases"])
        kwargs["epsilon"] = float(kwargs["epsilon"])
        return cls(**kwargs)

    def parts(self, phases: Sequence[str] | None = None) -> list[ReleasePart]:
        """The releases of ``phases`` (default: all planned) as composition parts."""
        chosen = self.phases if phases is None else tuple(p for p in self.phases if p in phases)
        out: list[ReleasePart] = []
        for phase in chosen:
            if phase == "profile":
                out.append(ReleasePart("noisy code counts", "gaussian",
                                       noise_multiplier=float(self.sigma_profile or 0.0)))
            elif phase == "train" and self.steps > 0:
                out.append(ReleasePart("dp-sgd lora adapters", "subsampled_gaussian",
                                       noise_multiplier=float(self.noise_multiplier or 0.0),
                                       sample_rate=self.sample_rate, steps=self.steps))
            elif phase == "vote":
                out.append(ReleasePart("noisy nearest-candidate votes", "gaussian",
                                       noise_multiplier=float(self.sigma_vote or 0.0)))
        return out


def sgd_steps(cfg: SynthConfig) -> tuple[int, int]:
    """``(steps per round, total steps)`` of DP-SGD: ``round(local_epochs / q)`` per round."""
    per_round = max(1, round(cfg.local_epochs / cfg.sample_rate))
    return per_round, per_round * cfg.rounds


def gdp_epsilon(mu: float, delta: float) -> float:
    """Exact ε at δ of μ-Gaussian DP (a Gaussian with sensitivity 1 and std 1/μ).

    Balle & Wang's condition (:func:`~veil.privacy.accounting.analytic_gaussian_delta`)
    solved for ε. Compositions of Gaussian releases are μ-GDP with ``μ² = Σ 1/σ_i²``.
    """
    if mu <= 0:
        return 0.0
    if math.isinf(mu):
        return math.inf
    sigma = 1.0 / mu
    if analytic_gaussian_delta(sigma, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while analytic_gaussian_delta(sigma, hi) > delta:
        hi *= 2.0
    return float(brentq(lambda e: analytic_gaussian_delta(sigma, e) - delta, 0.0, hi,
                        xtol=1e-12, rtol=1e-12))


def clt_noise_multiplier(epsilon: float, delta: float, q: float, steps: int) -> float:
    """DP-SGD σ whose Gaussian-DP central-limit approximation is (ε, δ)-DP.

    Bu, Dong, Long & Su (2020): ``steps`` Poisson-subsampled Gaussian steps are
    approximately μ-GDP with ``μ = q·sqrt(steps·(exp(1/σ²) − 1))``. Only used to
    set DP-SGD's noise *relative* to the other phases before the exact joint
    calibration (:func:`plan_for_role`); never to report ε.
    """
    target_mu = 1.0 / analytic_gaussian_sigma(epsilon, delta)

    def gap(log_sigma: float) -> float:
        inv = min(math.exp(-2.0 * log_sigma), 700.0)
        return math.log(q * math.sqrt(steps * math.expm1(inv))) - math.log(target_mu)

    lo, hi = math.log(1e-2), math.log(1e4)
    if gap(hi) > 0:
        return math.exp(hi)
    if gap(lo) < 0:
        return math.exp(lo)
    return math.exp(float(brentq(gap, lo, hi, xtol=1e-10)))


def composed_epsilon(parts: Sequence[ReleasePart], delta: float,
                     accountant: str = "prv") -> tuple[float, str]:
    """``(ε, accountant used)`` of ``parts`` on one site's data, at ``delta``.

    Gaussian-only compositions are computed exactly (Gaussian DP); any
    subsampled part goes through the PRV or RDP accountant with the rest.
    """
    if not parts:
        return 0.0, "none"
    entries = [p.history_entry() for p in parts]
    if any(sigma == 0.0 and steps > 0 for sigma, _, steps in entries):
        return math.inf, "none (no noise)"
    if all(q == 1.0 for _, q, _ in entries):
        mu = math.sqrt(math.fsum(steps / sigma**2 for sigma, _, steps in entries))
        return gdp_epsilon(mu, delta), "gaussian-dp"
    return epsilon_from_history(entries, delta, accountant), accountant  # type: ignore[arg-type]


def plan_for_role(cfg: SynthConfig, role: str) -> NoisePlan:
    """The calibrated :class:`NoisePlan` of a site with ``role`` under ``cfg``.

    Raises:
        BadInput: ε too small for the role's phases.
    """
    phases = cfg.phases_for(role)
    shares = tuple(cfg.share(p) for p in phases)
    _, total_steps = sgd_steps(cfg)
    return _plan(role, phases, shares, cfg.epsilon, cfg.delta, cfg.sample_rate, total_steps,
                 cfg.accountant)


@lru_cache(maxsize=64)
def _plan(role: str, phases: tuple[str, ...], shares: tuple[float, ...], epsilon: float,
          delta: float, q: float, steps: int, accountant: str) -> NoisePlan:
    has_train = "train" in phases and steps > 0
    base = NoisePlan(role, phases, 0.0, delta, "none",
                     sample_rate=q if has_train else None, steps=steps if has_train else 0)
    if not phases:
        return base
    if math.isinf(epsilon):
        return _scaled(base, {p: 0.0 for p in phases}, 1.0, math.inf, "none (no noise)")
    weights = [s / math.fsum(shares) for s in shares]
    eps_i = {p: w * epsilon for p, w in zip(phases, weights, strict=True)}
    small = [p for p, e in eps_i.items() if e < MIN_PHASE_EPSILON]
    if small:
        raise BadInput(
            f"--epsilon {epsilon:g} is too small for the phases {', '.join(phases)}: "
            f"{', '.join(small)} would get less than {MIN_PHASE_EPSILON:g} "
            "(raise --epsilon, or drop phases with --no-refine / --strong-only)")
    sigma0 = {p: analytic_gaussian_sigma(e, delta) for p, e in eps_i.items() if p != "train"}
    if not has_train:
        target_sigma = analytic_gaussian_sigma(epsilon, delta)
        scale = target_sigma * math.sqrt(math.fsum(1.0 / s**2 for s in sigma0.values()))
        plan = _scaled(base, sigma0, scale, 0.0, "gaussian-dp")
        eps, acc = composed_epsilon(plan.parts(), delta, accountant)
        return _scaled(base, sigma0, scale, min(eps, epsilon), acc)
    sigma0["train"] = clt_noise_multiplier(eps_i["train"], delta, q, steps)

    def gap(log_scale: float) -> float:
        plan = _scaled(base, sigma0, math.exp(log_scale), 0.0, accountant)
        eps, _ = composed_epsilon(plan.parts(), delta, accountant)
        return math.log(max(eps, 1e-300)) - math.log(epsilon)

    log_scale = _solve(gap, math.log(1.0 - _TOL))
    plan = _scaled(base, sigma0, math.exp(log_scale), 0.0, accountant)
    eps, acc = composed_epsilon(plan.parts(), delta, accountant)
    return _scaled(base, sigma0, math.exp(log_scale), eps, acc)


def _scaled(base: NoisePlan, sigma0: dict[str, float], scale: float, epsilon: float,
            accountant: str) -> NoisePlan:
    def get(p: str) -> float | None:
        return sigma0[p] * scale if p in sigma0 else None

    return NoisePlan(base.role, base.phases, epsilon, base.delta, accountant,
                     sigma_profile=get("profile"), sigma_vote=get("vote"),
                     noise_multiplier=get("train") if base.steps else None,
                     sample_rate=base.sample_rate, steps=base.steps)


def _solve(gap: Any, low: float) -> float:
    """x with ``low <= gap(x) <= 0`` for decreasing ``gap`` (Illinois regula falsi)."""
    lo, hi = 0.0, 0.0
    f_hi = gap(hi)
    while f_hi > 0:  # too little noise: step up
        lo, hi = hi, hi + 0.5
        f_hi = gap(hi)
    f_lo = gap(lo) if lo != hi else f_hi
    while f_lo <= 0:  # not bracketed from below: step down
        hi, f_hi = lo, f_lo
        lo -= 0.5
        f_lo = gap(lo)
    side = 0
    for _ in range(60):
        if low <= f_hi <= 0:
            return hi
        x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        if not lo < x < hi:
            x = 0.5 * (lo + hi)
        fx = gap(x)
        if fx > 0:
            lo, f_lo = x, fx
            if side == -1:
                f_hi /= 2
            side = -1
        else:
            hi, f_hi = x, fx
            if side == 1:
                f_lo /= 2
            side = 1
    return hi


def site_report(site: str, plan: NoisePlan, completed: Sequence[str], *,
                clipping_norm: float | None, target_epsilon: float,
                failed_at: str | None = None) -> PrivacyReport:
    """The PrivacyReport of one site: the releases it actually made, composed.

    Args:
        site: the site's name.
        plan: its noise plan (what it agreed to and recorded in its ledger up front).
        completed: the phases whose release reached the server.
        clipping_norm: DP-SGD clipping norm C (strong sites).
        target_epsilon: the run's ``--epsilon``.
        failed_at: the phase where the site dropped out, if it did.
    """
    parts = plan.parts(completed)
    eps, acc = composed_epsilon(parts, plan.delta, _accountant_of(plan))
    has_train = any(p.kind == "subsampled_gaussian" for p in parts)
    mechanism = "federated DP synthesis: " + (", ".join(p.name for p in parts) or "no release")
    took_part = bool(plan.phases)
    statement = default_statement(
        mechanism, "record", eps, plan.delta, acc,
        noise_multiplier=plan.noise_multiplier if has_train else None,
        sample_rate=plan.sample_rate if has_train else None,
        steps=plan.steps if has_train else None,
        clipping_norm=clipping_norm if has_train else None,
    ) + (f" This report covers the records of site {site} only; sites hold disjoint data, "
         "so each site's guarantee stands on its own (it does not add up across sites).")
    if not took_part:  # e.g. a weak site under --strong-only
        statement = (f"Site {site} took no part in this run's releases (no phase planned): "
                     "nothing computed from its records left the site, so it spent no "
                     "privacy budget (ε = 0) and recorded nothing in its ledger.")
    return PrivacyReport.build(
        mechanism, "record", eps, plan.delta, acc,
        noise_multiplier=plan.noise_multiplier if has_train else None,
        sample_rate=plan.sample_rate if has_train else None,
        steps=plan.steps if has_train else None,
        clipping_norm=clipping_norm if has_train else None,
        composition=parts, statement=statement,
        extra={"site": site, "role": plan.role, "phases_planned": list(plan.phases),
               "phases_released": [p for p in plan.phases if p in completed],
               "failed_at": failed_at, "target_epsilon": target_epsilon,
               "planned_epsilon": plan.epsilon, "sigma_profile": plan.sigma_profile,
               "sigma_vote": plan.sigma_vote,
               "ledger_note": ("the site recorded the planned epsilon in its own ledger "
                               "before its first release") if took_part else
                              "nothing recorded: the site released nothing"},
    )


def _accountant_of(plan: NoisePlan) -> str:
    return plan.accountant if plan.accountant in ("prv", "rdp") else "prv"
