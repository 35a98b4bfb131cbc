"""The body of ``veil privatize``: options -> config -> :func:`run_privatize` -> summary table.

Kept out of ``commands.py`` so the CLI module stays thin and imports nothing heavy.
Prints counts and rates only (to stderr); raw text only with ``--log-text``.
"""

from __future__ import annotations

from pathlib import Path

from veil.errors import BadInput
from veil.privatize.config import DEFAULT_BUDGETS, PrivatizeConfig, parse_budgets, parse_group_eps
from veil.privatize.pipeline import PrivatizeJob, run_privatize, sibling
from veil.progress import console, set_quiet


def build_config(*, epsilon: float, budgets: str | None, group_eps: str | None, tau: float,
                 mechanism: str, uniform: bool, embeddings: str, kappa_scale: str,
                 decode_any: bool, task: str | None, seed: int, secure: bool) -> PrivatizeConfig:
    """Validate the command-line options into a :class:`PrivatizeConfig` (BadInput, exit 2)."""
    if budgets is not None and group_eps is not None:
        raise BadInput("give --budgets or --group-eps, not both")
    if task is not None and not task.strip():
        raise BadInput("--task is empty")
    return PrivatizeConfig.checked(
        epsilon=epsilon, budgets=parse_budgets(budgets) if budgets else DEFAULT_BUDGETS,
        group_eps=parse_group_eps(group_eps) if group_eps else None, tau=tau,
        mechanism=mechanism, uniform=uniform, embeddings=embeddings, kappa_scale=kappa_scale,
        decode_any=decode_any, task=task, seed=seed, secure=secure)


def privatize_main(data: Path, out: Path, *, text_col: str | None, id_col: str | None,
                   task: str | None, query_col: str | None, epsilon: float, budgets: str | None,
                   group_eps: str | None, tau: float, mechanism: str, uniform: bool,
                   embeddings: str, kappa_scale: str, decode_any: bool, seed: int, secure: bool,
                   explain: Path | None, ledger: Path | None, log_text: bool,
                   quiet: bool) -> None:
    """Run ``veil privatize`` with parsed options and print a summary (no text)."""
    set_quiet(quiet)
    config = build_config(epsilon=epsilon, budgets=budgets, group_eps=group_eps, tau=tau,
                          mechanism=mechanism, uniform=uniform, embeddings=embeddings,
                          kappa_scale=kappa_scale, decode_any=decode_any, task=task, seed=seed,
                          secure=secure)
    job = PrivatizeJob(data=data, out=out, config=config, text_col=text_col, id_col=id_col,
                       query_col=query_col, explain=explain, ledger=ledger, log_text=log_text)
    _, summary = run_privatize(job)
    if quiet:
        return
    from rich.table import Table

    table = Table(title=f"veil privatize -> {out}")
    table.add_column("item")
    table.add_column("value")
    counts = summary["group_counts"]
    rows = [
        ("documents (empty)", f"{summary['documents']} ({summary['empty_documents']})"),
        ("tokens", str(summary["tokens"])),
        ("groups G1/G2/G3/G4", "/".join(str(counts[g]) for g in ("G1", "G2", "G3", "G4"))),
        ("kept (already masked)", str(counts["kept-mask"])),
        ("mean ε per token (finite)", str(summary["eps_mean_finite"])),
        ("tokens changed", str(summary["tokens_changed"])),
        ("tokens verbatim (ε = ∞) / masked (ε = 0)",
         f"{summary['tokens_verbatim_eps_inf']} / {summary['tokens_masked_eps_0']}"),
        ("PHI spans detected", str(summary["phi_spans_detected"])),
        ("tokens/s", str(summary["tokens_per_second"])),
        ("privacy report", str(sibling(out, "privacy.json"))),
        ("per-document report", str(sibling(out, "report.jsonl"))),
    ]
    if explain is not None:
        rows.append(("explain (contains the ORIGINAL text)", str(explain)))
    for item, value in rows:
        table.add_row(item, value)
    console.print(table)
