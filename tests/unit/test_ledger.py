"""The SQLite budget ledger: spends, refusals, fingerprints, concurrency, crashes."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from veil.errors import BadInput, BudgetRefused
from veil.privacy.ledger import (
    Ledger,
    fingerprint_file,
    fingerprint_texts,
    record_release,
    spend_before_release,
)

FP = "ab" * 32
SPAWN = mp.get_context("spawn")


# ---------------------------------------------------------------- workers (spawned)


def _spend_many(db: str, n: int, start: Any) -> None:
    start.wait()
    ledger = Ledger(db)
    for i in range(n):
        ledger.spend(FP, 0.01, 1e-7, f"{os.getpid()}-{i}")


def _spend_once(db: str, eps: float, start: Any) -> None:
    ledger = Ledger(db)
    start.wait()
    try:
        ledger.spend(FP, eps, 0.0, f"release-{os.getpid()}")
    except BudgetRefused:
        sys.exit(3)
    sys.exit(0)


def _crash_between_spend_and_release(db: str) -> None:
    with record_release(Ledger(db), FP, 0.7, 1e-6, "crashing release"):
        os._exit(1)  # dies before the output is moved into place


def _spend_then_hang(db: str, spent: Any) -> None:
    with record_release(db, FP, 0.3, 0.0, "killed release"):
        spent.set()
        time.sleep(600)


# ---------------------------------------------------------------- fingerprints


def test_fingerprint_file_streams_sha256_and_sees_one_byte(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # > one chunk
    path = tmp_path / "corpus.csv"
    path.write_bytes(data)
    assert fingerprint_file(path, chunk_size=4096) == hashlib.sha256(data).hexdigest()
    changed = bytearray(data)
    changed[123_456] ^= 1
    path.write_bytes(bytes(changed))
    assert fingerprint_file(path) != hashlib.sha256(data).hexdigest()


def test_fingerprint_texts_boundaries_and_order() -> None:
    assert fingerprint_texts(["ab", "c"]) != fingerprint_texts(["a", "bc"])
    assert fingerprint_texts(["a", "b"]) != fingerprint_texts(["b", "a"])
    assert fingerprint_texts(["note"]) == fingerprint_texts(iter(["note"]))
    assert fingerprint_texts(["note"]) != fingerprint_texts(["notf"])


# ---------------------------------------------------------------- single process


def test_spend_sum_budget_and_refusal(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    assert ledger.spent(FP) == 0.0
    ledger.check(FP, 1e9)  # no budget: nothing refused
    ledger.set_budget(FP, 1.0, label="cxr reports")
    a = ledger.spend(FP, 0.25, 1e-6, "model-a", unit="record", accountant="prv")
    ledger.spend(FP, 0.5, 2e-6, "model-b")
    assert ledger.spent(FP) == pytest.approx(0.75)
    assert ledger.spent_delta(FP) == pytest.approx(3e-6)
    ledger.spend(FP, 0.25, 0.0, "exactly at the limit")  # 0.25 + 0.5 + 0.25 == 1.0
    with pytest.raises(BudgetRefused) as info:
        ledger.check(FP, 0.01)
    with pytest.raises(BudgetRefused) as info2:
        ledger.spend(FP, 0.3, 0.0, "too much")
    for err in (info.value, info2.value):
        assert err.exit_code == 3
        assert err.spent == pytest.approx(1.0) and err.limit == 1.0
        assert "spent 1" in str(err) and "limit 1" in str(err)
    assert "requested 0.3" in str(info2.value)
    assert len(ledger.spends(FP)) == 3  # the refused spend left no row
    ledger.mark_released(a)
    ledger.mark_released(a)  # idempotent
    with pytest.raises(BadInput):
        ledger.mark_released(10_000)
    (row,) = ledger.rows()
    assert (row.fingerprint, row.label, row.budget_epsilon) == (FP, "cxr reports", 1.0)
    assert (row.n_spends, row.n_unreleased) == (3, 2)
    assert row.remaining_epsilon == pytest.approx(0.0)
    ledger.set_budget(FP, None)
    ledger.spend(FP, 5.0, 0.0, "no limit any more")


def test_validation_and_infinite_spend(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    for bad in (dict(epsilon=-1.0), dict(epsilon=float("nan")), dict(delta=1.0),
                dict(unit="person")):
        args = dict(dataset=FP, epsilon=1.0, delta=0.0, release="r") | bad
        with pytest.raises(ValueError):
            ledger.spend(**args)  # type: ignore[arg-type]
    ledger.spend(FP, float("inf"), 0.0, "verbatim release")
    assert ledger.spent(FP) == float("inf")
    ledger.set_budget(FP, 100.0)
    with pytest.raises(BudgetRefused):
        ledger.spend(FP, 0.0 + 1e-3, 0.0, "after an unprotected release")


def test_record_release_marks_released_and_keeps_spend_on_error(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with record_release(db, FP, 0.5, 1e-6, "ok", unit="token", mechanism="stamp") as spend_id:
        assert Ledger(db).spends(FP)[0].status == "spent"  # spent before release
    assert Ledger(db).spends(FP)[0].status == "released"
    with pytest.raises(RuntimeError), record_release(db, FP, 0.1, 0.0, "failed"):
        raise RuntimeError("write failed")
    rows = Ledger(db).spends(FP)
    assert [r.status for r in rows] == ["released", "spent"]
    assert rows[0].id == spend_id and rows[0].unit == "token"
    assert Ledger(db).spent(FP) == pytest.approx(0.6)


def test_resolve_and_module_helper(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    data = tmp_path / "notes.jsonl"
    data.write_text('{"text": "x"}\n')
    ledger = Ledger(db)
    fp = ledger.resolve(data)
    assert fp == fingerprint_file(data)
    spend_before_release(fp, 0.2, 0.0, unit="token", mechanism="stamp", path=db)
    ledger.set_budget(fp, 2.0, label="notes")
    assert ledger.resolve("notes") == fp
    assert ledger.resolve(fp[:10]) == fp
    assert ledger.resolve(FP) == FP  # a well-formed fingerprint not yet in the ledger
    with pytest.raises(BadInput):
        ledger.resolve("no-such-dataset")


def test_default_path_is_veil_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    assert Ledger().path == tmp_path / "home" / "ledger.db"


# ---------------------------------------------------------------- two processes


def test_concurrent_spends_from_two_processes_are_all_recorded(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")  # not created yet: the processes race to create it
    start = SPAWN.Barrier(3)
    procs = [SPAWN.Process(target=_spend_many, args=(db, 20, start)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    ledger = Ledger(db)
    assert len(ledger.spends(FP)) == 60
    assert ledger.spent(FP) == pytest.approx(0.6)


def test_two_concurrent_spends_over_budget_exactly_one_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    Ledger(db).set_budget(FP, 1.0)
    start = SPAWN.Barrier(2)
    procs = [SPAWN.Process(target=_spend_once, args=(db, 0.6, start)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(p.exitcode for p in procs) == [0, 3]
    assert Ledger(db).spent(FP) == pytest.approx(0.6)


def test_crash_between_spend_and_release_leaves_spend(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    proc = SPAWN.Process(target=_crash_between_spend_and_release, args=(db,))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 1
    (spend,) = Ledger(db).spends(FP)
    assert (spend.status, spend.epsilon, spend.released) == ("spent", 0.7, None)


def test_sigkill_between_spend_and_release_leaves_spend(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    spent = SPAWN.Event()
    proc = SPAWN.Process(target=_spend_then_hang, args=(db, spent))
    proc.start()
    assert spent.wait(120)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    (spend,) = Ledger(db).spends(FP)
    assert spend.status == "spent" and spend.epsilon == 0.3
    assert Ledger(db).spent(FP) == pytest.approx(0.3)
