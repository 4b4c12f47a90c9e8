"""Export files are read as streams of all-text Arrow tables, whatever their format and compression."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from kho.errors import ExtractError
from kho.extract.files import ExportFile, iter_blocks, iter_file, looks_like, prefetch, read_header
from kho.sources.civil_status import BIRTHS
from kho.sources.contract import Entity
from kho.sources.population import CITIZENS, HOUSEHOLDS
from tests.unit.extract.test_bad_lines_property import ExportSpec, citizen, write_record

ROWS = [
    {"cccd": "074090001234", "full_name": "Nguyễn Thị Hương", "date_of_birth": "17/05/1990", "note": "a, \"b\""},
    {"cccd": "001085000002", "full_name": "Trần Văn Đức", "date_of_birth": "01/01/1985", "note": None},
]


def write_csv(path: Path, rows: list[dict[str, str | None]], *, compress: bool = False) -> Path:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(rows[0]))
    for r in rows:
        writer.writerow(["" if v is None else v for v in r.values()])
    data = buf.getvalue().encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def read_all(path: Path, **kwargs: int) -> pa.Table:
    return pa.concat_tables(list(iter_file(ExportFile.of(path), **kwargs)))


@pytest.mark.parametrize("compress", [False, True])
def test_csv_values_arrive_as_text_with_empty_as_null(tmp_path: Path, compress: bool) -> None:
    name = "population__citizens__day000.csv" + (".gz" if compress else "")
    table = read_all(write_csv(tmp_path / name, ROWS, compress=compress))
    assert all(pa.types.is_string(t) for t in table.schema.types)
    assert table.to_pylist() == ROWS


def test_jsonl_keeps_iso_strings_as_text(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    records = [{"cccd": "074090001234", "updated_at": "2025-01-01T00:00:00Z", "n": 3}]
    path.write_bytes(gzip.compress("\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()))
    assert read_all(path).to_pylist() == [{"cccd": "074090001234", "updated_at": "2025-01-01T00:00:00Z", "n": "3"}]


def test_a_large_file_streams_in_several_tables(tmp_path: Path) -> None:
    rows = [{**ROWS[0], "cccd": f"{i:012d}"} for i in range(20_000)]
    path = write_csv(tmp_path / "big.csv", rows)
    tables = list(iter_file(ExportFile.of(path), block_bytes=64 << 10))
    assert len(tables) > 5
    assert sum(t.num_rows for t in tables) == 20_000


def test_a_file_of_unknown_format_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "citizens.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ExtractError, match=r"citizens\.xlsx"):
        ExportFile.of(path)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="does not exist"):
        ExportFile.of(tmp_path / "nope.csv")


def test_a_ragged_csv_line_is_a_defect_with_its_line_number_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4,5\n6,7\n", encoding="utf-8")
    blocks = list(iter_blocks(ExportFile.of(path)))
    assert [row for b in blocks for row in b.table.to_pylist()] == [{"a": "1", "b": "2"}, {"a": "6", "b": "7"}]
    assert [(d.line, d.code, d.raw) for b in blocks for d in b.defects] == [(3, "ragged_line", b"3,4,5")]
    assert [n for b in blocks for n in b.line_numbers(range(b.table.num_rows))] == [2, 4]


def test_prefetch_yields_every_item_in_order() -> None:
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))


def test_prefetch_raises_the_producers_error_where_it_happened() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ExtractError("block 3 is not valid CSV")

    seen = []
    with pytest.raises(ExtractError, match="block 3"):
        for item in prefetch(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_a_consumer_that_stops_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()
    produced = []

    def items() -> Iterator[int]:
        try:
            for i in range(1_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    stream.close()  # what a failed load does to its block iterator
    assert closed.wait(5)
    assert len(produced) < 10, "the producer ran on past the consumer"


def test_a_multi_line_record_with_a_form_feed_in_an_unquoted_field_loads(tmp_path: Path) -> None:
    record = citizen(5, "a\nb", "csv")  # the name is quoted: the record runs over two lines (RFC 4180)
    record["ethnicity"] = "Ki\x0cnh"  # or \x0b, \x1c-\x1e, \x85, \u2028, \u2029: what str.splitlines splits at
    path = ExportSpec("csv", (write_record("csv", record),), {}).write(tmp_path)
    blocks = list(iter_blocks(ExportFile.of(path), CITIZENS))
    assert [b.table.num_rows for b in blocks] == [1]


@pytest.mark.parametrize("block_bytes", [1, 512])
def test_a_too_long_line_read_in_small_blocks_keeps_up_to_4096_of_its_bytes(tmp_path: Path, block_bytes: int) -> None:
    long = b"x" * 1500
    path = ExportSpec("jsonl", (b'{"a": "1"}', long, b'{"a": "2"}'), {}).write(tmp_path)
    defects = [d for b in iter_blocks(ExportFile.of(path), block_bytes=block_bytes, max_line_bytes=1000)
               for d in b.defects]
    assert [(d.line, d.raw) for d in defects] == [(2, long)]


def test_every_structural_reason_code_is_documented() -> None:
    from kho.config import PROJECT_ROOT
    from kho.extract.block import STRUCTURAL_CODES

    doc = (PROJECT_ROOT / "docs" / "registries.md").read_text(encoding="utf-8")
    assert len(STRUCTURAL_CODES) == 10
    assert [code for code in STRUCTURAL_CODES if f"`{code}`" not in doc] == []


@pytest.mark.parametrize(("loaded_as", "looks_like"), [(CITIZENS, HOUSEHOLDS), (HOUSEHOLDS, CITIZENS),
                                                         (BIRTHS, CITIZENS)])
def test_a_file_of_another_entity_says_which_entity_it_looks_like(tmp_path: Path, loaded_as: Entity,
                                                                  looks_like: Entity) -> None:
    path = tmp_path / "export.csv"
    path.write_text(",".join(looks_like.field_names) + "\n" + ",".join("x" for _ in looks_like.field_names) + "\n",
                    encoding="utf-8")
    with pytest.raises(ExtractError) as caught:
        read_header(ExportFile.of(path), loaded_as)
    message = str(caught.value)
    assert f"looks like {looks_like.qualified_name}'s export" in message and "\n" not in message
    assert f"`kho load {looks_like.registry} {looks_like.name} export.csv`" in message


def test_a_header_of_no_entity_names_none_as_its_look_alike(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("colour,flavour\nred,sweet\n", encoding="utf-8")
    with pytest.raises(ExtractError) as caught:
        read_header(ExportFile.of(path), CITIZENS)
    assert "names none of population.citizens's fields" in str(caught.value)
    assert "looks like" not in str(caught.value)


def test_only_the_entity_whose_required_fields_are_all_there_is_named() -> None:
    header = list(HOUSEHOLDS.field_names[:-1])  # one required field short: households it is not, for sure
    assert looks_like(header, CITIZENS) is None
    assert looks_like([*HOUSEHOLDS.field_names, "extra"], CITIZENS) == HOUSEHOLDS
    assert looks_like(list(CITIZENS.field_names), CITIZENS) is None  # the entity itself is never its look-alike
