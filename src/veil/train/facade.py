"""The train pipeline's public entry points: :func:`train`, :func:`evaluate`, :func:`predict`.

:func:`train` fine-tunes a classifier with DP-SGD (record-level (ε, δ)-DP of
the released weights: adding or removing one training record changes the
distribution of the weights by at most e^ε, up to δ) and writes the output
folder atomically: it is built in a hidden temporary sibling, the spend is
recorded in the budget ledger, and only then is it renamed into place.

Other tools (``veil sweep``, ``veil label``) build on these functions; their
signatures are kept stable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import BadInput
from veil.privacy.report import PrivacyReport
from veil.progress import info, is_quiet, set_quiet
from veil.train.config import TrainConfig
from veil.train.loop import FitResult

__all__ = ["EvalResult", "Predictions", "TextPredictions", "TrainConfig", "TrainResult",
           "evaluate", "predict", "predict_texts", "train"]

@dataclass
class EvalResult:
    """Metrics of a classifier on labelled records, with the per-record arrays behind them.

    ``y_true``, ``y_pred`` and ``scores`` are (n, L) arrays aligned with ``ids``
    (one-hot rows for multi-class), for paired comparisons between models.
    """

    metrics: dict[str, Any]
    labels: list[str]
    multi_label: bool
    ids: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    scores: np.ndarray
    n_cut: int = 0

    @property
    def weighted_f1(self) -> float:
        """Point estimate of the weighted F1."""
        return float(self.metrics["weighted_f1"]["value"])


@dataclass
class TrainResult:
    """What :func:`train` released and measured."""

    out: Path
    privacy: PrivacyReport
    fit: FitResult
    evaluation: EvalResult
    eval_split: str
    thresholds: dict[str, Any]
    max_length: int
    n_cut: int
    data: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def epsilon(self) -> float:
        """ε of the released weights per training record (inf: non-private)."""
        return self.privacy.epsilon

    @property
    def delta(self) -> float:
        """δ of the guarantee."""
        return self.privacy.delta

    @property
    def metrics(self) -> dict[str, Any]:
        """The content of metrics.json."""
        return self.evaluation.metrics

    @property
    def weighted_f1(self) -> float:
        """Weighted F1 on the evaluation split (test if any, else validation)."""
        return self.evaluation.weighted_f1


@dataclass
class Predictions:
    """Predicted labels and probabilities per record."""

    ids: list[str]
    labels: list[str]
    scores: np.ndarray
    predicted: np.ndarray
    n_cut: int = 0

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready record per input row: id, predicted labels, probability per label."""
        out = []
        for i, rid in enumerate(self.ids):
            out.append({"id": rid,
                        "labels": [lab for lab, p in zip(self.labels, self.predicted[i],
                                                         strict=True) if p],
                        "scores": {lab: round(float(s), 6)
                                   for lab, s in zip(self.labels, self.scores[i], strict=True)}})
        return out


@dataclass
class TextPredictions:
    """Probabilities and decisions of a saved model for a list of texts (rows aligned)."""

    labels: list[str]
    probabilities: np.ndarray
    predictions: np.ndarray
    multi_label: bool
    n_cut: int = 0


def train(config: TrainConfig, *,
          on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> TrainResult:
    """Fine-tune a classifier on ``config.data`` and write ``config.out``.

    Args:
        config: the run's options; ``config.epsilon`` is the record-level ε of the
            released weights (inf: non-private).
        on_epoch_end: called after each epoch's checkpoint with ``(epoch, curve point)``.

    Raises:
        BadInput: invalid options or data (nothing is written).
        BudgetRefused: the ledger's budget for this dataset would be exceeded
            (checked before training, and again when the spend is recorded).
    """
    from veil.artifacts import Timer
    from veil.models import resolve
    from veil.privacy.ledger import Ledger
    from veil.train.data import prepare_data

    was_quiet = is_quiet()
    set_quiet(was_quiet or config.quiet)
    try:
        timer = Timer()
        resolve(config.model)
        with timer("read"):
            data = prepare_data(config)
        if data.val is None and data.test is None:
            raise BadInput("no held-out records: give --val-frac > 0, --val, --test-frac or "
                           "--test")
        descriptions = _descriptions(config, data.space.names)  # a bad file fails here
        ledger = Ledger(config.ledger)
        ledger.check(data.fingerprint, config.epsilon)
        if config.adapter == "evidence":
            from veil.train.evidence_pipeline import train_evidence

            result: TrainResult = train_evidence(config, data, ledger, timer, on_epoch_end,
                                                 descriptions)
            return result
        return _train(config, data, ledger, timer, on_epoch_end, descriptions)
    finally:
        set_quiet(was_quiet)


def _train(config: TrainConfig, data: Any, ledger: Any, timer: Any,
           on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
           descriptions: dict[str, list[str]] | None) -> TrainResult:
    from veil.models import load_tokenizer
    from veil.train import evaluate as ev
    from veil.train.classifier import build_classifier
    from veil.train.data import choose_max_length
    from veil.train.features import attach_cached, encode, score, token_ids, uses_prefix
    from veil.train.loop import targets

    space = data.space
    with timer("model"):
        tokenizer = load_tokenizer(config.model)
        model = build_classifier(
            config.model, len(space.names), adapter=config.adapter,
            multi_label=space.multi_label, pooling=config.pooling, lora_r=config.lora_r,
            lora_alpha=config.alpha, lora_targets=config.lora_targets,
            lora_layers=config.lora_layers, lora_freeze_a=config.lora_freeze_a,
            seed=config.seed, head_init=config.head_init,
            head_init_scale=config.head_init_scale, label_names=space.names,
            descriptions=descriptions)
    from veil.train.classifier import core

    inner = core(model)
    model_max = int(min(tokenizer.model_max_length, inner.config.max_position_embeddings))
    chunk = config.long_docs == "chunk"
    with timer("tokenize"):
        ids = token_ids(tokenizer, data.train.texts)
        lengths = [len(x) + 2 for x in ids]
        max_length = config.max_length or choose_max_length(lengths, config.coverage, model_max)
        if max_length > model_max:
            info(f"--max-length {max_length} exceeds the model's {model_max}: using {model_max}")
            max_length = model_max
        enc_train = encode(tokenizer, ids, max_length, False)
        held = {name: encode(tokenizer, token_ids(tokenizer, part.texts), max_length, chunk)
                for name, part in (("validation", data.val), ("test", data.test))
                if part is not None}
    n_cut = enc_train.n_cut
    info(f"max_length {max_length} tokens: {n_cut} of {len(enc_train)} training documents "
         f"({100 * n_cut / len(enc_train):.1f}%) are longer"
         + (" (training uses their first window; prediction pools all windows)" if chunk
            else " and were cut"))
    if uses_prefix(model):
        with timer("encode"):
            key = (config.model, inner.start_layer, max_length)
            attach_cached(model, enc_train, key, True, "training split")
            for name, enc in held.items():
                attach_cached(model, enc, key, False, f"{name} split")
    examples = list(zip((enc_train.first(i) for i in range(len(enc_train))),
                        targets(data.train.y), strict=True))
    validate = None
    if data.val is not None:
        validate = ev.validator(held["validation"], data.val.y, space.multi_label,
                                config.chunk_pool)
    return fit_and_release(
        config, data, model, examples, validate=validate, ledger=ledger, timer=timer,
        on_epoch_end=on_epoch_end,
        probabilities=lambda split: score(model, held[split], space.multi_label,
                                          config.chunk_pool),
        held_n_cut=lambda split: held[split].n_cut, tokenizer=tokenizer,
        max_length=max_length, n_cut=n_cut)


def fit_and_release(config: TrainConfig, data: Any, model: Any, examples: list[Any], *,
                    validate: Any, ledger: Any, timer: Any,
                    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
                    probabilities: Callable[[str], np.ndarray],
                    held_n_cut: Callable[[str], int] | None = None, tokenizer: Any = None,
                    max_length: int, n_cut: int, evidence: dict[str, Any] | None = None
                    ) -> TrainResult:
    """The steps every adapter shares once its model and examples exist: DP-SGD (or plain)
    training with epoch checkpoints, thresholds and held-out metrics, the release (ledger
    spend recorded before the folder appears), then the checkpoints cleared."""
    from veil.train.checkpoint import Checkpointer
    from veil.train.loop import fit
    from veil.train.release import write_release

    checkpointer = Checkpointer(config.out, config.fingerprint(), data.fingerprint)
    with timer("train"):
        result = fit(model, examples, config, validate=validate, checkpointer=checkpointer,
                     on_epoch_end=on_epoch_end)
    with timer("evaluate"):
        rule, evaluation = held_out_evaluation(config, data, probabilities)
        split = evaluation.metrics["split"]
        if held_n_cut is not None:
            evaluation.n_cut = held_n_cut(split)
    out = write_release(config, model, tokenizer, data, result, evaluation, rule, ledger,
                        max_length=max_length, n_cut=n_cut, timer=timer, evidence=evidence)
    checkpointer.clear()
    info(f"weighted F1 ({split}) {evaluation.weighted_f1:.4f}; ε = {out.epsilon:.4g} "
         f"-> {config.out}")
    return TrainResult(config.out, out, result, evaluation, split, rule, max_length, n_cut,
                       data.summary(), dict(timer.timings))


def held_out_evaluation(config: TrainConfig, data: Any,
                        probabilities: Callable[[str], np.ndarray]
                        ) -> tuple[dict[str, Any], EvalResult]:
    """The decision rule (tuned on the validation split) and the metrics on the test split
    (or, without one, the validation split); ``probabilities(split)`` scores
    ``"validation"`` or ``"test"``."""
    from veil.privacy.rng import make_rng
    from veil.train import evaluate as ev
    from veil.train.metrics import classification_metrics

    space = data.space
    if data.val is not None:
        rule = ev.tune_thresholds(probabilities("validation"), space.onehot(data.val.y),
                                  space.names, config.thresholds, space.multi_label)
    else:
        rule = ev.tune_thresholds(np.zeros((0, len(space.names))), np.zeros((0, 0)),
                                  space.names, "fixed", space.multi_label)
    split = "test" if data.test is not None else "validation"
    part = data.test if data.test is not None else data.val
    probs = probabilities(split)
    y_true = space.onehot(part.y)
    y_pred = ev.decide(probs, rule, space.names)
    metrics = classification_metrics(y_true, y_pred, probs, space.names, make_rng(config.seed),
                                     multi_label=space.multi_label, n_boot=config.n_boot)
    metrics["split"] = split
    return rule, EvalResult(metrics, list(space.names), space.multi_label, list(part.ids),
                            y_true, y_pred, probs)


def _descriptions(config: TrainConfig, labels: Sequence[str]) -> dict[str, list[str]] | None:
    """The ``--label-descriptions`` file's texts (None: none given)."""
    if config.label_descriptions is None:
        return None
    from veil.train.teacher import load_descriptions

    return load_descriptions(config.label_descriptions, labels)


def _labelled(model_dir: str | Path, data: str | Path, text_col: str, label_col: str | None,
              label_sep: str | None, id_col: str | None) -> tuple[Any, Any]:
    from veil.io import read_corpus
    from veil.train.bundle import load_model

    loaded = load_model(model_dir)
    corpus = read_corpus(data, text_cols=text_col, label_col=label_col, label_sep=label_sep,
                         id_col=id_col, require_labels=label_col is not None
                         and not loaded.multi_label)
    return loaded, corpus


def predict(model_dir: str | Path, data: str | Path, *, text_col: str = "text",
            id_col: str | None = None) -> Predictions:
    """Predict labels for every record of ``data`` with a saved model (no budget is spent)."""
    loaded, corpus = _labelled(model_dir, data, text_col, None, None, id_col)
    probs, n_cut = loaded.scores(corpus.texts)
    return Predictions(list(corpus.ids), loaded.labels, probs, loaded.decide(probs), n_cut)


def predict_texts(model_dir: str | Path, texts: list[str]) -> TextPredictions:
    """Score in-memory texts with a saved model (e.g. as a teacher); no budget is spent.

    The texts are processed exactly as :func:`predict` processes a file's rows.
    """
    from veil.train.bundle import load_model

    loaded = load_model(model_dir)
    probs, n_cut = loaded.scores(list(texts))
    return TextPredictions(loaded.labels, probs, loaded.decide(probs), loaded.multi_label, n_cut)


def evaluate(model_dir: str | Path, data: str | Path, *, text_col: str = "text",
             label_col: str = "label", label_sep: str | None = None, id_col: str | None = None,
             n_boot: int = 1000, seed: int = 0) -> EvalResult:
    """Metrics (with 95% bootstrap CIs) of a saved model on labelled records.

    Labels outside the model's label set are ignored (multi-label) or their
    records left out (multi-class); both are counted in an info line.
    """
    from veil.privacy.rng import make_rng
    from veil.train.data import LabelSpace
    from veil.train.metrics import classification_metrics

    loaded, corpus = _labelled(model_dir, data, text_col, label_col, label_sep, id_col)
    space = LabelSpace(tuple(loaded.labels), loaded.multi_label)
    y = space.encode(corpus.labels)
    keep = np.arange(len(corpus.texts))
    if not space.multi_label:
        keep = np.flatnonzero(y >= 0)
        if len(keep) == 0:
            raise BadInput("no record carries one of the model's labels", path=data)
        if len(keep) < len(y):
            info(f"{len(y) - len(keep)} record(s) with labels outside the model's set left out")
    else:
        unknown = sum(lab not in space.names for row in corpus.labels for lab in row)
        if unknown:
            info(f"{unknown} label occurrence(s) outside the model's label set ignored")
    probs, n_cut = loaded.scores([corpus.texts[i] for i in keep])
    y_true = space.onehot(y[keep])
    y_pred = loaded.decide(probs)
    metrics = classification_metrics(y_true, y_pred, probs, loaded.labels, make_rng(seed),
                                     multi_label=space.multi_label, n_boot=n_boot)
    metrics["split"] = str(Path(data).name)
    return EvalResult(metrics, loaded.labels, space.multi_label,
                      [corpus.ids[i] for i in keep], y_true, y_pred, probs, n_cut)
