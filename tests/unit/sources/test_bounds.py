"""The contract's bounds on every registry: text lengths, NUL characters, unknown fields, maxima, date floors, dates
no later than the record's own updated_at, and updated_at no later than the check's clock. Each bound is tested
just inside (accepted) and just outside (quarantined as `out_of_bounds`, or `malformed` for NUL, with a message
naming the field and the bound)."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from kho.errors import ConfigError
from kho.sources import ENTITIES, Entity, Field, check_table, get_entity
from kho.sources.bounds import EXTRA_MAX_LENGTH, nul_rows, pattern_max_length
from kho.sources.contract import CheckedBatch, SchemaDrift
from kho.sources.identity import cccd_prefix
from tests.unit.sources.test_entities import UPDATED, VALID, Record

NOW = datetime(2025, 7, 2, 8, 30, tzinfo=UTC)
"""The moment the checks below run at: UPDATED, the records' updated_at."""
NUL = "contains a NUL character (U+0000)"


def check(qualified: str, changes: Record, *, now: datetime = NOW, extra: Record | None = None) -> CheckedBatch:
    registry, name = qualified.split(".")
    record = {**VALID[qualified], **changes, **(extra or {})}
    table = pa.Table.from_pylist([record], schema=pa.schema([(k, pa.string()) for k in record]))
    return check_table(get_entity(registry, name), table, now=now)


def assert_accepted(result: CheckedBatch) -> None:
    assert result.rejected.drop(["_reason_code"]).to_pylist() == []
    assert result.accepted.num_rows == 1


def assert_rejected(result: CheckedBatch, code: str, reason: str) -> None:
    assert result.accepted.num_rows == 0
    assert result.rejected.select(["_reason_code", "_reason"]).to_pylist() == [{"_reason_code": code,
                                                                                "_reason": reason}]


# --- text lengths ------------------------------------------------------------------------------------------------

MAX_LENGTHS = {
    ("population.citizens", "full_name"): 100,
    ("population.households", "address_line"): 250,
    ("insurance.participants", "full_name"): 100,
    ("civil_status.births", "child_full_name"): 100,
    ("business.enterprises", "name"): 255,
    ("business.branches", "name"): 255,
    ("business.enterprise_status_changes", "reason"): 500,
}
"""The chosen bounds, written out: a contract that loosens one fails here."""


def test_the_free_text_fields_and_their_bounds_are_these() -> None:
    declared = {(e.qualified_name, f.name): f.max_length for e in ENTITIES for f in e.fields
                if f.max_length is not None}
    assert declared == MAX_LENGTHS


@pytest.mark.parametrize(("qualified", "name"), sorted(MAX_LENGTHS), ids=lambda v: str(v))
def test_a_text_of_the_maximum_length_is_accepted_and_one_more_character_is_out_of_bounds(
        qualified: str, name: str) -> None:
    limit = MAX_LENGTHS[qualified, name]
    assert_accepted(check(qualified, {name: "Ấ" * limit}))
    assert_rejected(check(qualified, {name: "Ấ" * (limit + 1)}), "out_of_bounds",
                    f"out of bounds {name}: longer than {limit} characters")


def test_length_is_counted_in_characters_after_trim_and_nfc_as_stored() -> None:
    name = "Nguyễn Thị " + "Ấ" * 89  # 100 characters in NFC, 189 code points in NFD, 3 bytes per Ấ in UTF-8
    decomposed = unicodedata.normalize("NFD", name)
    assert len(name) == 100 and len(decomposed) > 100
    result = check("population.citizens", {"full_name": f"  {decomposed}  "})
    assert_accepted(result)
    assert result.accepted.column("full_name").to_pylist() == [name]


def test_every_text_field_of_every_registry_is_bounded() -> None:
    for entity in ENTITIES:
        for f in entity.fields:
            assert not f.unbounded, f"{entity.qualified_name}.{f.name}"


@pytest.mark.parametrize(
    ("field_", "complaint"),
    [
        (Field("note"), "text field 'note' has no bound"),
        (Field("note", pattern=r".*"), "text field 'note' has no bound"),
        (Field("note", pattern=r"\d+"), "text field 'note' has no bound"),
        (Field("note", max_length=0), "has max_length 0"),
        (Field("note", "date", max_length=10), "field 'note' has a max_length but is date"),
        (Field("note", "integer", minimum=5, maximum=4), "field 'note' has a maximum below its minimum"),
        (Field("note", max_length=9, maximum=4), "field 'note' has a maximum but is text"),
        (Field("note", "integer", days_after_update=0), "field 'note' has a days_after_update bound but is integer"),
        (Field("note", "date", days_after_update=-1), "needs days_after_update >= 0"),
    ],
    ids=lambda v: str(v),
)
def test_an_unbounded_or_wrongly_bounded_field_is_refused_naming_it(field_: Field, complaint: str) -> None:
    with pytest.raises(ConfigError, match=rf"contract test\.things is inconsistent: .*{complaint}"):
        Entity("test", "things", (Field("id", required=True, pattern=r"\d{3}"), field_,
                                  Field("updated_at", "timestamptz")), key=("id",), cursor="updated_at")


@pytest.mark.parametrize("field_", [Field("note", max_length=9), Field("note", pattern=r"[A-Z]{2}\d{1,6}"),
                                    Field("note", allowed=frozenset({"a"})), Field("note", reference="colours")],
                         ids=lambda f: str(f))
def test_a_max_length_pattern_allowed_set_or_reference_set_bounds_a_text_field(field_: Field) -> None:
    Entity("test", "things", (Field("id", required=True, max_length=3), field_, Field("updated_at", "timestamptz")),
           key=("id",), cursor="updated_at", references={"colours": frozenset({"red"})})


def test_a_bounding_pattern_bounds_the_length_its_matches_can_have() -> None:
    assert pattern_max_length(r"\d{12}") == 12
    assert pattern_max_length(r"(?:\d{10}|\d{13})") == 13
    assert pattern_max_length(r"HK\d+") is None
    assert pattern_max_length(r"\p{L}{3}") is None  # RE2 syntax Python's parser refuses: not counted as a bound


def test_an_entity_field_bounded_by_updated_at_needs_an_updated_at() -> None:
    with pytest.raises(ConfigError, match="field 'on' is bounded by updated_at"):
        Entity("test", "things", (Field("id", required=True, max_length=3), Field("on", "date", days_after_update=0),
                                  Field("changed", "timestamptz")), key=("id",), cursor="changed")


# --- NUL ---------------------------------------------------------------------------------------------------------

def _with_nul(value: str | None) -> str:
    return "\x00" if value is None else f"{value[:1]}\x00{value[1:]}"


NUL_CASES = [(e.qualified_name, f.name) for e in ENTITIES for f in e.fields]


@pytest.mark.parametrize(("qualified", "name"), NUL_CASES, ids=lambda v: str(v))
def test_a_nul_in_any_known_field_is_malformed_naming_the_field(qualified: str, name: str) -> None:
    value = VALID[qualified][name]
    assert_rejected(check(qualified, {name: _with_nul(value)}), "malformed", f"malformed {name}: {NUL}")


@pytest.mark.parametrize("qualified", ["population.citizens", "insurance.participants"])
def test_a_nul_in_an_unknown_field_kept_in_extra_is_malformed_naming_it(qualified: str) -> None:
    assert get_entity(*qualified.split(".")).drift is SchemaDrift.KEEP_EXTRA
    assert_rejected(check(qualified, {}, extra={"phone_number": "090\x001234567"}), "malformed",
                    f"malformed phone_number: {NUL}")


def test_a_nul_in_an_unknown_field_that_is_discarded_costs_no_row() -> None:
    assert get_entity("business", "enterprises").drift is SchemaDrift.DISCARD_EXTRA
    result = check("business.enterprises", {}, extra={"website": "https://x\x00.vn"})
    assert_accepted(result)
    assert result.unknown_fields == ("website",)
    assert result.accepted.column("_extra").to_pylist() == [None]


def test_the_nul_scan_looks_only_at_each_chunks_own_values() -> None:
    values = pa.array(["abc", "d\x00e", "fgh", "ijk"])
    assert nul_rows(pa.chunked_array([values.slice(2, 2)])) is None  # the NUL lies in the buffer, not in the slice
    found = nul_rows(pa.chunked_array([values.slice(0, 1), values.slice(1, 3), pa.nulls(2, pa.string())]))
    assert found is not None and found.to_pylist() == [False, True, False, False, False, False]
    assert nul_rows(pa.chunked_array([pa.nulls(3, pa.string())])) is None
    assert nul_rows(pa.chunked_array([], pa.string())) is None


def test_only_the_rows_with_a_nul_are_rejected() -> None:
    rows = [{**VALID["population.citizens"], "full_name": name} for name in ("An", "B\x00nh", "Chi")]
    result = check_table(get_entity("population", "citizens"), pa.Table.from_pylist(rows), now=NOW)
    assert result.accepted.column("full_name").to_pylist() == ["An", "Chi"]
    assert result.rejected_rows.to_pylist() == [1]


# --- unknown fields ----------------------------------------------------------------------------------------------

def test_an_unknown_field_value_of_the_bound_is_kept_and_one_more_character_is_out_of_bounds() -> None:
    kept = check("population.citizens", {}, extra={"note": "ơ" * EXTRA_MAX_LENGTH})
    assert_accepted(kept)
    assert json.loads(kept.accepted.column("_extra")[0].as_py()) == {"note": "ơ" * EXTRA_MAX_LENGTH}
    assert_rejected(check("population.citizens", {}, extra={"note": "ơ" * (EXTRA_MAX_LENGTH + 1)}), "out_of_bounds",
                    f"out of bounds note: longer than {EXTRA_MAX_LENGTH} characters")


def test_extra_json_is_built_from_nested_values_and_storable_names() -> None:
    """Values Arrow cannot cast to text (an object, a list) become JSON; a name with NUL is stored with U+FFFD."""
    citizen = VALID["population.citizens"]
    table = pa.Table.from_pylist([{**citizen, "contact": {"phone": "090"}, "tags": ["a", "b"], "bad\x00name": "x"}])
    result = check_table(get_entity("population", "citizens"), table, now=NOW)
    assert_accepted(result)
    assert result.unknown_fields == ("contact", "tags", "bad\ufffdname")
    assert json.loads(result.accepted.column("_extra")[0].as_py()) == {
        "contact": '{"phone": "090"}', "tags": '["a", "b"]', "bad\ufffdname": "x"}


# --- maxima ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("qualified", "name", "inside", "outside", "bound"),
    [
        ("population.households", "member_count", "100", "101", "100"),
        ("business.enterprises", "registered_capital", "1000000000000000", "1000000000000010", "1e+15"),
    ],
)
def test_a_number_at_its_maximum_is_accepted_and_above_it_is_out_of_bounds(
        qualified: str, name: str, inside: str, outside: str, bound: str) -> None:
    assert_accepted(check(qualified, {name: inside}))
    assert_rejected(check(qualified, {name: outside}), "out_of_bounds", f"out of bounds {name}: greater than {bound}")


# --- the earliest date -------------------------------------------------------------------------------------------

FLOOR_CASES: list[tuple[str, str, Record]] = [
    # (entity, field, other changes a record with the field on 1900-01-01 needs to be consistent)
    ("population.citizens", "date_of_birth", {"cccd": cccd_prefix("74", 1900, "F") + "123456"}),
    ("population.citizens", "date_of_death", {"cccd": cccd_prefix("74", 1900, "F") + "123456",
                                              "date_of_birth": "1900-01-01", "status": "deceased"}),
    ("population.household_members", "joined_on", {}),
    ("population.household_members", "left_on", {"joined_on": "1900-01-01"}),
    ("population.residence_changes", "effective_on", {}),
    ("insurance.participants", "registered_on", {}),
    ("insurance.coverage_periods", "valid_from", {}),
    ("insurance.coverage_periods", "valid_to", {"valid_from": "1900-01-01"}),
    ("civil_status.births", "date_of_birth", {"child_cccd": cccd_prefix("74", 1900, "M") + "000123"}),
    ("civil_status.births", "registered_on", {"child_cccd": cccd_prefix("74", 1900, "M") + "000123",
                                              "date_of_birth": "1900-01-01"}),
    ("civil_status.marriages", "husband_date_of_birth", {}),
    ("civil_status.marriages", "wife_date_of_birth", {}),
    ("civil_status.deaths", "date_of_death", {}),
    ("civil_status.deaths", "registered_on", {"date_of_death": "1900-01-01"}),
    ("business.enterprises", "established_on", {}),
    ("business.enterprise_status_changes", "effective_on", {}),
]


def test_every_date_field_has_a_floor_case_or_a_reason_to_lack_one() -> None:
    """Marriages' registered_on cannot be 1900-01-01 with parties of age born after the floor, nor their
    divorced_on, which is not before it; updated_at on the floor would make every event of the record later than
    it: all are covered by their outside cases."""
    dates = {(e.qualified_name, f.name) for e in ENTITIES for f in e.fields if f.type == "date"}
    assert dates - {(q, n) for q, n, _ in FLOOR_CASES} == {("civil_status.marriages", "registered_on"),
                                                          ("civil_status.marriages", "divorced_on")}


@pytest.mark.parametrize(("qualified", "name", "changes"), FLOOR_CASES, ids=lambda v: str(v))
def test_a_date_on_1900_01_01_is_accepted_and_the_day_before_is_out_of_bounds(
        qualified: str, name: str, changes: Record) -> None:
    assert_accepted(check(qualified, {**changes, name: "1900-01-01"}))
    assert_rejected(check(qualified, {**changes, name: "1899-12-31"}), "out_of_bounds",
                    f"out of bounds {name}: before 1900-01-01")


@pytest.mark.parametrize(("qualified", "name", "value"), [
    *[(e.qualified_name, "updated_at", "1899-12-31T23:59:59Z") for e in ENTITIES],
    ("population.residence_changes", "registered_at", "1899-12-31T23:59:59Z"),
    ("civil_status.marriages", "registered_on", "1899-12-31"),
    ("population.citizens", "date_of_birth", "0001-01-01"),
])
def test_an_instant_or_date_before_1900_is_out_of_bounds_on_every_registry(qualified: str, name: str,
                                                                           value: str) -> None:
    assert_rejected(check(qualified, {name: value}), "out_of_bounds", f"out of bounds {name}: before 1900-01-01")


def test_an_instant_on_the_floor_is_accepted() -> None:
    entity = Entity("test", "things", (Field("id", required=True, max_length=3), Field("updated_at", "timestamptz")),
                    key=("id",), cursor="updated_at")
    rows = [{"id": "a", "updated_at": "1900-01-01T00:00:00Z"}, {"id": "b", "updated_at": "1900-01-01T06:59:59+07:00"}]
    result = check_table(entity, pa.Table.from_pylist(rows), now=NOW)
    assert result.accepted.column("id").to_pylist() == ["a"]
    assert result.rejected.column("_reason").to_pylist() == ["out of bounds updated_at: before 1900-01-01"]


# --- not after updated_at ----------------------------------------------------------------------------------------

AFTER_UPDATE_CASES: list[tuple[str, str, str, str, Record]] = [
    # (entity, field, last accepted value, first refused value, other changes the accepted record needs)
    ("population.citizens", "date_of_birth", "2025-07-02", "2025-07-03",
     {"cccd": cccd_prefix("74", 2025, "F") + "123456"}),
    ("population.citizens", "date_of_death", "2025-07-02", "2025-07-03", {"status": "deceased"}),
    ("population.household_members", "joined_on", "2025-07-02", "2025-07-03", {}),
    ("population.household_members", "left_on", "2025-07-02", "2025-07-03", {}),
    ("population.residence_changes", "registered_at", "2025-07-02T16:59:59Z", "2025-07-02T17:00:00Z", {}),
    ("insurance.participants", "registered_on", "2025-07-02", "2025-07-03", {}),
    ("civil_status.births", "date_of_birth", "2025-07-02", "2025-07-03", {"registered_on": "2025-07-02"}),
    ("civil_status.births", "registered_on", "2025-07-02", "2025-07-03", {}),
    ("civil_status.marriages", "registered_on", "2025-07-02", "2025-07-03", {}),
    ("civil_status.marriages", "divorced_on", "2025-07-02", "2025-07-03", {}),
    ("civil_status.deaths", "date_of_death", "2025-07-02", "2025-07-03", {"registered_on": "2025-07-02"}),
    ("civil_status.deaths", "registered_on", "2025-07-02", "2025-07-03", {}),
    ("business.enterprises", "established_on", "2025-07-02", "2025-07-03", {}),
]
"""UPDATED is 2025-07-02T08:30:00Z, 15:30 on 2 July in Vietnam: the registry's day is 2 July until 16:59:59Z."""


@pytest.mark.parametrize(("qualified", "name", "inside", "outside", "changes"), AFTER_UPDATE_CASES,
                         ids=lambda v: str(v))
def test_an_event_on_the_day_of_updated_at_is_accepted_and_one_on_the_next_day_is_out_of_bounds(
        qualified: str, name: str, inside: str, outside: str, changes: Record) -> None:
    assert VALID[qualified]["updated_at"] == UPDATED
    assert_accepted(check(qualified, {**changes, name: inside}))
    assert_rejected(check(qualified, {**changes, name: outside}), "out_of_bounds",
                    f"out of bounds {name}: after updated_at")


@pytest.mark.parametrize("name", ["husband_date_of_birth", "wife_date_of_birth"])
def test_a_spouse_born_after_the_marriage_was_recorded_is_out_of_bounds_not_merely_under_age(name: str) -> None:
    assert_rejected(check("civil_status.marriages", {name: "2025-07-03"}), "out_of_bounds",
                    f"out of bounds {name}: after updated_at")


def test_every_date_that_must_have_happened_is_bounded_by_updated_at() -> None:
    bounded = {(e.qualified_name, f.name) for e in ENTITIES for f in e.fields if f.days_after_update == 0}
    assert bounded == {(q, n) for q, n, *_ in AFTER_UPDATE_CASES} | {
        ("civil_status.marriages", "husband_date_of_birth"), ("civil_status.marriages", "wife_date_of_birth")}


def test_the_registrys_day_is_the_day_in_vietnam() -> None:
    """An event of 2 July recorded at 23:30Z on 1 July (06:30 on 2 July in Vietnam) was recorded on its day."""
    late = {"updated_at": "2025-07-01T23:30:00Z"}
    assert_accepted(check("business.enterprises", {**late, "established_on": "2025-07-02"}))
    early = {"updated_at": "2025-07-01T16:59:59Z"}
    assert_rejected(check("business.enterprises", {**early, "established_on": "2025-07-02"}), "out_of_bounds",
                    "out of bounds established_on: after updated_at")


AHEAD_CASES: list[tuple[str, str, int, Record]] = [
    # (entity, field, days it may lie after updated_at, other changes the accepted record needs)
    ("population.residence_changes", "effective_on", 366, {}),
    ("insurance.coverage_periods", "valid_from", 366, {"valid_to": None}),
    ("insurance.coverage_periods", "valid_to", 3653, {}),
    ("business.enterprise_status_changes", "effective_on", 366, {}),
]


@pytest.mark.parametrize(("qualified", "name", "days", "changes"), AHEAD_CASES, ids=lambda v: str(v))
def test_a_date_that_may_lie_ahead_is_accepted_up_to_its_horizon_and_out_of_bounds_beyond(
        qualified: str, name: str, days: int, changes: Record) -> None:
    day = NOW.date()
    inside, outside = (day + timedelta(days=days)).isoformat(), (day + timedelta(days=days + 1)).isoformat()
    assert_accepted(check(qualified, {**changes, name: inside}))
    assert_rejected(check(qualified, {**changes, name: outside}), "out_of_bounds",
                    f"out of bounds {name}: more than {days} days after updated_at")


def test_every_date_that_may_lie_ahead_has_a_horizon() -> None:
    ahead = {(e.qualified_name, f.name): f.days_after_update for e in ENTITIES for f in e.fields
             if f.days_after_update}
    assert ahead == {(q, n): days for q, n, days, _ in AHEAD_CASES}


def test_a_bound_on_updated_at_judges_each_row_against_its_own_updated_at() -> None:
    """A batch whose events and updates interleave is judged row by row, not by its earliest update."""
    citizens = get_entity("population", "citizens")
    old = {**VALID["population.citizens"], "updated_at": "2020-01-01T00:00:00Z"}
    born = {**VALID["population.citizens"], "cccd": cccd_prefix("74", 2025, "F") + "123456",
            "date_of_birth": "2025-07-01"}
    early = {**born, "cccd": cccd_prefix("74", 2025, "F") + "654321", "updated_at": "2025-06-30T00:00:00Z"}
    result = check_table(citizens, pa.Table.from_pylist([old, born, early]), now=NOW)
    assert result.accepted.column("date_of_birth").to_pylist() == [date(1990, 5, 17), date(2025, 7, 1)]
    assert result.rejected_rows.to_pylist() == [2]
    assert result.rejected.column("_reason").to_pylist() == ["out of bounds date_of_birth: after updated_at"]


# --- updated_at and the clock ------------------------------------------------------------------------------------

@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.qualified_name)
def test_updated_at_one_day_after_the_checks_clock_is_accepted_and_a_second_later_is_out_of_bounds(
        entity: Entity) -> None:
    now = datetime(2025, 7, 1, 8, 30, tzinfo=UTC)  # a day before UPDATED
    assert_accepted(check(entity.qualified_name, {}, now=now))
    assert_rejected(check(entity.qualified_name, {}, now=now - timedelta(seconds=1)), "out_of_bounds",
                    "out of bounds updated_at: more than 1 day after the check's clock")


def test_the_clock_defaults_to_now_and_must_be_aware() -> None:
    citizens = get_entity("population", "citizens")
    future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    table = pa.Table.from_pylist([{**VALID["population.citizens"], "updated_at": future}])
    assert check_table(citizens, table).rejected.column("_reason_code").to_pylist() == ["out_of_bounds"]
    with pytest.raises(ValueError, match="no time zone"):
        check_table(citizens, table, now=datetime(2025, 7, 2))
