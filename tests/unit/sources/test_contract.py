"""The population contract check: each rule rejects what it should, with the reason the loader records."""

from __future__ import annotations

import unicodedata

import pyarrow as pa
import pytest

from kho.errors import ConfigError
from kho.sources import check_table, get_entity, parse_field
from kho.sources.contract import EXPORT_DATE_FORMAT, Dialect, Entity, Field, SchemaDrift
from kho.sources.identity import cccd_prefix
from kho.sources.population import CITIZENS

GOOD = {
    "cccd": cccd_prefix("74", 1990, "F") + "123456",
    "full_name": "Nguyễn Thị Hương",
    "date_of_birth": "1990-05-17",
    "sex": "F",
    "ethnicity": "Kinh",
    "birth_province_code": "74",
    "hometown_province_code": "38",
    "permanent_commune_code": "25747",
    "temporary_commune_code": None,
    "household_id": "HK0000000001",
    "status": "alive",
    "date_of_death": None,
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
        ({"ethnicity": "Việt kiều"}, "unknown_reference"),
        ({"ethnicity": None}, "missing_required"),
        ({"hometown_province_code": "99"}, "unknown_reference"),
        ({"temporary_commune_code": "99999"}, "unknown_reference"),
        ({"household_id": "HK123"}, "malformed"),
        ({"status": "missing"}, "invalid_value"),
        ({"status": "deceased"}, "missing_required"),
        ({"date_of_death": "2024-01-01"}, "inconsistent"),
        ({"status": "deceased", "date_of_death": "1989-12-31"}, "inconsistent"),
        ({"status": "deceased", "date_of_death": "31/12/2024"}, "malformed"),
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


def test_an_unknown_field_named_like_kho_internals_is_reported_and_kept_not_dropped() -> None:
    """A registry field called `_note` (or `_batch_id`) is still the registry's data: reported and kept in _extra,
    never silently dropped because kho's own columns start with `_` too."""
    record = {**GOOD, "_note": "ghi chú", "_batch_id": "999"}
    result = check_table(CITIZENS, pa.Table.from_pylist([record]))
    assert result.unknown_fields == ("_note", "_batch_id")
    assert result.accepted.column("_extra").to_pylist() == ['{"_note": "ghi chú", "_batch_id": "999"}']


def test_unknown_entity_lookup_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"population\.citizens.*business\.branches"):
        get_entity("population", "pets")


def test_export_files_are_checked_with_dd_mm_yyyy_dates() -> None:
    record = {**GOOD, "date_of_birth": "17/05/1990"}
    table = pa.Table.from_pylist([record], schema=pa.schema([(k, pa.string()) for k in record]))
    from_export = check_table(CITIZENS, table, dialect=Dialect.EXPORT)
    assert from_export.rejected.num_rows == 0
    assert str(from_export.accepted.column("date_of_birth")[0]) == "1990-05-17"
    assert from_export.accepted.column("updated_at")[0].as_py().isoformat() == "2025-03-01T08:30:00+00:00"
    from_api = check_table(CITIZENS, table)
    assert from_api.rejected.column("_reason_code").to_pylist() == ["malformed"]
    assert CITIZENS.export_date_format == EXPORT_DATE_FORMAT == "%d/%m/%Y"


@pytest.mark.parametrize("text", ["1990-05-17", "31/02/1990", "5/7/1990", "17/13/1990"])
def test_export_dates_that_are_not_real_dd_mm_yyyy_days_are_malformed(text: str) -> None:
    record = {**GOOD, "date_of_birth": text}
    table = pa.Table.from_pylist([record], schema=pa.schema([(k, pa.string()) for k in record]))
    result = check_table(CITIZENS, table, dialect=Dialect.EXPORT)
    assert result.rejected.column("_reason_code").to_pylist() == ["malformed"]


def test_parse_field_takes_an_explicit_date_format() -> None:
    col = pa.chunked_array([["01/07/2025", "2025-07-01", None]])
    parsed = parse_field(CITIZENS.field("date_of_birth"), col, date_format=EXPORT_DATE_FORMAT)
    assert [str(v) if v is not None else None for v in parsed.to_pylist()] == ["2025-07-01", None, None]


ID = Field("id", required=True, max_length=10)


def _entity(**changes: object) -> Entity:
    base: dict[str, object] = {
        "registry": "test", "name": "things", "key": ("id",), "cursor": "updated_at",
        "fields": (ID, Field("n", "integer", minimum=1), Field("updated_at", "timestamptz")),
    }
    return Entity(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"key": ("nope",)}, "key field 'nope' is not a field"),
        ({"key": ("n",)}, "key field 'n' is not required"),
        ({"cursor": "changed"}, "cursor 'changed' is not a field"),
        ({"fields": (Field("id", required=True), Field("id"), Field("updated_at"))}, "duplicate field 'id'"),
        ({"fields": (Field("id", required=True, reference="colours"), Field("updated_at"))}, "reference set"),
        ({"fields": (Field("id", required=True, minimum=0), Field("updated_at"))}, "has a minimum but is text"),
        ({"key": ()}, "no key"),
    ],
)
def test_an_inconsistent_contract_fails_at_definition(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigError, match=rf"contract test\.things is inconsistent: .*{complaint}"):
        _entity(**changes)


@pytest.mark.parametrize(("value", "ok"), [("1", True), ("0", False), ("+7", True), ("-1", False), ("", True)])
def test_a_minimum_rejects_smaller_numbers_as_invalid_values(value: str, ok: bool) -> None:
    entity = _entity()
    record = {"id": "a", "n": value, "updated_at": "2025-01-01T00:00:00Z"}
    result = check_table(entity, pa.Table.from_pylist([record]))
    assert result.accepted.num_rows == int(ok)
    assert result.rejected.column("_reason_code").to_pylist() == ([] if ok else ["invalid_value"])


def test_an_exclusive_minimum_rejects_the_bound_itself() -> None:
    entity = _entity(fields=(ID, Field("x", "numeric", minimum=0, minimum_exclusive=True),
                             Field("updated_at", "timestamptz")))
    rows = [{"id": str(i), "x": x, "updated_at": None} for i, x in enumerate(["0", "0.01", "-0.5"])]
    result = check_table(entity, pa.Table.from_pylist(rows))
    assert result.accepted.column("x").to_pylist() == [0.01]
    assert set(result.rejected.column("_reason").to_pylist()) == {"invalid x: must be > 0"}


@pytest.mark.parametrize(
    ("field_", "text", "value"),
    [
        (Field("n", "integer"), "+7", 7),
        (Field("n", "integer"), "9" * 18, int("9" * 18)),
        (Field("n", "integer"), "9" * 19, None),
        (Field("x", "numeric"), "+0.5", 0.5),
        (Field("x", "numeric"), "1" + "0" * 400, None),
        (Field("x", "numeric"), "1e5", None),
    ],
)
def test_numbers_parse_or_become_null_without_raising(field_: Field, text: str, value: object) -> None:
    assert parse_field(field_, pa.chunked_array([[text]])).to_pylist() == [value]
