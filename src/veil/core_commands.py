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
    out: Annotated[Path, typer.Option(help="Folder for the corpus and the runs on it.")] = Path(
        "veil-demo"),
    reports: Annotated[int, typer.Option(help="Number of synthetic reports.")] = 600,
    sites: Annotated[int, typer.Option(help="Number of sites the corpus is split across.")] = 4,
    split: Annotated[str, typer.Option(help="iid or dirichlet (label skew).")] = "dirichlet",
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration (small = skewed).")] = 0.5,
    corpus_only: Annotated[bool, typer.Option(help="Write the corpus; run no pipeline.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for the corpus and every demo run.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Write a seeded synthetic radiology corpus (fake PHI, multi-site) and run each pipeline."""
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


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def models(
    prepare: Annotated[list[str] | None, typer.Option(
        help="Build/convert this model now (e.g. smollm2-135m), then list.")] = None,
) -> None:
    """List the offline models veil can use: name, kind, parameters, size, status."""
    from veil.models import model_path, models_table

    for name in prepare or []:
        console.print(f"preparing {name} -> {model_path(name)}")
    table = Table(title="veil models (offline; names resolve to local paths)")
    for col in ("name", "kind", "parameters", "size on disk", "status"):
        table.add_column(col, no_wrap=True)
    table.add_column("note")
    for info in models_table():
        params = f"{info.parameters / 1e6:.1f}M" if info.parameters else "-"
        size = _human_bytes(info.size_on_disk_bytes) if info.size_on_disk_bytes else "-"
        table.add_row(info.name, info.kind, params, size, info.status, info.note)
    console.print(table)


LedgerOption = Annotated[Path | None, typer.Option(
    "--ledger", help="Ledger file (default: $VEIL_HOME/ledger.db).")]


@ledger_app.command("show")
def ledger_show(
    dataset: Annotated[str | None, typer.Argument(
        help="Show the spends of one dataset (file path, label or fingerprint prefix).")] = None,
    ledger: LedgerOption = None,
) -> None:
    """Print each dataset's budget, ε spent and remaining (or one dataset's spends)."""
    from veil.privacy.ledger import Ledger

    book = Ledger(ledger)
    if dataset is not None:
        fingerprint = book.resolve(dataset)
        table = Table(title=f"spends on dataset {fingerprint[:12]}")
        for col in ("id", "release", "unit", "epsilon", "delta", "accountant", "status",
                    "created"):
            table.add_column(col)
        for sp in book.spends(fingerprint):
            table.add_row(str(sp.id), sp.release, sp.unit, f"{sp.epsilon:g}", f"{sp.delta:g}",
                          sp.accountant or "-", sp.status, sp.created)
        console.print(table)
        return
    table = Table(title=f"privacy-budget ledger: {book.path}")
    for col in ("dataset", "label", "budget ε", "spent ε", "remaining ε", "spent δ", "spends",
                "unreleased", "units", "last spend"):
        table.add_column(col)
    for row in book.rows():
        table.add_row(
            row.fingerprint[:12], row.label or "-",
            "-" if row.budget_epsilon is None else f"{row.budget_epsilon:g}",
            f"{row.spent_epsilon:g}",
            "-" if row.remaining_epsilon is None else f"{row.remaining_epsilon:g}",
            f"{row.spent_delta:g}", str(row.n_spends), str(row.n_unreleased),
            ",".join(row.units) or "-", row.last_spend or "-",
        )
    console.print(table)


@ledger_app.command("set-budget")
def ledger_set_budget(
    dataset: Annotated[str, typer.Argument(
        help="Dataset: a file path (fingerprinted), a label or a fingerprint.")],
    epsilon: Annotated[str, typer.Argument(help="Total ε allowed for this dataset, or 'none'.")],
    label: Annotated[str | None, typer.Option(help="A name to show for this dataset.")] = None,
    ledger: LedgerOption = None,
) -> None:
    """Set a dataset's total privacy budget; later releases beyond it are refused (exit 3)."""
    from veil.errors import BadInput
    from veil.privacy.ledger import Ledger

    book = Ledger(ledger)
    if epsilon.lower() in ("none", "inf", "unlimited"):
        limit = None
    else:
        try:
            limit = float(epsilon)
        except ValueError:
            raise BadInput(f"budget must be a number or 'none', got {epsilon!r}") from None
        if not limit >= 0:
            raise BadInput(f"budget must be >= 0, got {epsilon!r}")
    if label is None and Path(dataset).is_file():
        label = Path(dataset).name
    fingerprint = book.resolve(dataset)
    book.set_budget(fingerprint, limit, label=label)
    spent = book.spent(fingerprint)
    shown = "no limit" if limit is None else f"{limit:g}"
    console.print(f"dataset {fingerprint[:12]}: budget {shown}, spent {spent:g}")


def register(app: typer.Typer) -> None:
    """Attach the core commands to ``app``."""
    app.command()(demo)
    app.command()(models)
    app.add_typer(ledger_app, name="ledger")
