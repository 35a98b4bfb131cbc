"""Core commands shared by every pipeline: ``demo``, ``models``, ``ledger``.

Heavy libraries are imported inside the commands so ``veil --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from veil.progress import console, set_quiet

DEMO_STAGES = ("veil.train.demo", "veil.privatize.demo", "veil.synth.demo")

ledger_app = typer.Typer(help="The privacy-budget ledger: what each dataset has spent.",
                         no_args_is_help=True)


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo corpus and the runs on it.")] = Path(
        "veil-demo"),
    reports: Annotated[int, typer.Option(help="Number of synthetic reports.")] = 600,
    sites: Annotated[int, typer.Option(help="Number of sites the corpus is split across.")] = 4,
    split: Annotated[str, typer.Option(help="iid or dirichlet (label-skewed sites).")] = "dirichlet",
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration (smaller = more skew).")] = 0.5,
    corpus_only: Annotated[bool, typer.Option(help="Only write the corpus; run no pipeline.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for the corpus and every demo run.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Write a seeded synthetic radiology corpus (fake PHI, multi-site) and run each pipeline on it."""
    from veil.demo import write_demo_corpus

    set_quiet(quiet)
    summary = write_demo_corpus(out, n_reports=reports, n_sites=sites, split=split, alpha=alpha,
                                seed=seed)
    table = Table(title=f"demo corpus: {out}")
    table.add_column("item")
    table.add_column("value")
    for item, value in summary.rows():
        table.add_row(item, value)
    console.print(table)
    if corpus_only:
        return
    for module in DEMO_STAGES:
        try:
            stage = __import__(module, fromlist=["run_demo_stage"])
        except ModuleNotFoundError as err:
            if err.name == module:
                continue
            raise
        stage.run_demo_stage(Path(out), seed=seed)


def register(app: typer.Typer) -> None:
    """Attach the core commands to ``app``."""
    app.command()(demo)
