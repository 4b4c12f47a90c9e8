"""The access file is validated whole before anything reaches the database: hostile names are refused, with one
line naming the agency and field; free text that is allowed (an agency's name) only ever travels as a literal."""

from __future__ import annotations

import pytest

from kho.config import PROJECT_ROOT
from kho.sources.reference import province_codes_2025
from kho.warehouse.access import AccessError, load, parse
from kho.warehouse.access.roles import connection_uri, desired_settings

PROVINCES = province_codes_2025()

GOOD = """
agencies:
  - slug: health
    name: Sở Y tế
    datasets: [mart_health]
    provinces: ["79"]
    pii: none
"""


def declare(**fields: str) -> str:
    lines = {"slug": "health", "name": "Sở Y tế", "datasets": "[mart_health]", "provinces": '["79"]',
             "pii": "none"} | fields
    return "agencies:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in lines.items()) + "\n"


def test_the_shipped_access_file_is_valid_and_declares_the_four_agencies() -> None:
    declared = load(PROJECT_ROOT / "access" / "agencies.yml", known_provinces=PROVINCES)
    assert {a.slug: (a.pii, a.all_provinces) for a in declared.agencies} == {
        "health": ("none", False), "tax": ("full", False), "statistics": ("none", True), "police": ("full", False)}


def test_a_good_declaration_parses_with_defaults() -> None:
    agency = parse(GOOD, source="t", known_provinces=PROVINCES).agencies[0]
    assert (agency.role, agency.connection_limit, agency.statement_timeout_ms) == ("agency_health", 5, 300_000)
    assert agency.reads_table("mart_health", "insurance_coverage_by_commune")
    assert not agency.reads_table("mart_population", "golden_citizens")


@pytest.mark.parametrize("field,value", [
    ("slug", '"health; DROP ROLE kho"'),
    ("slug", '"Health"'),
    ("slug", "\"he'alth\""),
    ("slug", '"h$$x$$"'),
    ("slug", '"agency-with-dash"'),
    ("slug", '""'),
    ("slug", '"' + "a" * 41 + '"'),
    ("datasets", '["mart_health; DROP TABLE raw.x"]'),
    ("datasets", '["raw.population__citizens"]'),
    ("datasets", '["mart_health.\\"x\\""]'),
    ("datasets", '["mart_population.golden_citizens$$"]'),
    ("datasets", "[]"),
    ("provinces", '["79\'; --"]'),
    ("provinces", '["7"]'),
    ("provinces", '["00"]'),
    ("provinces", "[]"),
    ("provinces", "some"),
    ("pii", "partial"),
    ("name", '"two\\nlines"'),
    ("statement_timeout", '"5min; SET x"'),
    ("statement_timeout", '"0s"'),
    ("statement_timeout", '"2d"'),
    ("connection_limit", "0"),
    ("surprise", "1"),
])
def test_a_hostile_or_wrong_value_is_refused_with_one_line_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(AccessError) as refused:
        parse(declare(**{field: value}), source="agencies.yml", known_provinces=PROVINCES)
    message = str(refused.value)
    assert message.startswith("agencies.yml: ") and "\n" not in message
    assert "agency #1" in message and (field in message or "provinces" in message), message


def test_sql_in_an_agency_name_is_allowed_text() -> None:
    name = "Sở Y tế'; DROP TABLE mart_health.x; -- $$ $body$"
    agency = parse(declare(name=f'"{name}"'), source="t", known_provinces=PROVINCES).agencies[0]
    assert agency.name == name


def test_a_slug_declared_twice_is_refused() -> None:
    text = GOOD + GOOD.split("agencies:\n", 1)[1]
    with pytest.raises(AccessError, match="declared twice"):
        parse(text, source="t", known_provinces=PROVINCES)


@pytest.mark.parametrize("text,expected", [
    ("agencies: [", "not valid YAML"),
    ("- just a list", "expected a mapping"),
    ("agencies:\n  - 7", "agency #1"),
])
def test_a_broken_file_is_one_clear_error(text: str, expected: str) -> None:
    with pytest.raises(AccessError, match=expected):
        parse(text, source="t", known_provinces=PROVINCES)


def test_a_missing_file_says_what_to_do(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AccessError, match="no such access file"):
        load(tmp_path / "nope.yml", known_provinces=PROVINCES)


def test_masked_agencies_search_their_masked_schemas_first() -> None:
    agency = parse(declare(datasets="[mart_health, mart_population.golden_citizens]"), source="t",
                   known_provinces=PROVINCES).agencies[0]
    assert desired_settings(agency)["search_path"] == "masked_health, masked_population"


def test_the_connection_uri_lists_the_standby_first_and_escapes_the_password(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kho.config import KhoConfig

    config = KhoConfig.from_env({"KHO_HOME": str(tmp_path), "KHO_PG_PORT": "6001", "KHO_PG_STANDBY_PORT": "6002"})
    agency = parse(GOOD, source="t", known_provinces=PROVINCES).agencies[0]
    uri = connection_uri(config, agency, "p@ss:w/rd?&")
    assert uri.startswith("postgresql://agency_health:p%40ss%3Aw%2Frd%3F%26@127.0.0.1:6002,127.0.0.1:6001/kho?")
    assert "target_session_attrs=prefer-standby" in uri
