"""Phase 4, DP voting: private records vote for their nearest candidates; the server selects.

Site side (:func:`nearest_votes`, :func:`noisy_votes`). Every private record
with control code j votes for its K nearest candidates **with the same code**
(cosine similarity of sentence embeddings), each vote weighted ``1/√K``. One
record's contribution is a vector with at most K entries of ``1/√K``, so its
L2 norm is at most 1 (exactly 1 when code j has ≥ K candidates): adding or
removing a record moves the histogram by ≤ 1 in L2 — sensitivity 1, without
which it would be √K (DPSDA's "sample" normalisation). The histogram gets
i.i.d. ``N(0, σ²)`` per candidate (Gaussian mechanism, ε per record of the
site, calibrated in :mod:`veil.synth.budget`).

Server side (:func:`select`). Sum the sites' noisy histograms, apply the
threshold ``max(v − H, 0)`` and pick each code's quota of candidates in
proportion to the votes (``"sample"``: weighted sampling without replacement,
Efraimidis–Spirakis keys) or by rank (``"rank"``). A code whose votes are all
zero after thresholding falls back to a uniform choice and is reported.
Post-processing only: no further privacy cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veil.privacy.mechanisms import gaussian

_CHUNK = 1024


def embed(encoder: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm float32 sentence embeddings of ``texts`` (rows), via sentence-transformers."""
    if not texts:
        dim = int(encoder.get_sentence_embedding_dimension() or 0)
        return np.zeros((0, dim), dtype=np.float32)
    emb = encoder.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                         normalize_embeddings=True, show_progress_bar=False)
    return np.ascontiguousarray(emb, dtype=np.float32)


def nearest_votes(record_emb: np.ndarray, record_codes: Sequence[int | None],
                  cand_emb: np.ndarray, cand_codes: Sequence[int], k: int) -> np.ndarray:
    """The (exact, private) vote histogram over candidates.

    Args:
        record_emb: unit-norm embeddings of the site's records, one row each.
        record_codes: each record's code index (None: outside the vocabulary, no vote).
        cand_emb: unit-norm embeddings of the candidates.
        cand_codes: each candidate's code index.
        k: votes per record; each weighs ``1/√k``.

    Returns:
        float64 votes per candidate. One record adds at most ``k`` entries of
        ``1/√k`` (L2 norm ≤ 1; exactly 1 when its code has ≥ k candidates).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    votes = np.zeros(len(cand_codes), dtype=np.float64)
    weight = 1.0 / math.sqrt(k)
    rec_codes = np.asarray([-1 if c is None else c for c in record_codes], dtype=np.int64)
    cand = np.asarray(cand_codes, dtype=np.int64)
    for j in np.unique(rec_codes[rec_codes >= 0]):
        cand_idx = np.flatnonzero(cand == j)
        if cand_idx.size == 0:
            continue
        rec_idx = np.flatnonzero(rec_codes == j)
        kk = min(k, cand_idx.size)
        c_emb = cand_emb[cand_idx]
        for start in range(0, rec_idx.size, _CHUNK):
            sims = record_emb[rec_idx[start:start + _CHUNK]] @ c_emb.T
            if kk < cand_idx.size:
                top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            else:
                top = np.broadcast_to(np.arange(kk), (sims.shape[0], kk))
            np.add.at(votes, cand_idx[top.ravel()], weight)
    return votes


def vote_histogram(encoder: Any, records: Sequence[str], record_codes: Sequence[int | None],
                   candidates: Sequence[str], cand_codes: Sequence[int], k: int,
                   batch_size: int = 64, cand_emb: np.ndarray | None = None) -> np.ndarray:
    """A site's exact vote histogram: one encoder pass over records and candidates, then votes.

    Records outside the vocabulary (code None) cast no vote and are not embedded.
    ``cand_emb``: the candidates' embeddings when already computed (they are public:
    every site embeds the same broadcast candidates); then only the records are encoded.
    The result is private until :func:`noisy_votes` has been applied.
    """
    voters = [i for i, c in enumerate(record_codes) if c is not None]
    own = [records[i] for i in voters]
    if cand_emb is None:
        emb = embed(encoder, own + list(candidates), batch_size)
        rec_emb, cand_emb = emb[:len(voters)], emb[len(voters):]
    else:
        if len(cand_emb) != len(candidates):
            raise ValueError("cand_emb must have one row per candidate")
        rec_emb = embed(encoder, own, batch_size)
    return nearest_votes(rec_emb, [record_codes[i] for i in voters], cand_emb, cand_codes, k)


def noisy_votes(votes: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The released histogram: ``votes + N(0, σ²)`` per candidate (σ = 0: exact, ε = ∞)."""
    if sigma == 0.0:
        return np.asarray(votes, dtype=np.float64).copy()
    return np.asarray(gaussian(np.asarray(votes, dtype=np.float64), sigma, rng))


@dataclass
class SelectionResult:
    """Which candidates were released, and what happened per code.

    Attributes:
        chosen: indices of the selected candidates, grouped by code.
        zero_histogram_codes: codes whose thresholded votes were all zero
            (selected uniformly instead).
        positive_votes: per code, the number of candidates with positive weight.
    """

    chosen: list[int] = field(default_factory=list)
    zero_histogram_codes: list[int] = field(default_factory=list)
    positive_votes: dict[int, int] = field(default_factory=dict)


def select(votes: np.ndarray, cand_codes: Sequence[int], quotas: Sequence[int], *,
           threshold: float = 0.0, mode: str = "sample",
           rng: np.random.Generator) -> SelectionResult:
    """Pick ``quotas[j]`` candidates of each code j in proportion to the noisy votes.

    Args:
        votes: summed noisy votes per candidate.
        cand_codes: code index of each candidate.
        quotas: samples to release per code.
        threshold: H; weights are ``max(v − H, 0)``.
        mode: ``"sample"`` (weighted, without replacement) or ``"rank"`` (top weights).
        rng: randomness of the sampling and of ties.
    """
    if mode not in ("sample", "rank"):
        raise ValueError(f"mode must be 'sample' or 'rank', got {mode!r}")
    cand = np.asarray(cand_codes, dtype=np.int64)
    weights = np.maximum(np.asarray(votes, dtype=np.float64) - threshold, 0.0)
    out = SelectionResult()
    for j, quota in enumerate(quotas):
        idx = np.flatnonzero(cand == j)
        if quota <= 0 or idx.size == 0:
            continue
        w = weights[idx]
        out.positive_votes[j] = int((w > 0).sum())
        tie = rng.random(idx.size)
        if not (w > 0).any():
            out.zero_histogram_codes.append(j)
            order = np.argsort(tie)
        elif mode == "rank":
            order = np.lexsort((tie, -w))
        else:
            with np.errstate(divide="ignore"):
                keys = np.where(w > 0, np.log(np.maximum(tie, 1e-300)) / w, -np.inf)
            order = np.lexsort((tie, -keys))
        out.chosen.extend(int(i) for i in idx[order[:quota]])
    return out
