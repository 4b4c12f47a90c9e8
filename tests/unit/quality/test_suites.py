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
    GX_SEVERITY,
    RAW_META_COLUMNS,
    dump_suite,
    gx_suite,
    load_suite,
    raw_suite,
    suite_path,
)
from kho.sources import ENTITIES
from kho.sources.population import CITIZENS

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SUITE_FILES = sorted(EXPECTATIONS_DIR.glob("*.json"))


def _checks(suite: dict, type_: str) -> dict[str, dict]:
    return {e["kwargs"].get("column"): e for e in suite["expectations"] if e["type"] == type_}


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.qualified_name)
def test_every_entity_has_a_committed_raw_suite(entity) -> None:
    assert suite_path(EXPECTATIONS_DIR, raw_suite(entity)["name"]) in SUITE_FILES


def test_raw_suite_meta_columns_are_the_loaders() -> None:
    assert tuple(name for name, _ in META_COLUMNS) == RAW_META_COLUMNS


def test_raw_suite_expects_exactly_the_contract_fields_and_loader_columns() -> None:
    (columns,) = [e for e in raw_suite(CITIZENS)["expectations"] if e["type"] == "expect_table_columns_to_match_set"]
    assert columns["kwargs"] == {"column_set": [*CITIZENS.field_names, *RAW_META_COLUMNS], "exact_match": True}


def test_raw_suite_requires_every_required_field_as_blocking() -> None:
    not_null = _checks(raw_suite(CITIZENS), "expect_column_values_to_not_be_null")
    assert set(CITIZENS.required_fields) <= set(not_null)
    assert {not_null[name]["meta"]["severity"] for name in CITIZENS.required_fields} == {"blocking"}


def test_raw_suite_turns_patterns_into_anchored_regexes() -> None:
    regex = _checks(raw_suite(CITIZENS), "expect_column_values_to_match_regex")
    assert regex["cccd"]["kwargs"]["regex"] == r"^(?:\d{12})$"


def test_raw_suite_blocks_on_allowed_values_but_only_warns_on_reference_sets() -> None:
    in_set = _checks(raw_suite(CITIZENS), "expect_column_values_to_be_in_set")
    assert in_set["sex"]["kwargs"]["value_set"] == ["F", "M"]
    assert in_set["sex"]["meta"]["severity"] == "blocking"
    communes = in_set["permanent_commune_code"]
    assert communes["meta"] == {"severity": "warning", "reference": "commune_codes"}
    assert communes["kwargs"]["value_set"] == sorted(CITIZENS.references["commune_codes"])


def test_raw_suite_checks_the_natural_key_is_unique() -> None:
    unique = _checks(raw_suite(CITIZENS), "expect_column_values_to_be_unique")
    assert set(unique) == set(CITIZENS.key)


def test_kho_generate_writes_raw_suites_that_load_suite_reads_back(tmp_path: Path) -> None:
    generate.write(tmp_path)
    path = tmp_path / "expectations" / "raw.population__citizens.json"
    assert path.read_text(encoding="utf-8") == dump_suite(raw_suite(CITIZENS))
    assert load_suite(path) == raw_suite(CITIZENS)


@pytest.mark.parametrize("path", SUITE_FILES, ids=lambda p: p.name)
def test_suite_file_is_named_after_its_suite(path: Path) -> None:
    assert path.name == f"{load_suite(path)['name']}.json"


def test_load_suite_rejects_an_unknown_severity(tmp_path: Path) -> None:
    path = tmp_path / "raw.x.json"
    path.write_text(json.dumps({
        "name": "raw.x",
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"},
                          "meta": {"severity": "fatal"}}],
    }))
    with pytest.raises(ConfigError, match="severity 'fatal'"):
        load_suite(path)


def test_load_suite_names_the_file_when_it_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"raw\.nothing\.json"):
        load_suite(tmp_path / "raw.nothing.json")


def test_every_committed_suite_loads_into_a_gx_expectation_suite() -> None:
    """Imports GX (seconds): the one unit test that does, covering every suite file at once."""
    assert SUITE_FILES, "no suites under expectations/"
    for path in SUITE_FILES:
        suite = load_suite(path)
        built = gx_suite(suite)
        assert built.name == suite["name"]
        assert len(built.expectations) == len(suite["expectations"])
        severities = [str(e.severity.value) for e in built.expectations]
        assert severities == [GX_SEVERITY[e["meta"]["severity"]] for e in suite["expectations"]]


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
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        expectation,
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
    assert capital["meta"] == {"severity": "blocking"}


def test_raw_suite_bounds_text_lengths_and_the_earliest_dates() -> None:
    lengths = _checks(raw_suite(CITIZENS), "expect_column_value_lengths_to_be_between")
    assert {name: e["kwargs"] for name, e in lengths.items()} == {
        "full_name": {"column": "full_name", "max_value": 100}}
    between = _checks(raw_suite(CITIZENS), "expect_column_values_to_be_between")
    assert {name: e["kwargs"]["min_value"] for name, e in between.items()} == {
        "date_of_birth": "1900-01-01", "date_of_death": "1900-01-01", "updated_at": "1900-01-01T00:00:00+00:00"}
    assert {e["meta"]["severity"] for e in [*lengths.values(), *between.values()]} == {"blocking"}


def test_there_is_one_committed_raw_suite_per_entity() -> None:
    raw = {p.name for p in SUITE_FILES if p.name.startswith("raw.")}
    assert raw == {f"raw.{e.raw_table}.json" for e in ENTITIES}
