"""Training data: label space, seeded train/validation/test split, token windows.

The unit of privacy of ``veil train`` is one row of DATA (one record, e.g. one
report). Every record of the training split is one training example: long
documents are cut into windows only at prediction time (``--long-docs chunk``),
so the per-record gradient bound of DP-SGD holds unchanged. Choices made here
from the data itself — which labels are frequent enough to keep, the
``max_length`` covering 99% of documents — are not covered by ε; pass
``--labels`` and ``--max-length`` to fix them in advance.

Nothing here imports torch; messages never quote text or labels' content
beyond label names given by the user's own label column.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import BadInput
from veil.io import Corpus, read_corpus
from veil.privacy.rng import make_rng
from veil.progress import info
from veil.train.config import TrainConfig


@dataclass(frozen=True)
class LabelSpace:
    """The classifier's outputs: label names and whether they are independent."""

    names: tuple[str, ...]
    multi_label: bool

    def encode(self, rows: list[list[str]]) -> np.ndarray:
        """Targets: a (n, L) 0/1 float32 matrix (multi-label) or (n,) class ids, -1 if unknown."""
        index = {name: i for i, name in enumerate(self.names)}
        if self.multi_label:
            y = np.zeros((len(rows), len(self.names)), dtype=np.float32)
            for r, row in enumerate(rows):
                for lab in row:
                    if lab in index:
                        y[r, index[lab]] = 1.0
            return y
        return np.array([index.get(row[0], -1) if len(row) == 1 else -1 for row in rows],
                        dtype=np.int64)

    def onehot(self, y: np.ndarray) -> np.ndarray:
        """Targets as a (n, L) 0/1 matrix for either task."""
        if self.multi_label:
            return y.astype(np.float32)
        out = np.zeros((len(y), len(self.names)), dtype=np.float32)
        out[np.arange(len(y)), y] = 1.0
        return out


@dataclass
class Part:
    """One split: record ids, texts and targets (never logged)."""

    ids: list[str]
    texts: list[str]
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class PreparedData:
    """The splits of one run and what was decided about them."""

    space: LabelSpace
    train: Part
    val: Part | None
    test: Part | None
    fingerprint: str
    dropped_labels: dict[str, int]
    label_counts: dict[str, int]
    n_records: int

    def summary(self) -> dict[str, Any]:
        """Sizes and label decisions for run.json (counts only, no text)."""
        return {
            "n_records_read": self.n_records, "n_train": len(self.train),
            "n_val": 0 if self.val is None else len(self.val),
            "n_test": 0 if self.test is None else len(self.test),
            "labels": list(self.space.names), "multi_label": self.space.multi_label,
            "dropped_labels": self.dropped_labels, "label_counts": self.label_counts,
        }


def select_labels(
    rows: list[list[str]],
    *,
    fixed: tuple[str, ...] | None = None,
    top: int | None = None,
    exclude: tuple[str, ...] = (),
    min_count: int = 2,
    strict: bool = False,
    path: Path | None = None,
) -> tuple[list[str], dict[str, int]]:
    """Choose the label set: fixed, or by frequency (top-k, excluding some, dropping rare ones).

    Returns:
        The kept labels (sorted by decreasing frequency, then name) and the
        dropped rare labels with their counts.

    Raises:
        BadInput: a rare label under ``strict``, or fewer than two labels left.
    """
    counts = Counter(lab for row in rows for lab in row)
    if fixed is not None:
        candidates = list(fixed)
    else:
        excluded = set(exclude)
        candidates = sorted((lab for lab in counts if lab not in excluded),
                            key=lambda lab: (-counts[lab], lab))
        if top is not None:
            candidates = candidates[:top]
    rare = {lab: counts.get(lab, 0) for lab in candidates if counts.get(lab, 0) < min_count}
    if rare and strict:
        raise BadInput(f"{len(rare)} label(s) have fewer than {min_count} examples "
                       f"(--strict): {', '.join(sorted(rare))}", path=path)
    if rare:
        info(f"warning: dropped {len(rare)} label(s) with fewer than {min_count} examples: "
             f"{', '.join(sorted(rare))}")
    kept = [lab for lab in candidates if lab not in rare]
    if len(kept) < 2:
        raise BadInput(f"fewer than two classes/labels to learn ({len(kept)} left after "
                       "selection)", path=path)
    return kept, rare


def split_indices(n: int, val_frac: float, test_frac: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded random partition of ``range(n)`` into train, validation and test indices.

    Sizes are ``round(val_frac n)`` and ``round(test_frac n)``; each part is sorted.
    Other tools (baselines, sweeps) call this to use exactly the same split.
    """
    order = make_rng(seed).permutation(n)
    n_test = round(test_frac * n)
    n_val = round(val_frac * n)
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return np.sort(train), np.sort(val), np.sort(test)


def _read(path: Path, config: TrainConfig) -> Corpus:
    return read_corpus(path, text_cols=config.text_col, label_col=config.label_col,
                       label_sep=config.label_sep, id_col=config.id_col,
                       require_labels=not config.multi_label)


def _part(corpus: Corpus, idx: np.ndarray, space: LabelSpace, what: str) -> Part:
    assert corpus.labels is not None
    rows = [corpus.labels[i] for i in idx]
    y = space.encode(rows)
    keep = np.arange(len(idx))
    if not space.multi_label:
        several = sum(len(r) > 1 for r in rows)
        if several:
            raise BadInput(f"{several} row(s) carry several labels in a multi-class task "
                           "(give --label-sep for multi-label data)", path=corpus.path)
        keep = np.flatnonzero(y >= 0)
        if len(keep) < len(idx):
            info(f"{what}: {len(idx) - len(keep)} record(s) with a label outside the label "
                 "set were left out")
    chosen = idx[keep]
    return Part([corpus.ids[i] for i in chosen], [corpus.texts[i] for i in chosen], y[keep])


def prepare_data(config: TrainConfig) -> PreparedData:
    """Read DATA (and ``--val`` / ``--test``), choose labels, split, check sizes.

    Raises:
        BadInput: unreadable data, no labels, fewer than two classes, a batch
            larger than the training split, δ ≥ 1/n.
    """
    corpus = _read(config.data, config)
    assert corpus.labels is not None
    names, dropped = select_labels(
        corpus.labels, fixed=config.labels, top=config.top_labels,
        exclude=config.exclude_labels, min_count=config.min_label_count, strict=config.strict,
        path=config.data)
    space = LabelSpace(tuple(names), config.multi_label)
    seed = config.seed if config.split_seed is None else config.split_seed
    val_frac = 0.0 if config.val is not None else config.val_frac
    test_frac = 0.0 if config.test is not None else config.test_frac
    tr, va, te = split_indices(len(corpus), val_frac, test_frac, seed)
    train = _part(corpus, tr, space, "training split")
    val = _part(corpus, va, space, "validation split") if len(va) else None
    test = _part(corpus, te, space, "test split") if len(te) else None
    if config.val is not None:
        other = _read(config.val, config)
        val = _part(other, np.arange(len(other)), space, "validation file")
    if config.test is not None:
        other = _read(config.test, config)
        test = _part(other, np.arange(len(other)), space, "test file")
    counts = Counter(lab for row in corpus.labels for lab in row)
    n = len(train)
    if n < 2:
        raise BadInput(f"only {n} training record(s) left", path=config.data)
    if config.batch_size > n:
        raise BadInput(f"--batch-size {config.batch_size} is larger than the {n} training "
                       "records", path=config.data)
    if config.delta is not None and config.delta >= 1.0 / n:
        raise BadInput(f"--delta {config.delta:g} must be below 1/n = {1.0 / n:.3g} "
                       f"(n = {n} training records)")
    y = space.onehot(train.y)
    absent = [lab for lab, c in zip(names, y.sum(0), strict=True) if c == 0]
    if absent:
        info(f"warning: {len(absent)} label(s) have no positive example in the training "
             f"split: {', '.join(absent)}")
    return PreparedData(space=space, train=train, val=val, test=test,
                        fingerprint=corpus.fingerprint, dropped_labels=dropped,
                        label_counts={lab: int(counts.get(lab, 0)) for lab in names},
                        n_records=len(corpus))


def choose_max_length(lengths: list[int] | np.ndarray, coverage: float, model_max: int) -> int:
    """The smallest window (a multiple of 8) holding ``coverage`` of the documents, ≤ model max.

    ``lengths`` count tokens including the two special tokens.
    """
    need = int(np.ceil(np.quantile(np.asarray(lengths), coverage, method="higher")))
    return int(min(model_max, max(16, -(-need // 8) * 8)))


def make_windows(ids: list[int], max_length: int, cls_id: int, sep_id: int,
                 chunk: bool) -> list[list[int]]:
    """``[CLS] tokens [SEP]`` windows of at most ``max_length`` tokens.

    Without ``chunk`` only the first window is returned (the rest is cut). With
    it, windows overlap by a quarter of their length and cover every token.
    """
    body = max_length - 2
    if len(ids) <= body or not chunk:
        return [[cls_id, *ids[:body], sep_id]]
    stride = body - body // 4
    out = []
    for start in range(0, len(ids), stride):
        out.append([cls_id, *ids[start:start + body], sep_id])
        if start + body >= len(ids):
            break
    return out
