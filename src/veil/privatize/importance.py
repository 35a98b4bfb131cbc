"""Task importance: cosine between a token's unit embedding and the task vector.

STAMP (§2) marks a token *important* when ``cos(ē(w), q) ≥ τ``, with the task vector
``q = normalize(mean_{t ∈ tokenize(task)} E[t])`` (mean of the raw rows, one
normalisation, as the reference code does) and static input embeddings (no contextual
encoder). Importance depends only on the token id and the task text; the task vector is
cached per task text (d floats each), the scores are ``Ê[ids] q`` per document.

Importance decides a token's budget group, not its noise directly; it is a public,
deterministic rule applied to the private text, and the privacy guarantee covers only
documents with the same group pattern (see :mod:`veil.privatize.groups`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from veil.errors import BadInput
from veil.privatize.vocab import Vocabulary

_MAX_CACHED_TASKS = 4096


def task_vector(vocab: Vocabulary, task: str) -> npt.NDArray[np.float64]:
    """``q = normalize(mean of E[t] over the task's tokens)`` (float64, unit length).

    Raises:
        BadInput: the task text is empty or has no token with an embedding.
    """
    if not task or not task.strip():
        raise BadInput("the task/query text is empty (give --task or a non-empty --query-col)")
    ids = vocab.encode([task])[0].ids
    ids = ids[(ids < vocab.size)]
    ids = ids[vocab.norms[ids] > 0]
    if ids.size == 0:
        raise BadInput("the task/query text has no token with an embedding")
    mean = vocab.table[ids].astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0:
        raise BadInput("the task/query text has a zero mean embedding")
    return mean / norm


def _cached_task_vector(vocab: Vocabulary, task: str) -> npt.NDArray[np.float32]:
    cache = vocab.cache.setdefault("task_vectors", {})
    q = cache.get(task)
    if q is None:
        if len(cache) >= _MAX_CACHED_TASKS:
            cache.clear()
        q = cache[task] = task_vector(vocab, task).astype(np.float32)
    return q  # type: ignore[no-any-return]


def importance_scores(vocab: Vocabulary, task: str) -> npt.NDArray[np.float32]:
    """``cos(ē(v), q)`` for every id v of the vocabulary (float32 [V])."""
    return np.asarray(vocab.unit @ _cached_task_vector(vocab, task), dtype=np.float32)


def token_importance(vocab: Vocabulary, ids: npt.NDArray[np.int64],
                     task: str) -> npt.NDArray[np.float32]:
    """Importance score ``cos(ē(w), q)`` of each token id for ``task`` (compare with τ)."""
    return np.asarray(vocab.unit[ids] @ _cached_task_vector(vocab, task), dtype=np.float32)
