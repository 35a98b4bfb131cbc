"""PrivacyReport: what a release guarantees, to whom, in which unit — ``privacy.json``.

Every veil run writes one. ``epsilon`` is the (ε, δ)-differential-privacy
parameter of the whole release for one unit of privacy: a ``token`` (metric
local DP: each token randomised before it leaves the machine), a ``record``
(one row / document, e.g. one report, of the training or source data) or a
``site`` (everything one participating site contributed). ε = ∞ is allowed and
means *no formal guarantee*; JSON has no infinity, so it is written as the
string ``"inf"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from veil.artifacts import write_json
from veil.errors import BadInput

UNITS: tuple[str, ...] = ("token", "record", "site")

_UNIT_TEXT = {
    "token": "each individual token (word piece) of the input text",
    "record": "each individual record (one row or document, e.g. one report) of the data",
    "site": "the entire contribution of any one participating site (all of its records)",
}
_ASSUMPTION = {
    "token": "The bound is per token: what a whole document reveals grows with the number "
             "of its tokens (about k·ε for k tokens), so it protects words and phrases, "
             "not documents or people.",
    "record": "It assumes each person contributes one record; a person with k records is "
              "protected with about k·ε.",
    "site": "It protects each site as a whole; individuals are protected only as part of "
            "their site's data.",
}
_NEIGHBOUR_TEXT = {
    "token": "replacing any one token by another (for metric local DP: per unit of "
             "embedding distance between the two)",
    "record": "adding or removing any one record",
    "site": "adding or removing any one site's data",
}


def _json_safe(value: Any) -> Any:
    """Recursively make ``value`` strict-JSON: ±inf → ``"inf"``/``"-inf"``, tuples → lists."""
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("NaN cannot be written to privacy.json")
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "to_dict"):  # e.g. veil.privacy.composition.ReleasePart
        return _json_safe(value.to_dict())
    return value


def _as_epsilon(value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "∞"):
        return math.inf
    eps = float(value)
    if math.isnan(eps) or eps < 0:
        raise ValueError(f"epsilon must be >= 0 (inf allowed), got {value!r}")
    return eps


def _fmt(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.4g}"


@dataclass(frozen=True)
class PrivacyReport:
    """The privacy guarantee of one release, as written to ``privacy.json``.

    Attributes:
        mechanism: what produced the release (e.g. ``"dp-sgd"``, ``"stamp-polar"``).
        unit: unit of privacy: ``"token"``, ``"record"`` or ``"site"``.
        epsilon: ε of the whole release per unit (``inf`` = no guarantee).
        delta: δ (0 for pure ε-DP); the probability the ε bound may fail.
        accountant: how ε was computed (``"prv"``, ``"rdp"``, ``"basic"``, ...).
        statement: one plain-English paragraph for a data steward.
        noise_multiplier: Gaussian σ / sensitivity, where Gaussian noise was used.
        sample_rate: Poisson sampling rate per step, where subsampling was used.
        steps: number of noisy steps / releases accounted.
        clipping_norm: per-unit L2 clipping norm (sensitivity), where clipping was used.
        composition: the parts composed into ε, as dicts.
        extra: pipeline-specific fields (per-group ε, per-site info, ...), JSON-ready.
        dataset_fingerprint: SHA-256 of the input dataset (never its content).
        created: ISO-8601 UTC time the report was built.
        veil_version: version of veil that produced the release.
    """

    mechanism: str
    unit: str
    epsilon: float
    delta: float
    accountant: str | None
    statement: str
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int | None = None
    clipping_norm: float | None = None
    composition: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    dataset_fingerprint: str | None = None
    created: str = ""
    veil_version: str = ""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if not self.mechanism:
            raise ValueError("mechanism must be named")
        object.__setattr__(self, "epsilon", _as_epsilon(self.epsilon))
        if not (0.0 <= float(self.delta) < 1.0):
            raise ValueError(f"delta must be in [0, 1), got {self.delta!r}")
        object.__setattr__(self, "delta", float(self.delta))
        for name in ("noise_multiplier", "sample_rate", "clipping_norm"):
            v = getattr(self, name)
            if v is not None and (math.isnan(float(v)) or float(v) < 0):
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        if self.sample_rate is not None and self.sample_rate > 1:
            raise ValueError(f"sample_rate must be <= 1, got {self.sample_rate!r}")
        if self.steps is not None and (int(self.steps) != self.steps or self.steps < 0):
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if not self.statement.strip():
            raise ValueError("statement must not be empty")
        parts = tuple(dict(_json_safe(p)) for p in self.composition)
        object.__setattr__(self, "composition", parts)
        object.__setattr__(self, "extra", dict(self.extra))

    @classmethod
    def build(
        cls,
        mechanism: str,
        unit: str,
        epsilon: float | str,
        delta: float,
        accountant: str | None = None,
        *,
        noise_multiplier: float | None = None,
        sample_rate: float | None = None,
        steps: int | None = None,
        clipping_norm: float | None = None,
        composition: Sequence[Any] = (),
        extra: Mapping[str, Any] | None = None,
        dataset_fingerprint: str | None = None,
        statement: str | None = None,
    ) -> PrivacyReport:
        """A report stamped with the current time and veil version.

        Without ``statement`` a default paragraph is written from the fields
        (:func:`default_statement`). ``composition`` takes dicts or
        :class:`~veil.privacy.composition.ReleasePart` objects; ``epsilon``
        takes a float or the string ``"inf"``.
        """
        from veil import __version__

        eps = _as_epsilon(epsilon)
        if statement is None:
            statement = default_statement(
                mechanism, unit, eps, delta, accountant, noise_multiplier=noise_multiplier,
                sample_rate=sample_rate, steps=steps, clipping_norm=clipping_norm,
            )
        return cls(
            mechanism=mechanism, unit=unit, epsilon=eps, delta=delta, accountant=accountant,
            statement=statement, noise_multiplier=noise_multiplier, sample_rate=sample_rate,
            steps=steps, clipping_norm=clipping_norm,
            composition=tuple(_json_safe(p) for p in composition),
            extra=dict(extra or {}), dataset_fingerprint=dataset_fingerprint,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            veil_version=__version__,
        )

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict (infinities as ``"inf"``), keys in a stable order."""
        return {f.name: _json_safe(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyReport:
        """Inverse of :meth:`to_dict`; raises ValueError on unknown or invalid fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown privacy report fields: {', '.join(unknown)}")
        kwargs = dict(data)
        kwargs["composition"] = tuple(kwargs.get("composition") or ())
        kwargs["extra"] = dict(kwargs.get("extra") or {})
        return cls(**kwargs)

    def write(self, path: str | Path) -> None:
        """Write ``privacy.json`` atomically (temp file + rename)."""
        write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> PrivacyReport:
        """Read a ``privacy.json``; a malformed file raises :class:`BadInput` naming it."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return cls.from_dict(data)
        except OSError as exc:
            raise BadInput(f"cannot read privacy report ({exc.strerror})", path=path) from None
        except (ValueError, TypeError) as exc:
            raise BadInput(f"invalid privacy report: {exc}", path=path) from None


def default_statement(
    mechanism: str,
    unit: str,
    epsilon: float,
    delta: float,
    accountant: str | None,
    *,
    noise_multiplier: float | None = None,
    sample_rate: float | None = None,
    steps: int | None = None,
    clipping_norm: float | None = None,
) -> str:
    """One plain-English paragraph a data steward can read, built from the fields.

    It says what was protected (the unit), against whom (anyone who sees the
    output), with which ε and δ, how ε was obtained, and under which
    assumptions; for ε = ∞ it says plainly that there is no formal guarantee.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    who = _UNIT_TEXT[unit]
    if math.isinf(epsilon):
        return (
            f"This release (mechanism: {mechanism}) has NO formal privacy guarantee "
            f"(ε = ∞, unit: {unit}): nothing bounds what it reveals about {who}. "
            "It may reproduce or allow reconstruction of the input; treat it as being "
            "as sensitive as the original data."
        )
    how = f" ε was computed with the {accountant} accountant" if accountant else ""
    details = [
        f"noise multiplier {noise_multiplier:.4g}" if noise_multiplier is not None else "",
        f"sampling rate {sample_rate:.4g}" if sample_rate is not None else "",
        f"{steps} steps" if steps is not None else "",
        f"clipping norm {clipping_norm:.4g}" if clipping_norm is not None else "",
    ]
    details = [d for d in details if d]
    if how and details:
        how += " from " + ", ".join(details)
    how = how + "." if how else ""
    delta_text = (
        "δ = 0 (pure differential privacy)" if delta == 0
        else f"δ = {delta:.2g}, the probability that this bound fails"
    )
    return (
        f"This release (mechanism: {mechanism}) protects {who} (unit of privacy: {unit}) "
        f"with ({_fmt(epsilon)}, {delta:.2g})-differential privacy: {_NEIGHBOUR_TEXT[unit]} "
        f"changes the probability of any output by at most a factor e^ε = "
        f"{_fmt(math.exp(min(epsilon, 700.0)))}, with ε = {_fmt(epsilon)} and {delta_text}. "
        "This holds against anyone who sees the output, whatever else they know and however "
        f"much computing power they have.{how} {_ASSUMPTION[unit]} It also assumes that the "
        "random noise and its seed stay secret and that settings were not tuned on the "
        "private data itself. It does not hide population-level patterns the output is "
        "meant to show."
    )
