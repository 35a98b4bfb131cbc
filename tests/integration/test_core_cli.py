"""The core commands through the real CLI entry point (exit codes, outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veil.cli import run


def test_help_lists_core_and_pipeline_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "models", "ledger", "privatize", "pii"):
        assert command in out


def test_models_lists_minilm_and_smollm2(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["models"]) == 0
    out = capsys.readouterr().err + capsys.readouterr().out
    assert "minilm" in out and "smollm2-135m" in out


def test_demo_corpus_only_writes_corpus(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert run(["demo", "--out", str(out), "--reports", "40", "--sites", "3", "--corpus-only",
                "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "reports.jsonl").read_text().splitlines()]
    assert len(rows) == 40
    assert len(list((out / "sites").glob("site_*.csv"))) == 3
    for row in rows:  # gold spans index the text exactly
        for span in row["phi_spans"]:
            assert row["text"][span["start"]:span["end"]] == span["text"]


def test_demo_bad_split_is_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert run(["demo", "--out", str(out), "--split", "zipf", "--corpus-only", "--quiet"]) == 2
    assert not out.exists()


def test_ledger_budget_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "notes.csv"
    data.write_text("id,text\n1,hello\n")
    ledger = tmp_path / "ledger.db"
    assert run(["ledger", "set-budget", str(data), "2.5", "--ledger", str(ledger)]) == 0
    from veil.privacy.ledger import Ledger, fingerprint_file

    book = Ledger(ledger)
    fp = fingerprint_file(data)
    assert book.budget(fp) == 2.5
    book.spend(fp, 2.0, 1e-6, "test-release", unit="record")
    capsys.readouterr()
    assert run(["ledger", "show", "--ledger", str(ledger)]) == 0
    assert run(["ledger", "show", str(data), "--ledger", str(ledger)]) == 0
    assert run(["ledger", "set-budget", str(data), "-1", "--ledger", str(ledger)]) == 2
    assert run(["ledger", "set-budget", str(data), "lots", "--ledger", str(ledger)]) == 2
    assert book.budget(fp) == 2.5


def test_unknown_model_name_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from veil.errors import BadInput
    from veil.models import resolve

    with pytest.raises(BadInput) as info:
        resolve("gpt-17")
    assert "minilm" in str(info.value) and "\n" not in str(info.value)
