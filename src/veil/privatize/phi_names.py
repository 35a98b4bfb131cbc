"""Person and place recognizers that work without capitals: context cues plus dictionaries.

* :class:`ContextNameRecognizer` — names after honorifics and labels ("Dr.", "Mr.",
  "Attending:", "cc:", "patient", "seen by"), before credentials (", MD", ", RN"),
  "SURNAME,FIRST" forms, dictation lines ("XGT:holmes", "GPP/church/olinger") and
  quoted nicknames ("called 'Sunny'").
* :class:`LexiconRecognizer` — names and places from the dictionaries in
  :mod:`phi_lexicon`, judged by the case style of the line (mixed, ALL CAPS, lower).
* :class:`NerRecognizer` — spaCy's entities, filtered by the clinical safe-list.

Each line is classed as mixed, upper or lower case (:func:`line_modes`): in mixed
lines capitals carry evidence, elsewhere only the dictionaries do.
"""

from __future__ import annotations

import bisect
from functools import lru_cache

import regex as re
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from veil.privatize.phi_lexicon import Lexicons, word_set

MIXED, UPPER, LOWER = "mixed", "upper", "lower"
_PARTS = re.compile(r"[-'’]")
_TOKEN = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*\.?|[A-Z]\.", re.UNICODE)
_CREDENTIALS = word_set("""md m.d. m.d do d.o. rn r.n. np n.p. pa pa-c p.a. phd ph.d. mbbs
    facp facs cnm crna lpn aprn dnp pharmd msw lcsw jr sr ii iii""")
_HONORIFICS = frozenset(("dr", "mr", "mrs", "ms", "miss", "mx", "prof", "drs"))
_HONORIFIC = r"\b(?:dr|mr|mrs|ms|miss|mx|prof|drs)\b\.?[ \t]+"
_LABEL = (r"\b(?:(?:patient|pt)(?:'s)?\s+name|name|patient|pcp|attending|resident|intern|fellow"
          r"|surgeon|physician|provider|nurse|referred\s+by|(?:referring|ordering)(?:\s+"
          r"(?:physician|provider|md|doctor))?|consultant|dictated\s+by|transcribed\s+by|(?:"
          r"electronically\s+)?signed\s+by|cosigned\s+by|reviewed\s+by|author|son|daughter|wife"
          r"|husband|mother|father|sister|brother|spouse|partner|friend|guardian|(?:emergency\s+)?"
          r"contact|next\s+of\s+kin|nok|hcp|health\s+care\s+proxy)[ \t]*:[ \t]*")
_SOFT = (r"\b(?:cc[ \t]*:|patient|pt|seen\s+by|evaluated\s+by|examined\s+by|discussed\s+with"
         r"|spoke\s+(?:with|to)|(?:electronically\s+)?signed\s+by|dictated\s+by|cosigned\s+by"
         r"|reviewed\s+by|ordered\s+by|per|accompanied\s+by|charted\s+as|known\s+as|named|called"
         r"|goes\s+by|nicknamed?)[ \t]+")
#: A quoted word after "called", "known as", ... is a name whatever its case or commonness.
_NICKNAME = (r"\b(?:called|named|known\s+as|goes\s+by|nicknamed?|a\.?k\.?a\.?)[ \t]+['\"“‘]"
             r"(?=[^'\"”’\n]{1,40}['\"”’])")
_CRED_AFTER = (r"(?:,[ \t]*(?:M\.?D\.?|(?-i:D\.?O\.?|R\.?N\.?|N\.?P\.?|P\.?A\.?(?:-C)?|Ph\.?D\.?"
               r"|MBBS|FACP|FACS|CNM|CRNA|LPN|APRN|DNP|PharmD|LCSW))|[ \t]+(?:M\.D\.|MD))(?![\w])")
_DICTATION = r"^[ \t]*[a-z]{2,4}[ \t]*[:/][ \t]*(?:([a-z]{2,})[ \t]*/?[ \t]*)+$"
_COMMA_CAPS = r"\b([A-Z][A-Z'-]+),[ \t]?([A-Z][A-Z'-]+)\b"
_COMMA_TITLE = r"\b([A-Z][a-z'-]+),[ \t]([A-Z][a-z'-]+)\b"
_COMMA_LOWER = r"\b([a-z][a-z'-]+),[ \t]?([a-z][a-z'-]+)\b"


_UPPER_CHARS = re.compile(r"\p{Lu}")
_LOWER_CHARS = re.compile(r"\p{Ll}")


@lru_cache(maxsize=16)
def line_modes(text: str) -> tuple[list[int], list[str]]:
    """Line start offsets and each line's case mode (``mixed``, ``upper`` or ``lower``).

    A line with >= 80% capitals is upper; a document without capitals is lower
    throughout; otherwise lines are mixed (a wrapped line without capitals included).
    Cached for the last few texts (the name recognizers share it).
    """
    up = len(_UPPER_CHARS.findall(text))
    low = len(_LOWER_CHARS.findall(text))
    doc = UPPER if up >= 0.8 * max(up + low, 1) else LOWER if up <= 0.02 * (up + low) else MIXED
    starts, modes, pos = [], [], 0
    for line in text.split("\n"):
        mode = doc
        if doc == MIXED:
            u = len(_UPPER_CHARS.findall(line))
            if u >= 3 and u >= 0.8 * (u + len(_LOWER_CHARS.findall(line))):
                mode = UPPER
        starts.append(pos)
        modes.append(mode)
        pos += len(line) + 1
    return starts, modes


def header_label(text: str, end: int) -> bool:
    """Whether the word ending at ``end`` is a field label ("Neuro:", "DOA:")."""
    k = end
    while k < len(text) and text[k] in " \t":
        k += 1
    return k < len(text) and text[k] == ":"


def _result(entity: str, start: int, end: int, score: float, name: str) -> RecognizerResult:
    return RecognizerResult(entity, start, end, score,
                            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: name})


class _Base(EntityRecognizer):
    def __init__(self, name: str, entities: list[str], lex: Lexicons) -> None:
        super().__init__(supported_entities=entities, name=name, supported_language="en")
        self.rec_name: str = name
        self.lex = lex
        self._memo: dict[str, tuple[bool, bool]] = {}

    def load(self) -> None:
        pass

    def blocked(self, tok: str, nxt: str = "", safe: bool = True) -> bool:
        """Stop words, honorifics, credentials and (if ``safe``) safe-listed clinical words
        never make a name."""
        low = tok.casefold().rstrip(".")
        return (low in self.lex.stop or low in _HONORIFICS or tok.casefold() in _CREDENTIALS
                or (safe and self.lex.safe(tok, nxt)))

    def _facts(self, tok: str) -> tuple[bool, bool]:
        """(frequent name in some hyphen part, uncommon in every part), memoised per word."""
        facts = self._memo.get(tok)
        if facts is None:
            parts = [p for p in _PARTS.split(tok.rstrip(".")) if p]
            name = any(self.lex.names.is_name(p) for p in parts)
            long = [p for p in parts if len(p) > 1]
            uncommon = bool(long) and all(p not in self.lex.common for p in long)
            if len(self._memo) > 200_000:
                self._memo.clear()
            facts = self._memo[tok] = (name, uncommon)
        return facts

    def is_name(self, tok: str) -> bool:
        """A frequent name in any hyphen part ("Reyes-Villalobos")."""
        return self._facts(tok)[0]

    def uncommon(self, tok: str) -> bool:
        """Not an everyday English word (in every hyphen part)."""
        return self._facts(tok)[1]


class ContextNameRecognizer(_Base):
    """Person names signalled by context (honorifics, labels, credentials, dictation lines)."""

    def __init__(self, lex: Lexicons) -> None:
        super().__init__("context name", ["PERSON"], lex)
        self._fwd = [(re.compile(_HONORIFIC, re.I), True), (re.compile(_LABEL, re.I), True),
                     (re.compile(_NICKNAME, re.I), True), (re.compile(_SOFT, re.I), False)]
        self._cred = re.compile(_CRED_AFTER, re.I)
        self._dict = re.compile(_DICTATION, re.M | re.I)
        self._pairs = [re.compile(_COMMA_CAPS), re.compile(_COMMA_TITLE),
                       re.compile(_COMMA_LOWER)]

    def _ok(self, tok: str, nxt: str, mode: str, strong: bool, first: str | None) -> bool:
        """Whether ``tok`` continues a name; ``first`` is the name's first token (None: this)."""
        if len(tok.rstrip(".")) == 1:
            return (tok[0].isupper() or mode != MIXED) and \
                (first is not None or (strong and tok.endswith(".")))
        if strong and first is None:
            return not self.blocked(tok, nxt, safe=False)
        if self.blocked(tok, nxt):
            return False
        if mode == MIXED:
            shape = tok[:1].isupper() and (not tok.isupper() or bool(first and first.isupper()))
            return shape and (strong or self.is_name(tok) or self.uncommon(tok))
        return self.is_name(tok) and (strong or self.uncommon(tok))

    def _walk(self, text: str, pos: int, stop: int, mode: str, strong: bool) -> tuple[int, int]:
        """Span of up to 4 name tokens from ``pos`` on one line, or (-1, -1)."""
        toks: list[re.Match[str]] = []
        for m in _TOKEN.finditer(text, pos, stop):
            gap = text[pos:m.start()]
            if (toks and (gap.strip(" ") not in ("", ",") or "  " in gap or "\t" in gap
                         or ("," in gap and len(toks) > 1))) or (not toks and gap.strip()):
                break
            toks.append(m)
            pos = m.end()
            if len(toks) == 4 or m.group().endswith(("'s", "’s")):
                break
        end = -1
        for k, m in enumerate(toks):
            nxt = toks[k + 1].group() if k + 1 < len(toks) else ""
            if not self._ok(m.group(), nxt, mode, strong, toks[0].group() if k else None):
                break
            end = k
        while end > 0 and len(toks[end].group().rstrip(".")) == 1 and not strong:
            end -= 1
        if end < 0:
            return -1, -1
        word = toks[end].group()
        cut = 2 if word.endswith(("'s", "’s")) else int(word.endswith(".") and len(word) > 2)
        return toks[0].start(), toks[end].end() - cut

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        """Names after or before their cues, with a confidence per cue strength."""
        starts, modes = line_modes(text)

        def mode_at(i: int) -> str:
            return modes[bisect.bisect_right(starts, i) - 1]

        out: list[RecognizerResult] = []
        for rx, strong in self._fwd:
            for m in rx.finditer(text):
                eol = text.find("\n", m.end())
                s, e = self._walk(text, m.end(), len(text) if eol < 0 else eol,
                                  mode_at(m.end()), strong)
                if s >= 0:
                    out.append(_result("PERSON", s, e, 0.85 if strong else 0.7, self.rec_name))
        for m in self._cred.finditer(text):
            out.extend(self._before(text, m.start(), mode_at(m.start())))
        for m in self._dict.finditer(text):
            for k, word in enumerate(m.captures(1)):
                if self.is_name(word) and not self.blocked(word):
                    out.append(_result("PERSON", m.starts(1)[k], m.ends(1)[k], 0.7, self.rec_name))
        for k, rx in enumerate(self._pairs):
            for m in rx.finditer(text):
                a, b = m.group(1), m.group(2)
                if self.blocked(a) or self.blocked(b) or (k == 2 and mode_at(m.start()) == MIXED):
                    continue
                na, nb = self.is_name(a), self.is_name(b)
                if (na and nb) or (na and self.uncommon(b)) or (nb and self.uncommon(a)):
                    out.append(_result("PERSON", m.start(), m.end(), 0.7, self.rec_name))
        return out

    def _before(self, text: str, end: int, mode: str) -> list[RecognizerResult]:
        """Up to 3 name tokens (plus initials) right before a credential."""
        line_start = text.rfind("\n", 0, end) + 1
        toks = list(_TOKEN.finditer(text, line_start, end))[-5:]
        start, words = -1, 0
        for k in range(len(toks) - 1, -1, -1):
            tok = toks[k].group()
            nxt = toks[k + 1].start() if k + 1 < len(toks) else end
            if text[toks[k].end():nxt].strip(" \t") or words == 3:
                break
            if len(tok.rstrip(".")) == 1 and k < len(toks) - 1:
                start = toks[k].start()
                continue
            evidence = self.is_name(tok) or self.uncommon(tok)
            if self.blocked(tok) or (mode == MIXED and not tok[0].isupper()) or \
                    (mode != MIXED and words == 0 and not evidence):
                break
            start, words = toks[k].start(), words + 1
        return [_result("PERSON", start, end, 0.85, self.rec_name)] if start >= 0 else []
