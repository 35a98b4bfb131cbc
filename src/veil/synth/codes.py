"""Control codes: the public text prefix that conditions the generator on metadata.

A record's control code is the tuple of its values in the code columns, e.g.
``("Cardiomegaly", "community")`` for columns ``label, site_type``; its prefix
is ``"Label: Cardiomegaly | Site type: community\\n"`` (Yue et al. 2023's
format). The vocabulary of codes is **public** by assumption (as in the paper
and DPSDA): only how often each code occurs is private, and that is released
solely through the DP profile (:mod:`veil.synth.profile`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Code = tuple[str, ...]
EMPTY_VALUE = "none"
SEPARATOR = " | "


def column_title(column: str) -> str:
    """``"site_type"`` -> ``"Site type"``: how a code column is named in the prefix."""
    words = column.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else column


def normalise_value(value: Any, sep: str | None = None) -> str:
    """One cell as a code value: stripped text; the first part of a multi-valued cell.

    Args:
        value: the cell (str, number, list or None).
        sep: separator of multi-valued cells (e.g. ``";"``); None keeps the whole cell.

    Returns:
        The value, or ``"none"`` for an empty cell. Newlines and ``|`` are replaced
        by spaces so that the prefix stays one unambiguous line.
    """
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    text = "" if value is None else str(value)
    if sep:
        parts = [p.strip() for p in text.split(sep) if p.strip()]
        text = parts[0] if parts else ""
    text = " ".join(text.replace("|", " ").split())
    return text or EMPTY_VALUE


@dataclass(frozen=True)
class CodeBook:
    """The public code vocabulary of a run, with the prefix of each code.

    Attributes:
        columns: the code columns, in order.
        codes: the codes (tuples of values), in a fixed order: index j is code j
            in every profile and vote vector.
    """

    columns: tuple[str, ...]
    codes: tuple[Code, ...]
    _index: dict[Code, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c: j for j, c in enumerate(self.codes)})
        if len(self._index) != len(self.codes):
            raise ValueError("duplicate control codes")

    def __len__(self) -> int:
        return len(self.codes)

    def index(self, code: Code) -> int | None:
        """Position of ``code`` in the vocabulary, or None when it is not in it."""
        return self._index.get(code)

    def prefix(self, j: int) -> str:
        """The text prefix of code ``j`` (ends with a newline)."""
        return code_prefix(self.columns, self.codes[j])

    def prefixes(self) -> list[str]:
        """Prefixes of all codes, in vocabulary order."""
        return [self.prefix(j) for j in range(len(self.codes))]

    def as_fields(self, j: int) -> dict[str, str]:
        """``{column: value}`` of code ``j`` (the labels of a synthetic record)."""
        return dict(zip(self.columns, self.codes[j], strict=True))


def code_prefix(columns: Sequence[str], values: Sequence[str]) -> str:
    """``"Label: A | Site type: b\\n"`` for ``columns`` and their ``values``."""
    parts = [f"{column_title(c)}: {v}" for c, v in zip(columns, values, strict=True)]
    return SEPARATOR.join(parts) + "\n"


def record_codes(extra: dict[str, list[Any]], columns: Sequence[str],
                 sep: str | None = None) -> list[Code]:
    """The code of every record from its code-column cells (``Corpus.extra``)."""
    cols = [extra[c] for c in columns]
    n = len(cols[0]) if cols else 0
    return [tuple(normalise_value(col[i], sep) for col in cols) for i in range(n)]


def vocabulary(codes_per_site: Sequence[Sequence[Code]]) -> list[Code]:
    """The sorted union of codes seen at the given sites.

    Only for simulations on one machine, where the operator sees every file: in
    a real federation the vocabulary must be declared up front (``--codes``),
    since which codes exist at which site is itself information.
    """
    return sorted({c for site in codes_per_site for c in site})
