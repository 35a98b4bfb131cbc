"""The saved model folder: write it, read it back, predict with it.

Layout (inside the run's output folder)::

    veil_model.json     how to rebuild the model (base model, adapter, pooling, windows)
    labels.json         the label names, in output order, and the task
    thresholds.json     the decision rule tuned on the validation split
    adapter/            PEFT ``save_pretrained`` output: LoRA weights + head (--adapter lora)
    head.safetensors    the head (--adapter head), or the per-label weights (--adapter evidence)
    evidence.json       the label-evidence feature map: descriptions, terms, negation rules
    model/              the whole fine-tuned encoder + head + tokenizer (--adapter full)
    merged/             LoRA folded into the encoder + head + tokenizer (--merge)

Loading needs the base model (registry name or local folder recorded in
``veil_model.json``) unless the folder holds ``model/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from veil.artifacts import write_json
from veil.errors import BadInput
from veil.train.classifier import EncoderClassifier, core
from veil.train.evaluate import decide
from veil.train.features import encode, score, token_ids

FORMAT = "veil-classifier/1"


def _save_head(model: EncoderClassifier, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in model.classifier.state_dict().items()},
              str(path))


def _save_encoder(model: EncoderClassifier, folder: Path, tokenizer: Any) -> None:
    model.encoder.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    _save_head(model, folder / "head.safetensors")


def save_model(model: nn.Module, folder: Path, meta: dict[str, Any], tokenizer: Any,
               thresholds: dict[str, Any], *, merge: bool = False,
               evidence: dict[str, Any] | None = None) -> None:
    """Write the model files of a trained classifier into ``folder`` (which exists)."""
    adapter = meta["adapter"]
    if adapter == "evidence":
        from safetensors.torch import save_file

        if evidence is None:
            raise ValueError("an evidence model needs its feature map's spec")
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                  str(folder / "head.safetensors"))
        write_json(folder / "evidence.json", evidence)
    elif adapter == "lora":
        model.save_pretrained(str(folder / "adapter"))  # type: ignore[operator]
    elif adapter == "head":
        _save_head(core(model), folder / "head.safetensors")
    else:
        _save_encoder(core(model), folder / "model", tokenizer)
    if merge and adapter == "lora":  # (evidence: nothing to merge)
        import copy

        merged = copy.deepcopy(model).merge_and_unload()  # type: ignore[operator]
        _save_encoder(core(merged), folder / "merged", tokenizer)
        meta = {**meta, "merged": "merged"}
    write_json(folder / "veil_model.json", {"format": FORMAT, **meta})
    write_json(folder / "labels.json", {"labels": meta["labels"],
                                        "task": "multi-label" if meta["multi_label"]
                                        else "multi-class"})
    write_json(folder / "thresholds.json", thresholds)


@dataclass
class LoadedModel:
    """A saved classifier, ready to score texts."""

    model: nn.Module
    tokenizer: Any
    meta: dict[str, Any]
    thresholds: dict[str, Any]
    folder: Path

    @property
    def labels(self) -> list[str]:
        """Label names in output order."""
        return list(self.meta["labels"])

    @property
    def multi_label(self) -> bool:
        """Independent labels (sigmoid) or exclusive classes (softmax)."""
        return bool(self.meta["multi_label"])

    def scores(self, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, int]:
        """Probabilities (n, L) and the number of documents longer than one window."""
        enc = encode(self.tokenizer, token_ids(self.tokenizer, texts), self.meta["max_length"],
                     self.meta["long_docs"] == "chunk")
        probs = score(self.model, enc, self.multi_label, self.meta["chunk_pool"], batch_size)
        return probs, enc.n_cut

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """0/1 decisions (n, L) under the saved thresholds (or arg-max)."""
        return decide(probs, self.thresholds, self.labels)


@dataclass
class LoadedEvidenceModel(LoadedModel):
    """A saved ``--adapter evidence`` classifier: features from its own spec, then the model."""

    evidence: Any = None

    def scores(self, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, int]:
        """Probabilities (n, L) and the number of documents embedded in several windows."""
        from veil.train.evidence_pipeline import probabilities

        x = self.evidence.features(texts)
        return probabilities(self.model, x, self.multi_label), int(self.evidence.n_windowed)


def _load_evidence(folder: Path, meta: dict[str, Any], thresholds: dict[str, Any]
                   ) -> LoadedEvidenceModel:
    from safetensors.torch import load_file

    from veil.train.evidence import FORMAT as EVIDENCE_FORMAT
    from veil.train.evidence_pipeline import build

    spec = _read_json(folder / "evidence.json")
    if not isinstance(spec, dict) or not str(spec.get("format", "")).startswith(
            EVIDENCE_FORMAT.rsplit("/", 1)[0] + "/"):
        raise BadInput("not a veil model folder (evidence.json format)", path=folder)
    if spec["format"] != EVIDENCE_FORMAT:
        raise BadInput(f"evidence.json is {spec['format']}, this veil reads {EVIDENCE_FORMAT}; "
                       "retrain with this version (or use the veil that wrote it)", path=folder)
    evidence, model = build(meta["labels"], spec["descriptions"], meta["base_model"],
                            bool(meta["multi_label"]))
    if json.loads(json.dumps(evidence.spec())) != spec:
        raise BadInput("evidence.json was written with other feature rules (terms, negation, "
                       "constants); retrain with this veil version", path=folder)
    model.load_state_dict(load_file(str(folder / "head.safetensors")))
    model.eval()
    return LoadedEvidenceModel(model, None, meta, thresholds, folder, evidence)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"not a veil model folder ({type(exc).__name__})", path=path) from None


def load_model(folder: str | Path) -> LoadedModel:
    """Read a folder written by ``veil train``.

    Raises:
        BadInput: missing or malformed files.
    """
    from veil.models import load_encoder, load_tokenizer

    folder = Path(folder)
    meta = _read_json(folder / "veil_model.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadInput("not a veil model folder (veil_model.json format)", path=folder)
    thresholds = _read_json(folder / "thresholds.json")
    if meta["adapter"] == "evidence":
        return _load_evidence(folder, meta, thresholds)
    n_labels = len(meta["labels"])
    if meta["adapter"] == "full":
        base: str = str(folder / "model")
        tokenizer = load_tokenizer(base)
    else:
        base = meta["base_model"]
        tokenizer = load_tokenizer(base)
    inner = EncoderClassifier(load_encoder(base), n_labels, meta["pooling"])
    model: nn.Module = inner
    if meta["adapter"] == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(inner, str(folder / "adapter"))
    else:
        from safetensors.torch import load_file

        name = "head.safetensors" if meta["adapter"] == "head" else "model/head.safetensors"
        head = folder / name
        inner.classifier.load_state_dict(load_file(str(head)))
    model.eval()
    return LoadedModel(model, tokenizer, meta, thresholds, folder)
