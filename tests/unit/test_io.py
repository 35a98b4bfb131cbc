"""veil.io: every format in and out, column handling, and every bad input -> BadInput.

Each bad-input test plants SECRET in the offending row and checks that the
error names the file and row/column but never echoes the content (PHI safety).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from veil import io as vio
from veil import progress
from veil.errors import EXIT_BAD_INPUT, BadInput
from veil.io import Corpus, parse_columns, read_corpus, read_records, write_records

SECRET = "ZEBRA-PHI-7731"

ROWS = [
    {"id": "a1", "text": "first report", "label": "x;y", "site": "s1"},
    {"id": "a2", "text": "second, with comma", "label": "y", "site": "s2"},
    {"id": "a3", "text": 'third "quoted"', "label": "z", "site": "s1"},
]


def _csv_text(rows: list[dict[str, Any]], sep: str = ",") -> str:
    """Independent writer: quote every field RFC-4180 style (CSV) or not at all (TSV)."""
    keys = list(rows[0])

    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        return '"' + s.replace('"', '""') + '"' if sep == "," else s

    lines = [sep.join(keys)] + [sep.join(cell(r[k]) for k in keys) for r in rows]
    return "\n".join(lines) + "\n"


def _make(tmp_path: Path, fmt: str, rows: list[dict[str, Any]] = ROWS) -> Path:
    path = tmp_path / f"corpus.{fmt}"
    if fmt == "csv":
        path.write_text(_csv_text(rows), encoding="utf-8")
    elif fmt == "tsv":
        path.write_text(_csv_text(rows, sep="\t"), encoding="utf-8")
    elif fmt in ("jsonl", "ndjson"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "csv.gz":
        path.write_bytes(gzip.compress(_csv_text(rows).encode()))
    elif fmt == "jsonl.gz":
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    return path


def bad(path: Path, **kwargs: Any) -> BadInput:
    """read_corpus(path) must raise BadInput naming the file and not echoing SECRET."""
    with pytest.raises(BadInput) as info:
        read_corpus(path, **kwargs)
    err = info.value
    assert path.name in str(err)
    assert SECRET not in str(err) and SECRET not in repr(err.args)
    assert err.exit_code == EXIT_BAD_INPUT
    return err


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "ndjson", "parquet", "csv.gz",
                                 "jsonl.gz"])
def test_every_format_reads_the_same_corpus(tmp_path: Path, fmt: str) -> None:
    path = _make(tmp_path, fmt)
    c = read_corpus(path, label_col="label", label_sep=";", id_col="id", extra_cols="site")
    assert c.texts == [r["text"] for r in ROWS]
    assert c.ids == ["a1", "a2", "a3"]
    assert c.labels == [["x", "y"], ["y"], ["z"]]
    assert c.extra == {"site": ["s1", "s2", "s1"]}
    assert c.label_names() == ["x", "y", "z"]
    assert len(c) == 3 and c.n_rows_read == 3 and c.skipped_empty == 0
    assert c.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert c.path == path


def test_txt_one_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"first doc\r\n\nthird, doc\n")
    c = read_corpus(path)
    assert c.texts == ["first doc", "third, doc"]
    assert c.ids == ["1", "3"]  # row numbers survive the skipped empty line
    assert c.labels is None and c.skipped_empty == 1 and c.n_rows_read == 3
    assert read_corpus(path, header=False, text_cols=0).texts == c.texts
    bad(path, label_col="label")


def test_fmt_overrides_suffix_and_bom_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "export.dat"
    path.write_bytes("\ufefftext,label\nhello,1\n".encode())
    c = read_corpus(path, fmt="csv", label_col="label")
    assert c.texts == ["hello"] and c.labels == [["1"]]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".jsonl.gz", ".csv.gz"])
def test_records_round_trip(tmp_path: Path, suffix: str) -> None:
    records = [{"id": "1", "text": "a, \"b\"\nc", "n": 3, "labels": ["x", "y"]},
               {"id": "2", "text": "ünïcode", "n": None, "labels": []}]
    path = tmp_path / f"out{suffix}"
    write_records(path, records)
    back = read_records(path)
    if ".csv" in suffix:  # CSV is text: values come back as strings, lists as JSON
        assert back == [{"id": "1", "text": "a, \"b\"\nc", "n": "3", "labels": '["x", "y"]'},
                        {"id": "2", "text": "ünïcode", "n": None, "labels": "[]"}]
    else:
        assert back == records
    if suffix.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_written_csv_and_jsonl_are_readable_as_corpora(tmp_path: Path) -> None:
    for suffix in (".csv", ".jsonl", ".parquet"):
        path = tmp_path / f"c{suffix}"
        write_records(path, ROWS)
        c = read_corpus(path, label_col="label", label_sep=";", id_col="id")
        assert c.texts == [r["text"] for r in ROWS]


def test_empty_records_round_trip(tmp_path: Path) -> None:
    for suffix in (".jsonl", ".csv", ".parquet"):
        write_records(tmp_path / f"e{suffix}", [])
        assert read_records(tmp_path / f"e{suffix}") == []


# ----------------------------------------------------------------------------- columns


def test_parse_columns() -> None:
    assert parse_columns("findings, impression") == ["findings", "impression"]
    assert parse_columns("1,2") == ["1", "2"]
    assert parse_columns(3) == ["3"]
    assert parse_columns(["a,b", 2]) == ["a,b", "2"]  # sequence items are taken whole
    assert parse_columns(None) == [] and parse_columns(" , ") == []


def test_multi_column_join_skips_missing_parts(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("findings,impression\nF1,I1\n,I2\nF3,\n  ,\n", encoding="utf-8")
    c = read_corpus(path, text_cols="findings,impression")
    assert c.texts == ["F1\nI1", "I2", "F3"]
    assert c.ids == ["1", "2", "3"] and c.skipped_empty == 1
    c2 = read_corpus(path, text_cols=["impression", "findings"], join_with=" | ")
    assert c2.texts == ["I1 | F1", "I2", "F3"]


def test_parquet_nulls_and_nan_in_joined_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"a": ["x", None, "z"], "b": [1.5, 2.0, float("nan")]}), path)
    c = read_corpus(path, text_cols="a,b")
    assert c.texts == ["x\n1.5", "2.0", "z"]  # numbers converted, NaN treated as missing


def test_no_header_by_index(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text('"3","Title one","Body one"\n"1","Title two","Body, two"\n')
    c = read_corpus(path, header=False, text_cols="1,2", label_col=0, join_with=" ")
    assert c.texts == ["Title one Body one", "Title two Body, two"]
    assert c.labels == [["3"], ["1"]]
    assert read_corpus(path, header=False, text_cols=[2], label_col="0").texts[1] == "Body, two"
    err = bad(path, header=False, text_cols="title")
    assert "0-based index (0..2)" in str(err)
    tsv = tmp_path / "yelp.tsv"
    tsv.write_text('He said "wow" twice.\t1\nBad.\t0\n')
    y = read_corpus(tsv, header=False, text_cols=0, label_col=1)
    assert y.texts == ['He said "wow" twice.', "Bad."]  # TSV: quotes are text
    jl = tmp_path / "x.jsonl"
    jl.write_text('{"t": "a", "l": 1}\n')
    assert read_corpus(jl, header=False, text_cols=0, label_col=1).labels == [["1"]]


def test_multi_label_split_strip_dedupe_and_types(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    lines = [{"text": "a", "labels": " Opacity ; Lung;;Opacity "},
             {"text": "b", "labels": ["x", 2, None, " "]},
             {"text": "c", "labels": 1},
             {"text": "d", "labels": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    c = read_corpus(path, label_col="labels", label_sep=";")
    assert c.labels == [["Opacity", "Lung"], ["x", "2"], ["1"], []]
    assert c.label_names() == ["1", "2", "Lung", "Opacity", "x"]
    single = read_corpus(path, label_col="labels")
    assert single.labels is not None and single.labels[0] == ["Opacity ; Lung;;Opacity"]
    assert read_corpus(path).labels is None and read_corpus(path).label_names() == []


def test_default_text_column_and_single_column(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text("note\nhello\n")
    assert read_corpus(one).texts == ["hello"]
    two = tmp_path / "two.csv"
    two.write_text("note,kind\nhello,a\n")
    err = bad(two)
    assert "available columns: 'note', 'kind'" in str(err)


def test_skipped_empty_rows_are_counted_and_announced_without_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(progress, "info", said.append)
    path = tmp_path / "e.csv"
    path.write_text(f"id,text,site\nA,{SECRET} text,s1\nB,,s2\nC,   ,s3\nD,ok,s4\n")
    c = read_corpus(path, id_col="id", extra_cols=["site"])
    assert c.ids == ["A", "D"] and c.extra == {"site": ["s1", "s4"]}
    assert c.skipped_empty == 2 and c.n_rows_read == 4
    assert len(said) == 1 and "skipped 2 empty text rows" in said[0]
    assert SECRET not in said[0]


def test_long_csv_field_beyond_default_csv_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text('text\n"' + "word " * 60_000 + '"\n')
    assert len(read_corpus(path).texts[0]) == 300_000


def test_corpus_dataclass_defaults() -> None:
    c = Corpus(ids=["1"], texts=["t"], labels=[["b", "a"], ["a"]])
    assert len(c) == 1 and c.label_names() == ["a", "b"]


# ----------------------------------------------------------------------------- bad input


def test_badinput_exit_code_and_message_shape(tmp_path: Path) -> None:
    err = BadInput("empty text", path=tmp_path / "f.csv", row=4, column="findings")
    assert err.exit_code == 2
    assert str(err) == f"{tmp_path / 'f.csv'}, row 4, column 'findings': empty text"


def test_missing_file_directory_and_unknown_format(tmp_path: Path) -> None:
    assert "file not found" in str(bad(tmp_path / "nope.csv"))
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert "directory" in str(bad(folder))
    odd = tmp_path / "data.xlsx"
    odd.write_text(SECRET)
    assert "unknown file format" in str(bad(odd))
    assert "unknown format 'xml'" in str(bad(_make(tmp_path, "csv"), fmt="xml"))


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _make(tmp_path, "csv")

    def denied(self: Path) -> bytes:  # chmod 000 does not stop root, so simulate it
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert "cannot read file (Permission denied)" in str(bad(path))


def test_corrupt_parquet_and_gzip(tmp_path: Path) -> None:
    pq_path = tmp_path / "x.parquet"
    pq_path.write_bytes(b"PAR1" + SECRET.encode() * 10)
    assert "not a readable Parquet file" in str(bad(pq_path))
    gz = tmp_path / "x.csv.gz"
    gz.write_bytes(gzip.compress(f"text\n{SECRET}\n".encode())[:-12])
    assert "gzip" in str(bad(gz))
    fake = tmp_path / "y.jsonl.gz"
    fake.write_text('{"text": "plain"}\n')
    assert "not gzip-compressed" in str(bad(fake))


@pytest.mark.parametrize(("body", "row", "what"), [
    (f"id,text\n1,ok\n2,{SECRET},extra\n3,ok\n", 2, "3 fields but the header has 2 (line 3)"),
    (f"id,text\n1,ok\n2,fine\n{SECRET}\n", 3, "1 field but the header has 2 (line 4)"),
    (f'id,text\n1,ok\n2,"{SECRET}"x\n', 2, "expected after"),
    (f'id,text\n1,ok\n2,"{SECRET}\n3,ok\n', 2,
     "unexpected end of data (record starting at line 3)"),
])
def test_malformed_csv_names_row_and_line(tmp_path: Path, body: str, row: int, what: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(body)
    err = bad(path)
    assert err.row == row and f"row {row}" in str(err) and what in str(err)


def test_ragged_row_without_header(tmp_path: Path) -> None:
    path = tmp_path / "r.tsv"
    path.write_text(f"a\t1\nb\t0\t{SECRET}\n")
    err = bad(path, header=False)
    assert err.row == 2 and "the first row has 2" in str(err)


def test_invalid_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(f'{{"text": "ok"}}\n\n{{"text": "{SECRET}"\n')
    err = bad(path)
    assert err.row == 3 and "invalid JSON on line 3" in str(err)
    path.write_text(f'{{"text": "ok"}}\n["{SECRET}"]\n')
    assert "line 2 holds a JSON array" in str(bad(path))
    path.write_text(f'{{"text": {{"nested": "{SECRET}"}}}}\n')
    err = bad(path)
    assert err.row == 1 and err.column == "text" and "object" in str(err)


def test_unknown_column_lists_names_only(tmp_path: Path) -> None:
    path = _make(tmp_path, "csv")
    err = bad(path, text_cols="findings")
    assert err.column == "findings"
    assert "available columns: 'id', 'text', 'label', 'site'" in str(err)
    bad(path, label_col="Problems")
    bad(path, id_col="uid")
    bad(path, extra_cols="hospital")
    assert "expected one label column" in str(bad(path, label_col="label,site"))


@pytest.mark.parametrize("first_row", [
    f'"3","{SECRET}","body"',  # numeric label cell
    f'"x","{SECRET} said the patient.","y"',  # sentence-like
    f'"x","{SECRET} {"long " * 10}","y"',  # long
])
def test_headerless_file_read_with_header_does_not_leak_first_row(
        tmp_path: Path, first_row: str) -> None:
    path = tmp_path / "news.csv"
    path.write_text(first_row + '\n"1","t","d"\n')
    assert "does not look like a header" in str(bad(path, text_cols="text"))
    assert "--no-header" in str(bad(path))


def test_duplicate_header_name_is_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,text\na,b\n")
    assert "appears 2 times" in str(bad(path))


@pytest.mark.parametrize(("name", "body"), [
    ("empty.csv", ""), ("blank.jsonl", "\n  \n"), ("empty.txt", ""),
    ("header_only.csv", "id,text\n"),
])
def test_empty_files(tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    assert "empty" in str(bad(path)) or "no data rows" in str(bad(path))


def test_empty_parquet_and_all_empty_corpus(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    assert "no data rows" in str(bad(path))
    csv_path = tmp_path / "all_empty.csv"
    csv_path.write_text("text,label\n,1\n  ,2\n")
    err = bad(csv_path)
    assert "no non-empty text rows (2 empty rows skipped)" in str(err)


@pytest.mark.parametrize(("fmt", "content", "row", "line"), [
    # bad byte in data row 3; a quoted newline in row 1 makes the row differ from the line
    ("csv", b'id,text\n1,"two\nlines"\n2,ok\n3,' + SECRET.encode() + b"\xff\xfe\n", 3, 5),
    ("tsv", b"a\t1\nb\t" + SECRET.encode() + b"\x80\n", 2, 2),
    ("jsonl", b'{"text": "a"}\n{"text": "' + SECRET.encode() + b'\xc3"}\n', 2, 2),
    ("txt", b"ok\nok\n\n" + SECRET.encode() + b"\xe9t\xe9\n", 4, 4),
])
def test_non_utf8_names_row_and_line_not_bytes(
        tmp_path: Path, fmt: str, content: bytes, row: int, line: int) -> None:
    path = tmp_path / f"enc.{fmt}"
    path.write_bytes(content)
    err = bad(path, header=fmt != "tsv")
    assert err.row == row and f"line {line}" in str(err) and "UTF-8" in str(err)
    assert "\\x" not in str(err)


def test_non_utf8_in_header(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b"id,t\xffext\n1,a\n")
    err = bad(path)
    assert err.row is None and "line 1 (header row)" in str(err)


def test_strict_mode_names_first_empty_row(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"findings,impression,mrn\nA,B,{SECRET}\n,,{SECRET}\n,,x\n")
    err = bad(path, text_cols="findings,impression", strict=True)
    assert err.row == 2 and err.column == "findings,impression" and "empty text" in str(err)
    assert len(read_corpus(path, text_cols="findings,impression")) == 1


def test_require_labels(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text(f"text,label\n{SECRET} a,1\n{SECRET} b, ; \n")
    err = bad(path, label_col="label", label_sep=";", require_labels=True)
    assert err.row == 2 and err.column == "label" and "missing label" in str(err)
    assert read_corpus(path, label_col="label", label_sep=";").labels == [["1"], []]
    assert "no label column" in str(bad(path, require_labels=True))


def test_duplicate_and_missing_ids_do_not_echo_the_id(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(f"mrn,text\n{SECRET},a\nX,b\n{SECRET},c\n")
    err = bad(path, id_col="mrn")
    assert err.row == 3 and "same as row 1" in str(err)
    path.write_text(f"mrn,text\n1,{SECRET}\n,b\n")
    assert bad(path, id_col="mrn").row == 2


def test_parquet_non_string_text_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [10, 20], "b": [b"bytes", b"ok"]}), path)
    assert read_corpus(path).texts == ["10", "20"]
    assert read_corpus(path, text_cols="b").texts == ["bytes", "ok"]
    pq.write_table(pa.table({"text": [b"ok", SECRET.encode() + b"\xff"]}), path)
    err = bad(path)
    assert err.row == 2 and "binary value is not valid UTF-8" in str(err)
    pq.write_table(pa.table({"text": [["a"], [SECRET]]}), path)
    err = bad(path)
    assert err.row == 1 and err.column == "text" and "list" in str(err)


# ----------------------------------------------------------------------------- atomic writes


def test_unknown_output_suffix_writes_nothing(tmp_path: Path) -> None:
    for name in ("out.xlsx", "out", "out.parquet.gz"):
        with pytest.raises(BadInput, match="unknown output format"):
            write_records(tmp_path / name, [{"text": "a"}])
    assert list(tmp_path.iterdir()) == []


def test_parquet_mixed_types_is_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="Parquet"):
        write_records(tmp_path / "m.parquet", [{"v": 1}, {"v": {"a": SECRET}}, {"v": "x"}])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_failure_mid_write_leaves_no_partial_or_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"

    def boom(fd: int) -> None:  # bytes are in the temp file, not yet renamed
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_records(target, [{"text": "a" * 10_000}] * 50)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    write_records(target, [{"text": "old"}])
    before = target.read_bytes()
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_records(target, [{"text": "new"}])
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_io_module_exports() -> None:
    assert set(vio.__all__) == {"Corpus", "parse_columns", "read_corpus", "read_records",
                                "write_records"}
