"""Non-private TF-IDF + logistic-regression baseline for the sweep's utility table.

The baseline the issue asks every transformer run to beat: word uni- and
bigram TF-IDF features, then

* multi-label: one logistic regression per label (one-vs-rest), each with its
  own decision threshold tuned on a validation part of the training split;
* single-label: one multinomial logistic regression, argmax decision.

``class_weight`` (``None`` or ``"balanced"``) and the inverse regularisation
``C`` are chosen by weighted F1 on that validation part; the chosen setting is
then refitted on the whole training split (keeping the tuned thresholds).

**No privacy**: this model is trained without any noise and must not be
released as private; it is a utility reference row (ε = ∞, non-DP).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veil.train.stats import f1_indicator

CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")
C_GRID: tuple[float, ...] = (4.0, 16.0, 64.0)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


@dataclass
class BaselineResult:
    """Predictions and settings of :func:`tfidf_baseline`.

    Attributes:
        labels: label names, the columns of ``y_pred`` and ``scores``.
        y_pred: 0/1 predictions on the test texts, ``(n_test, L)`` (one-hot if single-label).
        scores: predicted probabilities, ``(n_test, L)``.
        thresholds: per-label decision thresholds (multi-label; empty for single-label).
        class_weight: the chosen class weighting (``None`` or ``"balanced"``).
        C: the chosen inverse regularisation strength.
        multi_label: whether labels were treated as multi-label.
        val_weighted_f1: the validation weighted F1 of the chosen setting.
        metrics: weighted/micro/macro F1 on the test set when gold labels were given.
    """

    labels: list[str]
    y_pred: np.ndarray
    scores: np.ndarray
    thresholds: list[float]
    class_weight: str | None
    C: float
    multi_label: bool
    val_weighted_f1: float
    metrics: dict[str, float] = field(default_factory=dict)


def indicator(rows: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """A 0/1 ``(len(rows), len(labels))`` matrix; labels not in ``labels`` are ignored."""
    index = {lab: j for j, lab in enumerate(labels)}
    out = np.zeros((len(rows), len(labels)), dtype=np.int8)
    for i, row in enumerate(rows):
        for lab in row:
            j = index.get(lab)
            if j is not None:
                out[i, j] = 1
    return out


def f1_summary(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Weighted, micro and macro F1 (scikit-learn definitions, ``zero_division=0``)."""
    return {f"{avg}_f1": f1_indicator(y_true, y_pred, avg)  # type: ignore[arg-type]
            for avg in ("weighted", "micro", "macro")}


def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True,
                           token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")


def _fit_multilabel(x: Any, y: np.ndarray, class_weight: str | None, c: float,
                    seed: int) -> list[Any]:
    """One binary LR per label; a label constant in ``y`` gets its constant (an int)."""
    from sklearn.linear_model import LogisticRegression

    models: list[Any] = []
    for j in range(y.shape[1]):
        col = y[:, j]
        if col.min() == col.max():
            models.append(int(col[0]))
            continue
        lr = LogisticRegression(C=c, class_weight=class_weight, max_iter=2000,
                                solver="liblinear", random_state=seed)
        models.append(lr.fit(x, col))
    return models


def _proba_multilabel(models: list[Any], x: Any) -> np.ndarray:
    cols = [np.full(x.shape[0], float(m)) if isinstance(m, int) else m.predict_proba(x)[:, 1]
            for m in models]
    return np.column_stack(cols) if cols else np.zeros((x.shape[0], 0))


def _fit_single(x: Any, y: np.ndarray, class_weight: str | None, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=c, class_weight=class_weight, max_iter=2000)
    return lr.fit(x, y.argmax(1))


def _proba_single(model: Any, x: Any, n_labels: int) -> np.ndarray:
    out = np.zeros((x.shape[0], n_labels))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def tune_thresholds(y_val: np.ndarray, scores: np.ndarray) -> list[float]:
    """Per label, the grid threshold maximising its validation F1 (0.5 without positives)."""
    out: list[float] = []
    for j in range(y_val.shape[1]):
        if y_val[:, j].sum() == 0:
            out.append(0.5)
            continue
        best_t, best_f = 0.5, -1.0
        for t in THRESHOLD_GRID:
            f = f1_indicator(y_val[:, [j]], (scores[:, [j]] >= t).astype(int), "micro")
            if f > best_f:
                best_t, best_f = float(t), f
        out.append(best_t)
    return out


def _decide(scores: np.ndarray, multi_label: bool, thresholds: list[float]) -> np.ndarray:
    if multi_label:
        return (scores >= np.asarray(thresholds)[None, :]).astype(np.int8)
    out = np.zeros_like(scores, dtype=np.int8)
    out[np.arange(scores.shape[0]), scores.argmax(1)] = 1
    return out


def tfidf_baseline(
    train_texts: Sequence[str],
    train_y: np.ndarray,
    test_texts: Sequence[str],
    *,
    labels: Sequence[str],
    multi_label: bool,
    rng: np.random.Generator,
    val_frac: float = 0.2,
    test_y: np.ndarray | None = None,
) -> BaselineResult:
    """Fit the TF-IDF + logistic-regression baseline and predict the test texts.

    Args:
        train_texts: training documents (never logged).
        train_y: ``(n_train, L)`` 0/1 label matrix (one-hot for single-label data).
        test_texts: documents to predict.
        labels: the label names (columns of ``train_y``).
        multi_label: one-vs-rest with tuned thresholds (True) or multinomial argmax (False).
        rng: draws the validation part of the training split and the solvers' seeds.
        val_frac: fraction of the training split held out to tune class weight, C and thresholds.
        test_y: gold test labels; when given, ``metrics`` holds weighted/micro/macro F1.

    Returns:
        A :class:`BaselineResult`. Non-private: no ε applies to this model.

    Raises:
        ValueError: on mismatched sizes or fewer than 2 training examples.
    """
    y = (np.asarray(train_y) != 0).astype(np.int8)
    n = len(train_texts)
    if y.shape != (n, len(labels)):
        raise ValueError(f"train_y has shape {y.shape}, expected ({n}, {len(labels)})")
    if n < 2:
        raise ValueError("the baseline needs at least 2 training examples")
    if not 0.0 < val_frac < 1.0:
        raise ValueError(f"val_frac must be in (0, 1), got {val_frac}")
    perm = rng.permutation(n)
    n_val = min(n - 1, max(1, round(val_frac * n)))
    val_idx, fit_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    seed = int(rng.integers(0, 2**31 - 1))
    texts = list(train_texts)

    from threadpoolctl import threadpool_limits

    # One BLAS thread: these fits are small, and multi-threaded BLAS on a busy machine
    # spends most of its time spinning (10x slower measured on 2 shared cores).
    with threadpool_limits(limits=1):
        return _fit_and_predict(texts, y, fit_idx, val_idx, test_texts, labels, multi_label,
                                seed, test_y)


def _fit_and_predict(texts: list[str], y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray,
                     test_texts: Sequence[str], labels: Sequence[str], multi_label: bool,
                     seed: int, test_y: np.ndarray | None) -> BaselineResult:
    """Tune (class weight, C, thresholds) on the validation part, refit on all, predict."""
    vec = _vectorizer()
    x_fit = vec.fit_transform([texts[i] for i in fit_idx])
    x_val = vec.transform([texts[i] for i in val_idx])
    best: tuple[float, str | None, float, list[float]] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cw in CLASS_WEIGHTS:
            for c in C_GRID:
                if multi_label:
                    scores = _proba_multilabel(_fit_multilabel(x_fit, y[fit_idx], cw, c, seed),
                                               x_val)
                    thresholds = tune_thresholds(y[val_idx], scores)
                else:
                    scores = _proba_single(_fit_single(x_fit, y[fit_idx], cw, c), x_val, y.shape[1])
                    thresholds = []
                f = f1_indicator(y[val_idx], _decide(scores, multi_label, thresholds))
                if best is None or f > best[0]:
                    best = (f, cw, c, thresholds)
        assert best is not None
        val_f1, cw, c, thresholds = best
        vec = _vectorizer()
        x_all = vec.fit_transform(texts)
        x_test = vec.transform(list(test_texts))
        if multi_label:
            scores = _proba_multilabel(_fit_multilabel(x_all, y, cw, c, seed), x_test)
        else:
            scores = _proba_single(_fit_single(x_all, y, cw, c), x_test, y.shape[1])
    pred = _decide(scores, multi_label, thresholds)
    result = BaselineResult(labels=list(labels), y_pred=pred, scores=scores,
                            thresholds=thresholds, class_weight=cw, C=c,
                            multi_label=multi_label, val_weighted_f1=float(val_f1))
    if test_y is not None:
        result.metrics = f1_summary(np.asarray(test_y), pred)
    return result
