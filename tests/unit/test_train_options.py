"""Options an adapter does not read are reported (TrainConfig.ignored_options)."""

from __future__ import annotations

from veil.train.config import TrainConfig


def _config(**kw: object) -> TrainConfig:
    return TrainConfig(data="reports.csv", out="model", **kw)  # type: ignore[arg-type]


def test_lora_reads_every_option() -> None:
    assert _config(adapter="lora", lora_r=4, lora_layers=2, max_length=64,
                   pooling="cls").ignored_options() == []


def test_head_and_full_ignore_the_lora_options_only() -> None:
    for adapter in ("head", "full"):
        config = _config(adapter=adapter, lora_r=4, lora_targets=("query",), max_length=64)
        assert config.ignored_options() == ["--lora-r", "--lora-targets"]


def test_evidence_ignores_lora_and_encoder_input_options() -> None:
    config = _config(adapter="evidence", lora_alpha=8, max_length=64, long_docs="chunk",
                     head_init_scale=10.0, epochs=7)
    assert config.ignored_options() == ["--lora-alpha", "--max-length", "--long-docs",
                                        "--head-init-scale"]
    assert _config(adapter="evidence", lora_r=8).ignored_options() == []  # the default
