"""Dictionary and NER evidence for names and places, judged by each line's case style.

:class:`LexiconRecognizer` flags words found in the name and place dictionaries
(:mod:`phi_lexicon`). In mixed-case lines a capitalised, uncommon name is strong
evidence and a capitalised common word ("Bell") weak; in ALL CAPS or lower-case
lines only uncommon names count, or a first name followed by a last name. Flags
spread to adjacent capitalised words and initials ("Marisol Ferndale-Ostrowski",
"Carrie H. Chandler"). :class:`NerRecognizer` keeps spaCy's PERSON / place / ORG /
dated entities unless the clinical safe-list or the common-word list explains them.
"""

from __future__ import annotations

import bisect
from typing import Any

import regex as re
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from veil.privatize.phi_lexicon import Lexicons, word_set
from veil.privatize.phi_names import (
    _HONORIFICS,
    MIXED,
    _Base,
    _result,
    header_label,
    line_modes,
)

_WORD = re.compile(r"[^\W\d_]+(?:['’](?![sS]\b)[^\W\d_]+)?")
_PLACE_PREP = frozenset(["in", "at", "from", "near", "to", "of", "outside"])
#: spaCy labels -> the labels used below (others are ignored).
_NER_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION",
               "ORG": "ORGANIZATION", "DATE": "DATE_TIME", "TIME": "DATE_TIME"}
_DATE_WORDS = word_set("""the of on in at early mid late day days year years week weeks month
    months st nd rd th am pm a.m. p.m. noon midnight morning evening night monday tuesday
    wednesday thursday friday saturday sunday spring summer fall autumn winter""")
_MONTH_OR_YEAR = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|\b(?:19|20)\d{2}\b", re.I)


def _sentence_initial(text: str, start: int) -> bool:
    """Whether the word at ``start`` opens a line, sentence, list item or field."""
    k = start - 1
    while k >= 0 and text[k] in " \t":
        k -= 1
    return k < 0 or text[k] in "\n.!?:;*#•-(\"'" or text[k].isdigit()


class LexiconRecognizer(_Base):
    """Names and places found in the dictionaries, with scores by case evidence."""

    def __init__(self, lex: Lexicons) -> None:
        super().__init__("dictionary", ["PERSON", "LOCATION"], lex)

    def _name_score(self, text: str, tok: re.Match[str], mode: str) -> float:
        word = tok.group()
        name, common = self.is_name(word), not self.uncommon(word)
        if not name or header_label(text, tok.end()):
            return 0.0
        start = tok.start()
        if mode != MIXED:
            return 0.5 if not common and len(word) >= 3 else 0.0
        if word[0].isupper() and not word.isupper():
            if _sentence_initial(text, start):
                return 0.5 if not common else 0.0
            return 0.7 if not common else 0.4
        if word.isupper() and len(word) >= 4 and not common:
            return 0.3
        return 0.0

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        """Dictionary names and places in ``text`` (tokenised by a simple word regex)."""
        starts, modes = line_modes(text)
        toks = list(_WORD.finditer(text))
        words = [m.group() for m in toks]
        mode = [modes[bisect.bisect_right(starts, m.start()) - 1] for m in toks]
        score = [0.0] * len(toks)
        out: list[RecognizerResult] = []
        i = 0
        while i < len(toks):
            n = self._place(text, toks, words, mode, i)
            if n:
                out.append(_result("LOCATION", toks[i].start(), toks[i + n - 1].end(),
                                   0.6 if n > 1 else 0.5, self.rec_name))
                i += n
                continue
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if len(words[i]) > 1 and not self.blocked(words[i], nxt):
                score[i] = self._name_score(text, toks[i], mode[i])
                if (score[i] == 0.0 and nxt and self._adjacent(text, toks, i)
                        and self.lex.names.is_first(words[i]) and self.lex.names.is_last(nxt)
                        and not self.blocked(nxt) and self._shape_ok(words[i], nxt, mode[i])):
                    score[i] = score[i + 1] = 0.55
            i += 1
        self._spread(text, toks, words, mode, score)
        k = 0
        while k < len(toks):
            if score[k] <= 0.0:
                k += 1
                continue
            j = k
            while j + 1 < len(toks) and score[j + 1] > 0.0 and self._adjacent(text, toks, j):
                j += 1
            out.append(_result("PERSON", toks[k].start(), toks[j].end(),
                               max(score[k:j + 1]), self.rec_name))
            k = j + 1
        return out

    @staticmethod
    def _shape_ok(a: str, b: str, mode: str) -> bool:
        return mode != MIXED or (a[:1].isupper() and b[:1].isupper())

    @staticmethod
    def _adjacent(text: str, toks: list[re.Match[str]], i: int) -> bool:
        """Whether token ``i + 1`` follows token ``i`` with only a space, hyphen or "X." between."""
        if i + 1 >= len(toks):
            return False
        gap = text[toks[i].end():toks[i + 1].start()]
        return gap in (" ", "-", ". ", ".") or (len(toks[i].group()) == 1 and gap == ". ")

    def _spread(self, text: str, toks: list[re.Match[str]], words: list[str],
                mode: list[str], score: list[float]) -> None:
        """Extend flags to adjacent capitalised uncommon words and single-letter initials."""
        for _ in range(2):
            for i in range(len(toks)):
                if score[i] > 0.0:
                    continue
                left = i > 0 and score[i - 1] > 0.0 and self._adjacent(text, toks, i - 1)
                right = i + 1 < len(toks) and score[i + 1] > 0.0 and \
                    self._adjacent(text, toks, i)
                w = words[i]
                if not (left or right) or self.blocked(w):
                    continue
                initial = len(w) == 1 and w.isupper() and left and right
                capital = len(w) > 1 and mode[i] == MIXED and w[0].isupper() and not w.isupper()
                if initial or (capital and self.uncommon(w)):
                    score[i] = 0.5
                elif len(w) > 2 and mode[i] != MIXED and self.is_name(w):
                    score[i] = 0.45

    def _place(self, text: str, toks: list[re.Match[str]], words: list[str],
               mode: list[str], i: int) -> int:
        n = self.lex.places.match(words, i)
        if not n or any(not self._adjacent(text, toks, k) for k in range(i, i + n - 1)):
            return 0
        span = words[i:i + n]
        after_word = words[i + n] if i + n < len(words) else ""
        if any(self.lex.safe(w, after_word) for w in span):
            return 0
        common = all(not self.uncommon(w) for w in span)
        if mode[i] != MIXED:
            return n if not common or n > 1 else 0
        if not all(w[0].isupper() for w in span) or (n == 1 and span[0].isupper()):
            return 0
        prev = words[i - 1].casefold() if i > 0 else ""
        after = text[toks[i + n - 1].end():toks[i + n - 1].end() + 5]
        if n == 1 and common and prev not in _PLACE_PREP and not re.match(r",\s?[A-Z]{2}\b", after):
            return 0
        if n == 1 and _sentence_initial(text, toks[i].start()) and common:
            return 0
        return n


def _leading_run(ent: Any) -> list[Any]:
    """The entity's tokens up to a line break, a wide gap or a field label ("MRN:")."""
    out: list[Any] = []
    for t in ent:
        if not out and (t.is_punct or t.lower_.rstrip(".") in _HONORIFICS):
            continue
        if t.is_space or t.text == ":" or (out and t.idx > out[-1].idx + len(out[-1].text) + 1):
            break
        out.append(t)
        nxt = t.nbor() if t.i + 1 < len(t.doc) else None
        if nxt is not None and nxt.text == ":":
            out.pop()
            break
    return out


class NerRecognizer(_Base):
    """spaCy entities (already mapped by Presidio) minus those the safe-list explains."""

    def __init__(self, lex: Lexicons) -> None:
        super().__init__("spacy ner", ["PERSON", "LOCATION", "ORGANIZATION", "DATE"], lex)

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        """Filtered spaCy entities with per-label confidences."""
        if nlp_artifacts is None:
            return []
        out = []
        for ent in nlp_artifacts.entities:
            toks = _leading_run(ent)
            if not toks:
                continue
            start, end = toks[0].idx, toks[-1].idx + len(toks[-1].text)
            label, span = _NER_LABELS.get(ent.label_, ""), text[start:end]
            words = [t.text for t in toks if t.is_alpha]
            if (not words or "XXXX" in span or header_label(text, end)
                    or any(self.lex.safe(w) for w in words)
                    or all(len(w) < 4 for w in words)):
                continue
            found: tuple[str, float] | None = None
            if label == "DATE_TIME":
                dated = _MONTH_OR_YEAR.search(span) and all(
                    w.casefold() in _DATE_WORDS or _MONTH_OR_YEAR.fullmatch(w) for w in words)
                found = ("DATE", 0.5) if dated else None
            else:
                uncommon = [w for w in words
                            if self.uncommon(w) and w.casefold() not in self.lex.stop]
                named = any(self.is_name(w) for w in words)
                capital = all(w[0].isupper() and not w.isupper() for w in words if len(w) > 1)
                if label == "PERSON" and named:
                    found = ("PERSON", 0.75)
                elif label == "PERSON" and uncommon and capital:
                    found = ("PERSON", 0.45 if len(words) > 1 else 0.3)
                elif label == "LOCATION" and (uncommon or named) and capital:
                    found = ("LOCATION", 0.55)
                elif label == "ORGANIZATION" and uncommon and capital and len(words) > 1:
                    found = ("ORGANIZATION", 0.4)
            if found:
                out.append(_result(found[0], start, end, found[1], self.rec_name))
        return out


class FacilityRecognizer(_Base):
    """Hospitals and clinics: 1-4 name words before a facility keyword.

    "St. Mary's Hospital", "Boston Medical Center", "SILVER RIDGE EMERGENCY DEPT",
    "boston medical center". Stops at stop words; generic modifiers and specialties
    ("outside", "local", "cardiology") alone do not make a name. In mixed-case lines the
    name words must be capitalised. A department keyword (emergency dept/room) is left
    out of the span; a proper facility keyword (Hospital, Clinic, ...) is kept in it.
    """

    KEYWORDS = (r"(?P<kw>hospital(?!\s+(?:course|stay|day|admission|bed|discharge|records?"
                r"|policy|staff|number|floor))|medical\s+cent(?:er|re)|med\.?\s+ctr"
                r"|health\s+(?:cent(?:er|re)|system|care\s+center)|healthcare|clinics?|infirmary|medical\s+(?:group"
                r"|associates)|rehab(?:ilitation)?\s+(?:center|hospital)|nursing\s+(?:home"
                r"|facility)|care\s+center|cancer\s+(?:center|institute)|heart\s+institute"
                r"|surg(?:ery|ical)\s+center|imaging\s+center|hospice|sanatorium"
                r"|(?P<dept>emergency\s+(?:dep(?:t|artment)|room)|urgent\s+care))\b")
    GENERIC = word_set("""
        outside other another local community general regional county state city university
        memorial medical hospital clinic same our your their his her this that cardiology
        pulmonary oncology surgery surgical medicine pediatric pediatrics primary care
        urgent walk-in outpatient inpatient eye dental pain sleep wound heart lung kidney
        renal liver cancer breast vascular orthopedic ortho neurology psychiatry psychiatric
        dermatology gi ent ob gyn obgyn diabetes endocrine rheumatology infectious disease
        allergy anticoagulation coumadin transplant rehab private children's womens women's
        veterans va nearby new old main north south east west teaching affiliated referring
        admitting receiving transferring area emergency department dept room follow-up
        followup f/u return next prior previous recent last
    """)
    #: Words dropped from the left edge of a facility name.
    STRIP = word_set("""
        outside other another local nearby same our your their his her this that the
        referring admitting receiving transferring follow-up followup f/u return next prior
        previous recent last new old
    """)

    def __init__(self, lex: Lexicons) -> None:
        super().__init__("facility", ["HOSPITAL"], lex)
        self._stop = lex.stop
        self._kw = re.compile(self.KEYWORDS, re.I)
        self._word = re.compile(r"([A-Za-z][\w'’.&-]*)\s+$")

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        """Facility names ending at each keyword match."""
        out: list[RecognizerResult] = []
        for m in self._kw.finditer(text):
            line_start = text.rfind("\n", 0, m.start()) + 1
            line = text[line_start:m.end()]
            mixed = any(c.islower() for c in line) and any(c.isupper() for c in line)
            pos, words = m.start(), list[tuple[int, str]]()
            while len(words) < 4:
                w = self._word.search(text, line_start, pos)
                if not w:
                    break
                tok = w.group(1)
                low = tok.casefold()
                if low != "of" and (low in self._stop or (mixed and not tok[0].isupper())):
                    break
                if low == "of" and not words:
                    break
                words.append((w.start(1), low))
                pos = w.start(1)
            while words and (words[-1][1] == "of" or words[-1][1] in self.STRIP):
                words.pop()
            if not any(w not in self.GENERIC for _, w in words):
                continue
            end = m.start("dept") if m.group("dept") else m.end()
            end = len(text[:end].rstrip())
            out.append(RecognizerResult(
                "HOSPITAL", words[-1][0], end, 0.75,
                recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.rec_name}))
        return out
