"""Teacher labels: a fixed model labels reports that a smaller private model then learns from.

As in the DP-LoRA paper's later versions, a larger model supplies the training
targets. Two kinds of teacher:

* ``zero-shot``: a sentence encoder embeds each document and one or more
  descriptions per label ("a report describing {label}" by default); a label's
  score is the cosine similarity between the document embedding and the (mean,
  normalised) description embedding. Single-label: the arg-max label.
  Multi-label: the labels scoring at least ``threshold``, or the ``top_k`` best.
  Documents longer than the encoder's window are split into token windows whose
  embeddings are averaged (never silently cut).
* a trained veil model folder (the output of ``veil train``), via the train
  pipeline's ``predict``; it applies its own decision thresholds.

Privacy: a *fixed* teacher applied to each report separately keeps the pair
(report, teacher label) one record, so a DP model trained on the labelled file
protects each report with its ε (record level) exactly as with gold labels. A
teacher trained or prompted with *other* private reports breaks that unless the
teacher itself is DP (its own ε then covers its own training records). No privacy
budget is spent by labelling: the output is the user's own data on their own disk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import BadInput

DEFAULT_TEMPLATES: tuple[str, ...] = ("a report describing {label}",
                                      "findings consistent with {label}")
"""Description templates used for labels without a user-given description."""


def parse_labels(spec: str | Sequence[str] | None) -> list[str]:
    """``"a,b,c"`` (or a list) -> distinct, stripped label names.

    Raises:
        BadInput: no label names, or a name given twice.
    """
    if spec is None:
        items: list[str] = []
    elif isinstance(spec, str):
        items = [p.strip() for p in spec.split(",")]
    else:
        items = [str(p).strip() for p in spec]
    items = [p for p in items if p]
    if not items:
        raise BadInput("--labels is empty: name the labels, e.g. --labels 'a,b,c'")
    if len(set(items)) != len(items):
        raise BadInput("--labels names a label more than once")
    return items


def load_descriptions(path: str | Path, labels: Sequence[str]) -> dict[str, list[str]]:
    """Read ``{label: "description" | ["description", ...]}`` from a JSON file.

    Labels missing from the file get :data:`DEFAULT_TEMPLATES`.

    Raises:
        BadInput: unreadable or malformed file, or a key that is not one of ``labels``.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"cannot read label descriptions ({type(err).__name__})",
                       path=path) from None
    if not isinstance(raw, dict):
        raise BadInput("label descriptions must be a JSON object {label: text or [texts]}",
                       path=path)
    unknown = sorted(set(raw) - set(labels))
    if unknown:
        raise BadInput("descriptions for labels that are not among the labels: "
                       + ", ".join(unknown), path=path)
    out = default_descriptions(labels)
    for label, value in raw.items():
        texts = [value] if isinstance(value, str) else value
        if (not isinstance(texts, list) or not texts
                or not all(isinstance(t, str) and t.strip() for t in texts)):
            raise BadInput("each description must be a non-empty string or list of strings",
                           path=path, column=label)
        out[label] = [t.strip() for t in texts]
    return out


def default_descriptions(labels: Sequence[str]) -> dict[str, list[str]]:
    """The default descriptions of each label (:data:`DEFAULT_TEMPLATES`)."""
    return {lab: [t.format(label=lab) for t in DEFAULT_TEMPLATES] for lab in labels}


WINDOW_MARGIN = 16
"""Tokens kept free in each encoder window: a window cut from the text at token offsets can
tokenize a few tokens longer on its own, and the encoder would silently cut the excess."""


def encoder_windows(encoder: Any, text: str) -> list[str]:
    """``text``, or token windows of it that each fit the sentence encoder (never cut)."""
    limit = int(getattr(encoder, "max_seq_length", 0) or 0) - 2 - WINDOW_MARGIN
    tokenizer = getattr(encoder, "tokenizer", None)
    if limit <= 0 or tokenizer is None:
        return [text]
    offsets = tokenizer(text, add_special_tokens=False,
                        return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= limit:
        return [text]
    return [text[offsets[s][0]:offsets[min(s + limit, len(offsets)) - 1][1]]
            for s in range(0, len(offsets), limit)]


def embed_texts(encoder: Any, texts: Sequence[str], batch_size: int,
                what: str | None = None) -> np.ndarray:
    """Unit-norm embeddings ``(n, d)`` (float64), in batches; a progress bar when ``what``."""
    from veil.progress import track

    def one(batch: Sequence[str]) -> np.ndarray:
        out = encoder.encode(list(batch), batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float64)

    if not texts:
        return np.zeros((0, int(encoder.get_embedding_dimension() or 0)))
    if what is None:
        return one(texts)
    starts = range(0, len(texts), batch_size)
    return np.concatenate([one(texts[s:s + batch_size])
                           for s in track(starts, what, total=len(starts))])


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.where(norm > 0, norm, 1.0))


class ZeroShotTeacher:
    """Cosine-similarity teacher over a sentence encoder (a fixed, public model).

    Args:
        labels: the label names (columns of the scores).
        descriptions: label -> description texts (default :func:`default_descriptions`).
        encoder: a ``SentenceTransformer`` (default: ``veil.models.load_sentence_encoder``
            of ``model``).
        model: registry name or local folder of the encoder when ``encoder`` is None.
        batch_size: documents embedded per batch.
    """

    def __init__(self, labels: Sequence[str],
                 descriptions: Mapping[str, Sequence[str]] | None = None, *, encoder: Any = None,
                 model: str = "minilm", batch_size: int = 32) -> None:
        if encoder is None:
            from veil.models import load_sentence_encoder

            encoder = load_sentence_encoder(model)
        self.labels = list(labels)
        self.encoder = encoder
        self.batch_size = batch_size
        self.n_windowed = 0
        descs = dict(descriptions) if descriptions is not None else default_descriptions(labels)
        rows = []
        for lab in self.labels:
            emb = self._embed(list(descs[lab]))
            rows.append(_normalise(emb.mean(0)))
        self.label_matrix = np.stack(rows)  # (L, d), unit rows

    def _embed(self, texts: list[str]) -> np.ndarray:
        return embed_texts(self.encoder, texts, self.batch_size)

    def _windows(self, text: str) -> list[str]:
        """The text, or token windows of it that each fit the encoder (counted)."""
        wins = encoder_windows(self.encoder, text)
        self.n_windowed += len(wins) > 1
        return wins

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each document with each label, ``(n, L)`` in [-1, 1]."""
        pieces: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            wins = self._windows(text)
            pieces.extend(wins)
            owner.extend([i] * len(wins))
        emb = embed_texts(self.encoder, pieces, self.batch_size, "embedding documents")
        doc = np.zeros((len(texts), self.label_matrix.shape[1]))
        np.add.at(doc, np.asarray(owner, dtype=int), emb)
        return np.asarray(_normalise(doc) @ self.label_matrix.T)


def decide(scores: np.ndarray, *, multi_label: bool, top_k: int | None = None,
           threshold: float | None = None) -> np.ndarray:
    """Turn ``(n, L)`` scores into a 0/1 label matrix.

    Single-label: the arg-max label. Multi-label: the labels with score ≥ ``threshold``,
    or the ``top_k`` highest; with both, the ``top_k`` highest among those ≥ ``threshold``.

    Raises:
        BadInput: multi-label without ``top_k`` or ``threshold``, or ``top_k`` < 1.
    """
    s = np.asarray(scores, dtype=float)
    out = np.zeros(s.shape, dtype=np.int8)
    if s.shape[0] == 0:
        return out
    if not multi_label:
        out[np.arange(s.shape[0]), s.argmax(1)] = 1
        return out
    if top_k is None and threshold is None:
        raise BadInput("multi-label teacher labels need --top-k or --threshold")
    allowed = np.ones(s.shape, dtype=bool) if threshold is None else s >= threshold
    if top_k is None:
        return allowed.astype(np.int8)
    if top_k < 1:
        raise BadInput(f"--top-k must be >= 1, got {top_k}")
    best = np.argsort(-s, axis=1, kind="stable")[:, :min(top_k, s.shape[1])]
    np.put_along_axis(out, best, 1, axis=1)
    return (out.astype(bool) & allowed).astype(np.int8)
