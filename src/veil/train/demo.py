"""``veil demo`` stage of the train pipeline: a DP classifier beside a non-private one.

Trains on the demo corpus (``reports.csv``: findings + impression, the
``;``-joined ``labels``) twice with the same recipe — DP-SGD at ε = 3 per
record, and without privacy — and prints both weighted F1 figures on the same
held-out test split. The recipe is sized for a laptop (minilm, LoRA on the top
layer whose frozen layers below are cached, short windows): about a minute or
two per model on two CPU cores. Outputs go to ``OUT/train/{dp-eps3,non-private}``;
spends go to a ledger inside ``OUT/train`` (the demo data are synthetic).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veil.train.config import TrainConfig

DEMO_EPSILON = 3.0


def demo_config(out_dir: Path, epsilon: float, *, seed: int, model: str = "minilm"
                ) -> TrainConfig:
    """The demo's training options for one ε (kept small enough for two CPU cores)."""
    from veil.progress import is_quiet
    from veil.train.config import TrainConfig as Config

    private = math.isfinite(epsilon)
    name = f"dp-eps{epsilon:g}" if private else "non-private"
    # DP: larger expected batches, more epochs and a larger step (few, noisy steps)
    epochs, batch_size, lr = (10, 128, 2e-2) if private else (6, 32, 5e-3)
    return Config(
        data=out_dir / "reports.csv", out=out_dir / "train" / name,
        text_col="findings,impression", label_col="labels", label_sep=";", id_col="id",
        model=model, adapter="lora", lora_layers=1, lora_r=8, epsilon=epsilon,
        max_length=96, long_docs="chunk", val_frac=0.15, test_frac=0.2,
        split_seed=seed, seed=seed, thresholds="global", epochs=epochs,
        batch_size=batch_size, lr=lr,
        ledger=out_dir / "train" / "ledger.db", quiet=is_quiet(), n_boot=500)


def run_demo_stage(out_dir: Path, *, seed: int) -> None:
    """Train the demo's DP (ε = 3) and non-private classifiers and print their weighted F1."""
    from veil.progress import console, info
    from veil.train.facade import train

    out_dir = Path(out_dir)
    info("train: DP-LoRA classifier (ε = 3) and a non-private one on the demo corpus")
    figures = {}
    for eps in (DEMO_EPSILON, math.inf):
        result = train(demo_config(out_dir, eps, seed=seed))
        figures[eps] = result
    dp, plain = figures[DEMO_EPSILON], figures[math.inf]
    console.print(
        f"train: weighted F1 on {dp.evaluation.metrics['n_examples']} held-out reports — "
        f"DP (ε = {dp.epsilon:.3g}, δ = {dp.delta:.2g} per report) {dp.weighted_f1:.3f}, "
        f"non-private {plain.weighted_f1:.3f}  -> {out_dir / 'train'}")
