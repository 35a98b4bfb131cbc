"""Exact nearest-neighbour decoding of noisy vectors to vocabulary ids, as a chunked matmul.

Decoding is post-processing of the mechanism's output, so it keeps the per-token
guarantee. Cosine decoding (STAMP Prop. 1: ``argmax_v ⟨u′, v̂⟩`` over the row-normalised
table, the vMF maximum-likelihood token) and Euclidean decoding (``argmin ‖x − v‖₂ =
argmax ⟨x, v⟩ − ‖v‖²/2``) are both one float32 matrix product per chunk of query rows
followed by a top-1, over a contiguous sub-table per piece kind: word-initial queries
decode to word-initial pieces and continuation queries to continuation pieces (or any
piece with ``decode_any``); special, ``[unused*]`` and zero rows are never candidates.
Ties go to the smallest id, as a brute-force ``argmax`` over the allowed ids would.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from veil.privatize.vocab import CONTINUATION, INITIAL, Vocabulary

Metric = Literal["cosine", "euclidean"]
IntArray = npt.NDArray[np.int64]


class NearestDecoder:
    """Top-1 nearest vocabulary id per query row, restricted by piece kind.

    Args:
        vocab: the vocabulary.
        metric: ``cosine`` (over unit rows) or ``euclidean`` (over raw rows).
        decode_any: ignore piece kinds (every non-excluded id is a candidate).
        chunk_rows: query rows per matrix product (the score block is chunk_rows × V).
    """

    def __init__(self, vocab: Vocabulary, metric: Metric = "cosine", *, decode_any: bool = False,
                 chunk_rows: int = 1024) -> None:
        import torch

        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
        self.metric = metric
        self.chunk_rows = int(chunk_rows)
        src = vocab.unit if metric == "cosine" else vocab.table
        kinds: list[int | None] = [None] if decode_any else [INITIAL, CONTINUATION]
        self._parts: dict[int | None, tuple[IntArray, Any, Any]] = {}
        for kind in kinds:
            ids = vocab.candidates(kind)
            if ids.size == 0:
                continue
            tab = torch.from_numpy(np.ascontiguousarray(src[ids], dtype=np.float32))
            bias = None
            if metric == "euclidean":
                sq = np.einsum("ij,ij->i", src[ids].astype(np.float64), src[ids])
                bias = torch.from_numpy((-0.5 * sq).astype(np.float32))
            self._parts[kind] = (ids, tab, bias)
        if not self._parts:
            raise ValueError("the vocabulary has no output candidates")
        self.decode_any = decode_any

    def _kind_of(self, kind: int) -> int | None:
        if self.decode_any:
            return None
        if kind in self._parts:
            return kind
        return INITIAL if INITIAL in self._parts else CONTINUATION  # a kind with no pieces

    def decode(self, queries: npt.ArrayLike, kinds: npt.ArrayLike | None = None) -> IntArray:
        """Nearest allowed id for each row of ``queries`` ((n, d)); ``kinds`` (n,) gives each
        row's piece kind (0 word-initial, 1 continuation; default all word-initial)."""
        import torch

        q = np.asarray(queries)
        n = q.shape[0]
        out = np.empty(n, dtype=np.int64)
        if n == 0:
            return out
        k = np.zeros(n, dtype=np.int8) if kinds is None else np.asarray(kinds, dtype=np.int8)
        qt = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
        for kind in np.unique(k).tolist():
            part = self._kind_of(int(kind))
            rows = np.flatnonzero(k == kind)
            ids, tab, bias = self._parts[part]
            sub = qt if rows.size == n else qt[torch.from_numpy(rows)]
            best = np.empty(rows.size, dtype=np.int64)
            for r0 in range(0, rows.size, self.chunk_rows):
                block = sub[r0:r0 + self.chunk_rows]
                scores = (torch.mm(block, tab.T) if bias is None
                          else torch.addmm(bias, block, tab.T))
                best[r0:r0 + block.shape[0]] = scores.argmax(dim=1).numpy()
            out[rows] = ids[best]
        return out


def get_decoder(vocab: Vocabulary, metric: Metric, *, decode_any: bool = False,
                chunk_rows: int = 1024) -> NearestDecoder:
    """A decoder cached on the vocabulary (the sub-tables are built once per setting)."""
    key = ("decoder", metric, decode_any, chunk_rows)
    dec = vocab.cache.get(key)
    if dec is None:
        dec = NearestDecoder(vocab, metric, decode_any=decode_any, chunk_rows=chunk_rows)
        vocab.cache[key] = dec
    return dec  # type: ignore[no-any-return]
