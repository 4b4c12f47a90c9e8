"""The population contract check: each rule rejects what it should, with the reason the loader records."""

from __future__ import annotations

import unicodedata

import pyarrow as pa
import pytest

from kho.sources import check_table, get_entity
from kho.sources.contract import SchemaDrift
from kho.sources.identity import cccd_prefix
from kho.sources.population import CITIZENS

GOOD = {
    "cccd": cccd_prefix("74", 1990, "F") + "123456",
    "full_name": "Nguyễn Thị Hương",
    "date_of_birth": "1990-05-17",
    "sex": "F",
    "birth_province_code": "74",
    "permanent_commune_code": "25747",
    "status": "alive",
    "updated_at": "2025-03-01T08:30:00Z",
}


def check(**changes: str | None) -> tuple[pa.Table, pa.Table]:
    record = {**GOOD, **changes}
    result = check_table(CITIZENS, pa.Table.from_pylist([record], schema=pa.schema(
        [(k, pa.string()) for k in record])))
    return result.accepted, result.rejected


def test_a_valid_citizen_is_accepted_with_typed_values() -> None:
    accepted, rejected = check()
    assert rejected.num_rows == 0
    row = accepted.to_pylist()[0]
    assert str(row["date_of_birth"]) == "1990-05-17"
    assert row["updated_at"].isoformat() == "2025-03-01T08:30:00+00:00"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"cccd": "07419012345"}, "malformed"),
        ({"cccd": "07419012345X"}, "malformed"),
        ({"cccd": None}, "missing_required"),
        ({"full_name": "  "}, "missing_required"),
        ({"date_of_birth": "2001-02-30"}, "malformed"),
        ({"sex": "X"}, "invalid_value"),
        ({"permanent_commune_code": "99999"}, "unknown_reference"),
        ({"birth_province_code": "03"}, "unknown_reference"),
        ({"cccd": cccd_prefix("74", 1990, "M") + "123456"}, "inconsistent"),
        ({"cccd": cccd_prefix("79", 1990, "F") + "123456"}, "inconsistent"),
        ({"cccd": cccd_prefix("74", 1991, "F") + "123456"}, "inconsistent"),
        ({"updated_at": "yesterday"}, "malformed"),
        ({"updated_at": "2025-02-29T10:00:00Z"}, "malformed"),
    ],
)
def test_a_broken_rule_rejects_the_row_with_its_reason_code(changes: dict[str, str | None], code: str) -> None:
    accepted, rejected = check(**changes)
    assert accepted.num_rows == 0
    assert rejected.column("_reason_code").to_pylist() == [code]
    assert rejected.column("_reason").to_pylist()[0]


def test_names_are_normalised_to_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn Thị Hương")
    assert len(nfd) == 21
    accepted, _ = check(full_name=nfd)
    assert accepted.column("full_name").to_pylist() == ["Nguyễn Thị Hương"]


def test_cccd_century_digit_follows_the_decree() -> None:
    assert cccd_prefix("1", 1985, "M") == "001085"
    assert cccd_prefix("74", 2003, "F") == "074303"
    assert cccd_prefix("79", 2101, "M") == "079401"


def test_unknown_fields_are_kept_as_json_under_keep_extra() -> None:
    assert CITIZENS.drift is SchemaDrift.KEEP_EXTRA
    record = {**GOOD, "phone": "0901234567"}
    result = check_table(CITIZENS, pa.Table.from_pylist([record]))
    assert result.unknown_fields == ("phone",)
    assert result.accepted.column("_extra").to_pylist() == ['{"phone": "0901234567"}']


def test_unknown_entity_lookup_names_the_known_ones() -> None:
    with pytest.raises(Exception, match=r"population\.citizens"):
        get_entity("population", "households")
