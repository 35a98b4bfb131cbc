"""The train stage of `veil demo`: its options fit the demo corpus, and it runs end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from veil.demo import write_demo_corpus
from veil.demo_text import LABELS
from veil.train.data import prepare_data
from veil.train.demo import DEMO_EPSILON, demo_config


def test_demo_options_fit_the_demo_corpus(tmp_path: Path) -> None:
    write_demo_corpus(tmp_path, seed=1)  # the demo's own size
    cfg = demo_config(tmp_path, DEMO_EPSILON, seed=1)
    data = prepare_data(cfg)
    assert set(data.space.names) <= set(LABELS) and data.space.multi_label
    assert len(data.train) + len(data.val) + len(data.test) == 600  # type: ignore[arg-type]
    assert cfg.batch_size < len(data.train)
    assert cfg.out == tmp_path / "train" / "dp-eps3"
    assert demo_config(tmp_path, math.inf, seed=1).out.name == "non-private"


def test_demo_stage_runs_and_prints_both_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from veil.train import demo

    write_demo_corpus(tmp_path, n_reports=150, seed=2)
    small = demo.demo_config

    def tiny(out_dir: Path, epsilon: float, *, seed: int, model: str = "minilm"):  # type: ignore[no-untyped-def]
        return small(out_dir, epsilon, seed=seed, model="tiny-bert").replace(
            epochs=1, batch_size=10, n_boot=20)  # q = 10/98: a quick calibration

    monkeypatch.setattr(demo, "demo_config", tiny)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        demo.run_demo_stage(tmp_path, seed=2)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().err
    assert "DP (ε = 3" in out and "non-private" in out
    for name in ("dp-eps3", "non-private"):
        assert (tmp_path / "train" / name / "privacy.json").is_file()
    assert (tmp_path / "train" / "ledger.db").is_file()
