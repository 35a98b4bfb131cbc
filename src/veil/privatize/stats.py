"""Per-document and per-run figures of a STAMP release (ε̄, group counts, Σε, Σε·d).

Units: every ε here is a per-token metric-LDP parameter (unit: one token). ``eps_sum`` is
the coefficient of STAMP Thm 2 for the document (``Σ_t ε_t``; the document-level loss
between two same-pattern documents is at most ``Σ_t ε_t · d(w_t, w′_t)``), and ``eps_d_sum``
evaluates that loss with the released tokens as the alternative document
(``Σ_t ε_t · d(w_t, out_t)`` over perturbed tokens): how distinguishable the original is
from the text that was actually released.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.privatize.groups import GROUP_LABELS


def json_eps(x: float | None) -> float | str | None:
    """JSON-safe ε: ``inf`` becomes the string ``"inf"`` (JSON has no infinity)."""
    if x is None:
        return None
    if math.isinf(x):
        return "inf"
    return round(float(x), 6)


@dataclass
class TokenTrace:
    """What happened to each token of one document (kept in memory, never logged).

    Attributes:
        offsets: (n, 2) character offsets in the original text.
        ids: input token ids.
        out_ids: released ids (-1: masked; equal to ``ids`` where kept).
        groups: group codes (0..3 = G1..G4, 4 kept-mask, 5 layout).
        eps: per-token ε (nan for kept-mask/layout tokens).
        keep: tokens whose original characters were copied (ε = ∞, kept-mask, layout).
    """

    offsets: npt.NDArray[np.int64]
    ids: npt.NDArray[np.int64]
    out_ids: npt.NDArray[np.int64]
    groups: npt.NDArray[np.int8]
    eps: npt.NDArray[np.float64]
    keep: npt.NDArray[np.bool_]


@dataclass
class DocReport:
    """Privacy and change figures of one released document (no text)."""

    n_tokens: int = 0
    n_private: int = 0
    group_counts: dict[str, int] = field(default_factory=dict)
    eps_mean_finite: float | None = None
    eps_mean_all: float | None = None
    eps_sum: float = 0.0
    eps_max: float | None = None
    eps_d_sum: float = 0.0
    n_perturbed: int = 0
    n_changed: int = 0
    n_verbatim_inf: int = 0
    n_masked_zero: int = 0
    n_phi_spans: int = 0
    empty: bool = False
    uniform_eps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (infinite ε as ``"inf"``)."""
        d = asdict(self)
        for key in ("eps_mean_finite", "eps_mean_all", "eps_max", "uniform_eps"):
            d[key] = json_eps(d[key])
        d["eps_sum"] = json_eps(d["eps_sum"])
        d["eps_d_sum"] = json_eps(d["eps_d_sum"])
        return d


def doc_report(trace: TokenTrace, dist: npt.NDArray[np.float64], n_spans: int,
               empty: bool, uniform_eps: float | None) -> DocReport:
    """Figures of one document from its trace and the per-perturbed-token distances."""
    g = trace.groups.astype(np.int64)
    counts = np.bincount(g, minlength=len(GROUP_LABELS))
    private = g < 4
    eps = trace.eps[private]
    finite = eps[np.isfinite(eps)]
    perturbed = private & np.isfinite(trace.eps) & (trace.eps > 0)
    masked = private & (trace.eps == 0)
    changed = int((trace.out_ids[perturbed] != trace.ids[perturbed]).sum()) + int(masked.sum())
    return DocReport(
        n_tokens=int(g.size), n_private=int(private.sum()),
        group_counts={lab: int(c) for lab, c in zip(GROUP_LABELS, counts, strict=True)},
        eps_mean_finite=float(finite.mean()) if finite.size else None,
        eps_mean_all=float(eps.mean()) if eps.size else None,
        eps_sum=float(finite.sum()), eps_max=float(finite.max()) if finite.size else None,
        eps_d_sum=float((trace.eps[perturbed] * dist).sum()), n_perturbed=int(perturbed.sum()),
        n_changed=changed, n_verbatim_inf=int((private & np.isinf(trace.eps)).sum()),
        n_masked_zero=int(masked.sum()), n_phi_spans=n_spans, empty=empty,
        uniform_eps=uniform_eps)


def run_summary(reports: list[DocReport]) -> dict[str, Any]:
    """Corpus totals: tokens, group counts, ε̄ (token-weighted), max per-token ε, changes."""
    counts = {lab: sum(r.group_counts.get(lab, 0) for r in reports) for lab in GROUP_LABELS}
    n_priv = sum(r.n_private for r in reports)
    n_inf = sum(r.n_verbatim_inf for r in reports)
    n_fin = n_priv - n_inf
    eps_sum = sum(r.eps_sum for r in reports)
    maxes = [r.eps_max for r in reports if r.eps_max is not None]
    doc_sums = [r.eps_sum for r in reports]
    return {
        "documents": len(reports),
        "empty_documents": sum(r.empty for r in reports),
        "tokens": sum(r.n_tokens for r in reports),
        "private_tokens": n_priv,
        "group_counts": counts,
        "eps_mean_finite": json_eps(eps_sum / n_fin) if n_fin else None,
        "eps_mean_all": json_eps(math.inf if n_inf else eps_sum / n_priv) if n_priv else None,
        "eps_max_per_token": json_eps(max(maxes)) if maxes else None,
        "eps_sum_max_per_document": json_eps(max(doc_sums)) if doc_sums else None,
        "eps_sum_mean_per_document": json_eps(float(np.mean(doc_sums))) if doc_sums else None,
        "tokens_perturbed": sum(r.n_perturbed for r in reports),
        "tokens_changed": sum(r.n_changed for r in reports),
        "tokens_verbatim_eps_inf": n_inf,
        "tokens_masked_eps_0": sum(r.n_masked_zero for r in reports),
        "phi_spans_detected": sum(r.n_phi_spans for r in reports),
    }
