"""veil.io on the real corpora in ../shared/datasets, checked against independent pandas counts."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from veil.io import read_corpus

pytestmark = pytest.mark.real_data

README_SHA256 = {
    "iu_xray_reports.csv": "fd718e074451e93effedd868ca8995d2495e58e85878e08853f2dd35810f2149",
    "ag_news_test.csv": "d2a2cef4dfeb21ca17b463fd15e9e5a639c05823d03efabb3d28a75bbfe8d915",
    "yelp_labelled_sentences.tsv":
        "b565b1eeb864d76842588c3a256731b08bcdd9faf6de507bfe211a96f8b81912",
}


def _blank(series: pd.Series) -> pd.Series:
    return series.fillna("").astype(str).str.strip() == ""


def test_iu_xray_multilabel(shared_datasets: Path) -> None:
    path = shared_datasets / "iu_xray_reports.csv"
    c = read_corpus(path, text_cols="findings,impression", label_col="Problems",
                    label_sep=";", id_col="uid")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    keep = ~(_blank(df["findings"]) & _blank(df["impression"]))
    assert len(df) == 3851 and c.n_rows_read == len(df)
    assert len(c) == int(keep.sum()) and c.skipped_empty == int((~keep).sum())
    assert c.ids == df.loc[keep, "uid"].tolist()
    expected_labels = {p.strip() for v in df.loc[keep, "Problems"] for p in v.split(";")
                       if p.strip()}
    assert c.label_names() == sorted(expected_labels)
    assert len(c.label_names()) == 121  # the datasets README's figure
    first = df.loc[keep].iloc[0]
    assert c.texts[0] == first["findings"] + "\n" + first["impression"]
    assert c.fingerprint == README_SHA256[path.name]
    assert c.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    expected_counts = Counter(
        lab for v in df.loc[keep, "Problems"]
        for lab in dict.fromkeys(p.strip() for p in v.split(";") if p.strip()))
    assert Counter(lab for labs in (c.labels or []) for lab in labs) == expected_counts


def test_ag_news_no_header(shared_datasets: Path) -> None:
    path = shared_datasets / "ag_news_test.csv"
    c = read_corpus(path, header=False, text_cols="1,2", label_col=0, join_with=" ")
    df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    assert len(c) == len(df) == 7600 and c.skipped_empty == 0
    assert c.label_names() == sorted(df[0].unique()) == ["1", "2", "3", "4"]
    counts = pd.Series([labs[0] for labs in (c.labels or [])]).value_counts()
    assert counts.to_dict() == df[0].value_counts().to_dict()
    assert c.texts[5] == df.iloc[5, 1] + " " + df.iloc[5, 2]
    assert c.fingerprint == README_SHA256[path.name]


def test_yelp_tsv_no_header(shared_datasets: Path) -> None:
    path = shared_datasets / "yelp_labelled_sentences.tsv"
    c = read_corpus(path, header=False, text_cols=0, label_col=1)
    df = pd.read_csv(path, sep="\t", header=None, dtype=str, quoting=csv.QUOTE_NONE)
    assert len(c) == len(df) == 1000
    assert c.texts == df[0].tolist()
    assert [labs[0] for labs in (c.labels or [])] == df[1].tolist()
    assert c.label_names() == ["0", "1"]
    assert c.fingerprint == README_SHA256[path.name]
