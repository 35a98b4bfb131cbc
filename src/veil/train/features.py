"""Model inputs: token windows per document, optional cached prefix states, scoring.

A document becomes one window (``--long-docs truncate``: the rest is cut, and
the number of cut documents is reported) or several overlapping windows
(``chunk``). :func:`score` pools window predictions per document: the mean of
the windows' logits (default) or the maximum of their probabilities (a finding
mentioned in any window counts). Training always uses each record's first
window only, so a record is one example and its gradient bound is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from veil.train.classifier import compute_prefix, core, evaluating, pad, pad_states
from veil.train.data import make_windows


@dataclass
class Encoded:
    """Token windows of a list of documents (and, optionally, their cached prefix states)."""

    windows: list[list[list[int]]]
    lengths: list[int]
    max_length: int
    prefix: list[list[Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def n_cut(self) -> int:
        """Documents longer than one window (cut under truncate, chunked under chunk)."""
        return sum(length > self.max_length for length in self.lengths)

    def first(self, i: int) -> Any:
        """The training input of document ``i``: its first window (cached states if any)."""
        return self.prefix[i][0] if self.prefix is not None else self.windows[i][0]


def token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens and without truncation."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # long inputs are expected: windows handle them
    try:
        return list(tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"])
    finally:
        hf_logging.set_verbosity(verbosity)


def encode(tokenizer: Any, ids: list[list[int]], max_length: int, chunk: bool) -> Encoded:
    """Windows of ``max_length`` tokens (with [CLS]/[SEP]) for pre-tokenised documents."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    windows = [make_windows(x, max_length, cls_id, sep_id, chunk) for x in ids]
    return Encoded(windows, [len(x) + 2 for x in ids], max_length)


def attach_prefix(model: nn.Module, enc: Encoded, batch_size: int = 64,
                  progress: str | None = None, first_only: bool = False) -> None:
    """Compute the frozen layers' output once for every window (or first windows only)."""
    flat, owner = [], []
    for d, wins in enumerate(enc.windows):
        for w in wins[:1] if first_only else wins:
            flat.append(w)
            owner.append(d)
    states = compute_prefix(model, flat, batch_size, progress)
    per_doc: list[list[Tensor]] = [[] for _ in enc.windows]
    for d, s in zip(owner, states, strict=True):
        per_doc[d].append(s)
    enc.prefix = per_doc


def uses_prefix(model: nn.Module) -> bool:
    """Whether the model trains on cached prefix states (frozen bottom layers)."""
    return core(model).start_layer > 0


def logits(model: nn.Module, enc: Encoded, batch_size: int = 64,
           use_prefix: bool = True) -> tuple[list[Tensor], list[int]]:
    """Logits of every window, sorted-length batches, in document order, and their owners."""
    items: list[tuple[int, Any]] = []
    full = enc.prefix is not None and use_prefix and all(
        len(p) == len(w) for p, w in zip(enc.prefix, enc.windows, strict=True))
    for d, wins in enumerate(enc.windows):
        src = enc.prefix[d] if full and enc.prefix is not None else wins
        items.extend((d, x) for x in src)
    order = sorted(range(len(items)), key=lambda i: len(items[i][1]))
    out: list[Tensor | None] = [None] * len(items)
    with evaluating(model):
        for s in range(0, len(order), batch_size):
            chunk = order[s:s + batch_size]
            xs = [items[i][1] for i in chunk]
            batch = pad_states(xs) if full else pad(xs)
            res = model(**batch).logits.float()
            for j, i in enumerate(chunk):
                out[i] = res[j]
    return [x for x in out if x is not None], [d for d, _ in items]


def score(model: nn.Module, enc: Encoded, multi_label: bool, pool: str = "mean",
          batch_size: int = 64, use_prefix: bool = True) -> np.ndarray:
    """Per-document probabilities, shape (n_docs, n_labels), windows pooled by ``pool``.

    ``mean``: the mean of the windows' logits, then sigmoid/softmax. ``max``: the
    maximum over windows of each label's probability.
    """
    rows, owners = logits(model, enc, batch_size, use_prefix)
    n_labels = rows[0].shape[0]
    stacked = torch.stack(rows)
    owner = torch.tensor(owners)
    n = len(enc)
    if pool == "max":
        probs = torch.sigmoid(stacked) if multi_label else torch.softmax(stacked, -1)
        out = torch.full((n, n_labels), -1.0)
        out = out.scatter_reduce(0, owner[:, None].expand_as(probs), probs, reduce="amax")
        return out.numpy().astype(np.float64)
    total = torch.zeros(n, n_labels).index_add_(0, owner, stacked)
    count = torch.zeros(n).index_add_(0, owner, torch.ones(len(owners)))
    mean = total / count[:, None]
    probs = torch.sigmoid(mean) if multi_label else torch.softmax(mean, -1)
    return probs.numpy().astype(np.float64)


_MEMO: list[tuple[tuple[Any, ...], list[list[list[int]]], list[list[Tensor]]]] = []


def attach_cached(model: nn.Module, enc: Encoded, key: tuple[Any, ...], first_only: bool,
                  what: str) -> None:
    """:func:`attach_prefix`, reusing an earlier computation on identical windows.

    ``key`` names the frozen computation (base model, ``start_layer``); runs in
    one process (a sweep, the demo) then encode each split once. The last three
    results are kept.
    """
    full_key = (*key, first_only)
    for k, windows, prefix in _MEMO:
        if k == full_key and windows == enc.windows:
            enc.prefix = prefix
            return
    attach_prefix(model, enc, progress=f"encoding {what}", first_only=first_only)
    assert enc.prefix is not None
    _MEMO.append((full_key, enc.windows, enc.prefix))
    del _MEMO[:-3]
