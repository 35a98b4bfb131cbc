"""Label-description initialisation of the classification head (a public prior; no ε spent).

DP-SGD learns slowly on small data: every step's signal competes with noise of
fixed size, so where training starts matters. Li et al. (2022, "Large language
models can be strong differentially private learners") show that DP fine-tuning
does best when the task is posed the way the model was pretrained. For a
sentence encoder that way is similarity: a document is about a label when its
embedding is close to an embedding of the label's description.

``--head-init labels`` starts the head there. Row ``l`` of the head weight is

    w_l = s · (ē_l − mean_k ē_k) / d

where ``ē_l`` is the standardised mean-pooled embedding (the classifier's own
pooling, without adapters) of label ``l``'s descriptions, ``d`` the width and
``s`` the scale (``--head-init-scale``). The classifier standardises each pooled
document vector ``z`` the same way, so ``w_l · z / s`` is the correlation of the
document with label ``l`` minus its mean correlation with all labels: the
zero-shot teacher's score, centred across labels so that no label starts
favoured. The bias keeps its data-independent prior.

Privacy: the descriptions are built from the label *names* and a public model;
no record is read, so the initialisation spends no budget. The label names are
chosen from the data when ``--top-labels`` is used; the privacy card already
names that choice as not covered by ε.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from veil.train.classifier import pool_states


@torch.no_grad()
def description_embeddings(encoder: Any, tokenizer: Any,
                           descriptions: Mapping[str, Sequence[str]],
                           labels: Sequence[str], pooling: str = "mean") -> Tensor:
    """``(L, d)``: per label, the standardised mean of its descriptions' pooled states.

    ``pooling`` is the classifier's (``"mean"`` over tokens or the ``"cls"`` state).
    """
    was = encoder.training
    encoder.eval()
    try:
        rows = []
        for label in labels:
            batch = tokenizer(list(descriptions[label]), padding=True, return_tensors="pt")
            states = encoder(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"]).last_hidden_state
            pooled = pool_states(states, batch["attention_mask"], pooling)
            rows.append(F.layer_norm(pooled.mean(0), pooled.shape[-1:]))
        return torch.stack(rows)
    finally:
        encoder.train(was)


def label_head_weight(label_embeddings: Tensor, scale: float) -> Tensor:
    """``s · (ē_l − mean_k ē_k) / d`` for each row of ``label_embeddings``."""
    centred = label_embeddings - label_embeddings.mean(0, keepdim=True)
    return scale * centred / label_embeddings.shape[1]
