"""What runs at a site (inside the Flower ClientApp): its data, its ledger, its releases.

A site's records never leave this module's functions. Each handler returns
only a DP release — noisy per-code counts (:func:`site_profile`), DP-SGD LoRA
adapters (:func:`site_train`) or noisy votes (:func:`site_vote`) — with the
noise plan the server proposed, which the site re-checks: it recomputes the
composed ε of the plan itself, refuses it above its own ``max-epsilon`` (node
config), and records that ε in **its own** privacy ledger before its first
release (spend before release; a crash can over-count, never under-count).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import BadInput, VeilError
from veil.synth.budget import NoisePlan, composed_epsilon
from veil.synth.codes import CodeBook, record_codes
from veil.synth.config import PHASES, ROLES, SynthConfig

PHASE_IDS = {"hello": 0, "profile": 1, "train": 2, "vote": 3}


class SiteFailure(VeilError):
    """A site could not complete a phase; the server drops it and reports it."""


@dataclass(frozen=True)
class SiteSpec:
    """Where a site's data lives and how it takes part (from node config or the simulation).

    Attributes:
        name: the site's name (used in reports; ``privacy/<name>.json``).
        data_path: its corpus file (read locally only).
        role: ``"strong"`` (fine-tunes) or ``"weak"`` (profiles and votes).
        ledger: its privacy ledger file (default: ``$VEIL_HOME/ledger.db`` of the site).
        max_epsilon: the most ε per record this site accepts for one run (None: any).
        fail_at: test hook: fail on receiving this phase (``profile``/``train``/``vote``).
    """

    name: str
    data_path: str
    role: str
    ledger: str | None = None
    max_epsilon: float | None = None
    fail_at: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise BadInput(f"site {self.name}: role must be one of {ROLES}, got {self.role!r}")
        if self.fail_at not in (None, "hello", *PHASES):
            raise BadInput(f"site {self.name}: fail-at must be a phase name")

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> SiteSpec:
        """Read ``data-path``, ``role``, ``site-name``, ``ledger``, ``max-epsilon``, ``fail-at``."""
        path = str(node_config.get("data-path", "") or "")
        if not path:
            raise BadInput("node config needs data-path=<this site's corpus file>")
        name = str(node_config.get("site-name", "") or Path(path).stem)
        max_eps = node_config.get("max-epsilon")
        return cls(name=name, data_path=path, role=str(node_config.get("role", "weak")),
                   ledger=str(node_config["ledger"]) if node_config.get("ledger") else None,
                   max_epsilon=float(max_eps) if max_eps not in (None, "") else None,
                   fail_at=str(node_config["fail-at"]) if node_config.get("fail-at") else None)


@dataclass(frozen=True)
class SiteData:
    """A site's records as the handlers use them (never sent anywhere).

    Attributes:
        texts: record texts.
        code_index: each record's code index in the run's vocabulary (None: not in it).
        fingerprint: SHA-256 of the corpus file (the ledger key).
    """

    texts: list[str]
    code_index: list[int | None]
    fingerprint: str


def load_site_data(spec: SiteSpec, cfg: SynthConfig) -> SiteData:
    """Read the site's corpus and map each record to its control code."""
    from veil.io import read_corpus

    corpus = read_corpus(spec.data_path, text_cols=cfg.text_col, extra_cols=list(cfg.code_cols))
    book = CodeBook(cfg.code_cols, cfg.codes)
    codes = record_codes(corpus.extra, cfg.code_cols, cfg.code_sep)
    return SiteData(corpus.texts, [book.index(c) for c in codes], corpus.fingerprint)


def site_rng(cfg: SynthConfig, site: str, phase: str, round_: int = 0) -> np.random.Generator:
    """The noise source of one site and phase (OS entropy when ``cfg.secure``)."""
    from veil.privacy.rng import make_rng

    if cfg.secure:
        return make_rng(secure=True)
    seq = np.random.SeedSequence([cfg.seed, zlib.crc32(site.encode()), PHASE_IDS[phase], round_])
    return np.random.default_rng(seq)


def _check_alive(spec: SiteSpec, phase: str) -> None:
    if spec.fail_at == phase:
        raise SiteFailure(f"site {spec.name}: simulated failure at {phase} (fail-at hook)")


def record_spend(spec: SiteSpec, data: SiteData, plan: NoisePlan, run_tag: str) -> float:
    """Check the plan against this site's limits and record its ε in the site's ledger.

    Returns:
        The ε per record of the whole plan, recomputed here (not taken from the server).

    Raises:
        SiteFailure: the plan exceeds ``max_epsilon`` or the site's phases.
        BudgetRefused: the site's ledger budget would be exceeded.
    """
    from veil.privacy.ledger import Ledger

    accountant = plan.accountant if plan.accountant in ("prv", "rdp") else "prv"
    eps, acc = composed_epsilon(plan.parts(), plan.delta, accountant)
    if spec.max_epsilon is not None and eps > spec.max_epsilon * (1 + 1e-9):
        raise SiteFailure(f"site {spec.name}: plan epsilon {eps:.4g} exceeds this site's "
                          f"max-epsilon {spec.max_epsilon:g}")
    if len(data.texts) and plan.delta >= 1.0 / len(data.texts):
        raise SiteFailure(f"site {spec.name}: delta {plan.delta:g} is not below 1/N here")
    Ledger(spec.ledger).spend(data.fingerprint, eps, plan.delta, f"veil synth {run_tag}",
                              unit="record", accountant=acc, mechanism="federated DP synthesis",
                              note=f"phases: {', '.join(plan.phases)}", label=spec.name)
    return eps


def mark_released(spec: SiteSpec, data: SiteData, run_tag: str) -> None:
    """Mark this run's spend released (after the site's last release)."""
    from veil.privacy.ledger import Ledger

    book = Ledger(spec.ledger)
    for sp in book.spends(data.fingerprint):
        if sp.release == f"veil synth {run_tag}" and sp.status == "spent":
            book.mark_released(sp.id)


def site_profile(spec: SiteSpec, cfg: SynthConfig, plan: NoisePlan, run_tag: str) -> np.ndarray:
    """Phase 2 at a site: record the spend, then release the noisy per-code counts."""
    from veil.synth.profile import exact_counts, noisy_counts

    _check_alive(spec, "profile")
    data = load_site_data(spec, cfg)
    record_spend(spec, data, plan, run_tag)
    counts = exact_counts(data.code_index, len(cfg.codes))
    noisy = noisy_counts(counts, float(plan.sigma_profile or 0.0), site_rng(cfg, spec.name,
                                                                            "profile"))
    if plan.phases[-1] == "profile":
        mark_released(spec, data, run_tag)
    return noisy


def site_train(spec: SiteSpec, cfg: SynthConfig, plan: NoisePlan, adapter: Mapping[str, Any],
               round_: int, steps: int, run_tag: str) -> tuple[dict[str, np.ndarray], int]:
    """Phase 1 at a strong site: one round of DP-SGD from the global adapters."""
    from veil.synth.generator import dp_finetune, lora_model, set_adapter

    _check_alive(spec, "train")
    if spec.role != "strong" or "train" not in plan.phases:
        raise SiteFailure(f"site {spec.name}: asked to train but it is not a strong site")
    data = load_site_data(spec, cfg)
    book = CodeBook(cfg.code_cols, cfg.codes)
    texts = [book.prefix(j) + t for t, j in zip(data.texts, data.code_index, strict=True)
             if j is not None]
    if not texts:
        raise SiteFailure(f"site {spec.name}: no records with a known control code")
    model, tokenizer = lora_model(cfg.generator, cfg)
    set_adapter(model, adapter)
    seed = None if cfg.secure else int(site_rng(cfg, spec.name, "train", round_).integers(2**62))
    out = dp_finetune(model, tokenizer, texts, cfg, noise_multiplier=float(
        plan.noise_multiplier or 0.0), steps=steps, seed=seed)
    if plan.phases[-1] == "train" and round_ == cfg.rounds:
        mark_released(spec, data, run_tag)
    return out


@lru_cache(maxsize=2)
def _encoder(name: str) -> Any:
    from veil.models import load_sentence_encoder

    return load_sentence_encoder(name)


@lru_cache(maxsize=1)
def _candidate_embeddings(embedder: str, texts: tuple[str, ...], batch_size: int) -> Any:
    """The broadcast candidates' embeddings, computed once per process.

    Candidates are public (the server sends the same list to every site), so sites that share
    a process — the simulation engine runs many sites per worker — need not re-embed them.
    """
    from veil.synth.voting import embed

    emb = embed(_encoder(embedder), list(texts), batch_size)
    emb.setflags(write=False)  # shared by every site of the process: nobody may change it
    return emb


def site_vote(spec: SiteSpec, cfg: SynthConfig, plan: NoisePlan, texts: Sequence[str],
              codes: Sequence[int], run_tag: str) -> np.ndarray:
    """Phase 4 at a site: embed, vote for the K nearest same-code candidates, add noise."""
    from veil.synth.voting import noisy_votes, vote_histogram

    _check_alive(spec, "vote")
    if "vote" not in plan.phases:
        raise SiteFailure(f"site {spec.name}: asked to vote but its plan has no vote phase")
    data = load_site_data(spec, cfg)
    cand_emb = _candidate_embeddings(cfg.embedder, tuple(texts), cfg.embed_batch_size)
    votes = vote_histogram(_encoder(cfg.embedder), data.texts, data.code_index, texts, codes,
                           cfg.k, cfg.embed_batch_size, cand_emb=cand_emb)
    noisy = noisy_votes(votes, float(plan.sigma_vote or 0.0), site_rng(cfg, spec.name, "vote"))
    mark_released(spec, data, run_tag)
    return noisy
