"""Scoring PHI detection against labelled corpora, and readers for those corpora.

Scores are character-level ("token-level overlap"): a gold PHI character counts as
caught when any predicted span covers it; whitespace is not counted. Recall is the
share of gold characters caught, precision the share of predicted characters that
are gold. Entity-level "any overlap" recall counts a gold span as caught when at
least one of its characters is. Per-type recall is by gold type, per-type precision
by predicted type. Spans typed ``MASK`` (text that was masked before us, e.g. IU
``XXXX``) are left out of precision by default.

Readers: i2b2 2014 de-id XML (offsets index the XML ``<TEXT>``), the ``deidgate``
seed corpus (values located in the text) and veil's demo corpus.

Run ``python -m veil.privatize.phi_eval --i2b2 DIR --deidgate --demo 200`` to print
the tables in ``docs/phi-detection.md``. No text is printed.
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.errors import BadInput
from veil.privatize.sensitivity import PhiConfig, PhiDetector, PhiSpan


@dataclass(frozen=True)
class GoldSpan:
    """A labelled PHI span ``text[start:end]`` of a corpus-specific ``type``."""

    start: int
    end: int
    type: str


@dataclass(frozen=True)
class GoldDoc:
    """A document with its gold PHI spans."""

    id: str
    text: str
    spans: tuple[GoldSpan, ...]


@dataclass
class TypeScore:
    """Counts for one type: characters and spans (gold) or characters (predicted)."""

    chars: int = 0
    hit_chars: int = 0
    spans: int = 0
    hit_spans: int = 0

    @property
    def char_rate(self) -> float:
        """hit_chars / chars (1.0 when there are none)."""
        return self.hit_chars / self.chars if self.chars else 1.0

    @property
    def span_rate(self) -> float:
        """hit_spans / spans (1.0 when there are none)."""
        return self.hit_spans / self.spans if self.spans else 1.0


@dataclass
class PhiScores:
    """Corpus-level scores; ``recall_by_type`` by gold type, ``precision_by_type`` by predicted."""

    n_docs: int = 0
    gold: TypeScore = field(default_factory=TypeScore)
    predicted: TypeScore = field(default_factory=TypeScore)
    recall_by_type: dict[str, TypeScore] = field(default_factory=dict)
    precision_by_type: dict[str, TypeScore] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        """Character-level recall."""
        return self.gold.char_rate

    @property
    def precision(self) -> float:
        """Character-level precision."""
        return self.predicted.char_rate

    @property
    def entity_recall(self) -> float:
        """Share of gold spans with at least one character caught."""
        return self.gold.span_rate


def _chars(text: str, start: int, end: int) -> set[int]:
    return {i for i in range(max(start, 0), min(end, len(text))) if not text[i].isspace()}


def score(docs: Sequence[GoldDoc], predictions: Sequence[Sequence[PhiSpan]],
          ignore_types: Iterable[str] = ("MASK",)) -> PhiScores:
    """Score predicted spans against gold (see the module docstring for the definitions)."""
    if len(docs) != len(predictions):
        raise ValueError(f"{len(docs)} documents but {len(predictions)} predictions")
    ignore = set(ignore_types)
    out = PhiScores(n_docs=len(docs))
    rec: dict[str, TypeScore] = defaultdict(TypeScore)
    prec: dict[str, TypeScore] = defaultdict(TypeScore)
    for doc, pred in zip(docs, predictions, strict=True):
        covered: set[int] = set()
        for p in pred:
            covered |= _chars(doc.text, p.start, p.end)
        gold_chars: set[int] = set()
        for g in doc.spans:
            chars = _chars(doc.text, g.start, g.end)
            gold_chars |= chars
            hit = len(chars & covered)
            for ts in (rec[g.type], out.gold):
                ts.spans += 1
                ts.hit_spans += hit > 0
                ts.chars += len(chars)
                ts.hit_chars += hit
        seen: set[int] = set()
        for p in pred:
            if p.entity_type in ignore:
                continue
            chars = _chars(doc.text, p.start, p.end) - seen
            seen |= chars
            hit = len(chars & gold_chars)
            for ts in (prec[p.entity_type], out.predicted):
                ts.spans += 1
                ts.chars += len(chars)
                ts.hit_chars += hit
    out.recall_by_type = dict(sorted(rec.items()))
    out.precision_by_type = dict(sorted(prec.items()))
    return out


def read_i2b2(directory: str | Path) -> list[GoldDoc]:
    """Read i2b2 2014-format notes: ``*.xml`` with ``<TEXT>`` and ``<TAGS>`` children.

    The offsets index the XML ``<TEXT>``; the ``.txt`` beside it has the same length
    (in the Philter samples it differs only where ``*`` banners became spaces), so the
    XML text is the one returned. The gold type is each tag's ``TYPE`` attribute.
    """
    directory = Path(directory)
    docs = []
    for xml in sorted(directory.glob("*.xml")):
        root = ET.parse(xml).getroot()
        text_el, tags = root.find("TEXT"), root.find("TAGS")
        if text_el is None or tags is None or text_el.text is None:
            raise BadInput("not an i2b2 de-id XML file (needs <TEXT> and <TAGS>)", path=xml)
        text = text_el.text
        spans = []
        for tag in tags:
            start, end = int(tag.get("start", -1)), int(tag.get("end", -1))
            if not 0 <= start < end <= len(text):
                raise BadInput(f"tag {tag.get('id')} has offsets outside the text", path=xml)
            spans.append(GoldSpan(start, end, tag.get("TYPE", tag.tag)))
        docs.append(GoldDoc(xml.stem, text, tuple(spans)))
    if not docs:
        raise BadInput("no .xml files", path=directory)
    return docs


def deidgate_seed_path() -> Path:
    """The ``safeharbor_seed.jsonl`` shipped inside the installed ``deidgate`` package."""
    from importlib.resources import files

    return Path(str(files("deidgate") / "data" / "safeharbor_seed.jsonl"))


def read_deidgate(path: str | Path | None = None) -> list[GoldDoc]:
    """Read a deidgate JSONL corpus (``{id, text, phi: [{value, category}]}``).

    deidgate labels values, not offsets: every occurrence of each value in the text
    becomes a gold span of its category (case-insensitive when no exact match).
    """
    path = Path(path) if path is not None else deidgate_seed_path()
    docs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            obj = json.loads(line)
            text, phi = str(obj["text"]), list(obj["phi"])
        except (ValueError, KeyError, TypeError) as err:
            raise BadInput(f"invalid deidgate record ({type(err).__name__})", path=path,
                           row=n) from None
        spans = []
        for item in phi:
            value, cat = str(item["value"]), str(item["category"])
            hay = text if value in text else text.lower()
            needle = value if value in text else value.lower()
            k = hay.find(needle)
            if k < 0:
                raise BadInput("a labelled value does not occur in its text", path=path, row=n)
            while k >= 0:
                spans.append(GoldSpan(k, k + len(value), cat))
                k = hay.find(needle, k + 1)
        docs.append(GoldDoc(str(obj.get("id", n)), text, tuple(spans)))
    return docs


def demo_gold(reports: Iterable[Any], min_age: int = 90) -> list[GoldDoc]:
    """Gold docs from ``veil.demo`` reports; ages below ``min_age`` are not PHI (Safe Harbor)."""
    docs = []
    for r in reports:
        spans = tuple(GoldSpan(int(s["start"]), int(s["end"]), str(s["type"]))
                      for s in r.phi_spans
                      if not (s["type"] == "AGE" and _age(r.text[s["start"]:s["end"]]) < min_age))
        docs.append(GoldDoc(str(r.id), r.text, spans))
    return docs


def _age(value: str) -> int:
    digits = "".join(c for c in value if c.isdigit())
    return int(digits) if digits else 0


def markdown_table(scores: PhiScores, name: str) -> str:
    """Overall and per-type figures as a Markdown table (no document text)."""
    lines = [f"**{name}** — {scores.n_docs} documents, {scores.gold.spans} gold spans: "
             f"char recall **{scores.recall:.3f}**, entity recall {scores.entity_recall:.3f}, "
             f"char precision **{scores.precision:.3f}**", "",
             "| gold type | spans | entity recall | char recall |", "|---|---|---|---|"]
    for t, ts in scores.recall_by_type.items():
        lines.append(f"| {t} | {ts.spans} | {ts.span_rate:.3f} | {ts.char_rate:.3f} |")
    lines += ["", "| predicted type | spans | char precision |", "|---|---|---|"]
    for t, ts in scores.precision_by_type.items():
        lines.append(f"| {t} | {ts.spans} | {ts.char_rate:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print recall/precision tables for the requested corpora (see module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m veil.privatize.phi_eval")
    ap.add_argument("--i2b2", type=Path, help="directory of i2b2-format .xml notes")
    ap.add_argument("--deidgate", action="store_true", help="the deidgate seed corpus")
    ap.add_argument("--demo", type=int, default=0, help="N veil demo reports (seed 0)")
    ap.add_argument("--cases", action="store_true", help="also UPPER/lower-cased copies")
    ap.add_argument("--threshold", type=float, default=PhiConfig().threshold)
    args = ap.parse_args(argv)
    corpora: list[tuple[str, list[GoldDoc]]] = []
    if args.i2b2:
        corpora.append(("i2b2 samples", read_i2b2(args.i2b2)))
    if args.deidgate:
        corpora.append(("deidgate seed", read_deidgate()))
    if args.demo:
        from veil.demo import generate_demo_corpus

        corpora.append((f"veil demo ({args.demo})", demo_gold(generate_demo_corpus(args.demo,
                                                                                   seed=0))))
    if args.cases:
        corpora += [(f"{n}, {c} case", recase(d, c)) for n, d in list(corpora)
                    for c in ("upper", "lower")]
    detector = PhiDetector(PhiConfig(threshold=args.threshold)).load()
    for name, docs in corpora:
        print(markdown_table(score(docs, detector.detect([d.text for d in docs])), name), "\n")


def recase(docs: Sequence[GoldDoc], case: str) -> list[GoldDoc]:
    """The same documents in ``upper`` or ``lower`` case (offsets unchanged)."""
    out = []
    for d in docs:
        text = d.text.upper() if case == "upper" else d.text.lower()
        if len(text) != len(d.text):
            raise ValueError("case change altered the text length")
        out.append(GoldDoc(d.id, text, d.spans))
    return out


if __name__ == "__main__":
    main()
