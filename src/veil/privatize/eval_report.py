"""Tables (Markdown) and privacy–utility plots (PNG) from ``privatize-eval`` result rows.

Rows are aggregated over noise seeds (mean ± sample standard deviation, ``n`` seeds) for
each task set, grid, budget setting, mechanism and mode. ε̄ is the mean per-token ε over
finite-ε private tokens (metric LDP, unit: token; each mechanism in its own distance, so
equal ε̄ is not equal protection across mechanisms); "unchanged" is the share of private
tokens released as themselves (the identity adversary's success rate), which is comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from veil.artifacts import atomic_write_text

MAIN_METRICS = {"agnews": ("accuracy",), "yelp": ("accuracy",),
                "squad": ("answer_survival", "context_cosine"),
                "phi-demo": ("phi_survival",), "phi-i2b2": ("phi_survival",)}
LABELS = {"accuracy": "accuracy", "answer_survival": "answer survives",
          "context_cosine": "context cosine", "phi_survival": "gold PHI spans surviving",
          "tokens_unchanged": "tokens unchanged"}
_KEYS = ("task_set", "grid", "setting", "mechanism", "mode")


def base_name(task_set: str) -> str:
    """``agnews@500`` -> ``agnews`` (the ``@n`` marks a ``--limit`` run)."""
    return task_set.split("@")[0]


def image_name(task_set: str, grid: str) -> str:
    """PNG file name of one (task set, grid) plot."""
    return f"{task_set.replace('@', '_n')}_{grid}.png"


def aggregate(rows: Sequence[dict[str, Any]]) -> Any:
    """Mean, sd (ddof 1), seed count and mean ε̄ per (task set, grid, setting, mechanism,
    mode, metric), in first-appearance order (a pandas DataFrame)."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["eps_mean"] = pd.to_numeric(df["eps_mean"], errors="coerce")
    for c in ("g1_eps", "g2_eps", "g3_eps", "g4_eps", "n_docs"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    keys = [*_KEYS, "metric"]
    agg = df.groupby(keys, sort=False).agg(
        mean=("value", "mean"), sd=("value", "std"), n=("value", "size"),
        eps_mean=("eps_mean", "mean"), n_docs=("n_docs", "max"), g1=("g1_eps", "first"),
        g2=("g2_eps", "first"), g3=("g3_eps", "first"), g4=("g4_eps", "first")).reset_index()
    return agg


def _pm(mean: float, sd: float, n: int, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if n > 1 and sd == sd:
        return f"{mean:.{digits}f} ± {sd:.{digits}f}"
    return f"{mean:.{digits}f}"


def _eps(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:g}"


def markdown(rows: Sequence[dict[str, Any]], image_prefix: str = "") -> str:
    """All tables (one per task set and grid, plus the LDP check) as Markdown."""
    agg = aggregate(rows)
    parts: list[str] = []
    for task_set in dict.fromkeys(agg["task_set"]):
        sub = agg[agg["task_set"] == task_set]
        if task_set == "ldp":
            parts.append(_ldp_table(sub))
            continue
        ref = sub[sub["mode"].isin(["nonprivate", "detector"])]
        refs = ", ".join(f"{LABELS.get(m, m)} ({mode}) **{v:.3f}**" for m, mode, v in
                         zip(ref["metric"], ref["mode"], ref["mean"], strict=True))
        metrics = [*MAIN_METRICS.get(base_name(task_set), ()), "tokens_unchanged"]
        for grid in dict.fromkeys(sub[sub["grid"] != "-"]["grid"]):
            g = sub[sub["grid"] == grid]
            n_docs = int(g["n_docs"].max())
            parts.append(f"### {task_set}, grid `{grid}` ({n_docs} documents)\n")
            if refs:
                parts.append(f"Reference: {refs}.\n")
            head = ["setting {G1,G2,G3,G4}", "mechanism", "mode", "ε̄ per token", "seeds",
                    *[LABELS.get(m, m) for m in metrics]]
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for key, run in g.groupby(list(_KEYS), sort=False):
                by = run.set_index("metric")
                first = run.iloc[0]
                cells = [str(key[2]), str(key[3]), str(key[4]), f"{first['eps_mean']:.1f}",
                         str(int(run["n"].max()))]
                for m in metrics:
                    cells.append(_pm(by.loc[m, "mean"], by.loc[m, "sd"], int(by.loc[m, "n"]))
                                 if m in by.index else "–")
                lines.append("| " + " | ".join(cells) + " |")
            parts.append("\n".join(lines) + "\n")
            parts.append(f"![{task_set} {grid}]({image_prefix}{image_name(task_set, grid)})\n")
    return "\n".join(parts)


def _ldp_table(sub: Any) -> str:
    lines = ["### Empirical per-token metric-LDP check (small vocabulary)\n",
             "| mechanism | run | claimed ε | ε̂ (lower bound) | max excess | flagged |",
             "|---|---|---|---|---|---|"]
    for (mech, mode), run in sub.groupby(["mechanism", "mode"], sort=False):
        by = run.set_index("metric")["mean"]
        lines.append(f"| {mech} | {mode} | {_eps(float(run['eps_mean'].iloc[0]))} | "
                     f"{by.get('eps_hat', math.nan):.2f} | {by.get('max_excess', math.nan):.2f} "
                     f"| {'yes' if by.get('violated', 0) > 0 else 'no'} |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per (task set, grid): the main metric against ε̄ (left) and against the share
    of tokens unchanged (right), one line per mechanism and mode, ± sd bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    agg = aggregate(rows)
    paths = []
    for task_set in dict.fromkeys(agg["task_set"]):
        if base_name(task_set) not in MAIN_METRICS:
            continue
        sub = agg[agg["task_set"] == task_set]
        metric = MAIN_METRICS[base_name(task_set)][0]
        ref = sub[(sub["mode"] == "nonprivate") & (sub["metric"] == metric)]
        for grid in dict.fromkeys(sub[sub["grid"] != "-"]["grid"]):
            g = sub[sub["grid"] == grid]
            fig, axes = plt.subplots(1, 2, figsize=(10, 4))
            for (mech, mode), run in g.groupby(["mechanism", "mode"], sort=False):
                y = run[run["metric"] == metric].reset_index(drop=True)
                x = run[run["metric"] == "tokens_unchanged"].reset_index(drop=True)
                style = "--" if mode == "uniform" else "-"
                label = f"{mech} ({mode})"
                axes[0].errorbar(y["eps_mean"], y["mean"], yerr=y["sd"].fillna(0), fmt="o" +
                                 style, capsize=3, label=label)
                axes[1].errorbar(x["mean"], y["mean"], xerr=x["sd"].fillna(0),
                                 yerr=y["sd"].fillna(0), fmt="o" + style, capsize=3, label=label)
            for ax in axes:
                if len(ref):
                    ax.axhline(float(ref["mean"].iloc[0]), color="grey", ls=":",
                               label="non-private")
                ax.set_ylabel(LABELS[metric])
                ax.grid(alpha=0.3)
            axes[0].set_xscale("log")
            ticks = sorted({round(float(x), 0) for x in g["eps_mean"] if x == x and x > 0})
            axes[0].xaxis.set_minor_formatter(NullFormatter())
            axes[0].set_xticks(ticks, [f"{t:.0f}" for t in ticks], fontsize=8)
            axes[0].set_xlabel("mean per-token ε (finite-ε tokens; log scale)")
            axes[1].set_xlabel("share of private tokens released unchanged")
            axes[1].set_xlim(-0.03, 1.03)
            axes[1].legend(fontsize=8)
            fig.suptitle(f"{task_set}, grid {grid} ({int(g['n_docs'].max())} documents)")
            fig.tight_layout()
            path = out_dir / image_name(task_set, grid)
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths


def write_report(rows: Sequence[dict[str, Any]], out_dir: Path) -> None:
    """``results.md`` and the PNGs into ``out_dir``."""
    if not rows:
        atomic_write_text(out_dir / "results.md", "No runs.\n")
        return
    plot(rows, out_dir)
    atomic_write_text(out_dir / "results.md", "# privatize-eval results\n\n" + markdown(rows))
