"""veil sweep: grid options, results with an injected fake trainer, the TF-IDF baseline."""

from __future__ import annotations

import collections
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import f1_score

from veil.demo import generate_demo_corpus
from veil.errors import BadInput, BudgetRefused
from veil.privacy.ledger import Ledger, fingerprint_file
from veil.train.baseline import indicator, tfidf_baseline
from veil.train.config import TrainConfig
from veil.train.data import prepare_data
from veil.train.sweep import RunOutcome, grid, parse_adapters, parse_epsilons, run_sweep


def _demo_csv(path: Path, n: int = 150) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "labels"])
        for r in generate_demo_corpus(n_reports=n, seed=0):
            w.writerow([r.id, r.text, ";".join(r.labels)])
    return path


def _base(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(data=data, out=out / "runs", text_col="text", label_col="labels",
                       label_sep=";", id_col="id", test_frac=0.2, val_frac=0.1, split_seed=0,
                       top_labels=6, batch_size=8)


def _flip_prob(cfg: TrainConfig) -> float:
    quality = {"lora": 0.0, "head": 0.05, "full": 0.01}[cfg.adapter]
    return quality + (0.02 if math.isinf(cfg.epsilon) else 0.3 / (1.0 + cfg.epsilon))


class FakeTrainer:
    """Predictions = test truth with seeded random flips; worse for smaller ε."""

    def __init__(self) -> None:
        self.calls: list[TrainConfig] = []

    def __call__(self, cfg: TrainConfig) -> RunOutcome:
        self.calls.append(cfg)
        data = prepare_data(cfg)
        assert data.test is not None
        y = data.space.onehot(data.test.y).astype(int)
        key = 0 if math.isinf(cfg.epsilon) else int(cfg.epsilon * 1000)
        rng = np.random.default_rng([cfg.seed, key, len(cfg.adapter)])
        pred = np.where(rng.random(y.shape) < _flip_prob(cfg), 1 - y, y)
        metrics = {f"{a}_f1": float(f1_score(y, pred, average=a, zero_division=0))
                   for a in ("weighted", "micro", "macro")}
        return RunOutcome(metrics=metrics, test_ids=list(data.test.ids), y_true=y, y_pred=pred,
                          labels=list(data.space.names), epsilon=cfg.epsilon,
                          delta=None if math.isinf(cfg.epsilon) else 1e-4,
                          noise_multiplier=None if math.isinf(cfg.epsilon) else 1.0,
                          seconds=0.01)


def test_parse_grid_options() -> None:
    assert parse_epsilons("10, 0.1,inf,1") == (0.1, 1.0, 10.0, math.inf)
    assert parse_epsilons("∞") == (math.inf,)
    for bad in ("", "1,abc", "0,1", "-1", "nan", "1,1"):
        with pytest.raises(BadInput):
            parse_epsilons(bad)
    assert parse_adapters("lora,head") == ("lora", "head")
    for bad in ("", "lora,adapterx", "lora,lora"):
        with pytest.raises(BadInput):
            parse_adapters(bad)
    with pytest.raises(BadInput):
        grid((1.0,), ("lora",), 0)
    points = grid((1.0, math.inf), ("lora", "head"), 3, first_seed=5)
    assert len(points) == 12 and {p.seed for p in points} == {5, 6, 7}


def test_sweep_with_fake_trainer(tmp_path: Path) -> None:
    data = _demo_csv(tmp_path / "demo.csv")
    out = tmp_path / "sweep"
    fake = FakeTrainer()
    eps = (0.5, 8.0, math.inf)
    res = run_sweep(_base(data, tmp_path), epsilons=eps, adapters=("lora", "head"), seeds=3,
                    out=out, trainer=fake, baseline=True, n_boot=300)
    assert len(fake.calls) == 18
    assert {c.split_seed for c in fake.calls} == {0} and {c.test_frac for c in fake.calls} == {0.2}
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 19 and rows[-1]["adapter"] == "tfidf-lr" and rows[-1]["seed"] == ""
    runs = rows[:-1]
    assert collections.Counter((r["adapter"], r["epsilon"]) for r in runs) == {
        (a, e): 3 for a in ("lora", "head") for e in ("0.5", "8", "inf")}

    md = (out / "results.md").read_text()
    expected = {}
    for call in fake.calls:  # the fake's own metrics, recomputed independently
        again = fake.__class__()(call)
        key = (call.adapter, "inf" if math.isinf(call.epsilon) else f"{call.epsilon:g}")
        expected.setdefault(key, []).append(again.metrics["weighted_f1"])
    for (adapter, e), vals in expected.items():
        mean, sd = np.mean(vals), np.std(vals, ddof=1)
        cell = next(s for s in res.summary if (s["adapter"], s["epsilon"]) == (adapter, e))
        assert cell["weighted_f1_mean"] == pytest.approx(mean, abs=1e-12)
        assert cell["weighted_f1_sd"] == pytest.approx(sd, abs=1e-12)
        assert f"| {adapter} | {e} | 3 | {mean:.3f} ± {sd:.3f} |" in md
    csv_vals = [float(r["weighted_f1"]) for r in runs if (r["adapter"], r["epsilon"]) == ("head",
                                                                                          "0.5")]
    assert sorted(csv_vals) == pytest.approx(sorted(expected[("head", "0.5")]))
    assert "paired bootstrap over test examples" in md and "was not used" in md

    tests = json.loads((out / "paired_tests.json").read_text())["tests"]
    assert {(t["adapter"], t["epsilon"]) for t in tests} == {
        ("lora", "0.5"), ("lora", "8"), ("head", "0.5"), ("head", "8"), ("head", "inf"),
        ("tfidf-lr", "inf")}
    worst = next(t for t in tests if (t["adapter"], t["epsilon"]) == ("head", "0.5"))
    assert worst["bootstrap"]["p_value"] < 0.01 and worst["bootstrap"]["ci_high"] < 0
    assert all(t["wilcoxon"] is None for t in tests)
    assert res.total_epsilon == pytest.approx(2 * 3 * (0.5 + 8.0))
    png = (out / "privacy_utility.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (out / "runs" / "lora_eps0.5_seed1.json").is_file()

    # A re-run reuses every saved run (nothing is trained again).
    def refuse(cfg: TrainConfig) -> RunOutcome:
        raise AssertionError("should not train again")

    again = run_sweep(_base(data, tmp_path), epsilons=eps, adapters=("lora", "head"), seeds=3,
                      out=out, trainer=refuse, baseline=False, n_boot=300)
    assert [r["weighted_f1"] for r in again.rows] == [r["weighted_f1"] for r in res.rows[:-1]]


def test_wilcoxon_used_with_five_seeds(tmp_path: Path) -> None:
    data = _demo_csv(tmp_path / "demo.csv", n=100)
    out = tmp_path / "sweep"
    res = run_sweep(_base(data, tmp_path), epsilons=(1.0, math.inf), adapters=("lora",),
                    seeds=5, out=out, trainer=FakeTrainer(), baseline=False, n_boot=200)
    by = {(r["epsilon"], r["seed"]): r["weighted_f1"] for r in res.rows}
    a = [by[("1", s)] for s in range(5)]
    b = [by[("inf", s)] for s in range(5)]
    (test,) = res.tests
    assert test["wilcoxon"]["p_value"] == pytest.approx(
        float(wilcoxon(a, b, alternative="less").pvalue))
    assert "used because there are >= 5 seeds" in (out / "results.md").read_text()


def test_budget_refused_before_training(tmp_path: Path) -> None:
    data = _demo_csv(tmp_path / "demo.csv", n=100)
    base = _base(data, tmp_path)
    Ledger(base.ledger).set_budget(fingerprint_file(data), 5.0)
    fake = FakeTrainer()
    with pytest.raises(BudgetRefused):
        run_sweep(base, epsilons=(1.0, 4.0), adapters=("lora",), seeds=2,
                  out=tmp_path / "sweep", trainer=fake, baseline=False)
    assert fake.calls == []


def test_tfidf_baseline_on_demo_corpus() -> None:
    reports = generate_demo_corpus(n_reports=600, seed=0)
    labels = sorted({lab for r in reports for lab in r.labels})
    y = indicator([r.labels for r in reports], labels)
    texts = [r.text for r in reports]
    order = np.random.default_rng(0).permutation(len(texts))
    test, train = np.sort(order[:120]), np.sort(order[120:])
    res = tfidf_baseline([texts[i] for i in train], y[train], [texts[i] for i in test],
                         labels=labels, multi_label=True, rng=np.random.default_rng(0),
                         test_y=y[test])
    expected = f1_score(y[test], res.y_pred, average="weighted", zero_division=0)
    assert res.metrics["weighted_f1"] == pytest.approx(expected)
    assert expected > 0.7
    assert len(res.thresholds) == len(labels) and res.y_pred.shape == (120, len(labels))


def test_tfidf_baseline_single_label() -> None:
    reports = generate_demo_corpus(n_reports=200, seed=1)
    labels = sorted({r.primary_label for r in reports})
    y = indicator([[r.primary_label] for r in reports], labels)
    texts = [r.text for r in reports]
    res = tfidf_baseline(texts[:160], y[:160], texts[160:], labels=labels, multi_label=False,
                         rng=np.random.default_rng(0), test_y=y[160:])
    assert np.all(res.y_pred.sum(1) == 1) and res.thresholds == []
    acc = float(np.mean(res.y_pred.argmax(1) == y[160:].argmax(1)))
    assert res.metrics["micro_f1"] == pytest.approx(acc)
    assert acc > 1.0 / len(labels)


@pytest.mark.slow
@pytest.mark.real_data
def test_tfidf_baseline_iu_xray(shared_datasets: Path) -> None:
    """IU X-ray, Problems, top 14 labels without 'No Indexing', findings + impression, 80/20."""
    cfg = TrainConfig(data=shared_datasets / "iu_xray_reports.csv", out=Path("unused"),
                      text_col="findings,impression", label_col="Problems", label_sep=";",
                      top_labels=14, exclude_labels=("No Indexing",), test_frac=0.2,
                      val_frac=0.0, split_seed=0)
    data = prepare_data(cfg)
    assert data.test is not None and len(data.space.names) == 14
    y_train = data.space.onehot(data.train.y)
    y_test = data.space.onehot(data.test.y)
    res = tfidf_baseline(data.train.texts, y_train, data.test.texts,
                         labels=list(data.space.names), multi_label=True,
                         rng=np.random.default_rng(0), test_y=y_test)
    print(f"IU X-ray TF-IDF + LR: {res.metrics}")
    assert res.metrics["weighted_f1"] > 0.88


def test_non_private_run_under_a_budget_is_refused_up_front(tmp_path: Path) -> None:
    data = _demo_csv(tmp_path / "demo.csv", n=100)
    base = _base(data, tmp_path)
    Ledger(base.ledger).set_budget(fingerprint_file(data), 100.0)
    fake = FakeTrainer()
    with pytest.raises(BudgetRefused):
        run_sweep(base, epsilons=(1.0, math.inf), adapters=("lora",), seeds=1,
                  out=tmp_path / "sweep", trainer=fake, baseline=False)
    assert fake.calls == []


def _cli(args: list[str]) -> int:
    from veil.cli import run

    return run(args)


@pytest.mark.parametrize("extra", [["--epsilons", "1,x"], ["--epsilons", "0,1"],
                                   ["--seeds", "0"], ["--adapters", "lora,bogus"],
                                   ["--test-frac", "0"], ["--lora-layers", "some"],
                                   ["--adapters", "head", "--lora-freeze-a"]])
def test_sweep_cli_bad_input_exit_2(tmp_path: Path, extra: list[str]) -> None:
    data = _demo_csv(tmp_path / "demo.csv", n=60)
    args = ["sweep", str(data), "--label-col", "labels", "--label-sep", ";",
            "--out", str(tmp_path / "s"), *extra]
    assert _cli(args) == 2
    assert not (tmp_path / "s").exists()


def test_sweep_cli_budget_exit_3(tmp_path: Path) -> None:
    data = _demo_csv(tmp_path / "demo.csv", n=60)
    ledger = tmp_path / "ledger.db"
    Ledger(ledger).set_budget(fingerprint_file(data), 1.0)
    args = ["sweep", str(data), "--label-col", "labels", "--label-sep", ";", "--epsilons",
            "1,2", "--seeds", "1", "--ledger", str(ledger), "--out", str(tmp_path / "s")]
    assert _cli(args) == 3


def test_sweep_cli_with_fake_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import veil.train.sweep as sweep_mod

    fake = FakeTrainer()
    monkeypatch.setattr(sweep_mod, "facade_trainer", fake)
    data = _demo_csv(tmp_path / "demo.csv", n=80)
    out = tmp_path / "s"
    args = ["sweep", str(data), "--label-col", "labels", "--label-sep", ";", "--id-col", "id",
            "--top-labels", "5", "--epsilons", "2,inf", "--seeds", "2", "--adapters", "lora",
            "--epochs", "1", "--batch-size", "4", "--lora-layers", "1", "--split-seed", "3",
            "--no-baseline", "--n-boot", "200", "--quiet", "--out", str(out)]
    assert _cli(args) == 0
    assert len(fake.calls) == 4
    cfg = fake.calls[0]
    assert (cfg.epochs, cfg.batch_size, cfg.lora_layers, cfg.split_seed, cfg.top_labels) == (
        1, 4, 1, 3, 5)
    captured = capsys.readouterr()
    assert "ε = 4 in total" in (captured.out + captured.err).replace("\n", " ")
    assert (out / "results.md").is_file() and (out / "privacy_utility.png").is_file()


def test_sweep_cli_freezes_a_in_lora_runs_only(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import veil.train.sweep as sweep_mod

    fake = FakeTrainer()
    monkeypatch.setattr(sweep_mod, "facade_trainer", fake)
    data = _demo_csv(tmp_path / "demo.csv", n=80)
    args = ["sweep", str(data), "--label-col", "labels", "--label-sep", ";", "--top-labels", "5",
            "--epsilons", "2", "--seeds", "1", "--adapters", "head,lora", "--lora-freeze-a",
            "--batch-size", "4", "--no-baseline", "--n-boot", "50", "--quiet",
            "--out", str(tmp_path / "s")]
    assert _cli(args) == 0
    assert sorted((c.adapter, c.lora_freeze_a) for c in fake.calls) == [
        ("head", False), ("lora", True)]
