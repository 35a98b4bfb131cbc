"""Corpora of ``veil privatize-eval``: what each task set privatizes and how it is scored.

A :class:`Corpus` holds the documents, their task texts, PHI spans detected once (detection
does not depend on ε, so every run of the sweep reuses them) and a scorer applied to each
:class:`~veil.privatize.stamp.PrivatizeResult`. Scorers read the released texts and the
token traces only; nothing here logs or writes text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.privatize import eval_privacy as ep
from veil.privatize import eval_tasks as et
from veil.privatize.stamp import PrivatizeResult

I2B2_TASK = "What are the patient's medical problems, medications and follow-up plans?"


@dataclass
class Corpus:
    """Documents to privatize in one task set, with their scorer (never logged)."""

    name: str
    texts: list[str]
    tasks: list[str]
    spans: list[list[Any]]
    score: Callable[[PrivatizeResult], dict[str, float]]
    reference: dict[str, float] = field(default_factory=dict)  # non-private / detector rows


def _name(base: str, n: int, n_all: int) -> str:
    """Corpus name; ``base@n`` when ``--limit`` kept only ``n`` of ``n_all`` documents."""
    return base if n >= n_all else f"{base}@{n}"


def _detect(texts: Sequence[str]) -> list[list[Any]]:
    from veil.privatize import stamp

    unique = list(dict.fromkeys(texts))
    found = dict(zip(unique, stamp.default_detector()(unique), strict=True))
    return [list(found[t]) for t in texts]


def classification_corpus(data: et.LabelledTexts, embed: et.TextEmbedder, split_seed: int,
                          limit: int | None) -> Corpus:
    """Train on one seeded half (original text), privatize and classify the other half."""
    train, test_all = et.half_split(len(data.texts), split_seed)
    test = test_all[:limit] if limit else test_all
    clf = et.fit_classifier(embed.originals([data.texts[i] for i in train]), data.labels[train])
    texts = [data.texts[i] for i in test]
    gold = data.labels[test]
    reference = {"accuracy": et.accuracy(clf.predict(embed.originals(texts)), gold)}

    def score(result: PrivatizeResult) -> dict[str, float]:
        return {"accuracy": et.accuracy(clf.predict(embed(result.texts)), gold)}

    return Corpus(_name(data.name, len(texts), len(test_all)), texts, [data.task] * len(texts),
                  _detect(texts), score, reference)


def squad_corpus(items: list[et.QAItem], embed: et.TextEmbedder, limit: int | None) -> Corpus:
    """Each answerable question's context, privatized with the question as its task."""
    n_all, items = len(items), items[:limit] if limit else items
    contexts = [q.context for q in items]
    original = embed.originals(contexts)
    answers = [q.answers for q in items]

    def score(result: PrivatizeResult) -> dict[str, float]:
        kept, n = ep.answer_survival(result.traces, answers)
        cos = et.row_cosines(original, embed(result.texts))
        return {"answer_survival": kept / n if n else math.nan,
                "context_cosine": float(cos.mean())}

    return Corpus(_name("squad", len(items), n_all), contexts, [q.question for q in items],
                  _detect(contexts), score)


def phi_corpora(data_dir: Path | None, n_demo: int, limit: int | None) -> list[Corpus]:
    """The demo corpus (gold spans, ages < 90 excluded) and the i2b2 samples (when present)."""
    from veil.demo import generate_demo_corpus
    from veil.privatize.demo import DEMO_TASK
    from veil.privatize.phi_eval import demo_gold, read_i2b2

    n = min(n_demo, limit or n_demo)
    sets = [(_name("phi-demo", n, n_demo), demo_gold(generate_demo_corpus(n, seed=0)), DEMO_TASK)]
    i2b2 = None if data_dir is None else data_dir / "i2b2_format_samples"
    if i2b2 is not None and i2b2.is_dir():
        notes = read_i2b2(i2b2)
        sets.append((_name("phi-i2b2", len(notes[:limit] if limit else notes), len(notes)),
                     notes[:limit] if limit else notes, I2B2_TASK))
    out = []
    for name, docs, task in sets:
        gold = [[(s.start, s.end) for s in d.spans] for d in docs]
        texts = [d.text for d in docs]
        spans = _detect(texts)
        caught = sum(any(p.start < b and p.end > a for p in found) for g, found in
                     zip(gold, spans, strict=True) for a, b in g)

        def score(result: PrivatizeResult, gold: list[list[tuple[int, int]]] = gold
                  ) -> dict[str, float]:
            kept, n = ep.span_survival(result.traces, gold)
            return {"phi_survival": kept / n if n else math.nan}

        n_gold = sum(len(g) for g in gold)
        out.append(Corpus(name, texts, [task] * len(texts), spans, score,
                          {"gold_spans_detected": caught / n_gold if n_gold else math.nan}))
    return out


def corpora_for(task_set: str, data_dir: Path | None, embed: et.TextEmbedder, *,
                split_seed: int = 0, limit: int | None = None,
                demo_reports: int = 200) -> list[Corpus]:
    """Build the corpora of ``agnews``, ``yelp``, ``squad`` or ``phi`` (PHI spans detected
    once, with the project's detector)."""
    if task_set == "phi":
        return phi_corpora(data_dir, demo_reports, limit)
    folder = et.resolve_data_dir(data_dir)
    if task_set == "squad":
        return [squad_corpus(et.load_squad(folder), embed, limit)]
    data = et.load_agnews(folder) if task_set == "agnews" else et.load_yelp(folder)
    return [classification_corpus(data, embed, split_seed, limit)]


