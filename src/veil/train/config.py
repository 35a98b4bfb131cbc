"""``TrainConfig``: every option of one ``veil train`` run, validated up front.

The privacy options mean: ``epsilon`` is the record-level (ε, δ)-DP guarantee of
the released classifier weights with respect to adding or removing one
*training* record (one row of DATA, e.g. one report), after all epochs;
``delta`` defaults to :func:`veil.privacy.accounting.default_delta` of the
number of training records, ``min(1e-5, 1/(10 n))``. ``epsilon = inf`` trains
without privacy (no clipping, no noise).

This module imports nothing heavy; validation raises :class:`veil.errors.BadInput`
(one line, exit code 2) before any data is read or any model is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from veil.errors import BadInput

Task = Literal["auto", "multi-label", "multi-class"]
Adapter = Literal["lora", "head", "full", "evidence"]
Thresholds = Literal["global", "per-label", "fixed"]
LongDocs = Literal["truncate", "chunk"]
ChunkPool = Literal["mean", "max"]
LrSchedule = Literal["constant", "cosine", "linear"]

DEFAULT_LR = {"lora": 1e-2, "head": 3e-2, "full": 5e-5, "evidence": 1e-1}
"""AdamW learning rates per adapter under DP-SGD when ``lr`` is not given.

DP needs larger steps than plain training: each step's update is a noisy average
over an expected ``batch_size`` records, and there are few steps. The values
are those of the IU X-ray benchmark (docs/train.md); ``full`` is untuned under DP.
"""
DEFAULT_HEAD_INIT_SCALE = 30.0
"""``--head-init labels`` scale s: initial logits spread by about ±2 over the usual spread of
document–description correlations (≈ 0.07); chosen on IU X-ray validation loss (10, 30, 100)."""

DEFAULT_LR_NONPRIVATE = {"lora": 1e-3, "head": 1e-2, "full": 5e-5, "evidence": 3e-2}
"""AdamW learning rates per adapter for ``epsilon = inf`` when ``lr`` is not given."""

LORA_OPTIONS = ("lora_r", "lora_alpha", "lora_targets", "lora_layers")
"""Options that only ``--adapter lora`` reads."""

ENCODER_INPUT_OPTIONS = ("pooling", "max_length", "long_docs", "chunk_pool", "head_init_scale")
"""Options of the transformer classifier's input and head that ``--adapter evidence`` does not
read (its features embed whole sentences in windows, and its prior has its own scale)."""

# options that change the trained weights; a checkpoint is only resumed if they all agree
_RESUME_KEYS = (
    "data", "text_col", "label_col", "label_sep", "id_col", "task", "labels", "top_labels",
    "exclude_labels", "min_label_count", "val_frac", "val", "test_frac", "test", "split_seed",
    "model", "adapter", "lora_r", "lora_alpha", "lora_targets", "lora_layers", "max_length",
    "coverage", "epsilon", "delta", "epochs", "batch_size", "lr", "weight_decay", "clip",
    "clipping", "accountant", "seed", "secure",
)
# options added later: fingerprinted only when not at their default, so checkpoints
# written before they existed (which ran with the default) still resume
_RESUME_KEYS_IF_SET: dict[str, Any] = {"lr_schedule": "constant", "ema_decay": 0.0,
                                        "head_init": "random",
                                        "head_init_scale": DEFAULT_HEAD_INIT_SCALE,
                                        "label_descriptions": None, "lora_freeze_a": False}


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run (CLI flags map one to one).

    Args:
        data: the private training corpus (csv, tsv, jsonl, parquet).
        out: the output folder (written atomically).
        text_col: text column(s), comma-separated; several are joined by a newline.
        label_col: the label column.
        label_sep: separator of several labels in one cell (multi-label data).
        id_col: id column (default: row number).
        task: "multi-label" (sigmoid/BCE), "multi-class" (softmax) or "auto"
            (multi-label when ``label_sep`` is given).
        labels: a fixed label set decided without looking at the data (else chosen
            from the data: that choice is not covered by ε).
        top_labels: keep only the k most frequent labels.
        exclude_labels: labels to drop (e.g. "No Indexing").
        min_label_count: labels with fewer examples are dropped (an error under ``strict``).
        strict: turn the rare-label warning into an error.
        val_frac: fraction of DATA held out for threshold tuning (ignored with ``val``).
        val: a separate validation file.
        test_frac: fraction of DATA held out for metrics.json (ignored with ``test``).
        test: a separate test file.
        split_seed: seed of the train/val/test split (default: ``seed``).
        model: registry name (minilm, tiny-bert, ...) or local model folder.
        adapter: "lora" (LoRA adapters + head), "head" (head only), "full", or
            "evidence" (per-label linear models over label-evidence features built from
            the label descriptions and the frozen public encoder; :mod:`veil.train.evidence`).
        lora_r, lora_alpha: LoRA rank and alpha (alpha default 2r).
        lora_targets: Linear modules to adapt (default query,value).
        lora_freeze_a: keep LoRA's A matrices at their seeded random start and train B
            only (FFA-LoRA, Sun et al. 2024): half the noised LoRA coordinates and no product
            of two noised matrices. A reads no record, so ε is unchanged.
        lora_layers: adapt only the top k transformer layers (None: all); the frozen
            layers below are computed once and cached, which is much faster on CPU.
        pooling: "mean" (sentence-transformers' native pooling) or "cls".
        max_length: tokens per window; None = auto (covers ``coverage`` of documents).
        coverage: fraction of training documents that ``max_length=auto`` must cover.
        long_docs: "truncate" (first window, counted and reported) or "chunk"
            (prediction pools all windows; training always uses the first window,
            so each record stays one example and its gradient stays bounded by ``clip``).
        chunk_pool: how window predictions are pooled: mean of logits or max of probabilities.
        epsilon: target record-level ε of the released weights (``inf``: non-private).
        delta: δ; None = ``min(1e-5, 1/(10 n))`` with n training records.
        epochs: expected passes over the training records.
        batch_size: expected Poisson batch size ``q n`` (DP) or batch size (non-private).
        lr: AdamW learning rate (default per adapter and privacy, :data:`DEFAULT_LR`,
            :data:`DEFAULT_LR_NONPRIVATE`).
        lr_schedule: learning rate over the planned steps: "constant", "cosine" (decays to
            0 by the last step) or "linear" (likewise). Post-processing of the noisy
            gradients, so it changes neither σ nor ε. A decay damps the noise of the last
            steps but also halves the average rate: on IU X-ray at ε = 10 it under-trained
            (docs/train.md), so the default stays constant.
        ema_decay: release an exponential moving average of the weights over the optimizer
            steps (``W_t = d·W_{t-1} + (1 − d)·w_t``) instead of the last iterate; 0 (default)
            releases the last iterate. Post-processing of the noisy iterates: same σ and ε.
            On IU X-ray at ε = 10 (d = 0.9) it did not help: the run still improves at its
            end, so the average lags (docs/train.md).
        weight_decay: AdamW weight decay.
        clip: per-record L2 clipping norm C of DP-SGD.
        clipping: "flat" (the whole gradient to C) or "group" (the head and the LoRA
            adapters each to C/√2: the record's gradient still has norm ≤ C, so σ and ε
            are unchanged, but the head's large gradient no longer crowds the adapters'
            out of the clipped sum).
        accountant: "prv" (RDP reported beside it; RDP is used if PRV fails) or "rdp".
        thresholds: multi-label decision thresholds tuned on validation: one global,
            one per label, or fixed at 0.5.
        seed: seed of initialisation, sampling and noise (experiments only).
        secure: draw noise seeds from the OS entropy pool (for real releases).
        resume: continue from the last epoch checkpoint of an interrupted run.
        merge: also write a merged model (LoRA folded into the encoder).
        ledger: budget ledger file (default ``$VEIL_HOME/ledger.db``).
        n_boot: bootstrap resamples for the 95% confidence intervals.
        quiet: no progress bars.
    """

    data: Path
    out: Path
    text_col: str = "text"
    label_col: str = "label"
    label_sep: str | None = None
    id_col: str | None = None
    task: Task = "auto"
    labels: tuple[str, ...] | None = None
    top_labels: int | None = None
    exclude_labels: tuple[str, ...] = ()
    min_label_count: int = 2
    strict: bool = False
    val_frac: float = 0.1
    val: Path | None = None
    test_frac: float = 0.1
    test: Path | None = None
    split_seed: int | None = None
    model: str = "minilm"
    adapter: Adapter = "lora"
    lora_r: int = 8
    lora_alpha: int | None = None
    lora_targets: tuple[str, ...] = ("query", "value")
    lora_freeze_a: bool = False
    lora_layers: int | None = None
    pooling: Literal["mean", "cls"] = "mean"
    head_init: Literal["random", "labels"] = "random"
    head_init_scale: float = DEFAULT_HEAD_INIT_SCALE
    label_descriptions: Path | None = None
    max_length: int | None = None
    coverage: float = 0.99
    long_docs: LongDocs = "truncate"
    chunk_pool: ChunkPool = "mean"
    epsilon: float = 1.0
    delta: float | None = None
    epochs: int = 5
    batch_size: int = 64
    lr: float | None = None
    lr_schedule: LrSchedule = "constant"
    ema_decay: float = 0.0
    weight_decay: float = 0.0
    clip: float = 1.0
    clipping: Literal["flat", "group"] = "flat"
    accountant: Literal["prv", "rdp"] = "prv"
    thresholds: Thresholds = "per-label"
    seed: int = 0
    secure: bool = False
    resume: bool = False
    merge: bool = False
    ledger: Path | None = None
    n_boot: int = 1000
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out", Path(self.out))
        for name in ("val", "test", "ledger", "label_descriptions"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        for name in ("labels", "exclude_labels", "lora_targets"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    @property
    def private(self) -> bool:
        """True when DP-SGD is used (finite ε)."""
        return not math.isinf(self.epsilon)

    @property
    def multi_label(self) -> bool:
        """Whether labels are independent (sigmoid) rather than exclusive (softmax)."""
        return self.task == "multi-label" or (self.task == "auto" and self.label_sep is not None)

    @property
    def learning_rate(self) -> float:
        """``lr``, or the adapter's default (DP or non-private)."""
        if self.lr is not None:
            return self.lr
        return (DEFAULT_LR if self.private else DEFAULT_LR_NONPRIVATE)[self.adapter]

    @property
    def alpha(self) -> int:
        """LoRA alpha (default twice the rank)."""
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_r

    def validate(self) -> None:
        """Raise :class:`BadInput` naming the first invalid option."""
        def bad(option: str, why: str) -> BadInput:
            return BadInput(f"--{option.replace('_', '-')} {why}", column=None)

        eps = self.epsilon
        if math.isnan(eps) or eps <= 0:
            raise bad("epsilon", f"must be > 0 (or inf for no privacy), got {eps:g}")
        if self.delta is not None and not (0 < self.delta < 1):
            raise bad("delta", f"must be in (0, 1), got {self.delta:g}")
        if self.task not in ("auto", "multi-label", "multi-class"):
            raise bad("task", "must be auto, multi-label or multi-class")
        if self.adapter not in DEFAULT_LR:
            raise bad("adapter", "must be lora, head, full or evidence")
        if self.thresholds not in ("global", "per-label", "fixed"):
            raise bad("thresholds", "must be global, per-label or fixed")
        if self.long_docs not in ("truncate", "chunk"):
            raise bad("long_docs", "must be truncate or chunk")
        if self.chunk_pool not in ("mean", "max"):
            raise bad("chunk_pool", "must be mean or max")
        if self.pooling not in ("mean", "cls"):
            raise bad("pooling", "must be mean or cls")
        if self.lr_schedule not in ("constant", "cosine", "linear"):
            raise bad("lr_schedule", "must be constant, cosine or linear")
        if self.head_init not in ("random", "labels"):
            raise bad("head_init", "must be random or labels")
        if not (math.isfinite(self.head_init_scale) and self.head_init_scale > 0):
            raise bad("head_init_scale", f"must be > 0, got {self.head_init_scale:g}")
        if self.lora_freeze_a and self.adapter != "lora":
            raise bad("lora_freeze_a", "needs --adapter lora")
        if (self.label_descriptions is not None and self.head_init != "labels"
                and self.adapter != "evidence"):
            raise bad("label_descriptions", "needs --head-init labels or --adapter evidence")
        if self.adapter == "evidence" and self.merge:
            raise bad("merge", "does not apply to --adapter evidence")
        if not 0.0 <= self.ema_decay < 1.0:
            raise bad("ema_decay", f"must be in [0, 1), got {self.ema_decay:g}")
        if self.clipping not in ("flat", "group"):
            raise bad("clipping", "must be flat or group")
        if self.clipping == "group" and self.adapter in ("full", "evidence"):
            raise bad("clipping", "group needs --adapter lora or head")
        if self.accountant not in ("prv", "rdp"):
            raise bad("accountant", "must be prv or rdp")
        positive_ints = {"epochs": self.epochs, "batch_size": self.batch_size,
                         "lora_r": self.lora_r, "min_label_count": self.min_label_count,
                         "n_boot": self.n_boot}
        for name, value in positive_ints.items():
            if int(value) != value or value < 1:
                raise bad(name, f"must be an integer >= 1, got {value}")
        if self.top_labels is not None and self.top_labels < 2:
            raise bad("top_labels", f"must be >= 2, got {self.top_labels}")
        if self.lora_layers is not None and self.lora_layers < 1:
            raise bad("lora_layers", f"must be >= 1, got {self.lora_layers}")
        if self.max_length is not None and self.max_length < 8:
            raise bad("max_length", f"must be >= 8 tokens (or auto), got {self.max_length}")
        if not 0.5 <= self.coverage <= 1:
            raise bad("coverage", f"must be in [0.5, 1], got {self.coverage:g}")
        for name in ("val_frac", "test_frac"):
            value = getattr(self, name)
            if not 0 <= value < 0.9:
                raise bad(name, f"must be in [0, 0.9), got {value:g}")
        if self.val is None and self.test is None and self.val_frac + self.test_frac >= 0.9:
            raise bad("val_frac", "plus --test-frac leaves too little data to train on")
        for name in ("clip", "lr"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise bad(name, f"must be > 0, got {value:g}")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.labels is not None and len(set(self.labels)) < 2:
            raise bad("labels", "must name at least two distinct labels")
        if not self.text_col.strip():
            raise bad("text_col", "must name at least one column")

    def ignored_options(self) -> list[str]:
        """The command-line options set away from their defaults that this run does not
        read (``veil train`` warns about them; they do not change the trained model)."""
        unused: tuple[str, ...] = () if self.adapter == "lora" else LORA_OPTIONS
        if self.adapter == "evidence":
            unused += ENCODER_INPUT_OPTIONS
        elif self.head_init != "labels":
            unused += ("head_init_scale",)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return ["--" + name.replace("_", "-") for name in unused
                if getattr(self, name) != defaults[name]]

    def fingerprint(self) -> str:
        """SHA-256 of the options that change the trained weights (resume compatibility)."""
        blob = {k: _plain(getattr(self, k)) for k in _RESUME_KEYS}
        if self.adapter == "evidence":  # a checkpoint of other blocks cannot be resumed
            from veil.train.evidence import FORMAT

            blob["evidence_format"] = FORMAT
        blob.update({k: _plain(getattr(self, k)) for k, default in _RESUME_KEYS_IF_SET.items()
                     if getattr(self, k) != default})
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options for ``run.json`` (paths as given, ε = inf as "inf")."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, tuple):
        return list(value)
    return value
