"""Composition of several releases computed from one dataset.

Gaussian and subsampled-Gaussian releases (DP-SGD, noisy counts and
histograms, noisy votes) are composed tightly together through an accountant
(:func:`veil.privacy.accounting.epsilon_from_history`); pure-ε releases
(Laplace, exponential mechanism) and black-box (ε, δ) releases are added on
top by basic composition. ε is per record (add/remove-one neighbours): it
bounds what the whole set of releases reveals about any single record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

PartKind = Literal["subsampled_gaussian", "gaussian", "pure", "approx"]
_GAUSSIAN_KINDS = ("subsampled_gaussian", "gaussian")


@dataclass(frozen=True)
class ReleasePart:
    """One release computed from a dataset, as it enters a composition.

    Attributes:
        name: label of the release (e.g. ``"dp-sgd"``, ``"label counts"``).
        kind: ``"subsampled_gaussian"`` (σ, q, steps), ``"gaussian"`` (σ, steps;
            no subsampling), ``"pure"`` (ε-DP, e.g. Laplace or exponential
            mechanism) or ``"approx"`` (a black-box (ε, δ) guarantee).
        noise_multiplier: σ / per-record L2 sensitivity (Gaussian kinds).
        sample_rate: Poisson sampling rate per step (``subsampled_gaussian``).
        steps: number of identical noisy steps/releases in this part.
        epsilon: per-record ε of the whole part (``pure`` / ``approx``).
        delta: δ of the part (``approx`` only).
    """

    name: str
    kind: PartKind
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int = 1
    epsilon: float | None = None
    delta: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in (*_GAUSSIAN_KINDS, "pure", "approx"):
            raise ValueError(f"release part {self.name!r}: unknown kind {self.kind!r}")
        if self.kind in _GAUSSIAN_KINDS:
            if self.noise_multiplier is None:
                raise ValueError(f"release part {self.name!r}: needs noise_multiplier")
            q = 1.0 if self.kind == "gaussian" else self.sample_rate
            if self.kind == "gaussian" and self.sample_rate not in (None, 1.0):
                raise ValueError(f"release part {self.name!r}: a 'gaussian' part has q = 1")
            if q is None:
                raise ValueError(f"release part {self.name!r}: needs sample_rate")
            sigma = self.noise_multiplier
            if math.isnan(sigma) or sigma < 0 or not (0.0 < q <= 1.0):
                raise ValueError(f"release part {self.name!r}: needs sigma >= 0, q in (0, 1]")
            if int(self.steps) != self.steps or self.steps < 0:
                raise ValueError(f"release part {self.name!r}: steps must be an integer >= 0")
        else:
            eps = self.epsilon
            if eps is None or math.isnan(eps) or eps < 0:
                raise ValueError(f"release part {self.name!r}: needs epsilon >= 0")
            if self.kind == "pure" and self.delta != 0.0:
                raise ValueError(f"release part {self.name!r}: a 'pure' part has delta = 0")
            if not (0.0 <= self.delta < 1.0):
                raise ValueError(f"release part {self.name!r}: delta must be in [0, 1)")

    def history_entry(self) -> tuple[float, float, int]:
        """``(σ, q, steps)`` of a Gaussian part, as the accountants take it."""
        if self.kind not in _GAUSSIAN_KINDS or self.noise_multiplier is None:
            raise ValueError(f"release part {self.name!r} is not Gaussian")
        q = 1.0 if self.kind == "gaussian" else float(self.sample_rate or 1.0)
        return (float(self.noise_multiplier), q, int(self.steps))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) of the part."""
        return asdict(self)


@dataclass(frozen=True)
class ComposedGuarantee:
    """The (ε, δ) of several releases on one dataset, and how it was obtained.

    Attributes:
        epsilon: total per-record ε.
        delta: total δ.
        rule: ``"accountant"`` (all parts Gaussian, composed tightly),
            ``"basic"`` (ε and δ summed) or ``"accountant+basic"``.
        accountant: the accountant used for the Gaussian parts, or None.
        description: one sentence saying which parts were composed how.
        parts: the parts, in the order given.
    """

    epsilon: float
    delta: float
    rule: str
    accountant: str | None
    description: str
    parts: tuple[ReleasePart, ...]

    def parts_as_dicts(self) -> tuple[Mapping[str, Any], ...]:
        """The parts as dicts, e.g. for ``PrivacyReport.composition``."""
        return tuple(p.to_dict() for p in self.parts)


def compose(
    parts: Sequence[ReleasePart], delta: float, accountant: Literal["prv", "rdp"] = "prv"
) -> ComposedGuarantee:
    """Compose several releases computed from the same dataset.

    Gaussian and subsampled-Gaussian parts are composed together, tightly,
    through the accountant's history at ``δ_G = delta − Σ δ_approx``; pure-ε
    parts and black-box (ε_i, δ_i) parts are added on top by basic composition
    (ε and δ sum). The unit of privacy is whatever the parts share (one record).

    Args:
        parts: the releases.
        delta: total δ budget of the composition, in (0, 1).
        accountant: ``"prv"`` or ``"rdp"`` for the Gaussian parts.

    Returns:
        The composed guarantee; its ``delta`` is at most ``delta``.
    """
    from veil.privacy.accounting import epsilon_from_history

    if not (0.0 < delta < 1.0):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if accountant not in ("prv", "rdp"):
        raise ValueError(f"accountant must be 'prv' or 'rdp', got {accountant!r}")
    gaussian = [p for p in parts if p.kind in _GAUSSIAN_KINDS]
    basic = [p for p in parts if p.kind not in _GAUSSIAN_KINDS]
    basic_eps = math.fsum(float(p.epsilon or 0.0) for p in basic)
    basic_delta = math.fsum(p.delta for p in basic)
    if basic_delta > delta:
        raise ValueError(f"the parts' deltas sum to {basic_delta:g} > delta {delta:g}")
    if gaussian:
        delta_g = delta - basic_delta
        if delta_g <= 0:
            raise ValueError("no delta left for the Gaussian parts")
        eps_g = epsilon_from_history([p.history_entry() for p in gaussian], delta_g, accountant)
        total_eps, total_delta = eps_g + basic_eps, delta
        rule = "accountant+basic" if basic else "accountant"
        desc = (
            f"{len(gaussian)} Gaussian part(s) composed with the {accountant.upper()} "
            f"accountant at delta {delta_g:.3g} (epsilon {eps_g:.4g})"
        )
        if basic:
            desc += f"; {len(basic)} other part(s) added by basic composition"
    else:
        total_eps, total_delta, rule = basic_eps, basic_delta, "basic"
        desc = f"{len(basic)} part(s) added by basic composition (epsilons and deltas sum)"
    return ComposedGuarantee(
        epsilon=total_eps,
        delta=total_delta,
        rule=rule,
        accountant=accountant if gaussian else None,
        description=desc + ".",
        parts=tuple(parts),
    )
