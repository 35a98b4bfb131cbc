"""Deployment mode: a SuperLink and three SuperNodes as separate processes on 127.0.0.1.

Flower's own tooling runs the job: ``flower-superlink --insecure``, one
``flower-supernode`` per site (its data path and role in ``--node-config``) and
``flwr run <app folder> <connection>``. One site fails at the vote phase; the
run must finish without it. Each SuperNode has its own ``VEIL_HOME`` (site_1 names its
ledger file in its node config instead), as separate hospitals would, and must record its
spend in its own ledger only. Every process is started in its own process group
and killed in ``finally``; every wait has a deadline, so the test cannot hang.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_synth_sim import make_sites, tiny_config

from veil.synth.facade import prepare
from veil.synth.flower_project import export_flower_app, write_connection

pytestmark = [pytest.mark.slow, pytest.mark.flower]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s, suppress(OSError):
            s.settimeout(0.5)
            s.connect(("127.0.0.1", port))
            return
        time.sleep(0.3)
    raise TimeoutError(f"port {port} did not open")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def test_superlink_three_supernodes_and_flwr_run(tmp_path: Path) -> None:
    make_sites(tmp_path / "sites", per_site=16)
    cfg, named, _ = prepare(tmp_path / "sites", tiny_config(samples=8))
    cfg = replace(cfg, min_sites=3, phase_timeout=240.0)
    out = tmp_path / "out"
    export_flower_app(tmp_path / "app", cfg, out)
    port = _free_port()
    write_connection(tmp_path / "flwr_home", "veil-local", f"127.0.0.1:{port}", insecure=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               FLWR_HOME=str(tmp_path / "flwr_home"), VEIL_HOME=str(tmp_path / "server_home"),
               HF_HUB_OFFLINE="1")
    homes = {site: tmp_path / f"home_{site}" for site, _ in named}
    site_1_ledger = tmp_path / "site_1_ledger" / "budget.db"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str], **extra_env: str) -> None:
        with open(logs / f"{name}.log", "wb") as log:
            procs.append(subprocess.Popen([str(BIN / args[0]), *args[1:]],
                                          env={**env, **extra_env}, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start("superlink", ["flower-superlink", "--insecure",
                            "--disable-runtime-dependency-installation", "--host", "127.0.0.1",
                            "--port", str(port)])
        _wait_port(port, time.monotonic() + 60)
        for k, (site, path) in enumerate(named):
            node_config = (f"data-path='{path.resolve()}' site-name='{site}' "
                           f"role='{'strong' if k == 0 else 'weak'}'")
            if k == 1:
                node_config += f" ledger='{site_1_ledger}'"
            if k == 2:
                node_config += " fail-at='vote'"
            start(site, ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}",
                         "--port", str(_free_port()), "--node-config", node_config],
                  VEIL_HOME=str(homes[site]))
        run = subprocess.run([str(BIN / "flwr"), "run", str(tmp_path / "app"), "veil-local",
                              "--stream"], env=env, capture_output=True, timeout=420)
        assert run.returncode == 0, run.stdout.decode(errors="replace")[-2000:]
        deadline = time.monotonic() + 60
        while not (out / "metrics.json").exists() and time.monotonic() < deadline:
            time.sleep(1)
        assert (out / "metrics.json").exists(), "the ServerApp wrote no output"
    finally:
        _stop(procs)
    records = (out / "synthetic.jsonl").read_text().splitlines()
    assert len(records) == 8
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["sites"]) == {"site_0", "site_1", "site_2"}
    assert metrics["sites"]["site_0"]["phases_released"] == ["profile", "train"]
    assert metrics["sites"]["site_2"]["failed_at"] == "vote"
    assert metrics["refined"] is True
    assert "FAILED at vote" in (out / "report.md").read_text()
    assert len(list((out / "privacy").glob("site_*.json"))) == 3
    # each SuperNode recorded its own spend, once, in its own ledger, and nowhere else
    from veil.privacy.ledger import Ledger

    ledgers = {"site_0": homes["site_0"] / "ledger.db", "site_1": site_1_ledger,
               "site_2": homes["site_2"] / "ledger.db"}
    for site, path in ledgers.items():
        assert path.is_file(), f"{site} wrote no ledger at {path}"
        book = Ledger(path)
        (row,) = book.rows()
        assert row.label == site and row.n_spends == 1
        planned = json.loads((out / "privacy" / f"{site}.json").read_text())
        assert row.spent_epsilon == pytest.approx(planned["extra"]["planned_epsilon"])
        (spend,) = book.spends(row.fingerprint)
        assert spend.note == f"phases: {', '.join(metrics['sites'][site]['phases_planned'])}"
        # released once its last phase went out; site_2 failed before its vote
        assert spend.status == ("spent" if site == "site_2" else "released")
    assert not (homes["site_1"] / "ledger.db").exists()  # node-config ledger= wins
    assert not (tmp_path / "server_home" / "ledger.db").exists()  # the server keeps none
