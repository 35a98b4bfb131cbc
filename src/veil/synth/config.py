"""Configuration of a ``veil synth`` run: one frozen dataclass, public by design.

Everything in :class:`SynthConfig` is sent to every site (it travels in the
Flower messages as a JSON string), so it must never hold private data: no
record, no count, no site size. In particular DP-SGD is driven by a public
*sampling rate* ``q`` (not a batch size, which would reveal ``q·N``).

Privacy meaning of the parameters: ``epsilon`` is the TOTAL (ε, δ) budget
**per record at each site** (add/remove-one-record neighbours), covering every
phase that site takes part in; ``share_*`` split it across phases (see
:mod:`veil.synth.budget`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from veil.errors import BadInput

Selection = Literal["sample", "rank"]
PHASES: tuple[str, ...] = ("profile", "train", "vote")
ROLES: tuple[str, ...] = ("strong", "weak")


@dataclass(frozen=True)
class SynthConfig:
    """Public parameters of a federated DP synthesis run.

    Attributes:
        text_col: the text column of every site file.
        code_cols: the metadata/label columns whose values form the control code.
        code_sep: if set, a multi-valued cell (e.g. ``"A;B"``) contributes its first value.
        codes: the public vocabulary of control codes, each a tuple of values
            (one per code column). Control codes are assumed public (DPSDA's caveat).
        generator: causal LM name or path (``smollm2-135m``; ``tiny-llama`` in tests).
        embedder: sentence encoder name or path for voting (``minilm``).
        epsilon: total per-record ε at each site over all its phases (``inf``: no noise).
        delta: δ of each site's whole guarantee; must stay below ``1/N`` at every site.
        accountant: ``"prv"`` (tight) or ``"rdp"`` for compositions with DP-SGD.
        rounds: federated fine-tuning rounds R.
        local_epochs: expected passes over a strong site's data per round.
        sample_rate: DP-SGD Poisson sampling rate q (public; the batch is q·N on average).
        max_grad_norm: per-record gradient clipping norm C.
        lr: AdamW learning rate of the LoRA adapters.
        lora_r: LoRA rank. lora_alpha: LoRA alpha.
        max_length: token limit of one training example (control code + text).
        samples: size s of the released synthetic set.
        k: nearest candidates each private record votes for (weight 1/√K each).
        threshold: H; noisy votes below H count as 0 (``max(v − H, 0)``).
        refine: run DP voting (phase 4); False = the paper's no-refinement baseline.
        strong_only: weak sites take no part at all (baseline).
        strong_vote: strong sites vote too (costs them a vote share of ε).
        candidates_factor: candidates generated per released sample when refining.
        selection: ``"sample"`` (weighted, without replacement) or ``"rank"`` (top votes).
        temperature: sampling temperature. top_p: nucleus mass. max_new_tokens: length cap.
        gen_batch_size: prompts per ``generate`` call. embed_batch_size: texts per encoder call.
        share_train: share_profile: share_vote: relative ε weights of the phases,
            renormalised over the phases a site takes part in.
        seed: seed of every random choice (noise too: use ``secure`` for real releases).
        secure: draw noise seeds from the OS entropy pool (ignores ``seed`` for noise).
        phase_timeout: seconds the server waits for replies in one phase.
        min_sites: sites the server waits for before starting (deployment mode).
    """

    text_col: str = "text"
    code_cols: tuple[str, ...] = ("label",)
    code_sep: str | None = None
    codes: tuple[tuple[str, ...], ...] = ()
    generator: str = "smollm2-135m"
    embedder: str = "minilm"
    epsilon: float = 8.0
    delta: float = 1e-5
    accountant: Literal["prv", "rdp"] = "prv"
    rounds: int = 3
    local_epochs: float = 1.0
    sample_rate: float = 0.1
    max_grad_norm: float = 1.0
    lr: float = 2e-3
    lora_r: int = 8
    lora_alpha: int = 16
    max_length: int = 128
    samples: int = 2000
    k: int = 3
    threshold: float = 0.0
    refine: bool = True
    strong_only: bool = False
    strong_vote: bool = False
    candidates_factor: float = 2.0
    selection: Selection = "sample"
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 64
    gen_batch_size: int = 32
    embed_batch_size: int = 64
    share_train: float = 0.8
    share_profile: float = 0.1
    share_vote: float = 0.1
    seed: int = 0
    secure: bool = False
    phase_timeout: float = 3600.0
    min_sites: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "code_cols", tuple(str(c) for c in self.code_cols))
        object.__setattr__(self, "codes", tuple(tuple(str(v) for v in c) for c in self.codes))
        object.__setattr__(self, "epsilon", float(self.epsilon))
        _check(self)

    # -- phases -------------------------------------------------------------------------
    def phases_for(self, role: str) -> tuple[str, ...]:
        """The phases a site with ``role`` takes part in, in protocol order."""
        if role not in ROLES:
            raise BadInput(f"unknown site role {role!r}; expected one of {ROLES}")
        if role == "weak" and self.strong_only:
            return ()
        phases = ["profile"]
        if role == "strong":
            phases.append("train")
        if self.refine and (role == "weak" or self.strong_vote):
            phases.append("vote")
        return tuple(phases)

    def share(self, phase: str) -> float:
        """The relative ε weight of ``phase``."""
        return {"profile": self.share_profile, "train": self.share_train,
                "vote": self.share_vote}[phase]

    # -- serialisation (the config travels in every message) ---------------------------
    def to_json(self) -> str:
        """JSON text of the config (ε = ∞ as ``"inf"``)."""
        data = asdict(self)
        data["epsilon"] = "inf" if math.isinf(self.epsilon) else self.epsilon
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SynthConfig:
        """Inverse of :meth:`to_json`; unknown keys raise :class:`BadInput`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise BadInput(f"synth config is not valid JSON ({err.msg})") from None
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SynthConfig:
        """Build from a dict (e.g. Flower's run config with ``-`` or ``_`` in keys)."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise BadInput(f"unknown synth setting {key!r}")
            if name == "codes" and isinstance(value, str):
                value = json.loads(value) if value else []
            if name == "code_cols" and isinstance(value, str):
                value = [c.strip() for c in value.split(",") if c.strip()]
            if name == "code_sep" and value == "":
                value = None
            if name == "epsilon":
                value = parse_epsilon(value)
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def with_codes(self, codes: list[tuple[str, ...]]) -> SynthConfig:
        """A copy with the code vocabulary set."""
        return replace(self, codes=tuple(tuple(c) for c in codes))


def parse_epsilon(value: Any) -> float:
    """``8``, ``"8"``, ``"inf"`` -> float; anything else raises :class:`BadInput`."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "∞"):
        return math.inf
    try:
        eps = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"epsilon must be a number or 'inf', got {value!r}") from None
    if math.isnan(eps) or eps <= 0:
        raise BadInput(f"epsilon must be > 0 (or inf), got {value!r}", column="epsilon")
    return eps


def _check(c: SynthConfig) -> None:
    def bad(name: str, why: str) -> BadInput:
        return BadInput(f"--{name.replace('_', '-')} {why}")

    if not c.text_col:
        raise bad("text_col", "must name a column")
    if not c.code_cols:
        raise bad("code_cols", "must name at least one column")
    if c.text_col in c.code_cols:
        raise bad("code_cols", "must not include the text column")
    if any(len(code) != len(c.code_cols) for code in c.codes):
        raise bad("codes", "entries must have one value per code column")
    if len(set(c.codes)) != len(c.codes):
        raise bad("codes", "contains duplicates")
    if math.isnan(c.epsilon) or c.epsilon <= 0:
        raise bad("epsilon", "must be > 0 (or inf)")
    if not 0.0 < c.delta < 1.0:
        raise bad("delta", "must be in (0, 1) (and below 1/N at every site)")
    if c.accountant not in ("prv", "rdp"):
        raise bad("accountant", "must be prv or rdp")
    ints = {"rounds": (c.rounds, 0), "lora_r": (c.lora_r, 1), "lora_alpha": (c.lora_alpha, 1),
            "max_length": (c.max_length, 8), "samples": (c.samples, 1), "k": (c.k, 1),
            "max_new_tokens": (c.max_new_tokens, 1), "gen_batch_size": (c.gen_batch_size, 1),
            "embed_batch_size": (c.embed_batch_size, 1), "min_sites": (c.min_sites, 1)}
    for name, (value, low) in ints.items():
        if int(value) != value or value < low:
            raise bad(name, f"must be an integer >= {low}")
    if not 0.0 < c.sample_rate <= 1.0:
        raise bad("sample_rate", "must be in (0, 1]")
    positive = {"local_epochs": c.local_epochs, "max_grad_norm": c.max_grad_norm, "lr": c.lr,
                "temperature": c.temperature, "phase_timeout": c.phase_timeout}
    for name, fvalue in positive.items():
        if not fvalue > 0:
            raise bad(name, "must be > 0")
    if not 0.0 < c.top_p <= 1.0:
        raise bad("top_p", "must be in (0, 1]")
    if not c.candidates_factor >= 1.0:
        raise bad("candidates_factor", "must be >= 1")
    if not c.threshold >= 0:
        raise bad("threshold", "must be >= 0")
    if c.selection not in ("sample", "rank"):
        raise bad("selection", "must be sample or rank")
    for phase in PHASES:
        if not c.share(phase) > 0:
            raise bad(f"share_{phase}", "must be > 0")
