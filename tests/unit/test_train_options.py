"""Options an adapter does not read are reported (TrainConfig.ignored_options)."""

from __future__ import annotations

import pytest

from veil.train.config import TrainConfig


def _config(**kw: object) -> TrainConfig:
    return TrainConfig(data="reports.csv", out="model", **kw)  # type: ignore[arg-type]


def test_lora_reads_every_option() -> None:
    assert _config(adapter="lora", lora_r=4, lora_layers=2, max_length=64, pooling="cls",
                   head_init="labels", head_init_scale=10.0).ignored_options() == []
    # the head-init scale is read only when the head starts from the descriptions
    assert _config(head_init_scale=10.0).ignored_options() == ["--head-init-scale"]


def test_an_evidence_checkpoint_of_another_feature_format_is_not_resumed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from veil.train import evidence

    config, lora = _config(adapter="evidence"), _config(adapter="lora")
    before, lora_before = config.fingerprint(), lora.fingerprint()
    monkeypatch.setattr(evidence, "FORMAT", "veil-label-evidence/1")
    assert config.fingerprint() != before
    assert lora.fingerprint() == lora_before  # other adapters do not read the feature map


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
