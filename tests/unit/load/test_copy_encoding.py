"""What the loader sends to COPY: CSV that PostgreSQL reads back exactly as the checked Arrow values."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from kho.load.batch import _copy_ready, _csv


def encode(values: list[str | None]) -> bytes:
    return bytes(_csv(pa.record_batch({"s": pa.array(values, pa.string()), "n": pa.array(range(len(values)))})))


def test_plain_values_go_unquoted() -> None:
    assert encode(["Trần Văn Bình", None]) == "Trần Văn Bình,0\n,1\n".encode()


@pytest.mark.parametrize("value", ["Lê, Thị", 'Nguyễn "Tí"', "hai\ndòng"])
def test_a_value_that_needs_quotes_quotes_the_batch(value: str) -> None:
    assert encode(["x", value]).startswith(b'"x",')


def test_an_empty_string_stays_distinct_from_null() -> None:
    """Unquoted CSV would read an empty string as NULL; such a batch is sent quoted."""
    assert encode(["", None]) == b'"",0\n,1\n'


def test_utc_timestamps_are_sent_as_text_with_their_offset() -> None:
    stamps = pa.array([dt.datetime(2025, 7, 1, 2, 3, 4, 500000, tzinfo=dt.UTC), None],
                      pa.timestamp("us", tz="UTC"))
    ready = _copy_ready(pa.table({"t": stamps}))
    assert ready.column("t").to_pylist() == ["2025-07-01 02:03:04.500000+00", None]


def test_a_timestamp_in_another_zone_is_refused() -> None:
    stamps = pa.array([0], pa.timestamp("us", tz="Asia/Ho_Chi_Minh"))
    with pytest.raises(ValueError, match="Asia/Ho_Chi_Minh"):
        _copy_ready(pa.table({"t": stamps}))
