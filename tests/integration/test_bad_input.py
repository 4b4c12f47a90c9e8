"""Bad input never costs good rows: a line that is not a record is quarantined where it was, as it was, and the rest
of the file loads; a file that cannot be read at all is refused in one line and nothing is written.

Every file here is written by hand from a valid citizen (`tests.integration.test_load.citizen`), CSV with its
dd/mm/yyyy dates and JSON Lines in the API's wire form, so each expected line number, byte string and count is
read off the file as written, never taken from the reader under test.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest

from kho.cli import main
from kho.config import KhoConfig
from kho.errors import BatchRefused, ExtractError
from kho.extract.files import BLOCK_BYTES
from kho.load.batch import LedgerEntry
from kho.load.pipeline import load_file, sync_api
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect
from tests.integration.test_load import citizen, load, raw_rows

pytestmark = pytest.mark.integration

Format = Literal["csv", "jsonl"]
Record = dict[str, str | None]
FIELDS = tuple(citizen(0))
CSV_HEADER = ",".join(FIELDS).encode()
FIRST_DATA_LINE: dict[Format, int] = {"csv": 2, "jsonl": 1}
"""A CSV file's header is line 1; a JSON Lines file's first record is."""
GOOD = [citizen(i) for i in (1, 2, 3, 4)]
PRIOR = [citizen(1), citizen(50), citizen(51)]
"""What the raw table holds before a load onto a loaded table: GOOD's first citizen, identical, and two others."""
KEPT_BYTES = 4096
"""What the quarantine keeps of a line too long to be a record (the issue's figure, not the reader's constant)."""
LONG_NAME = "Trần " * 450_000
"""A full name of 2.25 MB: any line holding it is longer than the 1 MiB a line may be."""


def ddmmyyyy(value: str) -> str:
    return "/".join(reversed(value.split("-")))


def csv_line(record: Record) -> bytes:
    """One CSV export line, as registries write it (no value here needs quoting)."""
    return ",".join("" if v is None else ddmmyyyy(v) if k in ("date_of_birth", "date_of_death") else v
                    for k, v in record.items()).encode()


def json_line(record: Record) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()


def line_of(fmt: Format, record: Record) -> bytes:
    return csv_line(record) if fmt == "csv" else json_line(record)


def export(tmp_path: Path, fmt: Format, lines: list[bytes], *, compress: bool = False, newline: bytes = b"\n",
           name: str = "citizens") -> Path:
    """An export file of `lines` (the data lines; a CSV file gets the header first), each ended by `newline`."""
    body = b"".join(line + newline for line in ([CSV_HEADER] if fmt == "csv" else []) + lines)
    path = tmp_path / f"{name}.{fmt}{'.gz' if compress else ''}"
    path.write_bytes(gzip.compress(body) if compress else body)
    return path


def fetch(config: KhoConfig, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def quarantined(config: KhoConfig, batch_id: int) -> list[tuple[int | None, str, bytes]]:
    """(line number, reason code, raw bytes) of what the batch quarantined, in line order."""
    return [(line, code, bytes(raw)) for line, code, raw in fetch(
        config, "SELECT line_number, reason_code, raw_record FROM kho.quarantine WHERE batch_id = %s"
                " ORDER BY line_number, quarantine_id", (batch_id,))]


def ledger(config: KhoConfig, batch_id: int) -> tuple[Any, ...]:
    """(read, new, changed, unchanged, rejected, source_name) as the ledger holds them."""
    rows = fetch(config, "SELECT rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected, source_name"
                         " FROM kho.load_ledger WHERE batch_id = %s", (batch_id,))
    assert len(rows) == 1
    return rows[0]


def stored(config: KhoConfig) -> list[tuple[str, str, str]]:
    """(cccd, full_name, date_of_birth) of every raw row, by cccd; empty when the raw table was never committed."""
    if not raw_rows(config):
        return []
    return [(r[0], r[1], r[2]) for r in fetch(
        config, "SELECT cccd, full_name, date_of_birth::text FROM raw.population__citizens ORDER BY cccd")]


def expected_rows(records: list[Record]) -> list[tuple[str | None, str | None, str | None]]:
    return sorted({(r["cccd"], r["full_name"], r["date_of_birth"]) for r in records})


def counts(entry: LedgerEntry) -> tuple[int, int, int, int, int]:
    return entry.rows_read, entry.rows_new, entry.rows_changed, entry.rows_unchanged, entry.rows_rejected


def prepare(config: KhoConfig, target: str) -> list[Record]:
    """Leave the raw table empty (the first-load path) or loaded with PRIOR (the merge path); returns its rows."""
    if target == "loaded":
        load(config, PRIOR)
        return PRIOR
    return []


TARGETS = pytest.mark.parametrize("target", ["empty", "loaded"])
COMPRESSION = pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])


@dataclass(frozen=True)
class BadLine:
    """A line of an export file that is not a record, what the quarantine keeps of it, and why."""

    fmt: Format
    name: str
    line: bytes
    code: str

    @property
    def kept(self) -> bytes:
        return self.line[:KEPT_BYTES]


BAD = citizen(9)
BAD_CSV, BAD_JSON = csv_line(BAD), json_line(BAD)
NAME = "Trần".encode()
BAD_LINES = [
    BadLine("csv", "too-few-fields", BAD_CSV.rsplit(b",", 1)[0], "ragged_line"),
    BadLine("csv", "too-many-fields", BAD_CSV + ",ghi chú".encode(), "ragged_line"),
    BadLine("csv", "windows-1258-byte", BAD_CSV.replace(NAME, b"Tr\xe0n"), "invalid_encoding"),
    BadLine("csv", "nul-byte", BAD_CSV.replace(b",Kinh,", b",Ki\x00nh,"), "nul_byte"),
    BadLine("csv", "quote-never-closed", BAD_CSV.replace(b"," + NAME, b',"' + NAME), "unterminated_quote"),
    BadLine("csv", "2-MB-line", csv_line(citizen(9, full_name=LONG_NAME)), "line_too_long"),
    BadLine("csv", "stray-carriage-return", BAD_CSV.replace(b",Kinh,", b",Kinh\r,"), "malformed_line"),
    BadLine("jsonl", "cut-short", BAD_JSON[:-1], "invalid_json"),
    BadLine("jsonl", "array", json.dumps(list(BAD.values()), ensure_ascii=False).encode(), "not_an_object"),
    BadLine("jsonl", "string", json.dumps(BAD["full_name"], ensure_ascii=False).encode(), "not_an_object"),
    BadLine("jsonl", "number", b"74180000009", "not_an_object"),
    BadLine("jsonl", "unpaired-surrogate", BAD_JSON.replace(NAME, b"Tr\\ud800n"), "invalid_encoding"),
    BadLine("jsonl", "windows-1258-byte", BAD_JSON.replace(NAME, b"Tr\xe0n"), "invalid_encoding"),
    BadLine("jsonl", "two-objects", BAD_JSON + b" " + json_line(citizen(10)), "invalid_json"),
    BadLine("jsonl", "empty-object", b"{}", "missing_required"),
    BadLine("jsonl", "nul-byte", BAD_JSON.replace(b'"Kinh"', b'"Ki\x00nh"'), "nul_byte"),
    BadLine("jsonl", "2-MB-line", json_line(citizen(9, full_name=LONG_NAME)), "line_too_long"),
    BadLine("jsonl", "65-unknown-fields", json_line({**BAD, **{f"ghi_chu_{i}": "x" for i in range(65)}}),
            "too_many_fields"),
    BadLine("jsonl", "nul-in-a-field-name", BAD_JSON.replace(b'{"cccd"', b'{"ghi\\u0000chu": "x", "cccd"'),
            "bad_field_name"),
    BadLine("jsonl", "200-character-field-name", json_line({**BAD, "x" * 200: "x"}), "bad_field_name"),
    BadLine("jsonl", "nul-escape-in-a-value", BAD_JSON.replace(NAME, b"Tr\\u0000n"), "nul_byte"),
]


@TARGETS
@COMPRESSION
@pytest.mark.parametrize("bad", BAD_LINES, ids=[f"{b.fmt}-{b.name}" for b in BAD_LINES])
def test_a_line_that_is_not_a_record_is_quarantined_and_the_rest_loads(
        fresh_db_config: KhoConfig, tmp_path: Path, bad: BadLine, compress: bool, target: str) -> None:
    prior = prepare(fresh_db_config, target)
    g1, g2, g3, g4 = (line_of(bad.fmt, r) for r in GOOD)
    path = export(tmp_path, bad.fmt, [g1, g2, bad.line, g3, b"", g4], compress=compress)
    entry = load_file(fresh_db_config, CITIZENS, path)
    bad_line_number = {"csv": 4, "jsonl": 3}[bad.fmt]  # header (csv), two good lines, then the bad one
    assert quarantined(fresh_db_config, entry.batch_id) == [(bad_line_number, bad.code, bad.kept)]
    # five lines read (the blank one is no record): four good, one rejected; citizen 1 is already stored if loaded
    expected = (5, 3, 0, 1, 1) if prior else (5, 4, 0, 0, 1)
    assert ledger(fresh_db_config, entry.batch_id) == (*expected, str(path))
    assert counts(entry) == expected
    assert stored(fresh_db_config) == expected_rows(GOOD + prior)


@TARGETS
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_record_the_contract_rejects_is_quarantined_with_its_line_and_exact_bytes(
        fresh_db_config: KhoConfig, tmp_path: Path, fmt: Format, target: str) -> None:
    prior = prepare(fresh_db_config, target)
    short_cccd = line_of(fmt, citizen(20, cccd="07419"))
    quoted = (csv_line(citizen(21, cccd="0741", full_name="X")).replace(b",X,", ',"Lê, Thị ""Hoa""",'.encode())
              if fmt == "csv" else json_line(citizen(21, cccd="0741", full_name='Lê, Thị "Hoa"')))
    g1, g2, g3, g4 = (line_of(fmt, r) for r in GOOD)
    path = export(tmp_path, fmt, [g1, short_cccd, g2, g3, quoted, g4], newline=b"\r\n")
    entry = load_file(fresh_db_config, CITIZENS, path)
    first = FIRST_DATA_LINE[fmt]
    assert quarantined(fresh_db_config, entry.batch_id) == [
        (first + 1, "malformed", short_cccd), (first + 4, "malformed", quoted)]  # the CR of CRLF is no part of it
    assert ledger(fresh_db_config, entry.batch_id)[:5] == ((6, 3, 0, 1, 2) if prior else (6, 4, 0, 0, 2))
    assert stored(fresh_db_config) == expected_rows(GOOD + prior)


@TARGETS
@COMPRESSION
def test_a_csv_file_with_every_kind_of_bad_line_loads_its_good_lines(
        fresh_db_config: KhoConfig, tmp_path: Path, compress: bool, target: str) -> None:
    prior = prepare(fresh_db_config, target)
    g1, g2, g3, g4 = (csv_line(r) for r in GOOD)
    by_name = {b.name: b.line for b in BAD_LINES if b.fmt == "csv"}
    contract = csv_line(citizen(20, cccd="07419"))
    lines = [g1, by_name["too-few-fields"], g2, b"", by_name["windows-1258-byte"], by_name["nul-byte"], g3,
             by_name["quote-never-closed"], contract, by_name["2-MB-line"], b"   ", by_name["too-many-fields"],
             by_name["stray-carriage-return"], g4]
    path = export(tmp_path, "csv", lines, compress=compress, newline=b"\r\n")
    entry = load_file(fresh_db_config, CITIZENS, path)
    assert quarantined(fresh_db_config, entry.batch_id) == [
        (3, "ragged_line", by_name["too-few-fields"]),
        (6, "invalid_encoding", by_name["windows-1258-byte"]),
        (7, "nul_byte", by_name["nul-byte"]),
        (9, "unterminated_quote", by_name["quote-never-closed"]),
        (10, "malformed", contract),
        (11, "line_too_long", by_name["2-MB-line"][:KEPT_BYTES]),
        (13, "ragged_line", by_name["too-many-fields"]),
        (14, "malformed_line", by_name["stray-carriage-return"]),
    ]
    # 14 data lines, two of them blank: 12 read = 4 good + 8 rejected
    assert ledger(fresh_db_config, entry.batch_id)[:5] == ((12, 3, 0, 1, 8) if prior else (12, 4, 0, 0, 8))
    assert stored(fresh_db_config) == expected_rows(GOOD + prior)


@TARGETS
@COMPRESSION
def test_a_json_lines_file_with_every_kind_of_bad_line_loads_its_good_lines(
        fresh_db_config: KhoConfig, tmp_path: Path, compress: bool, target: str) -> None:
    prior = prepare(fresh_db_config, target)
    g1, g2, g3, g4 = (json_line(r) for r in GOOD)
    by_name = {b.name: b.line for b in BAD_LINES if b.fmt == "jsonl"}
    contract = json_line(citizen(20, cccd="07419"))
    lines = [by_name["cut-short"], g1, by_name["array"], by_name["string"], b"", by_name["number"], g2,
             by_name["unpaired-surrogate"], by_name["nul-byte"], b" \t ", contract, by_name["2-MB-line"], g3,
             by_name["two-objects"], by_name["windows-1258-byte"], by_name["empty-object"], g4]
    path = export(tmp_path, "jsonl", lines, compress=compress)
    entry = load_file(fresh_db_config, CITIZENS, path)
    assert quarantined(fresh_db_config, entry.batch_id) == [
        (1, "invalid_json", by_name["cut-short"]),
        (3, "not_an_object", by_name["array"]),
        (4, "not_an_object", by_name["string"]),
        (6, "not_an_object", by_name["number"]),
        (8, "invalid_encoding", by_name["unpaired-surrogate"]),
        (9, "nul_byte", by_name["nul-byte"]),
        (11, "malformed", contract),
        (12, "line_too_long", by_name["2-MB-line"][:KEPT_BYTES]),
        (14, "invalid_json", by_name["two-objects"]),
        (15, "invalid_encoding", by_name["windows-1258-byte"]),
        (16, "missing_required", by_name["empty-object"]),
    ]
    # 17 lines, two of them blank: 15 read = 4 good + 11 rejected
    assert ledger(fresh_db_config, entry.batch_id)[:5] == ((15, 3, 0, 1, 11) if prior else (15, 4, 0, 0, 11))
    assert stored(fresh_db_config) == expected_rows(GOOD + prior)


def test_a_quoted_value_with_line_breaks_is_one_record_over_its_lines(fresh_db_config: KhoConfig,
                                                                      tmp_path: Path) -> None:
    """RFC 4180: a line break inside quotes is part of the value; the next record's line number counts it."""
    g1, g2 = csv_line(GOOD[0]), csv_line(GOOD[1])
    two_lines = csv_line(citizen(20, full_name="X")).replace(b",X,", ',"Trần\nVăn Hai Dòng",'.encode())
    short_cccd = csv_line(citizen(21, cccd="07419", full_name="X")).replace(b",X,", ',"Lê\n\nBa Dòng",'.encode())
    path = export(tmp_path, "csv", [g1, two_lines, short_cccd, g2], newline=b"\r\n")  # LF inside values, as Excel
    entry = load_file(fresh_db_config, CITIZENS, path)
    # line 2: g1; lines 3-4: two_lines; lines 5-7: short_cccd (its middle line empty, yet no blank line); 8: g2
    assert quarantined(fresh_db_config, entry.batch_id) == [(5, "malformed", short_cccd)]
    assert counts(entry) == (4, 3, 0, 0, 1) and entry.blank_lines == 0
    assert stored(fresh_db_config) == expected_rows([GOOD[0], citizen(20, full_name="Trần\nVăn Hai Dòng"), GOOD[1]])


# --- files refused as a whole ----------------------------------------------------------------------------------

@pytest.fixture
def cli_config(fresh_db_config: KhoConfig, monkeypatch: pytest.MonkeyPatch) -> KhoConfig:
    """The `kho` command reads its settings from the environment: point it at this test's database, with the
    default reject limit."""
    for key, value in fresh_db_config.child_env().items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith("KHO_REJECT_LIMIT")]:
        monkeypatch.delenv(key)
    return fresh_db_config


def run_load(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """`kho load population citizens FILE` as an operator types it: (exit code, its `kho: error:` lines, stderr)."""
    code = main(["load", "population", "citizens", str(path)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("kho: error:")], err


def state(config: KhoConfig) -> tuple[Any, ...]:
    """Everything a load could write: the raw rows with their lineage, the ledger and the quarantine."""
    raw = fetch(config, "SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY cccd), '[]') FROM raw.population__citizens r"
                ) if raw_rows(config) else []
    return (raw, fetch(config, "SELECT count(*), coalesce(max(batch_id), 0) FROM kho.load_ledger"),
            fetch(config, "SELECT count(*) FROM kho.quarantine"))


def good_csv(records: list[Record], *, separator: str = ",", drop: str | None = None,
             extra_column: str | None = None) -> bytes:
    names = [n for n in FIELDS if n != drop] + ([extra_column] if extra_column else [])
    lines = [separator.join(names).encode()]
    for r in records:
        values = [v for k, v in zip(FIELDS, csv_line(r).decode().split(","), strict=True) if k != drop]
        lines.append(separator.join(values + (["x"] if extra_column else [])).encode())
    return b"\n".join(lines) + b"\n"


MANY = [citizen(i) for i in range(100, 400)]
MANY_CSV = good_csv(MANY)
MANY_GZ = gzip.compress(MANY_CSV)
MANY_JSONL_GZ = gzip.compress(b"".join(json_line(r) + b"\n" for r in MANY))


def _corrupt_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16]) + data[middle + 16:]


REFUSED = [
    ("missing-required-column", "citizens.csv", good_csv(GOOD, drop="sex"), "required field(s) sex absent"),
    ("repeated-column", "citizens.csv", good_csv(GOOD, extra_column="full_name"), "repeats column(s) full_name"),
    ("header-not-utf8", "citizens.csv", MANY_CSV.replace(b"full_name", b"h\xf4_t\xean", 1), "not UTF-8"),
    ("utf16-with-bom", "citizens.csv", MANY_CSV.decode().encode("utf-16"), "UTF-16"),
    ("semicolon-separated", "citizens.csv", good_csv(GOOD, separator=";"), "separator looks like ';'"),
    ("truncated-gzip", "citizens.csv.gz", MANY_GZ[: len(MANY_GZ) // 2], "gzip data is broken"),
    ("corrupt-gzip", "citizens.csv.gz", _corrupt_middle(MANY_GZ), "gzip data is broken"),
    ("truncated-gzip-jsonl", "citizens.jsonl.gz", MANY_JSONL_GZ[: len(MANY_JSONL_GZ) // 2], "gzip data is broken"),
    ("gz-name-not-gzip", "citizens.csv.gz", MANY_CSV, "is named .gz but is not gzip-compressed"),
    ("200-character-column-name", "citizens.csv", good_csv(GOOD, extra_column="x" * 200), "200 characters"),
    ("65-unknown-columns", "citizens.csv",
     b"\n".join(line + "".join(f",c{i}" for i in range(65)).encode() for line in good_csv(GOOD).splitlines()),
     "65 columns the contract does not know"),
]


@TARGETS
@pytest.mark.parametrize(("name", "content", "says"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_an_unreadable_file_is_refused_in_one_line_and_nothing_is_written(
        cli_config: KhoConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes,
        says: str, target: str) -> None:
    prepare(cli_config, target)
    before = state(cli_config)
    path = tmp_path / name
    path.write_bytes(content)
    code, errors, err = run_load(path, capsys)
    assert code == 1
    assert len(errors) == 1 and path.name in errors[0] and says in errors[0], err
    assert "Traceback" not in err
    assert state(cli_config) == before


@TARGETS
def test_a_gzip_file_broken_after_its_first_block_leaves_nothing_behind(
        fresh_db_config: KhoConfig, tmp_path: Path, target: str) -> None:
    """The break is found only after a whole block of rows was COPYed (into the raw table itself on a first load):
    the batch's transaction takes them back."""
    prepare(fresh_db_config, target)
    before = state(fresh_db_config)
    body = CSV_HEADER + b"\n" + b"".join(csv_line(citizen(i)) + b"\n" for i in range(1000, 121_000))
    assert len(body) > BLOCK_BYTES + (1 << 20)
    packed = gzip.compress(body, compresslevel=1)
    path = tmp_path / "citizens.csv.gz"
    path.write_bytes(packed[: len(packed) * 95 // 100])
    with pytest.raises(ExtractError, match="gzip data is broken after") as refused:
        load_file(fresh_db_config, CITIZENS, path)
    after = re.search(r"after ([0-9,]+) bytes", str(refused.value))
    assert after is not None and int(after.group(1).replace(",", "")) > BLOCK_BYTES, "broke before a block loaded"
    assert state(fresh_db_config) == before


# --- empty files ------------------------------------------------------------------------------------------------

EMPTY = [
    ("zero-bytes-csv", "citizens.csv", b""),
    ("zero-bytes-jsonl", "citizens.jsonl", b""),
    ("header-only-csv", "citizens.csv", CSV_HEADER + b"\n"),
    ("header-only-no-line-break", "citizens.csv", CSV_HEADER),
    ("header-and-blank-lines", "citizens.csv", CSV_HEADER + b"\r\n\r\n\n"),
    ("blank-lines-csv", "citizens.csv", b"\n\n"),
    ("one-line-break-jsonl", "citizens.jsonl", b"\n"),
    ("blank-lines-jsonl", "citizens.jsonl", b"\n  \n\t\r\n\n"),
]


@COMPRESSION
@pytest.mark.parametrize(("name", "content"), [e[1:] for e in EMPTY], ids=[e[0] for e in EMPTY])
def test_an_empty_file_loads_as_an_empty_batch(fresh_db_config: KhoConfig, tmp_path: Path, name: str,
                                                content: bytes, compress: bool) -> None:
    path = tmp_path / (name + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(content) if compress else content)
    entry = load_file(fresh_db_config, CITIZENS, path)
    assert counts(entry) == (0, 0, 0, 0, 0)
    assert ledger(fresh_db_config, entry.batch_id) == (0, 0, 0, 0, 0, str(path))
    assert raw_rows(fresh_db_config) == 0
    assert fetch(fresh_db_config, "SELECT count(*) FROM kho.quarantine") == [(0,)]


# --- the reject limit -------------------------------------------------------------------------------------------

def mostly_bad(tmp_path: Path, good: int, bad: int) -> Path:
    """`good` valid citizens, then `bad` rejected lines: half not records (too few fields), half malformed cccds."""
    lines = [csv_line(citizen(i)) for i in range(good)]
    for i in range(bad):
        lines.append(f"07419{i:04d},Trần Văn Thiếu".encode() if i % 2 else csv_line(citizen(5000 + i, cccd="07")))
    return export(tmp_path, "csv", lines)


@pytest.mark.parametrize(("good", "bad", "rejected"), [(900, 100, 100), (1, 99, 99)],
                         ids=["exactly-10-percent", "99-percent-but-fewer-than-100"])
def test_rejects_within_the_limit_are_quarantined_and_the_rest_loads(
        fresh_db_config: KhoConfig, tmp_path: Path, good: int, bad: int, rejected: int) -> None:
    entry = load_file(fresh_db_config, CITIZENS, mostly_bad(tmp_path, good, bad))
    assert counts(entry) == (good + bad, good, 0, 0, rejected)
    assert raw_rows(fresh_db_config) == good
    assert fetch(fresh_db_config, "SELECT count(*) FROM kho.quarantine") == [(rejected,)]


@TARGETS
def test_more_than_ten_percent_and_a_hundred_rejects_refuse_the_file(
        fresh_db_config: KhoConfig, tmp_path: Path, target: str) -> None:
    prepare(fresh_db_config, target)
    before = state(fresh_db_config)
    with pytest.raises(BatchRefused, match=r"100 of 999 records rejected.*\(KHO_REJECT_LIMIT_PERCENT\)"):
        load_file(fresh_db_config, CITIZENS, mostly_bad(tmp_path, 899, 100))
    assert state(fresh_db_config) == before


def test_a_refused_file_is_one_line_from_the_command(cli_config: KhoConfig, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = mostly_bad(tmp_path, 150, 150)
    code, errors, err = run_load(path, capsys)
    assert code == 1
    assert len(errors) == 1 and path.name in errors[0] and "KHO_REJECT_LIMIT_PERCENT_POPULATION" in errors[0], err
    assert "Traceback" not in err
    assert state(cli_config) == ([], [(0, 0)], [(0,)])


def test_a_registrys_own_limit_applies_to_that_registry_only(fresh_db_config: KhoConfig, tmp_path: Path) -> None:
    path = mostly_bad(tmp_path, 150, 150)  # 50% rejected
    env = fresh_db_config.child_env()
    others = KhoConfig.from_env({**env, "KHO_REJECT_LIMIT_PERCENT_BUSINESS": "60"})
    with pytest.raises(BatchRefused, match=r"limit of 10% \(KHO_REJECT_LIMIT_PERCENT\)"):
        load_file(others, CITIZENS, path)
    assert raw_rows(fresh_db_config) == 0
    population = KhoConfig.from_env({**env, "KHO_REJECT_LIMIT_PERCENT_POPULATION": "60"})
    assert counts(load_file(population, CITIZENS, path)) == (300, 150, 0, 0, 150)


def test_the_command_reads_a_registrys_limit_from_the_environment(
        cli_config: KhoConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KHO_REJECT_LIMIT_PERCENT_POPULATION", "60")
    assert main(["load", "population", "citizens", str(mostly_bad(tmp_path, 150, 150)), "--no-progress"]) == 0
    assert "read 300 = new 150 + changed 0 + unchanged 0 + rejected 150" in capsys.readouterr().out
    assert raw_rows(cli_config) == 150


# --- an API page ------------------------------------------------------------------------------------------------

class _Registry(BaseHTTPRequestHandler):
    """The registry protocol (docs/registries.md) at its smallest: a token for anyone, one page of records."""

    server: _RegistryServer

    def do_POST(self) -> None:
        body = {"access_token": "t", "token_type": "Bearer", "expires_in": 300}
        self._send(200 if self.path == "/oauth/token" else 404, json.dumps(body).encode())

    def do_GET(self) -> None:
        found = urlsplit(self.path).path == CITIZENS.endpoint
        self._send(200 if found else 404, self.server.page if found else b'{"message": "no such endpoint"}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RegistryServer(ThreadingHTTPServer):
    page: bytes = b""


@pytest.fixture
def registry(fresh_db_config: KhoConfig) -> Iterator[tuple[_RegistryServer, KhoConfig]]:
    """A registry on a port of its own, and the test's config pointed at it."""
    server = _RegistryServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, name="test-registry", daemon=True)
    thread.start()
    try:
        yield server, replace(fresh_db_config, simulator_host="127.0.0.1", simulator_port=server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@TARGETS
def test_a_page_record_that_is_not_a_record_is_quarantined_and_the_rest_of_the_page_loads(
        registry: tuple[_RegistryServer, KhoConfig], target: str) -> None:
    server, config = registry
    prior = prepare(config, target)
    surrogate = citizen(9, full_name="Tr\ud800n Văn Chín")
    not_objects: list[object] = ["Trần Văn Số 9", list(BAD.values()), 74180000009]
    too_wide = {**citizen(10), **{f"ghi_chu_{i}": "x" for i in range(65)}}
    bad_name = {**citizen(11), "ghi\u0000chu": "x"}
    nul = citizen(12, full_name="Trần\u0000Văn")
    page = [GOOD[0], not_objects[0], GOOD[1], not_objects[1], surrogate, too_wide, GOOD[2], not_objects[2],
            bad_name, nul, GOOD[3]]
    server.page = json.dumps({"data": page, "next_cursor": None}).encode()  # ASCII: \ud800, \u0000 as escapes
    (entry,) = sync_api(config, CITIZENS)
    assert counts(entry) == ((11, 3, 0, 1, 7) if prior else (11, 4, 0, 0, 7))
    assert ledger(config, entry.batch_id)[:5] == counts(entry)
    held = quarantined(config, entry.batch_id)
    assert [line for line, _, _ in held] == [None] * 7
    assert sorted(code for _, code, _ in held) == ["bad_field_name", "invalid_encoding", "not_an_object",
                                                   "not_an_object", "not_an_object", "nul_byte", "too_many_fields"]
    assert sorted((json.loads(raw) for _, _, raw in held), key=repr) == sorted(
        [surrogate, *not_objects, too_wide, bad_name, nul], key=repr)
    assert stored(config) == expected_rows(GOOD + prior)
