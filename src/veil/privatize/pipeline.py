"""``veil privatize`` end to end: read a corpus, privatize it, write the release and reports.

Outputs for ``--out OUT.jsonl`` (``.csv``/``.parquet`` too): ``OUT.jsonl`` (id + privatized
text, empty documents kept empty), ``OUT.privacy.json`` (unit: token; per-group ε; the
context-level bound; the same-group-pattern caveat), ``OUT.report.jsonl`` (per document:
ε̄, group counts, Σε, Σε·d, tokens changed), ``OUT.run.json`` (config without texts,
seed, timings) and, on request only, ``--explain report.html`` (shows the original text).
Everything is written to temp files first; the ledger records the spend (largest per-token
ε the configuration allows, unit token; ∞ if a group is kept verbatim) before the files
are renamed into place; a run over the dataset's budget is refused before any work.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.artifacts import Timer, run_record, write_json
from veil.errors import BadInput
from veil.io import read_corpus, write_records
from veil.privacy.ledger import Ledger, record_release
from veil.privacy.report import PrivacyReport
from veil.privatize.config import PrivatizeConfig
from veil.privatize.release_report import privacy_fields
from veil.privatize.stamp import Privatizer, PrivatizeResult
from veil.progress import info

_OUT_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet", ".jsonl.gz", ".csv.gz")


@dataclass
class PrivatizeJob:
    """One ``veil privatize`` invocation (paths and columns; budgets live in ``config``)."""

    data: Path
    out: Path
    config: PrivatizeConfig
    text_col: str | None = None
    id_col: str | None = None
    query_col: str | None = None
    explain: Path | None = None
    ledger: Path | None = None
    log_text: bool = False


def sibling(out: Path, tail: str) -> Path:
    """``OUT.jsonl`` -> ``OUT.<tail>`` (e.g. ``privacy.json``), whatever the out suffixes."""
    name = out.name
    for suf in sorted(_OUT_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    return out.with_name(f"{name}.{tail}")


def ledger_spend(config: PrivatizeConfig) -> float:
    """The ledger spend of a run: the largest per-token ε the config allows (unit token).

    ``inf`` when a group is released verbatim (ε = ∞: no formal guarantee, refused by any
    finite budget); with ``uniform``, the largest finite group ε (the matched ε is a mean
    of finite group ε, so it never exceeds it). Known before any work, so a budget refusal
    costs nothing, and an upper bound on every per-token ε of the run.
    """
    eps = [e for e in config.group_epsilons() if not (config.uniform and e == float("inf"))]
    return max(eps, default=0.0)


def _check(job: PrivatizeJob) -> None:
    if not job.out.name.lower().endswith(_OUT_SUFFIXES):
        raise BadInput("unknown output format; use .jsonl, .csv or .parquet", path=job.out)
    if job.config.task is None and job.query_col is None:
        raise BadInput("missing task: give --task TEXT or --query-col COLUMN")
    if job.config.task is not None and job.query_col is not None:
        raise BadInput("give either --task or --query-col, not both")
    if job.explain is not None and not job.explain.name.lower().endswith((".html", ".htm")):
        raise BadInput("--explain needs an .html path", path=job.explain)


def _empty_rows(job: PrivatizeJob, kept_ids: list[str]) -> list[tuple[int, str]]:
    """(file position, id) of rows whose text was empty (read_corpus skips them)."""
    from veil.io_formats import detect_format, load_bytes, parse_table

    table = parse_table(load_bytes(job.data), detect_format(job.data, None), header=True,
                        path=job.data)
    if job.id_col is None:
        ids = [str(r) for r in table.rows]
    else:
        ids = ["" if v is None else str(v).strip()
               for v in table.column(table.columns.index(job.id_col))]
    kept = set(kept_ids)
    return [(k, i) for k, i in enumerate(ids) if i not in kept]


def _queries(job: PrivatizeJob, values: list[Any]) -> list[str]:
    out = []
    for k, v in enumerate(values):
        if v is None or not str(v).strip():
            raise BadInput("empty query text", path=job.data, row=k + 1, column=job.query_col)
        out.append(str(v))
    return out


def _tmp(path: Path) -> Path:
    return path.with_name(f".tmp-{os.getpid()}-{time.monotonic_ns()}-{path.name}")


def run_privatize(job: PrivatizeJob) -> tuple[PrivatizeResult, dict[str, Any]]:
    """Run the job; returns the result and the corpus summary (counts, ε̄, timings).

    Raises:
        BadInput: bad options or data (nothing is written).
        BudgetRefused: the ledger's budget for this dataset would be exceeded.
    """
    _check(job)
    timer = Timer()
    with timer("read"):
        corpus = read_corpus(job.data, text_cols=job.text_col, id_col=job.id_col,
                             extra_cols=[job.query_col] if job.query_col else ())
    tasks = _queries(job, corpus.extra[job.query_col]) if job.query_col else None
    spend = ledger_spend(job.config)
    book = Ledger(job.ledger)
    book.check(corpus.fingerprint, spend)  # refuse before any work (exit 3)
    with timer("load"):
        privatizer = Privatizer(job.config).load()
    started = time.perf_counter()
    result = privatizer.privatize(corpus.texts, tasks)
    elapsed = time.perf_counter() - started
    timer.timings.update({f"privatize.{k}": v for k, v in result.timings.items()})
    summary = result.summary()
    empties = _empty_rows(job, corpus.ids) if corpus.skipped_empty else []
    summary["empty_documents"] += len(empties)
    summary["documents"] += len(empties)
    summary["tokens_per_second"] = round(summary["tokens"] / elapsed, 1) if elapsed > 0 else None
    fields = privacy_fields(job.config, privatizer.mechanism, privatizer.vocab, summary,
                            result.uniform_eps, spend)
    records = [{"id": i, "text": t} for i, t in zip(corpus.ids, result.texts, strict=True)]
    reports = [{"id": i, **r.to_dict()} for i, r in zip(corpus.ids, result.reports, strict=True)]
    for pos, rid in empties:  # keep empty documents, in file order
        records.insert(pos, {"id": rid, "text": ""})
        reports.insert(pos, {"id": rid, "n_tokens": 0, "empty": True})
    privacy_path, report_path, run_path = (sibling(job.out, t) for t in
                                           ("privacy.json", "report.jsonl", "run.json"))
    finals = [job.out, privacy_path, report_path, run_path]
    targets = {path: _tmp(path) for path in finals + ([job.explain] if job.explain else [])}
    try:
        with timer("write"):
            write_records(targets[job.out], records)
            PrivacyReport.build(**fields, dataset_fingerprint=corpus.fingerprint).write(
                targets[privacy_path])
            write_records(targets[report_path], reports)
            config = job.config.model_dump()
            if not job.log_text and config.get("task") is not None:
                config["task"] = f"<{len(config['task'])} characters; --log-text to record>"
            write_json(targets[run_path],
                       run_record({**config, "query_col": job.query_col,
                                   "dataset_fingerprint": corpus.fingerprint},
                                  None if job.config.secure else job.config.seed,
                                  timer.timings))
            if job.explain is not None:
                from veil.privatize.explain import write_explain

                write_explain(targets[job.explain], corpus.ids, corpus.texts,
                              result.traces, privatizer.vocab, result.group_eps)
        note = (f"{summary['private_tokens']} tokens; ε = largest finite group ε; "
                f"{summary['tokens_verbatim_eps_inf']} tokens verbatim (ε = ∞)")
        with record_release(book, corpus.fingerprint, spend, 0.0, job.out.name, unit="token",
                            mechanism=fields["mechanism"], accountant=None, note=note):
            for final, tmp in targets.items():  # spent first: a crash here over-counts
                os.replace(tmp, final)
    finally:
        for tmp in targets.values():
            if tmp.exists():
                tmp.unlink()
    if job.log_text and result.texts:
        info(f"first released document: {result.texts[0][:200]!r}")
    return result, summary
