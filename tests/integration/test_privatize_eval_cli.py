"""``veil privatize-eval`` end to end on a tiny data folder: results.csv columns and rows,
results.md, plots, run.json, --resume, and one-line bad-input errors."""

from __future__ import annotations

import csv
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from veil.cli import run
from veil.privatize.evaluate import COLUMNS

SECRET = "Qzxwvutsecret"
TOPICS = {1: ("Election talks in Geneva", "Leaders of {} nations met for peace talks."),
          2: ("Cup final tonight", "The {} team won the championship match 3-1."),
          3: ("Shares climb", "Stocks of {} rose after strong quarterly earnings."),
          4: ("New chip unveiled", "Researchers at {} released a faster quantum processor.")}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "datasets"
    folder.mkdir()
    lines = []
    for k in range(6):
        for label, (title, desc) in TOPICS.items():
            who = SECRET if k == 0 else f"group{k}"
            lines.append(f'"{label}","{title}","{desc.format(who)}"')
    (folder / "ag_news_test.csv").write_text("\n".join(lines) + "\n", "utf-8")
    return folder


def regex_detector(texts: list[str]) -> list[list[dict[str, object]]]:
    return [[{"start": m.start(), "end": m.end(), "entity_type": "ORG"}
             for m in re.finditer(rf"{SECRET}|group\d", t)] for t in texts]


class HashedWords:
    """A fast stand-in sentence encoder: hashed bag of lower-cased words."""

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        out = np.zeros((len(texts), 64))
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, zlib.crc32(w.encode()) % 64] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def fake_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("veil.privatize.stamp.default_detector", lambda: regex_detector)


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("veil.models.load_sentence_encoder", lambda name: HashedWords())


@pytest.mark.usefixtures("fake_detector", "fake_encoder")
def test_tiny_run_writes_results(data_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    argv = ["privatize-eval", "--task-set", "agnews", "--mechanisms", "polar,laplace",
            "--grid", "40", "--limit", "8", "--data-dir", str(data_dir), "--out", str(out),
            "--embeddings", "tiny-bert", "--quiet"]  # a tiny random table: fast
    assert run([*argv, "--seeds", "2"]) == 0
    with open(out / "results.csv", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    runs = {(r["task_set"], r["setting"], r["mechanism"], r["mode"], r["seed"]) for r in rows
            if r["mode"] == "stamp"}
    assert runs == {("agnews@8", "ε=40×2:1:4:3", m, "stamp", s) for m in ("polar", "laplace")
                    for s in ("0", "1")}
    acc = [r for r in rows if r["metric"] == "accuracy"]
    assert len(acc) == 5 and all(0.0 <= float(r["value"]) <= 1.0 for r in acc)
    assert {r["mode"] for r in acc} == {"stamp", "nonprivate"}
    for r in rows:
        if r["mode"] == "stamp":
            assert r["n_docs"] == "8" and (r["g1_eps"], r["g2_eps"]) == ("80.0", "40.0")
    metrics = {r["metric"] for r in rows}
    assert {"tokens_unchanged", "share_G2", "seconds", "private_tokens"} <= metrics
    assert (out / "agnews_n8_custom.png").stat().st_size > 1000
    md = (out / "results.md").read_text("utf-8")
    assert "| ε=40×2:1:4:3 | polar | stamp |" in md and "accuracy" in md
    run_json = json.loads((out / "run.json").read_text("utf-8"))
    assert run_json["config"]["limit"] == 8 and len(run_json["config"]["settings"]) == 1
    for path in out.iterdir():  # no document text anywhere in the outputs
        if path.suffix in (".csv", ".md", ".json"):
            assert SECRET.lower() not in path.read_text("utf-8").lower()
    assert SECRET.lower() not in capsys.readouterr().err.lower()
    # --resume keeps the rows and runs only what is missing (a third seed)
    assert run([*argv, "--seeds", "0,1,2", "--resume"]) == 0
    with open(out / "results.csv", encoding="utf-8", newline="") as fh:
        again = list(csv.DictReader(fh))
    old = {tuple(r.values()) for r in rows if r["metric"] not in ("seconds",)}
    assert old <= {tuple(r.values()) for r in again}
    assert {r["seed"] for r in again if r["mode"] == "stamp"} == {"0", "1", "2"}


@pytest.mark.parametrize("args", [
    ["--data-dir", "MISSING"], ["--task-set", "imdb"], ["--mechanisms", "gauss"],
    ["--grid", "a,b"], ["--seeds", "0"], ["--limit", "0"], ["--modes", "random"]])
def test_bad_input_one_line_exit_2(args: list[str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["privatize-eval", "--task-set", "agnews", "--out", str(tmp_path / "o"), "--quiet"]
    if args[0] == "--data-dir":
        args = ["--data-dir", str(tmp_path / "missing")]
    else:
        argv += ["--data-dir", str(tmp_path)]
    assert run(argv + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("veil: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "results.csv").exists()


@pytest.mark.slow
@pytest.mark.real_data
def test_real_models_and_data_small(shared_datasets: Path, tmp_path: Path) -> None:
    """Yelp, SQuAD, PHI and LDP with the real detector, minilm and the shared data (a few
    documents; AG News is left out: its 3,800 training articles take minutes to embed)."""
    out = tmp_path / "real"
    assert run(["privatize-eval", "--task-set", "yelp,squad,phi,ldp", "--mechanisms",
                "polar,exponential",
                "--grid", "50", "--seeds", "1", "--limit", "6", "--modes", "stamp,uniform",
                "--data-dir", str(shared_datasets), "--out", str(out), "--quiet"]) == 0
    with open(out / "results.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    sets = {r["task_set"] for r in rows}
    assert sets == {"yelp@6", "squad@6", "phi-demo@6", "phi-i2b2", "ldp"}
    by = {(r["task_set"], r["mechanism"], r["mode"], r["metric"]): float(r["value"])
          for r in rows}
    assert 0.5 <= by[("yelp@6", "none", "nonprivate", "accuracy")] <= 1.0
    assert 0.0 <= by[("squad@6", "polar", "stamp", "answer_survival")] <= 1.0
    assert by[("ldp", "polar", "honest", "violated")] == 0.0
    assert by[("ldp", "polar", "control-3x", "violated")] == 1.0
