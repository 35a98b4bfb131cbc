"""`veil train` / `predict` / `evaluate` end to end on a toy separable multi-label set (tiny-bert).

Reference values come from closed forms or independent libraries (dp-accounting for ε,
scikit-learn for metrics), never from earlier runs of this code.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
from train_checks import predict_and_evaluate_reproduce_metrics, write_labelled_csv

from veil.cli import run

KEYWORDS = {"alpha": "effusion", "beta": "fracture", "gamma": "nodule"}
FILLER = ["the", "a", "of", "and", "chest", "lung", "normal", "view", "left", "right", "seen",
          "there", "is", "no", "with"]


def write_toy(path: Path, n: int, seed: int, *, long_every: int = 0) -> Path:
    """Each label is signalled by its own keyword (twice); filler words elsewhere."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labs = [lab for lab in KEYWORDS if rng.random() < 0.4]
        words = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))]
        if long_every and i % long_every == 0:
            words += [rng.choice(FILLER) for _ in range(60)]
        for lab in labs:
            for _ in range(2):
                words.insert(rng.randrange(len(words) + 1), KEYWORDS[lab])
        rows.append({"id": f"r{seed}-{i}", "text": " ".join(words), "labels": ";".join(labs)})
    return write_labelled_csv(path, rows)


BASE = ["--label-col", "labels", "--label-sep", ";", "--id-col", "id", "--model", "tiny-bert",
        "--batch-size", "40", "--lr", "0.02", "--lora-layers", "1", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One DP run (ε = 8) with a separate test file, shared by several checks."""
    root = tmp_path_factory.mktemp("train")
    data = write_toy(root / "toy.csv", 400, seed=0)
    test = write_toy(root / "test.csv", 150, seed=1)
    ledger = root / "ledger.db"
    out = root / "model"
    code = run(["train", str(data), "--out", str(out), *BASE, "--epsilon", "8", "--epochs", "5",
                "--test", str(test), "--ledger", str(ledger), "--merge"])
    assert code == 0
    return {"data": data, "test": test, "out": out, "ledger": ledger, "root": root}


def test_output_folder_and_privacy_report(trained: dict[str, Path]) -> None:
    out = trained["out"]
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                 "labels.json", "thresholds.json", "privacy.json", "metrics.json",
                 "model_card.md", "training_curve.png", "run.json", "veil_model.json",
                 "merged/config.json", "merged/head.safetensors"):
        assert (out / name).is_file(), name
    privacy = json.loads((out / "privacy.json").read_text())
    assert privacy["unit"] == "record" and privacy["mechanism"] == "dp-sgd"
    for key in ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps",
                "clipping_norm", "accountant"):
        assert privacy[key] is not None, key
    assert privacy["delta"] == pytest.approx(min(1e-5, 1 / (10 * privacy["extra"]["n_train"])))
    assert privacy["epsilon"] <= 8.0 and privacy["epsilon"] > 7.5  # ends at the target
    assert privacy["extra"]["epsilon_rdp"] >= privacy["epsilon"]  # RDP is the looser bound
    assert "not covered" in privacy["statement"].lower()
    assert not (out.parent / f".{out.name}.checkpoints").exists()  # private state removed


def test_group_clipping_run_has_the_flat_runs_noise_and_epsilon(
        trained: dict[str, Path], tmp_path: Path) -> None:
    """--clipping group changes how the bound C is shared, not σ, the steps or ε."""
    out = tmp_path / "group"
    code = run(["train", str(trained["data"]), "--out", str(out), *BASE, "--epsilon", "8",
                "--epochs", "5", "--test", str(trained["test"]), "--clipping", "group"])
    assert code == 0
    flat = json.loads((trained["out"] / "privacy.json").read_text())
    group = json.loads((out / "privacy.json").read_text())
    assert group["extra"]["clipping"].startswith("group")
    assert flat["extra"]["clipping"].startswith("flat")
    for key in ("noise_multiplier", "sample_rate", "steps", "clipping_norm", "epsilon"):
        assert group[key] == pytest.approx(flat[key]), key
    assert json.loads((out / "metrics.json").read_text())["weighted_f1"]["value"] > 0.5


def test_label_head_init_spends_the_same_epsilon(trained: dict[str, Path], tmp_path: Path) -> None:
    """--head-init labels reads no record: σ, q, steps and ε are the random-init run's."""
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps({"alpha": "effusion", "beta": ["fracture"]}))
    out = tmp_path / "labels"
    code = run(["train", str(trained["data"]), "--out", str(out), *BASE, "--epsilon", "8",
                "--epochs", "5", "--test", str(trained["test"]), "--head-init", "labels",
                "--head-init-scale", "20", "--label-descriptions", str(descriptions)])
    assert code == 0
    plain = json.loads((trained["out"] / "privacy.json").read_text())
    labels = json.loads((out / "privacy.json").read_text())
    for key in ("noise_multiplier", "sample_rate", "steps", "clipping_norm", "epsilon"):
        assert labels[key] == pytest.approx(plain[key]), key
    recipe = json.loads((out / "run.json").read_text())["config"]
    assert (recipe["head_init"], recipe["head_init_scale"]) == ("labels", 20.0)
    assert recipe["label_descriptions"] == str(descriptions)
    assert "no record read" in labels["extra"]["head_init"]
    assert plain["extra"]["head_init"] == "random (seeded)"
    assert "label descriptions" in (out / "model_card.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["weighted_f1"]["value"] > 0.5


def test_lora_freeze_a_trains_b_only_and_spends_the_same_epsilon(
        trained: dict[str, Path], tmp_path: Path) -> None:
    """--lora-freeze-a (FFA-LoRA): A stays at the seeded start, B trains, σ/q/steps/ε unchanged."""
    import torch
    from safetensors.torch import load_file

    from veil.train.classifier import build_classifier

    out = tmp_path / "ffa"
    code = run(["train", str(trained["data"]), "--out", str(out), *BASE, "--epsilon", "8",
                "--epochs", "5", "--test", str(trained["test"]), "--lora-freeze-a"])
    assert code == 0
    plain = json.loads((trained["out"] / "privacy.json").read_text())
    ffa = json.loads((out / "privacy.json").read_text())
    for key in ("noise_multiplier", "sample_rate", "steps", "clipping_norm", "epsilon"):
        assert ffa[key] == pytest.approx(plain[key]), key
    assert ffa["extra"]["lora_freeze_a"] is True and plain["extra"]["lora_freeze_a"] is False
    assert "read no record" in ffa["extra"]["covered"]
    assert "FFA-LoRA" in (out / "model_card.md").read_text()
    saved = {k.replace(".default", ""): v
             for k, v in load_file(str(out / "adapter" / "adapter_model.safetensors")).items()}
    start = build_classifier("tiny-bert", 3, lora_layers=1, seed=0)
    fresh = {n.replace(".default", ""): p.detach() for n, p in start.named_parameters()
             if "lora_" in n}
    a_keys = [k for k in fresh if ".lora_A." in k]
    b_keys = [k for k in fresh if ".lora_B." in k]
    assert a_keys and b_keys and set(fresh) <= set(saved)
    for k in a_keys:  # A never moved from the seeded start
        assert torch.equal(saved[k], fresh[k]), k
    for k in b_keys:  # B starts at zero and trained
        assert not torch.any(fresh[k]) and saved[k].abs().sum() > 0, k
    other = {k.replace(".default", ""): v for k, v in load_file(
        str(trained["out"] / "adapter" / "adapter_model.safetensors")).items()}
    assert any(not torch.equal(other[k], fresh[k]) for k in a_keys)  # plain LoRA moves A
    ev = tmp_path / "again.json"  # the saved A (not a fresh draw) is what predict loads
    assert run(["evaluate", str(out), str(trained["test"]), "--label-col", "labels",
                "--label-sep", ";", "--id-col", "id", "--out", str(ev), "--quiet"]) == 0
    saved_f1 = json.loads((out / "metrics.json").read_text())["weighted_f1"]["value"]
    assert json.loads(ev.read_text())["weighted_f1"]["value"] == pytest.approx(saved_f1, abs=1e-9)
    assert saved_f1 > 0.5


def test_unknown_label_in_descriptions_exits_2(trained: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps({"zeta": "not a label of this data"}))
    out = tmp_path / "out"
    code = run(["train", str(trained["data"]), "--out", str(out), *BASE, "--epsilon", "8",
                "--head-init", "labels", "--label-descriptions", str(descriptions),
                "--ledger", str(tmp_path / "l.db")])
    assert code == 2
    err = capsys.readouterr().err
    assert "zeta" in err and "descriptions.json" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["descriptions.json"]


def test_separable_toy_reaches_weighted_f1_above_0_9(trained: dict[str, Path]) -> None:
    metrics = json.loads((trained["out"] / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["weighted_f1"]["value"] > 0.9
    lo, hi = metrics["weighted_f1"]["ci95"]
    assert lo <= metrics["weighted_f1"]["value"] <= hi


def test_reported_epsilon_equals_dp_accounting(trained: dict[str, Path]) -> None:
    import dp_accounting
    from dp_accounting import pld, rdp

    p = json.loads((trained["out"] / "privacy.json").read_text())
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            p["sample_rate"], dp_accounting.GaussianDpEvent(p["noise_multiplier"])), p["steps"])
    pld_eps = pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(
        p["delta"])
    rdp_eps = rdp.RdpAccountant().compose(event).get_epsilon(p["delta"])
    assert p["accountant"] == "prv"
    assert p["epsilon"] == pytest.approx(pld_eps, rel=0.01)
    assert p["extra"]["epsilon_rdp"] == pytest.approx(rdp_eps, rel=0.01)
    run_json = json.loads((trained["out"] / "run.json").read_text())
    n_train = p["extra"]["n_train"]
    assert p["steps"] == 5 * round(n_train / 40) == run_json["steps"]


def test_ledger_records_the_spend(trained: dict[str, Path]) -> None:
    from veil.privacy.ledger import Ledger, fingerprint_file

    book = Ledger(trained["ledger"])
    spends = book.spends(fingerprint_file(trained["data"]))
    p = json.loads((trained["out"] / "privacy.json").read_text())
    assert len(spends) == 1
    assert spends[0].epsilon == pytest.approx(p["epsilon"])
    assert spends[0].status == "released" and spends[0].unit == "record"


def test_predict_and_evaluate_reproduce_metrics(trained: dict[str, Path]) -> None:
    labels, rows = predict_and_evaluate_reproduce_metrics(trained["root"], trained["out"],
                                                          trained["test"])
    assert len(rows) == 150 and set(rows[0]["scores"]) == set(labels)


def test_merged_model_gives_the_adapter_model_predictions(trained: dict[str, Path]) -> None:
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from veil.models import load_encoder
    from veil.train.bundle import load_model
    from veil.train.classifier import EncoderClassifier
    from veil.train.features import encode, score, token_ids

    loaded = load_model(trained["out"])
    texts = ["effusion effusion the chest", "nodule left fracture fracture", "normal view"]
    probs, _ = loaded.scores(texts)
    merged_dir = trained["out"] / "merged"
    merged = EncoderClassifier(load_encoder(str(merged_dir)), len(loaded.labels))
    merged.classifier.load_state_dict(load_file(str(merged_dir / "head.safetensors")))
    enc = encode(loaded.tokenizer, token_ids(loaded.tokenizer, texts), 64, False)
    with torch.no_grad():
        again = score(merged, enc, True)
    assert np.allclose(probs, again, atol=1e-5)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "constant, pre-schedule checkpoint",
                                      "constant, ema"])
def test_resume_after_a_crash_gives_the_uninterrupted_epsilon(tmp_path: Path,
                                                              schedule: str) -> None:
    import torch

    from veil.train.bundle import load_model
    from veil.train.checkpoint import checkpoint_dir
    from veil.train.config import TrainConfig
    from veil.train.facade import train

    data = write_toy(tmp_path / "toy.csv", 160, seed=3)
    common = {"data": data, "label_col": "labels", "label_sep": ";", "id_col": "id",
              "model": "tiny-bert", "epsilon": 2.0, "epochs": 2, "batch_size": 32,
              "lr": 0.02, "lr_schedule": schedule.split(",")[0], "ledger": tmp_path / "ledger.db",
              "quiet": True, "n_boot": 50, "ema_decay": 0.7 if "ema" in schedule else 0.0}
    whole = train(TrainConfig(out=tmp_path / "whole", **common))

    class Crash(RuntimeError):
        pass

    def crash(epoch: int, point: dict) -> None:
        if epoch == 1:
            raise Crash

    cfg = TrainConfig(out=tmp_path / "resumed", **common)
    with pytest.raises(Crash):
        train(cfg, on_epoch_end=crash)
    assert not (tmp_path / "resumed").exists()
    last = checkpoint_dir(tmp_path / "resumed") / "last.pt"
    assert last.is_file()
    if "pre-schedule" in schedule:  # as written before --lr-schedule existed
        blob = torch.load(last, weights_only=False)
        del blob["state"]["lr_schedule"]
        torch.save(blob, last)
    resumed = train(cfg.replace(resume=True))
    assert resumed.fit.steps == whole.fit.steps == 2 * round(whole.fit.n_train / 32)
    assert resumed.epsilon == whole.epsilon
    assert resumed.weighted_f1 == pytest.approx(whole.weighted_f1)
    a, b = load_model(tmp_path / "whole"), load_model(tmp_path / "resumed")
    for (name, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters(),
                                   strict=True):
        if "original_module" not in name:  # PEFT's unused copy of the untrained head
            assert pa.detach().equal(pb.detach()), name
    assert not checkpoint_dir(tmp_path / "resumed").exists()


def test_a_checkpoint_resumes_only_under_the_same_schedule(tmp_path: Path) -> None:
    from veil.train.config import TrainConfig

    base = TrainConfig(data=tmp_path / "d.csv", out=tmp_path / "m")
    prints = {s: base.replace(lr_schedule=s).fingerprint() for s in ("constant", "cosine",
                                                                       "linear")}
    assert len(set(prints.values())) == 3
    assert base.fingerprint() == prints["constant"]
    averaged = {d: base.replace(ema_decay=d).fingerprint() for d in (0.0, 0.5, 0.9)}
    assert len(set(averaged.values())) == 3
    assert base.fingerprint() == averaged[0.0]
    heads = {base.replace(head_init="labels").fingerprint(),
             base.replace(head_init="labels", head_init_scale=3.0).fingerprint(),
             base.replace(head_init="labels", label_descriptions=tmp_path / "d.json").fingerprint()}
    assert len(heads) == 3 and base.fingerprint() not in heads
    assert base.replace(head_init="random").fingerprint() == base.fingerprint()
    assert base.replace(lora_freeze_a=True).fingerprint() != base.fingerprint()
    assert base.replace(lora_freeze_a=False).fingerprint() == base.fingerprint()


@pytest.mark.parametrize("epsilon", [3.0, math.inf])
def test_ema_releases_the_average_of_the_same_iterates(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       epsilon: float) -> None:
    """--ema-decay d releases d^T w_0 + Σ (1 − d) d^(T−t) w_t of the iterates w_t it took.

    The iterates, ε and σ are those of the same run without averaging (post-processing).
    """
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from veil.train.config import TrainConfig
    from veil.train.facade import train

    iterates: list[list[np.ndarray]] = []
    plain_step = torch.optim.AdamW.step

    def spy(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        params = self.param_groups[0]["params"]
        if not iterates:
            iterates.append([p.detach().numpy().copy() for p in params])
        out = plain_step(self, *args, **kwargs)
        iterates.append([p.detach().numpy().copy() for p in params])
        return out

    data = write_toy(tmp_path / "toy.csv", 100, seed=8)
    common = {"data": data, "label_col": "labels", "label_sep": ";", "model": "tiny-bert",
              "adapter": "head", "epsilon": epsilon, "epochs": 2, "batch_size": 20, "lr": 0.05,
              "ledger": tmp_path / "l.db", "quiet": True, "n_boot": 20}
    decay = 0.8
    last = train(TrainConfig(out=tmp_path / "last", **common))  # type: ignore[arg-type]
    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    avg = train(TrainConfig(out=tmp_path / "avg", ema_decay=decay, **common))  # type: ignore[arg-type]
    total = avg.fit.steps
    assert total >= 8 and len(iterates) == total + 1
    assert avg.fit.noise_multiplier == last.fit.noise_multiplier
    assert avg.epsilon == last.epsilon
    released = load_file(str(tmp_path / "avg" / "head.safetensors"))
    last_iterate = load_file(str(tmp_path / "last" / "head.safetensors"))
    for i, key in enumerate(("weight", "bias")):
        trail = [step[i] for step in iterates]
        assert trail[0].shape == tuple(released[key].shape)
        expected = decay ** total * trail[0] + sum(
            (1 - decay) * decay ** (total - t) * trail[t] for t in range(1, total + 1))
        np.testing.assert_allclose(released[key].numpy(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(last_iterate[key].numpy(), trail[-1])
        assert not np.allclose(expected, trail[-1])  # the average is not the last iterate


@pytest.mark.parametrize(("epsilon", "schedule"), [(3.0, "cosine"), (3.0, "linear"),
                                                     (math.inf, "cosine")])
def test_lr_schedule_sets_every_optimizer_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              epsilon: float, schedule: str) -> None:
    """The learning rate of step s of T is lr·(1 + cos(πs/T))/2 (cosine) or lr·(1 − s/T)."""
    import torch

    from veil.train.config import TrainConfig
    from veil.train.facade import train

    seen: list[float] = []
    plain_step = torch.optim.AdamW.step

    def spy(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        seen.append(self.param_groups[0]["lr"])
        return plain_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    data = write_toy(tmp_path / "toy.csv", 100, seed=5)
    res = train(TrainConfig(data=data, out=tmp_path / "m", label_col="labels", label_sep=";",
                            model="tiny-bert", epsilon=epsilon, epochs=3, batch_size=20,
                            lr=0.05, lr_schedule=schedule, ledger=tmp_path / "l.db",
                            quiet=True, n_boot=20))  # type: ignore[arg-type]
    total = res.fit.steps
    assert total >= 9 and len(seen) == total
    if schedule == "cosine":
        expected = [0.05 * 0.5 * (1 + math.cos(math.pi * s / total)) for s in range(total)]
    else:
        expected = [0.05 * (1 - s / total) for s in range(total)]
    assert seen == pytest.approx(expected, rel=1e-9)


def test_lora_weights_move_and_checkpoint_round_trips(tmp_path: Path) -> None:
    import torch

    from veil.train.checkpoint import Checkpointer
    from veil.train.config import TrainConfig
    from veil.train.facade import train

    data = write_toy(tmp_path / "toy.csv", 120, seed=4)
    seen: dict[str, dict] = {}

    cfg = TrainConfig(data=data, out=tmp_path / "m", label_col="labels", label_sep=";",
                      model="tiny-bert", epsilon=4.0, epochs=1, batch_size=24, quiet=True,
                      ledger=tmp_path / "l.db", n_boot=20)
    ck = Checkpointer(cfg.out, cfg.fingerprint(), "")

    def grab(epoch: int, point: dict) -> None:
        blob = torch.load(ck.path, weights_only=False)
        seen["state"] = blob["state"]

    train(cfg, on_epoch_end=grab)
    trainable = seen["state"]["trainer"]["trainable"]
    lora_b = {k: v for k, v in trainable.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # B starts at zero
    assert all("layer" in k or "classifier" in k for k in trainable)
    ck2 = Checkpointer(cfg.out, cfg.fingerprint(), "abc")
    ck2.save(seen["state"])
    back = ck2.load()
    assert back is not None
    for k, v in trainable.items():
        assert torch.equal(back["trainer"]["trainable"][k], v)
    from veil.errors import BadInput

    with pytest.raises(BadInput, match="different training options"):
        Checkpointer(cfg.out, cfg.replace(epsilon=5.0).fingerprint(), "abc").load()
    with pytest.raises(BadInput, match="different data"):
        Checkpointer(cfg.out, cfg.fingerprint(), "other").load()


def test_non_private_head_multiclass_and_chunking(tmp_path: Path) -> None:
    rows = ["id,text,label"]
    rng = random.Random(5)
    for i in range(150):
        lab = rng.choice(list(KEYWORDS))
        filler = " ".join(rng.choice(FILLER) for _ in range(70 if i % 5 == 0 else 8))
        rows.append(f"m{i},{filler} {KEYWORDS[lab]} {KEYWORDS[lab]},{lab}")
    data = tmp_path / "mc.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "mc"
    code = run(["train", str(data), "--out", str(out), "--id-col", "id", "--model", "tiny-bert",
                "--epsilon", "inf", "--adapter", "head", "--epochs", "3", "--batch-size", "16",
                "--max-length", "32", "--long-docs", "chunk", "--chunk-pool", "max", "--quiet",
                "--ledger", str(tmp_path / "l.db")])
    assert code == 0
    privacy = json.loads((out / "privacy.json").read_text())
    assert privacy["epsilon"] == "inf" and privacy["unit"] == "record"
    assert json.loads((out / "thresholds.json").read_text())["rule"] == "argmax"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"]["value"] == metrics["micro_f1"]["value"]
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["max_length"] == 32 and run_json["n_cut_train"] > 0
    assert (out / "head.safetensors").is_file() and not (out / "adapter").exists()


BAD = [
    (["--epsilon", "0"], "epsilon"),
    (["--epsilon", "-1"], "epsilon"),
    (["--delta", "1"], "delta"),
    (["--delta", "0.05"], "1/n"),
    (["--batch-size", "5000"], "larger than"),
    (["--model", "no-such-model"], "unknown model"),
    (["--labels", "alpha"], "two"),
    (["--labels", "alpha,zeta", "--strict"], "fewer than 2"),
    (["--labels", "alpha,zeta"], "fewer than two"),
    (["--label-col", "nope"], "nope"),
    (["--max-length", "abc"], "max-length"),
    (["--clipping", "nope"], "clipping"),
    (["--lr-schedule", "step"], "--lr-schedule"),
    (["--ema-decay", "1"], "--ema-decay"),
    (["--ema-decay", "-0.5"], "--ema-decay"),
    (["--clipping", "group", "--adapter", "full"], "clipping"),
    (["--head-init", "zero"], "--head-init"),
    (["--head-init", "labels", "--head-init-scale", "0"], "--head-init-scale"),
    (["--label-descriptions", "d.json"], "needs --head-init labels"),
    (["--lora-freeze-a", "--adapter", "head"], "needs --adapter lora"),
    (["--adapter", "evidence", "--merge"], "--merge"),
    (["--adapter", "evidence", "--clipping", "group"], "clipping"),
    (["--adapter", "nope"], "--adapter"),
]


@pytest.mark.parametrize(("extra", "needle"), BAD)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, extra: list[str], needle: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = write_toy(tmp_path / "toy.csv", 60, seed=6)
    out = tmp_path / "out"
    args = ["train", str(data), "--out", str(out), *BASE, "--epsilon", "1",
            "--ledger", str(tmp_path / "l.db")]
    assert run([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert needle.lower() in err.lower()
    assert len(err.strip().splitlines()) == 1 and "effusion" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.csv"]  # no ledger, no output


def test_budget_refusal_exits_3_before_training(tmp_path: Path) -> None:
    from veil.privacy.ledger import Ledger, fingerprint_file
    from veil.train.checkpoint import checkpoint_dir

    data = write_toy(tmp_path / "toy.csv", 60, seed=7)
    book = Ledger(tmp_path / "l.db")
    book.set_budget(fingerprint_file(data), 0.5)
    out = tmp_path / "out"
    code = run(["train", str(data), "--out", str(out), *BASE, "--epsilon", "1",
                "--ledger", str(tmp_path / "l.db")])
    assert code == 3
    assert not out.exists() and not checkpoint_dir(out).exists()
    assert book.spent(fingerprint_file(data)) == 0.0
    code = run(["train", str(data), "--out", str(out), *BASE, "--epsilon", "inf",
                "--ledger", str(tmp_path / "l.db")])
    assert code == 3  # a non-private model spends ε = ∞: refused by any finite budget
    assert math.isclose(book.spent(fingerprint_file(data)), 0.0)


# --- real data (IU X-ray, ../shared/datasets): slow, CPU-heavy (tens of minutes per run) ---

def _iu_config(shared: Path, out: Path, adapter: str, epsilon: float, **kw: object):  # type: ignore[no-untyped-def]
    """The README setup: findings + impression, top-14 Problems without "No Indexing",
    seeded 80/20 split (10% of all records carved from the 80% for thresholds)."""
    from veil.train.config import TrainConfig

    base: dict[str, object] = dict(
        data=shared / "iu_xray_reports.csv", out=out, text_col="findings,impression",
        label_col="Problems", label_sep=";", id_col="uid", top_labels=14,
        exclude_labels=("No Indexing",), val_frac=0.1, test_frac=0.2, split_seed=0,
        model="minilm", adapter=adapter, epsilon=epsilon, lora_layers=2, max_length=128,
        long_docs="chunk", ledger=out.parent / "ledger.db", quiet=True, n_boot=200)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def iu_nonprivate(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from veil.train.facade import train

    root = tmp_path_factory.mktemp("iu")
    return train(_iu_config(shared_datasets, root / "lora-inf", "lora", math.inf, lr=1e-3,
                            epochs=5, batch_size=64))


@pytest.mark.slow
@pytest.mark.real_data
def test_iu_xray_nonprivate_lora_reaches_the_goal(iu_nonprivate) -> None:  # type: ignore[no-untyped-def]
    assert iu_nonprivate.evaluation.metrics["n_examples"] == 765
    assert iu_nonprivate.weighted_f1 >= 0.88


@pytest.mark.slow
@pytest.mark.real_data
# The goals, asserted for seed 0. Known state (docs/train.md): at ε = 10 the recipe
# LoRA r = 4, 45 epochs gives 0.865 for seed 0 (gap 0.026; five seeds: 0.022 [0.015, 0.029]);
# at ε = 1 DP-LoRA is far off (r = 8, 30 epochs: gap 0.305) and the label-evidence adapter
# (benchmarks/iu_xray_label_descriptions.json, --head-init labels) gives 0.838 for seed 0
# (gap 0.053; five seeds: 0.852 ± 0.011, gap 0.035 [0.022, 0.049]).
@pytest.mark.parametrize(("epsilon", "gap", "adapter", "recipe"), [
    (10.0, 0.03, "lora", {"lora_r": 4, "epochs": 45, "lr": 1e-2, "batch_size": 1024}),
    (1.0, 0.08, "evidence", {"epochs": 100, "lr": 1e-1, "batch_size": 1024, "ema_decay": 0.95,
                             "head_init": "labels",
                             "label_descriptions": Path(__file__).resolve().parents[2]
                             / "benchmarks" / "iu_xray_label_descriptions.json"})])
def test_iu_xray_dp_close_to_nonprivate_lora(iu_nonprivate, shared_datasets: Path,  # type: ignore[no-untyped-def]
                                             tmp_path: Path, epsilon: float, gap: float,
                                             adapter: str, recipe: dict[str, object]) -> None:
    from veil.train.facade import train

    res = train(_iu_config(shared_datasets, tmp_path / f"{adapter}-{epsilon:g}", adapter,
                           epsilon, **recipe))
    assert res.epsilon <= epsilon
    assert res.weighted_f1 >= iu_nonprivate.weighted_f1 - gap


def test_sweep_with_the_real_trainer(tmp_path: Path) -> None:
    """`veil sweep` end to end with the real facade (tiny-bert): every run is a real release.

    Each DP run's certified ε is its target (calibration), the rows of results.csv are the
    runs' own metrics.json figures, the baseline row is scikit-learn's TF-IDF + LR, and the
    ledger holds exactly the DP spends.
    """
    from veil.privacy.ledger import Ledger, fingerprint_file

    data = write_toy(tmp_path / "toy.csv", 240, seed=3)
    out = tmp_path / "sweep"
    ledger = tmp_path / "ledger.db"
    code = run(["sweep", str(data), *BASE, "--epsilons", "4,inf", "--seeds", "1",
                "--adapters", "lora", "--epochs", "6", "--test-frac", "0.25",
                "--n-boot", "200", "--ledger", str(ledger), "--out", str(out)])
    assert code == 0
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    by_eps = {r["epsilon"]: r for r in rows if r["adapter"] == "lora"}
    assert set(by_eps) == {"4", "inf"}
    assert any(r["adapter"] != "lora" for r in rows)  # the TF-IDF baseline row
    run_dirs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    assert len(run_dirs) == 2
    seen = set()
    for run_dir in run_dirs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        privacy = json.loads((run_dir / "privacy.json").read_text())
        eps = privacy["epsilon"]
        key = "inf" if eps is None or not math.isfinite(float(eps)) else "4"
        seen.add(key)
        assert float(by_eps[key]["weighted_f1"]) == pytest.approx(
            metrics["weighted_f1"]["value"], abs=1e-9)
        if key == "4":
            assert float(eps) == pytest.approx(4.0, rel=0.01)
            assert float(by_eps[key]["epsilon_certified"]) == pytest.approx(float(eps), rel=1e-6)
    assert seen == {"4", "inf"}
    # it learned: predicting every label for every record scores about 0.57 here (prevalence 0.4)
    assert float(by_eps["inf"]["weighted_f1"]) > 0.75
    spends = Ledger(ledger).spends(fingerprint_file(data))
    finite = [s.epsilon for s in spends if math.isfinite(s.epsilon)]
    assert sum(finite) == pytest.approx(4.0, rel=0.01)
    assert json.loads((out / "paired_tests.json").read_text())
