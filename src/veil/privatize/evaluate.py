"""``veil privatize-eval``: sweeps of the STAMP privatizer over budgets, mechanisms and seeds.

For every task set, budget setting (per-group ε G1..G4), mechanism, mode (``stamp``: the
group budgets; ``uniform``: one ε per token, matched to STAMP's mean per-token ε on the same
documents) and noise seed, the documents are privatized once and scored:

* ``agnews`` / ``yelp``: accuracy of a non-private classifier (trained on the original other
  half) on the privatized half (:mod:`eval_tasks`);
* ``squad``: gold-answer survival and original-vs-privatized context cosine;
* ``phi``: survival of gold PHI spans (demo corpus and the i2b2 samples), with the real
  detector deciding what is sensitive (a missed span is released at a non-sensitive ε);
* every run: share of private tokens released unchanged (the identity adversary's success),
  mean per-token ε (finite ε, unit: token), group shares;
* ``ldp``: the empirical per-token metric-LDP check on a small vocabulary, each mechanism
  honest and under-noised ×3 (a negative control).

PHI detection runs once per corpus (it does not depend on ε); original texts are embedded
once. Results go to ``OUT/results.csv`` (rewritten after every run, so a stopped sweep keeps
its rows; ``--resume`` skips rows already there), ``OUT/results.md``, ``OUT/*.png`` and
``OUT/run.json``. No document text is written.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from veil._env import veil_home
from veil.artifacts import Timer, atomic_write_text, run_record, write_json
from veil.errors import BadInput
from veil.privacy.rng import make_rng
from veil.privatize import eval_privacy as ep
from veil.privatize import eval_tasks as et
from veil.privatize.config import DEFAULT_BUDGETS, MECHANISM_NAMES, PrivatizeConfig
from veil.privatize.eval_corpora import Corpus, corpora_for
from veil.privatize.stamp import Privatizer, PrivatizeResult
from veil.progress import info

TASK_SETS = ("agnews", "yelp", "squad", "phi", "ldp")
MODES = ("stamp", "uniform")
PAPER_BASES = (50, 100, 150, 200, 250)
D384_BASES = (10, 25, 50, 100, 200)
COLUMNS = ("task_set", "grid", "setting", "mechanism", "mode", "seed", "g1_eps", "g2_eps",
           "g3_eps", "g4_eps", "eps_mean", "n_docs", "metric", "value")
LDP_EPS, LDP_INPUTS, LDP_CONTROL = 3.0, (0, 1, 2, 3), 3.0


@dataclass(frozen=True)
class Setting:
    """One budget point: a label and the per-group ε (G1..G4; per token, metric LDP)."""

    label: str
    group_eps: tuple[float, float, float, float]


def parse_grid(spec: str) -> tuple[str, list[Setting]]:
    """``paper`` (Table 1: {b+100, b, b+400, b+300}, b = 50..250), ``d384`` (base ε ∈
    {10, 25, 50, 100, 200} × 2:1:4:3, suited to minilm's 384-d table) or a comma list of base
    ε (× 2:1:4:3). Returns ``(grid name, settings)``."""
    key = spec.strip().lower()
    if key == "paper":
        return "paper", [Setting(f"{{{b + 100},{b},{b + 400},{b + 300}}}",
                                 (b + 100.0, float(b), b + 400.0, b + 300.0))
                         for b in PAPER_BASES]
    if key == "d384":
        bases: Sequence[float] = D384_BASES
    else:
        try:
            bases = [float(x) for x in key.split(",")]
        except ValueError:
            raise BadInput("--grid must be paper, d384 or comma-separated numbers") from None
        if not bases or any(not (math.isfinite(b) and b > 0) for b in bases):
            raise BadInput("--grid: every base ε must be a finite number > 0")
    r = DEFAULT_BUDGETS
    a, b, c, d = r
    return ("d384" if key == "d384" else "custom"), [
        Setting(f"ε={x:g}×{a:g}:{b:g}:{c:g}:{d:g}", (x * a, x * b, x * c, x * d))
        for x in bases]


def parse_seeds(spec: str) -> tuple[int, ...]:
    """``"3"`` -> seeds (0, 1, 2); ``"1,2"`` -> (1, 2)."""
    try:
        if "," in spec:
            seeds = tuple(int(x) for x in spec.split(","))
        else:
            n = int(spec)
            if n < 1:
                raise ValueError
            seeds = tuple(range(n))
    except ValueError:
        raise BadInput("--seeds must be a count >= 1 or a comma list of seeds") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise BadInput("--seeds: seeds must be distinct and >= 0")
    return seeds


@dataclass
class EvalOptions:
    """Options of one sweep (see ``veil privatize-eval --help``)."""

    out: Path
    task_sets: tuple[str, ...] = TASK_SETS
    mechanisms: tuple[str, ...] = MECHANISM_NAMES
    grid: str = "d384"
    seeds: tuple[int, ...] = (0, 1, 2)
    modes: tuple[str, ...] = ("stamp",)
    limit: int | None = None
    embeddings: str = "minilm"
    encoder: str = "minilm"
    tau: float = 0.5
    data_dir: Path | None = None
    split_seed: int = 0
    demo_reports: int = 200
    ldp_samples: int = 40_000
    resume: bool = False
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        sets = [s.strip().lower() for s in self.task_sets]
        self.task_sets = TASK_SETS if "all" in sets else tuple(dict.fromkeys(sets))
        for s in self.task_sets:
            if s not in TASK_SETS:
                raise BadInput(f"unknown task set {s[:20]!r}; use {', '.join(TASK_SETS)} or all")
        self.mechanisms = tuple(dict.fromkeys(m.strip().lower() for m in self.mechanisms))
        for m in self.mechanisms:
            if m not in MECHANISM_NAMES:
                raise BadInput(f"unknown mechanism {m[:30]!r}; use {', '.join(MECHANISM_NAMES)}")
        if not self.mechanisms or any(m not in MODES for m in self.modes) or not self.modes:
            raise BadInput("give at least one mechanism, and --modes from stamp,uniform")
        if self.limit is not None and self.limit < 1:
            raise BadInput("--limit must be >= 1")
        if not -1.0 <= self.tau <= 1.0:
            raise BadInput(f"--tau must be in [-1, 1] (a cosine), got {self.tau:g}")
        parse_grid(self.grid)


def release_figures(result: PrivatizeResult) -> tuple[float, dict[str, float]]:
    """``(mean per-token ε over finite-ε private tokens, figures)`` computed from the traces:
    share of private tokens unchanged and the share of private tokens in each group."""
    eps = np.concatenate([tr.eps[tr.groups < 4] for tr in result.traces] or [np.zeros(0)])
    finite = eps[np.isfinite(eps)]
    same, total = ep.tokens_unchanged(result.traces)
    groups = np.concatenate([tr.groups[tr.groups < 4] for tr in result.traces]
                            or [np.zeros(0, np.int8)])
    figures = {"tokens_unchanged": same / total if total else math.nan,
               "private_tokens": float(total)}
    for g in range(4):
        figures[f"share_G{g + 1}"] = float(np.mean(groups == g)) if total else math.nan
    return (float(finite.mean()) if finite.size else math.nan), figures


def privatize_run(corpus: Corpus, setting: Setting, mechanism: str, mode: str, seed: int,
                  opts: EvalOptions, vocab: Any) -> tuple[float, dict[str, float]]:
    """Privatize ``corpus`` once; returns ``(mean per-token ε, metrics)``."""
    cfg = PrivatizeConfig(group_eps=setting.group_eps, mechanism=mechanism,
                          uniform=mode == "uniform", tau=opts.tau, embeddings=opts.embeddings,
                          seed=seed)
    started = time.perf_counter()
    result = Privatizer(cfg, detector=_no_detector, vocab=vocab).privatize(
        corpus.texts, corpus.tasks, spans=corpus.spans, rng=make_rng(seed))
    eps_mean, figures = release_figures(result)
    metrics = {**corpus.score(result), **figures,
               "seconds": time.perf_counter() - started}
    return eps_mean, metrics


def _no_detector(texts: list[str]) -> list[list[Any]]:
    raise RuntimeError("spans are precomputed; the detector must not run here")


def _row(task_set: str, grid: str, setting: str, mechanism: str, mode: str, seed: int | str,
         group_eps: Sequence[float], eps_mean: float, n_docs: int, metric: str,
         value: float) -> dict[str, Any]:
    return dict(zip(COLUMNS, (task_set, grid, setting, mechanism, mode, seed, *group_eps,
                              eps_mean, n_docs, metric, value), strict=True))


def write_results_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows (``COLUMNS``) atomically; ε = ∞ as ``inf``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_results_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` (numbers as strings)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def ldp_rows(opts: EvalOptions) -> list[dict[str, Any]]:
    """Empirical per-token LDP check on a 20-token, 8-d vocabulary, each mechanism honest and
    run at 3× its ε (negative control; should be flagged)."""
    vocab = ep.toy_vocabulary()
    rows = []
    for k, mech in enumerate(opts.mechanisms):
        for mode, scale in (("honest", 1.0), (f"control-{LDP_CONTROL:g}x", LDP_CONTROL)):
            chk = ep.mechanism_ldp_check(mech, vocab, LDP_EPS, LDP_INPUTS, opts.ldp_samples,
                                         make_rng(1000 + k), eps_scale=scale)
            for metric, value in (("eps_hat", chk.eps_hat), ("max_excess", chk.max_excess),
                                  ("violated", float(chk.violated))):
                rows.append(_row("ldp", "toy", f"V={vocab.size}, d={vocab.dim}, ε={LDP_EPS:g}",
                                 mech, mode, "-", (LDP_EPS,) * 4, LDP_EPS, vocab.size, metric,
                                 value))
    return rows


def run_eval(opts: EvalOptions) -> list[dict[str, Any]]:
    """Run the sweep, writing ``OUT/results.csv`` after every privatization; returns all rows."""
    from veil.privatize.eval_report import write_report
    from veil.privatize.vocab import load_vocabulary

    grid, settings = parse_grid(opts.grid)
    if opts.task_sets != ("ldp",):
        opts.data_dir = et.resolve_data_dir(opts.data_dir)
    opts.out.mkdir(parents=True, exist_ok=True)
    csv_path, timer = opts.out / "results.csv", Timer()
    rows = read_results_csv(csv_path) if opts.resume and csv_path.is_file() else []
    done = {(r["task_set"], r["grid"], r["setting"], r["mechanism"], r["mode"], str(r["seed"]))
            for r in rows}
    cache = opts.cache_dir or veil_home() / "cache" / "privatize-eval"
    embed = et.TextEmbedder(opts.encoder, cache)
    vocab = None
    for task_set in opts.task_sets:
        if task_set == "ldp":
            with timer("ldp"):
                rows = [r for r in rows if r["task_set"] != "ldp"] + ldp_rows(opts)
            write_results_csv(csv_path, rows)
            continue
        with timer(f"prepare.{task_set}"):
            corpora = corpora_for(task_set, opts.data_dir, embed, split_seed=opts.split_seed,
                                  limit=opts.limit, demo_reports=opts.demo_reports)
            vocab = vocab or load_vocabulary(opts.embeddings)
        for corpus in corpora:
            n = len(corpus.texts)
            rows = [r for r in rows if not (r["task_set"] == corpus.name and r["mode"] in
                                            ("nonprivate", "detector"))]
            for metric, value in corpus.reference.items():
                mode = "detector" if metric == "gold_spans_detected" else "nonprivate"
                rows.append(_row(corpus.name, "-", "-", "none", mode, "-", (math.inf,) * 4,
                                 math.inf, n, metric, value))
            for setting in settings:
                for mech in opts.mechanisms:
                    for mode in opts.modes:
                        for seed in opts.seeds:
                            key = (corpus.name, grid, setting.label, mech, mode, str(seed))
                            if key in done:
                                continue
                            with timer(f"run.{corpus.name}"):
                                eps_mean, metrics = privatize_run(corpus, setting, mech, mode,
                                                                  seed, opts, vocab)
                            rows += [_row(corpus.name, grid, setting.label, mech, mode, seed,
                                          setting.group_eps, eps_mean, n, m, v)
                                     for m, v in metrics.items()]
                            write_results_csv(csv_path, rows)
                            info(f"{corpus.name} {setting.label} {mech} {mode} seed {seed}: "
                                 f"ε̄ {eps_mean:.1f}, " + ", ".join(
                                     f"{m} {v:.3f}" for m, v in metrics.items()
                                     if m not in ("private_tokens",) and not m.startswith("share")))
    write_results_csv(csv_path, rows)
    write_report(rows, opts.out)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    config["settings"] = [asdict(s) for s in settings]
    write_json(opts.out / "run.json", run_record(config, None, timer.timings))
    return rows
