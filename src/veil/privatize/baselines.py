"""Token mechanisms by name: ``polar`` (STAMP) and the baselines ``laplace``, ``dchi``,
``exponential``, all used inside the same STAMP grouping and piece-kind constraint.

=============  ==============================================  ===========================
name           release                                          per-token guarantee (ε)
=============  ==============================================  ===========================
polar          u′ ~ vMF(ē, κ = ε), cosine NN                    ε-metric-LDP, chordal
                                                                distance of unit embeddings
laplace        e + Laplace(Δ₁/ε) per coordinate, NN (cosine     pure ε-LDP (Δ₁ = L1 diameter
               by default, as in the paper's Table 1)           of the embedding table)
dchi           e + z, p(z) ∝ exp(−ε‖z‖₂) (Feyisetan et al.      ε-metric-LDP, Euclidean
               2020), Euclidean NN                              distance of raw embeddings
exponential    P(w′|w) ∝ exp(−ε‖e(w) − e(w′)‖₂ / 2) (SanText),  ε-metric-LDP, Euclidean
               streamed over the table (never V × V)            distance of raw embeddings
=============  ==============================================  ===========================

The output is always restricted to pieces of the input's kind (word-initial or
continuation) unless ``decode_any``; every step after the noise is post-processing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veil.errors import BadInput
from veil.privacy.mechanisms import exponential_mechanism_nearest, laplace, sample_dchi
from veil.privatize.decode import get_decoder
from veil.privatize.polar import ReleaseOptions, chordal_distance, polar_release
from veil.privatize.vocab import CONTINUATION, INITIAL, Vocabulary

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_BATCH = 8192

ReleaseFn = Callable[[Vocabulary, IntArray, npt.NDArray[np.int8], FloatArray,
                      np.random.Generator, ReleaseOptions], IntArray]
DistanceFn = Callable[[Vocabulary, IntArray, IntArray], FloatArray]


def _noisy_decode(vocab: Vocabulary, ids: IntArray, kinds: npt.NDArray[np.int8],
                  opts: ReleaseOptions, default_metric: str,
                  noise: Callable[[FloatArray, slice], FloatArray]) -> IntArray:
    metric = default_metric if opts.decode_metric == "default" else opts.decode_metric
    dec = get_decoder(vocab, metric, decode_any=opts.decode_any,  # type: ignore[arg-type]
                      chunk_rows=opts.chunk_rows)
    out = np.empty(ids.shape[0], dtype=np.int64)
    for b0 in range(0, ids.shape[0], _BATCH):
        sl = slice(b0, b0 + _BATCH)
        out[sl] = dec.decode(noise(vocab.table[ids[sl]].astype(np.float64), sl), kinds[sl])
    return out


def laplace_release(vocab: Vocabulary, ids: IntArray, kinds: npt.NDArray[np.int8],
                    eps: FloatArray, rng: np.random.Generator,
                    opts: ReleaseOptions = ReleaseOptions()) -> IntArray:
    """STAMP's Laplace baseline: i.i.d. Laplace(Δ₁/ε) per coordinate of the raw embedding,
    then nearest neighbour. Pure ε-LDP per token (L1 sensitivity Δ₁ = L1 diameter)."""
    scale = vocab.l1_diameter / np.asarray(eps, dtype=np.float64)
    return _noisy_decode(vocab, ids, kinds, opts, "cosine",
                         lambda x, sl: laplace(x, scale[sl, None], rng))


def dchi_release(vocab: Vocabulary, ids: IntArray, kinds: npt.NDArray[np.int8],
                 eps: FloatArray, rng: np.random.Generator,
                 opts: ReleaseOptions = ReleaseOptions()) -> IntArray:
    """Multivariate d_χ Laplace in the raw embedding space, then Euclidean NN:
    ε-metric-LDP per token w.r.t. Euclidean embedding distance."""
    e = np.asarray(eps, dtype=np.float64)
    return _noisy_decode(vocab, ids, kinds, opts, "euclidean",
                         lambda x, sl: sample_dchi(x, e[sl], rng))


def exponential_release(vocab: Vocabulary, ids: IntArray, kinds: npt.NDArray[np.int8],
                        eps: FloatArray, rng: np.random.Generator,
                        opts: ReleaseOptions = ReleaseOptions()) -> IntArray:
    """SanText-style exponential mechanism over the allowed pieces:
    P(w′|w) ∝ exp(−ε‖e(w) − e(w′)‖₂/2), ε-metric-LDP per token (Euclidean distance)."""
    out = np.empty(ids.shape[0], dtype=np.int64)
    e = np.asarray(eps, dtype=np.float64)
    groups: list[tuple[int | None, npt.NDArray[np.bool_]]]
    if opts.decode_any:
        groups = [(None, np.ones(ids.shape[0], dtype=bool))]
    else:
        groups = [(INITIAL, kinds != CONTINUATION), (CONTINUATION, kinds == CONTINUATION)]
    for kind, rows in groups:
        if not rows.any():
            continue
        cand = vocab.candidates(kind)
        if cand.size == 0:
            cand = vocab.candidates(None)
        pick = exponential_mechanism_nearest(
            vocab.table[ids[rows]], vocab.table[cand], e[rows], rng, sensitivity=1.0,
            metric="euclidean")
        out[rows] = cand[pick]
    return out


def l1_over_diameter(vocab: Vocabulary, a: IntArray, b: IntArray) -> FloatArray:
    """‖e(a) − e(b)‖₁ / Δ₁ (the Laplace baseline's metric; at most 1 within the table)."""
    diff = np.abs(vocab.table[a].astype(np.float64) - vocab.table[b])
    return diff.sum(axis=1) / vocab.l1_diameter


def euclidean_distance(vocab: Vocabulary, a: IntArray, b: IntArray) -> FloatArray:
    """‖e(a) − e(b)‖₂ between raw embeddings, row-wise."""
    diff = vocab.table[a].astype(np.float64) - vocab.table[b]
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


@dataclass(frozen=True)
class TokenMechanism:
    """A registered token mechanism: release function, its metric and guarantee text."""

    name: str
    release: ReleaseFn
    distance: DistanceFn
    metric: str
    guarantee: str
    worst_case_factor: str  # pure-LDP bound per token in terms of ε


TOKEN_MECHANISMS: dict[str, TokenMechanism] = {
    "polar": TokenMechanism(
        "polar", polar_release, chordal_distance, "chordal distance between unit embeddings",
        "ε-metric-LDP per token (vMF, κ = ε; STAMP Thm 3)", "2ε (chordal distance ≤ 2)"),
    "laplace": TokenMechanism(
        "laplace", laplace_release, l1_over_diameter,
        "L1 distance between raw embeddings / L1 diameter Δ₁",
        "pure ε-LDP per token (Laplace scale Δ₁/ε per coordinate)", "ε"),
    "dchi": TokenMechanism(
        "dchi", dchi_release, euclidean_distance, "Euclidean distance between raw embeddings",
        "ε-metric-LDP per token (multivariate Laplace, d_χ)", "ε·D (D: table diameter)"),
    "exponential": TokenMechanism(
        "exponential", exponential_release, euclidean_distance,
        "Euclidean distance between raw embeddings",
        "ε-metric-LDP per token (exponential mechanism, P ∝ exp(−ε d / 2))",
        "ε·D (D: table diameter)"),
}


def get_token_mechanism(name: str) -> TokenMechanism:
    """Look up a token mechanism by name (BadInput, exit 2, for an unknown name)."""
    key = name.strip().lower()
    if key not in TOKEN_MECHANISMS:
        raise BadInput(f"unknown mechanism {name[:30]!r}; use one of "
                       f"{', '.join(TOKEN_MECHANISMS)}")
    return TOKEN_MECHANISMS[key]
