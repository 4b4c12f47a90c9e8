"""kho's domain rules as custom GX expectations: one SQL condition per rule, shared by GX and kho's flag query.

Each rule is a ColumnMapExpectation on `column` (rows where it is null are not evaluated) backed by a
ColumnMapMetricProvider whose SqlAlchemy condition is a plain row-level expression: no subquery, no per-row Python,
so GX folds every rule's unexpected_count into the one aggregate query it runs per batch. The condition is built by
one function per rule; `DOMAIN_EXPECTATIONS[type].unexpected(kwargs)` builds the same expression (plus
`column IS NOT NULL`, which GX adds itself) so `kho.quality_flags` lists exactly the rows GX counts.

Importing this module imports GX (seconds) and registers the six expectations; only code about to run GX does so.
The identity rules follow `kho.sources.identity` (the loader's pyarrow checks), where the two overlap.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import sqlalchemy as sa
from great_expectations.compatibility import pydantic
from great_expectations.compatibility.pydantic import StrictBool, StrictStr
from great_expectations.core.suite_parameters import SuiteParameterDict, is_suite_parameter
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from kho.errors import ConfigError
from kho.sources.identity import TAX_CODE_WEIGHTS

REFORM_DATE = "2025-07-01"
"""The two-tier local government (Resolution 202/2025/QH15) and the Law on Social Insurance 41/2024/QH15 apply
from this day: new commune codes, and a new participant's social insurance code is their CCCD."""
LOCAL_TIMEZONE = "Asia/Ho_Chi_Minh"
TAX_CODE_CHECK_WEIGHTS = (*TAX_CODE_WEIGHTS, 1)
"""The check digit c = 10 - (Σ dᵢwᵢ mod 11) holds iff (Σ dᵢwᵢ + c) mod 11 = 10 with c a digit; a sum divisible by
11 (c = 10, no digit) then never holds, as `kho.sources.identity` requires."""

Condition = ColumnElement[bool]
Column = ColumnElement[Any]


# --- the conditions: true where a row breaks the rule, given non-null `column` ----------------------------------

def _int(n: int) -> Column:
    """An integer constant written into the SQL, so PostgreSQL folds it and does integer arithmetic."""
    return sa.literal_column(str(int(n)), sa.Integer())


def _const(value: Any, type_: Any) -> Column:
    """A constant rendered into the SQL text (SQLAlchemy quotes it), not a bind parameter.

    psycopg prepares a statement after 5 runs and PostgreSQL may then plan it generically, where a parameter is no
    constant: `code = ANY($1)` then searches a 10,000-code array row by row (measured: 0.1 s became 42 s a query)
    and `timezone($1, ...)` is no longer folded. Constants keep every plan as fast as the first.
    """
    return sa.literal(value, type_, literal_execute=True)


def _digits(value: Column, *lengths: int) -> Condition:
    """`value` is ASCII digits ([0-9], never the locale's \\d) of one of `lengths`: a length test and a starred
    pattern cost PostgreSQL less than half of `~ '^[0-9]{12}$'`."""
    length = sa.func.length(value)
    sized = length == _int(lengths[0]) if len(lengths) == 1 else length.in_([_int(n) for n in lengths])
    return sa.and_(sized, value.regexp_match(_const("^[0-9]*$", sa.Text())))


def _digit(value: Column, position: int) -> Column:
    """The digit at 1-based `position` as an integer; never fails on other characters (shape is checked apart)."""
    return sa.func.ascii(sa.func.substr(value, _int(position), _int(1))) - _int(48)


def cccd_unexpected(cccd: Column, birth_province: Column | None, sex: Column, birth_date: Column) -> Condition:
    """Not 12 digits, or digits 1-6 contradict birth province, sex/century and birth year, each part checked only
    when its inputs are present; a birth year outside 1900-2199 has no century digit, so always contradicts.

    `birth_date` is a date (the year of a timestamptz would depend on the session's TimeZone).
    """
    year = sa.cast(sa.func.date_part(_const("year", sa.Text()), birth_date), sa.Integer())
    female = sa.case((sex == _const("F", sa.Text()), _int(1)), else_=_int(0))
    if birth_province is None:  # a record that does not state it (a birth registration: where it is registered)
        province_part: Condition = sa.false()
    else:
        province = sa.func.lpad(birth_province, sa.func.greatest(sa.func.length(birth_province), _int(3)),
                                _const("0", sa.Text()))
        province_part = sa.and_(birth_province.is_not(None), sa.func.substr(cccd, _int(1), _int(3)) != province)
    return sa.or_(
        sa.not_(_digits(cccd, 12)),
        province_part,
        sa.and_(birth_date.is_not(None), sa.not_(year.between(_int(1900), _int(2199)))),
        sa.and_(birth_date.is_not(None), sex.is_not(None),
                _digit(cccd, 4) != (year // _int(100) - _int(19)) * _int(2) + female),
        sa.and_(birth_date.is_not(None), _digit(cccd, 5) * _int(10) + _digit(cccd, 6) != year % _int(100)),
    )


def tax_code_unexpected(code: Column, *, branch: bool, parent: Column | None = None) -> Condition:
    """An enterprise code (10 digits) or, with `branch`, a branch code (13 digits: a valid parent code, then
    001..999, and that parent when `parent` is given and present) that `kho.sources.identity` would reject."""
    weighted = reduce(
        lambda total, term: total + term,
        (_int(w) * _digit(code, i) for i, w in enumerate(TAX_CODE_CHECK_WEIGHTS, start=1)),
    )
    parts = [
        sa.not_(_digits(code, 13 if branch else 10)),
        sa.func.substr(code, _int(3), _int(7)) == _const("0000000", sa.Text()),
        weighted % _int(11) != _int(10),
    ]
    if branch:
        parts.append(sa.func.substr(code, _int(11), _int(3)) == _const("000", sa.Text()))
        if parent is not None:
            parts.append(sa.and_(parent.is_not(None), sa.func.substr(code, _int(1), _int(10)) != parent))
    return sa.or_(*parts)


def social_insurance_code_unexpected(
    code: Column, cccd: Column, registered_on: Column | None, reform_date: dt.date
) -> Condition:
    """Neither 10 nor 12 digits; 12 digits (an identification number) other than the row's CCCD; or, registered on
    or after `reform_date`, not the CCCD (Law 41/2024/QH15). A null CCCD or date leaves its part unchecked.

    `registered_on` is a date (a timestamptz would be compared in the session's TimeZone)."""
    not_own_cccd = sa.and_(cccd.is_not(None), code != cccd)
    parts = [sa.not_(_digits(code, 10, 12)), sa.and_(sa.func.length(code) == _int(12), not_own_cccd)]
    if registered_on is not None:
        parts.append(sa.and_(registered_on.is_not(None), registered_on >= _const(reform_date, sa.Date()),
                             not_own_cccd))
    return sa.or_(*parts)


def nfc_unexpected(text: Column) -> Condition:
    """Text not in Unicode NFC: `NOT (text IS NFC NORMALIZED)`, in PostgreSQL's function form `is_normalized`
    (a name typed in decomposed form compares unequal to the same name in NFC)."""
    return sa.not_(sa.func.is_normalized(text, _const("NFC", sa.Text()), type_=sa.Boolean()))


def before_local_date(value: Column, day: dt.date, timezone: str) -> Condition:
    """A date before `day`; a timestamptz whose calendar date in `timezone` is before `day`, whatever the session's
    TimeZone (it is before that day's local midnight, a constant PostgreSQL folds).

    The type is asked of PostgreSQL per row (`pg_typeof`, a cheap call), so one expression serves a date or a
    timestamptz column without a look at the catalogue, and `unexpected(kwargs)` needs no connection.
    """
    instant = postgresql.TIMESTAMP(timezone=True)
    midnight = sa.func.timezone(_const(timezone, sa.Text()), sa.cast(_const(day, sa.Date()), postgresql.TIMESTAMP()))
    return sa.case(
        (sa.func.pg_typeof(value) == sa.literal_column("'timestamp with time zone'::regtype"),
         sa.cast(value, instant) < midnight),
        else_=sa.cast(value, sa.Date()) < _const(day, sa.Date()),
    )


def _in_codes(code: Column, codes: Sequence[str]) -> Condition:
    """`code = ANY(ARRAY[...])` with the codes as one constant array, which PostgreSQL hashes once per query."""
    return code == sa.any_(_const(list(codes), postgresql.ARRAY(sa.Text())))


def commune_code_unexpected(
    code: Column, record_date: Column, codes_before: Sequence[str], codes_from: Sequence[str],
    reform_date: dt.date, timezone: str,
) -> Condition:
    """A commune code not among the units in force on the record's local date; a null date is not checked."""
    return sa.and_(
        record_date.is_not(None),
        sa.case(
            (before_local_date(record_date, reform_date, timezone), sa.not_(_in_codes(code, codes_before))),
            else_=sa.not_(_in_codes(code, codes_from)),
        ),
    )


def before_column_unexpected(value: Column, other: Column, *, or_equal: bool) -> Condition:
    """`value` before `other` (or on the same day, unless `or_equal`); a null either side is not checked. Both
    columns should have one type: PostgreSQL compares a date with a timestamptz in the session's TimeZone."""
    order = value < other if or_equal else value <= other
    return sa.and_(value.is_not(None), other.is_not(None), order)


# --- reading kwargs: the same for GX's metric (raw kwargs with defaults) and for `unexpected(kwargs)` ------------

def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _codes(kwargs: Mapping[str, Any], key: str) -> list[str]:
    value = kwargs[key]
    if is_suite_parameter(value):
        raise ConfigError(
            f"{key} is still the suite parameter {value['$PARAMETER']!r}: pass its code list in "
            "expectation_parameters when running the checkpoint or validation"
        )
    return list(value)


def _optional_column(kwargs: Mapping[str, Any], key: str) -> Column | None:
    name = kwargs.get(key)
    return None if name is None else sa.column(name)


def _cccd(column: Column, kw: Mapping[str, Any]) -> Condition:
    return cccd_unexpected(column, _optional_column(kw, "birth_province_column"), sa.column(kw["sex_column"]),
                           sa.column(kw["birth_date_column"]))


def _tax_code(column: Column, kw: Mapping[str, Any]) -> Condition:
    return tax_code_unexpected(column, branch=bool(kw["branch"]), parent=_optional_column(kw, "parent_column"))


def _social_insurance_code(column: Column, kw: Mapping[str, Any]) -> Condition:
    return social_insurance_code_unexpected(column, sa.column(kw["cccd_column"]),
                                            _optional_column(kw, "registered_on_column"), _date(kw["reform_date"]))


def _nfc(column: Column, kw: Mapping[str, Any]) -> Condition:
    return nfc_unexpected(column)


def _commune_code(column: Column, kw: Mapping[str, Any]) -> Condition:
    return commune_code_unexpected(column, sa.column(kw["date_column"]), _codes(kw, "codes_before"),
                                   _codes(kw, "codes_from"), _date(kw["reform_date"]), kw["timezone"])


def _not_before(column: Column, kw: Mapping[str, Any]) -> Condition:
    return before_column_unexpected(column, sa.column(kw["other_column"]), or_equal=bool(kw["or_equal"]))


# --- GX metric providers: the expected condition is the negation of the rule's ---------------------------------

class ColumnValuesValidCccd(ColumnMapMetricProvider):
    condition_metric_name = "column_values.kho_valid_cccd"
    condition_value_keys = ("birth_province_column", "sex_column", "birth_date_column")

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column: Column, **kwargs: Any) -> Condition:
        return sa.not_(_cccd(column, kwargs))


class ColumnValuesValidTaxCode(ColumnMapMetricProvider):
    condition_metric_name = "column_values.kho_valid_tax_code"
    condition_value_keys = ("branch", "parent_column")

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column: Column, **kwargs: Any) -> Condition:
        return sa.not_(_tax_code(column, kwargs))


class ColumnValuesValidSocialInsuranceCode(ColumnMapMetricProvider):
    condition_metric_name = "column_values.kho_valid_social_insurance_code"
    condition_value_keys = ("cccd_column", "registered_on_column", "reform_date")

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column: Column, **kwargs: Any) -> Condition:
        return sa.not_(_social_insurance_code(column, kwargs))


class ColumnValuesNfc(ColumnMapMetricProvider):
    condition_metric_name = "column_values.kho_nfc"

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column: Column, **kwargs: Any) -> Condition:
        return sa.not_(_nfc(column, kwargs))


class ColumnValuesCommuneCodeValidOnDate(ColumnMapMetricProvider):
    condition_metric_name = "column_values.kho_commune_code_valid_on_date"
    condition_value_keys = ("date_column", "codes_before", "codes_from", "reform_date", "timezone")

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column: Column, **kwargs: Any) -> Condition:
        return sa.not_(_commune_code(column, kwargs))


class ColumnValuesNotBeforeColumn(ColumnMapMetricProvider):
    condition_metric_name = "column_values.kho_not_before_column"
    condition_value_keys = ("other_column", "or_equal")

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column: Column, **kwargs: Any) -> Condition:
        return sa.not_(_not_before(column, kwargs))


# --- GX expectations: kwargs as validated pydantic fields --------------------------------------------------------

CodeList = list | SuiteParameterDict
"""A list of codes, or `{"$PARAMETER": name}` until GX substitutes the run's list. Elements are checked by one
`all(...)`, not by pydantic one by one: GX rebuilds the expectation for every metric it asks about."""


def _column_field(description: str, default: Any = ...) -> Any:
    return pydantic.Field(default, min_length=1, description=description)


def _check_reform_date(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"reform_date must be an ISO date (YYYY-MM-DD), not {value!r}") from None


def _check_code_list(value: list[str] | SuiteParameterDict) -> list[str] | SuiteParameterDict:
    if isinstance(value, dict):
        if set(value) != {"$PARAMETER"} or not isinstance(value["$PARAMETER"], str) or not value["$PARAMETER"]:
            raise ValueError('a code list is a list of strings or {"$PARAMETER": "<name>"}')
    elif not value:
        raise ValueError("a code list must not be empty: every code would be unexpected")
    elif not all(isinstance(code, str) for code in value):
        raise ValueError("a code list holds strings only (codes keep their leading zeros)")
    return value


class ExpectColumnValuesToBeValidCccd(ColumnMapExpectation):
    """Expect each CCCD to be 12 digits whose first six agree with birth province, sex/century and birth year."""

    birth_province_column: StrictStr | None = _column_field(
        "Birth province code (GSO), zero-padded to CCCD digits 1-3; none: digits 1-3 are not checked (a record "
        "that does not state the province of birth registration)", None)
    sex_column: StrictStr = _column_field("Sex, 'F' or 'M': with the century, CCCD digit 4")
    birth_date_column: StrictStr = _column_field("Date of birth: its century and year give CCCD digits 4-6")

    map_metric = ColumnValuesValidCccd.condition_metric_name
    success_keys = ("birth_province_column", "sex_column", "birth_date_column", "mostly")
    args_keys = ("column", "birth_province_column", "sex_column", "birth_date_column")


class ExpectColumnValuesToBeValidTaxCode(ColumnMapExpectation):
    """Expect each enterprise code to be a valid 10-digit MST, or with `branch` a 13-digit branch code of it."""

    branch: StrictBool = False
    parent_column: StrictStr | None = _column_field(
        "With branch: the parent code the first 10 digits must be (optional)", None)

    map_metric = ColumnValuesValidTaxCode.condition_metric_name
    success_keys = ("branch", "parent_column", "mostly")
    args_keys = ("column", "branch", "parent_column")

    @pydantic.root_validator(skip_on_failure=True)
    def _parent_needs_branch(cls, values: dict[str, Any]) -> dict[str, Any]:
        if values.get("parent_column") is not None and not values.get("branch"):
            raise ValueError("parent_column applies to branch codes only: set branch to true or drop it")
        return values


class ExpectColumnValuesToBeValidSocialInsuranceCode(ColumnMapExpectation):
    """Expect each social insurance code to be 10 digits or the participant's CCCD, and from the reform date the
    CCCD for a new participant."""

    cccd_column: StrictStr = _column_field("The participant's CCCD")
    registered_on_column: StrictStr | None = _column_field(
        "Date the participant registered (optional)", None)
    reform_date: StrictStr = REFORM_DATE

    map_metric = ColumnValuesValidSocialInsuranceCode.condition_metric_name
    success_keys = ("cccd_column", "registered_on_column", "reform_date", "mostly")
    args_keys = ("column", "cccd_column", "registered_on_column")

    _reform_date = pydantic.validator("reform_date", allow_reuse=True)(_check_reform_date)


class ExpectColumnValuesToBeNfc(ColumnMapExpectation):
    """Expect each text to be in Unicode NFC, the form kho stores and compares names in."""

    map_metric = ColumnValuesNfc.condition_metric_name
    success_keys = ("mostly",)
    args_keys = ("column",)


_CODE_LISTS = ("codes_before", "codes_from")


class ExpectColumnValuesToBeCommuneCodeValidOnDate(ColumnMapExpectation):
    """Expect each commune code to be a unit in force on the record's local date: `codes_before` before the
    reform date, `codes_from` on and after it (usually given as `$PARAMETER`s)."""

    date_column: StrictStr = _column_field("The record's date (a timestamptz is read as its local date)")
    codes_before: CodeList
    codes_from: CodeList
    reform_date: StrictStr = REFORM_DATE
    timezone: StrictStr = LOCAL_TIMEZONE

    map_metric = ColumnValuesCommuneCodeValidOnDate.condition_metric_name
    success_keys = ("date_column", "codes_before", "codes_from", "reform_date", "timezone", "mostly")
    args_keys = ("column", "date_column", "codes_before", "codes_from")

    _reform_date = pydantic.validator("reform_date", allow_reuse=True)(_check_reform_date)
    _code_lists = pydantic.validator("codes_before", "codes_from", allow_reuse=True)(_check_code_list)

    @pydantic.validator("timezone")
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone must be an IANA zone name such as {LOCAL_TIMEZONE}, not {value!r}") from None
        return value

    def dict(self, **kwargs: Any) -> dict[str, Any]:
        """pydantic v1 copies a list field element by element, and GX calls `dict()` (via `configuration`) for
        each kwarg it reads: with two code lists that cost 2.3 s of Python per validation (measured). The lists
        are copied whole instead; everything else is pydantic's."""
        lists = {key: getattr(self, key) for key in _CODE_LISTS if isinstance(getattr(self, key), list)}
        if not lists or kwargs.get("include") is not None or kwargs.get("exclude") is not None:
            return super().dict(**kwargs)
        values = super().dict(exclude=set(lists), **kwargs)
        values.update({key: list(codes) for key, codes in lists.items()})
        return values


class ExpectColumnValuesToNotBeBeforeColumn(ColumnMapExpectation):
    """Expect `column` not to be before `other_column` in the same row (a death not before the birth)."""

    other_column: StrictStr = _column_field("The column this one must not precede")
    or_equal: StrictBool = True

    map_metric = ColumnValuesNotBeforeColumn.condition_metric_name
    success_keys = ("other_column", "or_equal", "mostly")
    args_keys = ("column", "other_column", "or_equal")


# --- the same conditions for kho's own SQL --------------------------------------------------------------------------

def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"] if part != "__root__")
    return f"{where}: {error['msg']}" if where else str(error["msg"])


@dataclass(frozen=True)
class DomainRule:
    """One domain expectation: its GX class and the condition GX's metric and kho's flag query both use."""

    expectation: type[ColumnMapExpectation]
    condition: Callable[[Column, Mapping[str, Any]], Condition]

    @property
    def type(self) -> str:
        return str(self.expectation.expectation_type)

    def validated(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The kwargs validated as GX validates them, with GX's defaults filled in; one clear line if invalid."""
        try:
            expectation = self.expectation(**kwargs)
        except pydantic.ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors())
            raise ConfigError(f"{self.type}: invalid kwargs ({problems})") from None
        return expectation.dict()

    def unexpected(self, kwargs: Mapping[str, Any]) -> Condition:
        """True where a row breaks the rule: exactly the rows GX counts as unexpected, given the same kwargs with
        `$PARAMETER`s resolved. Code sets and dates are constants in the SQL, rendered when SQLAlchemy executes
        it (compile with `render_postcompile=True` or `literal_binds=True` to get the final text)."""
        values = self.validated(kwargs)
        column: Column = sa.column(values["column"])
        return sa.and_(column.is_not(None), self.condition(column, values))


DOMAIN_EXPECTATIONS: Mapping[str, DomainRule] = {
    rule.type: rule
    for rule in (
        DomainRule(ExpectColumnValuesToBeValidCccd, _cccd),
        DomainRule(ExpectColumnValuesToBeValidTaxCode, _tax_code),
        DomainRule(ExpectColumnValuesToBeValidSocialInsuranceCode, _social_insurance_code),
        DomainRule(ExpectColumnValuesToBeNfc, _nfc),
        DomainRule(ExpectColumnValuesToBeCommuneCodeValidOnDate, _commune_code),
        DomainRule(ExpectColumnValuesToNotBeBeforeColumn, _not_before),
    )
}
