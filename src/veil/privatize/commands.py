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


def privatize(
    data: Annotated[Path, typer.Argument(help="Corpus: .csv, .tsv, .jsonl, .parquet or .txt.")],
    out: Annotated[Path, typer.Option(
        "--out", help="Released file OUT.jsonl (.csv/.parquet); also writes "
        "OUT.privacy.json, OUT.report.jsonl and OUT.run.json.")],
    text_col: Annotated[str | None, typer.Option(
        "--text-col", help="Text column(s), comma-separated (default: 'text').")] = None,
    id_col: Annotated[str | None, typer.Option(
        "--id-col", help="Id column kept in the output (default: row number).")] = None,
    task: Annotated[str | None, typer.Option(
        "--task", help="Task text shared by all documents (decides task importance).")] = None,
    query_col: Annotated[str | None, typer.Option(
        "--query-col", help="Column with a per-document task/query (instead of --task).")] = None,
    epsilon: Annotated[float, typer.Option(
        "--epsilon", help="Base per-token ε (metric LDP, unit: token); group ε = ε × budget.")
    ] = 100.0,
    budgets: Annotated[str | None, typer.Option(
        "--budgets", help="G1:G2:G3:G4 multipliers of --epsilon (default 2:1:4:3; 0 masks, "
        "inf keeps verbatim).")] = None,
    group_eps: Annotated[str | None, typer.Option(
        "--group-eps", help="Explicit per-group ε g1,g2,g3,g4 (overrides --epsilon/--budgets).")
    ] = None,
    tau: Annotated[float, typer.Option(
        "--tau", help="Importance threshold on cos(token, task) in [-1, 1].")] = 0.5,
    mechanism: Annotated[str, typer.Option(
        "--mechanism", help="polar (STAMP), laplace, dchi or exponential.")] = "polar",
    uniform: Annotated[bool, typer.Option(
        "--uniform", help="Baseline: one ε for all tokens, matched to STAMP's mean ε.")] = False,
    embeddings: Annotated[str, typer.Option(
        "--embeddings", help="minilm, smollm2-135m or a local model folder.")] = "minilm",
    kappa_scale: Annotated[str, typer.Option(
        "--kappa-scale", help="paper (κ = ε) or code (κ = ε/π, the reference code).")] = "paper",
    decode_any: Annotated[bool, typer.Option(
        "--decode-any", help="Let word-initial and continuation pieces decode to either.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed (ignored with --secure).")] = 0,
    secure: Annotated[bool, typer.Option(
        "--secure", help="Seed the noise from the OS entropy pool (use for real releases).")
    ] = False,
    explain: Annotated[Path | None, typer.Option(
        "--explain", help="Write an HTML page with the ORIGINAL text beside the released one.")
    ] = None,
    ledger: Annotated[Path | None, typer.Option(
        "--ledger", help="Budget ledger (default $VEIL_HOME/ledger.db).")] = None,
    log_text: Annotated[bool, typer.Option(
        "--log-text", help="Allow raw text in logs (off by default: PHI).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars or summary.")] = False,
) -> None:
    """Rewrite texts with STAMP: per-token metric LDP, budget spent where the task needs it."""
    from veil.privatize.cli_run import privatize_main

    privatize_main(data, out, text_col=text_col, id_col=id_col, task=task, query_col=query_col,
                   epsilon=epsilon, budgets=budgets, group_eps=group_eps, tau=tau,
                   mechanism=mechanism, uniform=uniform, embeddings=embeddings,
                   kappa_scale=kappa_scale, decode_any=decode_any, seed=seed, secure=secure,
                   explain=explain, ledger=ledger, log_text=log_text, quiet=quiet)


def privatize_eval(
    task_set: Annotated[str, typer.Option(
        "--task-set", help="agnews, yelp, squad, phi, ldp or all (comma list allowed).")] = "all",
    mechanisms: Annotated[str, typer.Option(
        "--mechanisms", help="Comma list of polar, laplace, dchi, exponential.")
    ] = "polar,laplace,dchi,exponential",
    grid: Annotated[str, typer.Option(
        "--grid", help="paper (Table 1 group budgets), d384 (base ε 10..200 × 2:1:4:3) or "
        "base ε values 'e1,e2,…' (× 2:1:4:3).")] = "d384",
    seeds: Annotated[str, typer.Option(
        "--seeds", help="Number of noise seeds (0..N-1) or a comma list.")] = "3",
    modes: Annotated[str, typer.Option(
        "--modes", help="stamp, uniform (matched mean ε) or stamp,uniform.")] = "stamp",
    limit: Annotated[int | None, typer.Option(
        "--limit", help="Privatize at most N documents per task set.")] = None,
    embeddings: Annotated[str, typer.Option(
        "--embeddings", help="Token embeddings: minilm, smollm2-135m or a folder.")] = "minilm",
    encoder: Annotated[str, typer.Option(
        "--encoder", help="Sentence encoder of the classifiers and context cosine.")
    ] = "minilm",
    tau: Annotated[float, typer.Option("--tau", help="Importance threshold (cosine).")] = 0.5,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Datasets folder (default ../shared/datasets).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("privatize-eval"),
    resume: Annotated[bool, typer.Option(
        "--resume", help="Keep rows already in OUT/results.csv and skip those runs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    """Sweep ε, mechanisms and seeds: utility (AG News, Yelp, SQuAD) and privacy (tokens
    unchanged, PHI surviving, empirical LDP) -> OUT/results.csv, results.md, *.png, run.json."""
    from veil.privatize.evaluate import EvalOptions, parse_seeds, run_eval
    from veil.progress import info, set_quiet

    set_quiet(quiet)
    opts = EvalOptions(out=out, task_sets=tuple(task_set.split(",")),
                       mechanisms=tuple(mechanisms.split(",")), grid=grid,
                       seeds=parse_seeds(seeds), modes=tuple(modes.split(",")), limit=limit,
                       embeddings=embeddings, encoder=encoder, tau=tau, data_dir=data_dir,
                       resume=resume)
    rows = run_eval(opts)
    info(f"{len(rows)} result rows -> {out / 'results.csv'}, {out / 'results.md'}")


def register(app: typer.Typer) -> None:
    """Attach the privatize pipeline's commands to the ``veil`` app."""
    app.command("pii")(pii)
    app.command("privatize")(privatize)
    app.command("privatize-eval")(privatize_eval)
