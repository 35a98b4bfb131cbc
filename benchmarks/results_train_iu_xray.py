"""README table: weighted F1 of `veil train` on IU X-ray (OpenI) reports, per ε and adapter.

Setup (fixed): ../shared/datasets/iu_xray_reports.csv, text = findings + impression,
labels = the `Problems` column (';'-separated), the 14 most frequent labels excluding
"No Indexing", a seeded 80/20 train/test split (split seed 0; 10% of all records carved
from the 80% for validation/threshold tuning), model minilm. Each run is one call of
`veil.train.facade.train`; metrics are on the 20% test split with 95% bootstrap CIs.

Usage:
    python benchmarks/results_train_iu_xray.py [--runs lora:inf,lora:10,lora:1,full:inf,evidence:1]
        [--lora-layers 2] [--max-length 128] [--out /tmp/veil-iu-xray]

Each adapter has one fixed recipe (RECIPES: learning rate, epochs, expected batch size;
DP runs use the "-dp" recipe). Prints a Markdown table and writes results.json in --out
(runs already in results.json are kept; rerun a row by deleting it). CPU-heavy: tens of
minutes per LoRA run on two cores, about an hour for full fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "iu_xray_reports.csv"


# One recipe per row (chosen once, before looking at the test split; see docs/train.md).
RECIPES: dict[str, dict[str, float | int | str]] = {  # "tfidf:inf" runs the sweep's baseline
    "lora": {"lr": 1e-3, "epochs": 5, "batch_size": 64},     # non-private LoRA
    # DP-LoRA: large expected batches, many epochs (noise on the mean gradient σC/B falls
    # faster than σ grows); 256 × 10 epochs gave 0.814 at ε = 10, 1024 × 15 gave 0.825
    "lora-dp": {"lr": 1e-2, "epochs": 30, "batch_size": 1024},
    "head": {"lr": 1e-2, "epochs": 10, "batch_size": 64},
    "head-dp": {"lr": 3e-2, "epochs": 30, "batch_size": 512},
    "full": {"lr": 5e-5, "epochs": 3, "batch_size": 32},
    # label evidence (--adapter evidence): chosen on validation weighted F1 (docs/train.md)
    "evidence": {"lr": 3e-2, "epochs": 30, "batch_size": 64, "head_init": "labels"},
    "evidence-dp": {"lr": 1e-1, "epochs": 100, "batch_size": 1024, "ema_decay": 0.95,
                    "head_init": "labels"},
}
DESCRIPTIONS = Path(__file__).resolve().parent / "iu_xray_label_descriptions.json"
"""Public descriptions of the 14 labels (radiology phrasing of each MeSH heading, written
once before any evidence run); used by the evidence adapter unless --label-descriptions."""


def _config(kind: str, eps: float, args: argparse.Namespace, out: Path):  # type: ignore[no-untyped-def]
    from veil.train.config import TrainConfig

    recipe = dict(RECIPES[kind + ("-dp" if math.isfinite(eps) and kind + "-dp" in RECIPES else "")])
    recipe.update({k: v for k, v in (("lr", args.lr), ("epochs", args.epochs),
                                     ("batch_size", args.batch_size)) if v is not None})
    return TrainConfig(
        data=args.data, out=out / f"{kind}-eps{eps:g}", text_col="findings,impression",
        label_col="Problems", label_sep=";", id_col="uid", top_labels=14,
        exclude_labels=("No Indexing",), val_frac=0.1, test_frac=0.2, split_seed=0,
        model=args.model, adapter=kind, epsilon=eps,  # type: ignore[arg-type]
        epochs=int(recipe["epochs"]), batch_size=int(recipe["batch_size"]),
        lr=float(recipe["lr"]),
        lr_schedule=args.lr_schedule or recipe.get("lr_schedule", "constant"),  # type: ignore[arg-type]
        ema_decay=float(recipe.get("ema_decay", 0.0) if args.ema_decay is None else args.ema_decay),
        lora_r=args.lora_r, lora_targets=tuple(args.lora_targets.split(",")),
        lora_layers=args.lora_layers or None,
        lora_freeze_a=args.lora_freeze_a and kind == "lora",
        max_length=args.max_length, long_docs="chunk", thresholds="per-label",
        clipping=args.clipping if math.isfinite(eps) else "flat",
        head_init=args.head_init or recipe.get("head_init", "random"),  # type: ignore[arg-type]
        head_init_scale=args.head_init_scale,
        label_descriptions=(args.label_descriptions or DESCRIPTIONS) if kind == "evidence"
        else args.label_descriptions if args.head_init == "labels" else None,
        seed=args.seed, ledger=out / "ledger.db", quiet=args.quiet, n_boot=1000)


def _baseline_row(args: argparse.Namespace, start: float) -> dict[str, object]:
    from veil.train.sweep import baseline_outcome

    res = baseline_outcome(_config("lora", math.inf, args, args.out))
    m = res.metrics

    def point(name: str) -> dict[str, object]:
        return {"value": float(m[name]), "ci95": None}

    return {"adapter": "tfidf-lr", "target_epsilon": "inf", "epsilon": "inf",
            "epsilon_rdp": None, "delta": 0.0, "noise_multiplier": None, "steps": None,
            "weighted_f1": point("weighted_f1"), "micro_f1": point("micro_f1"),
            "macro_f1": point("macro_f1"), "auroc_macro": {"value": None, "ci95": None},
            "n_test": len(res.test_ids), "seconds": round(time.perf_counter() - start, 1)}


def _fmt(value: object, spec: str) -> str:
    """A number for the table; "inf" stays as is, a missing value is a dash."""
    if value is None:
        return "–"
    return value if isinstance(value, str) else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--runs", default="lora:inf,lora:10,lora:1,full:inf")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--lora-layers", type=int, default=2, help="0: all layers")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-targets", default="query,value")
    parser.add_argument("--lora-freeze-a", action="store_true",
                        help="FFA-LoRA: LoRA's A stays at its seeded start, B trains")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--clipping", default="flat", choices=("flat", "group"),
                        help="DP runs: flat, or head and adapters clipped apart (C/√2 each)")
    for flag, kind in (("--lr", float), ("--epochs", int), ("--batch-size", int)):
        parser.add_argument(flag, type=kind, default=None,
                            help="override the recipe for every run (recipe search)")
    parser.add_argument("--lr-schedule", default=None, choices=("constant", "cosine", "linear"),
                        help="override every run's learning-rate schedule")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="release an EMA of the weights with this decay (same ε)")
    parser.add_argument("--head-init", default=None, choices=("random", "labels"),
                        help="labels: start the head from the label descriptions (no ε spent; "
                             "default: the recipe's, else random)")
    parser.add_argument("--head-init-scale", type=float, default=30.0)
    parser.add_argument("--label-descriptions", type=Path, default=None,
                        help="JSON descriptions (default for evidence runs: "
                             "benchmarks/iu_xray_label_descriptions.json)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/veil-iu-xray"))
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"dataset not found: {args.data}")
    from veil.train.facade import train

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for spec in args.runs.split(","):
        kind, eps_text = spec.split(":")
        eps = math.inf if eps_text == "inf" else float(eps_text)
        start = time.perf_counter()
        if kind == "tfidf":  # the sweep's TF-IDF + LR baseline on the same split (non-private)
            results[spec] = _baseline_row(args, start)
            results_path.write_text(json.dumps(results, indent=2, default=str))
            continue
        config = _config(kind, eps, args, args.out)
        res = train(config)
        m = res.metrics
        results[spec] = {
            "adapter": kind, "target_epsilon": eps_text,
            "epsilon": res.epsilon if math.isfinite(res.epsilon) else "inf",
            "epsilon_rdp": res.privacy.extra.get("epsilon_rdp"), "delta": res.delta,
            "noise_multiplier": res.privacy.noise_multiplier, "steps": res.fit.steps,
            "weighted_f1": m["weighted_f1"], "micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"],
            "auroc_macro": m["auroc_macro"], "n_test": m["n_examples"],
            "seconds": round(time.perf_counter() - start, 1),
            "epochs": res.fit.epochs, "lora_layers": args.lora_layers,
            "lora_r": args.lora_r, "lora_targets": args.lora_targets,
            "lora_freeze_a": args.lora_freeze_a,
            "max_length": res.max_length, "recipe": config.to_dict(),
        }
        results_path.write_text(json.dumps(results, indent=2, default=str))
        print(f"{spec}: weighted F1 {m['weighted_f1']['value']:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    print("\n| adapter | target ε | ε (PRV or RDP) | ε RDP | weighted F1 [95% CI] | micro F1 | "
          "macro F1 | AUROC | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results.values():
        w = r["weighted_f1"]
        ci = f"[{w['ci95'][0]:.3f}, {w['ci95'][1]:.3f}]" if w["ci95"] else ""
        eps_rdp = r["epsilon_rdp"]
        print(f"| {r['adapter']} | {r['target_epsilon']} | {_fmt(r['epsilon'], '.3g')} | "
              f"{'–' if eps_rdp is None else f'{eps_rdp:.3g}'} | {w['value']:.3f} {ci} | "
              f"{r['micro_f1']['value']:.3f} | {r['macro_f1']['value']:.3f} | "
              f"{_fmt(r['auroc_macro']['value'], '.3f')} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
