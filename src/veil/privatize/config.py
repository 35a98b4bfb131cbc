"""Configuration of a STAMP privatization run (pydantic) and parsing of the budget options.

Privacy meaning of the budget fields. Every token of a document falls in one of four
groups (G1 sensitive+important, G2 sensitive+unimportant, G3 non-sensitive+important,
G4 non-sensitive+unimportant) and is released with its group's ε: **per-token metric
local DP** (unit: one token; distance: chordal distance between unit token embeddings for
the polar mechanism). The per-group ε are

* ``group_eps`` when given (explicit override, ``--group-eps g1,g2,g3,g4``), else
* ``epsilon × budgets`` — the budgets are *multipliers* of the base ε, so the default
  profile ``2:1:4:3`` gives G1 = 2ε, G2 = ε (the most protected group), G3 = 4ε, G4 = 3ε.

A group ε of ``0`` masks that group's tokens (nothing about them is released); ``inf``
releases them verbatim (no protection at all). The guarantee only compares documents
with the same group pattern: the grouping rule is public and the group labels of a
document are not randomised.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from veil.errors import BadInput

MECHANISM_NAMES = ("polar", "laplace", "dchi", "exponential")
DEFAULT_BUDGETS = (2.0, 1.0, 4.0, 3.0)
GROUP_NAMES = ("G1", "G2", "G3", "G4")


def _parse_number(item: str, what: str) -> float:
    text = item.strip().lower()
    if text in ("inf", "infinity", "∞"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{what}: {item.strip()[:20]!r} is not a number (use digits, 0 or inf)"
                       ) from None
    if math.isnan(value) or value < 0:
        raise BadInput(f"{what}: every value must be >= 0 or inf, got {value:g}")
    return value


def parse_four(spec: str, sep: str, what: str) -> tuple[float, float, float, float]:
    """Parse four non-negative numbers (``0`` and ``inf`` allowed) joined by ``sep``.

    Raises:
        BadInput: not exactly four parts, a part that is not a number, or a negative one.
    """
    parts = spec.split(sep)
    if len(parts) != 4:
        raise BadInput(f"{what} needs exactly 4 values (G1{sep}G2{sep}G3{sep}G4), "
                       f"got {len(parts)}")
    a, b, c, d = (_parse_number(p, what) for p in parts)
    return a, b, c, d


def parse_budgets(spec: str) -> tuple[float, float, float, float]:
    """``"2:1:4:3"`` -> ``(2, 1, 4, 3)``: multipliers of ``--epsilon`` for G1..G4."""
    return parse_four(spec, ":", "--budgets")


def parse_group_eps(spec: str) -> tuple[float, float, float, float]:
    """``"200,100,400,300"`` -> per-group ε for G1..G4 (``0`` masks, ``inf`` keeps verbatim)."""
    return parse_four(spec, ",", "--group-eps")


class PrivatizeConfig(BaseModel):
    """Settings of :class:`veil.privatize.stamp.Privatizer`.

    Attributes:
        epsilon: base per-token ε (> 0, finite); group ε = ``epsilon × budgets[g]``.
        budgets: G1..G4 multipliers of ``epsilon`` (each >= 0 or inf).
        group_eps: explicit per-group ε (overrides ``epsilon``/``budgets``); 0 = mask,
            inf = verbatim.
        tau: importance threshold in [-1, 1] on cos(token, task vector).
        mechanism: ``polar`` (the STAMP mechanism), ``laplace``, ``dchi`` or ``exponential``.
        uniform: the non-task-aware baseline: every token gets one ε equal to the average
            per-token ε STAMP would give (over finite-ε tokens, see ``uniform_scope``).
        uniform_scope: average over the whole ``privatize`` call (``corpus``) or per document.
        embeddings: ``minilm``, ``smollm2-135m`` or a local Hugging Face folder.
        kappa_scale: ``paper`` (κ = ε, STAMP Thm 3) or ``code`` (κ = ε/π, reference code;
            the guarantee is then ε/π-metric-LDP, i.e. stronger than the nominal ε).
        decode_any: let a word-initial piece decode to a continuation piece and vice versa.
        decode_metric: nearest-neighbour rule; ``default`` is cosine for polar and laplace,
            Euclidean for dchi (exponential samples instead of decoding).
        task: task or query text shared by every document (per-document tasks are passed
            to :meth:`Privatizer.privatize`).
        seed: noise seed (ignored when ``secure``).
        secure: draw the noise seed from the OS entropy pool (use for real releases).
        mask_text: text written for masked (ε = 0) tokens; default the tokenizer's mask token.
        chunk_rows: query rows per decoding matrix product.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = 100.0
    budgets: tuple[float, float, float, float] = DEFAULT_BUDGETS
    group_eps: tuple[float, float, float, float] | None = None
    tau: float = 0.5
    mechanism: str = "polar"
    uniform: bool = False
    uniform_scope: Literal["corpus", "document"] = "corpus"
    embeddings: str = "minilm"
    kappa_scale: Literal["paper", "code"] = "paper"
    decode_any: bool = False
    decode_metric: Literal["default", "cosine", "euclidean"] = "default"
    task: str | None = None
    seed: int | None = 0
    secure: bool = False
    mask_text: str | None = None
    chunk_rows: int = 1024

    @field_validator("epsilon")
    @classmethod
    def _eps(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"--epsilon must be a finite number > 0, got {v:g} "
                             "(to mask or keep a group use --group-eps with 0 or inf)")
        return v

    @field_validator("budgets", "group_eps")
    @classmethod
    def _four(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and any(math.isnan(x) or x < 0 for x in v):
            raise ValueError("per-group values must be >= 0 or inf")
        return v

    @field_validator("tau")
    @classmethod
    def _tau(cls, v: float) -> float:
        if not -1.0 <= v <= 1.0:
            raise ValueError(f"--tau must be in [-1, 1] (a cosine), got {v:g}")
        return v

    @field_validator("mechanism")
    @classmethod
    def _mech(cls, v: str) -> str:
        key = v.strip().lower()
        if key not in MECHANISM_NAMES:
            raise ValueError(f"unknown mechanism {v[:30]!r}; use one of "
                             f"{', '.join(MECHANISM_NAMES)}")
        return key

    @field_validator("chunk_rows")
    @classmethod
    def _chunk(cls, v: int) -> int:
        if v < 1:
            raise ValueError("chunk_rows must be >= 1")
        return v

    @model_validator(mode="after")
    def _some_budget(self) -> PrivatizeConfig:
        if self.uniform and not any(0 < e < math.inf for e in self.group_epsilons()):
            raise ValueError("--uniform needs at least one group with a finite ε > 0")
        return self

    def group_epsilons(self) -> tuple[float, float, float, float]:
        """Per-token ε of G1..G4 (before any ``uniform`` matching)."""
        if self.group_eps is not None:
            return self.group_eps
        a, b, c, d = (self.epsilon * r if r != 0 else 0.0 for r in self.budgets)
        return a, b, c, d

    @classmethod
    def checked(cls, **values: Any) -> PrivatizeConfig:
        """Build a config, turning validation errors into one-line :class:`BadInput` (exit 2)."""
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            msg = str(first.get("msg", "invalid option")).removeprefix("Value error, ")
            loc = ".".join(str(x) for x in first.get("loc", ()))
            raise BadInput(msg if msg.startswith("--") or not loc else f"{loc}: {msg}") from None
