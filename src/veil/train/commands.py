"""CLI commands of the train pipeline: ``veil train``, ``veil predict``, ``veil evaluate``.

Thin: parse options into a :class:`~veil.train.config.TrainConfig`, call the
facade, print a summary. torch/transformers are imported inside the commands.
``register`` also attaches ``veil sweep`` / ``veil label`` when
:mod:`veil.train.sweep_commands` exists.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from veil.errors import BadInput
from veil.train.cli_options import (
    EmaDecayOption,
    HeadInitOption,
    HeadInitScaleOption,
    LabelDescriptionsOption,
    LoraFreezeAOption,
    LrScheduleOption,
)
from veil.train.config import DEFAULT_HEAD_INIT_SCALE


def _number(text: str, option: str, *, allow_inf: bool = False) -> float:
    value = text.strip().lower()
    if allow_inf and value in ("inf", "infinity", "∞"):
        return math.inf
    try:
        number = float(value)
    except ValueError:
        raise BadInput(f"{option} must be a number{' or inf' if allow_inf else ''}, "
                       f"got {text!r}") from None
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise BadInput(f"{option} must be a finite number, got {text!r}")
    return number


def _auto_int(text: str, option: str, auto: str) -> int | None:
    if text.strip().lower() == auto:
        return None
    number = _number(text, option)
    if int(number) != number:
        raise BadInput(f"{option} must be an integer or {auto}, got {text!r}")
    return int(number)


def _items(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(t.strip() for t in text.split(",") if t.strip())


def train(
    data: Annotated[Path, typer.Argument(help="Private training corpus (csv, tsv, jsonl, ...).")],
    out: Annotated[Path, typer.Option("--out", help="Output model folder (written atomically).")],
    text_col: Annotated[str, typer.Option(help="Text column(s), comma-separated.")] = "text",
    label_col: Annotated[str, typer.Option(help="Label column.")] = "label",
    label_sep: Annotated[str | None, typer.Option(
        help="Separator of several labels in one cell (makes the task multi-label).")] = None,
    id_col: Annotated[str | None, typer.Option(help="Id column (default: row number).")] = None,
    task: Annotated[str, typer.Option(help="auto, multi-label or multi-class.")] = "auto",
    labels: Annotated[str | None, typer.Option(
        help="Fixed label set, comma-separated (else chosen from the data).")] = None,
    top_labels: Annotated[int | None, typer.Option(help="Keep the k most frequent labels.")
                          ] = None,
    exclude_labels: Annotated[str | None, typer.Option(
        help="Labels to drop, comma-separated (e.g. 'No Indexing').")] = None,
    strict: Annotated[bool, typer.Option(help="Error (not warning) on labels with < 2 examples.")
                      ] = False,
    model: Annotated[str, typer.Option(help="Encoder: minilm, tiny-bert, ... or a local folder.")
                     ] = "minilm",
    adapter: Annotated[str, typer.Option(
        help="lora (adapters + head), head, full, or evidence (per-label models over "
             "description evidence; best under tight DP on small data).")] = "lora",
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha (default 2 r).")] = None,
    lora_targets: Annotated[str, typer.Option(help="Linear layers to adapt, comma-separated.")
                            ] = "query,value",
    lora_freeze_a: LoraFreezeAOption = False,
    lora_layers: Annotated[str, typer.Option(
        help="Adapt only the top k layers (frozen layers below are cached) or 'all'.")] = "all",
    pooling: Annotated[str, typer.Option(help="mean (sentence-transformers) or cls.")] = "mean",
    max_length: Annotated[str, typer.Option(
        help="Tokens per window, or 'auto' (covers 99% of training documents).")] = "auto",
    long_docs: Annotated[str, typer.Option(
        help="truncate (cut, and count) or chunk (pool windows at prediction).")] = "truncate",
    chunk_pool: Annotated[str, typer.Option(help="mean (of logits) or max (of probabilities).")
                          ] = "mean",
    epsilon: Annotated[str, typer.Option(
        help="Target ε per training record (inf: non-private).")] = "1",
    delta: Annotated[str, typer.Option(help="δ, or 'auto' = min(1e-5, 1/(10 n)).")] = "auto",
    epochs: Annotated[int, typer.Option(help="Passes over the training records.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Expected (Poisson) batch size.")] = 64,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate (default per adapter).")
                  ] = None,
    lr_schedule: LrScheduleOption = "constant",
    ema_decay: EmaDecayOption = 0.0,
    head_init: HeadInitOption = "random",
    head_init_scale: HeadInitScaleOption = DEFAULT_HEAD_INIT_SCALE,
    label_descriptions: LabelDescriptionsOption = None,
    clip: Annotated[float, typer.Option(help="Per-record gradient clipping norm C.")] = 1.0,
    clipping: Annotated[str, typer.Option(
        help="flat, or group: head and adapters each clipped to C/√2 (same ε).")] = "flat",
    accountant: Annotated[str, typer.Option(help="prv (RDP reported beside it) or rdp.")] = "prv",
    thresholds: Annotated[str, typer.Option(help="global, per-label or fixed (0.5).")
                          ] = "per-label",
    val_frac: Annotated[float, typer.Option(help="Validation fraction of DATA.")] = 0.1,
    val: Annotated[Path | None, typer.Option(help="Separate validation file.")] = None,
    test_frac: Annotated[float, typer.Option(help="Test fraction of DATA (metrics.json).")
                         ] = 0.1,
    test: Annotated[Path | None, typer.Option(help="Separate test file.")] = None,
    split_seed: Annotated[int | None, typer.Option(help="Seed of the split (default --seed).")
                          ] = None,
    seed: Annotated[int, typer.Option(help="Seed of init, sampling and noise.")] = 0,
    secure: Annotated[bool, typer.Option(help="Noise seeds from the OS entropy pool.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from the last epoch checkpoint.")
                      ] = False,
    merge: Annotated[bool, typer.Option(help="Also save a merged model (LoRA folded in).")
                     ] = False,
    ledger: Annotated[Path | None, typer.Option(help="Budget ledger (default $VEIL_HOME).")
                      ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Fine-tune a classifier with DP-SGD; ε protects each training record (add/remove one row).

    Writes OUT/: adapters, labels.json, thresholds.json, privacy.json, metrics.json,
    model_card.md, training_curve.png, run.json. The spend is recorded in the ledger
    before the folder appears.
    """
    from veil.progress import console, set_quiet
    from veil.train.config import TrainConfig
    from veil.train.facade import train as run_train

    set_quiet(quiet)
    config = TrainConfig(
        data=data, out=out, text_col=text_col, label_col=label_col, label_sep=label_sep,
        id_col=id_col, task=task, labels=_items(labels),  # type: ignore[arg-type]
        top_labels=top_labels, exclude_labels=_items(exclude_labels) or (), strict=strict,
        val_frac=val_frac, val=val, test_frac=test_frac, test=test, split_seed=split_seed,
        model=model, adapter=adapter, lora_r=lora_r, lora_alpha=lora_alpha,  # type: ignore[arg-type]
        lora_targets=_items(lora_targets) or ("query", "value"), lora_freeze_a=lora_freeze_a,
        lora_layers=_auto_int(lora_layers, "--lora-layers", "all"),
        pooling=pooling,  # type: ignore[arg-type]
        max_length=_auto_int(max_length, "--max-length", "auto"),
        long_docs=long_docs, chunk_pool=chunk_pool,  # type: ignore[arg-type]
        epsilon=_number(epsilon, "--epsilon", allow_inf=True),
        delta=None if delta.strip().lower() == "auto" else _number(delta, "--delta"),
        epochs=epochs, batch_size=batch_size, lr=lr,
        lr_schedule=lr_schedule,  # type: ignore[arg-type]
        ema_decay=ema_decay, head_init=head_init,  # type: ignore[arg-type]
        head_init_scale=head_init_scale, label_descriptions=label_descriptions,
        clip=clip,
        clipping=clipping,  # type: ignore[arg-type]
        accountant=accountant, thresholds=thresholds,  # type: ignore[arg-type]
        seed=seed, secure=secure, resume=resume, merge=merge, ledger=ledger, quiet=quiet)
    if ignored := config.ignored_options():
        console.print(f"warning: this run does not read {', '.join(ignored)} (ignored)")
    result = run_train(config)
    wf1 = result.metrics["weighted_f1"]
    ci = wf1["ci95"]
    ci_text = f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else ""
    eps = "∞ (non-private)" if math.isinf(result.epsilon) else f"{result.epsilon:.4g}"
    console.print(f"trained: ε = {eps}, δ = {result.delta:.3g} per training record; weighted "
                  f"F1 on the {result.eval_split} split {wf1['value']:.4f}{ci_text} -> {out}")


def predict(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by veil train.")],
    data: Annotated[Path, typer.Argument(help="Corpus to label.")],
    out: Annotated[Path, typer.Option("--out", help="Predictions (.jsonl, .csv or .parquet).")],
    text_col: Annotated[str, typer.Option(help="Text column(s), comma-separated.")] = "text",
    id_col: Annotated[str | None, typer.Option(help="Id column (default: row number).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Predict labels (and per-label probabilities) for each record; no budget is spent."""
    from veil.io import write_records
    from veil.progress import info, set_quiet
    from veil.train.facade import predict as run_predict

    set_quiet(quiet)
    preds = run_predict(model_dir, data, text_col=text_col, id_col=id_col)
    write_records(out, preds.records())
    info(f"{len(preds.ids)} records ({preds.n_cut} longer than one window) -> {out}")


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by veil train.")],
    data: Annotated[Path, typer.Argument(help="Labelled corpus.")],
    text_col: Annotated[str, typer.Option(help="Text column(s), comma-separated.")] = "text",
    label_col: Annotated[str, typer.Option(help="Label column.")] = "label",
    label_sep: Annotated[str | None, typer.Option(help="Separator of several labels.")] = None,
    id_col: Annotated[str | None, typer.Option(help="Id column (default: row number).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the metrics JSON here.")
                   ] = None,
    n_boot: Annotated[int, typer.Option(min=1, help="Bootstrap resamples for the CIs.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    quiet: Annotated[bool, typer.Option(help="Print only the summary table.")] = False,
) -> None:
    """Weighted/micro/macro F1, per-label P/R/F1 and AUROC with 95% bootstrap CIs."""
    from rich.table import Table

    from veil.artifacts import write_json
    from veil.progress import console, set_quiet
    from veil.train.facade import evaluate as run_evaluate

    set_quiet(quiet)
    res = run_evaluate(model_dir, data, text_col=text_col, label_col=label_col,
                       label_sep=label_sep, id_col=id_col, n_boot=n_boot, seed=seed)
    table = Table(title=f"{len(res.ids)} records")
    for col in ("metric", "value", "95% CI"):
        table.add_column(col)
    rows = [(k, res.metrics[k]) for k in ("weighted_f1", "micro_f1", "macro_f1", "auroc_macro")]
    rows += [(f"F1 {lab}", v["f1"]) for lab, v in res.metrics["per_label"].items()]
    for name, m in rows:
        value = "–" if m["value"] is None else f"{m['value']:.4f}"
        ci = "–" if m["ci95"] is None else f"{m['ci95'][0]:.3f}–{m['ci95'][1]:.3f}"
        table.add_row(name, value, ci)
    console.print(table)
    if out is not None:
        write_json(out, res.metrics)
        console.print(f"metrics -> {out}")


def register(app: typer.Typer) -> None:
    """Attach ``train``, ``predict``, ``evaluate`` (and ``sweep``/``label`` if present)."""
    app.command()(train)
    app.command()(predict)
    app.command()(evaluate)
    try:
        from veil.train import sweep_commands
    except ModuleNotFoundError as err:
        if err.name != "veil.train.sweep_commands":
            raise
        return
    sweep_commands.register(app)
