"""Privacy figures of a STAMP release, measured on the output (veil's own; the paper has none).

* :func:`tokens_unchanged`: share of private tokens (G1..G4) released as themselves. An
  adversary who guesses "the input is the output token" (the maximum-likelihood guess under
  cosine decoding, STAMP App. B.4) is right exactly this often: Feyisetan et al.'s N_w,
  averaged over the corpus. ε = ∞ tokens count as unchanged, masked (ε = 0) ones as changed.
* :func:`span_survival` / :func:`answer_survival`: a character span survives when every
  token overlapping it is released as itself (kept verbatim or decoded to the same id). The
  check is on token ids, so it ignores case (minilm is uncased) and is exactly 1 when every
  group has ε = ∞ and 0 when every group is masked.
* :func:`empirical_ldp_check`: estimate ``P(out = j | a)`` for a few inputs from samples and
  test the per-token metric-LDP bound ``P(j | a) ≤ exp(ε d(a, b)) P(j | b)`` with
  Clopper–Pearson bounds (Bonferroni over all cells, so a violation flagged at family level
  α is real with probability ≥ 1 − α). :func:`mechanism_ldp_check` runs it for a registered
  token mechanism on a small vocabulary; ``eps_scale > 1`` under-noises it (a negative
  control the check must flag).

Units: ε is the per-token metric-LDP parameter of the mechanism's own distance (polar:
chordal distance of unit embeddings; laplace: L1 distance / L1 diameter; dchi and
exponential: Euclidean distance of raw embeddings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veil.privatize.baselines import get_token_mechanism
from veil.privatize.polar import ReleaseOptions
from veil.privatize.stats import TokenTrace
from veil.privatize.vocab import INITIAL, Vocabulary

IntArray = npt.NDArray[np.int64]
Span = tuple[int, int]


def tokens_unchanged(traces: Sequence[TokenTrace]) -> tuple[int, int]:
    """``(unchanged, private)``: private tokens (G1..G4) released as themselves, and all of them.

    Kept-mask and layout tokens are not private and are not counted.
    """
    same = total = 0
    for tr in traces:
        private = tr.groups < 4
        total += int(private.sum())
        same += int((private & (tr.out_ids == tr.ids)).sum())
    return same, total


def span_survived(trace: TokenTrace, start: int, end: int) -> bool | None:
    """Whether every token overlapping ``[start, end)`` is released as itself; ``None`` when
    no token overlaps the span (it is then left out of the rates)."""
    if trace.offsets.shape[0] == 0 or end <= start:
        return None
    hit = (trace.offsets[:, 0] < end) & (trace.offsets[:, 1] > start)
    if not hit.any():
        return None
    return bool(np.all(trace.out_ids[hit] == trace.ids[hit]))


def span_survival(traces: Sequence[TokenTrace],
                  spans: Sequence[Sequence[Span]]) -> tuple[int, int]:
    """``(survived, counted)`` over gold spans (one list of ``(start, end)`` per document)."""
    if len(traces) != len(spans):
        raise ValueError(f"{len(traces)} traces but {len(spans)} span lists")
    kept = counted = 0
    for tr, doc_spans in zip(traces, spans, strict=True):
        for a, b in doc_spans:
            ok = span_survived(tr, a, b)
            if ok is not None:
                counted += 1
                kept += ok
    return kept, counted


def answer_survival(traces: Sequence[TokenTrace],
                    answers: Sequence[Sequence[Span]]) -> tuple[int, int]:
    """``(survived, counted)`` over questions: a question's answer survives when at least one
    of its gold answer spans (alternatives, as in SQuAD's max over golds) survives."""
    if len(traces) != len(answers):
        raise ValueError(f"{len(traces)} traces but {len(answers)} answer lists")
    kept = counted = 0
    for tr, alts in zip(traces, answers, strict=True):
        marks = [span_survived(tr, a, b) for a, b in alts]
        marks_known = [m for m in marks if m is not None]
        if marks_known:
            counted += 1
            kept += any(marks_known)
    return kept, counted


@dataclass(frozen=True)
class LdpCheck:
    """Outcome of an empirical metric-LDP check.

    Attributes:
        eps: the claimed per-token ε.
        eps_hat: largest lower-confidence ``log(P(j|a)/P(j|b)) / d(a, b)`` over inputs and
            outputs: an empirical lower bound on the ε the mechanism really has.
        max_excess: largest lower-confidence ``log(P(j|a)/P(j|b)) − ε d(a, b)``; > 0 means the
            bound is violated at the family-wise level ``alpha``.
        violated: ``max_excess > 0``.
        n_samples: samples per input.
        alpha: family-wise error level.
    """

    eps: float
    eps_hat: float
    max_excess: float
    violated: bool
    n_samples: int
    alpha: float


def empirical_ldp_check(sample: Callable[[int, int, np.random.Generator], IntArray],
                        distance: Callable[[int, int], float], eps: float,
                        inputs: Sequence[int], n_outputs: int, n_samples: int,
                        rng: np.random.Generator, alpha: float = 1e-3) -> LdpCheck:
    """Test ``P(out = j | a) ≤ exp(ε d(a, b)) P(out = j | b)`` for all input pairs and outputs.

    Args:
        sample: ``(input id, n, rng) -> n output ids`` (the mechanism under test).
        distance: the metric ``d(a, b)`` the guarantee is stated in.
        eps: the claimed ε (per token, in units of ``distance``).
        inputs: input ids to compare (all ordered pairs are tested).
        n_outputs: outputs are ids in ``[0, n_outputs)``.
        n_samples: samples per input.
        rng: noise generator.
        alpha: family-wise error level (Bonferroni over every cell and both bounds).

    Returns:
        An :class:`LdpCheck`.
    """
    from scipy.stats import beta

    counts = {a: np.bincount(sample(a, n_samples, rng), minlength=n_outputs)[:n_outputs]
              for a in inputs}
    cells = max(1, len(inputs) * (len(inputs) - 1) * n_outputs)
    level = alpha / (2 * cells)
    n = n_samples
    lower = {a: np.where(c > 0, beta.ppf(level, np.maximum(c, 1), n - c + 1), 0.0)
             for a, c in counts.items()}
    upper = {a: np.where(c < n, beta.ppf(1 - level, c + 1, np.maximum(n - c, 1)), 1.0)
             for a, c in counts.items()}
    eps_hat, excess = 0.0, -math.inf
    for a in inputs:
        for b in inputs:
            if a == b:
                continue
            ok = lower[a] > 0
            if not ok.any():
                continue
            log_ratio = float(np.max(np.log(lower[a][ok] / upper[b][ok])))
            d = float(distance(a, b))
            excess = max(excess, log_ratio - eps * d)
            if d > 0:
                eps_hat = max(eps_hat, log_ratio / d)
    return LdpCheck(eps, eps_hat, excess, excess > 0, n_samples, alpha)


def toy_vocabulary(size: int = 20, dim: int = 8, seed: int = 11) -> Vocabulary:
    """A small vocabulary of random unit vectors (all word-initial), for the LDP check."""
    gen = np.random.default_rng(seed)
    table = gen.standard_normal((size, dim))
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return Vocabulary("toy", table.astype(np.float32), np.full(size, INITIAL, np.int8),
                      [f"t{i}" for i in range(size)])


def mechanism_ldp_check(mechanism: str, vocab: Vocabulary, eps: float, inputs: Sequence[int],
                        n_samples: int, rng: np.random.Generator, *, eps_scale: float = 1.0,
                        alpha: float = 1e-3) -> LdpCheck:
    """Empirical check of a registered token mechanism's per-token ε on ``vocab``.

    Args:
        mechanism: ``polar``, ``laplace``, ``dchi`` or ``exponential``.
        vocab: a small vocabulary (every id an output candidate).
        eps: the claimed ε, in the mechanism's own distance.
        inputs: input ids compared pairwise.
        n_samples: samples per input.
        rng: noise generator.
        eps_scale: the mechanism actually runs at ``eps_scale × eps`` (> 1: under-noised,
            a negative control that should be flagged).
        alpha: family-wise error level.
    """
    mech = get_token_mechanism(mechanism)
    opts = ReleaseOptions()

    def sample(a: int, n: int, gen: np.random.Generator) -> IntArray:
        ids = np.full(n, a, np.int64)
        return mech.release(vocab, ids, np.zeros(n, np.int8), np.full(n, eps * eps_scale),
                            gen, opts)

    def distance(a: int, b: int) -> float:
        return float(mech.distance(vocab, np.array([a]), np.array([b]))[0])

    return empirical_ldp_check(sample, distance, eps, inputs, vocab.size, n_samples, rng, alpha)
