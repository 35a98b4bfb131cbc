"""STAMP token groups: (sensitive?, task-important?) -> G1..G4, and the per-token ε.

* **sensitive**: the token overlaps a detected PHI span. Span consistency (STAMP §2): every
  piece of a detected entity, and every piece of a word that an entity touches, is
  sensitive, and all pieces of one entity share one group.
* **important**: ``cos(ē(w), q) ≥ τ`` (:mod:`veil.privatize.importance`); an entity is
  important only if *every* piece is (the conservative choice: a name never gets the
  larger G1 budget because one of its pieces resembles the task).
* Tokens fully inside an already-masked span (entity type ``MASK``, e.g. ``XXXX``) are kept
  as they are (group ``kept-mask``); whitespace-only tokens of byte-level vocabularies are
  layout (group ``layout``). Neither carries private content and neither spends budget.

The groups are a deterministic, public rule applied to the private text; they are not
randomised, so the per-token guarantee (ε of the token's group, metric LDP) compares only
documents with the same group pattern.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

G1, G2, G3, G4, KEPT_MASK, LAYOUT = 0, 1, 2, 3, 4, 5
GROUP_LABELS = ("G1", "G2", "G3", "G4", "kept-mask", "layout")
MASK_TYPE = "MASK"

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _span_fields(span: Any) -> tuple[int, int, str]:
    if isinstance(span, Mapping):
        etype = span.get("entity_type", span.get("type", ""))
        return int(span["start"]), int(span["end"]), str(etype)
    return int(span.start), int(span.end), str(getattr(span, "entity_type", ""))


def word_links(offsets: IntArray, kinds: npt.NDArray[np.int8]) -> BoolArray:
    """``link[t]``: token t continues the word of token t−1 (a continuation piece that starts
    where t−1 ends)."""
    n = offsets.shape[0]
    link = np.zeros(n, dtype=bool)
    if n > 1:
        link[1:] = (kinds[1:] == 1) & (offsets[1:, 0] == offsets[:-1, 1])
    return link


def sensitivity(offsets: IntArray, links: BoolArray,
                spans: Sequence[Any]) -> tuple[BoolArray, BoolArray, IntArray]:
    """Flag tokens from character spans.

    Args:
        offsets: (n, 2) token character offsets, in text order.
        links: :func:`word_links` of the tokens.
        spans: detected spans (``PhiSpan``-like objects or dicts with start, end and
            entity_type/type); type ``MASK`` marks already-masked text.

    Returns:
        ``(sensitive, kept_mask, entity)``: boolean flags and, for sensitive tokens, an
        entity number (tokens of one entity share it; -1 elsewhere).
    """
    n = offsets.shape[0]
    sens = np.zeros(n, dtype=bool)
    kept = np.zeros(n, dtype=bool)
    joined = np.zeros(n, dtype=bool)  # token t belongs to the same entity as t−1
    if n == 0:
        return sens, kept, np.zeros(0, dtype=np.int64)
    starts = offsets[:, 0]
    ends = np.maximum.accumulate(offsets[:, 1])
    for span in spans:
        a, b, etype = _span_fields(span)
        if b <= a:
            continue
        if etype.upper() == MASK_TYPE:
            lo = int(np.searchsorted(starts, a, "left"))
            hi = int(np.searchsorted(starts, b, "left"))
            inside = offsets[lo:hi, 1] <= b
            kept[lo:hi] |= inside
            continue
        lo = int(np.searchsorted(ends, a, "right"))
        hi = int(np.searchsorted(starts, b, "left"))
        if hi > lo:
            sens[lo:hi] = True
            joined[lo + 1:hi] = True
    word = np.cumsum(~links) - 1
    word_sens = np.bincount(word, weights=sens.astype(np.float64), minlength=int(word[-1]) + 1)
    sens = (word_sens[word] > 0) & ~kept
    joined |= links
    prev = np.concatenate([[False], sens[:-1]])
    joined &= sens & prev
    entity = np.where(sens, np.cumsum(sens & ~joined) - 1, -1).astype(np.int64)
    return sens, kept, entity


def assign_groups(sensitive: BoolArray, entity: IntArray, scores: npt.NDArray[np.floating[Any]],
                  tau: float, kept_mask: BoolArray | None = None,
                  layout: BoolArray | None = None) -> npt.NDArray[np.int8]:
    """Group of each token: G1 (0) .. G4 (3), ``KEPT_MASK`` (4) or ``LAYOUT`` (5).

    Args:
        sensitive: per-token sensitivity flags.
        entity: entity number of sensitive tokens (-1 elsewhere).
        scores: per-token importance ``cos(ē(w), q)``.
        tau: importance threshold; important iff score ≥ τ (for an entity: every piece).
        kept_mask: tokens inside already-masked spans.
        layout: whitespace-only tokens.
    """
    eff = np.asarray(scores, dtype=np.float64).copy()
    if sensitive.any():
        ents = entity[sensitive]
        ent_min = np.full(int(ents.max()) + 1, np.inf)
        np.minimum.at(ent_min, ents, eff[sensitive])
        eff[sensitive] = ent_min[ents]
    important = eff >= tau
    groups = np.where(sensitive, np.where(important, G1, G2),
                      np.where(important, G3, G4)).astype(np.int8)
    if layout is not None:
        groups[layout] = LAYOUT
    if kept_mask is not None:
        groups[kept_mask] = KEPT_MASK
    return groups


def token_epsilons(groups: npt.NDArray[np.int8],
                   group_eps: Sequence[float]) -> npt.NDArray[np.float64]:
    """Per-token ε from the group ε (G1..G4); ``nan`` for kept-mask and layout tokens,
    which are copied without spending budget."""
    table = np.array([*group_eps[:4], np.nan, np.nan], dtype=np.float64)
    return table[groups.astype(np.int64)]
