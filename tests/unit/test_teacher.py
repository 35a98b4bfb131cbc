"""Teacher labelling: decision rules, descriptions, zero-shot on an obvious toy set, agreement."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

from veil.errors import BadInput
from veil.train.labelling import agreement, agreement_path_for, label_file
from veil.train.teacher import (
    DEFAULT_TEMPLATES,
    ZeroShotTeacher,
    decide,
    load_descriptions,
    parse_labels,
)

TOY = [
    ("the heart is enlarged", "cardiomegaly"),
    ("marked cardiomegaly with an enlarged cardiac silhouette", "cardiomegaly"),
    ("the cardiac silhouette is enlarged", "cardiomegaly"),
    ("large left pleural effusion with fluid layering in the pleural space", "pleural effusion"),
    ("bilateral pleural effusions", "pleural effusion"),
    ("small right pleural effusion", "pleural effusion"),
    ("acute fracture of the left seventh rib", "rib fracture"),
    ("displaced fractures of the right ribs", "rib fracture"),
    ("healing rib fracture on the left", "rib fracture"),
    ("right upper lobe pneumonia with consolidation", "pneumonia"),
    ("airspace consolidation consistent with pneumonia", "pneumonia"),
    ("patchy pneumonia in the left lower lobe", "pneumonia"),
]
LABELS = ["cardiomegaly", "pleural effusion", "rib fracture", "pneumonia"]


@pytest.fixture(scope="module")
def encoder() -> Iterator[Any]:
    from veil.models import load_sentence_encoder

    yield load_sentence_encoder("minilm")


def _toy_csv(path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["rid", "site", "text", "gold"])
        for i, (text, gold) in enumerate(TOY):
            w.writerow([f"r{i}", f"s{i % 2}", text, gold])
    return path


def test_parse_labels() -> None:
    assert parse_labels(" a, b ,c ") == ["a", "b", "c"]
    for bad in ("", " , ", None):
        with pytest.raises(BadInput):
            parse_labels(bad)
    with pytest.raises(BadInput):
        parse_labels("a,b,a")


def test_decide_rules() -> None:
    s = np.array([[0.1, 0.5, 0.3], [0.6, 0.2, 0.7]])
    assert decide(s, multi_label=False).tolist() == [[0, 1, 0], [0, 0, 1]]
    assert decide(s, multi_label=True, threshold=0.3).tolist() == [[0, 1, 1], [1, 0, 1]]
    assert decide(s, multi_label=True, top_k=1).tolist() == [[0, 1, 0], [0, 0, 1]]
    assert decide(s, multi_label=True, top_k=2, threshold=0.4).tolist() == [[0, 1, 0], [1, 0, 1]]
    with pytest.raises(BadInput):
        decide(s, multi_label=True)
    with pytest.raises(BadInput):
        decide(s, multi_label=True, top_k=0)


def test_descriptions_file(tmp_path: Path) -> None:
    good = tmp_path / "d.json"
    good.write_text(json.dumps({"a": "an A report", "b": ["one", "two"]}))
    descs = load_descriptions(good, ["a", "b", "c"])
    assert descs["a"] == ["an A report"] and descs["b"] == ["one", "two"]
    assert descs["c"] == [t.format(label="c") for t in DEFAULT_TEMPLATES]
    for content in ('{"zzz": "x"}', "[1, 2]", "{not json", '{"a": ""}', '{"a": [1]}'):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(BadInput):
            load_descriptions(bad, ["a", "b"])


def test_zero_shot_beats_chance_and_agreement_matches_sklearn(tmp_path: Path, encoder: Any) -> None:
    data = _toy_csv(tmp_path / "toy.csv")
    out = tmp_path / "labelled.csv"
    res = label_file(data, teacher="zero-shot", out=out, labels=",".join(LABELS),
                     text_col="text", id_col="rid", gold_col="gold", encoder=encoder)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["rid"] for r in rows] == [f"r{i}" for i in range(len(TOY))]
    assert set(rows[0]) == {"rid", "site", "text", "gold", "teacher_labels", "teacher_scores"}
    assert [r["text"] for r in rows] == [t for t, _ in TOY]
    pred = [r["teacher_labels"] for r in rows]
    gold = [g for _, g in TOY]
    assert all(p in LABELS for p in pred)
    acc = accuracy_score(gold, pred)
    assert acc > 0.5  # chance is 0.25; the toy labels are obvious
    assert pred[0] == "cardiomegaly"  # "the heart is enlarged"
    scores = json.loads(rows[0]["teacher_scores"])
    assert set(scores) == set(LABELS) and max(scores, key=scores.get) == "cardiomegaly"

    written = json.loads(agreement_path_for(out).read_text())
    assert res.agreement_path == tmp_path / "labelled.agreement.json"
    assert written["n_compared"] == len(TOY) and written["labels"] == LABELS
    assert written["accuracy"] == pytest.approx(acc)
    for avg in ("micro", "macro", "weighted"):
        assert written[f"{avg}_f1"] == pytest.approx(
            f1_score(gold, pred, labels=LABELS, average=avg, zero_division=0))
    assert written["kappa"] == pytest.approx(cohen_kappa_score(gold, pred))


def test_zero_shot_windows_long_documents(encoder: Any) -> None:
    teacher = ZeroShotTeacher(LABELS, encoder=encoder)
    long_text = " ".join(["the lungs are clear."] * 30 + ["the heart is enlarged."] * 30)
    old = encoder.max_seq_length
    try:
        encoder.max_seq_length = 32
        pieces = teacher._windows(long_text)
        scores = teacher.score([long_text, "small right pleural effusion"])
    finally:
        encoder.max_seq_length = old
    assert len(pieces) > 1 and teacher.n_windowed >= 1
    assert "".join(pieces).replace(" ", "") == long_text.replace(" ", "")
    assert scores.shape == (2, len(LABELS)) and np.all(np.abs(scores) <= 1 + 1e-9)
    assert LABELS[int(np.argmax(scores[1]))] == "pleural effusion"


def test_multilabel_agreement_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    y = (rng.random((40, 3)) < 0.4).astype(int)
    p = np.where(rng.random(y.shape) < 0.2, 1 - y, y)
    gold_rows = [[lab for lab, v in zip(labels, row, strict=True) if v] + ["other"] for row in y]
    res = agreement(gold_rows, p, labels, multi_label=True)
    assert res["exact_match"] == pytest.approx(accuracy_score(y, p))
    for avg in ("micro", "macro", "weighted"):
        assert res[f"{avg}_f1"] == pytest.approx(f1_score(y, p, average=avg, zero_division=0))
    for j, lab in enumerate(labels):
        per = res["per_label"][lab]
        assert per["agreement"] == pytest.approx(np.mean(y[:, j] == p[:, j]))
        assert per["f1"] == pytest.approx(f1_score(y[:, j], p[:, j], zero_division=0))
        assert per["kappa"] == pytest.approx(cohen_kappa_score(y[:, j], p[:, j]))
        assert per["support"] == int(y[:, j].sum())


def test_bad_input(tmp_path: Path, encoder: Any) -> None:
    data = _toy_csv(tmp_path / "toy.csv")
    out = tmp_path / "o.csv"
    with pytest.raises(BadInput, match="unknown teacher"):
        label_file(data, teacher="gpt-9", out=out, labels="a,b", encoder=encoder)
    with pytest.raises(BadInput, match="not a veil model"):
        label_file(data, teacher=str(tmp_path), out=out, labels="a,b", encoder=encoder)
    with pytest.raises(BadInput, match="empty"):
        label_file(data, teacher="zero-shot", out=out, labels=" ", encoder=encoder)
    with pytest.raises(BadInput, match="unknown label column"):
        label_file(data, teacher="zero-shot", out=out, labels="a,b", gold_col="nope",
                   encoder=encoder)
    with pytest.raises(BadInput, match="top-k or --threshold"):
        label_file(data, teacher="zero-shot", out=out, labels="a,b", multi_label=True,
                   encoder=encoder)
    assert not out.exists()


def test_model_teacher_uses_the_train_predict_function(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import veil.train.facade as facade

    model = tmp_path / "model"
    model.mkdir()
    (model / "labels.json").write_text(json.dumps(["x", "y", "z"]))
    seen: list[Any] = []

    def fake_predict_texts(folder: Any, texts: list[str]) -> Any:
        seen.append((Path(folder), len(texts)))
        probs = np.tile([0.9, 0.2, 0.6], (len(texts), 1))
        return facade.TextPredictions(["x", "y", "z"], probs, (probs >= 0.5).astype(float),
                                      True)

    monkeypatch.setattr(facade, "predict_texts", fake_predict_texts)
    data = _toy_csv(tmp_path / "toy.csv")
    out = tmp_path / "by_model.jsonl"
    res = label_file(data, teacher=str(model), out=out, labels="z,x", text_col="text")
    assert seen == [(model, len(TOY))]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["teacher_labels"] == "z;x" and rows[0]["teacher_scores"] == {"z": 0.6, "x": 0.9}
    assert res.multi_label and res.label_counts == {"z": len(TOY), "x": len(TOY)}
    with pytest.raises(BadInput, match="no label"):
        label_file(data, teacher=str(model), out=out, labels="x,w", text_col="text")


def test_label_cli_bad_input_exit_2(tmp_path: Path) -> None:
    from veil.cli import run

    data = _toy_csv(tmp_path / "toy.csv")
    for extra in (["--teacher", "nonsense"], ["--teacher", "zero-shot", "--labels", ","],
                  ["--teacher", "zero-shot", "--labels", "a,b", "--gold-col", "missing"]):
        assert run(["label", str(data), "--out", str(tmp_path / "o.csv"), *extra]) == 2
    assert not (tmp_path / "o.csv").exists()


def test_label_cli_zero_shot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from veil.cli import run

    data = _toy_csv(tmp_path / "toy.csv")
    out = tmp_path / "lab.jsonl"
    code = run(["label", str(data), "--teacher", "zero-shot", "--labels", ",".join(LABELS),
                "--text-col", "text", "--gold-col", "gold", "--multi-label", "--top-k", "1",
                "--quiet", "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(TOY) and all(r["teacher_labels"] in LABELS for r in rows)
    agree = json.loads((tmp_path / "lab.agreement.json").read_text())
    assert agree["multi_label"] is True and set(agree["per_label"]) == set(LABELS)
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "agreement with gold" in printed and "the heart is enlarged" not in printed
