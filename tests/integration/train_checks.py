"""Checks shared by the `veil train` integration tests (imported, not collected)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from veil.cli import run


def write_labelled_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write toy ``id,text,labels`` rows (labels ';'-separated) to ``path``."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["id", "text", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def predict_and_evaluate_reproduce_metrics(root: Path, out: Path, test: Path
                                           ) -> tuple[list[str], list[dict[str, Any]]]:
    """`veil predict` and `veil evaluate` on the saved model reproduce its metrics.json:
    the evaluate figures (value and CI), and scikit-learn's weighted F1 of the predictions.
    Returns the labels and the prediction rows for further checks."""
    from sklearn.metrics import f1_score

    preds, ev = root / "preds.jsonl", root / "eval.json"
    assert run(["predict", str(out), str(test), "--id-col", "id", "--out", str(preds),
                "--quiet"]) == 0
    assert run(["evaluate", str(out), str(test), "--label-col", "labels", "--label-sep", ";",
                "--id-col", "id", "--out", str(ev), "--quiet"]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    again = json.loads(ev.read_text())
    assert again["weighted_f1"]["value"] == pytest.approx(saved["weighted_f1"]["value"], abs=1e-9)
    assert again["weighted_f1"]["ci95"] == pytest.approx(saved["weighted_f1"]["ci95"], abs=1e-9)
    labels = json.loads((out / "labels.json").read_text())["labels"]
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    with test.open() as fh:
        gold = {r["id"]: r["labels"].split(";") if r["labels"] else [] for r in csv.DictReader(fh)}
    y_true = [[int(lab in gold[r["id"]]) for lab in labels] for r in rows]
    y_pred = [[int(lab in r["labels"]) for lab in labels] for r in rows]
    assert f1_score(y_true, y_pred, average="weighted") == pytest.approx(
        saved["weighted_f1"]["value"], abs=1e-9)
    return labels, rows
