"""kho's domain expectations without a database: registration with GX, kwargs validation, and SQL that carries its
constants (no bind parameter a generic plan could turn into a slow one)."""

from __future__ import annotations

from typing import Any

import pytest
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.expectations.registry import get_expectation_impl
from sqlalchemy import column, select
from sqlalchemy.dialects import postgresql

from kho.errors import ConfigError
from kho.quality.domain import DOMAIN_EXPECTATIONS, ExpectColumnValuesToBeCommuneCodeValidOnDate

TYPES = (
    "expect_column_values_to_be_valid_cccd",
    "expect_column_values_to_be_valid_tax_code",
    "expect_column_values_to_be_valid_social_insurance_code",
    "expect_column_values_to_be_nfc",
    "expect_column_values_to_be_commune_code_valid_on_date",
    "expect_column_values_to_not_be_before_column",
)
CODES = [f"{i:05d}" for i in range(10_035)]
KWARGS: dict[str, dict[str, Any]] = {
    "expect_column_values_to_be_valid_cccd": {
        "column": "cccd", "birth_province_column": "birth_province_code", "sex_column": "sex",
        "birth_date_column": "date_of_birth",
    },
    "expect_column_values_to_be_valid_tax_code": {"column": "branch_code", "branch": True,
                                                  "parent_column": "enterprise_code"},
    "expect_column_values_to_be_valid_social_insurance_code": {
        "column": "social_insurance_code", "cccd_column": "cccd", "registered_on_column": "registered_on",
    },
    "expect_column_values_to_be_nfc": {"column": "full_name"},
    "expect_column_values_to_be_commune_code_valid_on_date": {
        "column": "commune_code", "date_column": "updated_at", "codes_before": CODES, "codes_from": CODES[:3321],
    },
    "expect_column_values_to_not_be_before_column": {"column": "date_of_death", "other_column": "date_of_birth"},
}


def test_the_six_interface_types_are_registered_with_gx() -> None:
    assert tuple(DOMAIN_EXPECTATIONS) == TYPES
    for type_, rule in DOMAIN_EXPECTATIONS.items():
        assert get_expectation_impl(type_) is rule.expectation


@pytest.mark.parametrize("type_", TYPES)
def test_a_suite_entry_builds_the_custom_expectation(type_: str) -> None:
    built = ExpectationConfiguration(type=type_, kwargs=KWARGS[type_]).to_domain_obj()
    assert isinstance(built, DOMAIN_EXPECTATIONS[type_].expectation)


@pytest.mark.parametrize("type_", TYPES)
def test_the_flag_condition_renders_with_no_bind_parameter(type_: str) -> None:
    """Every constant is in the SQL text, so a prepared statement's generic plan is as fast as its first."""
    query = select(column("id")).where(DOMAIN_EXPECTATIONS[type_].unexpected(KWARGS[type_]))
    compiled = query.compile(dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True})
    assert compiled.params == {}
    assert "%(" not in compiled.string
    assert compiled.string.count(" IS NOT NULL") >= 1


def test_a_code_set_is_one_constant_array() -> None:
    rule = DOMAIN_EXPECTATIONS["expect_column_values_to_be_commune_code_valid_on_date"]
    sql = str(rule.unexpected(KWARGS[rule.type]).compile(
        dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True}))
    assert sql.count("= ANY (ARRAY['00000', '00001'") == 2
    assert "'10034'" in sql and "IN (" not in sql


def test_suite_parameters_are_accepted_until_gx_resolves_them() -> None:
    kwargs = {**KWARGS["expect_column_values_to_be_commune_code_valid_on_date"],
              "codes_before": {"$PARAMETER": "commune_codes_pre_2025"},
              "codes_from": {"$PARAMETER": "commune_codes_2025"}}
    built = ExpectationConfiguration(type="expect_column_values_to_be_commune_code_valid_on_date",
                                     kwargs=kwargs).to_domain_obj()
    assert built.configuration.kwargs["codes_before"] == {"$PARAMETER": "commune_codes_pre_2025"}
    rule = DOMAIN_EXPECTATIONS["expect_column_values_to_be_commune_code_valid_on_date"]
    with pytest.raises(ConfigError, match=r"codes_before is still the suite parameter 'commune_codes_pre_2025'"):
        rule.unexpected(kwargs)


def test_defaults_are_filled_in_as_gx_fills_them() -> None:
    values = DOMAIN_EXPECTATIONS["expect_column_values_to_be_commune_code_valid_on_date"].validated(
        {"column": "c", "date_column": "d", "codes_before": ["1"], "codes_from": ["2"]})
    assert (values["reform_date"], values["timezone"]) == ("2025-07-01", "Asia/Ho_Chi_Minh")
    tax = DOMAIN_EXPECTATIONS["expect_column_values_to_be_valid_tax_code"]
    assert tax.validated({"column": "c"})["branch"] is False
    assert DOMAIN_EXPECTATIONS["expect_column_values_to_not_be_before_column"].validated(
        {"column": "c", "other_column": "o"})["or_equal"] is True


def test_the_code_lists_survive_gxs_configuration_round_trip_whole() -> None:
    commune = KWARGS["expect_column_values_to_be_commune_code_valid_on_date"]
    built = ExpectColumnValuesToBeCommuneCodeValidOnDate(**commune)
    kwargs = built.configuration.kwargs
    assert kwargs["codes_before"] == CODES and kwargs["codes_from"] == CODES[:3321]
    assert kwargs["codes_before"] is not built.codes_before  # a copy: GX may change its kwargs in place
    assert built.dict(include={"codes_from"}) == {"codes_from": CODES[:3321]}


@pytest.mark.parametrize(("type_", "kwargs", "message"), [
    ("expect_column_values_to_be_valid_cccd",
     {"column": "cccd", "birth_province_column": "p", "birth_date_column": "d"}, r"sex_column: field required\)"),
    ("expect_column_values_to_be_valid_cccd",
     {"column": "cccd", "birth_province_column": "p", "sex_column": "s", "birth_date_column": "d", "sex": "s"},
     r"sex: extra fields not permitted"),
    ("expect_column_values_to_be_valid_tax_code", {"column": "c", "branch": "yes"},
     r"branch: value is not a valid boolean"),
    ("expect_column_values_to_be_valid_tax_code", {"column": "c", "parent_column": "p"},
     r"parent_column applies to branch codes only: set branch to true or drop it\)"),
    ("expect_column_values_to_be_valid_social_insurance_code", {"column": "c", "cccd_column": "x",
                                                                "reform_date": "1/7/2025"},
     r"reform_date: reform_date must be an ISO date \(YYYY-MM-DD\), not '1/7/2025'"),
    ("expect_column_values_to_be_commune_code_valid_on_date",
     {"column": "c", "date_column": "d", "codes_before": ["1"], "codes_from": ["2"], "timezone": "Asia/Saigon "},
     r"timezone: timezone must be an IANA zone name"),
    ("expect_column_values_to_be_commune_code_valid_on_date",
     {"column": "c", "date_column": "d", "codes_before": [1001], "codes_from": ["2"]},
     r"codes_before: a code list holds strings only"),
    ("expect_column_values_to_be_commune_code_valid_on_date",
     {"column": "c", "date_column": "d", "codes_before": ["1"], "codes_from": []},
     r"codes_from: a code list must not be empty"),
    ("expect_column_values_to_be_commune_code_valid_on_date",
     {"column": "c", "date_column": "d", "codes_before": {"$PARAMETER": ""}, "codes_from": ["2"]},
     r'codes_before: a code list is a list of strings or \{"\$PARAMETER": "<name>"\}'),
    ("expect_column_values_to_not_be_before_column", {"column": "c", "other_column": ""},
     r"other_column: ensure this value has at least 1 characters"),
    ("expect_column_values_to_not_be_before_column", {"column": "c", "other_column": "o", "or_equal": 0},
     r"or_equal: value is not a valid boolean"),
])
def test_a_bad_kwarg_is_one_clear_line(type_: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{type_}: invalid kwargs \(.*{message}") as caught:
        DOMAIN_EXPECTATIONS[type_].unexpected(kwargs)
    assert "\n" not in str(caught.value) and "__root__" not in str(caught.value)


def test_gx_itself_rejects_a_bad_kwarg_when_a_suite_is_built() -> None:
    config = ExpectationConfiguration(type="expect_column_values_to_be_valid_social_insurance_code",
                                      kwargs={"column": "c", "cccd_column": "x", "reform_date": "2025-13-01"})
    with pytest.raises(Exception, match="reform_date must be an ISO date"):
        config.to_domain_obj()
