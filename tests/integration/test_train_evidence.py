"""`veil train --adapter evidence` end to end: release, ε, reload, resume, multi-class.

The toy reports signal each label by a word of its description; the model must find it
under DP. Reference values: dp-accounting for ε, scikit-learn for F1.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from train_checks import predict_and_evaluate_reproduce_metrics, write_labelled_csv

from veil.cli import run

KEYWORDS = {"alpha": "effusion", "beta": "fracture", "gamma": "nodule"}
DESCRIPTIONS = {"alpha": ["pleural effusion"], "beta": ["rib fracture"],
                "gamma": ["pulmonary nodule"]}
FILLER = ["the", "a", "of", "and", "chest", "lung", "view", "left", "right", "seen",
          "there", "is", "with", "mild", "stable"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_reports(path: Path, n: int, seed: int, *, single: bool = False) -> Path:
    """Sentences of filler; each present label adds a sentence with its keyword, and some
    absent labels a negated one ("No effusion.")."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labs = [rng.choice(list(KEYWORDS))] if single else [
            lab for lab in KEYWORDS if rng.random() < 0.4]
        parts = [" ".join(rng.choice(FILLER) for _ in range(rng.randint(4, 9))) + "."]
        for lab in KEYWORDS:
            if lab in labs:
                parts.append(f"There is a {rng.choice(FILLER)} {KEYWORDS[lab]}.")
            elif rng.random() < 0.5:
                parts.append(f"No {KEYWORDS[lab]}.")
        rng.shuffle(parts)
        rows.append({"id": f"r{seed}-{i}", "text": " ".join(parts), "labels": ";".join(labs)})
    return write_labelled_csv(path, rows)


def _args(data: Path, out: Path, root: Path, *extra: str) -> list[str]:
    desc = root / "descriptions.json"
    desc.write_text(json.dumps(DESCRIPTIONS))
    return ["train", str(data), "--out", str(out), "--label-col", "labels", "--label-sep", ";",
            "--id-col", "id", "--model", "minilm", "--adapter", "evidence",
            "--label-descriptions", str(desc), "--batch-size", "100", "--lr", "0.1",
            "--ledger", str(root / "ledger.db"), "--quiet", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evidence")
    data = write_reports(root / "toy.csv", 400, seed=0)
    test = write_reports(root / "test.csv", 150, seed=1)
    out = root / "model"
    assert run([*_args(data, out, root), "--epsilon", "8", "--epochs", "20",
                "--test", str(test)]) == 0
    return {"data": data, "test": test, "out": out, "root": root}


def test_release_reaches_weighted_f1_above_0_9_with_the_stated_guarantee(
        trained: dict[str, Path]) -> None:
    import dp_accounting
    from dp_accounting import pld

    out = trained["out"]
    for name in ("evidence.json", "head.safetensors", "labels.json", "thresholds.json",
                 "privacy.json", "metrics.json", "model_card.md", "training_curve.png",
                 "run.json", "veil_model.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weighted_f1"]["value"] > 0.9
    p = json.loads((out / "privacy.json").read_text())
    assert p["unit"] == "record" and p["extra"]["adapter"] == "evidence"
    assert p["steps"] == 20 * round(p["extra"]["n_train"] / 100)
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            p["sample_rate"], dp_accounting.GaussianDpEvent(p["noise_multiplier"])), p["steps"])
    reference = pld.PLDAccountant(value_discretization_interval=1e-4).compose(
        event).get_epsilon(p["delta"])
    assert p["epsilon"] == pytest.approx(reference, rel=0.01) and p["epsilon"] <= 8.0
    spec = json.loads((out / "evidence.json").read_text())
    assert spec["descriptions"] == DESCRIPTIONS
    assert "effusi" in spec["terms"]["alpha"]
    card = (out / "model_card.md").read_text()
    assert "adapter: evidence" in card and "effusion" not in card.split("## Data")[1]


def test_predict_and_evaluate_reload_the_model(trained: dict[str, Path]) -> None:
    predict_and_evaluate_reproduce_metrics(trained["root"], trained["out"], trained["test"])


def test_a_changed_term_rule_refuses_to_load(trained: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from veil.errors import BadInput
    from veil.train.bundle import load_model

    copy = tmp_path / "model"
    shutil.copytree(trained["out"], copy)
    spec = json.loads((copy / "evidence.json").read_text())
    spec["terms"]["alpha"] = {"other": 1}
    (copy / "evidence.json").write_text(json.dumps(spec))
    with pytest.raises(BadInput, match="other feature rules"):
        load_model(copy)
    spec["format"] = "veil-label-evidence/1"  # a folder from an earlier veil (other blocks)
    (copy / "evidence.json").write_text(json.dumps(spec))
    with pytest.raises(BadInput, match="evidence/1, this veil reads"):
        load_model(copy)


def test_resume_after_a_crash_gives_the_uninterrupted_run(tmp_path: Path) -> None:
    import torch

    from veil.train.bundle import load_model
    from veil.train.config import TrainConfig
    from veil.train.facade import train

    data = write_reports(tmp_path / "toy.csv", 200, seed=3)
    desc = tmp_path / "d.json"
    desc.write_text(json.dumps(DESCRIPTIONS))
    common = {"data": data, "label_col": "labels", "label_sep": ";", "id_col": "id",
              "model": "minilm", "adapter": "evidence", "label_descriptions": desc,
              "epsilon": 2.0, "epochs": 3, "batch_size": 50, "lr": 0.1, "ema_decay": 0.5,
              "ledger": tmp_path / "ledger.db", "quiet": True, "n_boot": 50}
    whole = train(TrainConfig(out=tmp_path / "whole", **common))  # type: ignore[arg-type]

    class Crash(RuntimeError):
        pass

    def crash(epoch: int, point: dict) -> None:
        if epoch == 2:
            raise Crash

    cfg = TrainConfig(out=tmp_path / "resumed", **common)  # type: ignore[arg-type]
    with pytest.raises(Crash):
        train(cfg, on_epoch_end=crash)
    assert not (tmp_path / "resumed").exists()
    resumed = train(cfg.replace(resume=True))
    assert resumed.fit.steps == whole.fit.steps and resumed.epsilon == whole.epsilon
    a, b = load_model(tmp_path / "whole"), load_model(tmp_path / "resumed")
    for (name, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters(),
                                   strict=True):
        assert torch.equal(pa.detach(), pb.detach()), name


def test_non_private_multiclass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_reports(tmp_path / "toy.csv", 300, seed=4, single=True)
    out = tmp_path / "model"
    args = _args(data, out, tmp_path, "--epsilon", "inf", "--epochs", "15", "--test-frac",
                 "0.3", "--lora-r", "4", "--max-length", "64")
    args[args.index("--label-sep"):args.index("--label-sep") + 2] = []
    assert run(args) == 0
    # options the adapter does not read are named (even under --quiet), not silently dropped
    assert "does not read --lora-r, --max-length (ignored)" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "labels.json").read_text())["task"] == "multi-class"
    assert json.loads((out / "thresholds.json").read_text())["rule"] == "argmax"
    assert metrics["weighted_f1"]["value"] > 0.9


def test_sweep_runs_evidence_beside_a_transformer_head(tmp_path: Path) -> None:
    """--label-descriptions without --head-init labels goes to the evidence runs only."""
    data = write_reports(tmp_path / "toy.csv", 240, seed=5)
    desc = tmp_path / "d.json"
    desc.write_text(json.dumps(DESCRIPTIONS))
    out = tmp_path / "sweep"
    code = run(["sweep", str(data), "--label-col", "labels", "--label-sep", ";", "--id-col",
                "id", "--model", "tiny-bert", "--adapters", "head,evidence", "--epsilons", "4",
                "--seeds", "1", "--epochs", "8", "--batch-size", "60", "--lr", "0.1",
                "--label-descriptions", str(desc), "--test-frac", "0.25", "--n-boot", "100",
                "--ledger", str(tmp_path / "ledger.db"), "--out", str(out), "--quiet"])
    assert code == 0
    with (out / "results.csv").open() as fh:
        rows = {r["adapter"]: r for r in csv.DictReader(fh)}
    assert {"head", "evidence"} <= set(rows)
    evidence = json.loads((out / "runs" / "evidence_eps4_seed0" / "run.json").read_text())
    head = json.loads((out / "runs" / "head_eps4_seed0" / "run.json").read_text())
    assert evidence["config"]["label_descriptions"] == str(desc)
    assert head["config"]["label_descriptions"] is None
    assert float(rows["evidence"]["weighted_f1"]) > 0.9


def test_sweep_option_combinations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--lora-freeze-a with lora and descriptions for evidence is valid; unused descriptions
    and --lora-freeze-a without lora are refused before training (exit 2)."""
    from veil.train.config import TrainConfig
    from veil.train.sweep import placeholder_adapter

    assert placeholder_adapter(("lora", "evidence"), lora_freeze_a=True, head_init="random",
                               descriptions=True) == "lora"
    assert placeholder_adapter(("lora", "evidence"), lora_freeze_a=False, head_init="random",
                               descriptions=True) == "evidence"
    data = write_reports(tmp_path / "toy.csv", 60, seed=6)
    desc = tmp_path / "d.json"
    desc.write_text(json.dumps(DESCRIPTIONS))
    common = ["sweep", str(data), "--label-col", "labels", "--label-sep", ";", "--model",
              "tiny-bert", "--epsilons", "4", "--seeds", "1", "--ledger",
              str(tmp_path / "l.db"), "--out", str(tmp_path / "s"), "--quiet"]
    assert run([*common, "--adapters", "lora,head", "--label-descriptions", str(desc)]) == 2
    assert "--label-descriptions needs" in capsys.readouterr().err
    assert run([*common, "--adapters", "head", "--lora-freeze-a"]) == 2
    assert "needs lora among --adapters" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    # the combination the reviewer found refused: each run's own options are valid
    from veil.train.sweep import _config, grid

    base = TrainConfig(data=data, out=tmp_path / "x", label_col="labels", label_sep=";",
                       adapter="lora", lora_freeze_a=True, epsilon=4.0)
    for p in grid([4.0], ("lora", "evidence"), 1, 0):
        cfg = _config(base, p, tmp_path / "s", desc)
        assert cfg.label_descriptions == (desc if p.adapter == "evidence" else None)
        assert cfg.lora_freeze_a == (p.adapter == "lora")
