"""Noise mechanisms: Gaussian, Laplace, vMF (Polar), d_χ (multivariate Laplace), exponential.

All work in float64 numpy, vectorised over rows, and take an explicit generator
(``numpy.random.Generator``, or a ``torch.Generator`` converted by :func:`as_numpy_rng`).
Each docstring says what ε protects and in which unit. ``MECHANISMS`` / :func:`get_mechanism`
give string lookup (``"polar"`` is an alias of ``"vmf"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.privacy import vmf as _vmf
from veil.privacy.vmf import vmf_mean_cosine

__all__ = [
    "MECHANISMS",
    "Mechanism",
    "as_numpy_rng",
    "exponential_mechanism",
    "exponential_mechanism_nearest",
    "gaussian",
    "get_mechanism",
    "laplace",
    "sample_dchi",
    "sample_vmf",
    "vmf_mean_cosine",
]

Array = npt.NDArray[np.float64]
RngLike = Any  # numpy.random.Generator | torch.Generator (torch is not imported here)
_BLOCK_ELEMS = 1 << 22  # rows × chunk elements held at once by the nearest-neighbour EM


def as_numpy_rng(rng: RngLike) -> np.random.Generator:
    """Return ``rng`` if it is a numpy Generator; seed a new one from a ``torch.Generator``.

    The torch generator is advanced (two 63-bit draws), so successive calls with the
    same torch generator give independent numpy streams, and a fixed torch seed
    reproduces them.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if type(rng).__module__.startswith("torch") and hasattr(rng, "manual_seed"):
        import torch

        words = torch.randint(0, 2**63 - 1, (2,), generator=rng, dtype=torch.int64).tolist()
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))
    raise TypeError(
        f"rng must be a numpy.random.Generator or torch.Generator, got {type(rng).__name__}"
    )


def _positive(name: str, value: float | npt.ArrayLike, *, allow_zero: bool = False) -> Array:
    arr = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if bad.any():
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}")
    return arr


def _rows(x: npt.ArrayLike, name: str) -> tuple[Array, bool]:
    """(n, d) float64 copy-free view of ``x``; flag whether the input was one vector."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
        raise ValueError(f"{name} must be a (d,) or (n, d) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return (arr[None, :], True) if arr.ndim == 1 else (arr, False)


def _per_row(name: str, value: float | npt.ArrayLike, n: int, *, allow_zero: bool) -> Array:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    if np.isnan(arr).any() or ((arr < 0) if allow_zero else (arr <= 0)).any():
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}")
    return arr


def gaussian(values: npt.ArrayLike, sigma: float | npt.ArrayLike, rng: RngLike) -> Array:
    """Add i.i.d. N(0, σ²) noise to every entry of ``values``.

    Privacy: for a query with L2 sensitivity Δ₂ (in the units of ``values``), the release
    is (ε, δ)-DP for the (ε, δ) pairs of the Gaussian mechanism with noise multiplier
    σ/Δ₂; calibrate σ with :mod:`veil.privacy.accounting`.

    Args:
        values: array of any shape.
        sigma: noise standard deviation > 0 (scalar or broadcastable to ``values``).
        rng: numpy Generator or torch.Generator.
    """
    sig = _positive("sigma", sigma)
    vals = np.asarray(values, dtype=np.float64)
    return vals + sig * as_numpy_rng(rng).standard_normal(vals.shape)


def laplace(values: npt.ArrayLike, scale: float | npt.ArrayLike, rng: RngLike) -> Array:
    """Add i.i.d. Laplace(0, b) noise to every entry of ``values``.

    Privacy: with ``b = Δ₁/ε`` for L1 sensitivity Δ₁ (units of ``values``) the release is
    pure ε-DP; equivalently ε-metric-DP per unit of L1 distance for ``b = 1/ε``.

    Args:
        values: array of any shape.
        scale: Laplace scale b > 0 (scalar or broadcastable to ``values``).
        rng: numpy Generator or torch.Generator.
    """
    b = _positive("scale", scale)
    vals = np.asarray(values, dtype=np.float64)
    return vals + b * as_numpy_rng(rng).laplace(0.0, 1.0, vals.shape)


def sample_vmf(mu: npt.ArrayLike, kappa: float | npt.ArrayLike, rng: RngLike) -> Array:
    """Polar mechanism: one von Mises–Fisher sample ``u ~ vMF(μ, κ)`` per row.

    Privacy: κ-metric-LDP w.r.t. the chordal distance ‖μ − μ'‖₂ between unit inputs
    (STAMP Thm 3): ``log p(u|μ)/p(u|μ') ≤ κ‖μ − μ'‖₂``, so κ = ε per unit of chordal
    distance on the sphere; pure 2κ-LDP overall. κ = 0 is uniform (no information);
    κ = ∞ releases μ unchanged (no privacy).

    Args:
        mu: (d,) or (n, d) mean directions, d ≥ 2. Rows are renormalised to unit length
            (a zero row raises ValueError).
        kappa: concentration κ ≥ 0, scalar or (n,) (one κ per row).
        rng: numpy Generator or torch.Generator.

    Returns:
        Unit rows with ``mu``'s shape. Exact sampler (Wood 1994), stable for d up to
        thousands and κ up to ≥ 1e5.
    """
    m, single = _rows(mu, "mu")
    if m.shape[1] < 2:
        raise ValueError("vMF needs dimension d >= 2")
    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    if (norms == 0).any():
        raise ValueError("mu has a zero row; it has no direction")
    if np.abs(norms - 1.0).max(initial=0.0) > 1e-12:
        m = m / norms[:, None]
    k = _per_row("kappa", kappa, m.shape[0], allow_zero=True)
    out = _vmf.sample_vmf(m, k, as_numpy_rng(rng))
    return out[0] if single else out


def sample_dchi(x: npt.ArrayLike, epsilon: float | npt.ArrayLike, rng: RngLike) -> Array:
    """Multivariate (d_χ) Laplace: release ``x + z`` with density of z ∝ exp(−ε‖z‖₂).

    Privacy: ε-metric-DP w.r.t. Euclidean distance (ε per unit of ‖x − x'‖₂ in the
    embedding space): ``p(y|x)/p(y|x') ≤ exp(ε‖x − x'‖₂)``. ‖z‖ ~ Gamma(d, 1/ε), direction
    uniform.

    Args:
        x: (d,) or (n, d) points.
        epsilon: ε > 0, scalar or (n,) (one per row).
        rng: numpy Generator or torch.Generator.
    """
    pts, single = _rows(x, "x")
    n, d = pts.shape
    eps = _per_row("epsilon", epsilon, n, allow_zero=False)
    gen = as_numpy_rng(rng)
    radius = gen.standard_gamma(float(d), size=n) / eps
    g = gen.standard_normal((n, d))
    g *= (radius / np.sqrt(np.einsum("ij,ij->i", g, g)))[:, None]
    out = pts + g
    return out[0] if single else out


def _sample_logits(logits: Array, gen: np.random.Generator) -> tuple[npt.NDArray[np.int64], Array]:
    """Per row: index j ~ softmax(logits) and the Gumbel-max value max_j(logits_j + G_j).

    Uses the Gumbel-max decomposition: the max is Gumbel(logsumexp) and the argmax is
    independent of it with law softmax, so one uniform and one Gumbel per row suffice
    (no n × V Gumbel draws). Every row needs at least one finite logit.
    """
    top = logits.max(axis=1)
    cum = np.exp(logits - top[:, None])
    np.cumsum(cum, axis=1, out=cum)
    total = cum[:, -1]
    u = gen.random(logits.shape[0]) * total
    idx = np.minimum((cum < u[:, None]).sum(axis=1), logits.shape[1] - 1)
    return idx.astype(np.int64), top + np.log(total) + gen.gumbel(size=logits.shape[0])


def exponential_mechanism(
    scores: npt.ArrayLike,
    epsilon: float | npt.ArrayLike,
    sensitivity: float,
    rng: RngLike,
) -> int | npt.NDArray[np.int64]:
    """Exponential mechanism: sample index j with P(j) ∝ exp(ε·score_j / (2Δ)).

    Privacy: pure ε-DP whenever every score changes by at most Δ (``sensitivity``,
    in score units) between neighbouring inputs. Exact sampler, numerically stable
    (max-shifted); scores of −inf are never chosen; ε = 0 is uniform over finite scores.

    Args:
        scores: (V,) or (n, V) utility scores (higher is better).
        epsilon: ε ≥ 0, scalar or (n,) for 2-D scores.
        sensitivity: Δ > 0.
        rng: numpy Generator or torch.Generator.

    Returns:
        An int for (V,) scores, else an (n,) int64 array of indices.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim not in (1, 2) or s.shape[-1] == 0:
        raise ValueError(f"scores must be (V,) or (n, V), got shape {s.shape}")
    if np.isnan(s).any() or (s == np.inf).any():
        raise ValueError("scores must not contain NaN or +inf")
    if not np.isfinite(s).any(axis=-1).all():
        raise ValueError("every row of scores needs at least one finite score")
    delta = float(_positive("sensitivity", sensitivity))
    s2 = s[None, :] if s.ndim == 1 else s
    eps = _per_row("epsilon", epsilon, s2.shape[0], allow_zero=True)
    with np.errstate(invalid="ignore"):
        logits = np.where(np.isfinite(s2), eps[:, None] * s2 / (2.0 * delta), -np.inf)
    idx, _ = _sample_logits(logits, as_numpy_rng(rng))
    return int(idx[0]) if s.ndim == 1 else idx


def _distances(q: Array, t: Array, t_sq: Array, metric: str) -> Array:
    """(rows, chunk) distances from query rows to table rows."""
    if metric == "euclidean":
        sq = np.einsum("ij,ij->i", q, q)[:, None] + t_sq[None, :] - 2.0 * (q @ t.T)
        return np.sqrt(np.maximum(sq, 0.0))
    return 1.0 - q @ t.T  # cosine: q and t are pre-normalised


def exponential_mechanism_nearest(
    queries: npt.ArrayLike,
    table: npt.ArrayLike,
    epsilon: float | npt.ArrayLike,
    rng: RngLike,
    *,
    sensitivity: float = 1.0,
    chunk_size: int = 4096,
    metric: str = "euclidean",
) -> npt.NDArray[np.int64]:
    """SanText-style exponential mechanism over a table of embeddings.

    For each query q samples table row j with P(j) ∝ exp(−ε·dist(q, φ_j) / (2Δ)),
    streaming the table in chunks with a running Gumbel-max (exact: the max of per-chunk
    Gumbel maxima has the law of the unchunked mechanism). Memory is rows × ``chunk_size``,
    never n × V × d or V × V.

    Privacy: ε-metric-LDP in the chosen distance: ``P(j|q)/P(j|q') ≤ exp(ε·dist(q, q')/Δ)``
    (the score −dist changes by at most dist(q, q') by the triangle inequality). With
    ``metric="euclidean"`` ε is per unit of Euclidean embedding distance; ``"cosine"``
    uses 1 − cos (not a metric; the guarantee then holds only for Δ bounding the score
    change, at most 2).

    Args:
        queries: (d,) or (n, d) query embeddings.
        table: (V, d) candidate embeddings (e.g. a vocabulary's embedding matrix).
        epsilon: ε ≥ 0, scalar or (n,).
        rng: numpy Generator or torch.Generator.
        sensitivity: Δ > 0 (distance units).
        chunk_size: table rows scored at once.
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        (n,) int64 table indices ((1,) for a single query).
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError("chunk_size must be a positive integer")
    q, _ = _rows(queries, "queries")
    tab = np.asarray(table, dtype=np.float64)
    if tab.ndim != 2 or tab.shape[0] == 0 or tab.shape[1] != q.shape[1]:
        raise ValueError(f"table must be (V, {q.shape[1]}) with V >= 1, got shape {tab.shape}")
    if not np.isfinite(tab).all():
        raise ValueError("table contains NaN or infinite values")
    delta = float(_positive("sensitivity", sensitivity))
    n = q.shape[0]
    coef = -_per_row("epsilon", epsilon, n, allow_zero=True) / (2.0 * delta)
    if metric == "cosine":
        qn, tn = np.linalg.norm(q, axis=1), np.linalg.norm(tab, axis=1)
        if (qn == 0).any() or (tn == 0).any():
            raise ValueError("cosine metric needs non-zero query and table rows")
        q, tab = q / qn[:, None], tab / tn[:, None]
    t_sq = np.einsum("ij,ij->i", tab, tab)
    gen = as_numpy_rng(rng)
    chunk = int(chunk_size)
    block = max(1, _BLOCK_ELEMS // chunk)
    result = np.empty(n, dtype=np.int64)
    for r0 in range(0, n, block):
        qb, cb = q[r0 : r0 + block], coef[r0 : r0 + block, None]
        best_val = np.full(qb.shape[0], -np.inf)
        best_idx = np.zeros(qb.shape[0], dtype=np.int64)
        for c0 in range(0, tab.shape[0], chunk):
            dist = _distances(qb, tab[c0 : c0 + chunk], t_sq[c0 : c0 + chunk], metric)
            j, v = _sample_logits(cb * dist, gen)  # chunk winner and its Gumbel-max value
            better = v > best_val
            best_val[better] = v[better]
            best_idx[better] = j[better] + c0
        result[r0 : r0 + block] = best_idx
    return result


@dataclass(frozen=True)
class Mechanism:
    """A registered mechanism: its callable plus what its privacy parameter means."""

    name: str
    fn: Callable[..., Any]
    noise_param: str
    guarantee: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


_VMF = Mechanism(
    "vmf", sample_vmf, "kappa", "κ-metric-LDP, chordal distance on the unit sphere (STAMP Thm 3)"
)
MECHANISMS: dict[str, Mechanism] = {
    "gaussian": Mechanism(
        "gaussian", gaussian, "sigma", "(ε, δ)-DP for L2 sensitivity Δ₂; σ via the accountant"
    ),
    "laplace": Mechanism("laplace", laplace, "scale", "pure ε-DP with scale = Δ₁/ε"),
    "vmf": _VMF,
    "polar": _VMF,
    "dchi": Mechanism("dchi", sample_dchi, "epsilon", "ε-metric-DP, Euclidean distance"),
    "exponential": Mechanism(
        "exponential", exponential_mechanism, "epsilon", "pure ε-DP for score sensitivity Δ"
    ),
    "exponential_nearest": Mechanism(
        "exponential_nearest",
        exponential_mechanism_nearest,
        "epsilon",
        "ε-metric-LDP, embedding distance / Δ (SanText)",
    ),
}


def get_mechanism(name: str) -> Mechanism:
    """Look up a mechanism by name (case-insensitive); ValueError lists the valid names."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in MECHANISMS:
        raise ValueError(f"unknown mechanism {name!r}; valid: {', '.join(sorted(MECHANISMS))}")
    return MECHANISMS[key]
