"""The server's side of the protocol (the body of the Flower ServerApp).

Order of phases: hello (names, roles) → **profile** (all participating sites:
noisy per-code counts) → **train** (strong sites, R rounds of DP-SGD on LoRA;
FedAvg weighted by each site's *noisy* total count from the profile — DP
post-processing, so free) → **generate** (server, quotas from the noisy
profile) → **vote** (weak sites, and strong ones with ``strong_vote``) →
select. Profiling runs first so that the FedAvg weights are already private.
A site that errs or times out is dropped from the remaining phases; its
privacy report covers exactly the releases that reached the server.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from veil import progress
from veil.artifacts import Timer
from veil.errors import BadInput, VeilError
from veil.synth.budget import NoisePlan, plan_for_role, sgd_steps
from veil.synth.codes import CodeBook
from veil.synth.config import SynthConfig
from veil.synth.profile import GlobalProfile, global_profile, quotas
from veil.synth.transport import (
    CapturingGrid,
    GridLike,
    Reply,
    Traffic,
    content_bytes,
    exchange,
    server_content,
    wait_for_nodes,
)


@dataclass
class SiteState:
    """What the server knows about one site (never its data)."""

    node_id: int
    name: str
    role: str
    plan: NoisePlan | None = None
    completed: list[str] = field(default_factory=list)
    rounds_done: int = 0
    failed_at: str | None = None
    reason: str | None = None
    noisy_total: float = 0.0

    @property
    def alive(self) -> bool:
        """Still taking part (has not failed)."""
        return self.failed_at is None

    def released_plan(self, steps_per_round: int) -> NoisePlan | None:
        """The plan with DP-SGD steps cut to the rounds whose adapters reached the server."""
        if self.plan is None:
            return None
        return dataclasses.replace(self.plan, steps=self.rounds_done * steps_per_round
                                   if self.plan.steps else 0)


@dataclass
class RunResult:
    """Everything the output writer needs (all of it DP or public)."""

    cfg: SynthConfig
    book: CodeBook
    sites: list[SiteState]
    profile: GlobalProfile | None = None
    quotas: list[int] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    candidate_codes: list[int] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    zero_histogram_codes: list[int] = field(default_factory=list)
    refined: bool = False
    trained_rounds: int = 0
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)

    def records(self) -> list[dict[str, Any]]:
        """The released synthetic records: text, control code and code columns."""
        out = []
        for n, i in enumerate(self.chosen):
            j = self.candidate_codes[i]
            out.append({"id": f"syn-{n + 1:06d}", "text": self.candidates[i],
                        "control_code": self.book.prefix(j).strip(), **self.book.as_fields(j)})
        return out


def check_plan(cfg: SynthConfig) -> None:
    """Refuse settings that cannot run (before any site is contacted)."""
    if not cfg.codes:
        raise BadInput("no control codes: the run config must list the code vocabulary")
    if cfg.refine and cfg.samples < cfg.k:
        raise BadInput(f"the candidate set ({cfg.samples} samples) is smaller than K = {cfg.k}; "
                       "raise --samples or lower --k")
    for role in ("strong", "weak"):
        plan_for_role(cfg, role)


class _Server:
    def __init__(self, grid: GridLike, cfg: SynthConfig) -> None:
        self.grid, self.cfg = grid, cfg
        self.run_tag = uuid.uuid4().hex[:12]
        self.timer = Timer()
        self.result = RunResult(cfg, CodeBook(cfg.code_cols, cfg.codes), [])
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7919]))

    def send(self, sites: list[SiteState], phase: str, mtype: str, group: str,
             make: Any) -> dict[int, tuple[SiteState, Reply]]:
        contents = {s.node_id: make(s) for s in sites}
        for s in sites:
            self.result.traffic.add("down", s.name, phase, content_bytes(contents[s.node_id]))
        replies = exchange(self.grid, contents, mtype, group, self.cfg.phase_timeout)
        out = {}
        for s in sites:
            reply = replies[s.node_id]
            if reply.error is not None:
                s.failed_at, s.reason = phase, reply.error
                self.result.notes.append(f"site {s.name} failed at {phase}: {reply.error}; "
                                         "it takes no further part")
                progress.info(f"site {s.name} failed at {phase}; continuing without it")
            else:
                self.result.traffic.add("up", s.name, phase, content_bytes(reply.content))
                out[s.node_id] = (s, reply)
        return out

    def hello(self) -> None:
        ids = wait_for_nodes(self.grid, self.cfg.min_sites, self.cfg.phase_timeout)
        if not ids:
            raise VeilError("no site connected before the timeout")
        if len(ids) < self.cfg.min_sites:
            self.result.notes.append(f"only {len(ids)} of {self.cfg.min_sites} sites connected")
        pending = [SiteState(n, f"node-{n}", "weak") for n in ids]
        got = self.send(pending, "hello", "query.hello", "hello",
                        lambda s: server_content(self.cfg, None, self.run_tag))
        names: set[str] = set()
        for s in pending:
            if s.node_id in got:
                rec = got[s.node_id][1].content["site"]
                old, s.name, s.role = s.name, str(rec["name"]), str(rec["role"])
                self.result.traffic.rename(old, s.name)
                if s.name in names:
                    raise VeilError(f"two sites call themselves {s.name}")
                names.add(s.name)
                s.plan = plan_for_role(self.cfg, s.role)
        self.result.sites = sorted(pending, key=lambda s: s.name)

    def profile(self) -> None:
        n = len(self.cfg.codes)
        sites = [s for s in self.result.sites if s.alive and s.plan and "profile" in s.plan.phases]
        got = self.send(sites, "profile", "query.profile", "profile",
                        lambda s: server_content(self.cfg, s.plan, self.run_tag))
        vectors = []
        for s, reply in got.values():
            vec = np.asarray(reply.content["release"]["noisy-counts"], dtype=np.float64)
            if vec.shape != (n,):
                s.failed_at, s.reason = "profile", "malformed profile"
                continue
            vectors.append(vec)
            s.completed.append("profile")
            s.noisy_total = float(vec.sum())
        if not vectors:
            raise VeilError("no site returned a profile; nothing to generate from")
        self.result.profile = global_profile(vectors, n)
        if self.result.profile.uniform_fallback:
            self.result.notes.append("the noisy profile clipped to all zeros: codes are "
                                     "generated in equal shares")
        self.result.quotas = [int(x) for x in quotas(self.result.profile.proportions,
                                                     self.cfg.samples)]

    def train(self) -> dict[str, np.ndarray] | None:
        from veil.synth.generator import fedavg, initial_adapter

        cfg = self.cfg
        strong = [s for s in self.result.sites if s.alive and s.plan and "train" in s.plan.phases]
        if not strong or cfg.rounds == 0:
            self.result.notes.append("no strong site trained: candidates come from the base "
                                     "model without fine-tuning")
            return None
        per_round, _ = sgd_steps(cfg)
        adapter = initial_adapter(cfg, cfg.seed)
        for r in range(1, cfg.rounds + 1):
            sites = [s for s in strong if s.alive]
            if not sites:
                break
            with self.timer(f"train_round_{r}"):
                got = self.send(sites, "train", "train", f"round-{r}", lambda s, a=adapter, r=r: (
                    server_content(cfg, s.plan, self.run_tag, round_=r, steps=per_round,
                                   adapter=a)))
            new, weights = [], []
            for s, reply in got.values():
                new.append({k: arr.numpy() for k, arr in reply.content["arrays"].items()})
                weights.append(max(s.noisy_total, 1.0))
                s.rounds_done = r
                if "train" not in s.completed:
                    s.completed.append("train")
            if new:
                adapter = fedavg(new, weights)
                self.result.trained_rounds = r
            else:
                self.result.notes.append(f"round {r}: no strong site replied; adapters kept")
        return adapter if self.result.trained_rounds else None

    def generate(self, adapter: dict[str, np.ndarray] | None, refine: bool) -> None:
        from veil.synth.generator import candidates_per_code, generate, generation_model

        cfg, book = self.cfg, self.result.book
        counts = candidates_per_code(self.result.quotas, cfg.candidates_factor, refine)
        prompts = [book.prefix(j) for j, c in enumerate(counts) for _ in range(c)]
        codes = [j for j, c in enumerate(counts) for _ in range(c)]
        model, tokenizer = generation_model(cfg, adapter)
        self.result.candidates = generate(model, tokenizer, prompts, cfg, cfg.seed)
        self.result.candidate_codes = codes
        short = [book.prefix(j).strip() for j, c in enumerate(counts) if 0 < c < cfg.k]
        if refine and short:
            self.result.notes.append(
                f"{len(short)} code(s) have fewer than K = {cfg.k} candidates; their records "
                "vote for all of them (weight 1/sqrt(K) each, sensitivity below 1)")

    def vote(self, voters: list[SiteState]) -> None:
        from veil.synth.voting import select

        cfg, res = self.cfg, self.result
        cands = (res.candidates, res.candidate_codes)
        got = self.send(voters, "vote", "query.vote", "vote",
                        lambda s: server_content(cfg, s.plan, self.run_tag, candidates=cands))
        total = np.zeros(len(res.candidates))
        n_ok = 0
        for s, reply in got.values():
            vec = np.asarray(reply.content["release"]["noisy-votes"], dtype=np.float64)
            if vec.shape == total.shape:
                total += vec
                s.completed.append("vote")
                n_ok += 1
        if n_ok == 0:
            res.notes.append("no site returned votes: candidates released without refinement")
            res.chosen = _first_quota(res.candidate_codes, res.quotas)
            return
        sel = select(total, res.candidate_codes, res.quotas, threshold=cfg.threshold,
                     mode=cfg.selection, rng=self.rng)
        res.chosen, res.zero_histogram_codes = sel.chosen, sel.zero_histogram_codes
        res.refined = True
        for j in sel.zero_histogram_codes:
            res.notes.append(f"code '{res.book.prefix(j).strip()}': all noisy votes <= H; its "
                             "candidates were selected uniformly")


def _first_quota(codes: list[int], quota: list[int]) -> list[int]:
    taken = [0] * len(quota)
    out = []
    for i, j in enumerate(codes):
        if taken[j] < quota[j]:
            taken[j] += 1
            out.append(i)
    return out


def run_server(grid: GridLike, cfg: SynthConfig, out: Path, *, capture_dir: Path | None = None,
               notes: list[str] | None = None, extra: dict[str, Any] | None = None) -> RunResult:
    """Run all phases against the sites behind ``grid`` and write ``out`` atomically.

    Args:
        grid: the Flower grid (simulation, deployment or in-process).
        cfg: the public run config (with its code vocabulary).
        out: the output folder (replaced atomically at the end).
        capture_dir: if set, every message is saved there (tests).
        notes: remarks for the report (e.g. how the vocabulary was obtained).
        extra: more fields for ``run.json``.
    """
    from veil.synth.outputs import write_outputs

    check_plan(cfg)
    srv = _Server(CapturingGrid(grid, capture_dir) if capture_dir else grid, cfg)
    srv.result.notes.extend(notes or [])
    t = srv.timer
    with t("connect"):
        srv.hello()
    with t("profile"):
        srv.profile()
    with t("train"):
        adapter = srv.train()
    voters = [s for s in srv.result.sites if s.alive and s.plan and "vote" in s.plan.phases]
    refine = cfg.refine and bool(voters)
    if cfg.refine and not voters:
        srv.result.notes.append("refinement requested but no site votes: skipped")
    with t("generate"):
        srv.generate(adapter, refine)
    with t("vote"):
        if refine:
            srv.vote([s for s in voters if s.alive])
        else:
            srv.result.chosen = _first_quota(srv.result.candidate_codes, srv.result.quotas)
    srv.result.timings = dict(t.timings)
    if not math.isfinite(cfg.epsilon):
        srv.result.notes.append("epsilon = inf: NO noise was added; nothing here is private")
    write_outputs(out, srv.result, extra or {})
    return srv.result
