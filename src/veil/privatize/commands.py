"""CLI commands of the privatize pipeline: ``veil pii`` (PHI spans per document).

Thin: parse options, call :mod:`veil.privatize.sensitivity`, write records. Heavy
libraries (spaCy, Presidio) are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def pii(
    data: Annotated[Path, typer.Argument(help="Corpus file (.csv, .tsv, .jsonl, .parquet, .txt).")],
    out: Annotated[Path, typer.Option("--out", help="Output spans (.jsonl, .csv or .parquet).")],
    text_col: Annotated[str, typer.Option(help="Text column(s), comma-separated.")] = "text",
    id_col: Annotated[str | None, typer.Option(help="Id column (default: row number).")] = None,
    threshold: Annotated[float, typer.Option(help="Minimum span confidence (0-1).")] = 0.35,
    ner: Annotated[bool, typer.Option(help="Use spaCy NER besides patterns and dictionaries.")
                   ] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per spaCy batch.")] = 64,
    log_text: Annotated[bool, typer.Option(
        help="Also write each span's text (PHI!) to the output.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary.")] = False,
) -> None:
    """Detect PHI/PII spans in each document; one output row per document (id, spans).

    Spans carry character offsets, type and score; the span text is written only
    with --log-text. Nothing is released and no privacy budget is spent.
    """
    from veil.errors import BadInput
    from veil.io import read_corpus, write_records
    from veil.privatize.sensitivity import PhiConfig, PhiDetector
    from veil.progress import info, set_quiet, track

    set_quiet(quiet)
    if not 0.0 <= threshold <= 1.0:
        raise BadInput(f"--threshold must be in [0, 1], got {threshold:g}", column="threshold")
    corpus = read_corpus(data, text_cols=text_col, id_col=id_col)
    detector = PhiDetector(PhiConfig(threshold=threshold, use_ner=ner, batch_size=batch_size))
    chunk = max(batch_size, 256)
    starts = range(0, len(corpus.texts), chunk)
    records = []
    for start in track(starts, "detecting PHI", total=len(starts)):
        texts = corpus.texts[start:start + chunk]
        for k, spans in enumerate(detector.detect(texts)):
            rows = []
            for s in spans:
                row: dict[str, object] = {"start": s.start, "end": s.end,
                                          "type": s.entity_type, "score": s.score}
                if log_text:
                    row["text"] = texts[k][s.start:s.end]
                rows.append(row)
            records.append({"id": corpus.ids[start + k], "spans": rows})
    write_records(out, records)
    n_spans = sum(len(r["spans"]) for r in records)  # type: ignore[arg-type]
    info(f"{len(records)} documents, {n_spans} PHI spans -> {out}")



def register(app: typer.Typer) -> None:
    """Attach the privatize pipeline's commands to the ``veil`` app."""
    app.command("pii")(pii)
