"""The synth stage of `veil demo`: hold-out split, a whole run, and the printed figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from veil.demo import write_demo_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_demo_stage_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from veil.synth import demo

    write_demo_corpus(tmp_path, n_reports=120, seed=3)
    monkeypatch.setitem(demo.DEMO_SETTINGS, "samples", 24)
    demo.run_demo_stage(tmp_path, seed=3, engine="inprocess")
    work = tmp_path / "synth"

    # the held-out fifth and the sites' remaining records partition every demo site's records
    original = {p.name: _rows(p) for p in sorted((tmp_path / "sites").glob("site_*.csv"))}
    kept = {p.name: _rows(p) for p in sorted((work / "sites").glob("site_*.csv"))}
    held = _rows(work / "heldout.csv")
    assert set(kept) == set(original)
    ids = [r["id"] for rows in original.values() for r in rows]
    assert sorted(ids) == sorted([r["id"] for rows in kept.values() for r in rows]
                                 + [r["id"] for r in held])
    assert 0 < len(held) < len(ids) / 2

    synthetic = [json.loads(line) for line in
                 (work / "run" / "synthetic.jsonl").read_text().splitlines()]
    assert len(synthetic) == 24
    reports = {p.stem: json.loads(p.read_text()) for p in (work / "run" / "privacy").glob("*.json")}
    assert set(reports) == {Path(n).stem for n in original}
    assert all(0 < r["epsilon"] <= 8.0 + 1e-9 and r["unit"] == "record" for r in reports.values())
    result = json.loads((work / "eval.json").read_text())
    assert result["n_synthetic"] == 24 and result["n_real"] == len(held)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["frechet"] > 0
    printed = capsys.readouterr().err  # the console writes to stderr
    for needle in ("Frechet distance", "k-NN precision / recall", "downstream accuracy"):
        assert needle in printed
    assert f"{result['frechet']:.4f}" in printed
