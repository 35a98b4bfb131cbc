"""``veil synth-eval`` through the real CLI with the shipped minilm encoder."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from veil.cli import run

TOPICS = {
    "sport": ["The team won the match", "A striker scored twice",
              "The coach praised the defence", "Fans cheered at the stadium"],
    "finance": ["Stocks fell sharply today", "The central bank raised rates",
                "Investors sold bonds", "Quarterly earnings beat forecasts"],
}


def _rows(rng: random.Random, n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        label = rng.choice(sorted(TOPICS))
        a, b = rng.sample(TOPICS[label], 2)
        rows.append({"text": f"{a} and {b.lower()} on day {i}.", "label": label})
    return rows


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def test_synth_eval_writes_mauve_high_on_topic_low_off_topic(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(0)
    real = tmp_path / "real.csv"
    with real.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(_rows(rng, 80))
    on_topic = _jsonl(tmp_path / "on.jsonl", _rows(rng, 50))
    off_topic = _jsonl(tmp_path / "off.jsonl", [
        {"text": f"Bake the bread for {i} minutes with butter.", "label": "sport"}
        for i in range(50)])
    for synth, name in ((on_topic, "on.json"), (off_topic, "off.json")):
        assert run(["synth-eval", str(synth), str(real), "--out", str(tmp_path / name)]) == 0
    on = json.loads((tmp_path / "on.json").read_text())
    off = json.loads((tmp_path / "off.json").read_text())
    assert on["mauve_buckets"] == off["mauve_buckets"] == 5  # round(min(80, 50) / 10)
    assert on["mauve_note"] is None and on["mauve"] > 0.8
    assert off["mauve"] < 0.1
    err = capfd.readouterr().err  # the summary goes to stderr, like every status line
    assert "MAUVE 0.9" in err and "WARNING clustering" not in err
