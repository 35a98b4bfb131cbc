"""How good is a synthetic corpus? Distribution alignment and downstream utility.

All measures work on sentence embeddings of the synthetic texts and of held-out
real texts (``minilm`` by default):

- **Fréchet distance** between Gaussians fitted to the two embedding sets
  (the FID formula; lower is closer);
- **k-NN precision / recall** (Kynkäänniemi et al. 2019): precision is the
  share of synthetic points inside the real data's k-NN balls (realism),
  recall the share of real points inside the synthetic k-NN balls (coverage);
- **MAUVE** (Pillutla et al. 2021, package ``mauve-text``): both sets quantized
  together by k-means into ``max(2, round(min(n_real, n_synth) / 10))`` buckets,
  then the area under the divergence frontier of the two histograms (0–1,
  higher is closer);
- **downstream accuracy / macro-F1**: a logistic regression on embeddings
  trained on the synthetic set (labels = control codes) and tested on real data.

Evaluation reads real held-out data and releases only aggregate figures; it
spends no privacy budget and makes no privacy claim.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``‖μx − μy‖² + Tr(Σx + Σy − 2 (Σx Σy)^½)`` between the rows of ``x`` and ``y``."""
    from scipy import linalg

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("need at least two points on each side")
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(cov_x @ cov_y)
    if not np.isfinite(covmean).all():  # near-singular product: regularise both sides
        eps = np.eye(cov_x.shape[0]) * 1e-6
        covmean = linalg.sqrtm((cov_x + eps) @ (cov_y + eps))
    covmean = np.real(covmean)
    value = float(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2.0 * covmean))
    return max(value, 0.0)


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    d = _sq_dist(points, points)
    np.fill_diagonal(d, np.inf)
    kk = min(k, points.shape[0] - 1)
    return np.sqrt(np.partition(d, kk - 1, axis=1)[:, kk - 1])


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def knn_precision_recall(real: np.ndarray, synth: np.ndarray, k: int = 3) -> tuple[float, float]:
    """``(precision, recall)`` of the synthetic set against the real one (k-NN manifolds)."""
    real, synth = np.asarray(real, dtype=np.float64), np.asarray(synth, dtype=np.float64)
    if real.shape[0] < 2 or synth.shape[0] < 2:
        raise ValueError("need at least two points on each side")
    r_real, r_synth = _radii(real, k), _radii(synth, k)
    d = np.sqrt(_sq_dist(synth, real))  # synth x real
    precision = float((d <= r_real[None, :]).any(axis=1).mean())
    d_real = d.T  # real x synth
    recall = float((d_real <= r_synth[None, :]).any(axis=1).mean())
    return precision, recall


MAUVE_MISSING = "MAUVE not computed: the mauve-text package (with faiss-cpu) is not installed"


def mauve_buckets(n_real: int, n_synth: int) -> int:
    """MAUVE's quantization size: a tenth of the smaller side, at least 2 (the package's 'auto')."""
    return max(2, round(min(n_real, n_synth) / 10))


@contextlib.contextmanager
def _without_faiss_size_warning() -> Iterator[None]:
    """Drop faiss's C-level "WARNING clustering N points to K centroids" lines from stderr.

    MAUVE's n/10 bucket rule always trips that warning; anything else printed is passed on.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines(True)
                    if not line.startswith("WARNING clustering")]
            if kept:
                sys.stderr.write("".join(kept))


def mauve_score(real_emb: np.ndarray, synth_emb: np.ndarray, *, seed: int = 0) -> float:
    """MAUVE (Pillutla et al. 2021) between real and synthetic embeddings; 1 = same histogram.

    The features are given directly, so no model is loaded. Raises ``ImportError`` when
    ``mauve-text`` (or ``faiss``) is missing.
    """
    import mauve

    real = np.asarray(real_emb, dtype=np.float64)
    synth = np.asarray(synth_emb, dtype=np.float64)
    if real.shape[0] < 2 or synth.shape[0] < 2:
        raise ValueError("need at least two points on each side")
    with _without_faiss_size_warning():
        out = mauve.compute_mauve(p_features=real, q_features=synth,
                                  num_buckets=mauve_buckets(real.shape[0], synth.shape[0]),
                                  device_id=-1, verbose=False, seed=seed)
    return float(out.mauve)


def downstream(train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray,
               test_y: Sequence[str], seed: int = 0) -> tuple[float, float]:
    """``(accuracy, macro F1)`` on real data of a classifier trained on synthetic data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    labels = sorted(set(train_y))
    if len(labels) == 1:
        pred = [labels[0]] * len(test_y)
    else:
        clf = LogisticRegression(max_iter=2000, random_state=seed)
        clf.fit(train_x, list(train_y))
        pred = list(clf.predict(test_x))
    return (float(accuracy_score(list(test_y), pred)),
            float(f1_score(list(test_y), pred, average="macro", zero_division=0)))


@dataclass(frozen=True)
class SynthEval:
    """The figures of one synthetic set against held-out real data."""

    n_synthetic: int
    n_real: int
    frechet: float
    precision: float
    recall: float
    accuracy: float
    macro_f1: float
    embedder: str
    mauve: float | None = None
    mauve_buckets: int | None = None
    mauve_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def evaluate_texts(synth_texts: Sequence[str], synth_labels: Sequence[str],
                   real_texts: Sequence[str], real_labels: Sequence[str], *,
                   embedder: str = "minilm", k: int = 3, seed: int = 0,
                   batch_size: int = 64) -> SynthEval:
    """Embed both sides once and compute every measure."""
    from veil.models import load_sentence_encoder
    from veil.synth.voting import embed

    encoder = load_sentence_encoder(embedder)
    s_emb = embed(encoder, list(synth_texts), batch_size)
    r_emb = embed(encoder, list(real_texts), batch_size)
    precision, recall = knn_precision_recall(r_emb, s_emb, k)
    acc, f1 = downstream(s_emb, synth_labels, r_emb, real_labels, seed)
    try:
        mauve_value: float | None = mauve_score(r_emb, s_emb, seed=seed)
        buckets: int | None = mauve_buckets(len(r_emb), len(s_emb))
        note = None
    except ImportError:
        mauve_value, buckets, note = None, None, MAUVE_MISSING
    return SynthEval(n_synthetic=len(synth_texts), n_real=len(real_texts),
                     frechet=frechet_distance(s_emb, r_emb), precision=precision,
                     recall=recall, accuracy=acc, macro_f1=f1, embedder=embedder,
                     mauve=mauve_value, mauve_buckets=buckets, mauve_note=note)


def evaluate_files(synth: str | Path, real: str | Path, *, text_col: str = "text",
                   label_col: str = "label", synth_label_col: str | None = None,
                   label_sep: str | None = None, embedder: str = "minilm",
                   k: int = 3, seed: int = 0) -> SynthEval:
    """:func:`evaluate_texts` on a synthetic file (``synthetic.jsonl``) and a real corpus file."""
    from veil.io import read_corpus
    from veil.synth.codes import normalise_value

    s = read_corpus(synth, text_cols="text", extra_cols=[synth_label_col or label_col])
    r = read_corpus(real, text_cols=text_col, extra_cols=[label_col])
    s_labels = [normalise_value(v) for v in s.extra[synth_label_col or label_col]]
    r_labels = [normalise_value(v, label_sep) for v in r.extra[label_col]]
    return evaluate_texts(s.texts, s_labels, r.texts, r_labels, embedder=embedder, k=k,
                          seed=seed)
