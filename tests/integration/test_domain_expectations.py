"""kho's custom GX expectations on a real PostgreSQL: passing and failing data with exact unexpected counts, the
2025 boundary, nulls, `$PARAMETER` code lists, and `unexpected(kwargs)` listing exactly the rows GX counts.

The module's database defaults its sessions to Pacific/Kiritimati (UTC+14), so a rule that leaned on the session's
TimeZone instead of its own `timezone` kwarg would count differently here than in Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import unicodedata
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from psycopg import sql

from kho.config import KhoConfig
from kho.quality.project import URL_VARIABLE
from kho.quality.runner import warehouse_url
from kho.sources.identity import cccd_contradicts_birth, complete_tax_code, valid_tax_codes
from kho.warehouse.connection import connect, connect_admin

pytestmark = pytest.mark.integration

CCCD = "expect_column_values_to_be_valid_cccd"
TAX = "expect_column_values_to_be_valid_tax_code"
SOCIAL = "expect_column_values_to_be_valid_social_insurance_code"
NFC = "expect_column_values_to_be_nfc"
COMMUNE = "expect_column_values_to_be_commune_code_valid_on_date"
NOT_BEFORE = "expect_column_values_to_not_be_before_column"
SESSION_ZONE = "Pacific/Kiritimati"
OLD_CODES = ["25741", "25744"]
NEW_CODES = ["25744", "26734"]
PARAMETERS = {"commune_codes_pre_2025": OLD_CODES, "commune_codes_2025": NEW_CODES}
COMMUNE_KWARGS = {"codes_before": {"$PARAMETER": "commune_codes_pre_2025"},
                  "codes_from": {"$PARAMETER": "commune_codes_2025"}}


@dataclass(frozen=True)
class Outcome:
    success: bool
    unexpected_count: int | None


@dataclass
class Warehouse:
    """This module's database, GX pointed at it as the pipeline points it (`warehouse_url`), and one GX context."""

    config: KhoConfig
    engine: sa.Engine
    context: Any
    datasource: Any
    runs: int = 0

    def table(self, columns: str, rows: Sequence[tuple[Any, ...]]) -> str:
        """A new table `(id int, <columns>)` holding `rows` (each starting with its id)."""
        name = f"t_{uuid.uuid4().hex[:10]}"
        with connect(self.config.warehouse, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {})").format(
                sql.Identifier(name), sql.SQL(columns)))  # columns: this module's literals
            if rows:
                marks = sql.SQL(", ").join(sql.Placeholder() * len(rows[0]))
                with conn.cursor() as cur:
                    cur.executemany(sql.SQL("INSERT INTO {} VALUES ({})").format(sql.Identifier(name), marks), rows)
        return name

    def validate(self, table: str, expectations: Sequence[tuple[str, Mapping[str, Any]]],
                 parameters: Mapping[str, Any] | None = None, result_format: Any = "SUMMARY") -> list[Outcome]:
        """Validate the whole table with GX against a suite of these expectations; one outcome each, in order."""
        import great_expectations as gx
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        self.runs += 1
        asset = self.datasource.add_table_asset(f"{table}_{self.runs}", table_name=table)
        batch = asset.add_batch_definition_whole_table("all")
        suite = self.context.suites.add(gx.ExpectationSuite(name=f"suite_{self.runs}", expectations=[
            ExpectationConfiguration(type=type_, kwargs=dict(kwargs)).to_domain_obj() for type_, kwargs in expectations
        ]))
        validation = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validation_{self.runs}", data=batch, suite=suite))
        result = validation.run(expectation_parameters=dict(parameters or {}), result_format=result_format)
        outcomes = []
        for r in result.results:
            assert not r.exception_info.get("raised_exception"), r.exception_info
            outcomes.append(Outcome(bool(r.success), r.result.get("unexpected_count")))
        return outcomes

    def flagged(self, table: str, type_: str, kwargs: Mapping[str, Any], *, session_zone: str | None = None
                ) -> set[int]:
        """The ids `DOMAIN_EXPECTATIONS[type_].unexpected(kwargs)` selects, as kho's flag query would."""
        from kho.quality.domain import DOMAIN_EXPECTATIONS

        query = sa.select(sa.column("id", sa.Integer())).select_from(sa.table(table)).where(
            DOMAIN_EXPECTATIONS[type_].unexpected(kwargs))
        with self.engine.connect() as conn:
            if session_zone is not None:
                conn.execute(sa.select(sa.func.set_config("TimeZone", session_zone, False)))
            return {row[0] for row in conn.execute(query)}

    def per_row(self, table: str, flags: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[int, dict[str, bool]]:
        """Each row's verdict under several rules at once: {id: {name: unexpected}}."""
        from kho.quality.domain import DOMAIN_EXPECTATIONS

        columns = [DOMAIN_EXPECTATIONS[t].unexpected(k).label(name) for name, (t, k) in flags.items()]
        query = sa.select(sa.column("id", sa.Integer()), *columns).select_from(sa.table(table))
        with self.engine.connect() as conn:
            return {row.id: {name: getattr(row, name) for name in flags} for row in conn.execute(query)}


@pytest.fixture(scope="module")
def warehouse(kho_config: KhoConfig) -> Iterator[Warehouse]:
    """A database of the module's own in the session warehouse (owned by the application login, sessions in UTC+14)
    and one ephemeral GX context on it: GX takes seconds to import and set up."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    import kho.quality.domain  # noqa: F401  # registers the expectations with GX

    name = f"t_domain_{uuid.uuid4().hex[:12]}"
    wh = kho_config.warehouse
    with connect_admin(wh, dbname="postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(wh.user)))
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO {}").format(
            sql.Identifier(name), sql.Literal(SESSION_ZONE)))
    config = dataclasses.replace(kho_config, warehouse=dataclasses.replace(wh, dbname=name))
    url = warehouse_url(config.warehouse)
    engine = sa.create_engine(url)
    # GX's URL check refuses several hosts, so the runner's way: a ${...} placeholder resolved at run time.
    context = gx.get_context(mode="ephemeral", runtime_environment={URL_VARIABLE: url})
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_postgres("kho", connection_string=f"${{{URL_VARIABLE}}}")
    try:
        yield Warehouse(config, engine, context, datasource)
    finally:
        engine.dispose()
        with connect_admin(wh, dbname="postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _check(warehouse: Warehouse, table: str, type_: str, kwargs: Mapping[str, Any], expected: set[int],
           parameters: Mapping[str, Any] | None = None) -> None:
    """GX counts exactly `expected` rows, and `unexpected(kwargs)` (parameters resolved) lists exactly them."""
    (outcome,) = warehouse.validate(table, [(type_, kwargs)], parameters)
    assert outcome == Outcome(not expected, len(expected))
    resolved = {k: (parameters or {}).get(v["$PARAMETER"], v) if isinstance(v, dict) else v
                for k, v in kwargs.items()}
    assert warehouse.flagged(table, type_, resolved) == expected


# --- CCCD ----------------------------------------------------------------------------------------------------------

CCCD_COLUMNS = "cccd text, birth_province_code text, sex text, date_of_birth date"
CCCD_KWARGS = {"column": "cccd", "birth_province_column": "birth_province_code", "sex_column": "sex",
               "birth_date_column": "date_of_birth"}
CCCD_ROWS: list[tuple[Any, ...]] = [
    # id, cccd, birth province, sex, date of birth, unexpected?
    (1, "074090000001", "74", "M", dt.date(1990, 1, 2), False),
    (2, "074190000002", "74", "F", dt.date(1990, 3, 4), False),
    (3, "074090000003", "74", "F", dt.date(1990, 3, 4), True),  # a woman coded as a man
    (4, "079090000004", "74", "M", dt.date(1990, 1, 2), True),  # another province
    (5, "074091000005", "74", "M", dt.date(1990, 1, 2), True),  # another year
    (6, "001200000006", "1", "M", dt.date(2000, 2, 29), False),  # province padded to 001; 2000s man; leap day
    (7, "001300000007", "01", "F", dt.date(2000, 2, 29), False),
    (8, "096099000008", "96", "M", dt.date(1999, 12, 31), False),
    (9, "096100000009", "96", "F", dt.date(1900, 1, 1), False),
    (10, "096400000010", "96", "M", dt.date(2100, 1, 1), False),  # 2100s: 4 and 5
    (11, "096599000011", "96", "F", dt.date(2199, 12, 31), False),
    (12, "096099000012", "96", "M", dt.date(1899, 12, 31), True),  # no century digit before 1900
    (13, "096400000013", "96", "M", dt.date(2200, 1, 1), True),  # nor from 2200
    (14, "07409000001", "74", "M", dt.date(1990, 1, 2), True),  # 11 digits
    (15, "0740900000a1", "74", "M", dt.date(1990, 1, 2), True),
    (16, "07409000000\u0661", "74", "M", dt.date(1990, 1, 2), True),  # an Arabic-Indic digit is no digit here
    (17, None, "74", "M", dt.date(1990, 1, 2), False),  # a null CCCD is not evaluated
    (18, "099090000018", None, "M", dt.date(1990, 1, 2), False),  # no province: digits 1-3 unchecked
    (19, "074190000019", "74", None, dt.date(1990, 1, 2), False),  # no sex: digit 4 unchecked
    (20, "074191000020", "74", None, dt.date(1990, 1, 2), True),  # ... but the year still is
    (21, "074999000021", "74", "M", None, False),  # no birth date: digits 4-6 unchecked
    (22, "174090000022", "74", "M", dt.date(1990, 1, 2), True),
    (23, "124090000023", "124", "M", dt.date(1990, 1, 2), False),
    (24, "124090000024", "1240", "M", dt.date(1990, 1, 2), True),  # lpad never truncates a longer code
    (25, "074000000025", "74", "M", dt.date(2000, 5, 5), True),  # a 2000s man coded as a 1900s one
    (26, "074304000026", "74", "F", dt.date(2004, 2, 29), False),
    (27, "096700000027", "96", "F", dt.date(2200, 1, 1), True),  # 2200s would be 6/7 by the pattern: not in law
    (28, "096099000028", "96", None, dt.date(1899, 12, 31), True),  # out of range even with the sex unknown
]


def test_cccd_counts_exactly_the_rows_whose_digits_contradict_the_birth(warehouse: Warehouse) -> None:
    table = warehouse.table(CCCD_COLUMNS, [row[:5] for row in CCCD_ROWS])
    _check(warehouse, table, CCCD, CCCD_KWARGS, {row[0] for row in CCCD_ROWS if row[5]})


def test_cccd_passes_a_table_of_consistent_numbers(warehouse: Warehouse) -> None:
    table = warehouse.table(CCCD_COLUMNS, [row[:5] for row in CCCD_ROWS if not row[5]])
    _check(warehouse, table, CCCD, CCCD_KWARGS, set())


def _random_cccd_rows(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    """Birth years 1850-2250, provinces with and without padding, and CCCDs right, off by one digit, or random."""
    rows: list[tuple[Any, ...]] = []
    for i in range(n):
        born = dt.date(rng.randrange(1850, 2251), rng.randrange(1, 13), rng.randrange(1, 29))
        province, sex = str(rng.randrange(1, 100)).zfill(rng.choice((1, 2))), rng.choice("MF")
        century = {19: 0, 20: 2, 21: 4}.get(born.year // 100, rng.randrange(10))
        cccd = f"{int(province):03d}{century + (sex == 'F')}{born.year % 100:02d}{rng.randrange(10**6):06d}"
        kind = rng.randrange(4)
        if kind == 1:
            at = rng.randrange(12)
            cccd = cccd[:at] + str((int(cccd[at]) + rng.randrange(1, 10)) % 10) + cccd[at + 1:]
        elif kind == 2:
            cccd = f"{rng.randrange(10**12):012d}"
        rows.append((1000 + i, cccd, province, sex, born))
    return rows


def test_cccd_agrees_with_the_loaders_pyarrow_check(warehouse: Warehouse) -> None:
    """Same rows, same verdict: the contract's 12-digit pattern plus `cccd_contradicts_birth` in the loader, the
    expectation's SQL in the warehouse (rows without nulls, where both define a verdict)."""
    rows = [row[:5] for row in CCCD_ROWS if None not in row] + _random_cccd_rows(random.Random(15), 3000)
    table = warehouse.table(CCCD_COLUMNS, rows)
    sql_verdict = {i: v["cccd"] for i, v in warehouse.per_row(table, {"cccd": (CCCD, CCCD_KWARGS)}).items()}
    arrow = pa.table({
        "cccd": [r[1] for r in rows], "birth_province_code": [r[2] for r in rows], "sex": [r[3] for r in rows],
        "date_of_birth": pa.array([r[4] for r in rows], pa.date32()),
    })
    malformed = pc.invert(pc.match_substring_regex(arrow.column("cccd"), r"^(?:\d{12})$"))
    loader = pc.or_(malformed, cccd_contradicts_birth(arrow)).to_pylist()
    assert {r[0]: flag for r, flag in zip(rows, loader, strict=True)} == sql_verdict
    assert 500 < sum(loader) < len(rows) - 500  # both verdicts well represented


# --- tax codes ------------------------------------------------------------------------------------------------------

def _first9_with_remainder(remainder: int) -> str:
    """Nine digits whose weighted sum leaves `remainder` mod 11 (0 gives check 10: no valid code)."""
    from kho.sources.identity import TAX_CODE_WEIGHTS

    for n in range(10**7, 10**9):
        first9 = f"{n:09d}"
        if sum(w * int(d) for w, d in zip(TAX_CODE_WEIGHTS, first9, strict=True)) % 11 == remainder:
            return first9
    raise AssertionError(remainder)


def _edge_tax_codes() -> list[str]:
    codes = ["0100047516", "0100047517", "0100047516001", "0100047516999", "0100047516000", "0100047517001",
             "01000475160", "010004751", "01000475160011", "", " 100047516", "010004751a", "0\u0661\u0660\u0660047516"]
    for remainder in range(11):  # every weighted-sum remainder, with every last digit
        first9 = _first9_with_remainder(remainder)
        codes += [first9 + str(d) for d in range(10)]
        codes += [first9 + str(d) + "001" for d in range(10)]
    zero_sequence = complete_tax_code("010000000") or complete_tax_code("020000000")
    assert zero_sequence is not None  # a right check digit on the all-zero sequence 0000000, still invalid
    codes += [zero_sequence, zero_sequence + "001"]
    return codes


def _random_tax_codes(rng: random.Random, n: int) -> list[str]:
    codes = []
    for _ in range(n):
        valid = complete_tax_code(f"{rng.randrange(10**9):09d}")
        code = valid if valid is not None and rng.random() < 0.5 else f"{rng.randrange(10**10):010d}"
        if rng.random() < 0.4:
            code += f"{rng.randrange(1000):03d}"
        codes.append(code)
    return codes


def test_tax_codes_agree_with_the_loaders_valid_tax_codes(warehouse: Warehouse) -> None:
    """`valid_tax_codes` accepts a valid 10-digit code or a valid 13-digit branch code; the SQL rule says the same
    as branch false or branch true (each refuses the other's length)."""
    codes = _edge_tax_codes() + _random_tax_codes(random.Random(15), 3000)
    table = warehouse.table("code text", [(i, code) for i, code in enumerate(codes)])
    verdicts = warehouse.per_row(table, {
        "enterprise": (TAX, {"column": "code"}), "branch": (TAX, {"column": "code", "branch": True})})
    valid = valid_tax_codes(pa.array(codes, pa.string())).to_pylist()
    assert {i: not (v["enterprise"] and v["branch"]) for i, v in verdicts.items()} == dict(enumerate(valid))
    assert not any(v["enterprise"] is False and v["branch"] is False for v in verdicts.values())
    assert 500 < sum(valid) < len(codes) - 500


TAX_COLUMNS = "enterprise_code text, branch_code text, parent_code text"
TAX_ROWS: list[tuple[Any, ...]] = [
    # id, enterprise code, branch code, the branch's parent
    (1, "0100047516", "0100047516001", "0100047516"),
    (2, "0100047517", "0100047516999", "0100047516"),  # enterprise: wrong check digit
    (3, "0300588569", "0100047516000", "0100047516"),  # branch: suffix 000
    (4, "010004751", "0100047516002", "0300588569"),  # enterprise: 9 digits; branch: another parent
    (5, "0100047516001", "0100047516003", None),  # enterprise: a branch code; branch: parent unknown, unchecked
    (6, None, None, "0100047516"),  # nulls are not evaluated
    (7, "0100000003", "01000475160", "0100047516"),  # enterprise: sequence 0000000; branch: 11 digits
]


def test_tax_codes_count_bad_check_digits_and_bad_branch_forms(warehouse: Warehouse) -> None:
    from kho.sources.identity import is_valid_tax_code, tax_code_check_digit

    assert is_valid_tax_code("0300588569") and tax_code_check_digit("010000000") == 3
    assert not is_valid_tax_code("0100000003")  # its check digit is right, its sequence is not
    table = warehouse.table(TAX_COLUMNS, TAX_ROWS)
    _check(warehouse, table, TAX, {"column": "enterprise_code"}, {2, 4, 5, 7})
    _check(warehouse, table, TAX, {"column": "branch_code", "branch": True, "parent_column": "parent_code"},
           {3, 4, 7})
    _check(warehouse, table, TAX, {"column": "branch_code", "branch": True}, {3, 7})


def test_tax_codes_pass_valid_enterprise_and_branch_codes(warehouse: Warehouse) -> None:
    table = warehouse.table(TAX_COLUMNS, [TAX_ROWS[0], (2, "0300588569", "0300588569015", "0300588569")])
    _check(warehouse, table, TAX, {"column": "enterprise_code"}, set())
    _check(warehouse, table, TAX, {"column": "branch_code", "branch": True, "parent_column": "parent_code"}, set())


# --- social insurance codes -----------------------------------------------------------------------------------------

SOCIAL_COLUMNS = "social_insurance_code text, cccd text, registered_on date"
SOCIAL_ROWS: list[tuple[Any, ...]] = [
    (1, "7912345678", "079090000001", dt.date(2024, 1, 1)),  # 10 digits before the reform
    (2, "079090000002", "079090000002", dt.date(2024, 1, 1)),  # 12 digits: the CCCD
    (3, "079090000099", "079090000003", dt.date(2024, 1, 1)),  # 12 digits, someone else's number
    (4, "791234567", "079090000004", dt.date(2024, 1, 1)),
    (5, "79123456789", "079090000005", dt.date(2024, 1, 1)),
    (6, "7912345676", "079090000006", dt.date(2025, 6, 30)),  # the day before: a 10-digit code is still issued
    (7, "7912345677", "079090000007", dt.date(2025, 7, 1)),  # from 2025-07-01 a new code is the CCCD
    (8, "079090000008", "079090000008", dt.date(2025, 7, 1)),
    (9, "7912345679", "079090000009", None),  # registration date unknown
    (10, "079090000010", None, dt.date(2025, 7, 1)),  # CCCD unknown: nothing to compare with
    (11, None, "079090000011", dt.date(2025, 7, 1)),
    (12, "79123456a8", "079090000012", dt.date(2024, 1, 1)),
]


def test_social_insurance_codes_from_the_reform_must_be_the_cccd(warehouse: Warehouse) -> None:
    table = warehouse.table(SOCIAL_COLUMNS, SOCIAL_ROWS)
    kwargs = {"column": "social_insurance_code", "cccd_column": "cccd"}
    _check(warehouse, table, SOCIAL, kwargs, {3, 4, 5, 12})
    _check(warehouse, table, SOCIAL, {**kwargs, "registered_on_column": "registered_on"}, {3, 4, 5, 7, 12})
    _check(warehouse, table, SOCIAL, {**kwargs, "registered_on_column": "registered_on", "reform_date": "2025-06-30"},
           {3, 4, 5, 6, 7, 12})


def test_social_insurance_codes_pass_when_well_formed(warehouse: Warehouse) -> None:
    table = warehouse.table(SOCIAL_COLUMNS, [SOCIAL_ROWS[i] for i in (0, 1, 5, 7, 8, 9, 10)])
    _check(warehouse, table, SOCIAL, {"column": "social_insurance_code", "cccd_column": "cccd",
                                      "registered_on_column": "registered_on"}, set())


# --- NFC ------------------------------------------------------------------------------------------------------------

NAME = "Nguyễn Thị Ánh Tuyết"


def test_nfc_counts_decomposed_text(warehouse: Warehouse) -> None:
    nfd = unicodedata.normalize("NFD", NAME)
    mixed = NAME.replace("ễ", "e\u0302\u0303")
    assert nfd != NAME and mixed != NAME
    table = warehouse.table("full_name text", [(1, NAME), (2, nfd), (3, mixed), (4, "An"), (5, ""), (6, None)])
    _check(warehouse, table, NFC, {"column": "full_name"}, {2, 3})


def test_nfc_passes_composed_text(warehouse: Warehouse) -> None:
    table = warehouse.table("full_name text", [(1, NAME), (2, "Đặng Văn Ơn"), (3, None)])
    _check(warehouse, table, NFC, {"column": "full_name"}, set())


# --- commune code valid on the record's date ----------------------------------------------------------------------

COMMUNE_COLUMNS = "commune_code text, registered_on date, updated_at timestamptz"
UTC = dt.UTC
COMMUNE_ROWS: list[tuple[Any, ...]] = [
    # id, code, local date, instant: old codes 25741 25744; new 25744 26734
    (1, "25741", dt.date(2025, 6, 30), dt.datetime(2025, 6, 30, 16, 59, 59, tzinfo=UTC)),  # 23:59:59 local, June 30
    (2, "26734", dt.date(2025, 6, 30), dt.datetime(2025, 6, 30, 17, 30, tzinfo=UTC)),  # 00:30 local, July 1
    (3, "25741", dt.date(2025, 7, 1), dt.datetime(2025, 6, 30, 17, 30, tzinfo=UTC)),
    (4, "26734", dt.date(2025, 7, 1), dt.datetime(2025, 6, 30, 17, 0, tzinfo=UTC)),  # local midnight exactly
    (5, "25741", dt.date(2025, 7, 1), dt.datetime(2025, 6, 30, 16, 59, 59, 999999, tzinfo=UTC)),
    (6, "25744", dt.date(2025, 7, 1), dt.datetime(2026, 1, 1, tzinfo=UTC)),  # kept by the reform
    (7, "99999", None, None),  # no date: not checked
    (8, None, dt.date(2025, 7, 1), dt.datetime(2025, 7, 1, tzinfo=UTC)),
    (9, "25741", dt.date(2019, 1, 1), dt.datetime(2019, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(("date_column", "extra", "expected"), [
    ("registered_on", {}, {2, 3, 5}),
    ("updated_at", {}, {3}),  # 2025-06-30T17:30:00Z is 2025-07-01 in Asia/Ho_Chi_Minh
    ("updated_at", {"timezone": "UTC"}, {2, 4}),
    ("registered_on", {"reform_date": "2025-07-02"}, {2, 4}),
], ids=["local-date", "timestamptz-in-vietnam", "timestamptz-in-utc", "later-reform"])
def test_commune_codes_are_checked_against_the_units_of_the_records_day(
    warehouse: Warehouse, date_column: str, extra: dict[str, str], expected: set[int]
) -> None:
    table = warehouse.table(COMMUNE_COLUMNS, COMMUNE_ROWS)
    kwargs = {"column": "commune_code", "date_column": date_column, **COMMUNE_KWARGS, **extra}
    _check(warehouse, table, COMMUNE, kwargs, expected, PARAMETERS)
    resolved = {**kwargs, "codes_before": OLD_CODES, "codes_from": NEW_CODES}
    for zone in ("America/Los_Angeles", "Asia/Ho_Chi_Minh"):
        assert warehouse.flagged(table, COMMUNE, resolved, session_zone=zone) == expected


def test_commune_codes_pass_when_each_is_in_force_on_its_day(warehouse: Warehouse) -> None:
    table = warehouse.table(COMMUNE_COLUMNS, [COMMUNE_ROWS[i] for i in (0, 3, 5, 6, 7, 8)])
    _check(warehouse, table, COMMUNE, {"column": "commune_code", "date_column": "updated_at", **COMMUNE_KWARGS},
           set(), PARAMETERS)


def test_the_code_lists_come_from_the_runs_expectation_parameters(warehouse: Warehouse) -> None:
    """The same suite judges by whatever lists the run passes, and refuses to run without them."""
    from great_expectations.exceptions.exceptions import SuiteParameterError

    table = warehouse.table(COMMUNE_COLUMNS, COMMUNE_ROWS)
    kwargs = {"column": "commune_code", "date_column": "registered_on", **COMMUNE_KWARGS}
    swapped = {"commune_codes_pre_2025": NEW_CODES, "commune_codes_2025": OLD_CODES}
    assert warehouse.validate(table, [(COMMUNE, kwargs)], swapped) == [Outcome(False, 3)]  # rows 1, 4 and 9
    with pytest.raises(SuiteParameterError, match="commune_codes_pre_2025"):
        warehouse.validate(table, [(COMMUNE, kwargs)], {"commune_codes_2025": NEW_CODES})


# --- one column not before another ------------------------------------------------------------------------------

def test_a_death_before_the_birth_is_counted(warehouse: Warehouse) -> None:
    table = warehouse.table("date_of_birth date, date_of_death date", [
        (1, dt.date(1990, 1, 1), dt.date(2020, 1, 1)),
        (2, dt.date(1990, 1, 1), dt.date(1989, 12, 31)),
        (3, dt.date(1990, 1, 1), dt.date(1990, 1, 1)),
        (4, None, dt.date(1990, 1, 1)),
        (5, dt.date(1990, 1, 1), None),
    ])
    kwargs = {"column": "date_of_death", "other_column": "date_of_birth"}
    _check(warehouse, table, NOT_BEFORE, kwargs, {2})
    _check(warehouse, table, NOT_BEFORE, {**kwargs, "or_equal": False}, {2, 3})


def test_dates_in_order_pass(warehouse: Warehouse) -> None:
    table = warehouse.table("date_of_birth date, date_of_death date",
                            [(1, dt.date(1990, 1, 1), dt.date(1990, 1, 1)), (2, dt.date(1990, 1, 1), None)])
    _check(warehouse, table, NOT_BEFORE, {"column": "date_of_death", "other_column": "date_of_birth"}, set())


# --- all six together -----------------------------------------------------------------------------------------------

def test_gx_counts_all_six_rules_in_one_aggregate_query(warehouse: Warehouse) -> None:
    """Each rule is a row-level expression, so GX bundles every unexpected_count into one scan of the batch."""
    table = warehouse.table(
        "cccd text, birth_province_code text, sex text, date_of_birth date, date_of_death date, "
        "enterprise_code text, social_insurance_code text, registered_on date, full_name text, commune_code text", [
            (1, "074090000001", "74", "M", dt.date(1990, 1, 2), None, "0100047516", "7912345678",
             dt.date(2024, 1, 1), NAME, "25741"),
            (2, "074090000002", "74", "F", dt.date(1990, 1, 2), dt.date(1980, 1, 1), "0100047517", "7912345678",
             dt.date(2025, 7, 1), unicodedata.normalize("NFD", NAME), "25741"),
        ])
    expectations = [
        (CCCD, CCCD_KWARGS),
        (TAX, {"column": "enterprise_code"}),
        (SOCIAL, {"column": "social_insurance_code", "cccd_column": "cccd", "registered_on_column": "registered_on"}),
        (NFC, {"column": "full_name"}),
        (COMMUNE, {"column": "commune_code", "date_column": "registered_on", **COMMUNE_KWARGS}),
        (NOT_BEFORE, {"column": "date_of_death", "other_column": "date_of_birth"}),
    ]
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        outcomes = warehouse.validate(table, expectations, PARAMETERS,
                                      {"result_format": "BASIC", "partial_unexpected_count": 0})
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    assert outcomes == [Outcome(False, 1)] * 6
    (aggregate,) = [s for s in statements if "sum(" in s]
    for metric in ("kho_valid_cccd", "kho_valid_tax_code", "kho_valid_social_insurance_code", "kho_nfc",
                   "kho_commune_code_valid_on_date", "kho_not_before_column"):
        assert f"column_values.{metric}.unexpected_count" in aggregate
    for type_, kwargs in expectations:
        resolved = {**kwargs, "codes_before": OLD_CODES, "codes_from": NEW_CODES} if type_ == COMMUNE else kwargs
        assert warehouse.flagged(table, type_, resolved) == {2}
