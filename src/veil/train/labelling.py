"""``veil label``: apply a teacher to a corpus, write the labelled file, measure agreement.

The labelled file holds every original column of each (non-empty) input row plus
``teacher_labels`` (label names joined by ``output_sep``) and ``teacher_scores``
(label -> score). It is the user's own data, written to their own disk; no
privacy budget is spent (see :mod:`veil.train.teacher` for when teacher labels
keep the record-level guarantee of a model later trained on them).

With a gold column, agreement between teacher and gold is written to
``<name>.agreement.json`` beside the output: accuracy, micro/macro/weighted F1
and Cohen's κ (single-label), or per-label agreement, precision, recall, F1 and
κ plus overall F1 and exact-match ratio (multi-label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import BadInput
from veil.train.baseline import f1_summary, indicator
from veil.train.teacher import ZeroShotTeacher, decide, load_descriptions, parse_labels

ZERO_SHOT = "zero-shot"


@dataclass
class LabelResult:
    """What :func:`label_file` wrote."""

    out: Path
    agreement_path: Path | None
    teacher: str
    labels: list[str]
    multi_label: bool
    n_rows: int
    label_counts: dict[str, int]
    n_windowed: int
    agreement: dict[str, Any] | None


def _kappa(a: Sequence[Any] | np.ndarray, b: Sequence[Any] | np.ndarray) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    value = float(cohen_kappa_score(a, b))
    return None if math.isnan(value) else value


def agreement(gold_rows: Sequence[Sequence[str]], pred: np.ndarray, labels: Sequence[str], *,
              multi_label: bool) -> dict[str, Any]:
    """Agreement of teacher labels ``pred`` (0/1, ``(n, L)``) with gold label rows.

    Single-label: rows whose gold cell holds exactly one label are compared
    (others counted in ``n_skipped``); a gold label outside ``labels`` counts as a
    disagreement. Multi-label: gold labels outside ``labels`` are ignored.
    Scores follow scikit-learn (``zero_division=0``); κ is None where undefined.
    """
    from sklearn.metrics import accuracy_score, f1_score

    labels = list(labels)
    if multi_label:
        y = indicator(gold_rows, labels)
        p = np.asarray(pred, dtype=np.int8)
        per_label: dict[str, Any] = {}
        for j, lab in enumerate(labels):
            tp = int((y[:, j] & p[:, j]).sum())
            n_pred, support = int(p[:, j].sum()), int(y[:, j].sum())
            per_label[lab] = {
                "agreement": float(np.mean(y[:, j] == p[:, j])),
                "precision": tp / n_pred if n_pred else 0.0,
                "recall": tp / support if support else 0.0,
                "f1": 2 * tp / (n_pred + support) if n_pred + support else 0.0,
                "kappa": _kappa(y[:, j], p[:, j]), "support": support, "predicted": n_pred,
            }
        return {"multi_label": True, "n_compared": len(gold_rows), "n_skipped": 0,
                **f1_summary(y, p), "exact_match": float(accuracy_score(y, p)),
                "per_label": per_label}
    keep = [i for i, row in enumerate(gold_rows) if len(row) == 1]
    gold = [gold_rows[i][0] for i in keep]
    guess = [labels[int(np.argmax(pred[i]))] for i in keep]
    out: dict[str, Any] = {"multi_label": False, "n_compared": len(keep),
                           "n_skipped": len(gold_rows) - len(keep),
                           "n_gold_outside_labels": sum(g not in labels for g in gold)}
    if not keep:
        return out
    out["accuracy"] = float(accuracy_score(gold, guess))
    for avg in ("micro", "macro", "weighted"):
        out[f"{avg}_f1"] = float(f1_score(gold, guess, labels=labels, average=avg,
                                          zero_division=0))
    out["kappa"] = _kappa(gold, guess)
    return out


def agreement_path_for(out: str | Path) -> Path:
    """``dir/labelled.csv`` (or ``.csv.gz``) -> ``dir/labelled.agreement.json``."""
    out = Path(out)
    return out.with_name(out.name.split(".")[0] + ".agreement.json")


def _all_columns(path: Path) -> list[str]:
    from veil.io_formats import detect_format, load_bytes, parse_table

    return list(parse_table(load_bytes(path), detect_format(path, None), header=True,
                            path=path).columns)


def _model_teacher_scores(folder: Path, texts: list[str], labels: list[str] | None
                          ) -> tuple[list[str], np.ndarray, np.ndarray, bool]:
    """Scores and decisions of a trained veil model (the train pipeline's predict)."""
    from veil.train.facade import predict_texts

    pred = predict_texts(folder, texts)
    names = list(pred.labels)
    if labels is not None:
        missing = [lab for lab in labels if lab not in names]
        if missing:
            raise BadInput(f"the teacher model has no label(s) {', '.join(missing)}",
                           path=folder)
        cols = [names.index(lab) for lab in labels]
        return (labels, np.asarray(pred.probabilities)[:, cols],
                np.asarray(pred.predictions)[:, cols], pred.multi_label)
    return names, np.asarray(pred.probabilities), np.asarray(pred.predictions), pred.multi_label


def label_file(
    data: str | Path,
    *,
    teacher: str,
    out: str | Path,
    labels: str | Sequence[str] | None = None,
    descriptions: str | Path | None = None,
    text_col: str | None = None,
    id_col: str | None = None,
    gold_col: str | None = None,
    label_sep: str | None = None,
    multi_label: bool = False,
    top_k: int | None = None,
    threshold: float | None = None,
    output_sep: str = ";",
    encoder: Any = None,
) -> LabelResult:
    """Label every non-empty row of ``data`` with a teacher and write ``out``.

    Args:
        data: the corpus to label (csv, tsv, jsonl, parquet, txt).
        teacher: ``"zero-shot"`` or the folder of a model written by ``veil train``.
        out: output file (.csv, .jsonl or .parquet), written atomically.
        labels: label names (required for zero-shot; for a model teacher, a subset of its labels).
        descriptions: JSON file ``{label: text | [texts]}`` for zero-shot.
        text_col: text column(s), comma-separated.
        id_col: id column.
        gold_col: gold label column; agreement is reported when given.
        label_sep: separator of several gold labels in one cell.
        multi_label: zero-shot decides several labels per row (needs ``top_k``/``threshold``).
        top_k: multi-label: keep the k best labels.
        threshold: multi-label: keep labels scoring at least this (cosine for zero-shot).
        output_sep: joins several teacher labels in ``teacher_labels``.
        encoder: a sentence encoder to use instead of loading ``minilm`` (tests).

    Returns:
        A :class:`LabelResult`. Labelling spends no privacy budget.

    Raises:
        BadInput: unknown teacher, empty ``labels``, missing columns, bad decision options.
    """
    from veil.artifacts import write_json
    from veil.io import read_corpus, write_records
    from veil.progress import info

    data, out = Path(data), Path(out)
    is_zero_shot = teacher == ZERO_SHOT
    folder = Path(teacher)
    if not is_zero_shot and not folder.is_dir():
        raise BadInput(f"unknown teacher {teacher!r}: give {ZERO_SHOT} or the folder of a "
                       "model written by veil train")
    if not is_zero_shot and not (folder / "labels.json").is_file():
        raise BadInput("teacher folder is not a veil model (no labels.json)", path=folder)
    names = parse_labels(labels) if (is_zero_shot or labels is not None) else None
    if threshold is not None and not math.isfinite(threshold):
        raise BadInput(f"--threshold must be a finite number, got {threshold}")
    if is_zero_shot and multi_label and top_k is None and threshold is None:
        raise BadInput("multi-label teacher labels need --top-k or --threshold")
    if names is not None and any(output_sep in lab for lab in names):
        raise BadInput(f"a label name contains the output separator {output_sep!r}")
    descs = load_descriptions(descriptions, names) if descriptions and names else None
    columns = _all_columns(data)
    corpus = read_corpus(data, text_cols=text_col, label_col=gold_col, label_sep=label_sep,
                         id_col=id_col, extra_cols=columns)
    if is_zero_shot:
        assert names is not None
        zs = ZeroShotTeacher(names, descs, encoder=encoder)
        scores = zs.score(corpus.texts)
        pred = decide(scores, multi_label=multi_label, top_k=top_k, threshold=threshold)
        windowed, used = zs.n_windowed, names
    else:
        used, scores, pred, multi_label = _model_teacher_scores(folder, corpus.texts, names)
        windowed = 0
    if "teacher_labels" in columns or "teacher_scores" in columns:
        info("warning: the input's teacher_labels/teacher_scores columns are replaced")
    records = []
    for i in range(len(corpus)):
        row = {col: corpus.extra[col][i] for col in columns}
        row["teacher_labels"] = output_sep.join(lab for lab, v in zip(used, pred[i], strict=True)
                                                if v)
        row["teacher_scores"] = {lab: round(float(s), 4)
                                 for lab, s in zip(used, scores[i], strict=True)}
        records.append(row)
    write_records(out, records)
    agree = None
    agree_path = None
    if gold_col is not None:
        assert corpus.labels is not None
        agree = agreement(corpus.labels, pred, used, multi_label=multi_label)
        agree_path = agreement_path_for(out)
        write_json(agree_path, {"teacher": ZERO_SHOT if is_zero_shot else "model",
                                "labels": used, **agree})
    counts = {lab: int(c) for lab, c in zip(used, np.asarray(pred).sum(0), strict=True)}
    return LabelResult(out=out, agreement_path=agree_path,
                       teacher=ZERO_SHOT if is_zero_shot else str(folder), labels=list(used),
                       multi_label=multi_label, n_rows=len(corpus), label_counts=counts,
                       n_windowed=windowed, agreement=agree)
