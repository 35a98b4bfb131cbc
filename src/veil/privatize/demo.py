"""``veil demo`` stage: privatize the demo corpus and show what survived.

Runs ``veil privatize`` (detector included) at the default budget (ε = 100, budgets
2:1:4:3, τ = 0.5, polar, minilm) on the first :data:`DEMO_DOCS` reports into
``out_dir/privatize/`` with a ledger of its own, then measures against the corpus's gold
PHI spans how many spans were released verbatim (every token of the span released as the
same piece: the adversary reads it unchanged, up to the model's lower-casing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from veil.io import write_records
from veil.privatize.config import PrivatizeConfig
from veil.privatize.pipeline import PrivatizeJob, run_privatize
from veil.privatize.stats import TokenTrace
from veil.progress import console

DEMO_DOCS = 300
DEMO_TASK = "Which abnormalities does this chest X-ray report describe?"


def span_survived(trace: TokenTrace, start: int, end: int) -> bool:
    """Whether every token overlapping ``[start, end)`` was released as its own piece."""
    off = trace.offsets
    hit = (off[:, 0] < end) & (off[:, 1] > start)
    if not hit.any():
        return False
    return bool((trace.keep[hit] | (trace.out_ids[hit] == trace.ids[hit])).all())


def survival_by_type(traces: list[TokenTrace],
                     gold: list[list[dict[str, Any]]]) -> dict[str, tuple[int, int]]:
    """``{type: (survived, total)}`` over the gold spans (plus ``"all"``)."""
    out: dict[str, list[int]] = {}
    for trace, spans in zip(traces, gold, strict=True):
        for s in spans:
            ok = span_survived(trace, int(s["start"]), int(s["end"]))
            for key in (str(s.get("type", "?")), "all"):
                cell = out.setdefault(key, [0, 0])
                cell[0] += ok
                cell[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def run_demo_stage(out_dir: Path, *, seed: int) -> None:
    """Privatize ``out_dir/reports.jsonl`` into ``out_dir/privatize/`` and print a summary."""
    rows = [json.loads(line) for line in
            (Path(out_dir) / "reports.jsonl").read_text("utf-8").splitlines() if line.strip()]
    rows = rows[:DEMO_DOCS]
    folder = Path(out_dir) / "privatize"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "input.jsonl"
    write_records(source, [{"id": r["id"], "text": r["text"]} for r in rows])
    config = PrivatizeConfig(task=DEMO_TASK, seed=seed)
    job = PrivatizeJob(data=source, out=folder / "reports.privatized.jsonl", config=config,
                       id_col="id", ledger=folder / "ledger.db")
    result, summary = run_privatize(job)
    surv = survival_by_type(result.traces, [r["phi_spans"] for r in rows])
    kept, total = surv.get("all", (0, 0))
    n_tok = max(summary["tokens"], 1)
    console.print(f"[bold]privatize[/bold]: {len(rows)} reports, {summary['tokens']} tokens, "
                  f"ε = {config.epsilon:g} × {':'.join(f'{b:g}' for b in config.budgets)} "
                  f"(G1:G2:G3:G4), τ = {config.tau:g}, polar/minilm")
    console.print(f"  gold PHI spans surviving verbatim: {kept}/{total} "
                  f"({100 * kept / max(total, 1):.1f}%)")
    worst = sorted(((v[0] / v[1], k) for k, v in surv.items() if k != "all" and v[1]),
                   reverse=True)[:4]
    if worst:
        console.print("  by type (most surviving): " + ", ".join(
            f"{k} {100 * r:.0f}%" for r, k in worst))
    console.print(f"  tokens changed: {summary['tokens_changed']} "
                  f"({100 * summary['tokens_changed'] / n_tok:.1f}%); groups "
                  + "/".join(str(summary["group_counts"][g]) for g in ("G1", "G2", "G3", "G4"))
                  + f"; {summary['tokens_per_second']} tokens/s (detection included)")
    console.print(f"  written: {job.out} (+ .privacy.json, .report.jsonl)")


__all__ = ["DEMO_DOCS", "DEMO_TASK", "run_demo_stage", "span_survived", "survival_by_type"]
