"""Measured recall of the PHI detector on labelled corpora (a missed name is a leak).

Real data (``real_data``): the five i2b2-format notes with surrogate PHI (Philter
samples) and deidgate's synthetic Safe Harbor seed notes; the IU chest X-ray reports
(PHI already masked as XXXX) measure false flags. Synthetic: veil's demo corpus.
Thresholds are the acceptance targets, not values the code produced earlier.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from veil._env import veil_home
from veil.privatize.phi_eval import demo_gold, read_deidgate, read_i2b2, recase, score
from veil.privatize.sensitivity import PhiDetector


@pytest.fixture(scope="module")
def detector() -> PhiDetector:
    """Loaded at module set-up, so the name list is cached in the outer VEIL_HOME once."""
    veil_home()
    return PhiDetector().load()


@pytest.mark.real_data
def test_i2b2_offsets_match_tag_text(shared_datasets: Path) -> None:
    import xml.etree.ElementTree as ET

    docs = read_i2b2(shared_datasets / "i2b2_format_samples")
    assert len(docs) == 5
    for doc in docs:
        root = ET.parse(shared_datasets / "i2b2_format_samples" / f"{doc.id}.xml").getroot()
        texts = [tag.get("text") for tag in root.find("TAGS")]  # type: ignore[union-attr]
        assert [doc.text[s.start:s.end] for s in doc.spans] == texts
        txt = (shared_datasets / "i2b2_format_samples" / f"{doc.id}.txt").read_text()
        assert len(txt) == len(doc.text)


@pytest.mark.real_data
def test_recall_on_i2b2_samples(detector: PhiDetector, shared_datasets: Path) -> None:
    docs = read_i2b2(shared_datasets / "i2b2_format_samples")
    s = score(docs, detector.detect([d.text for d in docs]))
    assert s.gold.spans == 46
    assert s.recall >= 0.95 and s.entity_recall >= 0.95
    assert s.precision >= 0.8
    for case in ("upper", "lower"):
        variant = recase(docs, case)
        sc = score(variant, detector.detect([d.text for d in variant]))
        assert sc.recall >= 0.9, case


@pytest.mark.real_data
def test_recall_on_deidgate_seed(detector: PhiDetector) -> None:
    docs = read_deidgate()
    assert len(docs) == 15
    s = score(docs, detector.detect([d.text for d in docs]))
    assert s.recall >= 0.95 and s.entity_recall >= 0.95
    assert s.precision >= 0.8


def test_recall_on_demo_corpus(detector: PhiDetector) -> None:
    from veil.demo import generate_demo_corpus

    docs = demo_gold(generate_demo_corpus(120, 3, seed=7))
    s = score(docs, detector.detect([d.text for d in docs]))
    assert s.gold.spans > 500
    assert s.recall >= 0.95 and s.entity_recall >= 0.95
    assert s.precision >= 0.8


@pytest.mark.real_data
def test_few_false_flags_on_masked_xray_reports(detector: PhiDetector,
                                                shared_datasets: Path) -> None:
    with open(shared_datasets / "iu_xray_reports.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:400]
    texts = ["\n".join(r[k] for k in ("indication", "comparison", "findings", "impression")
                       if r[k]) for r in rows]
    words = sum(len(re.findall(r"\S+", t)) for t in texts)
    flagged = masks = 0
    for text, spans in zip(texts, detector.detect(texts), strict=True):
        for sp in spans:
            n = len(re.findall(r"\S+", text[sp.start:sp.end]))
            if sp.entity_type == "MASK":
                masks += n
            else:
                flagged += n
    assert masks > 100  # the XXXX masks are recognised as such
    assert flagged / words < 0.01  # under 1% of (PHI-free) words spend the low budget
