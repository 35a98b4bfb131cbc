"""``veil privatize`` end to end: outputs, privacy report, ledger, bad input, no text in logs."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import pytest

from veil.cli import run
from veil.privacy.ledger import Ledger

SECRET = "Qzxwvutsecret"
TASK = "Which abnormalities does this chest X-ray report describe?"
DOCS = [
    {"id": "a", "text": f"Patient {SECRET} Jones, MRN 123456.\nMild cardiomegaly. XXXX noted.",
     "question": "Is the heart enlarged?"},
    {"id": "b", "text": "   ", "question": "Any effusion?"},
    {"id": "c", "text": "No acute cardiopulmonary abnormality.", "question": "Any effusion?"},
]


def regex_detector(texts: list[str]) -> list[list[dict[str, object]]]:
    out = []
    for t in texts:
        spans: list[dict[str, object]] = [
            {"start": m.start(), "end": m.end(), "entity_type": "PERSON"}
            for m in re.finditer(rf"{SECRET} Jones", t)]
        spans += [{"start": m.start(), "end": m.end(), "entity_type": "ID"}
                  for m in re.finditer(r"\d{6}", t)]
        spans += [{"start": m.start(), "end": m.end(), "entity_type": "MASK"}
                  for m in re.finditer("XXXX", t)]
        out.append(spans)
    return out


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "notes.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), "utf-8")
    return path


@pytest.fixture
def fake_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("veil.privatize.stamp.default_detector", lambda: regex_detector)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


@pytest.mark.usefixtures("fake_detector")
def test_end_to_end_outputs(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "released.jsonl"
    ledger = tmp_path / "ledger.db"
    rc = run(["privatize", str(data), "--id-col", "id", "--task", TASK, "--epsilon", "50",
              "--out", str(out), "--ledger", str(ledger), "--quiet"])
    assert rc == 0
    assert _files(out.parent) == {"released.jsonl", "released.privacy.json",
                                  "released.report.jsonl", "released.run.json"}  # no explain
    rows = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"] and rows[1]["text"] == ""
    assert "XXXX" in rows[0]["text"]  # already-masked text is kept as is
    privacy = json.loads((out.parent / "released.privacy.json").read_text("utf-8"))
    assert privacy["unit"] == "token" and privacy["mechanism"] == "stamp-polar"
    assert privacy["extra"]["per_group_epsilon"] == {"G1": 100.0, "G2": 50.0, "G3": 200.0,
                                                     "G4": 150.0}
    assert privacy["epsilon"] == 200.0 and privacy["delta"] == 0.0
    assert "same group pattern" in privacy["statement"]
    assert "max_sum_eps_per_document" in privacy["extra"]["context_level_bound"]
    reports = [json.loads(x) for x in
               (out.parent / "released.report.jsonl").read_text("utf-8").splitlines()]
    assert [r["id"] for r in reports] == ["a", "b", "c"] and reports[1]["empty"]
    assert reports[0]["group_counts"]["G2"] >= 3 and reports[0]["group_counts"]["kept-mask"] == 2
    spends = Ledger(ledger).spends()
    assert len(spends) == 1 and spends[0].epsilon == 200.0 and spends[0].unit == "token"
    assert SECRET not in (out.parent / "released.run.json").read_text("utf-8")


@pytest.mark.usefixtures("fake_detector")
def test_explain_only_when_asked_and_query_col(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    html = tmp_path / "explain.html"
    rc = run(["privatize", str(data), "--id-col", "id", "--query-col", "question",
              "--group-eps", "0,10,inf,inf", "--out", str(out), "--explain", str(html),
              "--ledger", str(tmp_path / "l.db"), "--quiet"])
    assert rc == 0 and html.exists()
    page = html_lib.unescape(re.sub(r"<[^>]+>", "", html.read_text("utf-8")))
    assert SECRET in page  # the explain page shows the original text
    privacy = json.loads((tmp_path / "o.privacy.json").read_text("utf-8"))
    assert privacy["epsilon"] == "inf"  # a verbatim group: no formal guarantee
    assert privacy["extra"]["no_protection"]["tokens"] > 0
    assert privacy["extra"]["masked"]["groups"] == ["G1"]


@pytest.mark.usefixtures("fake_detector")
@pytest.mark.parametrize("args", [
    ["--epsilon", "0"], ["--epsilon", "-5"], ["--mechanism", "gauss"],
    ["--group-eps", "1,2,3"], ["--group-eps", "a,b,c,d"], ["--budgets", "2:1:4"],
    ["--tau", "1.5"], ["--tau", "-2"], ["--no-task"], ["--budgets", "2:1:4:3", "--group-eps",
                                                       "1,1,1,1"],
    ["--out-suffix", ".txt"], ["--kappa-scale", "half"],
])
def test_bad_input_exit_2_nothing_written(data: Path, tmp_path: Path, args: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out = out_dir / ("o" + (args[1] if args[0] == "--out-suffix" else ".jsonl"))
    argv = ["privatize", str(data), "--id-col", "id", "--out", str(out),
            "--ledger", str(tmp_path / "l.db"), "--quiet"]
    if args != ["--no-task"]:
        argv += ["--task", TASK]
    if args[0] not in ("--no-task", "--out-suffix"):
        argv += args
    assert run(argv) == 2
    assert _files(out_dir) == set()
    err = capsys.readouterr().err
    assert err.startswith("veil: error:") and "Traceback" not in err and SECRET not in err
    assert len(err.strip().splitlines()) <= 3  # one message (rich wraps it at 80 columns)


@pytest.mark.usefixtures("fake_detector")
def test_non_utf8_and_empty_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "1", "text": "caf\xe9 ' + SECRET.encode() + b'"}\n')
    assert run(["privatize", str(bad), "--task", TASK, "--out", str(tmp_path / "o.jsonl"),
                "--quiet"]) == 2
    q = tmp_path / "q.csv"
    q.write_text("text,question\nMild cardiomegaly.,\n", "utf-8")
    assert run(["privatize", str(q), "--query-col", "question", "--out",
                str(tmp_path / "o.jsonl"), "--quiet"]) == 2
    assert not (tmp_path / "o.jsonl").exists()
    assert SECRET not in capsys.readouterr().err


@pytest.mark.usefixtures("fake_detector")
def test_budget_refused_exit_3(data: Path, tmp_path: Path) -> None:
    import hashlib

    ledger = tmp_path / "l.db"
    Ledger(ledger).set_budget(hashlib.sha256(data.read_bytes()).hexdigest(), 150.0)
    out = tmp_path / "o.jsonl"
    common = ["privatize", str(data), "--task", TASK, "--out", str(out), "--ledger", str(ledger),
              "--quiet"]
    assert run([*common, "--epsilon", "50"]) == 3 and not out.exists()  # G3 = 200 > 150
    assert run([*common, "--group-eps", "100,50,100,100"]) == 0 and out.exists()


@pytest.mark.usefixtures("fake_detector")
def test_no_raw_text_in_logs_unless_asked(data: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Progress and summary on (not --quiet); the planted name never shows."""
    _check_logs(data, tmp_path, capsys)


@pytest.mark.slow
def test_no_raw_text_in_logs_real_detector(data: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The same with the real Presidio/spaCy detector (slow: loads the models)."""
    _check_logs(data, tmp_path, capsys)


def _check_logs(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run(["privatize", str(data), "--task", TASK, "--out", str(tmp_path / "o.jsonl"),
              "--ledger", str(tmp_path / "l.db")])
    cap = capsys.readouterr()
    assert rc == 0 and "tokens/s" in cap.err
    assert SECRET.lower() not in (cap.err + cap.out).lower()
    rc = run(["privatize", str(data), "--task", TASK, "--group-eps", "inf,inf,inf,inf",
              "--log-text", "--out", str(tmp_path / "o2.jsonl"), "--ledger",
              str(tmp_path / "l.db")])
    assert rc == 0 and SECRET in capsys.readouterr().err  # the check can fail


def test_demo_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    from veil.demo import write_demo_corpus
    from veil.privatize import demo

    monkeypatch.setattr("veil.privatize.stamp.default_detector", lambda: regex_detector)
    write_demo_corpus(tmp_path / "d", n_reports=8, n_sites=2, seed=1)
    demo.run_demo_stage(tmp_path / "d", seed=1)
    err = capsys.readouterr().err
    assert "gold PHI spans surviving verbatim" in err and "tokens/s" in err
    assert (tmp_path / "d" / "privatize" / "reports.privatized.privacy.json").exists()
