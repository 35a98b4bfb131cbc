"""CLI commands ``veil sweep`` and ``veil label`` (attached by ``veil.train.commands``).

Thin: parse options, build the configuration, call :func:`veil.train.sweep.run_sweep`
or :func:`veil.train.labelling.label_file`, print a summary. Nothing heavy is
imported at module level. Output never contains input text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veil.errors import BadInput
from veil.progress import console, set_quiet
from veil.train.cli_options import (
    EmaDecayOption,
    HeadInitOption,
    HeadInitScaleOption,
    LabelDescriptionsOption,
    LoraFreezeAOption,
    LrScheduleOption,
)
from veil.train.config import DEFAULT_HEAD_INIT_SCALE


def _int_or(text: str, option: str, word: str) -> int | None:
    """``word`` -> None; an integer -> int; else BadInput."""
    value = text.strip().lower()
    if value == word:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"{option} must be an integer or {word}, got {text!r}") from None


def sweep(
    data: Annotated[Path, typer.Argument(help="Private training corpus (csv, tsv, jsonl, parquet).")
                    ],
    out: Annotated[Path, typer.Option(help="Sweep folder (runs, results.csv/.md, plot).")],
    text_col: Annotated[str, typer.Option(help="Text column(s), comma-separated.")] = "text",
    label_col: Annotated[str, typer.Option(help="Label column.")] = "label",
    label_sep: Annotated[str | None, typer.Option(
        help="Separator of several labels in one cell (multi-label).")] = None,
    id_col: Annotated[str | None, typer.Option(help="Id column (default: row number).")] = None,
    top_labels: Annotated[int | None, typer.Option(help="Keep the k most frequent labels.")] = None,
    exclude_labels: Annotated[str | None, typer.Option(
        help="Comma-separated labels to drop (e.g. 'No Indexing').")] = None,
    model: Annotated[str, typer.Option(help="Encoder (registry name or folder).")] = "minilm",
    epsilons: Annotated[str, typer.Option(
        help="ε values per training record, comma-separated; inf = non-private.")
    ] = "0.01,0.1,1,10,inf",
    seeds: Annotated[int, typer.Option(help="Training seeds per cell (the split is fixed).")] = 3,
    adapters: Annotated[str, typer.Option(
        help="Comma-separated: lora, head, full, evidence.")] = "lora",
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = 5,
    batch_size: Annotated[int, typer.Option(help="(Expected) batch size.")] = 64,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default per adapter).")] = None,
    lr_schedule: LrScheduleOption = "constant",
    ema_decay: EmaDecayOption = 0.0,
    head_init: HeadInitOption = "random",
    head_init_scale: HeadInitScaleOption = DEFAULT_HEAD_INIT_SCALE,
    label_descriptions: LabelDescriptionsOption = None,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    lora_freeze_a: LoraFreezeAOption = False,
    lora_layers: Annotated[str, typer.Option(
        help="Adapt only the top k layers (faster on CPU) or 'all'.")] = "all",
    max_length: Annotated[str, typer.Option(help="Tokens per window, or 'auto'.")] = "auto",
    delta: Annotated[float | None, typer.Option(help="δ (default min(1e-5, 1/(10n))).")] = None,
    test_frac: Annotated[float, typer.Option(help="Test fraction of the one fixed split.")] = 0.2,
    val_frac: Annotated[float, typer.Option(help="Validation fraction (thresholds).")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the one train/val/test split.")] = 0,
    seed: Annotated[int, typer.Option(help="First training seed.")] = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the paired tests.")] = 2000,
    baseline: Annotated[bool, typer.Option(help="Fit the TF-IDF + LR baseline row.")] = True,
    ledger: Annotated[Path | None, typer.Option(help="Budget ledger file.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train the grid ε × adapter × seed on one fixed split; table, plot and paired tests.

    Each DP run is a release protecting every training record with its ε; the
    sweep spends the sum of its runs' ε on DATA (printed before the first run;
    a ledger budget below it refuses the sweep with exit code 3).
    """
    from veil.train.config import TrainConfig
    from veil.train.sweep import (
        grid,
        n_non_private,
        parse_adapters,
        parse_epsilons,
        placeholder_adapter,
        run_sweep,
        total_epsilon,
    )

    set_quiet(quiet)
    eps = parse_epsilons(epsilons)
    ads = parse_adapters(adapters)
    points = grid(eps, ads, seeds, seed)
    excluded = tuple(p.strip() for p in (exclude_labels or "").split(",") if p.strip())
    if label_descriptions is not None and head_init != "labels" and "evidence" not in ads:
        raise BadInput("--label-descriptions needs --head-init labels or evidence among "
                       "--adapters")
    placeholder = placeholder_adapter(ads, lora_freeze_a=lora_freeze_a, head_init=head_init,
                                      descriptions=label_descriptions is not None)
    base = TrainConfig(
        data=data, out=out / "runs", text_col=text_col, label_col=label_col,
        label_sep=label_sep, id_col=id_col, top_labels=top_labels, exclude_labels=excluded,
        model=model, epochs=epochs, batch_size=batch_size, lr=lr,
        lr_schedule=lr_schedule, ema_decay=ema_decay, lora_r=lora_r,  # type: ignore[arg-type]
        lora_freeze_a=lora_freeze_a,
        head_init=head_init, head_init_scale=head_init_scale,  # type: ignore[arg-type]
        label_descriptions=label_descriptions if placeholder == "evidence"
        or head_init == "labels" else None,
        lora_layers=_int_or(lora_layers, "--lora-layers", "all"),
        max_length=_int_or(max_length, "--max-length", "auto"), delta=delta, test_frac=test_frac,
        val_frac=val_frac, split_seed=split_seed, seed=seed, epsilon=eps[0],
        # a placeholder: each run sets its own adapter and the options that apply to it
        adapter=placeholder,  # type: ignore[arg-type]
        ledger=ledger, quiet=quiet)
    console.print(f"sweep: {len(points)} runs ({len(ads)} adapter(s) × {len(eps)} ε × "
                  f"{seeds} seed(s)); DP runs spend ε = {total_epsilon(points):g} in total on "
                  "this dataset (sum over runs, per training record); "
                  f"{n_non_private(points)} non-private run(s) are recorded as ε = ∞",
                  highlight=False)
    result = run_sweep(base, epsilons=eps, adapters=ads, seeds=seeds, out=out,
                       baseline=baseline, n_boot=n_boot, test_seed=split_seed,
                       label_descriptions=label_descriptions)
    for s in result.summary:
        sd = s["weighted_f1_sd"]
        shown = f"{s['weighted_f1_mean']:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")
        console.print(f"  {s['adapter']:>8}  ε = {s['epsilon']:>6}  weighted F1 {shown}",
                      highlight=False)
    console.print(f"wrote {result.files['markdown']} and {result.files['plot']}",
                  highlight=False, markup=False)


def label(
    data: Annotated[Path, typer.Argument(help="Corpus to label (csv, tsv, jsonl, parquet, txt).")],
    teacher: Annotated[str, typer.Option(
        help="'zero-shot' or the folder of a model written by veil train.")],
    out: Annotated[Path, typer.Option(help="Labelled file (.csv, .jsonl or .parquet).")],
    labels: Annotated[str | None, typer.Option(
        help="Comma-separated label names (required for zero-shot).")] = None,
    label_descriptions: Annotated[Path | None, typer.Option(
        help="JSON {label: description or [descriptions]} for zero-shot.")] = None,
    text_col: Annotated[str | None, typer.Option(help="Text column(s), comma-separated.")
                        ] = None,
    id_col: Annotated[str | None, typer.Option(help="Id column.")] = None,
    gold_col: Annotated[str | None, typer.Option(
        help="Gold label column: report agreement with it.")] = None,
    label_sep: Annotated[str | None, typer.Option(help="Separator of several gold labels.")
                         ] = None,
    multi_label: Annotated[bool, typer.Option(help="Several labels per row (zero-shot).")
                           ] = False,
    top_k: Annotated[int | None, typer.Option(help="Multi-label: keep the k best labels.")
                     ] = None,
    threshold: Annotated[float | None, typer.Option(
        help="Multi-label: keep labels scoring at least this (cosine for zero-shot).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Label a corpus with a fixed teacher (zero-shot encoder or a trained veil model).

    Spends no privacy budget. A fixed teacher applied to each report separately
    keeps (report, label) one record for a DP model trained on the output.
    """
    from veil.train.labelling import label_file

    set_quiet(quiet)
    res = label_file(data, teacher=teacher, out=out, labels=labels,
                     descriptions=label_descriptions, text_col=text_col, id_col=id_col,
                     gold_col=gold_col, label_sep=label_sep, multi_label=multi_label,
                     top_k=top_k, threshold=threshold)
    console.print(f"labelled {res.n_rows} rows with teacher {res.teacher} "
                  f"({'multi-label' if res.multi_label else 'single-label'}) -> {res.out}",
                  highlight=False, markup=False)
    if res.n_windowed:
        console.print(f"{res.n_windowed} long document(s) were embedded in several windows",
                      highlight=False)
    counts = ", ".join(f"{lab}: {n}" for lab, n in res.label_counts.items())
    console.print(f"teacher label counts: {counts}", highlight=False, markup=False)
    if res.agreement is not None:
        a = res.agreement
        keys = ("accuracy", "micro_f1", "macro_f1", "weighted_f1", "kappa", "exact_match")
        shown = ", ".join(f"{k} {a[k]:.3f}" for k in keys if isinstance(a.get(k), float))
        console.print(f"agreement with gold ({a['n_compared']} rows): {shown}",
                      highlight=False, markup=False)
        console.print(f"wrote {res.agreement_path}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Attach ``sweep`` and ``label`` to the veil CLI."""
    app.command("sweep")(sweep)
    app.command("label")(label)
