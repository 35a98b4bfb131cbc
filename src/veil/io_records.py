"""Records out and back: JSONL, CSV or Parquet by suffix, written atomically.

:func:`write_records` encodes the whole file in memory, writes it to a temp
file next to the target and renames it into place
(:func:`veil.artifacts.atomic_write_bytes`), so a failed run leaves nothing
half-written and an existing file untouched. :func:`read_records` reads such
files back. Re-exported by :mod:`veil.io`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from veil.artifacts import atomic_write_bytes
from veil.errors import BadInput
from veil.io_formats import load_bytes, parse_table

_RECORD_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def _record_format(path: Path) -> tuple[str, bool]:
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    last = suffixes[-2] if gz and len(suffixes) > 1 else suffixes[-1] if suffixes else ""
    kind = _RECORD_FORMATS.get(last)
    if kind is None or (gz and kind == "parquet"):
        raise BadInput("unknown output format (from the suffix); use .jsonl, .csv or .parquet "
                       "(.jsonl.gz, .csv.gz also work)", path=path)
    return kind, gz


def write_records(path: str | Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Write records as JSONL, CSV or Parquet (by suffix), atomically.

    The whole file is encoded in memory first and then written to a temp file
    that is renamed into place, so on any error nothing is left behind and an
    existing file is untouched. CSV columns are the union of keys in order of
    first appearance; None becomes an empty cell and lists/dicts JSON text.

    Raises:
        BadInput: unknown suffix (before anything is written), or values that
            Parquet cannot store in one column.
    """
    path = Path(path)
    kind, gz = _record_format(path)
    if kind == "jsonl":
        data = "".join(json.dumps(dict(r), ensure_ascii=False, default=str) + "\n"
                       for r in records).encode("utf-8")
    elif kind == "csv":
        data = _csv_bytes(records)
    else:
        data = _parquet_bytes(records, path)
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if gz else data)


def _csv_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    columns = list(dict.fromkeys(key for r in records for key in r))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    if columns:
        writer.writerow(columns)
    for r in records:
        writer.writerow([_csv_cell(r.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _parquet_bytes(records: Sequence[Mapping[str, Any]], path: Path) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pylist([dict(r) for r in records])
    except (pa.ArrowException, TypeError, ValueError) as err:
        raise BadInput(f"cannot store these records in Parquet ({type(err).__name__}: mixed "
                       "or unsupported value types in a column)", path=path) from None
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read records written by :func:`write_records` (JSONL, CSV or Parquet).

    CSV gives every value back as a string (an empty cell as None); JSONL and
    Parquet keep their types. An empty file gives ``[]``.

    Raises:
        BadInput: as for :func:`read_corpus`.
    """
    path = Path(path)
    kind, _gz = _record_format(path)
    data = load_bytes(path)
    return parse_table(data, kind, header=True, path=path, allow_empty=True).records()
