"""More `veil train` checks (tiny-bert, toy data): DP full fine-tuning, --val FILE,
--long-docs chunk pooling, a trained model as the `veil label` teacher, and the
ledger spend happening before the output folder is moved into place.

Reference values come from closed forms or independent libraries (dp-accounting for ε,
scikit-learn for agreement and F1, a window-by-window forward pass for pooling), never
from earlier runs of this code.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_train_cli import BASE, write_toy

from veil.cli import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _gold(rows: list[dict[str, str]], key: str = "labels") -> list[list[str]]:
    return [r[key].split(";") if r[key] else [] for r in rows]


def _indicator(rows: list[list[str]], labels: list[str]) -> np.ndarray:
    return np.array([[int(lab in row) for lab in labels] for row in rows], dtype=int)


def _dp_accounting_epsilon(p: dict[str, Any]) -> float:
    import dp_accounting
    from dp_accounting import pld

    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            p["sample_rate"], dp_accounting.GaussianDpEvent(p["noise_multiplier"])), p["steps"])
    return float(pld.PLDAccountant(value_discretization_interval=1e-4).compose(event)
                 .get_epsilon(p["delta"]))


# --- 1. DP full fine-tuning -------------------------------------------------------------------

def test_dp_full_finetuning_certifies_the_target_and_moves_the_encoder(tmp_path: Path) -> None:
    import torch

    from veil.models import load_encoder
    from veil.train.bundle import load_model
    from veil.train.config import TrainConfig
    from veil.train.facade import train

    data = write_toy(tmp_path / "toy.csv", 80, seed=11)
    cfg = TrainConfig(data=data, out=tmp_path / "full", label_col="labels", label_sep=";",
                      id_col="id", model="tiny-bert", adapter="full", epsilon=3.0, epochs=2,
                      batch_size=16, lr=1e-3, test_frac=0.25, ledger=tmp_path / "l.db",
                      quiet=True, n_boot=20)
    res = train(cfg)
    out = cfg.out
    assert (out / "model" / "config.json").is_file() and (out / "model/head.safetensors").is_file()
    assert not (out / "adapter").exists()
    p = json.loads((out / "privacy.json").read_text())
    assert p["unit"] == "record" and p["mechanism"] == "dp-sgd"
    assert p["extra"]["adapter"] == "full"
    assert "every encoder weight" in p["extra"]["covered"]  # ε covers the whole released model
    n_train = p["extra"]["n_train"]
    assert n_train == 80 - round(0.25 * 80) - round(0.1 * 80)
    assert p["steps"] == 2 * round(n_train / 16) == res.fit.steps
    assert p["sample_rate"] == pytest.approx(16 / n_train)
    assert p["delta"] == pytest.approx(min(1e-5, 1 / (10 * n_train)))
    assert p["epsilon"] <= 3.0
    assert p["epsilon"] == pytest.approx(_dp_accounting_epsilon(p), rel=0.01)
    assert p["epsilon"] == pytest.approx(3.0, rel=0.02)  # calibrated to end at the target

    # every weight of the encoder moved (DP noise reaches each trainable tensor), not only the head
    base = dict(load_encoder("tiny-bert").named_parameters())
    trained = dict(load_model(out).model.encoder.named_parameters())
    assert trained.keys() <= base.keys() and len(trained) > 10
    unchanged = [name for name, w in trained.items() if torch.equal(w, base[name])]
    assert unchanged == []
    for layer in ("encoder.layer.0.attention.self.query.weight",
                  "encoder.layer.1.output.dense.weight", "embeddings.word_embeddings.weight"):
        assert not torch.allclose(trained[layer], base[layer], atol=1e-5), layer


# --- 2. --val FILE ---------------------------------------------------------------------------

def test_val_file_is_the_validation_split(tmp_path: Path) -> None:
    from sklearn.metrics import f1_score

    from veil.train.evaluate import GRID, MIN_POSITIVES
    from veil.train.facade import predict

    data = write_toy(tmp_path / "toy.csv", 100, seed=21)
    val = write_toy(tmp_path / "val.csv", 37, seed=22)
    out = tmp_path / "m"
    code = run(["train", str(data), "--out", str(out), *BASE, "--epsilon", "inf",
                "--adapter", "head", "--epochs", "2", "--batch-size", "16", "--lr", "0.05",
                "--val", str(val), "--test-frac", "0.2", "--ledger", str(tmp_path / "l.db")])
    assert code == 0
    summary = json.loads((out / "run.json").read_text())["data"]
    assert summary["n_records_read"] == 100
    assert summary["n_val"] == 37  # the file's rows
    assert summary["n_test"] == round(0.2 * 100)
    assert summary["n_train"] == 100 - round(0.2 * 100)  # nothing carved from DATA for validation
    privacy = json.loads((out / "privacy.json").read_text())
    assert privacy["extra"]["n_train"] == 80 and privacy["extra"]["n_validation"] == 37
    rule = json.loads((out / "thresholds.json").read_text())
    assert rule["tuned_on"] == "validation split" and rule["n_validation"] == 37

    # the curve's last point is the final model on the validation file (closed-form BCE and
    # scikit-learn's weighted F1 at 0.5)
    labels = json.loads((out / "labels.json").read_text())["labels"]
    probs = predict(out, val, id_col="id").scores
    y = _indicator(_gold(_rows(val)), labels)
    last = json.loads((out / "run.json").read_text())["curve"][-1]
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    bce = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    assert last["val_loss"] == pytest.approx(bce, abs=1e-5)
    assert last["val_weighted_f1"] == pytest.approx(
        f1_score(y, (probs >= 0.5).astype(int), average="weighted", zero_division=0), abs=1e-9)

    # each label's threshold maximises its F1 on the validation file over the grid
    tuned = 0
    for j, lab in enumerate(labels):
        if y[:, j].sum() < MIN_POSITIVES:
            continue
        tuned += 1
        scores = [f1_score(y[:, j], (probs[:, j] >= t).astype(int), zero_division=0)
                  for t in GRID]
        at = f1_score(y[:, j], (probs[:, j] >= rule["thresholds"][lab]).astype(int),
                      zero_division=0)
        assert at == pytest.approx(max(scores), abs=1e-9), lab
    assert tuned >= 2


# --- 3. --long-docs chunk pooling -----------------------------------------------------------

LONG_TEXT = ("effusion effusion " + " ".join(["the chest is normal and"] * 9)
             + " nodule nodule " + " ".join(["left lung view"] * 8) + " fracture fracture")


@pytest.fixture(scope="module")
def chunk_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A tiny non-private model trained with --long-docs chunk --max-length 16, per pool."""
    root = tmp_path_factory.mktemp("chunk")
    data = write_toy(root / "toy.csv", 150, seed=31, long_every=4)
    made: dict[str, Path] = {}

    def get(pool: str) -> Path:
        if pool not in made:
            out = root / f"m-{pool}"
            code = run(["train", str(data), "--out", str(out), *BASE, "--epsilon", "inf",
                        "--adapter", "head", "--epochs", "3", "--batch-size", "16",
                        "--lr", "0.05", "--max-length", "16", "--long-docs", "chunk",
                        "--chunk-pool", pool, "--ledger", str(root / f"{pool}.db")])
            assert code == 0
            made[pool] = out
        return made[pool]

    return get


def _window_logits(folder: Path, text: str, max_length: int) -> np.ndarray:
    """Logits of each overlapping window, one forward pass per window (no batching/padding)."""
    import torch

    from veil.train.bundle import load_model

    loaded = load_model(folder)
    tok = loaded.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    body = max_length - 2
    stride = body - body // 4  # windows overlap by a quarter
    windows = []
    start = 0
    while True:
        windows.append([tok.cls_token_id, *ids[start:start + body], tok.sep_token_id])
        if start + body >= len(ids):
            break
        start += stride
    covered = set()
    for s in range(0, stride * len(windows), stride):
        covered.update(range(s, min(s + body, len(ids))))
    assert covered == set(range(len(ids)))  # the windows cover every token
    rows = []
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([w])
            rows.append(loaded.model(input_ids=x, attention_mask=torch.ones_like(x))
                        .logits[0].double().numpy())
    return np.stack(rows)


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_chunk_pooling_equals_its_closed_form(chunk_model: Callable[[str], Path], pool: str,
                                              tmp_path: Path) -> None:
    from veil.train.facade import predict

    folder = chunk_model(pool)
    meta = json.loads((folder / "veil_model.json").read_text())
    assert meta["long_docs"] == "chunk" and meta["chunk_pool"] == pool
    assert meta["max_length"] == 16
    docs = tmp_path / "docs.csv"
    with docs.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["id", "text"])
        writer.writeheader()
        writer.writerows([{"id": "long", "text": LONG_TEXT},
                          {"id": "short", "text": "nodule nodule chest"}])
    pred = predict(folder, docs, id_col="id")
    assert pred.n_cut == 1
    win = _window_logits(folder, LONG_TEXT, 16)
    assert len(win) >= 4
    mean_form = 1 / (1 + np.exp(-win.mean(0)))  # sigmoid of the mean logit
    max_form = (1 / (1 + np.exp(-win))).max(0)  # max of the windows' probabilities
    assert not np.allclose(mean_form, max_form, atol=1e-3)  # the two rules differ here
    expected, other = (mean_form, max_form) if pool == "mean" else (max_form, mean_form)
    np.testing.assert_allclose(pred.scores[0], expected, atol=1e-5)
    assert not np.allclose(pred.scores[0], other, atol=1e-4)
    short = _window_logits(folder, "nodule nodule chest", 16)
    assert len(short) == 1
    np.testing.assert_allclose(pred.scores[1], 1 / (1 + np.exp(-short[0])), atol=1e-5)


# --- 4. a trained model as the `veil label` teacher -----------------------------------------

def test_trained_model_as_label_teacher_reports_sklearn_agreement(
        chunk_model: Callable[[str], Path], tmp_path: Path) -> None:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    from veil.train.facade import predict

    teacher = chunk_model("mean")
    fresh = write_toy(tmp_path / "fresh.csv", 60, seed=41)
    out = tmp_path / "labelled.csv"
    code = run(["label", str(fresh), "--teacher", str(teacher), "--text-col", "text",
                "--id-col", "id", "--gold-col", "labels", "--label-sep", ";",
                "--out", str(out)])
    assert code == 0
    report = json.loads((tmp_path / "labelled.agreement.json").read_text())
    labels = report["labels"]
    assert report["teacher"] == "model" and report["multi_label"] is True
    assert sorted(labels) == sorted(json.loads((teacher / "labels.json").read_text())["labels"])
    written = _rows(out)
    src = _rows(fresh)
    assert [r["id"] for r in written] == [r["id"] for r in src]
    assert [r["text"] for r in written] == [r["text"] for r in src]  # original columns kept
    pred = _indicator([r["teacher_labels"].split(";") if r["teacher_labels"] else []
                       for r in written], labels)
    gold = _indicator(_gold(src), labels)
    assert 0 < pred.sum() < pred.size  # the teacher says something, not everything
    # the teacher's labels are the model's own decisions (its saved thresholds)
    own = predict(teacher, fresh, id_col="id")
    assert np.array_equal(pred, own.predicted[:, [own.labels.index(lab) for lab in labels]])
    assert report["n_compared"] == 60
    for avg in ("weighted", "micro", "macro"):
        assert report[f"{avg}_f1"] == pytest.approx(
            f1_score(gold, pred, average=avg, zero_division=0), abs=1e-12), avg
    assert report["exact_match"] == pytest.approx(accuracy_score(gold, pred), abs=1e-12)
    for j, lab in enumerate(labels):
        per = report["per_label"][lab]
        assert per["agreement"] == pytest.approx(float(np.mean(gold[:, j] == pred[:, j])))
        assert per["f1"] == pytest.approx(f1_score(gold[:, j], pred[:, j], zero_division=0))
        kappa = cohen_kappa_score(gold[:, j], pred[:, j])
        if math.isnan(kappa):
            assert per["kappa"] is None
        else:
            assert per["kappa"] == pytest.approx(kappa)
        assert per["support"] == int(gold[:, j].sum())
    assert report["weighted_f1"] > 0.5  # a trained teacher beats chance on the toy set


# --- 5. the ledger spend happens before the folder is moved into place ----------------------

def _head_config(tmp_path: Path, data: Path, out: Path) -> Any:
    from veil.train.config import TrainConfig

    return TrainConfig(data=data, out=out, label_col="labels", label_sep=";", id_col="id",
                       model="tiny-bert", adapter="head", epsilon=1.0, epochs=1,
                       batch_size=16, lr=0.05, ledger=tmp_path / "l.db", quiet=True, n_boot=20)


def test_spend_is_recorded_while_the_folder_is_still_hidden(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from veil.privacy.ledger import Ledger, fingerprint_file
    from veil.train.facade import train

    data = write_toy(tmp_path / "toy.csv", 80, seed=51)
    out = tmp_path / "models" / "m"
    seen: dict[str, Any] = {}
    plain_spend, plain_released = Ledger.spend, Ledger.mark_released

    def spend(self: Ledger, *args: Any, **kwargs: Any) -> int:
        hidden = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]
        seen["at_spend"] = {"out_exists": out.exists(),
                            "hidden": [sorted(q.name for q in h.iterdir()) for h in hidden]}
        return plain_spend(self, *args, **kwargs)

    def released(self: Ledger, spend_id: int) -> None:
        seen["at_release"] = {"out_exists": out.is_dir(),
                              "status": [s.status for s in self.spends()]}
        plain_released(self, spend_id)

    monkeypatch.setattr(Ledger, "spend", spend)
    monkeypatch.setattr(Ledger, "mark_released", released)
    train(_head_config(tmp_path, data, out))
    final = sorted(p.name for p in out.iterdir())
    assert seen["at_spend"]["out_exists"] is False
    assert seen["at_spend"]["hidden"] == [final]  # one complete hidden folder
    assert {"privacy.json", "run.json", "head.safetensors"} <= set(final)
    assert seen["at_release"] == {"out_exists": True, "status": ["spent"]}
    spends = Ledger(tmp_path / "l.db").spends(fingerprint_file(data))
    assert [s.status for s in spends] == ["released"]
    assert [p.name for p in out.parent.iterdir()] == ["m"]


def test_spend_refused_at_release_leaves_nothing(tmp_path: Path) -> None:
    """A concurrent release exhausts the budget during training: the check at the start
    passed, the spend at the end is refused, and no folder (final or hidden) remains."""
    from veil.errors import BudgetRefused
    from veil.privacy.ledger import Ledger, fingerprint_file
    from veil.train.facade import train

    data = write_toy(tmp_path / "toy.csv", 80, seed=52)
    fp = fingerprint_file(data)
    book = Ledger(tmp_path / "l.db")
    book.set_budget(fp, 1.5)
    out = tmp_path / "models" / "m"

    def concurrent_release(epoch: int, point: dict) -> None:
        Ledger(tmp_path / "l.db").spend(fp, 1.0, 1e-6, "other-run", label="toy.csv")

    with pytest.raises(BudgetRefused):
        train(_head_config(tmp_path, data, out), on_epoch_end=concurrent_release)
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")] == []
    assert [s.release for s in book.spends(fp)] == ["other-run"]
    assert book.spent(fp) == pytest.approx(1.0)


def test_spend_failure_through_the_cli_exits_3_and_writes_no_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the spend refuses (the advisory check is bypassed): exit code 3, no model folder."""
    from veil.privacy.ledger import Ledger, fingerprint_file

    data = write_toy(tmp_path / "toy.csv", 80, seed=53)
    book = Ledger(tmp_path / "l.db")
    book.set_budget(fingerprint_file(data), 0.5)
    monkeypatch.setattr(Ledger, "check", lambda self, dataset, epsilon: None)
    out = tmp_path / "models" / "m"
    code = run(["train", str(data), "--out", str(out), *BASE, "--adapter", "head",
                "--epsilon", "1", "--epochs", "1", "--batch-size", "16",
                "--ledger", str(tmp_path / "l.db")])
    assert code == 3
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")] == []
    assert book.spends(fingerprint_file(data)) == []
