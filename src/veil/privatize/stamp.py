"""STAMP: task-aware per-token budgets + the normalised polar mechanism (the Python API).

``Privatizer(config).privatize(texts, tasks)`` detects PHI spans, tokenises every document
in full, gives each token a group (sensitive × task-important, :mod:`groups`) and that
group's ε, releases every token with ``0 < ε < ∞`` through the chosen token mechanism
(batched over the whole corpus), copies ε = ∞ tokens verbatim, masks ε = 0 tokens, and
renders the released pieces back into each document's layout.

Privacy (unit: one token): each perturbed token is released with ε-metric-LDP for its
group's ε (polar: chordal distance of unit embeddings; see :mod:`baselines` for the
others). For two documents with the same group pattern (and the same piece-kind pattern
unless ``decode_any``) the release is ``Σ_t ε_t d(w_t, w′_t)``-indistinguishable (STAMP
Thm 2). Group membership itself, the number of tokens and the text between tokens
(whitespace) are not protected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veil.artifacts import Timer
from veil.errors import BadInput
from veil.privacy.rng import make_rng
from veil.privatize import groups as grp
from veil.privatize.baselines import TokenMechanism, get_token_mechanism
from veil.privatize.config import PrivatizeConfig
from veil.privatize.importance import token_importance
from veil.privatize.polar import ReleaseOptions
from veil.privatize.stats import DocReport, TokenTrace, doc_report, run_summary
from veil.privatize.vocab import Vocabulary, load_vocabulary
from veil.progress import track

Detector = Callable[[list[str]], list[list[Any]]]
_DOC_BATCH = 256
_RELEASE_BATCH = 65_536


@dataclass
class PrivatizeResult:
    """Released texts plus per-document reports (no original text except in ``traces``).

    Attributes:
        texts: the privatized documents, in input order.
        reports: one :class:`DocReport` per document.
        traces: per-token details (original offsets, ids, groups, ε); used by ``--explain``.
        group_eps: the configured per-group ε (G1..G4).
        uniform_eps: the matched uniform ε (corpus scope) when ``uniform``.
        mechanism: the token mechanism's name.
        timings: seconds per stage (detect, tokenize, group, release, render).
    """

    texts: list[str]
    reports: list[DocReport]
    traces: list[TokenTrace]
    group_eps: tuple[float, float, float, float]
    uniform_eps: float | None
    mechanism: str
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Corpus-level figures (see :func:`veil.privatize.stats.run_summary`)."""
        return run_summary(self.reports)


@functools.lru_cache(maxsize=1)
def default_detector() -> Detector:
    """The project's PHI detector (Presidio + clinical recognizers) as ``texts -> spans``;
    built once per process."""
    from veil.privatize.sensitivity import PhiDetector

    return PhiDetector().load().detect  # type: ignore[no-any-return]


class Privatizer:
    """Task-aware text privatizer (STAMP).

    Args:
        config: the run's settings (budgets, τ, mechanism, embeddings, seed).
        detector: ``texts -> spans per text`` (PhiSpan-like: start, end, entity_type);
            default: :class:`veil.privatize.sensitivity.PhiDetector`.
        vocab: a preloaded :class:`Vocabulary` (default: ``config.embeddings``, cached).
    """

    def __init__(self, config: PrivatizeConfig | None = None, *, detector: Detector | None = None,
                 vocab: Vocabulary | None = None) -> None:
        self.config = config or PrivatizeConfig()
        self.mechanism: TokenMechanism = get_token_mechanism(self.config.mechanism)
        self._detector = detector
        self._vocab = vocab

    @property
    def vocab(self) -> Vocabulary:
        """The embedding vocabulary (loaded on first use)."""
        if self._vocab is None:
            self._vocab = load_vocabulary(self.config.embeddings)
        return self._vocab

    def load(self) -> Privatizer:
        """Load the vocabulary, the decoders and the default detector now (not timed later)."""
        from veil.privatize.decode import get_decoder

        vocab = self.vocab
        metric = "euclidean" if self.mechanism.name == "dchi" else "cosine"
        if self.config.decode_metric != "default":
            metric = self.config.decode_metric
        if self.mechanism.name != "exponential":
            get_decoder(vocab, metric, decode_any=self.config.decode_any,  # type: ignore[arg-type]
                        chunk_rows=self.config.chunk_rows)
        if self._detector is None:
            self._detector = default_detector()
        return self

    def _tasks(self, n: int, tasks: str | Sequence[str] | None) -> list[str]:
        if tasks is None:
            if self.config.task is None:
                raise BadInput("missing task: give --task TEXT or --query-col COLUMN")
            return [self.config.task] * n
        if isinstance(tasks, str):
            return [tasks] * n
        out = list(tasks)
        if len(out) != n:
            raise BadInput(f"got {len(out)} tasks for {n} documents")
        for k, t in enumerate(out):
            if not isinstance(t, str) or not t.strip():
                raise BadInput("empty task/query text", row=k + 1)
        return out

    def privatize(self, texts: Sequence[str], tasks: str | Sequence[str] | None = None, *,
                  spans: Sequence[Sequence[Any]] | None = None,
                  rng: np.random.Generator | None = None) -> PrivatizeResult:
        """Privatize documents.

        Args:
            texts: the documents (empty or blank ones are returned unchanged and reported).
            tasks: one task/query text for all documents, one per document, or None to use
                ``config.task``.
            spans: precomputed PHI spans per document (skips the detector).
            rng: noise generator (default: from ``config.seed`` / ``config.secure``).

        Returns:
            A :class:`PrivatizeResult`; each perturbed token satisfies ε-metric-LDP for its
            group's ε (unit: token).
        """
        cfg, vocab, timer = self.config, self.vocab, Timer()
        docs = list(texts)
        if any(not isinstance(t, str) for t in docs):
            raise BadInput("every document must be a string")
        task_list = self._tasks(len(docs), tasks)
        gen = rng if rng is not None else make_rng(cfg.seed, secure=cfg.secure)
        live = [k for k, t in enumerate(docs) if t.strip()]
        doc_spans: list[Sequence[Any]] = [[] for _ in docs]
        if spans is not None:
            if len(spans) != len(docs):
                raise BadInput(f"got {len(spans)} span lists for {len(docs)} documents")
            doc_spans = [list(s) for s in spans]
        traces: list[TokenTrace] = [_empty_trace() for _ in docs]
        for b0 in track(range(0, len(live), _DOC_BATCH), "grouping tokens",
                        total=-(-len(live) // _DOC_BATCH)):
            batch = live[b0:b0 + _DOC_BATCH]
            if spans is None:
                with timer("detect"):
                    found = (self._detector or self._default_detector())([docs[k] for k in batch])
                for k, s in zip(batch, found, strict=True):
                    doc_spans[k] = s
            with timer("tokenize"):
                encoded = vocab.encode([docs[k] for k in batch])
            with timer("group"):
                for k, enc in zip(batch, encoded, strict=True):
                    traces[k] = self._group(enc.ids, enc.offsets, doc_spans[k], task_list[k])
        uniform = self._match_uniform(traces, live) if cfg.uniform else None
        with timer("release"):
            self._release(traces, gen)
        with timer("render"):
            out_texts = [vocab.render(docs[k], tr.offsets, tr.out_ids, tr.keep)
                         if docs[k].strip() else docs[k] for k, tr in enumerate(traces)]
        reports = []
        for k, tr in enumerate(traces):
            pert = (tr.groups < 4) & np.isfinite(tr.eps) & (tr.eps > 0)
            dist = self.mechanism.distance(vocab, tr.ids[pert], tr.out_ids[pert])
            u = None if uniform is None else uniform.get(k)
            reports.append(doc_report(tr, dist, len(doc_spans[k]), not docs[k].strip(), u))
        return PrivatizeResult(out_texts, reports, traces, cfg.group_epsilons(),
                               None if uniform is None else uniform.get(-1),
                               self.mechanism.name, timer.timings)

    def _default_detector(self) -> Detector:
        self._detector = default_detector()
        return self._detector

    def _group(self, ids: np.ndarray, offsets: np.ndarray, spans: Sequence[Any],
               task: str) -> TokenTrace:
        vocab = self.vocab
        ids = np.where(ids < vocab.size, ids, 0).astype(np.int64)
        kinds = vocab.input_kinds(ids)
        links = grp.word_links(offsets, kinds)
        sens, kept, entity = grp.sensitivity(offsets, links, spans)
        assert vocab.layout_ids is not None
        layout = vocab.layout_ids[ids]
        scores = token_importance(vocab, ids, task)
        groups = grp.assign_groups(sens, entity, scores, self.config.tau, kept, layout)
        eps = grp.token_epsilons(groups, self.config.group_epsilons())
        keep = (groups >= grp.KEPT_MASK) | np.isinf(eps)
        return TokenTrace(offsets, ids, ids.copy(), groups, eps, keep)

    def _match_uniform(self, traces: list[TokenTrace], live: list[int]) -> dict[int, float]:
        """Give every private token one ε: the mean STAMP ε over finite-ε private tokens
        (of the corpus, or of each document), so STAMP and uniform have the same ε̄."""
        cfg = self.config

        def finite_eps(tr: TokenTrace) -> np.ndarray:
            e = tr.eps[tr.groups < 4]
            return e[np.isfinite(e)]

        all_eps = np.concatenate([finite_eps(traces[k]) for k in live] or [np.zeros(0)])
        configured = [e for e in cfg.group_epsilons() if np.isfinite(e)]
        corpus = float(all_eps.mean()) if all_eps.size else float(np.mean(configured))
        out = {-1: corpus}
        for k in live:
            tr = traces[k]
            own = finite_eps(tr)
            value = float(own.mean()) if cfg.uniform_scope == "document" and own.size else corpus
            private = tr.groups < 4
            tr.eps = np.where(private, value, tr.eps)
            tr.keep = ~private
            out[k] = value
        return out

    def _release(self, traces: list[TokenTrace], rng: np.random.Generator) -> None:
        cfg, vocab = self.config, self.vocab
        sel = [((tr.groups < 4) & np.isfinite(tr.eps) & (tr.eps > 0)) for tr in traces]
        ids = np.concatenate([tr.ids[s] for tr, s in zip(traces, sel, strict=True)] or
                             [np.zeros(0, np.int64)])
        eps = np.concatenate([tr.eps[s] for tr, s in zip(traces, sel, strict=True)] or
                             [np.zeros(0)])
        opts = ReleaseOptions(cfg.kappa_scale, cfg.decode_any, cfg.decode_metric, cfg.chunk_rows)
        kinds = vocab.input_kinds(ids)
        out = np.empty(ids.shape[0], dtype=np.int64)
        steps = range(0, ids.shape[0], _RELEASE_BATCH)
        for r0 in track(steps, "releasing tokens", total=len(steps)):
            sl = slice(r0, r0 + _RELEASE_BATCH)
            out[sl] = self.mechanism.release(vocab, ids[sl], kinds[sl], eps[sl], rng, opts)
        pos = 0
        for tr, s in zip(traces, sel, strict=True):
            n = int(s.sum())
            tr.out_ids[s] = out[pos:pos + n]
            pos += n
            tr.out_ids[(tr.groups < 4) & (tr.eps == 0)] = -1


def _empty_trace() -> TokenTrace:
    z = np.zeros(0, dtype=np.int64)
    return TokenTrace(np.zeros((0, 2), np.int64), z, z.copy(), np.zeros(0, np.int8),
                      np.zeros(0), np.zeros(0, bool))
