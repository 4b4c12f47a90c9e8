"""Properties of reading export files line by line, whatever the lines hold.

Good citizen records (with arbitrary names; in CSV a name may hold a line break, quoted, so the record runs over
several lines), blank lines and junk (arbitrary bytes, a good line with one field's bytes replaced by arbitrary
bytes, the known kinds of bad line, lines too long) are shuffled into CSV or JSON Lines files, plain or gzipped,
with LF or CRLF line breaks, with or without a byte order mark and a last line break, read in blocks of 1 byte to
8 MiB. Whatever is drawn, `iter_blocks` accounts for every data line exactly once: inside one record (whose bytes
are exactly its lines' and, in CSV, say what the record holds), as one defect carrying the line's bytes, or as a
blank line; every good record comes out as itself with its values intact. Arbitrary bytes as a whole file are read
so or refused with one line (ExtractError, ContractError), never anything else.

The expected outcome is worked out from how the file was written, never from the reader.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kho.errors import ContractError, ExtractError
from kho.extract.block import Block, Defect
from kho.extract.files import ExportFile, iter_blocks
from kho.sources.identity import cccd_prefix
from kho.sources.population import CITIZENS

Format = Literal["csv", "jsonl"]
Record = dict[str, str | None]
GZIP_MAGIC = b"\x1f\x8b"
KEPT_BYTES = 4096
"""What a defect keeps of a line too long to be a record (the issue's figure)."""
MAX_LINE_BYTES = 5000
"""How long a line may be, as the tests read these files: past KEPT_BYTES, and far past any good line drawn."""
PROPERTY = settings(deadline=None, max_examples=300, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
"""Derandomized, so `make test` is reproducible; no example database left in the working tree."""


def citizen(i: int, name: str, fmt: Format) -> Record:
    """A valid citizen's record as its format writes it: CSV dates dd/mm/yyyy, JSON Lines the API's ISO dates."""
    year, sex = 1950 + i % 60, "M" if i % 2 else "F"
    return {
        "cccd": cccd_prefix("74", year, sex) + f"{i % 1_000_000:06d}",
        "full_name": name,
        "date_of_birth": f"15/01/{year}" if fmt == "csv" else f"{year}-01-15",
        "sex": sex,
        "ethnicity": "Kinh",
        "birth_province_code": "74",
        "hometown_province_code": "38",
        "permanent_commune_code": "25747",
        "status": "alive",
        "date_of_death": None,
        "updated_at": "2025-01-01T00:00:00Z",
    }


FIELDS = tuple(citizen(0, "", "csv"))


def csv_line(values: list[str]) -> bytes:
    """A CSV line as a registry's writer makes it (values quoted where they must be)."""
    out = io.StringIO()
    csv.writer(out).writerow(values)  # its line terminator, \r\n, is what makes it quote a value holding \n
    return out.getvalue().removesuffix("\r\n").encode()


def write_record(fmt: Format, record: Record) -> bytes:
    if fmt == "csv":
        return csv_line(["" if v is None else v for v in record.values()])
    return json.dumps(record, ensure_ascii=False).encode()


@dataclass(frozen=True)
class ExportSpec:
    """A drawn export file: its records and other lines (without line breaks; a CSV record with a quoted line break
    in a value runs over several lines) and which of them are good records."""

    fmt: Format
    items: tuple[bytes, ...]
    good: dict[int, Record]
    """Index in `items` → the record that item holds."""
    crlf: bool = False
    bom: bool = False
    final_break: bool = True
    compress: bool = False

    @property
    def first_line(self) -> int:
        return 2 if self.fmt == "csv" else 1

    def data(self) -> bytes:
        brk = b"\r\n" if self.crlf else b"\n"
        return brk.join(self.items) + (brk if self.final_break else b"")

    def body(self) -> bytes:
        header = ",".join(FIELDS).encode() + (b"\r\n" if self.crlf else b"\n") if self.fmt == "csv" else b""
        return (codecs.BOM_UTF8 if self.bom else b"") + header + self.data()

    def write(self, directory: Path, name: str = "citizens") -> Path:
        path = directory / f"{name}.{self.fmt}{'.gz' if self.compress else ''}"
        body = self.body()
        path.write_bytes(gzip.compress(body, compresslevel=1) if self.compress else body)
        return path

    def good_lines(self) -> dict[int, tuple[Record, int]]:
        """Index of its first line among the data lines → (good record, how many lines it runs over)."""
        out: dict[int, tuple[Record, int]] = {}
        at = 0
        for k, item in enumerate(self.items):
            lines = item.count(b"\n") + 1
            if k in self.good:
                out[at] = (self.good[k], lines)
            at += lines
        return out


def physical_lines(data: bytes) -> list[bytes]:
    """The data lines of a file's data part as stored, each without its LF (a CR before it is still there)."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the last line break ends a line, it starts none
    return lines


def blank(seen: bytes) -> bool:
    return not seen.decode("utf-8", "replace").strip()


NAME_CHARS: dict[Format, st.SearchStrategy[str]] = {
    # What UTF-8 can encode (an unpaired surrogate is not text), but no NUL (PostgreSQL text cannot hold one: a
    # line holding one, even as JSON's \u0000, is a nul_byte defect). A CSV value may hold a line break (quoted), but
    # no CR: a CR before a line break is the break's.
    "csv": st.characters(codec="utf-8", exclude_characters="\r\x00"),
    "jsonl": st.characters(codec="utf-8", exclude_characters="\x00"),
}
BLANKS = st.sampled_from([b"", b" ", b"\t", b" \t  ", b"\r"])


def known_defects(fmt: Format, line: bytes, long_bytes: int) -> list[bytes]:
    """The kinds of line the issue names, cut from a good `line`."""
    common = [line.replace(b"Kinh", b"Ki\x00nh"), line.replace(b"Kinh", b"K\xe0nh"), b"x" * long_bytes,
              line + b"x" * long_bytes, line[:20] + b"\r" + line[20:]]
    if fmt == "csv":
        return [*common, line.rsplit(b",", 1)[0], line + b",extra", line.replace(b",Kinh", b',"Kinh')]
    return [*common, line[:-1], b"[" + line + b"]", b'"Kinh"', b"7418", b"null", line + b" " + line, b"{}",
            line.replace(b"Kinh", b"Ki\\ud800nh"), line.replace(b"Kinh", b"Ki\\u0000nh")]


@st.composite
def field_junk(draw: st.DrawFn, fmt: Format, record: Record) -> bytes:
    """A good line with one field's bytes replaced by arbitrary bytes: in JSON inside the quotes or in place of the
    value, unescaped (they may close the string, break the object, hold a NUL or not be UTF-8)."""
    field = draw(st.sampled_from(FIELDS))
    values = {k: ("" if v is None else v) for k, v in record.items()}
    if fmt == "csv":
        junk = draw(st.binary(max_size=40)).replace(b"\n", b"")
        return b",".join(junk if k == field else csv_line([v]) for k, v in values.items())
    junk = draw(st.binary(max_size=30) | st.text(max_size=30).map(str.encode)).replace(b"\n", b"")
    raw = b'"' + junk + b'"' if draw(st.booleans()) else junk
    return b"{" + b", ".join(json.dumps(k).encode() + b": " + (raw if k == field else json.dumps(v).encode())
                             for k, v in values.items()) + b"}"


LONG_BYTES = st.integers(MAX_LINE_BYTES + 1, MAX_LINE_BYTES + 3000)


def export_specs(*, names: Callable[[Format], st.SearchStrategy[str]] | None = None, next_index: Callable[[], int],
                 long_bytes: st.SearchStrategy[int] = LONG_BYTES, min_lines: int = 1,
                 max_lines: int = 12) -> st.SearchStrategy[ExportSpec]:
    """Export files of good, blank and junk lines; `next_index` numbers citizens (unique keys across examples)."""
    pick_name = names or (lambda fmt: st.text(NAME_CHARS[fmt], min_size=1, max_size=12))

    @st.composite
    def build(draw: st.DrawFn) -> ExportSpec:
        fmt: Format = draw(st.sampled_from(["csv", "jsonl"]))
        kinds = draw(st.lists(st.sampled_from(["good", "good", "blank", "junk", "field", "known"]),
                              min_size=min_lines, max_size=max_lines))
        lines: list[bytes] = []
        good: dict[int, Record] = {}
        for kind in kinds:
            record = citizen(next_index(), draw(pick_name(fmt)), fmt)
            if kind == "good":
                good[len(lines)] = record
                lines.append(write_record(fmt, record))
            elif kind == "blank":
                lines.append(draw(BLANKS))
            elif kind == "junk":
                lines.append(draw(st.binary(max_size=60)).replace(b"\n", b"") + draw(BLANKS))
            elif kind == "field":
                lines.append(draw(field_junk(fmt, record)) + draw(BLANKS))
            else:
                line = write_record(fmt, record)
                lines.append(draw(st.sampled_from(known_defects(fmt, line, draw(long_bytes)))) + draw(BLANKS))
        final_break = draw(st.booleans())
        return ExportSpec(fmt, tuple(lines), good, crlf=draw(st.booleans()), bom=draw(st.booleans()),
                          final_break=final_break or lines[-1] == b"", compress=draw(st.booleans()))

    return build()


@dataclass(frozen=True)
class Outcome:
    """What came out of a file, by line number."""

    records: dict[int, tuple[Record, bytes]]
    """First line number → the record and its bytes as the block holds them."""
    defects: dict[int, Defect]
    blank_lines: int


def outcome(blocks: Iterator[Block]) -> Outcome:
    """Collect records and defects by line number, failing on any line that comes out twice."""
    records: dict[int, tuple[Record, bytes]] = {}
    defects: dict[int, Defect] = {}
    blank_count = 0
    for block in blocks:
        block.table.validate(full=True)  # every value is text (valid UTF-8), as Arrow promises downstream
        assert all(pa.types.is_string(t) for t in block.table.schema.types)
        rows = list(range(block.table.num_rows))
        for number, row, raw in zip(block.line_numbers(rows), block.table.to_pylist(), block.raw_records(rows),
                                    strict=True):
            assert number is not None and raw is not None and number not in records and number not in defects, \
                f"line {number} twice"
            records[number] = (row, raw)
        for defect in block.defects:
            assert defect.line is not None and defect.line not in records and defect.line not in defects, \
                f"line {defect.line} twice"
            defects[defect.line] = defect
        blank_count += block.blank_lines
    return Outcome(records, defects, blank_count)


def csv_values(text: str) -> list[str] | None:
    """The one CSV record `text` holds, read by Python's csv module as its documentation says (newline=""), or
    None when it is not exactly one record."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def check_accounting(fmt: Format, data: bytes, good: dict[int, tuple[Record, int]], out: Outcome) -> None:
    """Every data line once: in one record (a record runs over the lines its bytes hold), as one defect with the
    line's bytes, or blank; good records as themselves, with their values intact; every record what its bytes say."""
    stored = physical_lines(data)
    seen = [line.removesuffix(b"\r") for line in stored]
    first = 2 if fmt == "csv" else 1
    covered: dict[int, str] = {}
    for number, (row, raw) in out.records.items():
        at = number - first
        last = at + raw.count(b"\n")
        assert raw == b"\n".join([*stored[at:last], seen[last]]), f"record at line {number}: not its lines' bytes"
        assert not blank(seen[at]), f"blank line {number} came out as a record"
        for line in range(at, last + 1):
            assert line not in covered, f"line {first + line} in two records"
            covered[line] = "record"
        if fmt == "csv":
            values = csv_values(raw.decode())
            assert values is not None and [v or None for v in values] == [row[k] or None for k in FIELDS], \
                f"record at line {number} is not what its bytes say"
    for number, defect in out.defects.items():
        at = number - first
        assert at not in covered, f"line {number} both a record and a defect"
        covered[at] = "defect"
        assert not blank(seen[at]), f"blank line {number} came out as a defect"
        assert defect.raw == (seen[at][:KEPT_BYTES] if defect.code == "line_too_long" else seen[at]), defect
    rest = [at for at in range(len(seen)) if at not in covered]
    lost = [first + at for at in rest if not blank(seen[at])]
    assert not lost, f"line(s) {lost} neither a record nor a defect"
    assert out.blank_lines == len(rest)
    for at, (record, lines) in good.items():
        number = first + at
        assert number in out.records, f"good line {number} came out as {out.defects.get(number)}"
        row, raw = out.records[number]
        assert raw.count(b"\n") + 1 == lines, f"good record at line {number} did not end where it does"
        assert {k: row.get(k) for k in FIELDS} == record


_counter = itertools.count(1)


@PROPERTY
@given(spec=export_specs(next_index=lambda: next(_counter)),
       block_bytes=st.sampled_from([1, 97, 4096, 8 << 20]))
def test_every_data_line_comes_out_once_as_a_record_or_a_defect(tmp_path_factory: pytest.TempPathFactory,
                                                                spec: ExportSpec, block_bytes: int) -> None:
    path = spec.write(tmp_path_factory.mktemp("export"))

    def read() -> Outcome:
        return outcome(iter_blocks(ExportFile.of(path), CITIZENS, block_bytes=block_bytes,
                                   max_line_bytes=MAX_LINE_BYTES))

    if not spec.compress and spec.body().startswith(GZIP_MAGIC):  # junk that opens a file as gzip does
        with pytest.raises(ExtractError, match=f"^{path.name}: its gzip data is broken"):
            read()
        return
    check_accounting(spec.fmt, spec.data(), spec.good_lines(), read())


@dataclass(frozen=True)
class ArbitraryFile:
    name: str
    disk: bytes
    """The file's bytes on disk."""
    data: bytes | None
    """Its data part, when it is a well-formed container of lines (a good CSV header first, or JSON Lines)."""
    refusable: bool
    """Whether refusing it is right: not such a container, or plain bytes that open as gzip does."""


def test_a_too_long_line_keeps_its_own_bytes_only(tmp_path: Path) -> None:
    """With lines allowed fewer bytes than a defect keeps, the kept bytes still stop at the line's end."""
    long = b"x" * 1500
    path = ExportSpec("jsonl", (b'{"a": "1"}', long, b'{"a": "2"}'), {}).write(tmp_path)
    out = outcome(iter_blocks(ExportFile.of(path), max_line_bytes=1000))
    assert [(n, d.code, d.raw) for n, d in out.defects.items()] == [(2, "line_too_long", long)]
    assert [(n, row) for n, (row, _) in out.records.items()] == [(1, {"a": "1"}), (3, {"a": "2"})]


@st.composite
def arbitrary_files(draw: st.DrawFn) -> ArbitraryFile:
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    header = fmt == "csv" and draw(st.booleans())
    data = draw(st.binary(max_size=300))
    body = (",".join(FIELDS).encode() + b"\n" if header else b"") + data
    how = draw(st.sampled_from(["plain", "gzip", "gz-name-on-anything"]))
    name = f"citizens.{fmt}" + ("" if how == "plain" else ".gz")
    if not (header or fmt == "jsonl") or how == "gz-name-on-anything":
        return ArbitraryFile(name, body, None, True)
    return ArbitraryFile(name, gzip.compress(body) if how == "gzip" else body,
                         data.removeprefix(codecs.BOM_UTF8) if fmt == "jsonl" else data,
                         how == "plain" and body.startswith(GZIP_MAGIC))


@PROPERTY
@given(drawn=arbitrary_files())
def test_arbitrary_bytes_are_read_line_by_line_or_refused_in_one_line(tmp_path_factory: pytest.TempPathFactory,
                                                                     drawn: ArbitraryFile) -> None:
    path = tmp_path_factory.mktemp("export") / drawn.name
    path.write_bytes(drawn.disk)
    try:
        out = outcome(iter_blocks(ExportFile.of(path), CITIZENS))
    except (ExtractError, ContractError) as refused:
        assert drawn.refusable, refused
        assert "\n" not in str(refused) and path.name in str(refused), refused
        return
    if drawn.data is not None:
        check_accounting("csv" if ".csv" in drawn.name else "jsonl", drawn.data, {}, out)
