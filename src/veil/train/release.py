"""Write a trained model's output folder: atomically, and spent in the ledger before release.

The folder is built in a hidden temporary sibling of ``OUT``. The spend (ε, δ
per training record) is recorded in the ledger *before* the folder is renamed
into place, and marked released after: a crash in between over-counts, never
under-counts. A refused spend (budget exceeded) removes the temporary folder,
so nothing is released (exit code 3).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from veil.artifacts import Timer, atomic_output, run_record, write_json
from veil.privacy.report import PrivacyReport
from veil.train.bundle import save_model
from veil.train.card import model_card, plot_curve, privacy_report
from veil.train.config import TrainConfig
from veil.train.loop import FitResult


def write_release(config: TrainConfig, model: Any, tokenizer: Any, data: Any, fit: FitResult,
                  evaluation: Any, thresholds: dict[str, Any], ledger: Any, *,
                  max_length: int, n_cut: int, timer: Timer,
                  evidence: dict[str, Any] | None = None) -> PrivacyReport:
    """Build ``config.out`` (model files, JSON reports, card, curve, run.json) and release it.

    ``evidence`` is the feature map's spec of an ``--adapter evidence`` model (its
    ``tokenizer`` is None: the public encoder is rebuilt from ``config.model``).

    Returns:
        The privacy report written to ``privacy.json``.
    """
    summary = data.summary()
    report = privacy_report(config, fit, data.fingerprint, summary)
    from veil.models import VALID_NAMES

    base = config.model if config.model in VALID_NAMES else str(Path(config.model).resolve())
    meta = {
        "base_model": base, "adapter": config.adapter, "pooling": config.pooling,
        "labels": list(data.space.names), "multi_label": data.space.multi_label,
        "max_length": max_length, "long_docs": config.long_docs,
        "chunk_pool": config.chunk_pool, "lora_r": config.lora_r,
        "lora_layers": config.lora_layers, "lora_freeze_a": config.lora_freeze_a,
    }
    with atomic_output(config.out) as tmp:
        tmp.mkdir(parents=True)
        save_model(model, tmp, meta, tokenizer, thresholds, merge=config.merge, evidence=evidence)
        report.write(tmp / "privacy.json")
        write_json(tmp / "metrics.json", evaluation.metrics)
        (tmp / "model_card.md").write_text(
            model_card(config, report, evaluation.metrics, summary,
                       evaluation.metrics["split"], max_length, n_cut), encoding="utf-8")
        plot_curve(fit.curve, tmp / "training_curve.png", config.epsilon)
        record = run_record(config.to_dict(), config.seed, dict(timer.timings))
        record.update({"data": summary, "max_length": max_length, "n_cut_train": n_cut,
                       "steps": fit.steps, "curve": fit.curve})
        write_json(tmp / "run.json", record)
        spend_id = ledger.spend(
            data.fingerprint, fit.epsilon, fit.delta, config.out.name, unit="record",
            accountant=fit.accountant if config.private else None,
            mechanism="dp-sgd" if config.private else "non-private",
            note=f"veil train ({config.adapter}, {fit.steps} steps)",
            label=config.data.name)
    ledger.mark_released(spend_id)
    if math.isinf(fit.epsilon):
        from veil.progress import info

        info("non-private model released: ε = ∞ recorded in the ledger")
    return report
