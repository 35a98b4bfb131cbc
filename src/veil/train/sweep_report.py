"""The sweep's paired tests, tables and privacy–utility plot (``veil sweep`` outputs).

Files written into the sweep folder:

* ``results.csv`` — one row per run (adapter, ε, seed, weighted/micro/macro F1,
  certified ε, δ, σ, time) plus the TF-IDF baseline row;
* ``results.md`` — mean ± sd per adapter × ε, the baseline, and the paired tests
  with a sentence saying which tests were used;
* ``paired_tests.json`` and ``sweep.json`` — the same figures, machine-readable;
* ``privacy_utility.png`` — weighted F1 against ε (log scale, ∞ drawn as a
  separate tick at the right), mean ± sd error bars, one line per adapter.

Utility is measured on the held-out test split and spends no privacy budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from veil.errors import BadInput
from veil.privacy.rng import make_rng
from veil.train.stats import MIN_SEEDS_FOR_WILCOXON, paired_bootstrap, wilcoxon_over_seeds

if TYPE_CHECKING:
    from veil.train.config import TrainConfig
    from veil.train.sweep import GridPoint, RunOutcome, SweepResult

POOLING = ("seeds pooled by averaging each model's weighted F1 over its seeds within every "
           "bootstrap resample")


def _check_same_test_set(outcomes: Sequence[RunOutcome]) -> None:
    first = outcomes[0]
    for res in outcomes[1:]:
        if res.test_ids != first.test_ids or list(res.labels) != list(first.labels):
            raise BadInput("sweep runs were scored on different test records or label sets; "
                           "every run must share one split (same --test-frac and split seed)")


def paired_tests(results: Sequence[tuple[GridPoint, RunOutcome]], baseline: RunOutcome | None,
                 *, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """Each adapter × ε cell (and the baseline) against non-private LoRA, paired on test records.

    Primary: :func:`veil.train.stats.paired_bootstrap` on weighted F1, one-sided
    (H1: the cell is worse). Secondary: :func:`veil.train.stats.wilcoxon_over_seeds`
    over per-seed weighted F1, seed paired with seed, when both sides have at
    least :data:`MIN_SEEDS_FOR_WILCOXON` common seeds. Returns [] without a
    non-private LoRA reference in the grid.
    """
    outcomes = [r for _, r in results] + ([baseline] if baseline is not None else [])
    if not outcomes:
        return []
    _check_same_test_set(outcomes)
    cells: dict[tuple[str, float], dict[int, RunOutcome]] = {}
    for p, r in results:
        cells.setdefault((p.adapter, p.epsilon), {})[p.seed] = r
    ref = cells.pop(("lora", math.inf), None)
    if ref is None:
        return []
    y = np.asarray(outcomes[0].y_true)
    ref_stack = np.stack([ref[s].y_pred for s in sorted(ref)])
    ref_f1 = {s: float(r.metrics["weighted_f1"]) for s, r in ref.items()}
    comparisons: list[tuple[str, float, dict[int, RunOutcome]]] = [
        (a, e, runs) for (a, e), runs in cells.items()]
    if baseline is not None:
        comparisons.append(("tfidf-lr", math.inf, {-1: baseline}))
    tests = []
    for k, (adapter, eps, runs) in enumerate(comparisons):
        stack = np.stack([runs[s].y_pred for s in sorted(runs)])
        boot = paired_bootstrap(y, stack, ref_stack, rng=make_rng(seed + k), n_boot=n_boot,
                                average="weighted", alternative="less")
        common = sorted(set(runs) & set(ref))
        wil = None
        if len(common) >= MIN_SEEDS_FOR_WILCOXON:
            wil = wilcoxon_over_seeds([float(runs[s].metrics["weighted_f1"]) for s in common],
                                      [ref_f1[s] for s in common], alternative="less").to_dict()
        tests.append({"adapter": adapter, "epsilon": "inf" if math.isinf(eps) else f"{eps:g}",
                      "reference": "lora, epsilon inf", "bootstrap": boot.to_dict(),
                      "wilcoxon": wil})
    return tests


def _fmt(mean: float, sd: float | None) -> str:
    return f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f}"


def _test_sentence(tests: Sequence[dict[str, Any]], n_boot: int) -> str:
    if not tests:
        return ("No paired tests: the grid has no non-private LoRA reference "
                "(include `lora` in --adapters and `inf` in --epsilons).")
    used_wil = any(t["wilcoxon"] is not None for t in tests)
    second = ("Secondary: Wilcoxon signed-rank test over seeds (`scipy.stats.wilcoxon`, "
              "one-sided, seed paired with seed), used because there are "
              f">= {MIN_SEEDS_FOR_WILCOXON} seeds." if used_wil else
              f"The Wilcoxon signed-rank test over seeds was not used (fewer than "
              f"{MIN_SEEDS_FOR_WILCOXON} seeds).")
    return (f"Test used: **paired bootstrap over test examples** ({n_boot} resamples of the "
            "test records; on each, both models are scored on the same resampled records), "
            f"{POOLING}; Δ = weighted F1 of the row − that of non-private LoRA, 95% percentile "
            "interval, one-sided p-value for H1: the row is worse (ties count one half). "
            + second)


def markdown(result: SweepResult, base: TrainConfig) -> str:
    """The ``results.md`` text (file names only; no data content)."""
    lines = [
        "# veil sweep: privacy–utility",
        "",
        f"Data: `{Path(base.data).name}`; model `{base.model}`, {base.epochs} epoch(s), "
        f"batch {base.batch_size}; one fixed split (test fraction {base.test_frac:g}, split "
        f"seed {base.split_seed}) shared by every run and the baseline.",
        "",
        f"Privacy: each DP run protects every training record (one row) with its own (ε, δ); "
        f"together the sweep's DP runs spend **ε = {result.total_epsilon:g}** on this dataset "
        "(sum over runs, basic composition). ε = ∞ rows and the TF-IDF baseline are "
        "non-private. Metrics are measured on the test split.",
        "",
        "| adapter | ε | runs | weighted F1 | micro F1 | macro F1 |",
        "|---|---|---|---|---|---|",
    ]
    for s in result.summary:
        lines.append(f"| {s['adapter']} | {s['epsilon']} | {s['runs']} | "
                     + " | ".join(_fmt(s[f"{m}_mean"], s[f"{m}_sd"])
                                  for m in ("weighted_f1", "micro_f1", "macro_f1")) + " |")
    lines += ["", "Mean ± sample standard deviation (ddof = 1) over seeds; one value when "
              "there is a single run. `tfidf-lr`: TF-IDF + one-vs-rest logistic regression "
              "(class weight, C and thresholds tuned on a validation part of the training "
              "split), non-private, same split.", "",
              "## Paired tests against non-private LoRA (ε = ∞)", "",
              _test_sentence(result.tests, result.tests[0]["bootstrap"]["n_boot"]
                             if result.tests else 0), ""]
    if result.tests:
        lines += ["| adapter | ε | Δ weighted F1 | 95% CI | p (bootstrap, one-sided) | "
                  "p (Wilcoxon, one-sided) |", "|---|---|---|---|---|---|"]
        for t in result.tests:
            b = t["bootstrap"]
            wil = "n/a" if t["wilcoxon"] is None else f"{t['wilcoxon']['p_value']:.3g}"
            lines.append(f"| {t['adapter']} | {t['epsilon']} | {b['observed_diff']:+.3f} | "
                         f"[{b['ci_low']:+.3f}, {b['ci_high']:+.3f}] | {b['p_value']:.3g} | "
                         f"{wil} |")
    return "\n".join(lines) + "\n"


def _x_positions(eps_values: Sequence[float]) -> tuple[dict[float, float], list[float], list[str]]:
    """Log10 positions for finite ε; ∞ one decade right of the largest finite ε."""
    finite = sorted(e for e in eps_values if math.isfinite(e))
    pos = {e: math.log10(e) for e in finite}
    if any(math.isinf(e) for e in eps_values):
        pos[math.inf] = (math.log10(finite[-1]) + 1.0) if finite else 0.0
    ticks = sorted(pos.values())
    labels = [next(("∞" if math.isinf(e) else f"{e:g}") for e, x in pos.items() if x == t)
              for t in ticks]
    return pos, ticks, labels


def plot(result: SweepResult, path: Path) -> None:
    """Write the privacy–utility plot (weighted F1 vs ε, error bars = sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from veil.artifacts import atomic_output

    runs = [s for s in result.summary if s["adapter"] != "tfidf-lr"]
    eps_values = sorted({float(s["epsilon"]) for s in runs})
    pos, ticks, labels = _x_positions(eps_values)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    adapters = list(dict.fromkeys(s["adapter"] for s in runs))
    for k, adapter in enumerate(adapters):
        cells = sorted((s for s in runs if s["adapter"] == adapter),
                       key=lambda s: float(s["epsilon"]))
        offset = 0.04 * (k - (len(adapters) - 1) / 2)
        xs = [pos[float(s["epsilon"])] + offset for s in cells]
        ys = [s["weighted_f1_mean"] for s in cells]
        err = [s["weighted_f1_sd"] or 0.0 for s in cells]
        finite = [i for i, s in enumerate(cells) if math.isfinite(float(s["epsilon"]))]
        line = ax.errorbar([xs[i] for i in finite], [ys[i] for i in finite],
                           yerr=[err[i] for i in finite], marker="o", capsize=3, label=adapter)
        inf_i = [i for i in range(len(cells)) if i not in finite]
        color = line[0].get_color()
        for i in inf_i:
            ax.errorbar([xs[i]], [ys[i]], yerr=[err[i]], marker="s", capsize=3, color=color,
                        linestyle="none")
    base = [s for s in result.summary if s["adapter"] == "tfidf-lr"]
    if base:
        ax.axhline(base[0]["weighted_f1_mean"], color="grey", linestyle="--",
                   label="TF-IDF + LR (non-private)")
    if math.inf in pos and len(pos) > 1:
        gap = pos[math.inf] - 0.5
        ax.axvline(gap, color="lightgrey", linewidth=0.8)
    ax.set_xticks(ticks, labels)
    ax.set_xlabel("ε per training record (log scale; ∞ = non-private)")
    ax.set_ylabel("weighted F1 (test split)")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("privacy–utility (mean ± sd over seeds)")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_reports(result: SweepResult, base: TrainConfig) -> dict[str, Path]:
    """Write results.csv, results.md, paired_tests.json, sweep.json and the plot."""
    from veil.artifacts import atomic_write_text, write_json
    from veil.io import write_records

    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "results.csv", "markdown": out / "results.md",
             "tests": out / "paired_tests.json", "summary": out / "sweep.json",
             "plot": out / "privacy_utility.png"}
    write_records(files["csv"], result.rows)
    atomic_write_text(files["markdown"], markdown(result, base))
    write_json(files["tests"], {"pooling": POOLING, "tests": result.tests})
    write_json(files["summary"], {"total_epsilon": result.total_epsilon,
                                  "summary": result.summary, "config": base.to_dict()})
    plot(result, files["plot"])
    return files
