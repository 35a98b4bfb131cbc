"""What a trained model's folder says about itself: privacy.json, model_card.md, the curve.

The privacy statement is precise about its scope. ε covers the released
*weights* with respect to adding or removing one *training record*. It does not
cover: the validation records (used, without noise, to tune thresholds and to
draw the validation curve), the test records behind metrics.json, the label set
and ``max_length`` when they were chosen from the data. Those are held-out
records of the same dataset, so the card says plainly that they are not
protected by ε.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from veil.privacy.report import PrivacyReport, default_statement
from veil.train.config import TrainConfig
from veil.train.loop import FitResult

NOT_COVERED = (
    "validation records: they are held out from training and used without noise to tune "
    "the decision thresholds (thresholds.json) and to draw training_curve.png",
    "test records: metrics.json is computed on them without noise",
    "the label set, when chosen from the data by frequency (--top-labels, rare-label "
    "dropping) instead of given with --labels",
    "max_length, when chosen from the training data (--max-length auto)",
)

TRAINED_WEIGHTS = {"lora": "LoRA adapters and classification head",
                   "head": "classification head; the encoder is the public base model",
                   "full": "every encoder weight and the classification head",
                   "evidence": "per-label weights over label-evidence features (description "
                               "terms with negation, sentence similarity); the encoder is the "
                               "public base model and the features read no other record"}
"""What each ``--adapter`` trains, i.e. which released weights ε covers."""


def _trained_weights(config: TrainConfig) -> str:
    if config.lora_freeze_a:
        return ("LoRA B matrices and classification head; the A matrices are the seeded "
                "random start and read no record")
    return TRAINED_WEIGHTS[config.adapter]


def _head_init(config: TrainConfig) -> str:
    if config.head_init != "labels":
        return "zeros" if config.adapter == "evidence" else "random (seeded)"
    if config.adapter == "evidence":
        return ("label descriptions: +1 on the terms they affirm (and on the negation of the "
                "terms they negate), no record read")
    return ("label descriptions embedded by the public base model (no record read; "
            f"scale {config.head_init_scale:g})")


def privacy_report(config: TrainConfig, fit: FitResult, fingerprint: str,
                   data_summary: dict[str, Any]) -> PrivacyReport:
    """The run's :class:`PrivacyReport` (unit: record)."""
    extra: dict[str, Any] = {
        "target_epsilon": config.epsilon,
        "epsilon_rdp": fit.epsilon_rdp,
        "epsilon_prv": fit.epsilon_prv,
        "delta_rule": "min(1e-5, 1/(10 n)) with n training records" if config.delta is None
        else "given by the user",
        "n_train": fit.n_train,
        "epochs": fit.epochs,
        "expected_batch_size": config.batch_size,
        "adapter": config.adapter,
        "sampling": "Poisson" if config.private else "shuffled mini-batches",
        "clipping": ("group: head and adapters each clipped to C/sqrt(2), total norm <= C"
                     if config.clipping == "group" else "flat: whole gradient clipped to C"),
        "lora_freeze_a": config.lora_freeze_a,
        "head_init": _head_init(config),
        "covered": f"the released model weights ({_trained_weights(config)}), with "
                   "respect to adding or removing one training record",
        "not_covered": list(NOT_COVERED),
        "n_validation": data_summary["n_val"],
        "n_test": data_summary["n_test"],
        "notes": list(fit.notes),
    }
    if not config.private:
        return PrivacyReport.build(
            "none (non-private fine-tuning)", "record", math.inf, 0.0, None, steps=fit.steps,
            extra=extra, dataset_fingerprint=fingerprint)
    base = default_statement("dp-sgd", "record", fit.epsilon, fit.delta, fit.accountant,
                             noise_multiplier=fit.noise_multiplier, sample_rate=fit.sample_rate,
                             steps=fit.steps, clipping_norm=config.clip)
    scope = (" The guarantee covers the model weights trained on the training split only. "
             "Not covered: " + "; ".join(NOT_COVERED) + ".")
    return PrivacyReport.build(
        "dp-sgd", "record", fit.epsilon, fit.delta, fit.accountant,
        noise_multiplier=fit.noise_multiplier, sample_rate=fit.sample_rate, steps=fit.steps,
        clipping_norm=config.clip, extra=extra, dataset_fingerprint=fingerprint,
        statement=base + scope)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.3f}"
    return str(value)


def model_card(config: TrainConfig, report: PrivacyReport, metrics: dict[str, Any],
               data_summary: dict[str, Any], eval_split: str, max_length: int,
               n_cut: int) -> str:
    """``model_card.md``: intended use, data, training recipe, privacy, results."""
    lines = [
        "# veil classifier", "",
        f"Multi-{'label' if data_summary['multi_label'] else 'class'} text classifier "
        + (f"fine-tuned from `{config.model}`" if config.adapter != "evidence"
           else f"trained on label-evidence features from the frozen `{config.model}`")
        + f" (adapter: {config.adapter}"
        + (f", LoRA r={config.lora_r}" if config.adapter == "lora" else "")
        + (", A frozen at its seeded random start (FFA-LoRA)" if config.lora_freeze_a else "")
        + ")"
        + (", head started from the label descriptions (public; no record read)"
           if config.head_init == "labels" else "")
        + (", features from the label descriptions (public; each built from one record)"
           if config.adapter == "evidence" else "") + ".", "",
        "## Privacy", "", report.statement, "",
        f"- ε = {_fmt(report.epsilon)}, δ = {report.delta:.3g}, accountant: "
        f"{report.accountant or 'none'}, unit: {report.unit}",
    ]
    if config.private:
        lines += [f"- noise multiplier σ = {report.noise_multiplier:.4g}, sampling rate "
                  f"q = {report.sample_rate:.4g}, {report.steps} steps, clipping norm "
                  f"C = {config.clip:g}",
                  f"- RDP figure for the same run: ε = {_fmt(report.extra.get('epsilon_rdp'))}"]
    window_note = ("cut" if config.long_docs == "truncate"
                   else "first window used in training, all windows at prediction")
    window_line = (f"- window: {max_length} tokens; {n_cut} training documents were longer "
                   f"({window_note})")
    if config.adapter == "evidence":
        window_line = (f"- sentences are embedded in windows of {max_length} tokens; "
                       f"{n_cut} training documents had a longer sentence (embedded in "
                       "several windows, nothing cut)")
    lines += ["", "## Data", "",
              f"- training records: {data_summary['n_train']}, validation: "
              f"{data_summary['n_val']}, test: {data_summary['n_test']}",
              f"- labels ({len(data_summary['labels'])}): "
              + ", ".join(data_summary["labels"]),
              window_line,
              "", f"## Results ({eval_split} split, 95% bootstrap CI)", "",
              "| metric | value | 95% CI |", "|---|---|---|"]
    for key in ("weighted_f1", "micro_f1", "macro_f1", "auroc_macro"):
        m = metrics[key]
        ci = "–" if m["ci95"] is None else f"{m['ci95'][0]:.3f}–{m['ci95'][1]:.3f}"
        lines.append(f"| {key} | {_fmt(m['value'])} | {ci} |")
    if eval_split == "validation":
        lines += ["", "These figures are on the validation split that also tuned the "
                  "thresholds: they are optimistic. Use --test-frac or --test for unbiased ones."]
    lines += ["", "## Intended use and limits", "",
              "Research and decision support on text like the training data. Not validated "
              "for clinical use. Thresholds were tuned for weighted F1 on the validation "
              "split.", ""]
    return "\n".join(lines)


def plot_curve(curve: list[dict[str, float]], path: Path, target_epsilon: float) -> None:
    """``training_curve.png``: validation figures and ε spent, per epoch (no training loss)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [p["epoch"] for p in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, style in (("val_weighted_f1", "o-"), ("val_loss", "s--")):
        if curve and key in curve[0]:
            left.plot(epochs, [p[key] for p in curve], style, label=key.replace("_", " "))
    left.set_xlabel("epoch")
    left.set_title("validation split")
    left.legend()
    eps = [p["epsilon"] for p in curve]
    if curve and all(math.isfinite(e) for e in eps):
        right.plot(epochs, eps, "o-")
        right.axhline(target_epsilon, color="grey", linestyle=":", label="target ε")
        right.legend()
        right.set_title("ε spent (per training record)")
    else:
        right.text(0.5, 0.5, "non-private run: ε = ∞", ha="center", va="center")
        right.set_axis_off()
    right.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
