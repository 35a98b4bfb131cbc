"""Data and utility measures for ``veil privatize-eval`` (no privacy accounting here).

* Classification (AG News, Yelp sentences): a seeded half of the labelled texts trains a
  **non-private** classifier (sentence embeddings + logistic regression); the other half is
  privatized and classified. Accuracy on the original half is the non-private reference.
* QA context (SQuAD v2 dev subset, answerable questions): each question's context is
  privatized with the question as its task; survival of the gold answer and the sentence
  embedding cosine between the original and privatized context.

Files are read from the shared datasets folder (``--data-dir``); missing or malformed
files give one-line :class:`BadInput` errors that never quote the text.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.errors import BadInput
from veil.privacy.rng import make_rng

AGNEWS_TASK = ("Which category does this news article belong to: World, Sports, Business, "
               "or Sci/Tech?")
YELP_TASK = "Is this review positive or negative?"
AGNEWS_FILE, YELP_FILE, SQUAD_FILE = ("ag_news_test.csv", "yelp_labelled_sentences.tsv",
                                      "squad_v2_dev_subset.json")
FloatArray = npt.NDArray[np.float64]


@dataclass
class LabelledTexts:
    """A text-classification set: texts, integer labels (0-based), class names, task text."""

    name: str
    texts: list[str]
    labels: npt.NDArray[np.int64]
    classes: list[str]
    task: str


@dataclass
class QAItem:
    """One answerable question: its context, the question (the task) and gold answer spans
    (character ``(start, end)`` in the context; alternatives from several annotators)."""

    id: str
    context: str
    question: str
    answers: list[tuple[int, int]]


def default_data_dir() -> Path:
    """``../shared/datasets`` relative to the current directory."""
    return Path.cwd().parent / "shared" / "datasets"


def resolve_data_dir(data_dir: Path | None) -> Path:
    """The data folder to use (BadInput when it does not exist)."""
    folder = data_dir if data_dir is not None else default_data_dir()
    if not folder.is_dir():
        raise BadInput("data folder not found; give --data-dir (the folder holding "
                       f"{AGNEWS_FILE}, {YELP_FILE}, {SQUAD_FILE})", path=folder)
    return folder


def _need(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise BadInput("missing dataset file", path=path)
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput("not UTF-8 text", path=path) from None


def load_agnews(folder: Path) -> LabelledTexts:
    """AG News test CSV (no header: label 1..4, title, description); text = title + " " +
    description with AG's ``\\`` line breaks turned into spaces."""
    path = _need(folder, AGNEWS_FILE)
    texts, labels = [], []
    for k, row in enumerate(csv.reader(_read_text(path).splitlines()), 1):
        if not row:
            continue
        if len(row) != 3 or row[0].strip() not in ("1", "2", "3", "4"):
            raise BadInput("expected 3 fields: label (1-4), title, description", path=path,
                           row=k)
        texts.append(f"{row[1].strip()} {row[2].strip()}".replace("\\", " "))
        labels.append(int(row[0]) - 1)
    if not texts:
        raise BadInput("no rows", path=path)
    return LabelledTexts("agnews", texts, np.asarray(labels, np.int64),
                         ["World", "Sports", "Business", "Sci/Tech"], AGNEWS_TASK)


def load_yelp(folder: Path) -> LabelledTexts:
    """Yelp labelled sentences (no header: ``sentence<TAB>label``, label 0 negative, 1 positive)."""
    path = _need(folder, YELP_FILE)
    texts, labels = [], []
    for k, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("\t")
        if not sep or label.strip() not in ("0", "1") or not text.strip():
            raise BadInput("expected: sentence<TAB>label (0 or 1)", path=path, row=k)
        texts.append(text.strip())
        labels.append(int(label))
    if not texts:
        raise BadInput("no rows", path=path)
    return LabelledTexts("yelp", texts, np.asarray(labels, np.int64), ["negative", "positive"],
                         YELP_TASK)


def load_squad(folder: Path) -> list[QAItem]:
    """Answerable questions of the SQuAD v2 JSON (``is_impossible`` false, with answers)."""
    path = _need(folder, SQUAD_FILE)
    try:
        data = json.loads(_read_text(path))["data"]
    except (ValueError, KeyError, TypeError):
        raise BadInput("not SQuAD JSON (needs a top-level 'data' list)", path=path) from None
    items: list[QAItem] = []
    for art in data:
        for para in art.get("paragraphs", []):
            context = str(para.get("context", ""))
            for qa in para.get("qas", []):
                golds = [] if qa.get("is_impossible") else qa.get("answers", [])
                spans = sorted({(int(a["answer_start"]), int(a["answer_start"]) + len(a["text"]))
                                for a in golds})
                if not spans:
                    continue
                if any(not 0 <= s < e <= len(context) for s, e in spans):
                    raise BadInput("answer offsets outside the context", path=path)
                items.append(QAItem(str(qa.get("id", len(items))), context,
                                    str(qa["question"]), spans))
    if not items:
        raise BadInput("no answerable questions", path=path)
    return items


def half_split(n: int, seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Seeded split of ``range(n)`` into a training half and an evaluation half (each sorted;
    the evaluation half takes the extra item when ``n`` is odd)."""
    perm = make_rng(seed).permutation(n)
    half = n // 2
    return np.sort(perm[:half]).astype(np.int64), np.sort(perm[half:]).astype(np.int64)


def accuracy(pred: npt.ArrayLike, gold: npt.ArrayLike) -> float:
    """Share of predictions equal to the gold labels."""
    p, g = np.asarray(pred), np.asarray(gold)
    if p.shape != g.shape or p.size == 0:
        raise ValueError("predictions and labels must be non-empty and the same shape")
    return float(np.mean(p == g))


def row_cosines(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Cosine between matching rows of two matrices (0 where a row is zero)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    num = np.einsum("ij,ij->i", x, y)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def fit_classifier(features: npt.ArrayLike, labels: npt.ArrayLike, seed: int = 0) -> Any:
    """Multinomial logistic regression (scikit-learn, lbfgs) on fixed features; non-private."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0, max_iter=2000, random_state=seed).fit(
        np.asarray(features), np.asarray(labels))


class TextEmbedder:
    """Sentence embeddings (unit length) with a cache of the original texts' rows.

    Texts are keyed case-folded (the encoders are uncased), so a privatized text that equals
    an original is not encoded twice. Originals may also be persisted to ``cache_dir`` as
    ``.npy`` (embeddings of public benchmark files only, never text).

    Args:
        name: sentence encoder (``veil.models`` name or folder).
        cache_dir: folder for persisted embeddings, or None.
        encoder: a preloaded object with ``encode(texts, ...)`` (tests); default loads ``name``.
    """

    def __init__(self, name: str = "minilm", cache_dir: Path | None = None,
                 encoder: Any = None) -> None:
        self.name = name
        self.cache_dir = cache_dir
        self._encoder = encoder
        self._known: dict[str, FloatArray] = {}

    def _encode(self, texts: Sequence[str]) -> FloatArray:
        if self._encoder is None:
            from veil.models import load_sentence_encoder

            self._encoder = load_sentence_encoder(self.name)
        if not texts:
            return np.zeros((0, 1))
        out = self._encoder.encode(list(texts), batch_size=32, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float64)

    def originals(self, texts: Sequence[str]) -> FloatArray:
        """Embed (and remember) original texts; persisted when ``cache_dir`` is set."""
        key = hashlib.sha256("\x00".join([self.name, *texts]).encode("utf-8")).hexdigest()[:24]
        path = None if self.cache_dir is None else self.cache_dir / f"emb-{key}.npy"
        if path is not None and path.is_file():
            rows = np.load(path)
        else:
            rows = self._encode(texts)
            if path is not None:
                from veil.artifacts import atomic_output

                with atomic_output(path) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, rows)
        for t, r in zip(texts, rows, strict=True):
            self._known[t.lower()] = r
        return rows

    def __call__(self, texts: Sequence[str]) -> FloatArray:
        """Embed texts, reusing remembered originals; new texts are not remembered."""
        keys = [t.lower() for t in texts]
        first: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self._known:
                first.setdefault(k, t)  # encode the text itself ([MASK] is case-sensitive)
        fresh = dict(zip(first, self._encode(list(first.values())), strict=True))
        rows = [self._known[k] if k in self._known else fresh[k] for k in keys]
        return np.stack(rows) if rows else np.zeros((0, 1))
