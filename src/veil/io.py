"""Corpora in and out: CSV, TSV, JSONL, Parquet and plain text; atomic record writing.

:func:`read_corpus` turns a file into a :class:`Corpus` (ids, texts, labels,
extra columns) and every problem with the file into a one-line
:class:`~veil.errors.BadInput` (exit code 2) that names the file, the 1-based
data row and the column — never the text, which may hold PHI. Parsing details
(quoting, blank lines, encodings) live in :mod:`veil.io_formats`.

:func:`write_records` / :func:`read_records` (from :mod:`veil.io_records`)
write JSONL, CSV or Parquet atomically (a temp file renamed into place), so a
failed run leaves nothing half-written, and read them back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil import progress
from veil.errors import BadInput
from veil.io_formats import Table, detect_format, load_bytes, parse_table
from veil.io_records import read_records, write_records

ColumnSpec = str | int | Sequence[str | int] | None
_NAME_LIKE_MAX = 40  # header cells longer than this are probably data, not names

__all__ = ["Corpus", "parse_columns", "read_corpus", "read_records", "write_records"]


@dataclass
class Corpus:
    """A text corpus read from one file.

    Attributes:
        ids: one id per kept row (the ``id_col`` value, or the 1-based data row number).
        texts: the text of each kept row (requested text columns joined).
        labels: the labels of each row (a list, one element for single-label data;
            empty when the row has none), or None when no label column was requested.
        extra: the other requested columns, by name, aligned with ``texts``.
        path: the file read.
        skipped_empty: rows dropped because their text was empty or blank.
        n_rows_read: data rows in the file, before skipping.
        fingerprint: SHA-256 (hex) of the file's bytes as stored.
    """

    ids: list[str]
    texts: list[str]
    labels: list[list[str]] | None
    extra: dict[str, list[Any]] = field(default_factory=dict)
    path: Path = field(default_factory=Path)
    skipped_empty: int = 0
    n_rows_read: int = 0
    fingerprint: str = ""

    def label_names(self) -> list[str]:
        """Sorted distinct labels over all rows ([] when there are no labels)."""
        if self.labels is None:
            return []
        return sorted({lab for row in self.labels for lab in row})

    def __len__(self) -> int:
        return len(self.texts)


def parse_columns(spec: ColumnSpec) -> list[str]:
    """Normalise a column spec: ``"a,b"``, ``"0,2"``, ``3`` or ``["a", 1]`` -> ``["a", "b"]``.

    A string is split on commas; the items of a sequence are taken whole (so a
    name containing a comma can still be given). Whitespace is stripped and
    empty items dropped; ``None`` gives ``[]``.
    """
    if spec is None:
        return []
    if isinstance(spec, int):
        return [str(spec)]
    parts = spec.split(",") if isinstance(spec, str) else [str(p) for p in spec]
    return [p.strip() for p in parts if p.strip()]


def read_corpus(
    path: str | Path,
    *,
    text_cols: ColumnSpec = None,
    label_col: str | int | None = None,
    label_sep: str | None = None,
    id_col: str | int | None = None,
    extra_cols: ColumnSpec = (),
    header: bool = True,
    fmt: str | None = None,
    strict: bool = False,
    require_labels: bool = False,
    join_with: str = "\n",
) -> Corpus:
    """Read a corpus file into a :class:`Corpus`.

    Args:
        path: a .csv, .tsv, .jsonl/.ndjson, .parquet or .txt file (text formats may be .gz).
        text_cols: the text column(s), e.g. ``"findings,impression"``; several are
            joined with ``join_with``, leaving out missing or blank parts. Default:
            the column named ``text``, or the only column.
        label_col: the label column, if any.
        label_sep: split label strings on this separator (multi-label data).
        id_col: the id column; default: the 1-based data row number.
        extra_cols: more columns to carry along in ``Corpus.extra`` (e.g. a site column).
        header: False when a CSV/TSV file has no header row; columns are then
            addressed by 0-based index ("0", "1,2" or ints) in every format.
        fmt: the format, overriding the suffix.
        strict: raise on the first empty text row instead of skipping it.
        require_labels: raise on a row without a label.
        join_with: separator between joined text columns.

    Returns:
        The corpus, in file order, without rows whose text is empty or blank.

    Raises:
        BadInput: for any problem with the file or the options; the message
            names the file, row and column, never the content.
    """
    path = Path(path)
    kind = detect_format(path, fmt)
    data = load_bytes(path)
    table = parse_table(data, kind, header=header, path=path)
    resolve = _Resolver(table, path, header)
    text_idx = resolve.texts(parse_columns(text_cols))
    label_idx = resolve.one(label_col, "label")
    id_idx = resolve.one(id_col, "id")
    extra_idx = [resolve.one(name, "extra") for name in parse_columns(extra_cols)]
    if require_labels and label_idx is None:
        raise BadInput("labels are required but no label column was given", path=path)
    text_name = ",".join(table.columns[j] for j in text_idx)
    text_values = [table.column(j) for j in text_idx]
    label_values = table.column(label_idx) if label_idx is not None else None
    id_values = table.column(id_idx) if id_idx is not None else None
    id_name = table.columns[id_idx] if id_idx is not None else None

    ids: list[str] = []
    texts: list[str] = []
    labels: list[list[str]] | None = [] if label_values is not None else None
    kept: list[int] = []
    seen_ids: dict[str, int] = {}
    skipped = 0
    for k, row in enumerate(table.rows):
        where = _line_note(table, k)
        rid = str(row)
        if id_values is not None and id_name is not None:
            rid = (_as_text(id_values[k], path, row, id_name, where) or "").strip()
            if not rid:
                raise BadInput(f"missing id{where}", path=path, row=row, column=id_name)
        if rid in seen_ids:
            raise BadInput(f"duplicate id (same as row {seen_ids[rid]}){where}", path=path,
                           row=row, column=id_name)
        seen_ids[rid] = row
        parts = [_as_text(vals[k], path, row, table.columns[j], where)
                 for vals, j in zip(text_values, text_idx, strict=True)]
        present = [p for p in parts if p is not None and p.strip()]
        if not present:
            if strict:
                raise BadInput(f"empty text (strict mode){where}", path=path, row=row,
                               column=text_name)
            skipped += 1
            continue
        if label_values is not None and labels is not None:
            assert label_idx is not None
            row_labels = _as_labels(label_values[k], label_sep, path, row,
                                    table.columns[label_idx], where)
            if require_labels and not row_labels:
                raise BadInput(f"missing label{where}", path=path, row=row,
                               column=table.columns[label_idx])
            labels.append(row_labels)
        ids.append(rid)
        texts.append(join_with.join(present))
        kept.append(k)

    if not texts:
        raise BadInput(f"no non-empty text rows ({skipped} empty rows skipped)", path=path,
                       column=text_name)
    if skipped:
        progress.info(f"{path.name}: skipped {skipped} empty text rows")
    extra = {table.columns[j]: [_clean(v) for v in _pick(table.column(j), kept)]
             for j in extra_idx if j is not None}
    return Corpus(ids=ids, texts=texts, labels=labels, extra=extra, path=path,
                  skipped_empty=skipped, n_rows_read=len(table.rows),
                  fingerprint=hashlib.sha256(data).hexdigest())


class _Resolver:
    """Maps user column specs to column indices, with errors that list names only."""

    def __init__(self, table: Table, path: Path, header: bool) -> None:
        self.table = table
        self.path = path
        self.header = header

    def index(self, name: str, role: str) -> int:
        columns = self.table.columns
        hits = [j for j, c in enumerate(columns) if c == name]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise BadInput(f"{role} column name appears {len(hits)} times in the header",
                           path=self.path, column=name)
        if not self.header:
            raise BadInput(f"unknown {role} column; without a header, columns are addressed "
                           f"by 0-based index (0..{len(columns) - 1})",
                           path=self.path, column=name)
        raise BadInput(f"unknown {role} column; {_describe_columns(columns)}",
                       path=self.path, column=name)

    def one(self, spec: str | int | None, role: str) -> int | None:
        names = parse_columns(spec)
        if not names:
            return None
        if len(names) > 1:
            raise BadInput(f"expected one {role} column, got {len(names)}", path=self.path)
        return self.index(names[0], role)

    def texts(self, names: list[str]) -> list[int]:
        if names:
            return [self.index(name, "text") for name in names]
        columns = self.table.columns
        if "text" in columns:
            return [self.index("text", "text")]
        if len(columns) == 1:
            return [0]
        raise BadInput(f"no text column given and none is named 'text'; "
                       f"{_describe_columns(columns) if self.header else _index_hint(columns)}",
                       path=self.path)


def _describe_columns(columns: list[str]) -> str:
    """List the column names — unless the 'header' looks like a row of data (PHI guard)."""
    if any(_looks_like_data(c) for c in columns):
        return (f"the first row does not look like a header ({len(columns)} columns; some "
                "numeric, sentence-like or long); if the file has no header, read it without one "
                "(--no-header) and address columns by 0-based index")
    return "available columns: " + ", ".join(repr(c) for c in columns)


def _looks_like_data(cell: str) -> bool:
    """Long, multi-line, numeric or sentence-like header cells suggest a headerless file."""
    if len(cell) > _NAME_LIKE_MAX or "\n" in cell or cell.endswith((".", "!", "?")):
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _index_hint(columns: list[str]) -> str:
    return f"without a header, give columns by 0-based index (0..{len(columns) - 1})"


def _line_note(table: Table, k: int) -> str:
    """' (line L)' where the file line differs from the row number, else ''."""
    if table.lines is None or table.lines[k] == table.rows[k]:
        return ""
    return f" (line {table.lines[k]})"


def _as_text(value: Any, path: Path, row: int, column: str, where: str) -> str | None:
    """A cell as text (numbers converted), None when missing; BadInput for nested values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"binary value is not valid UTF-8{where}", path=path, row=row,
                           column=column) from None
    if isinstance(value, dict | list | tuple):
        kind = "an object/struct" if isinstance(value, dict) else "a list"
        raise BadInput(f"expected text, found {kind}{where}", path=path, row=row, column=column)
    return str(value)


def _as_labels(value: Any, sep: str | None, path: Path, row: int, column: str,
               where: str) -> list[str]:
    """A label cell as a list of distinct, stripped, non-empty label strings (file order)."""
    items = list(value) if isinstance(value, list | tuple) else [value]
    out: list[str] = []
    for item in items:
        text = _as_text(item, path, row, column, where)
        if text is None:
            continue
        pieces = text.split(sep) if sep else [text]
        out.extend(p.strip() for p in pieces if p.strip())
    return list(dict.fromkeys(out))


def _pick(values: list[Any], kept: list[int]) -> list[Any]:
    return [values[k] for k in kept]


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
