"""The ``--adapter evidence`` classifier: one small linear model per label over its evidence.

Label ``l``'s logit is ``w_l · x[block_l] + b_l``, where ``block_l`` are the
feature columns of :meth:`veil.train.evidence.LabelEvidence.blocks`. Each label's
weights live in their own ``nn.Linear`` so that the DP-SGD engine's per-sample
gradients (``lora-fast``) and clipping apply unchanged; ε protects each training
record, as for every adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from transformers.modeling_outputs import SequenceClassifierOutput

MULTI_LABEL_BIAS = -2.0
"""Starting bias of each label in multi-label tasks (probability 0.12): a report names few
of the labels. A data-independent prior; the weights start at zero."""


class EvidenceClassifier(nn.Module):
    """Per-label logistic (multi-label) or softmax (multi-class) model over evidence features.

    Args:
        blocks: per label, the feature columns it sees.
        n_features: length of a document's feature vector.
        multi_label: sigmoid per label (True) or softmax over labels.
        prior: per label, starting weights aligned with its block (a public prior such as
            :meth:`veil.train.evidence.LabelEvidence.prior`); zeros when None.
    """

    def __init__(self, blocks: Sequence[Sequence[int]], n_features: int,
                 multi_label: bool, prior: Sequence[Sequence[float]] | None = None) -> None:
        super().__init__()
        if not blocks or any(not b for b in blocks):
            raise ValueError("every label needs at least one feature column")
        if any(not 0 <= c < n_features for b in blocks for c in b):
            raise ValueError("a feature column is out of range")
        if prior is not None and [len(p) for p in prior] != [len(b) for b in blocks]:
            raise ValueError("the prior must give one weight per column of each block")
        self.n_features = n_features
        self.n_labels = len(blocks)
        self.heads = nn.ModuleList(nn.Linear(len(b), 1) for b in blocks)
        for i, b in enumerate(blocks):
            self.register_buffer(f"columns_{i}", torch.tensor(list(b), dtype=torch.long))
        with torch.no_grad():
            for i, linear in enumerate(self.linears()):
                linear.weight.zero_()
                if prior is not None:
                    linear.weight[0] = torch.tensor(list(prior[i]), dtype=linear.weight.dtype)
                linear.bias.fill_(MULTI_LABEL_BIAS if multi_label else 0.0)

    def columns(self, i: int) -> Tensor:
        """The feature columns of label ``i``."""
        out: Tensor = getattr(self, f"columns_{i}")
        return out

    def linears(self) -> list[nn.Linear]:
        """The per-label linear models, in label order."""
        return [m for m in self.heads if isinstance(m, nn.Linear)]

    def forward(self, features: Tensor) -> SequenceClassifierOutput:
        """Logits ``(batch, L)`` for feature rows ``(batch, n_features)``."""
        if features.dim() != 2 or features.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape (batch, {self.n_features}), "
                             f"got {tuple(features.shape)}")
        logits = torch.cat([linear(features.index_select(1, self.columns(i)))
                            for i, linear in enumerate(self.linears())], dim=1)
        return SequenceClassifierOutput(logits=logits)
