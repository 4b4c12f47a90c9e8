"""The raw suites follow the contracts (`kho generate --check` keeps the committed ones current), and every
committed suite is one GX 1.x accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kho import generate
from kho.config import PROJECT_ROOT
from kho.errors import ConfigError
from kho.load.ddl import META_COLUMNS
from kho.quality.suites import (
    GATE_COLUMN,
    NOT_RECHECKED,
    PARAMETERS,
    RAW_META_COLUMNS,
    dump_suite,
    gx_suite,
    load_suite,
    parameter_values,
    raw_suite,
    severity_of,
    suite_path,
)
from kho.sources import ENTITIES, reference
from kho.sources.business import BRANCHES, ENTERPRISES
from kho.sources.civil_status import BIRTHS
from kho.sources.insurance import PARTICIPANTS
from kho.sources.population import CITIZENS, HOUSEHOLD_MEMBERS

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SUITE_FILES = sorted((EXPECTATIONS_DIR / "suites").glob("*/*.json"))


def _checks(suite: dict, type_: str) -> dict[str, dict]:
    return {e["kwargs"].get("column"): e for e in suite["expectations"] if e["type"] == type_}


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.qualified_name)
def test_every_entity_has_a_committed_raw_suite(entity) -> None:
    assert suite_path(EXPECTATIONS_DIR, raw_suite(entity)["name"]) in SUITE_FILES


def test_raw_suite_meta_columns_are_the_loaders() -> None:
    assert tuple(name for name, _ in META_COLUMNS) == RAW_META_COLUMNS


def test_raw_suite_expects_exactly_the_contract_fields_loader_columns_and_gate_column() -> None:
    (columns,) = [e for e in raw_suite(CITIZENS)["expectations"] if e["type"] == "expect_table_columns_to_match_set"]
    assert columns["kwargs"] == {"column_set": [*CITIZENS.field_names, *RAW_META_COLUMNS, GATE_COLUMN],
                                 "exact_match": True}


def test_raw_suite_leaves_what_the_database_enforces_to_the_database() -> None:
    """Required fields are NOT NULL and the key is the PRIMARY KEY: a GX check of either can never fail."""
    types = {e["type"] for e in raw_suite(CITIZENS)["expectations"]}
    assert not types & {"expect_column_values_to_not_be_null", "expect_column_values_to_be_unique",
                        "expect_compound_columns_to_be_unique"}


def test_raw_suite_turns_patterns_into_anchored_regexes() -> None:
    regex = _checks(raw_suite(CITIZENS), "expect_column_values_to_match_regex")
    assert regex["cccd"]["kwargs"]["regex"] == r"^(?:\d{12})$"


def test_raw_suite_blocks_on_allowed_values_and_warns_on_reference_sets_given_as_parameters() -> None:
    in_set = _checks(raw_suite(CITIZENS), "expect_column_values_to_be_in_set")
    assert in_set["sex"]["kwargs"]["value_set"] == ["F", "M"]
    assert in_set["sex"]["severity"] == "critical"
    assert in_set["ethnicity"]["kwargs"]["value_set"] == {"$PARAMETER": "ethnicities"}
    assert in_set["birth_province_code"]["severity"] == "warning"


def test_raw_suite_checks_commune_codes_against_the_units_in_force_on_the_record_s_date() -> None:
    communes = _checks(raw_suite(CITIZENS), "expect_column_values_to_be_commune_code_valid_on_date")
    assert set(communes) == {"permanent_commune_code", "temporary_commune_code"}
    check = communes["permanent_commune_code"]
    assert check["severity"] == "warning" and check["meta"] == {"rule": "commune_code_valid_for_date"}
    assert check["kwargs"] == {"column": "permanent_commune_code", "date_column": "updated_at",
                               "codes_before": {"$PARAMETER": "commune_codes_pre_2025"},
                               "codes_from": {"$PARAMETER": "commune_codes_2025"}, "reform_date": "2025-07-01"}
    assert "expect_column_values_to_be_in_set" not in {
        e["type"] for e in raw_suite(CITIZENS)["expectations"] if e["kwargs"].get("column") == "permanent_commune_code"}


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.qualified_name)
def test_every_contract_row_check_is_rechecked_by_a_domain_expectation_or_says_why_not(entity) -> None:
    rules = {(e["meta"] or {}).get("rule") for e in raw_suite(entity)["expectations"]}
    for check in entity.checks:
        covered = check.name in rules or check.name in NOT_RECHECKED or (
            check.name == "branch_suffix_not_000" and "branch_code_extends_parent" in rules)
        assert covered, check.name


def test_raw_suite_rechecks_the_cccd_structure_and_date_order_as_blocking() -> None:
    (cccd,) = _checks(raw_suite(CITIZENS), "expect_column_values_to_be_valid_cccd").values()
    assert cccd["kwargs"] == {"column": "cccd", "birth_province_column": "birth_province_code", "sex_column": "sex",
                              "birth_date_column": "date_of_birth"}
    assert cccd["severity"] == "critical"
    (order,) = _checks(raw_suite(HOUSEHOLD_MEMBERS), "expect_column_values_to_not_be_before_column").values()
    assert order["kwargs"] == {"column": "left_on", "other_column": "joined_on"}
    (child,) = _checks(raw_suite(BIRTHS), "expect_column_values_to_be_valid_cccd").values()
    assert "birth_province_column" not in child["kwargs"]


def test_raw_suite_rechecks_tax_codes_and_branch_codes() -> None:
    (code,) = _checks(raw_suite(ENTERPRISES), "expect_column_values_to_be_valid_tax_code").values()
    assert code["kwargs"] == {"column": "enterprise_code"}
    branch = _checks(raw_suite(BRANCHES), "expect_column_values_to_be_valid_tax_code")
    assert branch["branch_code"]["kwargs"] == {"column": "branch_code", "branch": True,
                                               "parent_column": "enterprise_code"}


def test_raw_suite_checks_social_insurance_codes_and_warns_on_new_participants_without_their_cccd() -> None:
    checks = [e for e in raw_suite(PARTICIPANTS)["expectations"]
              if e["type"] == "expect_column_values_to_be_valid_social_insurance_code"]
    assert checks[0]["severity"] == "critical" and "registered_on_column" not in checks[0]["kwargs"]
    if "registered_on" in PARTICIPANTS.field_names:
        assert checks[1]["severity"] == "warning"
        assert checks[1]["meta"]["rule"] == "social_insurance_code_is_cccd_for_new_participants"
        assert checks[1]["kwargs"]["registered_on_column"] == "registered_on"


def test_raw_suite_checks_text_the_loader_normalises_is_nfc() -> None:
    nfc = _checks(raw_suite(CITIZENS), "expect_column_values_to_be_nfc")
    assert set(nfc) == {f.name for f in CITIZENS.fields if f.normalise_nfc}


def test_parameters_are_the_reference_sets_sorted() -> None:
    values = parameter_values()
    assert set(values) == set(PARAMETERS)
    assert values["commune_codes_pre_2025"] == sorted(reference.commune_codes())
    assert values["commune_codes_2025"] == sorted(reference.commune_codes_2025())
    assert len(values["commune_codes_pre_2025"]) > len(values["commune_codes_2025"]) > 3000


def test_kho_generate_writes_raw_suites_that_load_suite_reads_back(tmp_path: Path) -> None:
    generate.write(tmp_path)
    path = tmp_path / "expectations" / "suites" / "raw" / "population__citizens.json"
    assert path.read_text(encoding="utf-8") == dump_suite(raw_suite(CITIZENS))
    assert load_suite(path) == raw_suite(CITIZENS)


@pytest.mark.parametrize("path", SUITE_FILES, ids=lambda p: f"{p.parent.name}.{p.stem}")
def test_suite_file_is_where_gx_s_store_looks_for_its_suite(path: Path) -> None:
    assert suite_path(EXPECTATIONS_DIR, load_suite(path)["name"]) == path


def test_load_suite_rejects_an_unknown_severity(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({
        "name": "raw.x",
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"},
                          "severity": "fatal"}],
    }))
    with pytest.raises(ConfigError, match="severity 'fatal'"):
        load_suite(path)


def test_load_suite_wants_every_expectation_to_say_its_severity(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"name": "raw.x", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}]}))
    with pytest.raises(ConfigError, match=r"expectation #0 .*no severity"):
        load_suite(path)


def test_load_suite_rejects_a_parameter_the_runner_does_not_pass(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"name": "raw.x", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "severity": "warning",
         "kwargs": {"column": "a", "value_set": {"$PARAMETER": "planets"}}}]}))
    with pytest.raises(ConfigError, match="'planets'"):
        load_suite(path)


def test_load_suite_names_the_file_when_it_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"raw\.nothing\.json"):
        load_suite(tmp_path / "raw.nothing.json")


def test_every_committed_suite_loads_into_a_gx_expectation_suite() -> None:
    """Imports GX (seconds): the one unit test that does, covering every suite file at once."""
    assert SUITE_FILES, "no suites under expectations/suites"
    for path in SUITE_FILES:
        suite = load_suite(path)
        built = gx_suite(suite)
        assert built.name == suite["name"]
        assert len(built.expectations) == len(suite["expectations"])
        assert [str(e.severity.value) for e in built.expectations] == [e["severity"] for e in suite["expectations"]]
        assert {severity_of(e) for e in suite["expectations"]} <= {"blocking", "warning"}


@pytest.mark.parametrize(
    ("expectation", "complaint"),
    [
        ({"type": "expect_column_values_to_be_kind_to_animals", "kwargs": {"column": "a"}}, "not found"),
        ({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "a", "value_set": 3}}, "value_set"),
    ],
    ids=["unknown type", "bad kwargs"],
)
def test_gx_suite_refuses_what_gx_would_drop_or_reject_obscurely(expectation: dict, complaint: str) -> None:
    suite = {"name": "raw.x", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}, "severity": "critical"},
        {**expectation, "severity": "critical"},
    ]}
    with pytest.raises(ConfigError, match=rf"raw\.x: expectation #1 \({expectation['type']}\).*{complaint}"):
        gx_suite(suite)


def test_raw_suite_turns_minimums_and_maximums_into_between_checks() -> None:
    from kho.sources.business import ENTERPRISES
    from kho.sources.population import HOUSEHOLDS

    members = _checks(raw_suite(HOUSEHOLDS), "expect_column_values_to_be_between")["member_count"]
    assert members["kwargs"] == {"column": "member_count", "min_value": 1, "max_value": 100}
    capital = _checks(raw_suite(ENTERPRISES), "expect_column_values_to_be_between")["registered_capital"]
    assert capital["kwargs"] == {"column": "registered_capital", "min_value": 0, "strict_min": True,
                                 "max_value": 10**15}
    assert capital["severity"] == "critical"


def test_raw_suite_bounds_text_lengths_and_the_earliest_dates() -> None:
    lengths = _checks(raw_suite(CITIZENS), "expect_column_value_lengths_to_be_between")
    assert {name: e["kwargs"] for name, e in lengths.items()} == {
        "full_name": {"column": "full_name", "max_value": 100}}
    between = _checks(raw_suite(CITIZENS), "expect_column_values_to_be_between")
    assert {name: e["kwargs"]["min_value"] for name, e in between.items()} == {
        "date_of_birth": "1900-01-01", "date_of_death": "1900-01-01", "updated_at": "1900-01-01T00:00:00+00:00"}
    assert {e["severity"] for e in [*lengths.values(), *between.values()]} == {"critical"}


def test_there_is_one_committed_raw_suite_per_entity() -> None:
    raw = {p.name for p in SUITE_FILES if p.parent.name == "raw"}
    assert raw == {f"{e.raw_table}.json" for e in ENTITIES}
