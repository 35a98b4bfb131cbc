"""PHI detector: clinical recognizers, safe-list, span merging, config, CLI, offline use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from veil._env import veil_home
from veil.privatize.phi_eval import GoldDoc, GoldSpan, score
from veil.privatize.sensitivity import (
    ENTITY_TYPES,
    PhiConfig,
    PhiDetector,
    PhiSpan,
    install_offline_tldextract,
    merge_spans,
    offline_tld_extractor,
)


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("network access attempted")


@pytest.fixture(scope="module")
def cache_home() -> Path:
    """The VEIL_HOME in force at module set-up (before the per-test one): the name list
    is cached there once instead of being rebuilt from names-dataset for every test."""
    return veil_home()


@pytest.fixture(scope="module")
def detector(cache_home: Path) -> PhiDetector:
    """One detector per module, loaded with every socket connection forbidden."""
    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", _no_network)
    mp.setattr(socket, "getaddrinfo", _no_network)
    try:
        det = PhiDetector().load()
        det.detect(["Reach Dr. Hobbs at hobbs@corvid.example or https://corvid.example/x."])
    finally:
        mp.undo()
    return det


def _spans(det: PhiDetector, text: str) -> list[PhiSpan]:
    return det.detect([text])[0]


def _covered(det: PhiDetector, text: str, target: str, types: set[str] | None = None) -> bool:
    """Whether every non-space character of ``target`` (first occurrence) is in a span."""
    start = text.index(target)
    want = {i for i in range(start, start + len(target)) if not text[i].isspace()}
    got = {i for s in _spans(det, text) if types is None or s.entity_type in types
           for i in range(s.start, s.end)}
    return want <= got


def _touched(det: PhiDetector, text: str, target: str) -> bool:
    start = text.index(target)
    return any(s.start < start + len(target) and start < s.end for s in _spans(det, text))


def _variants(text: str, target: str) -> list[tuple[str, str]]:
    return [(text, target), (text.upper(), target.upper()), (text.lower(), target.lower())]


POSITIVES = [
    # medical record, accession, account numbers
    ("Seen today. MRN: 8249813, follow up.", "8249813", "MRN"),
    ("Pt mr# 55-12345 admitted.", "55-12345", "MRN"),
    ("Chart filed under medical record number 0044871 pending merge.", "0044871", "MRN"),
    ("Accession #: A1234567 for the chest film.", "A1234567", "ACCESSION"),
    ("Billing account 6620148833 was charged.", "6620148833", "ACCOUNT"),
    # clinical dates, with times next to them
    ("Seen on 7/22 for review.", "7/22", "DATE"),
    ("Admitted 07/22/2069 for chest pain.", "07/22/2069", "DATE"),
    ("Record date: 2069-04-07", "2069-04-07", "DATE"),
    ("Follow-up on Jan 3rd with labs.", "Jan 3rd", "DATE"),
    ("Surgery on January 3, 2069 went well.", "January 3, 2069", "DATE"),
    ("Discharged on the 3rd of January after rehab.", "3rd of January", "DATE"),
    ("Film taken 07/22/2069 14:30 in clinic.", "07/22/2069 14:30", "DATE"),
    ("Last seen in November by cardiology.", "November", "DATE"),
    # ages over 89
    ("A 92-year-old woman with dyspnea.", "92-year-old", "AGE"),
    ("Patient age 95, lives alone.", "95", "AGE"),
    ("He is a 101 yo man.", "101 yo", "AGE"),
    # phone, fax, pager
    ("Call (617) 555-0142 with results.", "(617) 555-0142", "PHONE"),
    ("Records faxed to 617.555.0198 today.", "617.555.0198", "PHONE"),
    ("Resident pager 84710 overnight.", "84710", "PHONE"),
    # hospitals, wards, units, clinics
    ("Transferred from St. Mary's Hospital yesterday.", "St. Mary's Hospital", "HOSPITAL"),
    ("Followed at Boston Medical Center since 2060.", "Boston Medical Center", "HOSPITAL"),
    ("Admitted to the MICU overnight.", "MICU", "HOSPITAL"),
    ("Moved to ward 4B after extubation.", "ward 4B", "HOSPITAL"),
    ("SILVER RIDGE EMERGENCY DEPT VISIT", "SILVER RIDGE", "HOSPITAL"),
    # providers after titles, credentials and labels
    ("Follow up with Dr. Hobbs in 3 months.", "Hobbs", "PERSON"),
    ("Discussed with the cardiologist, Dr. Xavier Rush, today.", "Xavier Rush", "PERSON"),
    ("Attending: Ybarra\nCode: full", "Ybarra", "PERSON"),
    ("cc: Gilbert Perez", "Gilbert Perez", "PERSON"),
    ("Signed,\nXzavian G. Tavares, M.D.", "Xzavian G. Tavares", "PERSON"),
    ("Mr. Villegas is seen today.", "Villegas", "PERSON"),
    ("She was seen by Anna Kowalski this morning.", "Anna Kowalski", "PERSON"),
    # street addresses and ZIP codes
    ("Home address 4417 Old Kettle Rd, Fresno, CA 93726.", "4417 Old Kettle Rd, Fresno, CA 93726",
     "STREET_ADDRESS"),
    ("The mailing zip code is 02115.", "02115", "ZIP"),
    # already-masked PHI (IU X-ray style)
    ("Comparison: XXXX, XXXX.", "XXXX", "MASK"),
]


@pytest.mark.parametrize(("text", "target", "kind"), POSITIVES)
def test_clinical_recognizers_find_phi_in_any_case(detector: PhiDetector, text: str, target: str,
                                                   kind: str) -> None:
    for t, g in _variants(text, target):
        if kind == "MASK" and t != text:
            continue  # a lower-case "xxxx" is not the IU mask
        assert _covered(detector, t, g), (kind, t)
    assert _covered(detector, text, target, {kind}), kind


NEGATIVES = [
    ("MR angiogram showed 3 lesions.", "3"),
    ("BP 120/80, HR 72.", "120/80"),
    ("Take 1/2 tablet at night.", "1/2"),
    ("Pain 5/10 today.", "5/10"),
    ("A 45-year-old man with cough.", "45-year-old"),
    ("Presented to the emergency department with pain.", "emergency department"),
    ("Records from the outside hospital were reviewed.", "outside hospital"),
    ("Hospital course was uneventful.", "Hospital course"),
    ("Seen in cardiology clinic for palpitations.", "cardiology clinic"),
    ("CC: chest pain and shortness of breath.", "chest pain"),
    ("Chest, 2 frontal views: no acute findings.", "2 frontal views"),
    ("Vitamin B12 and CD34 counts; L4-L5 disc bulge; 850MG metformin.", "B12"),
    ("Vitamin B12 and CD34 counts; L4-L5 disc bulge; 850MG metformin.", "CD34"),
    ("Vitamin B12 and CD34 counts; L4-L5 disc bulge; 850MG metformin.", "L4-L5"),
    ("Vitamin B12 and CD34 counts; L4-L5 disc bulge; 850MG metformin.", "850MG"),
]


@pytest.mark.parametrize(("text", "target"), NEGATIVES)
def test_clinical_recognizers_leave_non_phi_alone(detector: PhiDetector, text: str,
                                                  target: str) -> None:
    for t, g in _variants(text, target):
        assert not _touched(detector, t, g), t


SAFE_SENTENCES = [
    "Foley catheter was removed this morning.",
    "History of Graves disease, treated.",
    "There is a mass in the lung and the heart is enlarged.",
    "Parkinson disease with tremor; Hodgkin lymphoma in remission.",
    "Wilms tumor resected in childhood. Bell palsy resolved.",
    "Lungs clear. Heart: regular rate and rhythm. Chest wall nontender.",
    "Started on Lipitor and atenolol; continue lisinopril and Zantac.",
    "Positive Murphy sign; Wilson disease excluded.",
]


@pytest.mark.parametrize("text", SAFE_SENTENCES)
def test_safe_list_words_are_not_flagged(detector: PhiDetector, text: str) -> None:
    for t in (text, text.upper(), text.lower()):
        assert _spans(detector, t) == [], t


def test_dictionaries_catch_names_without_context_or_capitals(detector: PhiDetector) -> None:
    text = "Consult note: Marisol Ferndale-Ostrowski tolerated the procedure."
    assert _covered(detector, text, "Marisol Ferndale-Ostrowski", {"PERSON"})
    lower = "spoke with villalobos and orozco about the plan."
    assert _covered(detector, lower, "villalobos") and _covered(detector, lower, "orozco")
    caps = "PATIENT JOHN SMITH ARRIVED BY AMBULANCE."
    assert _covered(detector, caps, "JOHN SMITH", {"PERSON"})
    place = "She resides in Tulare County near the city of Visalia."
    assert _covered(detector, place, "Tulare County") and _covered(detector, place, "Visalia")


def test_email_url_ip_and_codes(detector: PhiDetector) -> None:
    text = ("Mail sunny.tran+labs@corvid.example, see https://mychart.corvid.example/p/99 "
            "from 10.34.201.7; VIN 1HGCM82633A004352, ref XW277/90683.")
    spans = _spans(detector, text)
    by_text = {text[s.start:s.end]: s.entity_type for s in spans}
    assert by_text["sunny.tran+labs@corvid.example"] == "EMAIL"
    assert by_text["https://mychart.corvid.example/p/99"] == "URL"
    assert by_text["10.34.201.7"] == "IP_ADDRESS"
    assert _covered(detector, text, "1HGCM82633A004352", {"ID"})
    assert _covered(detector, text, "XW277/90683", {"ID"})


def test_merge_overlaps_keep_union_and_highest_score_type() -> None:
    spans = [PhiSpan(0, 5, "ID", 0.45, "a"), PhiSpan(3, 10, "DATE", 0.9, "b"),
             PhiSpan(8, 12, "PHONE", 0.6, "c"), PhiSpan(20, 25, "ZIP", 0.8, "d")]
    assert merge_spans(spans) == [PhiSpan(0, 12, "DATE", 0.9, "b"),
                                  PhiSpan(20, 25, "ZIP", 0.8, "d")]
    # equal scores: the longer span wins; a contained span does not change the extent
    assert merge_spans([PhiSpan(0, 4, "ID", 0.5, "x"), PhiSpan(1, 9, "MRN", 0.5, "y"),
                        PhiSpan(2, 3, "AGE", 0.4, "z")]) == [PhiSpan(0, 9, "MRN", 0.5, "y")]
    assert merge_spans([]) == []


def test_merge_joins_name_pieces_but_not_separate_dates() -> None:
    text = "Villegas, Yosef on 1/2/69, 1/3/69 at Fresno-Ostrowski"
    v, y = PhiSpan(0, 8, "PERSON", 0.7, "a"), PhiSpan(10, 15, "PERSON", 0.6, "b")
    d1, d2 = PhiSpan(19, 25, "DATE", 0.9, "c"), PhiSpan(27, 33, "DATE", 0.9, "c")
    f, o = PhiSpan(37, 43, "LOCATION", 0.5, "d"), PhiSpan(44, 53, "PERSON", 0.7, "e")
    merged = merge_spans([o, d2, y, f, v, d1], text)
    assert merged == [PhiSpan(0, 15, "PERSON", 0.7, "a"), d1, d2,
                      PhiSpan(37, 53, "PERSON", 0.7, "e")]
    assert merge_spans([v, y]) == [v, y]  # without the text nothing is joined


def test_config_filters_types_and_threshold(detector: PhiDetector) -> None:
    text = "Dr. Hobbs saw the 92-year-old on 07/22/2069, MRN: 8249813."
    only_dates = PhiDetector(PhiConfig(entities=("DATE",))).detect([text])[0]
    assert only_dates and {s.entity_type for s in only_dates} == {"DATE"}
    high = PhiDetector(PhiConfig(threshold=0.9)).detect([text])[0]
    assert high and all(s.score >= 0.9 for s in high)
    assert {s.entity_type for s in _spans(detector, text)} >= {"PERSON", "AGE", "DATE", "MRN"}
    with pytest.raises(ValueError, match="unknown entity types"):
        PhiConfig(entities=("NAME",))
    assert set(PhiConfig().entities) == set(ENTITY_TYPES)


def test_batched_equals_one_by_one(detector: PhiDetector) -> None:
    texts = ["Mr. Villegas, MRN 8249813, seen 2069-04-07.", "", "no phi here at all",
             "CALL (617) 555-0142 RE: OROZCO,KYLE"] * 3
    batched = detector.detect(texts)
    assert batched == [detector.detect([t])[0] for t in texts]
    assert PhiDetector(PhiConfig(batch_size=1)).detect(texts) == batched
    assert batched[1] == [] and batched[2] == []


def test_no_ner_and_no_dictionary_modes_still_use_context() -> None:
    text = "Follow up with Dr. Hobbs on 07/22/2069."
    for cfg in (PhiConfig(use_ner=False), PhiConfig(use_dictionaries=False)):
        spans = PhiDetector(cfg).detect([text])[0]
        assert {text[s.start:s.end] for s in spans} == {"Hobbs", "07/22/2069"}


def test_safe_word_extras_silence_dictionary_hits(detector: PhiDetector) -> None:
    text = "lab drawn; orozco reviewed it."
    assert _touched(detector, text, "orozco")
    quiet = PhiDetector(PhiConfig(safe_words=("Orozco",))).detect([text])[0]
    assert quiet == []


def test_tldextract_is_offline_after_install(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    import tldextract
    import tldextract.tldextract as tx
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    monkeypatch.setattr(tx, "TLD_EXTRACTOR", tldextract.TLDExtract(cache_dir=str(tmp_path)))
    install_offline_tldextract()
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    assert tldextract.extract("a.b.example.com").suffix == "com"
    assert offline_tld_extractor()("x@corvid.example").suffix == "example"
    assert EmailRecognizer().validate_result("someone@hospital.org") is True


def test_cold_start_makes_no_network_call(detector: PhiDetector, cache_home: Path) -> None:
    """A fresh interpreter builds the detector and detects with sockets disabled.

    It reuses the name list the module fixture built (building it needs no network
    either: it reads the installed names-dataset), so the check stays fast.
    """
    script = textwrap.dedent("""
        import socket, sys
        def boom(*a, **k):
            raise SystemExit("network access attempted")
        socket.socket.connect = boom
        socket.getaddrinfo = boom
        socket.create_connection = boom
        from veil.privatize.sensitivity import PhiDetector
        spans = PhiDetector().detect(["Email jo@corvid.example or see www.corvid.org re Dr. Li"])
        print(len(spans[0]))
    """)
    env = {**os.environ, "VEIL_HOME": str(cache_home)}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=False, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout.strip()) >= 2


def test_score_counts_characters_and_entities() -> None:
    doc = GoldDoc("d", "Ann Lee saw Bo on 1/2/69 ok", (GoldSpan(0, 7, "NAME"),
                                                        GoldSpan(12, 14, "NAME"),
                                                        GoldSpan(18, 24, "DATE")))
    pred = [PhiSpan(0, 3, "PERSON", 0.9, "t"), PhiSpan(18, 27, "DATE", 0.9, "t"),
            PhiSpan(25, 27, "MASK", 0.9, "t")]
    s = score([doc], [pred])
    # gold non-space chars: "AnnLee" 6 + "Bo" 2 + "1/2/69" 6 = 14; caught "Ann" + "1/2/69" = 9
    assert (s.gold.chars, s.gold.hit_chars) == (14, 9)
    assert s.recall == pytest.approx(9 / 14)
    assert s.entity_recall == pytest.approx(2 / 3)
    # predicted non-space chars (MASK ignored): "Ann" 3 + "1/2/69 ok" 8 = 11, 9 of them gold
    assert s.precision == pytest.approx(9 / 11)
    assert s.recall_by_type["NAME"].span_rate == pytest.approx(1 / 2)
    assert s.precision_by_type["DATE"].char_rate == pytest.approx(6 / 8)


def test_cli_pii_writes_spans_without_text(tmp_path: Path) -> None:
    from veil.cli import run

    src = tmp_path / "notes.jsonl"
    rows = [{"nid": "a1", "note": "Mr. Villegas seen 2069-04-07, MRN: 8249813."},
            {"nid": "b2", "note": "Lungs clear."}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "spans.jsonl"
    assert run(["pii", str(src), "--text-col", "note", "--id-col", "nid", "--out", str(out),
                "--quiet"]) == 0
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [g["id"] for g in got] == ["a1", "b2"]
    assert got[1]["spans"] == []
    first = got[0]["spans"]
    assert {s["type"] for s in first} == {"PERSON", "DATE", "MRN"}
    assert "Villegas" not in out.read_text(encoding="utf-8")
    assert all(set(s) == {"start", "end", "type", "score"} for s in first)
    out2 = tmp_path / "spans_text.csv"
    assert run(["pii", str(src), "--text-col", "note", "--out", str(out2), "--quiet",
                "--log-text"]) == 0
    assert "Villegas" in out2.read_text(encoding="utf-8")
    assert run(["pii", str(tmp_path / "missing.csv"), "--out", str(out), "--quiet"]) == 2
    assert run(["pii", str(src), "--text-col", "nope", "--out", str(out), "--quiet"]) == 2
