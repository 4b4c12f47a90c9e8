"""`kho.quality.run_suite` against a real PostgreSQL: batch filtering, blocking failures, Data Docs, recording.

The module takes a database of its own in the session warehouse (the binaries and cluster kho itself runs, so it
runs wherever the warehouse does), owned by the application login, so it can shape the raw table freely: the table
is the loader's DDL with one NOT NULL dropped, to play a loader bug the suite must catch.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kho.config import PROJECT_ROOT, KhoConfig
from kho.errors import QualityError
from kho.quality import QualityResult, raise_for_blocking, record_result, run_suite
from kho.quality.runner import warehouse_url
from kho.quality.suites import load_suite
from kho.warehouse.connection import connect, connect_admin
from kho.warehouse.migrations import migrate

pytestmark = pytest.mark.integration

RAW_SUITE = PROJECT_ROOT / "expectations" / "raw.population__citizens.json"
MART_SUITE = PROJECT_ROOT / "expectations" / "mart_population.citizens_per_commune.json"
GOOD_BATCH, BAD_BATCH, OUT_OF_BOUNDS_BATCH, EMPTY_BATCH = 1, 2, 3, 999

CITIZEN_ROWS = [
    # cccd, full_name, date_of_birth, sex, birth_province_code, permanent_commune_code, status, batch
    ("074090000001", "Nguyễn Văn An", "1990-01-02", "M", "74", "25741", "alive", GOOD_BATCH),
    ("074190000002", "Trần Thị Bình", "1990-03-04", "F", "74", "25741", "alive", GOOD_BATCH),
    ("074050000003", "Lê Văn Cường", "1950-05-06", "M", "74", "25744", "deceased", GOOD_BATCH),
    ("074300000004", "Phạm Thị Dung", "2000-07-08", "F", "74", "25747", "alive", BAD_BATCH),
    ("074090000005", None, "1990-09-10", "M", "74", "25747", "alive", BAD_BATCH),
    ("074099000006", "Đ" * 101, "1899-12-31", "M", "74", "25747", "alive", OUT_OF_BOUNDS_BATCH),
]


@dataclass(frozen=True)
class Server:
    config: KhoConfig
    """The session warehouse, pointed at this module's database."""
    url: str
    """SQLAlchemy URL for GX, as the pipeline builds it: the application login's real password in it."""

    @property
    def password(self) -> str:
        return self.config.warehouse.password()

    def connect(self) -> psycopg.Connection:
        return connect(self.config.warehouse, autocommit=True)


@pytest.fixture(scope="module")
def server(kho_config: KhoConfig) -> Iterator[Server]:
    """A new database in the session warehouse, created by the administrator and owned by the application login
    (no superuser power needed to shape its own tables), dropped at the end."""
    name = f"t_quality_{uuid.uuid4().hex[:12]}"
    wh = kho_config.warehouse
    with connect_admin(wh, dbname="postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(wh.user)))
    config = dataclasses.replace(kho_config, warehouse=dataclasses.replace(wh, dbname=name))
    try:
        yield Server(config, warehouse_url(config.warehouse))
    finally:
        with connect_admin(wh, dbname="postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def warehouse(server: Server) -> Server:
    """raw.population__citizens as `kho warehouse migrate` makes it, minus one NOT NULL, holding one good and one
    bad batch."""
    with server.connect() as conn:
        migrate(conn)
        conn.execute("ALTER TABLE raw.population__citizens ALTER COLUMN full_name DROP NOT NULL")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO raw.population__citizens (cccd, full_name, date_of_birth, sex, birth_province_code, "
                "permanent_commune_code, status, updated_at, _batch_id, _first_batch_id, ethnicity, "
                "hometown_province_code) VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s, %s, 'Kinh', '74')",
                [(*row[:7], row[7], row[7]) for row in CITIZEN_ROWS],
            )
    return server


@pytest.fixture(scope="module")
def gx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One GX file context for the module, as the pipeline keeps one under KHO_HOME."""
    return tmp_path_factory.mktemp("gx-home")


def _raw(warehouse: Server, gx_home: Path, batch_id: int | None, **kwargs: bool) -> QualityResult:
    return run_suite(gx_home, warehouse.url, RAW_SUITE, "raw", "population__citizens", batch_id=batch_id, **kwargs)


def test_a_good_batch_passes_and_gets_a_data_docs_page(warehouse: Server, gx_home: Path) -> None:
    result = _raw(warehouse, gx_home, GOOD_BATCH)
    assert result.success, result.failures
    expected = len(load_suite(RAW_SUITE)["expectations"])
    assert (result.evaluated, result.failed, result.blocking_failed) == (expected, 0, 0)
    assert result.batch_id == GOOD_BATCH and result.table == "raw.population__citizens"
    assert result.data_docs_path is not None and result.data_docs_path.is_file()
    assert gx_home in result.data_docs_path.parents
    assert (gx_home / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()
    raise_for_blocking(result)


def test_a_null_required_value_fails_the_batch_as_blocking(warehouse: Server, gx_home: Path) -> None:
    result = _raw(warehouse, gx_home, BAD_BATCH)
    assert not result.success
    assert result.blocking_failed == 1
    (failure,) = result.failures
    assert failure == ("expect_column_values_to_not_be_null", "full_name", False, 1, "blocking")
    message = r"raw\.population__citizens \(batch 2\).*to_not_be_null\(full_name\): 1 unexpected"
    with pytest.raises(QualityError, match=message):
        raise_for_blocking(result)


def test_a_value_beyond_a_contract_bound_fails_the_raw_suite(warehouse: Server, gx_home: Path) -> None:
    """A name of 101 characters and a birth in 1899: what the loader quarantines, caught if it reached raw."""
    result = _raw(warehouse, gx_home, OUT_OF_BOUNDS_BATCH, build_docs=False)
    assert sorted(result.failures) == [
        ("expect_column_value_lengths_to_be_between", "full_name", False, 1, "blocking"),
        ("expect_column_values_to_be_between", "date_of_birth", False, 1, "blocking"),
    ]


def test_only_the_given_batchs_rows_are_validated(warehouse: Server, gx_home: Path) -> None:
    assert _raw(warehouse, gx_home, GOOD_BATCH, build_docs=False).success
    whole = _raw(warehouse, gx_home, None, build_docs=False)
    assert not whole.success and whole.batch_id is None
    by_check = {(r.type, r.column): r.unexpected_count for r in whole.results}
    assert by_check[("expect_column_values_to_not_be_null", "full_name")] == 1


def test_a_batch_that_owns_no_rows_has_nothing_to_validate(warehouse: Server, gx_home: Path) -> None:
    result = _raw(warehouse, gx_home, EMPTY_BATCH, build_docs=False)
    assert (result.success, result.evaluated, result.results, result.data_docs_path) == (True, 0, (), None)


def test_the_warehouse_password_is_never_written_under_gx_home(warehouse: Server, gx_home: Path) -> None:
    _raw(warehouse, gx_home, GOOD_BATCH)
    assert warehouse.password in warehouse.url
    leaks = [p for p in gx_home.rglob("*") if p.is_file() and warehouse.password.encode() in p.read_bytes()]
    assert leaks == []
    assert "${KHO_GX_WAREHOUSE_URL}" in (gx_home / "gx" / "great_expectations.yml").read_text()


def test_mart_suite_catches_counts_that_do_not_add_up(server: Server, gx_home: Path) -> None:
    with server.connect() as conn:
        conn.execute(
            "CREATE SCHEMA mart_population; CREATE TABLE mart_population.citizens_per_commune ("
            " permanent_commune_code text PRIMARY KEY, commune_name text, district_name text, province_code text,"
            " province_code_2025 text, citizens_total bigint NOT NULL, citizens_alive bigint NOT NULL,"
            " citizens_male bigint NOT NULL, citizens_female bigint NOT NULL)"
        )
        conn.execute(
            "INSERT INTO mart_population.citizens_per_commune VALUES"
            " ('25741', 'Phường Hiệp Thành', 'Thành phố Thủ Dầu Một', '74', '79', 3, 2, 2, 1),"
            " ('25744', 'Phường Phú Lợi', 'Thành phố Thủ Dầu Một', '74', '79', 2, 2, 1, 0)"
        )
    result = run_suite(gx_home, server.url, MART_SUITE, "mart_population", "citizens_per_commune", build_docs=False)
    assert [(r.type, r.unexpected_count, r.severity) for r in result.failures] == [
        ("unexpected_rows_expectation", 1, "blocking")
    ]


def test_record_result_stores_one_row_per_run(warehouse: Server, gx_home: Path) -> None:
    result = _raw(warehouse, gx_home, BAD_BATCH, build_docs=False)
    with warehouse.connect() as conn:
        with conn.transaction():
            result_id = record_result(conn, result)
        row = conn.execute(
            "SELECT suite_name, table_name, batch_id, success, evaluated, failed, blocking_failed,"
            " jsonb_path_query_array(results, '$[*] ? (@.success == false).column') FROM kho.quality_results"
            " WHERE result_id = %s",
            (result_id,),
        ).fetchone()
    assert row == ("raw.population__citizens", "raw.population__citizens", BAD_BATCH, False, result.evaluated, 1, 1,
                   ["full_name"])
