"""Real SmolLM2-135M GGUF → HF conversion (slow: ~25 s and ~540 MB on disk)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from veil import model_cache as mc
from veil import models

pytestmark = pytest.mark.slow
_MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache: this module measures a real conversion."""
    return tmp_path_factory.mktemp("smollm2_cache")


@pytest.fixture(autouse=True)
def _cache_env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_MODEL_CACHE", str(cache))


@pytest.fixture(scope="module")
def converted(cache: Path) -> Path:
    os.environ["VEIL_MODEL_CACHE"] = str(cache)  # module fixtures run before monkeypatch
    start = time.perf_counter()
    path = models.model_path("smollm2-135m")
    _MEASURED["convert_s"] = time.perf_counter() - start
    _MEASURED["size_mb"] = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    print(f"\nSmolLM2 conversion: {_MEASURED['convert_s']:.1f} s, {_MEASURED['size_mb']:.0f} MB")
    return path


@pytest.fixture(scope="module")
def lm(converted: Path) -> tuple[Any, Any]:
    return models.load_causal_lm("smollm2-135m")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_converted_once_with_checksums(converted: Path) -> None:
    gguf_path = models._smollm2_files()[0]  # type: ignore[index]
    manifest = mc.read_manifest(converted)
    assert manifest is not None
    assert manifest["sources"][gguf_path.name]["sha256"] == _sha256(gguf_path)
    weights = converted / "model.safetensors"
    assert manifest["files"]["model.safetensors"]["sha256"] == _sha256(weights)
    assert weights.stat().st_size == pytest.approx(4 * 134_515_008, rel=0.01)  # float32, tied
    start = time.perf_counter()
    assert models.model_path("smollm2-135m") == converted
    assert time.perf_counter() - start < 10
    assert mc.read_manifest(converted) == manifest  # not rebuilt


def _q4_1_reference(raw: np.ndarray) -> np.ndarray:
    """Q4_1 by its definition: 20-byte blocks (fp16 d, fp16 m, 16 bytes of 4-bit q), w = d*q + m;
    low nibbles are elements 0-15 of a block, high nibbles 16-31."""
    blocks = raw.reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return (d * q + m).reshape(raw.shape[0], -1)


def test_dequantized_weights_match_gguf_package(converted: Path) -> None:
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.numpy import load_file

    ours = load_file(str(converted / "model.safetensors"))
    reader = GGUFReader(str(models._smollm2_files()[0]))  # type: ignore[index]
    pairs = {
        "token_embd.weight": "model.embed_tokens.weight",
        "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
        "blk.7.attn_v.weight": "model.layers.7.self_attn.v_proj.weight",
        "output_norm.weight": "model.norm.weight",
    }
    kinds = set()
    for tensor in reader.tensors:
        if tensor.name in pairs:
            kinds.add(tensor.tensor_type.name)
            reference = dequantize(tensor.data, tensor.tensor_type).reshape(
                ours[pairs[tensor.name]].shape
            )
            np.testing.assert_allclose(ours[pairs[tensor.name]], reference, rtol=1e-6, atol=1e-6)
    assert "Q4_1" in kinds
    down = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    assert down.tensor_type.name == "Q4_1"
    np.testing.assert_allclose(
        ours["model.layers.0.mlp.down_proj.weight"], _q4_1_reference(np.asarray(down.data)),
        rtol=1e-6, atol=1e-6,
    )


def test_tokenizer_round_trips(lm: tuple[Any, Any]) -> None:
    _, tok = lm
    texts = [
        "CHEST X-RAY PA/LAT: No acute cardiopulmonary process.\nImpression: normal.",
        "Größe 3,5 cm — naïve café; dose 0.5 mg/kg q6h (≤ 2 g/day).",
        "  leading spaces and\ttabs  ",
    ]
    for text in texts:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tok.chat_template is not None


def test_generates_sensible_english(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    out = model.generate(**chat, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer

    prompt = tok("The patient was admitted to the hospital with", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    text = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    words = text.split()
    assert len(words) >= 8
    assert sum(w.strip(".,;:'\"").isalpha() for w in words) >= 0.8 * len(words)


def test_embedding_table_and_parameter_count(lm: tuple[Any, Any], converted: Path) -> None:
    model, _ = lm
    table, tok = models.embedding_table("smollm2-135m")
    assert table.shape == (49152, 576) and table.dtype == np.float32
    np.testing.assert_array_equal(table, model.get_input_embeddings().weight.detach().numpy())
    assert len(tok) == 49152
    row = models.models_table()[models.VALID_NAMES.index("smollm2-135m")]
    assert row.status == "converted" and row.path == converted
    assert row.parameters == sum(p.numel() for p in model.parameters()) == 134_515_008
