"""``veil sweep``: the privacy–utility grid (ε × adapter × seed) on one fixed split.

Every run trains on the *same* seeded train/validation/test partition of DATA
(``split_seed``, :func:`veil.train.data.split_indices`); only the training seed
(initialisation, sampling, noise) changes between seeds, so test examples pair
up across runs for the paired tests of :mod:`veil.train.stats`. A TF-IDF +
logistic-regression baseline (non-private) is fitted on the same training
records and scored on the same test records.

Privacy: each DP run is a separate release whose ε protects every *training
record* (one row of DATA) and is recorded in the budget ledger by the train
pipeline. Releases compose: the sweep as a whole spends the **sum** of the ε
of its DP runs on DATA (basic composition); the total is printed before the
first run, and a ledger budget below it refuses the sweep (exit code 3) before
anything is trained. ε = ∞ runs and the baseline carry no guarantee.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import BadInput
from veil.train.config import DEFAULT_LR, TrainConfig

METRICS: tuple[str, ...] = ("weighted_f1", "micro_f1", "macro_f1")
BASELINE_NAME = "tfidf-lr"
REFERENCE = ("lora", math.inf)  # the paired tests' reference: non-private LoRA


@dataclass
class RunOutcome:
    """One training run's test-split results, as the sweep needs them.

    Attributes:
        metrics: at least ``weighted_f1``, ``micro_f1`` and ``macro_f1`` on the test split.
        test_ids: ids of the test records, in prediction order.
        y_true: gold test labels, ``(n_test, L)`` 0/1 (one-hot for single-label).
        y_pred: the run's 0/1 decisions, same shape.
        labels: the label names (columns).
        epsilon: ε actually certified for the run (``inf`` when non-private).
        delta: δ of the run (None when non-private).
        noise_multiplier: σ of DP-SGD (None when non-private).
        seconds: wall-clock training time.
        run_dir: the run's output folder, if it wrote one.
    """

    metrics: dict[str, float]
    test_ids: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    labels: list[str]
    epsilon: float
    delta: float | None = None
    noise_multiplier: float | None = None
    seconds: float = 0.0
    run_dir: str | None = None


Trainer = Callable[[TrainConfig], RunOutcome]


@dataclass(frozen=True)
class GridPoint:
    """One run of the grid."""

    adapter: str
    epsilon: float
    seed: int

    @property
    def name(self) -> str:
        """Folder-safe run name, e.g. ``lora_eps1_seed0`` or ``head_epsinf_seed2``."""
        return f"{self.adapter}_eps{format_epsilon(self.epsilon)}_seed{self.seed}"


@dataclass
class SweepResult:
    """Everything a sweep produced (also written under ``out``)."""

    out: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    total_epsilon: float
    files: dict[str, Path] = field(default_factory=dict)


def format_epsilon(eps: float) -> str:
    """``inf`` for ∞, else the shortest round-trip form (``0.01``, ``1``, ``10``)."""
    return "inf" if math.isinf(eps) else f"{eps:g}"


def parse_epsilons(spec: str) -> tuple[float, ...]:
    """``"0.01,0.1,1,10,inf"`` -> sorted distinct ε values (``inf``/``∞`` for non-private).

    Raises:
        BadInput: empty list, a non-number, ε ≤ 0, NaN, or a value given twice.
    """
    items = [p.strip() for p in spec.split(",") if p.strip()]
    if not items:
        raise BadInput("--epsilons is empty; e.g. --epsilons 0.1,1,10,inf")
    values = []
    for item in items:
        text = "inf" if item.lower() in ("inf", "infinity", "∞", "+inf") else item
        try:
            value = float(text)
        except ValueError:
            raise BadInput(f"--epsilons: {item!r} is not a number (or inf)") from None
        if math.isnan(value) or value <= 0:
            raise BadInput(f"--epsilons: every ε must be > 0 (or inf), got {item!r}")
        values.append(value)
    if len(set(values)) != len(values):
        raise BadInput("--epsilons lists a value more than once")
    return tuple(sorted(values))


def parse_adapters(spec: str) -> tuple[str, ...]:
    """``"lora,head,full"`` -> adapters in the given order.

    Raises:
        BadInput: empty, unknown or repeated adapter names.
    """
    items = [p.strip() for p in spec.split(",") if p.strip()]
    if not items:
        raise BadInput("--adapters is empty; choose from lora, head, full, evidence")
    unknown = [a for a in items if a not in DEFAULT_LR]
    if unknown:
        raise BadInput(f"--adapters: unknown adapter(s) {', '.join(unknown)}; "
                       "choose from lora, head, full, evidence")
    if len(set(items)) != len(items):
        raise BadInput("--adapters lists an adapter more than once")
    return tuple(items)


def grid(epsilons: Sequence[float], adapters: Sequence[str], seeds: int,
         first_seed: int = 0) -> list[GridPoint]:
    """The runs: every adapter × ε × seed (seeds ``first_seed .. first_seed+seeds-1``).

    Raises:
        BadInput: ``seeds`` < 1.
    """
    if int(seeds) != seeds or seeds < 1:
        raise BadInput(f"--seeds must be an integer >= 1, got {seeds}")
    return [GridPoint(a, float(e), first_seed + k)
            for a in adapters for e in epsilons for k in range(int(seeds))]


def total_epsilon(points: Sequence[GridPoint]) -> float:
    """ε the grid's DP runs spend together on DATA (sum over finite-ε runs)."""
    return float(sum(p.epsilon for p in points if math.isfinite(p.epsilon)))


def n_non_private(points: Sequence[GridPoint]) -> int:
    """Runs with ε = ∞ (recorded as ε = ∞ in the ledger: refused under any finite budget)."""
    return sum(1 for p in points if math.isinf(p.epsilon))


def _save_run(out: Path, point: GridPoint, cfg: TrainConfig, res: RunOutcome) -> None:
    from veil.artifacts import atomic_output, write_json

    runs = out / "runs"
    with atomic_output(runs / f"{point.name}.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, y_true=res.y_true, y_pred=res.y_pred)
    write_json(runs / f"{point.name}.json", {
        "config_fingerprint": cfg.fingerprint(), "metrics": res.metrics,
        "test_ids": res.test_ids, "labels": res.labels,
        "epsilon": format_epsilon(res.epsilon), "delta": res.delta,
        "noise_multiplier": res.noise_multiplier, "seconds": res.seconds,
        "run_dir": res.run_dir,
    })


def _load_run(out: Path, point: GridPoint, cfg: TrainConfig) -> RunOutcome | None:
    """A run finished by an earlier, interrupted sweep with the same options, else None."""
    runs = out / "runs"
    try:
        meta = json.loads((runs / f"{point.name}.json").read_text(encoding="utf-8"))
        arrays = np.load(runs / f"{point.name}.npz")
    except (OSError, ValueError):
        return None
    if meta.get("config_fingerprint") != cfg.fingerprint():
        return None
    return RunOutcome(metrics=meta["metrics"], test_ids=meta["test_ids"],
                      y_true=arrays["y_true"], y_pred=arrays["y_pred"], labels=meta["labels"],
                      epsilon=float(meta["epsilon"]), delta=meta["delta"],
                      noise_multiplier=meta["noise_multiplier"], seconds=meta["seconds"],
                      run_dir=meta["run_dir"])


def _row(point: GridPoint | None, res: RunOutcome, adapter: str | None = None) -> dict[str, Any]:
    return {
        "adapter": adapter or (point.adapter if point else ""),
        "epsilon": format_epsilon(point.epsilon if point else math.inf),
        "seed": "" if point is None else point.seed,
        **{m: float(res.metrics[m]) for m in METRICS},
        "epsilon_certified": format_epsilon(res.epsilon),
        "delta": "" if res.delta is None else res.delta,
        "noise_multiplier": "" if res.noise_multiplier is None else res.noise_multiplier,
        "train_seconds": round(res.seconds, 2), "private": math.isfinite(res.epsilon),
    }


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (ddof = 1; None for one run) per adapter × ε."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["adapter"], row["epsilon"]), []).append(row)
    out = []
    for (adapter, eps), members in groups.items():
        entry: dict[str, Any] = {"adapter": adapter, "epsilon": eps, "runs": len(members)}
        for m in METRICS:
            vals = np.array([r[m] for r in members], dtype=float)
            entry[f"{m}_mean"] = float(vals.mean())
            entry[f"{m}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
        out.append(entry)
    return out


def baseline_outcome(cfg: TrainConfig) -> RunOutcome:
    """Fit the TF-IDF + LR baseline on the sweep's training records (train ∪ validation)."""
    import time

    from veil.privacy.rng import make_rng
    from veil.train.baseline import tfidf_baseline
    from veil.train.data import prepare_data

    start = time.perf_counter()
    data = prepare_data(cfg)
    if data.test is None:
        raise BadInput("the sweep needs a test split (--test-frac > 0)")
    space = data.space
    texts = list(data.train.texts)
    ys = [space.onehot(data.train.y)]
    if data.val is not None:
        texts += data.val.texts
        ys.append(space.onehot(data.val.y))
    y_test = space.onehot(data.test.y).astype(np.int8)
    seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    res = tfidf_baseline(texts, np.concatenate(ys), data.test.texts, labels=list(space.names),
                         multi_label=space.multi_label, rng=make_rng(seed), test_y=y_test)
    return RunOutcome(metrics=res.metrics, test_ids=list(data.test.ids), y_true=y_test,
                      y_pred=res.y_pred, labels=list(space.names), epsilon=math.inf,
                      seconds=time.perf_counter() - start)


def run_sweep(
    base: TrainConfig,
    *,
    epsilons: Sequence[float],
    adapters: Sequence[str],
    seeds: int,
    out: str | Path,
    trainer: Trainer | None = None,
    baseline: bool = True,
    n_boot: int = 2000,
    test_seed: int = 0,
    label_descriptions: Path | None = None,
) -> SweepResult:
    """Run the grid and write ``results.csv``, ``results.md``, ``paired_tests.json``, the plot.

    Args:
        base: options shared by all runs (data, columns, model, epochs, ...); its
            ``test_frac`` and ``split_seed`` fix the one split all runs share.
        epsilons: target ε values per training record (``inf``: non-private).
        adapters: ``lora``, ``head``, ``full``, ``evidence``.
        seeds: training seeds per cell (``base.seed`` onwards).
        out: the sweep folder; runs go to ``out/runs/<name>``.
        label_descriptions: descriptions for the evidence runs, and for every run under
            ``--head-init labels`` (default ``base.label_descriptions``).
        trainer: runs one configuration (default: the train pipeline's facade).
        baseline: also fit the TF-IDF + LR baseline on the same split.
        n_boot: bootstrap resamples of the paired tests.
        test_seed: seed of the bootstrap resampling.

    Returns:
        A :class:`SweepResult`.

    Raises:
        BadInput: bad grid options or no test split. BudgetRefused: the ledger's
            budget for DATA cannot cover the sweep's total ε (nothing is trained).
    """
    from veil.progress import info
    from veil.train.sweep_report import paired_tests, write_reports

    out = Path(out)
    if not base.test_frac > 0 and base.test is None:
        raise BadInput("--test-frac must be > 0: the sweep compares runs on a held-out test split")
    points = grid(epsilons, adapters, seeds, base.seed)
    if base.lora_freeze_a and "lora" not in adapters:
        raise BadInput("--lora-freeze-a needs lora among --adapters")
    split_seed = base.seed if base.split_seed is None else base.split_seed
    base = base.replace(split_seed=split_seed)
    run = trainer if trainer is not None else facade_trainer
    todo, done = [], {}
    descriptions = label_descriptions or base.label_descriptions
    for p in points:
        cfg = _config(base, p, out, descriptions)
        previous = _load_run(out, p, cfg)
        if previous is not None:
            done[p] = previous
        else:
            todo.append(p)
    spend = total_epsilon(todo)
    plain = n_non_private(todo)
    info(f"sweep: {len(points)} runs ({len(done)} already done); the DP runs to do spend "
         f"ε = {spend:g} in total on this dataset (sum over runs, record level)"
         + (f"; {plain} non-private run(s) are recorded as ε = ∞" if plain else ""))
    _check_budget(base, math.inf if plain else spend)
    for k, p in enumerate(todo, 1):
        info(f"run {k}/{len(todo)}: {p.name}")
        cfg = _config(base, p, out, descriptions)
        res = run(cfg)
        _save_run(out, p, cfg, res)
        done[p] = res
    results = [(p, done[p]) for p in points]
    rows = [_row(p, r) for p, r in results]
    base_res = baseline_outcome(base) if baseline else None
    if base_res is not None:
        rows.append(_row(None, base_res, adapter=BASELINE_NAME))
    tests = paired_tests(results, base_res, n_boot=n_boot, seed=test_seed)
    summary = summarise(rows)
    result = SweepResult(out=out, rows=rows, summary=summary, tests=tests,
                         total_epsilon=total_epsilon(points))
    result.files = write_reports(result, base)
    return result


def placeholder_adapter(adapters: Sequence[str], *, lora_freeze_a: bool, head_init: str,
                        descriptions: bool) -> str:
    """The adapter of the sweep's base configuration (each run then sets its own).

    ``--lora-freeze-a`` needs lora (``run_sweep`` refuses it without lora among the
    adapters); ``--label-descriptions`` without ``--head-init labels`` applies to
    ``evidence`` only (the base then carries them only if its adapter is evidence).
    """
    if lora_freeze_a:
        return "lora"
    if descriptions and head_init != "labels" and "evidence" in adapters:
        return "evidence"
    return adapters[0]


def _config(base: TrainConfig, p: GridPoint, out: Path, descriptions: Path | None
            ) -> TrainConfig:
    """One run's options: the options that do not apply to its adapter are dropped."""
    evidence = p.adapter == "evidence"
    return base.replace(epsilon=p.epsilon, adapter=p.adapter, seed=p.seed,
                        lora_freeze_a=base.lora_freeze_a and p.adapter == "lora",
                        label_descriptions=descriptions
                        if evidence or base.head_init == "labels" else None,
                        out=out / "runs" / p.name, resume=True)


def _check_budget(base: TrainConfig, spend: float) -> None:
    """Refuse (BudgetRefused, exit 3) before training if DATA's ledger budget is too small.

    ``spend`` is ∞ when the sweep has non-private runs: the train pipeline records
    those as ε = ∞, which any finite budget refuses.
    """
    if spend <= 0:
        return
    from veil.privacy.ledger import Ledger, fingerprint_file

    Ledger(base.ledger).check(fingerprint_file(base.data), spend)


def facade_trainer(cfg: TrainConfig) -> RunOutcome:
    """Run one configuration with the train pipeline (:func:`veil.train.facade.train`)."""
    from veil.train.facade import train

    result = train(cfg)
    return outcome_from_train_result(result)


def outcome_from_train_result(result: Any) -> RunOutcome:
    """Adapt the train facade's ``TrainResult`` (evaluated on the test split) to a RunOutcome."""
    if result.eval_split != "test":
        raise BadInput("the sweep needs a test split (--test-frac > 0)")
    ev = result.evaluation
    private = math.isfinite(result.epsilon)
    return RunOutcome(
        metrics={m: float(ev.metrics[m]["value"]) for m in METRICS},
        test_ids=list(ev.ids), y_true=np.asarray(ev.y_true).astype(np.int8),
        y_pred=np.asarray(ev.y_pred).astype(np.int8), labels=list(ev.labels),
        epsilon=float(result.epsilon), delta=float(result.delta) if private else None,
        noise_multiplier=float(result.fit.noise_multiplier) if private else None,
        seconds=float(sum(result.timings.values())), run_dir=str(result.out))
