"""The synthetic demo corpus: exact PHI spans, label structure, learnability, files."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from veil.demo import PHI_TYPES, DemoReport, generate_demo_corpus, write_demo_corpus
from veil.demo_text import LABELS
from veil.errors import BadInput


@pytest.fixture(scope="module")
def corpus() -> list[DemoReport]:
    return generate_demo_corpus(n_reports=600, n_sites=4, split="dirichlet", alpha=0.5, seed=0)


def test_phi_spans_index_the_final_text(corpus: list[DemoReport]) -> None:
    for r in corpus:
        assert r.phi_spans
        prev_end = 0
        for s in r.phi_spans:
            assert s["type"] in PHI_TYPES
            assert s["end"] > s["start"] >= prev_end  # sorted, non-overlapping
            assert r.text[s["start"]:s["end"]] == s["text"]
            assert s["text"].strip() == s["text"] != ""
            prev_end = s["end"]
        assert r.findings in r.text and r.impression in r.text
        assert r.findings.strip() and r.impression.strip()


def test_every_phi_type_in_header_and_in_sentences(corpus: list[DemoReport]) -> None:
    counts = Counter(s["type"] for r in corpus for s in r.phi_spans)
    assert set(counts) == set(PHI_TYPES)
    assert min(counts.values()) >= 50
    in_body: Counter[str] = Counter()
    for r in corpus:
        lo = r.text.index(r.findings)
        hi = r.text.index(r.impression) + len(r.impression)
        in_body.update(s["type"] for s in r.phi_spans if lo <= s["start"] < hi)
    # PHI inside findings/impression sentences, not only in the header block
    for phi_type in ("DATE", "HOSPITAL", "DOCTOR", "PHONE"):
        assert in_body[phi_type] >= 20, phi_type
    ages_in_text = sum(1 for r in corpus for s in r.phi_spans
                       if s["type"] == "AGE" and "year old" in r.text[s["end"]:s["end"] + 10]
                       .replace("-", " ").lower())
    assert ages_in_text >= 50
    # a name surrogate is a name, not a template leftover
    assert not any("{" in s["text"] or "}" in s["text"] for r in corpus for s in r.phi_spans)


def test_labels_cover_the_label_set(corpus: list[DemoReport]) -> None:
    counts = Counter(lab for r in corpus for lab in r.labels)
    assert set(counts) <= set(LABELS)
    assert len(counts) >= 12
    assert min(counts[lab] for lab in LABELS) >= 15
    for r in corpus:
        assert r.labels == [lab for lab in LABELS if lab in r.labels]  # canonical order
        assert ("No Finding" in r.labels) == (r.labels == ["No Finding"])
    multi = sum(len(r.labels) > 1 for r in corpus)
    assert multi >= 150


def test_realistic_co_occurrence(corpus: list[DemoReport]) -> None:
    y = {lab: np.array([lab in r.labels for r in corpus]) for lab in LABELS}
    p_edema = y["Edema"].mean()
    assert y["Edema"][y["Cardiomegaly"]].mean() > p_edema + 0.1
    assert y["Pleural Effusion"][y["Edema"]].mean() > y["Pleural Effusion"].mean() + 0.1
    assert y["Consolidation"][y["Pneumonia"]].mean() > y["Consolidation"].mean() + 0.2
    assert y["Fracture"][y["Pneumonia"]].mean() < y["Fracture"].mean()


def test_negated_findings_are_not_labels(corpus: list[DemoReport]) -> None:
    negations = {"no pneumothorax.": "Pneumothorax", "no pleural effusion.": "Pleural Effusion",
                 "no focal consolidation.": "Consolidation", "no pulmonary edema.": "Edema",
                 "no cardiomegaly.": "Cardiomegaly"}
    seen = Counter()
    for r in corpus:
        low = r.findings.lower()
        for phrase, lab in negations.items():
            if phrase in low:
                seen[lab] += 1
                assert lab not in r.labels
    assert min(seen[lab] for lab in negations.values()) >= 10


def test_case_varies_and_sites_are_typed(corpus: list[DemoReport]) -> None:
    upper = sum(r.text == r.text.upper() for r in corpus)
    lower = sum(r.text == r.text.lower() for r in corpus)
    assert upper >= 10 and lower >= 5
    assert upper + lower <= 0.3 * len(corpus)
    sites = Counter(r.site for r in corpus)
    assert set(sites) == {f"site_{k}" for k in range(4)}
    for r in corpus:
        assert r.site_type == ("academic" if int(r.site[-1]) % 2 == 0 else "community")


def test_tfidf_logistic_regression_learns_but_not_trivially() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    reports = generate_demo_corpus(n_reports=600, n_sites=4, split="iid", seed=1)
    docs = [f"{r.findings} {r.impression}" for r in reports]
    y = MultiLabelBinarizer(classes=list(LABELS)).fit_transform([r.labels for r in reports])
    cut = int(0.8 * len(docs))
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x_train, x_test = vec.fit_transform(docs[:cut]), vec.transform(docs[cut:])
    clf = OneVsRestClassifier(LogisticRegression(C=10.0, solver="liblinear"))
    f1 = f1_score(y[cut:], clf.fit(x_train, y[:cut]).predict(x_test), average="weighted",
                  zero_division=0)
    assert 0.7 <= f1 <= 0.99, f1


def test_site_label_mix_follows_split() -> None:
    def mean_tv(reports: list[DemoReport]) -> float:
        glob = Counter(r.primary_label for r in reports)
        n = len(reports)
        tvs = []
        for site in sorted({r.site for r in reports}):
            sub = [r for r in reports if r.site == site]
            loc = Counter(r.primary_label for r in sub)
            tvs.append(0.5 * sum(abs(loc[k] / len(sub) - glob[k] / n) for k in glob))
        return float(np.mean(tvs))

    iid = generate_demo_corpus(400, 4, "iid", seed=3)
    skew = generate_demo_corpus(400, 4, "dirichlet", alpha=0.1, seed=3)
    assert mean_tv(skew) >= 3 * mean_tv(iid)
    assert len({r.site for r in skew}) == 4


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_write_is_deterministic_and_complete(tmp_path: Path) -> None:
    kw = {"n_reports": 120, "n_sites": 3, "split": "dirichlet", "alpha": 0.5}
    s1 = write_demo_corpus(tmp_path / "a", seed=4, **kw)
    write_demo_corpus(tmp_path / "b", seed=4, **kw)
    write_demo_corpus(tmp_path / "c", seed=5, **kw)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert set(a) == {"reports.jsonl", "reports.csv", "phi_spans.jsonl", "README.md",
                      "sites/site_0.csv", "sites/site_1.csv", "sites/site_2.csv"}
    assert a == b
    assert a["reports.jsonl"] != c["reports.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert "synthetic" in a["README.md"].decode().lower()

    records = [json.loads(x) for x in a["reports.jsonl"].decode().splitlines()]
    spans = [json.loads(x) for x in a["phi_spans.jsonl"].decode().splitlines()]
    assert len(records) == len(spans) == 120
    for rec, sp in zip(records, spans, strict=True):
        assert sp["id"] == rec["id"]
        assert all(rec["text"][s["start"]:s["end"]] == s["text"] for s in sp["phi_spans"])
    with (tmp_path / "a" / "reports.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["text"] for r in rows] == [r["text"] for r in records]
    assert [r["labels"].split(";") for r in rows] == [r["labels"] for r in records]
    per_site = 0
    for k in range(3):
        with (tmp_path / "a" / "sites" / f"site_{k}.csv").open(newline="", encoding="utf-8") as fh:
            site_rows = list(csv.DictReader(fh))
        assert site_rows and {r["site"] for r in site_rows} == {f"site_{k}"}
        per_site += len(site_rows)
    assert per_site == 120

    assert sum(s1.site_counts.values()) == 120
    assert s1.label_counts == {lab: sum(lab in r["labels"] for r in records) for lab in LABELS}
    phi_in_file = Counter(s["type"] for sp in spans for s in sp["phi_spans"])
    assert {t: n for t, n in s1.phi_counts.items() if n} == dict(phi_in_file)
    assert all(p.exists() for p in s1.files.values())
    assert ("reports", "120") in s1.rows()


def test_refuses_bad_options_and_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        generate_demo_corpus(10, 2, "random")
    with pytest.raises(BadInput):
        generate_demo_corpus(3, 4)
    with pytest.raises(BadInput):
        generate_demo_corpus(10, 2, "dirichlet", alpha=0.0)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("keep me")
    with pytest.raises(BadInput):
        write_demo_corpus(foreign, n_reports=20, n_sites=2)
    assert (foreign / "thesis.txt").read_text() == "keep me"
    write_demo_corpus(tmp_path / "demo", n_reports=20, n_sites=2)
    write_demo_corpus(tmp_path / "demo", n_reports=30, n_sites=2)  # replaces its own output
    assert len((tmp_path / "demo" / "reports.jsonl").read_text().splitlines()) == 30
