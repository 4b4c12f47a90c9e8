"""Every registry entity: a valid record passes, each rule rejects with the reason the loader records, and the
catalogue (endpoint, key, cursor) is consistent."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kho.errors import ConfigError
from kho.sources import ENTITIES, REGISTRIES, Entity, check_table, entities_of, get_entity
from kho.sources.identity import cccd_prefix, complete_tax_code

Record = dict[str, str | None]

CITIZEN = cccd_prefix("74", 1990, "F") + "123456"
HUSBAND = cccd_prefix("74", 2000, "M") + "000001"
WIFE = cccd_prefix("38", 2002, "F") + "000002"
CHILD = cccd_prefix("74", 2025, "M") + "000123"
ENTERPRISE = "0100047516"
OTHER_ENTERPRISE = "0100233488"
UPDATED = "2025-07-02T08:30:00Z"

VALID: dict[str, Record] = {
    "population.citizens": {
        "cccd": CITIZEN, "full_name": "Nguyễn Thị Hương", "date_of_birth": "1990-05-17", "sex": "F",
        "ethnicity": "Kinh", "birth_province_code": "74", "hometown_province_code": "38",
        "permanent_commune_code": "25747", "temporary_commune_code": "25966", "household_id": "HK0000000001",
        "status": "alive", "date_of_death": None, "updated_at": UPDATED,
    },
    "population.households": {
        "household_id": "HK0000000001", "head_cccd": CITIZEN, "commune_code": "25942",
        "address_line": "Số 12 đường Nguyễn Văn Tiết, khu phố 3", "member_count": "4", "updated_at": UPDATED,
    },
    "population.household_members": {
        "household_id": "HK0000000001", "cccd": CITIZEN, "relation_to_head": "spouse", "joined_on": "2015-03-01",
        "left_on": None, "updated_at": UPDATED,
    },
    "population.residence_changes": {
        "change_id": "RC000000000001", "cccd": CITIZEN, "kind": "temporary", "from_commune_code": "14764",
        "to_commune_code": "25966", "effective_on": "2025-07-02", "registered_at": "2025-07-02T09:00:00Z",
        "updated_at": UPDATED,
    },
    "insurance.participants": {
        "social_insurance_code": "7412345678", "cccd": CITIZEN, "full_name": "Nguyễn Thị Hương",
        "participant_type": "employee", "registered_hospital_code": "74001", "contribution_status": "paid",
        "registered_on": "2016-05-01", "updated_at": UPDATED,
    },
    "insurance.coverage_periods": {
        "coverage_id": "CV000000000001", "social_insurance_code": "7412345678", "coverage_type": "health",
        "valid_from": "2025-01-01", "valid_to": "2025-12-31", "status": "active", "updated_at": UPDATED,
    },
    "civil_status.births": {
        "registration_id": "KS000000000001", "child_cccd": CHILD, "child_full_name": "Trần Minh Khôi",
        "child_sex": "M", "date_of_birth": "2025-06-01", "place_commune_code": "25747", "father_cccd": HUSBAND,
        "mother_cccd": WIFE, "registered_on": "2025-06-20", "updated_at": UPDATED,
    },
    "civil_status.marriages": {
        "registration_id": "KH000000000001", "husband_cccd": HUSBAND, "wife_cccd": WIFE,
        "husband_date_of_birth": "2000-01-15", "wife_date_of_birth": "2002-03-10", "registered_on": "2024-06-01",
        "place_commune_code": "25966", "divorced_on": None, "updated_at": UPDATED,
    },
    "civil_status.deaths": {
        "registration_id": "KT000000000001", "cccd": CITIZEN, "date_of_death": "2025-06-10",
        "place_commune_code": "25747", "registered_on": "2025-06-12", "updated_at": UPDATED,
    },
    "business.enterprises": {
        "enterprise_code": ENTERPRISE, "name": "Công ty TNHH Sữa Sông Bé", "legal_form": "tnhh_1tv",
        "industry_code": "1050", "commune_code": "25747", "registered_capital": "5000000000",
        "legal_rep_cccd": CITIZEN, "status": "active", "established_on": "2015-01-01", "updated_at": UPDATED,
    },
    "business.branches": {
        "branch_code": ENTERPRISE + "001", "enterprise_code": ENTERPRISE, "name": "Chi nhánh Thuận An",
        "commune_code": "25966", "status": "active", "updated_at": UPDATED,
    },
    "business.enterprise_status_changes": {
        "enterprise_code": ENTERPRISE, "status": "suspended", "effective_on": "2025-05-01",
        "reason": "Tạm ngừng kinh doanh", "updated_at": UPDATED,
    },
}

BROKEN: list[tuple[str, Record, str]] = [
    # population.citizens (the field rules are covered in test_contract.py)
    ("population.citizens", {"status": "deceased"}, "missing_required"),
    ("population.citizens", {"date_of_death": "2025-01-01"}, "inconsistent"),
    ("population.citizens", {"status": "deceased", "date_of_death": "1990-05-16"}, "inconsistent"),
    ("population.citizens", {"cccd": cccd_prefix("74", 1990, "M") + "123456"}, "inconsistent"),
    # population.households
    ("population.households", {"household_id": "HK123"}, "malformed"),
    ("population.households", {"head_cccd": "12345"}, "malformed"),
    ("population.households", {"commune_code": "00000"}, "unknown_reference"),
    ("population.households", {"address_line": " "}, "missing_required"),
    ("population.households", {"member_count": "0"}, "invalid_value"),
    ("population.households", {"member_count": "-3"}, "invalid_value"),
    ("population.households", {"member_count": "four"}, "malformed"),
    ("population.households", {"member_count": "2.5"}, "malformed"),
    ("population.households", {"member_count": "1" * 25}, "malformed"),
    # population.household_members
    ("population.household_members", {"relation_to_head": "cousin"}, "invalid_value"),
    ("population.household_members", {"joined_on": None}, "missing_required"),
    ("population.household_members", {"left_on": "2015-02-28"}, "inconsistent"),
    ("population.household_members", {"household_id": None}, "missing_required"),
    # population.residence_changes
    ("population.residence_changes", {"change_id": "RC1"}, "malformed"),
    ("population.residence_changes", {"kind": "holiday"}, "invalid_value"),
    ("population.residence_changes", {"from_commune_code": "99999"}, "unknown_reference"),
    ("population.residence_changes", {"to_commune_code": None}, "missing_required"),
    ("population.residence_changes", {"registered_at": "2025-07-02"}, "malformed"),
    # insurance.participants
    ("insurance.participants", {"social_insurance_code": "741234567"}, "malformed"),
    ("insurance.participants", {"social_insurance_code": "74123456789"}, "malformed"),
    ("insurance.participants", {"social_insurance_code": "7412345678901"}, "malformed"),
    ("insurance.participants", {"social_insurance_code": "079201000123"}, "inconsistent"),
    ("insurance.participants", {"participant_type": "tourist"}, "invalid_value"),
    ("insurance.participants", {"registered_hospital_code": "7400"}, "malformed"),
    ("insurance.participants", {"contribution_status": "unknown"}, "invalid_value"),
    ("insurance.participants", {"full_name": None}, "missing_required"),
    ("insurance.participants", {"registered_on": "2016-02-30"}, "malformed"),
    # insurance.coverage_periods
    ("insurance.coverage_periods", {"valid_to": "2024-12-31"}, "inconsistent"),
    ("insurance.coverage_periods", {"coverage_type": "life"}, "invalid_value"),
    ("insurance.coverage_periods", {"status": "paused"}, "invalid_value"),
    ("insurance.coverage_periods", {"coverage_id": "CV0001"}, "malformed"),
    ("insurance.coverage_periods", {"valid_from": "2025-02-30"}, "malformed"),
    # civil_status.births
    ("civil_status.births", {"child_cccd": cccd_prefix("74", 2025, "F") + "000123"}, "inconsistent"),
    ("civil_status.births", {"child_cccd": cccd_prefix("74", 2024, "M") + "000123"}, "inconsistent"),
    ("civil_status.births", {"registered_on": "2025-05-31"}, "inconsistent"),
    ("civil_status.births", {"mother_cccd": None}, "missing_required"),
    ("civil_status.births", {"father_cccd": "0741900"}, "malformed"),
    ("civil_status.births", {"child_sex": "U"}, "invalid_value"),
    ("civil_status.births", {"place_commune_code": "12345"}, "unknown_reference"),
    ("civil_status.births", {"registration_id": "KH000000000001"}, "malformed"),
    # civil_status.marriages
    ("civil_status.marriages", {"husband_date_of_birth": "2004-06-02"}, "inconsistent"),
    ("civil_status.marriages", {"wife_date_of_birth": "2006-06-02"}, "inconsistent"),
    ("civil_status.marriages", {"husband_date_of_birth": "2004-02-29", "registered_on": "2024-02-28"}, "inconsistent"),
    ("civil_status.marriages", {"registration_id": "KS000000000001"}, "malformed"),
    ("civil_status.marriages", {"wife_cccd": None}, "missing_required"),
    ("civil_status.marriages", {"divorced_on": "2024-05-31"}, "inconsistent"),  # before registered_on
    # civil_status.deaths
    ("civil_status.deaths", {"registered_on": "2025-06-09"}, "inconsistent"),
    ("civil_status.deaths", {"cccd": "07419012345"}, "malformed"),
    ("civil_status.deaths", {"date_of_death": None}, "missing_required"),
    ("civil_status.deaths", {"place_commune_code": "99999"}, "unknown_reference"),
    # business.enterprises
    ("business.enterprises", {"enterprise_code": "0100047517"}, "malformed"),
    ("business.enterprises", {"enterprise_code": "010004751"}, "malformed"),
    ("business.enterprises", {"enterprise_code": complete_tax_code("010000000")}, "malformed"),
    ("business.enterprises", {"registered_capital": "0"}, "invalid_value"),
    ("business.enterprises", {"registered_capital": "-5"}, "invalid_value"),
    ("business.enterprises", {"registered_capital": "năm tỷ"}, "malformed"),
    ("business.enterprises", {"legal_form": "llc"}, "invalid_value"),
    ("business.enterprises", {"industry_code": "105"}, "malformed"),
    ("business.enterprises", {"legal_rep_cccd": None}, "missing_required"),
    ("business.enterprises", {"status": "bankrupt"}, "invalid_value"),
    # business.branches
    ("business.branches", {"branch_code": ENTERPRISE + "000"}, "malformed"),
    ("business.branches", {"branch_code": OTHER_ENTERPRISE + "001"}, "inconsistent"),
    ("business.branches", {"enterprise_code": "0100047517", "branch_code": "0100047517001"}, "malformed"),
    ("business.branches", {"branch_code": ENTERPRISE + "-001"}, "malformed"),
    ("business.branches", {"commune_code": "99999"}, "unknown_reference"),
    # business.enterprise_status_changes
    ("business.enterprise_status_changes", {"enterprise_code": "0100047519"}, "malformed"),
    ("business.enterprise_status_changes", {"status": "merged"}, "invalid_value"),
    ("business.enterprise_status_changes", {"effective_on": "01/05/2025"}, "malformed"),
]

VALID_VARIANTS: list[tuple[str, Record]] = [
    ("insurance.participants", {"social_insurance_code": CITIZEN}),  # from 2025-07-01 the code is the CCCD
    ("insurance.participants", {"social_insurance_code": CITIZEN, "registered_on": "2025-07-02"}),
    # a 10-digit code issued from 2025-07-01 passes the contract: the raw gate's domain rule flags it
    ("insurance.participants", {"registered_on": "2025-07-02"}),
    ("insurance.participants", {"registered_on": None}),  # older records may lack the date
    ("population.citizens", {"status": "deceased", "date_of_death": "2025-06-10"}),
    ("population.citizens", {"status": "deceased", "date_of_death": "1990-05-17"}),
    ("population.citizens", {"temporary_commune_code": None, "household_id": None}),
    ("population.citizens", {"ethnicity": "H'Mông"}),
    ("population.citizens", {"permanent_commune_code": "17677"}),
    ("population.households", {"member_count": "1"}),
    ("population.household_members", {"left_on": "2015-03-01"}),
    ("population.residence_changes", {"from_commune_code": None}),
    ("insurance.coverage_periods", {"valid_to": None}),
    ("insurance.coverage_periods", {"valid_to": "2025-01-01"}),
    ("civil_status.births", {"father_cccd": None}),
    ("civil_status.births", {"registered_on": "2025-06-01"}),
    ("civil_status.marriages", {"husband_date_of_birth": "2004-06-01", "wife_date_of_birth": "2006-06-01"}),
    ("civil_status.marriages", {"divorced_on": "2024-06-01"}),  # a divorce noted, the day of the wedding at earliest
    ("civil_status.marriages", {"husband_date_of_birth": "2004-02-29", "registered_on": "2024-03-01"}),
    ("civil_status.deaths", {"registered_on": "2025-06-10"}),
    ("business.enterprises", {"registered_capital": "0.5"}),
    ("business.branches", {"branch_code": ENTERPRISE + "999"}),
    ("business.enterprise_status_changes", {"reason": None}),
]


def check(entity: Entity, record: Record) -> tuple[pa.Table, pa.Table]:
    schema = pa.schema([(k, pa.string()) for k in record])
    result = check_table(entity, pa.Table.from_pylist([record], schema=schema))
    return result.accepted, result.rejected


def _entity(qualified: str) -> Entity:
    registry, name = qualified.split(".")
    return get_entity(registry, name)


def test_every_entity_has_a_valid_record_in_these_tests() -> None:
    assert sorted(VALID) == sorted(e.qualified_name for e in ENTITIES)
    for entity in ENTITIES:
        assert list(VALID[entity.qualified_name]) == list(entity.field_names), entity.qualified_name


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.qualified_name)
def test_a_valid_record_is_accepted(entity: Entity) -> None:
    accepted, rejected = check(entity, VALID[entity.qualified_name])
    assert rejected.to_pylist() == []
    assert accepted.num_rows == 1
    assert accepted.schema.names == [*entity.field_names, "_extra"]


@pytest.mark.parametrize(("qualified", "changes"), VALID_VARIANTS, ids=lambda v: str(v))
def test_a_valid_variant_is_accepted(qualified: str, changes: Record) -> None:
    accepted, rejected = check(_entity(qualified), {**VALID[qualified], **changes})
    assert rejected.to_pylist() == []
    assert accepted.num_rows == 1


@pytest.mark.parametrize(("qualified", "changes", "code"), BROKEN, ids=lambda v: str(v))
def test_a_broken_rule_rejects_the_record_with_its_reason_code(qualified: str, changes: Record, code: str) -> None:
    accepted, rejected = check(_entity(qualified), {**VALID[qualified], **changes})
    assert accepted.num_rows == 0
    assert rejected.column("_reason_code").to_pylist() == [code]
    assert rejected.column("_reason").to_pylist()[0]


def test_every_row_check_is_exercised_by_a_broken_record() -> None:
    """Each RowCheck must reject at least one record above with its own message."""
    seen: set[tuple[str, str]] = set()
    for qualified, changes, _ in BROKEN:
        _, rejected = check(_entity(qualified), {**VALID[qualified], **changes})
        seen.update((qualified, reason) for reason in rejected.column("_reason").to_pylist())
    for entity in ENTITIES:
        for row_check in entity.checks:
            assert (entity.qualified_name, row_check.message) in seen, f"{entity.qualified_name}: {row_check.name}"


def test_marriage_age_is_counted_in_completed_years() -> None:
    marriages = get_entity("civil_status", "marriages")
    ok = {**VALID["civil_status.marriages"], "husband_date_of_birth": "2005-06-01", "registered_on": "2025-06-01"}
    young = {**ok, "registered_on": "2025-05-31"}
    batch = pa.Table.from_pylist([ok, young], schema=pa.schema([(k, pa.string()) for k in ok]))
    result = check_table(marriages, batch)
    assert result.accepted.column("registered_on").to_pylist()[0].isoformat() == "2025-06-01"
    assert result.rejected.column("registered_on").to_pylist() == ["2025-05-31"]
    assert "husband is under 20" in result.rejected.column("_reason").to_pylist()[0]


def test_registries_are_the_four_and_each_serves_its_entities() -> None:
    assert tuple(r.slug for r in REGISTRIES) == ("population", "insurance", "civil_status", "business")
    assert sum(len(entities_of(r.slug)) for r in REGISTRIES) == len(ENTITIES) == 12
    assert [e.name for e in entities_of("population")] == [
        "citizens", "households", "household_members", "residence_changes"]
    assert [e.name for e in entities_of("insurance")] == ["participants", "coverage_periods"]
    assert [e.name for e in entities_of("civil_status")] == ["births", "marriages", "deaths"]
    assert [e.name for e in entities_of("business")] == ["enterprises", "branches", "enterprise_status_changes"]


def test_entities_of_an_unknown_registry_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="population, insurance, civil_status, business"):
        entities_of("tax")


def test_qualified_names_and_raw_tables_are_unique() -> None:
    assert len({e.qualified_name for e in ENTITIES}) == len(ENTITIES)
    assert len({e.raw_table for e in ENTITIES}) == len(ENTITIES)
    assert len({e.endpoint for e in ENTITIES}) == len(ENTITIES)


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.qualified_name)
def test_endpoint_key_and_cursor_are_consistent(entity: Entity) -> None:
    slug = "civil-status" if entity.registry == "civil_status" else entity.registry
    assert entity.endpoint == f"/{slug}/v1/{entity.name}"
    assert entity.key and all(entity.field(k).required for k in entity.key)
    assert entity.cursor == "updated_at"
    assert entity.field(entity.cursor).type == "timestamptz" and entity.field(entity.cursor).required
    for row_check in entity.checks:
        assert set(row_check.needs) <= set(entity.field_names), row_check.name
    for f in entity.fields:
        if f.reference is not None:
            assert entity.references[f.reference], f"{entity.qualified_name}.{f.name}: empty {f.reference}"
