"""``veil train --adapter evidence``: features once, then the shared DP-SGD loop and release.

The features (:mod:`veil.train.evidence`) are computed once per record with the
public encoder; the per-label model (:mod:`veil.train.evidence_model`) then
trains through :func:`veil.train.loop.fit` exactly like the other adapters
(Poisson sampling, per-record clipping, calibrated noise, checkpoints, ledger),
so ε means the same thing: record-level (ε, δ)-DP of the released weights.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from veil.progress import info
from veil.train.config import TrainConfig
from veil.train.evidence import LabelEvidence
from veil.train.evidence_model import EvidenceClassifier


def build(labels: Sequence[str], descriptions: dict[str, list[str]] | None, model: str,
          multi_label: bool, prior: bool = False) -> tuple[LabelEvidence, EvidenceClassifier]:
    """The feature map (over the public encoder ``model``) and an untrained classifier,
    its weights at zero or, with ``prior``, at :meth:`LabelEvidence.prior`."""
    from veil.models import load_sentence_encoder

    evidence = LabelEvidence(labels, descriptions, load_sentence_encoder(model))
    return evidence, EvidenceClassifier(evidence.blocks(), evidence.n_features, multi_label,
                                        evidence.prior() if prior else None)


_FEATURE_CACHE: OrderedDict[tuple[str, str, str], tuple[np.ndarray, int]] = OrderedDict()
FEATURE_CACHE_SIZE = 8
"""Feature matrices kept in memory (a sweep trains many ε × seed runs on the same splits)."""


def cached_features(evidence: LabelEvidence, model: str, texts: Sequence[str]
                    ) -> tuple[np.ndarray, int]:
    """``evidence.features(texts)`` and its ``n_windowed``, reused within the process.

    The key is the encoder name, the feature map's spec and a SHA-256 of the texts:
    features are a fixed function of these, so a hit returns exactly what a fresh
    computation would (never logged; the digest stays in memory).
    """
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    key = (model, json.dumps(evidence.spec(), sort_keys=True), digest.hexdigest())
    if key in _FEATURE_CACHE:
        _FEATURE_CACHE.move_to_end(key)
        x, n = _FEATURE_CACHE[key]
        return x.copy(), n
    x = evidence.features(texts)
    _FEATURE_CACHE[key] = (x.copy(), evidence.n_windowed)
    while len(_FEATURE_CACHE) > FEATURE_CACHE_SIZE:
        _FEATURE_CACHE.popitem(last=False)
    return x, evidence.n_windowed


@torch.no_grad()
def probabilities(model: nn.Module, features: np.ndarray, multi_label: bool,
                  batch_size: int = 4096) -> np.ndarray:
    """Sigmoid (multi-label) or softmax probabilities ``(n, L)`` for feature rows."""
    was = model.training
    model.eval()
    try:
        out = []
        for s in range(0, len(features), batch_size):
            logits = model(torch.as_tensor(features[s:s + batch_size])).logits
            out.append(torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1))
        n_labels = int(getattr(model, "n_labels", 0))
        return torch.cat(out).numpy() if out else np.zeros((0, n_labels), dtype=np.float32)
    finally:
        model.train(was)


def train_evidence(config: TrainConfig, data: Any, ledger: Any, timer: Any,
                   on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
                   descriptions: dict[str, list[str]] | None) -> Any:
    """Train and release an evidence classifier; returns a :class:`TrainResult`."""
    from veil.train import evaluate as ev
    from veil.train.facade import fit_and_release
    from veil.train.loop import targets

    space = data.space
    multi = space.multi_label
    with timer("model"):
        evidence, model = build(space.names, descriptions, config.model, multi,
                                prior=config.head_init == "labels")
    with timer("encode"):
        x_train, n_windowed = cached_features(evidence, config.model, data.train.texts)
        held = {name: cached_features(evidence, config.model, part.texts)[0]
                for name, part in (("validation", data.val), ("test", data.test))
                if part is not None}
    info(f"label evidence: {evidence.n_terms} terms, {evidence.n_descriptions} descriptions, "
         f"{sum(p.numel() for p in model.parameters())} weights; {n_windowed} training "
         "documents have a sentence longer than the encoder window (embedded in windows)")
    readers = [lab for lab in evidence.labels if evidence.reads_other_labels(lab)]
    info("labels whose descriptions negate a term, so their model sees every label's "
         f"evidence for/against: {', '.join(readers) if readers else 'none'}")
    examples = [({"features": torch.from_numpy(row)}, y)
                for row, y in zip(x_train, targets(data.train.y), strict=True)]
    validate = None
    if data.val is not None:
        x_val = held["validation"]
        validate = ev.validator_for(lambda m: probabilities(m, x_val, multi), data.val.y, multi)
    window = int(getattr(evidence.encoder, "max_seq_length", 0) or 0)
    return fit_and_release(
        config, data, model, examples, validate=validate, ledger=ledger, timer=timer,
        on_epoch_end=on_epoch_end,
        probabilities=lambda split: probabilities(model, held[split], multi),
        max_length=window, n_cut=n_windowed, evidence=evidence.spec())
