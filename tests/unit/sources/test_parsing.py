"""Wire-text parsing on the hot path: timestamps through Arrow's ISO cast, NFC only where needed."""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kho.sources import nfc
from kho.sources.contract import Field, parse_field

UPDATED_AT = Field("updated_at", "timestamptz")
SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)?")


def reference_instant(text: str | None) -> dt.datetime | None:
    """What the contract means, written the slow obvious way with the standard library."""
    if text is None or not SHAPE.fullmatch(text.strip()):
        return None
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    zone = re.search(r"([+-])(\d{2}):?(\d{2})?$", value)
    if zone and zone.start() > 18:
        if int(zone[2]) > 23 or int(zone[3] or 0) > 59:
            return None
        value = value[:zone.start()] + f"{zone[1]}{zone[2]}:{zone[3] or '00'}"
    else:
        value += "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC)


EDGE_CASES = [
    "2024-01-27T23:25:41Z", "2024-01-27T23:25:41+07:00", "2024-01-27T23:25:41+0700", "2024-01-27T23:25:41+07",
    "2024-01-27T23:25:41-14:00", "2024-01-27T23:25:41.123456Z", "2024-01-27T23:25:41.5+07:00", "2024-01-27T23:25:41",
    "  2024-01-27T23:25:41Z ", "2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    # not instants
    "2024-01-27 23:25:41Z", "2024-01-27", "2024-01-27T23:25Z", "2024-01-27T23:25:41.1234567Z", "+2024-01-27T23:25:41Z",
    "2024-01-27T23:25:41z", "2024-01-27T23:25:41.Z", "", "yesterday",
    # well shaped but impossible
    "2001-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
    "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-01-00T00:00:00Z", "2024-01-27T24:00:00Z",
    "2024-01-27T23:60:00Z", "2024-01-27T23:25:61Z", "2024-01-27T23:59:60Z", "2024-01-27T23:25:41+24:00",
    "2024-01-27T23:25:41+07:60", "0000-01-01T00:00:00Z",
    None,
]


def parse(values: list[str | None]) -> list[dt.datetime | None]:
    return parse_field(UPDATED_AT, pa.chunked_array([pa.array(values, pa.string())])).to_pylist()


@pytest.mark.parametrize("text", EDGE_CASES)
def test_a_timestamp_alone_parses_as_the_standard_library_reads_it(text: str | None) -> None:
    assert parse([text]) == [reference_instant(text)]


def test_one_impossible_timestamp_nulls_only_itself_not_its_block() -> None:
    good = [f"2024-01-{day:02d}T08:00:00+07:00" for day in range(1, 29)]
    values = [*good[:10], "2001-02-30T00:00:00Z", *good[10:], "2024-01-27T24:00:00Z"]
    parsed = parse(values)
    assert parsed == [reference_instant(v) for v in values]
    assert sum(p is None for p in parsed) == 2


def test_random_timestamps_match_the_reference() -> None:
    rng = random.Random(7)
    values: list[str | None] = []
    for _ in range(3000):
        text = (f"{rng.choice(['0000', '1900', '2000', '2023', '2024', '9999'])}-{rng.randint(0, 13):02d}-"
                f"{rng.randint(0, 32):02d}T{rng.randint(0, 24):02d}:{rng.randint(0, 60):02d}:{rng.randint(0, 61):02d}"
                f"{rng.choice(['', '.5', '.123456', '.1234567'])}"
                f"{rng.choice(['', 'Z', '+07:00', '-0530', '+07', '+24:00', '+07:61', 'z'])}")
        values.append(text)
    assert parse(values) == [reference_instant(v) for v in values]


def test_nfc_normalisation_equals_normalising_everything() -> None:
    rng = random.Random(3)
    pool = [chr(c) for c in [*range(0x20, 0x250), *range(0x300, 0x370), *range(0x1100, 0x1200),
                             *range(0xAC00, 0xAC40), *range(0x1E00, 0x1F00), 0x212B, 0x2126, 0x0958, 0x093C]]
    samples: list[str | None] = ["Nguyễn Thị Ánh", unicodedata.normalize("NFD", "Nguyễn Thị Ánh"), None, "",
                                 "q\u0301\u0323", "\u1100\u1161", "가\u11a8"]
    samples += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 6))) for _ in range(5000)]
    col = pa.chunked_array([pa.array(samples[:2000], pa.string()), pa.array(samples[2000:], pa.string())])
    assert nfc.normalize_nfc(col).to_pylist() == pc.utf8_normalize(col, form="NFC").to_pylist()


def test_text_that_is_already_nfc_is_returned_as_is() -> None:
    col = pa.chunked_array([pa.array(["Trần Văn Bình", "Lê Thị Hồng", None])])
    assert nfc.normalize_nfc(col) is col


@pytest.mark.parametrize(("text", "fmt", "valid"), [
    ("0000-01-01", None, False), ("0001-01-01", None, True), ("9999-12-31", None, True),
    ("01/01/0000", "%d/%m/%Y", False), ("01/01/0001", "%d/%m/%Y", True),
])
def test_dates_postgresql_cannot_store_are_malformed(text: str, fmt: str | None, valid: bool) -> None:
    """A value the check accepts but PostgreSQL refuses would fail the whole COPY instead of one row."""
    parsed = parse_field(Field("d", "date"), pa.chunked_array([pa.array([text])]), date_format=fmt)
    assert parsed.is_valid().to_pylist() == [valid]


def test_if_the_field_checks_ever_miss_an_impossible_timestamp_only_that_value_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last resort: a value Arrow refuses that the field checks let through nulls alone, not the block."""
    from kho.sources import contract

    monkeypatch.setattr(contract, "_possible_instant", lambda text: pc.is_valid(text))
    values = ["2024-01-27T23:25:41Z", "2001-02-30T00:00:00Z", None]
    assert parse(values) == [reference_instant(v) for v in values]
    assert parse(values)[1] is None and parse(values)[0] is not None
