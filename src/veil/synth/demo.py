"""The synth stage of ``veil demo``: a small federated DP synthesis across the demo sites.

Holds out a fifth of every demo site's reports, runs ``veil synth`` on the rest
(Flower simulation engine when Ray is installed, else in-process; 1 strong
site, ε = 8 per record at each site) and prints alignment (Fréchet distance,
k-NN precision/recall on ``minilm`` embeddings) and downstream figures
(classifier trained on the synthetic reports, tested on the held-out real
ones). The generator is the tiny random ``tiny-llama`` so that the stage takes
about a minute on 2 cores: its texts are word salad, so the figures show the
plumbing, not the method's quality — use ``--generator smollm2-135m`` for that.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from veil import progress
from veil.artifacts import write_json

DEMO_SETTINGS = dict(
    text_col="findings", code_cols=("labels",), code_sep=";", generator="tiny-llama",
    embedder="minilm", epsilon=8.0, delta=1e-4, rounds=1, local_epochs=0.5, sample_rate=0.25,
    max_length=48, samples=64, k=3, max_new_tokens=24, gen_batch_size=64,
    candidates_factor=2.0, accountant="rdp",
)


def _hold_out(sites: Path, work: Path, seed: int) -> tuple[Path, Path]:
    """Copy each site's file minus a held-out fifth; the fifths form ``heldout.csv``."""
    from veil.io import read_records
    from veil.splits import format_rows

    rng = np.random.default_rng(np.random.SeedSequence([seed, 5]))
    train_dir = work / "sites"
    train_dir.mkdir(parents=True, exist_ok=True)
    held: list[dict[str, object]] = []
    columns: list[str] = []
    for path in sorted(sites.glob("site_*.csv")):
        rows = read_records(path)
        if not rows:
            continue
        columns = list(rows[0])
        mask = rng.random(len(rows)) < 0.2
        keep = [r for r, m in zip(rows, mask, strict=True) if not m]
        held += [r for r, m in zip(rows, mask, strict=True) if m]
        (train_dir / path.name).write_text(format_rows(keep, columns, "csv"), "utf-8")
    heldout = work / "heldout.csv"
    heldout.write_text(format_rows(held, columns, "csv"), "utf-8")
    return train_dir, heldout


def run_demo_stage(out_dir: Path, *, seed: int, engine: str | None = None) -> None:
    """Run the synth demo on ``out_dir/sites`` and print its figures.

    Writes ``out_dir/synth/`` (the held-out split, the run's artifact folder
    ``run/`` and ``eval.json``). ε = 8 per record at each demo site. ``engine``:
    "flower" or "inprocess" (default: Flower's simulation engine when Ray is installed).
    """
    from rich.table import Table

    from veil.synth.config import SynthConfig
    from veil.synth.evaluate import evaluate_files
    from veil.synth.facade import synthesize

    out_dir = Path(out_dir)
    work = out_dir / "synth"
    train_dir, heldout = _hold_out(out_dir / "sites", work, seed)
    if engine is None:
        engine = "flower" if importlib.util.find_spec("ray") is not None else "inprocess"
    cfg = SynthConfig(**DEMO_SETTINGS, seed=seed)  # type: ignore[arg-type]
    progress.info(f"synth demo: federated DP synthesis across the demo sites ({engine} engine)")
    summary = synthesize(train_dir, work / "run", cfg, strong=1, engine=engine)  # type: ignore[arg-type]
    result = evaluate_files(work / "run" / "synthetic.jsonl", heldout, text_col="findings",
                            label_col="labels", label_sep=";", embedder="minilm", seed=seed)
    write_json(work / "eval.json", result.to_dict())
    table = Table(title="synth demo: synthetic vs held-out real reports (tiny-llama generator)")
    table.add_column("measure")
    table.add_column("value")
    rows = [
        ("synthetic records", str(summary.n_synthetic)),
        ("epsilon per record, by site",
         ", ".join(f"{s} {e:.2f}" for s, e in summary.per_site_epsilon.items())),
        ("Frechet distance (minilm)", f"{result.frechet:.4f}"),
        ("k-NN precision / recall", f"{result.precision:.3f} / {result.recall:.3f}"),
        ("MAUVE (minilm)", (result.mauve_note or "n/a") if result.mauve is None
         else f"{result.mauve:.3f} ({result.mauve_buckets} buckets)"),
        ("downstream accuracy / macro-F1", f"{result.accuracy:.3f} / {result.macro_f1:.3f}"),
        ("artifacts", str(work / "run")),
    ]
    for item, value in rows:
        table.add_row(item, value)
    progress.console.print(table)
