"""Label evidence: fixed, public features saying how a report speaks of each label.

``--adapter evidence`` trains, per label, a small linear model over features that
match the report against the label's *descriptions* (its name and the phrases of
``--label-descriptions``): few weights, each tied to a readable piece of evidence.
DP-SGD noise grows with the number of trained weights while the signal does not,
so on a few thousand records under a tight budget this model loses far less to
the noise than a transformer head or adapters do (docs/train.md, "Label evidence").

Features (one vector per document, built from that document alone):

* **terms** — the content words of each label's name and descriptions
  (scikit-learn's English stop words removed), cut to their first
  :data:`STEM_LENGTH` letters (truncation stemming: "calcified" and
  "calcification" are one term, as are "vertebrae" and "vertebral"); for every term,
  whether a sentence *affirms* it and whether a sentence *negates* it. A term is
  negated when a NegEx-style trigger comes before it ("no", "without", "negative
  for", ...) or after it ("resolved", "not seen", ...) in its sentence with no scope
  terminator ("but", "however", ...) in between; the triggers' own words are neither.
* **summary** — per label, whether the report holds evidence *for* it (one of its
  positive terms affirmed, or one of its negative terms negated) and evidence *against*
  it (the reverse). A term is *negative* for a label when its descriptions only negate
  it ("no pleural effusion" for "normal").
* **similarity** — per description ``d`` (the default templates when the label
  has none) with the public sentence encoder: the largest cosine between ``d``
  and a sentence of the report, the largest ``cos(s, d) − cos(s, not-d)`` over
  sentences (not-d: "no " + d, or d without its leading negation), and the cosine
  between ``d`` and the whole report (the mean of its window embeddings when it
  exceeds the encoder's window). Raw cosines are shifted by :data:`COSINE_OFFSET`.

Label ``l``'s model sees its own term and similarity features and its own two summary
features; a label with negative terms (whose descriptions negate other findings: "normal"
is the absence of the others) also sees every label's summary (:meth:`LabelEvidence.blocks`).
With ``--head-init labels`` its weights start at a public prior (:meth:`LabelEvidence.prior`):
:data:`PRIOR_WEIGHT` on "affirmed" of each positive term and "negated" of each negative
one, zero elsewhere — "a label is present when the report says what its descriptions
say" — so DP-SGD starts from a sensible rule instead of from nothing.

Privacy: every feature is a fixed function of one document, the label names, the
descriptions and a public encoder (up to floating-point rounding, ~1e-6, of batched
encoding). Nothing is estimated from the records (no
vocabulary, no scaling), so the features spend no budget and DP-SGD on the
per-label weights gives the record-level guarantee of the released model. The
descriptions are public knowledge written by the user; label names chosen with
``--top-labels`` are a statistic of the data, as the privacy card says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from veil.train.teacher import WINDOW_MARGIN, default_descriptions, embed_texts, encoder_windows

FORMAT = "veil-label-evidence/2"
"""Version of the feature map and its blocks; a model folder of another version is refused."""

NEGATION_TRIGGERS: tuple[str, ...] = (
    "no", "not", "without", "negative for", "free of", "absence of", "rule out",
    "resolution of", "clear of", "never",
)
"""Words that negate the terms *after* them in the same sentence (NegEx pre-negation)."""

POST_NEGATION_TRIGGERS: tuple[str, ...] = (
    "resolved", "absent", "ruled out", "not seen", "not identified", "not present",
    "not visualized", "not evident",
)
"""Words that negate the terms *before* them in the same sentence ("effusion has resolved")."""

SCOPE_TERMINATORS: tuple[str, ...] = ("but", "however", "although", "though", "except",
                                      "apart from", "aside from", "yet")
"""Words that end a negation's scope."""

STEM_LENGTH = 6
"""Terms are compared on their first six letters (chosen over the Snowball stemmer on
IU X-ray validation records: weighted F1 of the non-private model 0.903 vs 0.884)."""

PRIOR_WEIGHT = 1.0
"""Starting weight of a label's own affirmed terms under ``--head-init labels`` (with the
starting bias −2, two affirmed terms give probability 0.5)."""

COSINE_OFFSET = 0.3
"""Subtracted from raw cosine features so that they straddle zero (a fixed constant:
cosines between unrelated sentences of the registry's encoders lie around 0.1–0.3)."""

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
_WORD = re.compile(r"[a-z][a-z0-9]*")


def _phrase(words: Sequence[str]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b")


_TRIGGER = _phrase(NEGATION_TRIGGERS)
_POST_TRIGGER = _phrase(POST_NEGATION_TRIGGERS)
_TERMINATOR = _phrase(SCOPE_TERMINATORS)
_TRIGGER_WORDS = frozenset(w for t in (*NEGATION_TRIGGERS, *POST_NEGATION_TRIGGERS)
                           for w in t.split() if len(t.split()) == 1)


def sentences(text: str) -> list[str]:
    """The non-empty sentences of ``text`` (split after . ! ? ; : and at line breaks)."""
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def stem(word: str) -> str:
    """A word's term: its first :data:`STEM_LENGTH` letters."""
    return word[:STEM_LENGTH]


def label_polarity(labels: Sequence[str], descriptions: Mapping[str, Sequence[str]]
                   ) -> dict[str, dict[str, int]]:
    """Per label, its terms and their polarity in its name and descriptions.

    +1: the term is affirmed there ("enlarged heart"); −1: only negated ("no pleural
    effusion", a description of "normal"). Stop words and one-letter words are left out.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    stop = {stem(w) for w in ENGLISH_STOP_WORDS} | {stem(w) for w in _TRIGGER_WORDS}
    out: dict[str, dict[str, int]] = {}
    for label in labels:
        positive: set[str] = set()
        negative: set[str] = set()
        for text in [label, *descriptions.get(label, ())]:
            affirmed, negated = term_mentions(text)
            positive |= affirmed
            negative |= negated
        out[label] = {t: (1 if t in positive else -1) for t in sorted(positive | negative)
                      if len(t) > 1 and t not in stop}
    return out


def term_mentions(text: str) -> tuple[set[str], set[str]]:
    """The stems affirmed and the stems negated in ``text`` (sentence by sentence).

    A term is negated when a pre-negation trigger comes before it, or a post-negation
    trigger after it, within its sentence and with no scope terminator in between.
    The triggers' own words are neither.
    """
    affirmed: set[str] = set()
    negated: set[str] = set()
    for sentence in sentences(text.lower()):
        words = list(_WORD.finditer(sentence))
        negating = False
        pending: list[str] = []  # affirmed so far in the current scope (a post trigger flips)
        i = 0
        while i < len(words):
            start = words[i].start()
            post = _POST_TRIGGER.match(sentence, start)
            pre = None if post else _TRIGGER.match(sentence, start)
            end = None if post or pre else _TERMINATOR.match(sentence, start)
            hit = post or pre or end
            if hit is None:
                token = stem(words[i].group())
                if negating:
                    negated.add(token)
                else:
                    pending.append(token)
                i += 1
                continue
            (negated if post else affirmed).update(pending)
            pending = []
            negating = pre is not None
            i += len(hit.group().split())
        affirmed.update(pending)
    return affirmed, negated


def _negated_form(description: str) -> str:
    """The description said negatively: "no " + it, or it without its leading negation."""
    low = description.lower().lstrip()
    match = _TRIGGER.match(low)
    if match is not None and match.start() == 0:
        return low[match.end():].strip() or description
    return "no " + description


class LabelEvidence:
    """The feature map of ``--adapter evidence`` for one label set and its descriptions.

    Args:
        labels: label names, in output order.
        descriptions: label -> description texts (user-given; public knowledge).
            Labels without one use :func:`veil.train.teacher.default_descriptions`
            for the similarity features and only their name for the terms.
        encoder: a ``SentenceTransformer`` (public, frozen).
        batch_size: sentences embedded per batch.
    """

    def __init__(self, labels: Sequence[str], descriptions: Mapping[str, Sequence[str]] | None,
                 encoder: Any, batch_size: int = 64) -> None:
        self.labels = list(labels)
        defaults = default_descriptions(self.labels)
        # the user's own texts (template texts filled in by load_descriptions carry no terms)
        self.given = {lab: [d for d in texts if d not in defaults[lab]]
                      for lab, texts in (descriptions or {}).items() if lab in self.labels}
        self.given = {lab: texts for lab, texts in self.given.items() if texts}
        self.descriptions = {lab: self.given.get(lab) or defaults[lab] for lab in self.labels}
        self.encoder = encoder
        self.batch_size = batch_size
        self.polarity = label_polarity(self.labels, self.given)
        self.terms = {lab: list(p) for lab, p in self.polarity.items()}
        self.vocabulary = sorted({t for ts in self.terms.values() for t in ts})
        self._column = {t: i for i, t in enumerate(self.vocabulary)}
        texts = [(lab, d) for lab in self.labels for d in self.descriptions[lab]]
        self._owner = np.array([self.labels.index(lab) for lab, _ in texts])
        self._positive = self._embed([d for _, d in texts])
        self._negative = self._embed([_negated_form(d) for _, d in texts])
        self.n_windowed = 0

    # layout: [affirmed terms | negated terms | summary (2L) | similarity (3D)]
    @property
    def n_terms(self) -> int:
        """Number of distinct term stems over all labels."""
        return len(self.vocabulary)

    @property
    def n_descriptions(self) -> int:
        """Number of description texts over all labels."""
        return len(self._owner)

    @property
    def n_features(self) -> int:
        """Length of one document's feature vector."""
        return 2 * self.n_terms + 2 * len(self.labels) + 3 * self.n_descriptions

    def reads_other_labels(self, label: str) -> bool:
        """Whether ``label``'s descriptions negate some term ("normal": "no pleural
        effusion"): such a label is the absence of others, so its model sees every label's
        summary; any other label sees only its own."""
        return any(sign < 0 for sign in self.polarity[label].values())

    def blocks(self) -> list[list[int]]:
        """Per label, the feature columns its model sees: its own terms (affirmed and
        negated), its own summary (evidence for, against) or every label's when
        :meth:`reads_other_labels`, and its own descriptions' similarity features.

        Fewer weights mean less DP-SGD noise: with every label seeing the whole summary
        (28 columns each on IU X-ray, 774 weights in all instead of 436), 8-fold
        cross-validation on the training records gave weighted F1 0.791 instead of 0.841
        at ε = 1 and 0.876 instead of 0.884 without noise (docs/train.md).
        """
        v, n_lab, n_desc = self.n_terms, len(self.labels), self.n_descriptions
        s0 = 2 * v
        sim0 = 2 * v + 2 * n_lab
        out = []
        for li, lab in enumerate(self.labels):
            own = [self._column[t] for t in self.terms[lab]]
            summary = (list(range(s0, s0 + 2 * n_lab)) if self.reads_other_labels(lab)
                       else [s0 + li, s0 + n_lab + li])
            desc = [int(j) for j in np.flatnonzero(self._owner == li)]
            out.append(own + [v + j for j in own] + summary
                       + [sim0 + k * n_desc + j for k in range(3) for j in desc])
        return out

    def prior(self) -> list[list[float]]:
        """Per label, starting weights aligned with :meth:`blocks` (public: built from the
        descriptions only): :data:`PRIOR_WEIGHT` on "affirmed" of its positive terms and on
        "negated" of its negative ones (a "normal" described as "no pleural effusion");
        0 elsewhere."""
        v = self.n_terms
        out = []
        for lab, block in zip(self.labels, self.blocks(), strict=True):
            sign = self.polarity[lab]
            wanted = {self._column[t] if p > 0 else v + self._column[t] for t, p in sign.items()}
            out.append([PRIOR_WEIGHT if c in wanted else 0.0 for c in block])
        return out

    def _embed(self, texts: list[str], what: str | None = None) -> np.ndarray:
        return embed_texts(self.encoder, texts, self.batch_size, what).astype(np.float32)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, n_features)`` float32: each row a function of its own document only.

        ``n_windowed`` counts the documents with a sentence longer than the encoder's
        window (embedded as several windows, not cut).
        """
        n, v, n_lab = len(texts), self.n_terms, len(self.labels)
        x = np.zeros((n, self.n_features), dtype=np.float32)
        pieces: list[str] = []
        owner: list[int] = []
        whole: list[str] = []
        whole_owner: list[int] = []
        self.n_windowed = 0
        for i, text in enumerate(texts):
            affirmed, negated = term_mentions(text)
            for t in affirmed & self._column.keys():
                x[i, self._column[t]] = 1.0
            for t in negated & self._column.keys():
                x[i, v + self._column[t]] = 1.0
            for li, lab in enumerate(self.labels):
                sign = self.polarity[lab]
                x[i, 2 * v + li] = float(any(sign[t] > 0 for t in affirmed & sign.keys())
                                         or any(sign[t] < 0 for t in negated & sign.keys()))
                x[i, 2 * v + n_lab + li] = float(
                    any(sign[t] > 0 for t in negated & sign.keys())
                    or any(sign[t] < 0 for t in affirmed & sign.keys()))
            parts = sentences(text)
            wins = [w for s in parts for w in encoder_windows(self.encoder, s)]
            self.n_windowed += len(wins) > len(parts)
            wins = wins or [""]
            pieces.extend(wins)
            owner.extend([i] * len(wins))
            doc_wins = encoder_windows(self.encoder, text)
            whole.extend(doc_wins)
            whole_owner.extend([i] * len(doc_wins))
        emb = self._embed(pieces, "embedding sentences")
        who = np.asarray(owner, dtype=int)
        pos, neg = emb @ self._positive.T, emb @ self._negative.T
        best = np.full((n, self.n_descriptions), -np.inf, dtype=np.float32)
        contrast = np.full_like(best, -np.inf)
        np.maximum.at(best, who, pos)
        np.maximum.at(contrast, who, pos - neg)
        doc = np.zeros((n, emb.shape[1]), dtype=np.float32)
        np.add.at(doc, np.asarray(whole_owner, dtype=int), self._embed(whole, "embedding reports"))
        doc /= np.maximum(np.linalg.norm(doc, axis=1, keepdims=True), 1e-12)
        sim0 = 2 * v + 2 * n_lab
        d = self.n_descriptions
        x[:, sim0:sim0 + d] = best - COSINE_OFFSET
        x[:, sim0 + d:sim0 + 2 * d] = contrast
        x[:, sim0 + 2 * d:] = doc @ self._positive.T - COSINE_OFFSET
        return x

    def spec(self) -> dict[str, Any]:
        """What rebuilds this feature map (saved as ``evidence.json`` in the model folder)."""
        return {"format": FORMAT, "labels": self.labels, "descriptions": self.given,
                "terms": self.polarity, "negation_triggers": list(NEGATION_TRIGGERS),
                "post_negation_triggers": list(POST_NEGATION_TRIGGERS),
                "scope_terminators": list(SCOPE_TERMINATORS), "stem_length": STEM_LENGTH,
                "cosine_offset": COSINE_OFFSET, "window_margin": WINDOW_MARGIN,
                "n_features": self.n_features}
