"""veil synth end to end on a tiny split: outputs, failing site, message capture, bad input,
a site that stops answering (phase timeout), --strong-only.

Tiny models (tiny-llama generator, tiny-bert embedder) and 3 sites of 20
records keep each run to seconds. The capture test inspects every message that
crossed between the server and the sites, as serialised for the wire.
"""

from __future__ import annotations

import csv
import json
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from veil.cli import run as cli_run
from veil.errors import BadInput
from veil.privacy.ledger import Ledger
from veil.synth.config import SynthConfig
from veil.synth.facade import synthesize
from veil.synth.simulation import LocalGrid

CODES = ("alpha", "beta", "gamma")


def make_sites(folder: Path, n_sites: int = 3, per_site: int = 20, seed: int = 0) -> dict[
        str, list[dict[str, str]]]:
    """Per-site CSVs of random 14-word texts with labels; returns the rows by site."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=rng.integers(4, 9))) for _ in range(400)]
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for s in range(n_sites):
        rows = []
        for i in range(per_site):
            label = CODES[int(rng.integers(0, 3 if s else 2))]  # site_0 has no "gamma"
            words = rng.choice(vocab, size=14)
            rows.append({"id": f"s{s}-{i}", "text": " ".join(words), "label": label})
        with open(folder / f"site_{s}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
            writer.writeheader()
            writer.writerows(rows)
        out[f"site_{s}"] = rows
    return out


def tiny_config(**kw: object) -> SynthConfig:
    base = dict(text_col="text", code_cols=("label",), generator="tiny-llama",
                embedder="tiny-bert", epsilon=8.0, delta=1e-4, accountant="rdp", rounds=1,
                sample_rate=0.25, max_length=32, samples=12, k=2, max_new_tokens=6,
                gen_batch_size=32, candidates_factor=2.0)
    base.update(kw)
    return SynthConfig(**base)  # type: ignore[arg-type]


def _captured(folder: Path) -> list[tuple[str, bytes, object]]:
    from flwr.common.serde import recorddict_from_proto
    from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

    out = []
    for path in sorted(folder.glob("*.bin")):
        data = path.read_bytes()
        try:
            content = recorddict_from_proto(ProtoRecordDict.FromString(data))
        except Exception:  # an error reply: plain text
            content = None
        out.append((path.name, data, content))
    return out


def _strings_and_numbers(content: object) -> tuple[list[str], list[float]]:
    strings: list[str] = []
    numbers: list[float] = []
    if content is None:
        return strings, numbers
    for record in content.values():  # type: ignore[attr-defined]
        if not hasattr(record, "items") or type(record).__name__ == "ArrayRecord":
            continue
        for value in record.values():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str):
                    strings.append(v)
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    numbers.append(float(v))
    return strings, numbers


def _token_windows(texts: list[str], model: str, n: int = 8, min_chars: int = 8) -> set[str]:
    """Every decoded ``n``-token window of ``texts`` (generator tokenizer), stripped, non-trivial.

    Windows shorter than ``min_chars`` once stripped (whitespace, a few letters) are left out:
    they could match by chance and say nothing about a record.
    """
    from veil.models import load_tokenizer

    tok = load_tokenizer(model)
    out: set[str] = set()
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) >= n
        for i in range(len(ids) - n + 1):
            window = tok.decode(ids[i:i + n], skip_special_tokens=True).strip()
            if len(window) >= min_chars:
                out.add(window)
    return out


def test_run_writes_outputs_drops_failing_site_and_leaks_nothing(tmp_path: Path) -> None:
    rows = make_sites(tmp_path / "sites")
    out, cap = tmp_path / "out", tmp_path / "capture"
    cfg = tiny_config()
    summary = synthesize(tmp_path / "sites", out, cfg, strong=1, engine="inprocess",
                         fail_at={"site_2": "vote"}, capture_dir=cap)
    # outputs
    records = [json.loads(x) for x in (out / "synthetic.jsonl").read_text().splitlines()]
    assert len(records) == cfg.samples == summary.n_synthetic
    assert {r["label"] for r in records} <= set(CODES)
    assert all(r["control_code"] == f"Label: {r['label']}" for r in records)
    for name in ("metrics.json", "report.md", "run.json", "privacy.json"):
        assert (out / name).is_file()
    reports = {p.stem: json.loads(p.read_text()) for p in (out / "privacy").glob("*.json")}
    assert set(reports) == {"site_0", "site_1", "site_2"}
    assert reports["site_0"]["extra"]["phases_released"] == ["profile", "train"]
    assert reports["site_1"]["extra"]["phases_released"] == ["profile", "vote"]
    assert 0.98 * 8 <= reports["site_0"]["epsilon"] <= 8.0 + 1e-9
    assert reports["site_1"]["epsilon"] == pytest.approx(8.0, rel=1e-6)
    # the failing site: excluded after profiling, reported, charged only for what it released
    assert summary.failed_sites == {"site_2": "vote"}
    assert reports["site_2"]["extra"]["phases_released"] == ["profile"]
    assert reports["site_2"]["epsilon"] < 8.0
    report = (out / "report.md").read_text()
    assert "FAILED at vote" in report and "site_2" in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["refined"] and set(metrics["bytes_per_site"]) == set(reports)
    assert metrics["bytes_per_site"]["site_0"]["site_to_server"]["train"] > 0
    assert {"profile", "train", "generate", "vote"} <= set(metrics["phase_wall_time_s"])
    # every site spent its planned epsilon in its ledger before releasing anything
    book = Ledger()
    spends = {sp.note: sp for row in book.rows() for sp in book.spends(row.fingerprint)}
    assert len(book.rows()) == 3 and all(sp.epsilon <= 8.0 + 1e-9 for sp in spends.values())
    # what crossed the wire: no record text, no 8-word or 8-token window, no exact count
    msgs = _captured(cap)
    assert any("-up-query_profile" in n for n, _, _ in msgs)
    texts = [r["text"] for site in rows.values() for r in site]
    blob = b"\n".join(data for _, data, _ in msgs)
    wire_strings = [s for _, _, c in msgs for s in _strings_and_numbers(c)[0]]
    joined = "\n".join(wire_strings) + "\n" + blob.decode("utf-8", "replace")
    for text in texts:
        words = text.split()
        assert text not in joined
        for i in range(len(words) - 7):
            assert " ".join(words[i:i + 8]) not in joined
    windows = _token_windows(texts, cfg.generator)
    assert len(windows) > len(texts)  # the check is not vacuous
    leaked = [w for w in windows if w in joined]
    assert not leaked, f"{len(leaked)} 8-token windows of records crossed the wire"
    exact = {site: np.array([sum(r["label"] == c for r in rs) for c in CODES], float)
             for site, rs in rows.items()}
    ups = [(n, c) for n, _, c in msgs if "-up-" in n and c is not None]
    for name, content in ups:
        numbers = _strings_and_numbers(content)[1]
        if "query_profile" in name or "query_vote" in name:
            assert numbers and not any(float(x).is_integer() for x in numbers), name
        if "query_profile" in name:
            assert not any(np.allclose(numbers, v) for v in exact.values())
        if "-up-train" in name:  # adapters + step count; no per-example tensor
            arrays = content["arrays"]  # type: ignore[index]
            assert all(arr.shape[0] in (cfg.lora_r,) or arr.shape[-1] == cfg.lora_r
                       for arr in arrays.values())
    sizes = {len(rs) for rs in rows.values()}
    up_numbers = [x for _, c in ups for x in _strings_and_numbers(c)[1]]
    assert not sizes & {int(x) for x in up_numbers if float(x).is_integer()}


class _TimeoutGrid:
    """The in-process grid with the timeout behaviour of Flower's grids.

    Like ``flwr``'s ``InMemoryGrid``/``GrpcGrid``, ``send_and_receive`` pushes every message,
    then returns the replies that came back before ``timeout`` and drops the rest. Each
    message is handled by the ClientApp in its own thread, so a site that hangs does not
    hold up the others (a SuperNode that stops answering).
    """

    def __init__(self, client_app: Any, n_nodes: int) -> None:
        self.local = LocalGrid(client_app, n_nodes)
        self.threads: list[threading.Thread] = []

    def get_node_ids(self) -> list[int]:
        return list(self.local.get_node_ids())

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
        assert timeout is not None and timeout > 0
        messages = list(messages)
        box: queue.Queue[Any] = queue.Queue()
        def deliver(msg: Any) -> None:  # LocalGrid: serialise, handle, serialise the reply
            box.put(next(iter(self.local.send_and_receive([msg]))))

        for msg in messages:
            thread = threading.Thread(target=deliver, args=(msg,), daemon=True)
            thread.start()
            self.threads.append(thread)
        end, replies = time.monotonic() + timeout, []
        while len(replies) < len(messages):
            try:
                replies.append(box.get(timeout=max(end - time.monotonic(), 0.0)))
            except queue.Empty:
                break
        return replies


def test_site_that_stops_answering_is_dropped_at_the_phase_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """site_2 never answers the vote query: after ``phase_timeout`` the run goes on without it."""
    import veil.synth.app as app_module
    import veil.synth.simulation as sim_module
    from veil.synth.generator import load_generator
    from veil.synth.site import SiteFailure, _encoder

    load_generator("tiny-llama"), _encoder("tiny-bert")  # model loading is not a phase's time
    make_sites(tmp_path / "sites")
    release = threading.Event()
    real_vote = app_module.site_vote

    def vote(spec: Any, *args: Any, **kw: Any) -> Any:
        if spec.name == "site_2":  # the SuperNode has gone: no reply, no error
            release.wait(120)
            raise SiteFailure("site_2 came back after the run")
        return real_vote(spec, *args, **kw)

    grids: list[_TimeoutGrid] = []

    def make_grid(client_app: Any, n: int) -> _TimeoutGrid:
        grids.append(_TimeoutGrid(client_app, n))
        return grids[-1]

    monkeypatch.setattr(app_module, "site_vote", vote)
    monkeypatch.setattr(sim_module, "LocalGrid", make_grid)
    timeout = 8.0
    out = tmp_path / "out"
    try:
        start = time.monotonic()
        summary = synthesize(tmp_path / "sites", out, tiny_config(phase_timeout=timeout),
                             strong=1, engine="inprocess")
        elapsed = time.monotonic() - start
        assert not release.is_set()  # the run finished while site_2 still hung
    finally:
        release.set()
        for thread in grids[0].threads if grids else []:
            thread.join(30)
    assert summary.failed_sites == {"site_2": "vote"} and summary.refined
    assert summary.wall_time_s["vote"] >= timeout and elapsed < 120
    assert len((out / "synthetic.jsonl").read_text().splitlines()) == 12
    metrics = json.loads((out / "metrics.json").read_text())
    site_2 = metrics["sites"]["site_2"]
    assert site_2["failed_at"] == "vote" and site_2["phases_released"] == ["profile"]
    assert metrics["sites"]["site_1"]["phases_released"] == ["profile", "vote"]
    assert "vote" not in metrics["bytes_per_site"]["site_2"]["site_to_server"]
    assert metrics["bytes_per_site"]["site_2"]["server_to_site"]["vote"] > 0
    report = (out / "report.md").read_text()
    assert "| site_2 | weak |" in report
    assert "FAILED at vote: no reply before the phase timeout" in report
    assert "site site_2 failed at vote: no reply before the phase timeout" in report
    rep = json.loads((out / "privacy" / "site_2.json").read_text())
    assert rep["extra"]["phases_released"] == ["profile"] and rep["extra"]["failed_at"] == "vote"
    assert 0 < rep["epsilon"] < 8.0
    # spend before release: site_2 recorded its whole planned epsilon when it profiled
    book = Ledger()
    (row,) = [r for r in book.rows() if r.label == "site_2"]
    assert row.spent_epsilon == pytest.approx(rep["extra"]["planned_epsilon"])
    assert row.n_unreleased == 1  # it never confirmed the release of its votes


def test_bad_input_fails_before_any_release(tmp_path: Path) -> None:
    make_sites(tmp_path / "sites", per_site=12)
    with pytest.raises(BadInput, match="column"):
        synthesize(tmp_path / "sites", tmp_path / "o1", tiny_config(code_cols=("nope",)),
                   engine="inprocess")
    with pytest.raises(BadInput, match="smaller than K"):
        synthesize(tmp_path / "sites", tmp_path / "o2", tiny_config(samples=2, k=3),
                   engine="inprocess")
    with pytest.raises(BadInput, match="too small"):
        synthesize(tmp_path / "sites", tmp_path / "o3", tiny_config(epsilon=0.05),
                   engine="inprocess")
    with pytest.raises(BadInput, match="1/N"):
        synthesize(tmp_path / "sites", tmp_path / "o4", tiny_config(delta=0.1),
                   engine="inprocess")
    assert not any((tmp_path / n).exists() for n in ("o1", "o2", "o3", "o4"))
    assert Ledger().rows() == []
    rc = cli_run(["synth", "--sites", str(tmp_path / "sites"), "--out", str(tmp_path / "o5"),
                  "--code-cols", "label", "--epsilon", "0.01", "--quiet"])
    assert rc == 2 and not (tmp_path / "o5").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--code-cols", "nope"], "column"),
    (["--samples", "2", "--k", "3"], "smaller than K"),
    (["--epsilon", "0.01"], "too small"),
], ids=["unknown-code-column", "candidates-below-k", "epsilon-too-small"])
def test_cli_bad_input_exits_2_with_one_line_and_no_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        expected: str) -> None:
    make_sites(tmp_path / "sites", per_site=12)
    out = tmp_path / "out"
    base = ["synth", "--sites", str(tmp_path / "sites"), "--out", str(out), "--code-cols",
            "label", "--generator", "tiny-llama", "--embedder", "tiny-bert", "--engine",
            "inprocess", "--delta", "1e-4", "--quiet"]
    capsys.readouterr()
    rc = cli_run(base + args)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("veil: error: "), err
    assert expected in lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".out*"))  # no temp
    assert Ledger().rows() == []


def test_cli_split_then_synth_without_noise(tmp_path: Path) -> None:
    rows = [r for site in make_sites(tmp_path / "raw", n_sites=1, per_site=45).values()
            for r in site]
    data = tmp_path / "all.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    rc = cli_run(["split", str(data), "--text-col", "text", "--label-col", "label", "--sites",
                  "3", "--dirichlet", "0.5", "--seed", "1", "--out", str(tmp_path / "sites"),
                  "--quiet"])
    assert rc == 0 and len(list((tmp_path / "sites").glob("site_*.csv"))) == 3
    rc = cli_run(["synth", "--sites", str(tmp_path / "sites"), "--out", str(tmp_path / "out"),
                  "--code-cols", "label", "--generator", "tiny-llama", "--embedder",
                  "tiny-bert", "--epsilon", "inf", "--rounds", "1", "--samples", "6", "--k",
                  "1", "--max-new-tokens", "4", "--sample-rate", "0.5", "--max-length", "24",
                  "--no-refine", "--engine", "inprocess", "--quiet"])
    assert rc == 0
    rep = json.loads((tmp_path / "out" / "privacy" / "site_1.json").read_text())
    assert rep["epsilon"] == "inf" and "NO formal privacy guarantee" in rep["statement"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert not metrics["refined"] and metrics["n_candidates"] == metrics["n_synthetic"] == 6
    assert math.isinf(float(metrics["sites"]["site_0"]["epsilon"]))


def test_cli_strong_only_weak_sites_take_no_part(tmp_path: Path) -> None:
    make_sites(tmp_path / "sites", per_site=16)
    out, ledger = tmp_path / "out", tmp_path / "ledger.db"
    rc = cli_run(["synth", "--sites", str(tmp_path / "sites"), "--out", str(out),
                  "--code-cols", "label", "--generator", "tiny-llama", "--embedder",
                  "tiny-bert", "--epsilon", "8", "--delta", "1e-4", "--accountant", "rdp",
                  "--rounds", "1", "--samples", "6", "--k", "2", "--max-new-tokens", "4",
                  "--sample-rate", "0.25", "--max-length", "24", "--strong-only",
                  "--engine", "inprocess", "--ledger", str(ledger), "--quiet"])
    assert rc == 0
    records = (out / "synthetic.jsonl").read_text().splitlines()
    assert len(records) == 6
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sites"]["site_0"]["phases_released"] == ["profile", "train"]
    assert metrics["trained_rounds"] == 1 and not metrics["refined"]
    reports = {p.stem: json.loads(p.read_text()) for p in (out / "privacy").glob("*.json")}
    assert reports["site_0"]["epsilon"] == pytest.approx(8.0, rel=0.02)
    for weak in ("site_1", "site_2"):
        site = metrics["sites"][weak]
        assert site["role"] == "weak" and site["failed_at"] is None
        assert site["phases_planned"] == site["phases_released"] == []
        assert site["epsilon"] == 0
        # no privacy release at all: no voting phase, no profile, nothing composed
        rep = reports[weak]
        assert rep["extra"]["phases_planned"] == rep["extra"]["phases_released"] == []
        assert rep["epsilon"] == 0 and rep["composition"] == []
        assert rep["extra"]["sigma_vote"] is None and rep["extra"]["sigma_profile"] is None
        # and its report says so, instead of a (0, δ) guarantee and a ledger it never wrote
        assert "took no part" in rep["statement"] and "accountant" not in rep["statement"]
        assert rep["extra"]["ledger_note"] == "nothing recorded: the site released nothing"
        # only the hello handshake (name and role) went either way
        traffic = metrics["bytes_per_site"][weak]
        assert set(traffic["server_to_site"]) == set(traffic["site_to_server"]) == {"hello"}
    assert "no site votes" in (out / "report.md").read_text()
    # only the strong site recorded a spend
    book = Ledger(ledger)
    assert [r.label for r in book.rows()] == ["site_0"]


@pytest.mark.slow
@pytest.mark.flower
def test_flower_simulation_engine_runs_the_same_app(tmp_path: Path) -> None:
    """The Flower simulation runtime (Ray backend): one virtual SuperNode per site.

    Slow (40-75 s on 2 shared cores: Ray start-up and two actors importing torch);
    the fast tests drive the same ServerApp/ClientApp objects in process.
    """
    make_sites(tmp_path / "sites", per_site=16)
    out = tmp_path / "out"
    summary = synthesize(tmp_path / "sites", out, tiny_config(samples=8), strong=1,
                         engine="flower", fail_at={"site_2": "vote"})
    assert summary.n_synthetic == 8 and summary.failed_sites == {"site_2": "vote"}
    assert summary.refined
    assert json.loads((out / "run.json").read_text())["engine"] == "flower"
    assert len(list((out / "privacy").glob("site_*.json"))) == 3
    assert "simulated failure at vote" in (out / "report.md").read_text()
