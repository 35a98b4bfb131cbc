"""Clinical PHI recognizers that Presidio lacks: IDs, clinical dates, ages > 89, phones,
addresses, facilities, masks.

Each is a Presidio :class:`PatternRecognizer` (regexes run by the ``regex`` module, so
variable-width look-behinds pick out just the value after a label such as ``MRN:``)
or a small :class:`EntityRecognizer` subclass where a regex alone cannot decide.
Patterns are case-insensitive unless a comment says otherwise, because real notes
are often ALL CAPS or all lower case. Scores are confidences in [0, 1]; the
detector drops spans under its threshold. Person names are in :mod:`phi_names`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import regex as re
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from veil.privatize.phi_lexicon import word_set

if TYPE_CHECKING:
    from veil.privatize.sensitivity import PhiConfig

_I = re.IGNORECASE | re.MULTILINE
_CS = re.MULTILINE  # case-sensitive

MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
         r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_ORD = (r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh"
        r"|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth"
        r"|nineteenth|twentieth|twenty[- ](?:first|second|third|fourth|fifth|sixth|seventh"
        r"|eighth|ninth)|thirtieth|thirty[- ]first)")
_YEAR = r"(?:19|20)\d{2}"
_TIME = r"(?:\s*(?:,|at|@)?\s*(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:\s*[ap]\.?m\.?)?)?"
_M = r"(?:0?[1-9]|1[0-2])"
_D = r"(?:0?[1-9]|[12]\d|3[01])"
_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT"
           "|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR|GU|VI"
           "|AS|MP|PW|FM|MH")
_AGE = r"(?:9\d|1[01]\d)"
_NUM_LABEL = r"\s*(?:is\s+|of\s+|=\s*)?[:#.]?\s*"
_VALUE = r"(?=[A-Z/-]*\d)[A-Z0-9][A-Z0-9/-]*[A-Z0-9]"

DATE_PATTERNS: list[tuple[str, str, float]] = [
    ("date m/d/y", rf"(?<![\d/.-]){_M}([/.-]){_D}\1(?:\d{{4}}|\d{{2}})(?![\d/]){_TIME}", 0.9),
    ("date iso", rf"(?<![\d/-]){_YEAR}([-/.]){_M}\1{_D}(?![\d/])(?:T\d\d:\d\d(?::\d\d)?)?{_TIME}",
     0.9),
    ("date d/m/y", rf"(?<![\d/.-])(?:1[3-9]|2\d|3[01])/{_M}/(?:\d{{4}}|\d{{2}})(?![\d/])", 0.8),
    ("date m/d", rf"(?<![\d/.,]|\bbp\s?|pain\s?|score\s?)(?!(?:1/2|1/3|2/3|1/4|3/4)\b)"
     rf"{_M}/{_D}(?![\d/]|\.\d|\s*(?:tabs?|tablets?|caps?|pills?|strength|pain)\b){_TIME}", 0.5),
    ("date m/y", rf"(?<![\d/.,]){_M}/(?:{_YEAR}|3[2-9]|[4-9]\d)(?![\d/]|\.\d)", 0.6),
    ("date ordinal of month",
     rf"\b(?:the\s+)?(?:{_DAY}|{_ORD})\s+(?:day\s+)?of\s+{MONTH}\b\.?(?:,?\s+{_YEAR}\b)?", 0.85),
    ("date month day",
     rf"\b{MONTH}\b\.?\s+(?:the\s+)?(?:{_DAY}|{_ORD})\b(?:,?\s+{_YEAR}\b)?{_TIME}", 0.85),
    ("date month year", rf"\b{MONTH}\b\.?,?\s+(?:of\s+)?{_YEAR}\b", 0.85),
    ("date day month", rf"\b{_DAY}\s+(?:(?-i:May)|jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?"
     rf"|apr(?:il)?|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?"
     rf"|dec(?:ember)?)\b\.?(?:,?\s+{_YEAR}\b)?", 0.8),
    ("date month alone", r"\b(?:january|february|april|june|july|august|september|october"
     r"|november|december|(?-i:March))\b", 0.6),
    ("date holiday", r"\b(?:christmas(?:\s+eve)?|thanksgiving|easter|halloween"
     r"|new\s+year'?s(?:\s+(?:eve|day))?|(?:independence|memorial|labor|veterans)\s+day)\b", 0.6),
    ("date year in context", rf"\b(?:in|since|from|until|during|of|by|year|circa)\s+\K"
     rf"{_YEAR}\b(?!\s*(?:mg|mcg|ml|units?|cc|g)\b)", 0.5),
]
AGE_PATTERNS: list[tuple[str, str, float]] = [
    ("age years old", rf"\b{_AGE}(?:\s*-\s*|\s+)?(?:years?|yrs?|y)\.?(?:\s*-\s*|\s+)?old\b", 0.9),
    ("age yo", rf"\b{_AGE}\s*-?\s*(?:yo|y/o|y\.o\.?|yoa)(?!\w)", 0.9),
    ("age of", rf"\b{_AGE}\s+(?:years?|yrs?)\s+of\s+age\b", 0.9),
    ("age label", rf"\bage[ds]?\s*(?:of\s+|:\s*|=\s*|is\s+)?\K{_AGE}\b", 0.9),
    ("age decade", r"\bin\s+(?:his|her|their)\s+(?:(?:early|mid|late)[- ])?\K(?:90|100)'?s\b",
     0.7),
    ("age word", r"\b(?:nonagenarian|centenarian|supercentenarian)\b", 0.6),
]
PHONE_PATTERNS: list[tuple[str, str, float]] = [
    ("phone us", r"(?<![\w+])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s*|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
     r"(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?(?!\d)", 0.85),
    ("phone local", r"(?<![\w./-])\d{3}-\d{4}(?![\w/-])", 0.6),
    ("phone labelled", r"\b(?:pager|pgr|beeper|beep|ext|extension|fax|tel|telephone|phone"
     r"|cell|mobile)\.?\s*(?:#|no\.?|number)?\s*(?:is\s+)?[:#]?\s*\K\d{4,6}\b", 0.75),
]
_NUMWORD = r"\s*(?:number|num|no\.?|#|id)"
ID_PATTERNS: list[tuple[str, str, str, float]] = [
    ("MRN", "mrn", rf"(?:MRN(?:{_NUMWORD})?|\bMR\s*[#:]|\bmedical\s+record|\b(?:med(?:ical)?"
     rf"\s+)?rec(?:ord)?s?{_NUMWORD}|\b(?:chart|unit|hospital|patient|pt){_NUMWORD})"
     rf"{_NUM_LABEL}\K{_VALUE}", 0.95),
    ("ACCESSION", "accession", rf"\b(?:accession|acc|acsn)(?:{_NUMWORD})?{_NUM_LABEL}\K"
     rf"{_VALUE}", 0.95),
    ("ACCOUNT", "account", rf"\b(?:(?:billing\s+)?account|acct|subscriber|policy|member"
     rf"|medicaid|medicare|(?:(?:health\s+)?plan|insurance|billing|claim)(?=\s*(?:member|id"
     rf"|number|num|no|\#)))(?:\s+member)?(?:{_NUMWORD})?{_NUM_LABEL}\K{_VALUE}", 0.9),
    ("SSN", "ssn", rf"\b(?:ssn|social\s+security|ss\s*#)(?:{_NUMWORD})?{_NUM_LABEL}\K"
     r"\d{3}[- .]?\d{2}[- .]?\d{4}\b", 0.95),
    ("ID", "labelled id", rf"\b(?:(?:license|licence|npi|dea|serial|vin|passport|badge"
     rf"|username|login|plate|employee|enrollment|participant|specimen|encounter)(?:{_NUMWORD})?"
     rf"|(?:lic|sn|device|visit|case|study|code|template|user|ip){_NUMWORD}){_NUM_LABEL}\K"
     rf"{_VALUE}", 0.85),
    ("ID", "digit groups", r"(?<![\w/.-])\d{2,}(?:-\d+){2,}(?![\w/-])", 0.5),
    ("ID", "long number", r"(?<![\w.,/-])\d{5,}(?!\w|[.,]\d)", 0.45),
]
#: USPS street suffixes (Publication 28), singular; matched with an optional plural "s".
_SUFFIXES = sorted(word_set("""
    Alley Annex Arcade Avenue Ave Av Bayou Beach Bend Bluff Bottom Boulevard Blvd Branch Bridge
    Brook Burg Bypass Camp Canyon Cape Causeway Center Circle Cir Cliff Club Common Corner
    Course Court Ct Cove Creek Crescent Crest Crossing Crossroad Curve Dale Dam Divide Drive Dr
    Estate Expressway Extension Falls Ferry Field Flat Ford Forest Forge Fork Fort Freeway
    Garden Gateway Glen Green Grove Harbor Haven Heights Highway Hwy Hill Hollow Inlet Island
    Isle Junction Key Knoll Lake Land Landing Lane Ln Light Loaf Lock Lodge Loop Mall Manor
    Meadow Mews Mill Mission Motorway Mount Mountain Neck Orchard Oval Overpass Park Parkway
    Pkwy Pass Passage Path Pike Pine Place Pl Plain Plaza Point Port Prairie Radial Ramp Ranch
    Rapid Rest Ridge River Road Rd Route Row Rue Run Shoal Shore Skyway Spring Spur Square Sq
    Station Stravenue Stream Street St Summit Terrace Ter Throughway Trace Track Trafficway
    Trail Trl Tunnel Turnpike Underpass Union Valley Viaduct View Village Ville Vista Walk Wall
    Way Well"""))
#: Suffixes that are everyday or clinical words ("2 frontal views"): Title case only.
_AMBIGUOUS = word_set("""view point park way run pass path walk light key field station union
    mission loop row track trace lock spur oval ramp rest crest cape neck isle mount fort fork port
    spring shore ridge valley pine hill green glen center club course curve land mall wall well
    camp dam divide branch bottom common corner extension passage arcade annex burg inlet beach
    lake river stream bridge dale flat plain st ave av dr rd ln ct blvd pl sq ter trl hwy pkwy
    cir""")
_UNIT = r"(?:,?\s*(?i:apt|apartment|suite|ste|unit|room|rm|floor|fl|\#)\.?\s*\#?\s*[\w-]+)?"


def _street(words: str, suffixes: list[str], plural: str) -> str:
    alts = "|".join(sorted(suffixes, key=len, reverse=True))
    return (rf"\b\d{{1,6}}[A-Za-z]?\s+(?:(?!(?i:at|the|of|in|on|and|to|with|a|an)\b){words}\s+)"
            rf"{{1,3}}?(?:{alts}){plural}\b\.?{_UNIT}")


ADDRESS_PATTERNS: list[tuple[str, str, str, float, int]] = [
    ("STREET_ADDRESS", "street (Title case)", _street(r"[A-Z0-9][\w'.-]*", _SUFFIXES, "s?"),
     0.85, _CS),
    ("STREET_ADDRESS", "street (UPPER case)",
     _street(r"[A-Z0-9][A-Z0-9'.-]*", [x.upper() for x in _SUFFIXES
                                       if x.lower() not in _AMBIGUOUS], "S?"), 0.85, _CS),
    ("STREET_ADDRESS", "street (lower case)",
     _street(r"[a-z0-9][a-z0-9'.-]*", [x.lower() for x in _SUFFIXES
                                       if x.lower() not in _AMBIGUOUS], "s?"), 0.85, _CS),
    ("STREET_ADDRESS", "street before city, state",
     _street(r"[a-z0-9][\w'.-]*", [x.lower() for x in _SUFFIXES], "s?")
     + rf"(?=,\s*[a-z][a-z .'-]{{1,30}},\s*(?:{_STATES})\b)", 0.85, _I),
    ("LOCATION", "city, state zip",
     r"(?:\b(?!(?:in|at|of|to|from|the|and|near|lives|address)\b)[A-Za-z][A-Za-z.'-]*\s)"
     rf"{{0,2}}[A-Za-z][A-Za-z.'-]*,\s*(?:{_STATES})\.?\s+\d{{5}}(?:-\d{{4}})?\b", 0.85, _I),
    ("ZIP", "state zip", rf"\b(?:{_STATES})\s+\d{{5}}(?:-\d{{4}})?\b", 0.8, _CS),
    ("ZIP", "zip labelled", r"\b(?:zip|zipcode|postal)(?:\s*code)?\b(?:\s+[a-z]+){0,4}?"
     r"\s*[:#]?\s*\K\d{5}(?:-\d{4})?\b", 0.9, _I),
    ("STREET_ADDRESS", "po box", r"\bP\.?\s?O\.?\s+Box\s+\d+\b", 0.9, _I),
    ("LOCATION", "county", r"\b(?:[A-Z][a-z]+\s){1,2}(?:County|Parish|Borough)\b", 0.8, _CS),
    ("LOCATION", "city of", r"\b(?:city|town|village|county)\s+of\s+\K[A-Z][a-z]+"
     r"(?:\s[A-Z][a-z]+)?\b", 0.8, _CS),
    ("HOSPITAL", "icu name", r"\b(?:MICU|SICU|CICU|CVICU|NICU|PICU|TSICU|CSRU|NSICU|MSICU"
     r"|BMTU|CCU)\b", 0.6, _I),
    ("HOSPITAL", "ward or room", r"\b(?:ward|unit|floor|wing|pod|tower|pavilion|building|bldg"
     r"|room|rm|bed|bay)\s*#?\s*(?=[A-Z]?\d)[A-Z0-9]{1,4}(?:-[A-Z0-9]{1,3})?\b", 0.6, _I),
]
WEB_PATTERNS: list[tuple[str, str, str, float]] = [
    ("URL", "url", r"\b(?:https?://|www\.)[^\s<>\"')\]]*[^\s<>\"').,;:\]]", 0.9),
    ("URL", "bare domain", r"(?<![@\w.])[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|org|net"
     r"|edu|gov|io|info|health|example|biz)\b(?:/[^\s<>\"']*[^\s<>\"'.,;:])?", 0.6),
    ("ID", "file name", r"\b[\w.-]+\.(?:jpe?g|png|gif|tiff?|bmp|dcm|pdf|docx?|wav|mp[34])\b",
     0.7),
]
#: Alphanumeric tokens that look like IDs but are clinical codes, units or sizes.
_NOT_ID = re.compile(
    r"^(?:CD\d+|CA-?\d+(?:-\d+)?|IL-?\d+|HLA-\w+|CYP\w+|BRCA\d|HER-?\d|KI-?67|FEV\d+|HBA1C"
    r"|G6PD|ICD-?\d+(?:-\w+)?|DSM-?\w+|COVID-?19|SARS-COV-?2|H\dN\d|[CTLS]\d{1,2}(?:-[CTLS]?\d{1,2})?"
    r"|G\d+P\d+\w*|Q\d+H|\d+D|V\d+|T\d[A-Z]?N\d[A-Z]?M\d|NYHA\w*|[A-Z]{1,3}\d?-\d"
    r"|\d+(?:\.\d+)?(?:X\d+(?:\.\d+)?)*(?:MG|MCG|G|KG|ML|L|CC|CM|MM|M|IN|HRS?|H|MINS?|SEC|S|D"
    r"|WKS?|MOS?|YRS?|Y|X|U|IU|MEQ|MMOL|MMHG|BPM|METS|F|C|ST|ND|RD|TH|GY|CGY|MCI|MBQ|KVP?"
    r"|MAS|MS|K|PM|AM|TABS?|CAPS?|PACKS?|PPD)"
    # genetics: protein/DNA variants (V600E, 185delAG, 535-573del), chromosome bands (18q21)
    r"|[ACDEFGHIKLMNPQRSTVWY]\d{1,4}[ACDEFGHIKLMNPQRSTVWY*X]|\d+(?:[-_]\d+)?(?:del|ins|dup)\w*"
    r"|C\.\d+\w*|P\.\w+|(?:\d{1,2}|X|Y)[PQ]\d+(?:\.\d+)?(?:-[PQ]?\d+(?:\.\d+)?)?)$",
    re.IGNORECASE,
)
_ALNUM = (r"(?<![\w@.-])(?=[A-Z0-9/_-]*\d)(?=[A-Z0-9/_-]*[A-Z])[A-Z0-9]+(?:[-/_][A-Z0-9]+)*"
          r"(?![\w@-]|\.\w)")


class FastPatternRecognizer(PatternRecognizer):
    """A Presidio PatternRecognizer with the same matching and validation rules, minus the
    per-match timing and explanation objects (a large share of the run time on short notes)."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        """Every non-empty match of every pattern, scored as Presidio would score it."""
        flags = regex_flags or self.global_regex_flags
        name: str = self.name  # type: ignore[has-type]
        patterns: list[Pattern] = self.patterns  # type: ignore[has-type]
        out = []
        for pattern in patterns:
            rx: Any = pattern.compiled_regex
            if rx is None or pattern.compiled_with_flags != flags:
                rx = re.compile(pattern.regex, flags=flags)
                pattern.compiled_regex = rx
                pattern.compiled_with_flags = flags  # type: ignore[assignment]
            for m in rx.finditer(text):
                start, end = m.span()
                if start == end:
                    continue
                value = text[start:end]
                score = pattern.score
                valid = self.validate_result(value)
                if valid is not None:
                    score = self.MAX_SCORE if valid else self.MIN_SCORE
                if self.invalidate_result(value):
                    score = self.MIN_SCORE
                if score > self.MIN_SCORE:
                    out.append(RecognizerResult(
                        self.supported_entities[0], start, end, score,
                        recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: name}))
        return out


class AlnumIdRecognizer(FastPatternRecognizer):
    """Codes mixing letters and digits ("XW277/90683", "FB59", "VP-559A", VINs, plates).

    Drops clinical codes, units, sizes and ordinals (``_NOT_ID``) and tokens with fewer
    than two digits; plain tokens need >= 4 characters and >= 3 digits or >= 2 letters.
    """

    def __init__(self) -> None:
        super().__init__(supported_entity="ID", name="alnum id", supported_language="en",
                         patterns=[Pattern("alnum id", _ALNUM, 0.5)], global_regex_flags=_I)

    def invalidate_result(self, pattern_text: str) -> bool | None:
        digits = sum(c.isdigit() for c in pattern_text)
        letters = sum(c.isalpha() for c in pattern_text)
        if digits < 2 or _NOT_ID.match(pattern_text):
            return True
        if not any(c in "-/_" for c in pattern_text):
            return len(pattern_text) < 4 or not (digits >= 3 or letters >= 2)
        return digits < 3


class OfflineEmailRecognizer(FastPatternRecognizer):
    """E-mail addresses, validated against tldextract's bundled suffix list (no network).

    RFC 2606 reserved TLDs (``.example``, ``.test``, ...) count as valid so synthetic
    data is caught too.
    """

    _REGEX = (r"\b[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*@[\w-]+(?:\.[\w-]+)+\b")

    def __init__(self) -> None:
        super().__init__(supported_entity="EMAIL", name="email", supported_language="en",
                         patterns=[Pattern("email", self._REGEX, 0.6)], global_regex_flags=_I)

    def validate_result(self, pattern_text: str) -> bool | None:
        from veil.privatize.sensitivity import offline_tld_extractor

        return offline_tld_extractor()(pattern_text.rsplit("@", 1)[-1]).suffix != ""


def _recognizer(entity: str, name: str, patterns: list[tuple[str, str, float]],
                flags: int = _I) -> PatternRecognizer:
    return FastPatternRecognizer(supported_entity=entity, name=name, supported_language="en",
                             patterns=[Pattern(n, rx, s) for n, rx, s in patterns],
                             global_regex_flags=flags)


def pattern_recognizers() -> list[EntityRecognizer]:
    """All regex recognizers: dates, ages > 89, phones, IDs, addresses, facilities, web, masks."""
    recs: list[EntityRecognizer] = [
        _recognizer("DATE", "clinical date", DATE_PATTERNS),
        _recognizer("AGE", "age over 89", AGE_PATTERNS),
        _recognizer("PHONE", "phone", PHONE_PATTERNS),
        _recognizer("MASK", "mask", [("XXXX mask", r"(?<![A-Za-z])X{3,}(?![A-Za-z])", 0.95),
                                     ("bracket mask", r"\[\*\*[^\]\n]{0,80}\*\*\]", 0.95)], _CS),
        AlnumIdRecognizer(),
        OfflineEmailRecognizer(),
    ]
    for entity, name, rx, score in ID_PATTERNS + WEB_PATTERNS:
        recs.append(_recognizer(entity, name, [(name, rx, score)]))
    for entity, name, rx, score, flags in ADDRESS_PATTERNS:
        recs.append(_recognizer(entity, name, [(name, rx, score)], flags))
    return recs


def build_recognizers(config: PhiConfig, engine: Any) -> list[EntityRecognizer]:
    """Every recognizer the detector registers with Presidio, per ``config``.

    Args:
        config: the detector configuration (dictionaries on/off, safe-list extras, ranks).
        engine: the loaded Presidio spaCy engine (its WordNet lemma list feeds the
            common-word list).
    """
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IpRecognizer,
        UsSsnRecognizer,
    )
    from spacy.lang.en.stop_words import STOP_WORDS

    from veil.privatize import phi_lexicon as pl
    from veil.privatize.phi_dictionary import FacilityRecognizer, LexiconRecognizer, NerRecognizer
    from veil.privatize.phi_names import ContextNameRecognizer

    if getattr(engine, "veil_common", None) is None:
        engine.veil_common = pl.build_common_words(engine.veil_wordnet)
    stop = frozenset(w.casefold() for w in STOP_WORDS)
    if config.use_dictionaries:
        names = pl.load_names(config.name_us_max_rank, config.name_any_max_rank)
        places = pl.load_places()
    else:
        names = pl.NameLexicon({}, {})
        places = pl.PlaceLexicon(frozenset(), frozenset(), 1)
    lex = pl.Lexicons(names, engine.veil_common, places, stop,
                      frozenset(w.casefold() for w in config.safe_words))
    recs = [*pattern_recognizers(), FacilityRecognizer(lex), IpRecognizer(),
            UsSsnRecognizer(), CreditCardRecognizer(), ContextNameRecognizer(lex)]
    if config.use_dictionaries:
        recs.append(LexiconRecognizer(lex))
    if config.use_ner:
        recs.append(NerRecognizer(lex))
    return recs
