"""The normalised polar mechanism for tokens (STAMP §4, Algorithm 1).

For a token w with embedding e: ``ē = e/‖e‖``, ``u′ ~ vMF(ē, κ)`` and the released token is
the cosine nearest neighbour of u′ (post-processing). Only the direction is used; the
norm ‖e‖ is never released.

Privacy (per token, unit: one token): vMF(μ, κ) satisfies
``log p(u|μ)/p(u|ν) = κ uᵀ(μ − ν) ≤ κ‖μ − ν‖₂`` (STAMP Thm 3), i.e. **κ-metric-LDP w.r.t. the
chordal distance between unit embeddings** (and the geodesic one, since chord ≤ arc);
as ‖μ − ν‖₂ ≤ 2 this is at most 2κ pure LDP. veil follows the paper: ``κ = ε``
(``kappa_scale="paper"``). The reference code uses ``κ = ε/π`` (``kappa_scale="code"``):
at the same nominal ε its noise is π times less concentrated and its guarantee is
(ε/π)-metric-LDP, stronger than the nominal ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from veil.privacy.mechanisms import sample_vmf
from veil.privatize.decode import get_decoder
from veil.privatize.vocab import Vocabulary

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_BATCH = 8192  # tokens sampled and decoded together (bounds the float64 noise buffer)


@dataclass(frozen=True)
class ReleaseOptions:
    """Decoding and calibration choices shared by the token mechanisms.

    Attributes:
        kappa_scale: polar only: ``paper`` (κ = ε) or ``code`` (κ = ε/π).
        decode_any: ignore the word-initial/continuation constraint.
        decode_metric: ``default`` (the mechanism's own), ``cosine`` or ``euclidean``.
        chunk_rows: query rows per decoding matrix product.
    """

    kappa_scale: Literal["paper", "code"] = "paper"
    decode_any: bool = False
    decode_metric: Literal["default", "cosine", "euclidean"] = "default"
    chunk_rows: int = 1024


def kappa_for(eps: FloatArray, scale: str) -> FloatArray:
    """Concentration κ for per-token ε: ε (paper) or ε/π (reference code)."""
    return eps if scale == "paper" else eps / math.pi


def polar_release(vocab: Vocabulary, ids: IntArray, kinds: npt.NDArray[np.int8],
                  eps: FloatArray, rng: np.random.Generator,
                  opts: ReleaseOptions = ReleaseOptions()) -> IntArray:
    """Release each token by the normalised polar mechanism and decode it.

    Args:
        vocab: the vocabulary (its unit table is the sphere the noise lives on).
        ids: input token ids (n,).
        kinds: piece kind each output must have (0 word-initial, 1 continuation).
        eps: per-token ε > 0, finite (κ = ε or ε/π): ε-metric-LDP per token, chordal distance.
        rng: noise generator.
        opts: calibration and decoding options.

    Returns:
        Released ids (n,).
    """
    metric = "cosine" if opts.decode_metric == "default" else opts.decode_metric
    dec = get_decoder(vocab, metric, decode_any=opts.decode_any, chunk_rows=opts.chunk_rows)
    kappa = kappa_for(np.asarray(eps, dtype=np.float64), opts.kappa_scale)
    out = np.empty(ids.shape[0], dtype=np.int64)
    for b0 in range(0, ids.shape[0], _BATCH):
        sl = slice(b0, b0 + _BATCH)
        mu = vocab.unit[ids[sl]].astype(np.float64)
        kap = kappa[sl].copy()
        zero = vocab.norms[ids[sl]] == 0
        if zero.any():  # no direction: release a uniform draw (independent of the input)
            mu[zero] = 0.0
            mu[zero, 0] = 1.0
            kap[zero] = 0.0
        u = sample_vmf(mu, kap, rng)
        out[sl] = dec.decode(u, kinds[sl])
    return out


def chordal_distance(vocab: Vocabulary, a: IntArray, b: IntArray) -> FloatArray:
    """‖ē(a) − ē(b)‖₂ between unit embeddings (the polar mechanism's metric), row-wise."""
    diff = vocab.unit[a].astype(np.float64) - vocab.unit[b]
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))
