"""Low-level corpus file parsing: file bytes -> a :class:`Table` with row and line numbers.

One concern: turning CSV, TSV, JSONL, Parquet or plain-text bytes (optionally
gzip-compressed) into named columns, and turning every way a file can be
broken into a :class:`~veil.errors.BadInput` that names the file, the 1-based
data row and the line — never the content (the text may hold PHI).

Conventions:

* CSV follows RFC 4180 (double-quote quoting, fields may span lines) and is
  parsed strictly: a stray quote is an error, not silently repaired.
* TSV is the IANA format: no quoting at all, so quotes are kept as text and a
  field cannot contain a tab or a newline (the convention of GLUE-style data).
* Blank lines in CSV/TSV/JSONL are not rows. In a ``.txt`` file every line is a
  row (document), including empty ones. In JSONL the row number is the line number.
* UTF-8 only; a leading byte-order mark is dropped.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.errors import BadInput

FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}
_ALIASES = {"ndjson": "jsonl", "tab": "tsv", "pq": "parquet"}
_GZIP_MAGIC = b"\x1f\x8b"
_FIELD_LIMIT = 2**31 - 1  # clinical notes can exceed csv's default 128 KiB field limit


@dataclass
class Table:
    """Parsed file: column names, 1-based data row numbers and a column getter.

    Attributes:
        columns: column names (``"0"``, ``"1"``, ... when the file has no header).
        rows: the 1-based data row number of each row.
        lines: the 1-based line where each row starts (text formats), else None.
        getter: ``getter(j)`` returns the values of column ``j`` for every row.
        objects: the original JSON objects (JSONL only), for lossless round-trips.
    """

    columns: list[str]
    rows: list[int]
    lines: list[int] | None
    getter: Callable[[int], list[Any]]
    objects: list[dict[str, Any]] | None = None

    def column(self, j: int) -> list[Any]:
        """Values of column ``j`` (None where a value is missing)."""
        return self.getter(j)

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts (JSONL objects as written; other formats column by column)."""
        if self.objects is not None:
            return [dict(obj) for obj in self.objects]
        cols = [self.column(j) for j in range(len(self.columns))]
        return [dict(zip(self.columns, vals, strict=True)) for vals in zip(*cols, strict=True)]


def detect_format(path: Path, fmt: str | None) -> str:
    """The format of ``path``: ``fmt`` if given, else from its suffix (``.gz`` looked through)."""
    if fmt is not None:
        name = fmt.lower().lstrip(".")
        name = _ALIASES.get(name, name)
        if name not in FORMATS:
            raise BadInput(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", path=path)
        return name
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise BadInput(
        "unknown file format (from the suffix); use .csv, .tsv, .jsonl, .ndjson, .parquet or "
        ".txt (text formats optionally .gz), or pass the format explicitly",
        path=path,
    )


def load_bytes(path: Path) -> bytes:
    """The file's bytes, or BadInput for a missing file, a directory or an unreadable file."""
    if not path.exists():
        raise BadInput("file not found", path=path)
    if path.is_dir():
        raise BadInput("is a directory, expected a file", path=path)
    try:
        return path.read_bytes()
    except OSError as err:
        raise BadInput(f"cannot read file ({err.strerror or type(err).__name__})",
                       path=path) from None


def decompress(data: bytes, path: Path) -> bytes:
    """Gunzip ``data`` when it is gzip-compressed (by magic bytes); check ``.gz`` files are."""
    if data[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise BadInput("not a valid gzip file (corrupt or truncated)", path=path) from None
    if path.suffix.lower() in (".gz", ".gzip"):
        raise BadInput("has a .gz suffix but is not gzip-compressed", path=path)
    return data


def parse_table(data: bytes, fmt: str, *, header: bool, path: Path,
                allow_empty: bool = False) -> Table:
    """Parse file bytes into a :class:`Table` (``data`` is the raw file content).

    Args:
        data: the file's bytes (gzip-compressed or not).
        fmt: one of :data:`FORMATS`.
        header: CSV/TSV: the first row holds column names. Other formats: when
            False, columns are renamed to their 0-based index ("0", "1", ...).
        path: the file, for error messages.
        allow_empty: return an empty table instead of raising for an empty file.

    Raises:
        BadInput: naming the file, data row and line; never quoting content.
    """
    if fmt == "parquet":
        table = _parse_parquet(data, path)
    else:
        text = decode_utf8(decompress(data, path), path=path, fmt=fmt, header=header)
        if not text.strip():
            if allow_empty:
                return Table([], [], None, lambda j: [])
            raise BadInput("file is empty", path=path)
        if fmt in ("csv", "tsv"):
            table = _parse_delimited(text, fmt, header=header, path=path)
        elif fmt == "jsonl":
            table = _parse_jsonl(text, path)
        else:
            table = _parse_txt(text)
    if not header and fmt != "csv" and fmt != "tsv":
        table.columns = [str(j) for j in range(len(table.columns))]
    if not table.rows and not allow_empty:
        raise BadInput("has no data rows", path=path)
    return table


def decode_utf8(data: bytes, *, path: Path, fmt: str, header: bool) -> str:
    """Decode UTF-8 (dropping a BOM); on bad bytes name the row and line, not the bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        prefix = data[: err.start].decode("utf-8")  # valid up to the first bad byte
        line = prefix.count("\n") + 1
        row = _row_at_end(prefix.removeprefix("\ufeff"), fmt, header)
        in_header = " (header row)" if row is None and fmt in ("csv", "tsv") else ""
        raise BadInput(
            f"not valid UTF-8: first bad byte at line {line}{in_header} (byte offset {err.start}); "
            "re-encode the file as UTF-8",
            path=path, row=row,
        ) from None
    return text.removeprefix("\ufeff")


def _row_at_end(prefix: str, fmt: str, header: bool) -> int | None:
    """The data row that the character right after ``prefix`` belongs to (None: header)."""
    if fmt not in ("csv", "tsv"):
        return prefix.count("\n") + 1
    count = 0
    with _big_fields(), suppress(_RecordError):
        for _line, _fields in _iter_records(prefix + "x", fmt, strict=False):
            count += 1
    row = count - 1 if header else count
    return row if row >= 1 else None


class _RecordError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _iter_records(text: str, fmt: str, *, strict: bool) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(start_line, fields)`` for each non-blank CSV/TSV record."""
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t",
                            quoting=csv.QUOTE_NONE, strict=strict)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), strict=strict)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # CPython's csv messages never quote the data
            raise _RecordError(str(err), start) from None
        line, start = start, reader.line_num + 1
        if fields:
            yield line, fields


@contextmanager
def _big_fields() -> Iterator[None]:
    """Raise csv's process-wide field size limit for the duration of one parse."""
    old_limit = csv.field_size_limit(_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(old_limit)


def _parse_delimited(text: str, fmt: str, *, header: bool, path: Path) -> Table:
    names: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    kind = fmt.upper()
    with _big_fields():
        try:
            for line, fields in _iter_records(text, fmt, strict=True):
                if header and names is None:
                    names = [f.strip() for f in fields]
                    continue
                width = len(names) if names is not None else len(rows[0]) if rows else len(fields)
                if len(fields) != width:
                    what = "the header has" if names is not None else "the first row has"
                    raise BadInput(
                        f"malformed {kind}: {len(fields)} field{'' if len(fields) == 1 else 's'}"
                        f" but {what} {width} (line {line})",
                        path=path, row=len(rows) + 1,
                    )
                rows.append(fields)
                lines.append(line)
        except _RecordError as err:
            row = len(rows) + 1 if (names is not None or not header) else None
            raise BadInput(f"malformed {kind}: {err} (record starting at line {err.line})",
                           path=path, row=row) from None
    if names is None:
        names = [str(j) for j in range(len(rows[0]))] if rows else []

    def getter(j: int) -> list[Any]:
        return [r[j] if r[j] != "" else None for r in rows]

    return Table(names, list(range(1, len(rows) + 1)), lines, getter)


def _parse_jsonl(text: str, path: Path) -> Table:
    objects: list[dict[str, Any]] = []
    rows: list[int] = []
    keys: dict[str, None] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:  # its message names the position, not the text
            raise BadInput(f"invalid JSON on line {lineno} ({err.msg} at character {err.colno})",
                           path=path, row=lineno) from None
        except RecursionError:
            raise BadInput(f"invalid JSON on line {lineno} (nested too deeply)",
                           path=path, row=lineno) from None
        if not isinstance(obj, dict):
            kind = "array" if isinstance(obj, list) else "scalar value"
            raise BadInput(f"line {lineno} holds a JSON {kind}, expected an object",
                           path=path, row=lineno)
        keys.update(dict.fromkeys(obj))
        objects.append(obj)
        rows.append(lineno)
    names = list(keys)

    def getter(j: int) -> list[Any]:
        return [obj.get(names[j]) for obj in objects]

    return Table(names, rows, rows, getter, objects=objects)


def _parse_txt(text: str) -> Table:
    docs = text.split("\n")
    if docs and docs[-1] == "":
        docs.pop()  # a final newline ends the last line; it does not start a new one
    docs = [d.removesuffix("\r") for d in docs]
    rows = list(range(1, len(docs) + 1))
    return Table(["text"], rows, rows, lambda j: list(docs))


def _parse_parquet(data: bytes, path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError):
        raise BadInput("not a readable Parquet file", path=path) from None

    def getter(j: int) -> list[Any]:
        return list(table.column(j).to_pylist())

    return Table(list(table.column_names), list(range(1, table.num_rows + 1)), None, getter)
