"""The marts' GX suites say what dbt does not, once: every mart built has a suite and every suite a mart, every
expectation declares its severity and why, none repeats a structural dbt test of the same column (unique, not_null,
relationships, accepted_values, the enforced contract's constraints), and the domain expectations use the six custom
types and the five run-time parameters agreed with the runner, with the kwargs the interface gives them."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kho.config import PROJECT_ROOT
from kho.quality.suites import GX_SEVERITY, PARAMETERS, Suite, gx_suite, load_suite, suite_path

MARTS = PROJECT_ROOT / "dbt_project" / "models" / "marts"
EXPECTATIONS = PROJECT_ROOT / "expectations"
SUITE_FILES = sorted((EXPECTATIONS / "suites").glob("mart_*/*.json"))
CUSTOM_KWARGS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "expect_column_values_to_be_valid_cccd": (
        frozenset({"column", "birth_province_column", "sex_column", "birth_date_column"}), frozenset()),
    "expect_column_values_to_be_valid_tax_code": (frozenset({"column"}), frozenset({"branch", "parent_column"})),
    "expect_column_values_to_be_valid_social_insurance_code": (
        frozenset({"column", "cccd_column"}), frozenset({"registered_on_column", "reform_date"})),
    "expect_column_values_to_be_nfc": (frozenset({"column"}), frozenset()),
    "expect_column_values_to_be_commune_code_valid_on_date": (
        frozenset({"column", "date_column", "codes_before", "codes_from"}), frozenset({"reform_date", "timezone"})),
    "expect_column_values_to_not_be_before_column": (
        frozenset({"column", "other_column"}), frozenset({"or_equal"})),
}
"""kho.quality.domain's expectations (required kwargs, optional kwargs), as the issue's interface fixes them."""
MAP_KWARGS = frozenset({"mostly", "row_condition", "condition_parser", "catch_exceptions", "result_format"})
"""What GX lets every column map expectation take besides its own kwargs."""
RULE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")

# --- dbt's side: the structural checks the marts' yml declares ----------------------------------------------------

STRUCTURAL_DBT_TESTS = frozenset({"unique", "not_null", "relationships", "accepted_values"})
CONTRACT_CHECKS = {"not_null": {"not_null"}, "primary_key": {"not_null", "unique"}, "unique": {"unique"},
                   "check": {"values"}}
"""What an enforced contract constraint checks: a CHECK constrains the column's values (ranges, sets, patterns)."""
GX_STRUCTURAL = {
    "expect_column_values_to_not_be_null": {"not_null"},
    "expect_column_values_to_be_unique": {"unique"},
    "expect_compound_columns_to_be_unique": {"unique"},
    "expect_column_values_to_be_in_set": {"accepted_values", "relationships", "values"},
    "expect_column_distinct_values_to_be_in_set": {"accepted_values", "relationships", "values"},
    "expect_column_values_to_be_between": {"values"},
    "expect_column_values_to_match_regex": {"values"},
}
"""The GX expectations a dbt test or contract constraint of the same column (or columns) would repeat, and which."""
DBT_TEST_CHECKS = {"unique": {"unique"}, "not_null": {"not_null"}, "relationships": {"relationships"},
                   "accepted_values": {"accepted_values"}, "unique_combination_of_columns": {"unique"}}

Columns = tuple[str, ...]


def mart_models() -> dict[str, dict[str, Any]]:
    """Every mart dbt builds, by the name of its published table and suite (`mart_<domain>.<model>`)."""
    models = {}
    for path in sorted(MARTS.glob("*/_*__models.yml")):
        for model in yaml.safe_load(path.read_text(encoding="utf-8"))["models"]:
            models[f"mart_{path.parent.name}.{model['name']}"] = model
    return models


MODELS = mart_models()


def _test_name(test: str | dict[str, Any]) -> str:
    return test if isinstance(test, str) else next(iter(test))


def dbt_checks(model: dict[str, Any]) -> set[tuple[Columns, str]]:
    """(columns, what is checked) for every structural dbt test and contract constraint of the model."""
    checks: set[tuple[Columns, str]] = set()
    for column in model["columns"]:
        name = (column["name"],)
        for test in column.get("data_tests") or []:
            checks |= {(name, c) for c in DBT_TEST_CHECKS.get(_test_name(test), set())}
        for constraint in column.get("constraints") or []:
            checks |= {(name, c) for c in CONTRACT_CHECKS.get(constraint["type"], set())}
    for constraint in model.get("constraints") or []:
        keys = tuple(constraint.get("columns") or ())
        for check in CONTRACT_CHECKS.get(constraint["type"], set()):
            if check == "unique":
                checks.add((keys, check))
            else:
                checks |= {((k,), check) for k in keys}
    for test in model.get("data_tests") or []:
        name = _test_name(test)
        if name == "unique_combination_of_columns":
            keys = tuple(test[name]["arguments"]["combination_of_columns"])
            checks |= {(keys, c) for c in DBT_TEST_CHECKS[name]}
    return checks


def gx_checks(exp: dict[str, Any]) -> set[tuple[Columns, str]]:
    kwargs = exp["kwargs"]
    columns = tuple(kwargs["column_list"]) if "column_list" in kwargs else (kwargs.get("column"),)
    return {(columns, c) for c in GX_STRUCTURAL.get(exp["type"], set())}


def repeated(model: dict[str, Any], suite: Suite) -> list[str]:
    """The suite's expectations that a dbt test or contract constraint of the same column already checks."""
    dbt = dbt_checks(model)
    return [f"#{i} {exp['type']}({', '.join(map(str, cols))}): dbt checks {check}"
            for i, exp in enumerate(suite["expectations"]) for cols, check in sorted(gx_checks(exp) & dbt)]


# --- the suites ------------------------------------------------------------------------------------------------------

def suites() -> Iterator[tuple[str, Suite]]:
    for path in SUITE_FILES:
        yield f"{path.parent.name}.{path.stem}", load_suite(path)


def parameters(value: Any) -> Iterator[str]:
    """Every `$PARAMETER` name under a kwargs value (GX accepts one wherever a value goes)."""
    if isinstance(value, dict):
        if "$PARAMETER" in value:
            yield value["$PARAMETER"]
        for inner in value.values():
            yield from parameters(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from parameters(inner)


def is_domain(exp: dict[str, Any]) -> bool:
    """A domain expectation: one of kho's custom types, or a built-in checking against a reference set."""
    return exp["type"] in CUSTOM_KWARGS or any(parameters(exp["kwargs"]))


def named_columns(exp: dict[str, Any]) -> list[str]:
    kwargs = exp["kwargs"]
    names = [v for k, v in kwargs.items() if k in ("column", "column_A", "column_B") or k.endswith("_column")]
    return [*names, *kwargs.get("column_list", [])]


def builtin_types() -> frozenset[str]:
    import inspect

    import great_expectations.expectations.core as core
    from great_expectations.expectations.expectation import Expectation

    return frozenset(c.expectation_type for _, c in inspect.getmembers(core, inspect.isclass)
                     if issubclass(c, Expectation) and c.expectation_type)


def test_every_mart_dbt_builds_has_a_suite_and_every_mart_suite_a_mart() -> None:
    assert MODELS, "no marts under dbt_project/models/marts"
    assert {_name(p) for p in SUITE_FILES} == set(MODELS)


def _name(path: Path) -> str:
    return f"{path.parent.name}.{path.stem}"


@pytest.mark.parametrize("path", SUITE_FILES, ids=_name)
def test_a_mart_suite_loads_and_is_named_after_its_mart(path: Path) -> None:
    assert load_suite(path)["name"] == _name(path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_expectation_declares_its_severity_and_why(name: str) -> None:
    suite = load_suite(suite_path(EXPECTATIONS, name))
    for i, exp in enumerate(suite["expectations"]):
        meta = exp.get("meta") or {}
        assert exp.get("severity") in GX_SEVERITY.values(), f"{name} #{i} {exp['type']}: severity must be explicit"
        assert isinstance(meta.get("why"), str) and meta["why"].strip(), f"{name} #{i} {exp['type']}: no meta.why"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_domain_expectation_names_its_rule(name: str) -> None:
    suite = load_suite(suite_path(EXPECTATIONS, name))
    for i, exp in enumerate(suite["expectations"]):
        if is_domain(exp):
            rule = (exp.get("meta") or {}).get("rule")
            assert isinstance(rule, str) and RULE.fullmatch(rule), f"{name} #{i} {exp['type']}: meta.rule {rule!r}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_gx_expectation_repeats_a_dbt_test_of_the_same_column(name: str) -> None:
    assert repeated(MODELS[name], load_suite(suite_path(EXPECTATIONS, name))) == []


def test_a_repeated_structural_check_is_found_in_tests_constraints_and_composite_keys() -> None:
    """The finder itself: each way the yml can declare a structural check is seen, and a non-structural one is not."""
    model = MODELS["mart_population.golden_citizens"]
    suite: Suite = {"name": "mart_population.golden_citizens", "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "cccd"}},  # test + primary key
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "full_name"}},  # contract not_null
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "sex", "value_set": ["F", "M"]}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "household_id", "value_set": ["HK0000000001"]}},  # relationships
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "date_of_death"}},  # nothing in dbt
    ]}
    assert [line.split(" ")[0] for line in repeated(model, suite)] == ["#0", "#1", "#2", "#3"]
    composite = MODELS["mart_business.active_enterprises_by_industry_province"]
    keys = {"type": "expect_compound_columns_to_be_unique",
            "kwargs": {"column_list": ["province_code_2025", "industry_code"]}}
    assert repeated(composite, {"name": "x", "expectations": [keys]}) != []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_parameter_is_one_the_runner_passes(name: str) -> None:
    suite = load_suite(suite_path(EXPECTATIONS, name))
    used = {p for exp in suite["expectations"] for p in parameters(exp["kwargs"])}
    assert used <= set(PARAMETERS), f"{name}: unknown $PARAMETER {sorted(used - PARAMETERS)}"


def test_every_type_is_a_gx_built_in_or_one_of_the_six_custom_ones_with_its_kwargs() -> None:
    builtin = builtin_types()
    for name, suite in suites():
        for i, exp in enumerate(suite["expectations"]):
            where = f"{name} #{i} {exp['type']}"
            if exp["type"] in builtin:
                continue
            assert exp["type"] in CUSTOM_KWARGS, f"{where}: neither GX's nor one of kho.quality.domain's six"
            required, optional = CUSTOM_KWARGS[exp["type"]]
            given = set(exp["kwargs"])
            assert required <= given, f"{where}: missing {sorted(required - given)}"
            assert given <= required | optional | MAP_KWARGS, f"{where}: unknown {sorted(given - required - optional)}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_column_an_expectation_names_is_a_column_of_its_mart(name: str) -> None:
    columns = {c["name"] for c in MODELS[name]["columns"]}
    suite = load_suite(suite_path(EXPECTATIONS, name))
    for i, exp in enumerate(suite["expectations"]):
        assert set(named_columns(exp)) <= columns, f"{name} #{i} {exp['type']}: {named_columns(exp)}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_suite_expects_exactly_the_contract_columns(name: str) -> None:
    suite = load_suite(suite_path(EXPECTATIONS, name))
    (shape,) = [e for e in suite["expectations"] if e["type"] == "expect_table_columns_to_match_set"]
    assert shape["kwargs"] == {"column_set": [c["name"] for c in MODELS[name]["columns"]], "exact_match": True}


def test_the_built_in_expectations_of_every_mart_suite_are_valid_for_gx() -> None:
    """Imports GX (seconds). The custom ones are GX's once kho.quality.domain registers them; their kwargs are checked
    against the interface above."""
    for name, suite in suites():
        builtin = copy.deepcopy(suite)
        builtin["expectations"] = [e for e in suite["expectations"] if e["type"] not in CUSTOM_KWARGS]
        assert len(gx_suite(builtin).expectations) == len(builtin["expectations"]), name
