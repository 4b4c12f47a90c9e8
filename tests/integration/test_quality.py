"""The raw gate against a real PostgreSQL and GX: a run's batches validated at once through the gate view, every
expectation's outcome in kho.quality_results, every row failing a warning in kho.quality_flags, a blocking failure
that names what failed, the webhook, and retention.

The module takes a database of its own in the session warehouse, migrated as `kho warehouse migrate` does, and
writes raw citizens directly (the loader is tested elsewhere): batches 1-2 are a clean run, batch 3 plays a loader
bug (a sex no registry sends), batch 4 carries citizens written after the 2025 reorganisation with a commune code
of before it (loaded: the contract takes both eras), more of them than GX would sample.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kho.config import PROJECT_ROOT, KhoConfig, QualityConfig
from kho.errors import QualityError, WarehouseError
from kho.quality import validate_raw
from kho.quality.flags import flag_query
from kho.quality.project import raw_table_target
from kho.quality.retention import prune
from kho.quality.suites import load_suite, parameter_values, suite_path
from kho.sources import ENTITIES, Entity, reference
from kho.warehouse.connection import connect
from kho.warehouse.migrations import migrate
from tests.conftest import free_port, new_database

pytestmark = pytest.mark.integration

TABLE = "population__citizens"
SUITE = f"raw.{TABLE}"
CLEAN_RUN, LOADER_BUG, STALE_COMMUNES, NOTHING = (1, 2), (3, 3), (4, 4), (900, 901)
STALE = 30
"""Rows of batch 4 with a pre-2025 commune code on a record written after 2025-07-01: more than GX's sample (20)."""
OLD_ONLY = sorted(reference.commune_codes() - reference.commune_codes_2025())
NEW = sorted(reference.commune_codes_2025())
BEFORE = dt.datetime(2025, 6, 1, 3, tzinfo=dt.UTC)
AFTER = dt.datetime(2025, 7, 2, 3, tzinfo=dt.UTC)


def citizen(serial: int, batch: int, *, sex: str = "M", commune: str | None = None,
            updated_at: dt.datetime = BEFORE) -> tuple[Any, ...]:
    """A citizen every blocking check accepts: the CCCD agrees with province 74, sex and a 1990 birth."""
    born = dt.date(1990, 1, 1) + dt.timedelta(days=serial % 300)
    digit = {"M": 0, "F": 1}.get(sex, 0)
    cccd = f"074{digit}90{serial:06d}"
    return (cccd, f"Nguyễn Văn {serial}", born, sex, "Kinh", "74", "74", commune or OLD_ONLY[serial % 50], "alive",
            updated_at, batch, batch)


ROWS = [
    *(citizen(i, 1) for i in range(40)),
    *(citizen(100 + i, 2, sex="F") for i in range(25)),
    *(citizen(200 + i, 3, sex="X" if i < 2 else "M") for i in range(10)),
    *(citizen(300 + i, 4, commune=OLD_ONLY[i] if i < STALE else NEW[i], updated_at=AFTER) for i in range(STALE + 5)),
]


@pytest.fixture(scope="module")
def config(kho_config: KhoConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KhoConfig]:
    with new_database(kho_config) as db_config:
        home = tmp_path_factory.mktemp("quality-home")
        (home / "secrets").mkdir()
        config = dataclasses.replace(db_config, home=home)
        with connect(config.warehouse, autocommit=True) as conn:
            migrate(conn)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO raw.population__citizens (cccd, full_name, date_of_birth, sex, ethnicity, "
                    "birth_province_code, hometown_province_code, permanent_commune_code, status, updated_at, "
                    "_batch_id, _first_batch_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", ROWS)
        yield config


def fetch(config: KhoConfig, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def run(config: KhoConfig, batches: tuple[int, int], run_id: str = "test") -> Any:
    return validate_raw(config, TABLE, list(batches), run_id=run_id)


def test_a_run_s_batches_are_validated_at_once_and_every_outcome_recorded(config: KhoConfig) -> None:
    result = run(config, CLEAN_RUN, "clean-run")

    expected = len(load_suite(suite_path(config.expectations_dir, SUITE))["expectations"])
    assert (result.state, len(result.results), result.rows) == ("passed", expected, 65)
    assert fetch(config, "SELECT run_id, first_batch_id, last_batch_id, state, rows_validated, evaluated, failed "
                         "FROM kho.quality_validations WHERE validation_id = %s", result.validation_id) == [
        ("clean-run", 1, 2, "passed", 65, expected, 0)]
    recorded = fetch(config, "SELECT expectation_index, suite_name, severity, success, unexpected_count, "
                             "first_batch_id, last_batch_id FROM kho.quality_results WHERE validation_id = %s "
                             "ORDER BY 1", result.validation_id)
    assert [r[0] for r in recorded] == list(range(expected))
    assert {(r[1], r[3], r[5], r[6]) for r in recorded} == {(SUITE, True, 1, 2)}
    assert {r[2] for r in recorded} == {"blocking", "warning"}
    assert {r[4] for r in recorded if r[4] is not None} == {0}


def test_a_blocking_failure_stops_with_each_failing_expectation_and_its_count(config: KhoConfig) -> None:
    with pytest.raises(QualityError) as err:
        run(config, LOADER_BUG)

    message = str(err.value)
    assert "\n" not in message
    assert f"{SUITE} (batch 3) failed 1 blocking expectation(s)" in message
    assert "expect_column_values_to_be_in_set(sex): 2 of 10 rows unexpected" in message
    (state,) = fetch(config, "SELECT state FROM kho.quality_validations WHERE first_batch_id = 3")
    assert state == ("failed",)
    assert fetch(config, "SELECT column_name, unexpected_count FROM kho.quality_results r JOIN "
                         "kho.quality_validations v USING (validation_id) WHERE v.first_batch_id = 3 AND NOT success"
                         ) == [("sex", 2)]


def test_a_warning_lets_the_run_go_on_and_lists_every_failing_row_keyed_to_row_and_batch(config: KhoConfig
                                                                                       ) -> None:
    result = run(config, STALE_COMMUNES)

    assert result.state == "warned" and result.flagged == STALE
    (failure,) = result.failures
    assert (failure.rule, failure.column, failure.unexpected_count) == (
        "commune_code_valid_for_date", "permanent_commune_code", STALE)
    flags = fetch(config, "SELECT row_key ->> 'cccd', batch_id, observed ->> 'permanent_commune_code', rule "
                          "FROM kho.quality_flags WHERE validation_id = %s ORDER BY 1", result.validation_id)
    stale = sorted((r[0], r[11], r[7]) for r in ROWS if r[10] == 4 and r[7] in set(OLD_ONLY))
    assert [(f[0], f[1], f[2]) for f in flags] == stale
    assert {f[3] for f in flags} == {"commune_code_valid_for_date"}


def test_rows_outside_the_run_s_range_are_not_validated(config: KhoConfig) -> None:
    assert run(config, (1, 1)).state == "passed"  # batch 3's loader bug is not batch 1's


def test_a_run_that_left_no_row_has_nothing_to_validate(config: KhoConfig) -> None:
    result = run(config, NOTHING)
    assert (result.state, result.rows) == ("passed", 0)


def test_a_validation_left_running_by_a_dead_process_is_abandoned_by_the_next(config: KhoConfig) -> None:
    (dead,) = fetch(config, "INSERT INTO kho.quality_validations (suite_name, table_name, first_batch_id, "
                            "last_batch_id) VALUES (%s, %s, 3, 3) RETURNING validation_id", SUITE, SUITE)
    assert run(config, CLEAN_RUN).state == "passed"  # the gate view shows the clean run, not batch 3
    assert fetch(config, "SELECT state FROM kho.quality_validations WHERE validation_id = %s", dead[0]) == [
        ("abandoned",)]


def test_gx_writes_only_under_kho_gx_home_and_never_the_password(config: KhoConfig) -> None:
    def digest() -> dict[str, str]:
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((PROJECT_ROOT / "expectations").rglob("*")) if p.is_file()}

    before = digest()
    run(config, STALE_COMMUNES)
    assert digest() == before
    written = [p for p in config.gx_home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and "validations" in p.parts for p in written)
    assert not [p for p in written if config.warehouse.password().encode() in p.read_bytes()]


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on localhost that keeps what is POSTed to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/quality", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_the_webhook_receives_a_json_summary_of_each_gate_that_found_something(
        config: KhoConfig, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = receiver
    hooked = dataclasses.replace(config, quality=QualityConfig(webhook_url=url))

    run(hooked, CLEAN_RUN)
    assert received == [], "a clean gate is not news"
    warned = run(hooked, STALE_COMMUNES)
    with pytest.raises(QualityError):
        run(hooked, LOADER_BUG)

    first, second = received
    assert (first["validation_id"], first["state"], first["source"]) == (warned.validation_id, "warned", "kho.quality")
    assert first["failures"] == [{"expectation": "expect_column_values_to_be_commune_code_valid_on_date",
                                  "column": "permanent_commune_code", "rule": "commune_code_valid_for_date",
                                  "severity": "warning", "unexpected_count": STALE}]
    assert first["flagged_rows"] == STALE and "commune_code_valid_for_date" in first["text"]
    assert (second["state"], second["blocking_failed"], second["first_batch_id"]) == ("failed", 1, 3)


def test_a_webhook_that_cannot_be_reached_does_not_change_the_gate(config: KhoConfig) -> None:
    nobody = dataclasses.replace(config, quality=QualityConfig(webhook_url=f"http://127.0.0.1:{free_port()}/x",
                                                               webhook_timeout=1))
    assert run(nobody, STALE_COMMUNES).state == "warned"


def test_retention_removes_old_results_pages_and_flags_and_keeps_the_trends(config: KhoConfig) -> None:
    result = run(config, STALE_COMMUNES)
    assert fetch(config, "SELECT count(*) FROM kho.quality_flags WHERE validation_id = %s", result.validation_id) == [
        (STALE,)]
    results = config.gx_home / "validations"
    assert any(results.rglob("*.json"))

    with connect(config.warehouse, autocommit=True) as conn:
        kept = prune(config, conn, days=30, now=dt.datetime.now(dt.UTC))
        assert kept.results == 0 and kept.flags == 0
        pruned = prune(config, conn, days=30, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=31))

    assert pruned.results > 0 and pruned.flags >= STALE
    assert not any(results.rglob("*.json"))
    assert fetch(config, "SELECT count(*) FROM kho.quality_flags") == [(0,)]
    assert fetch(config, "SELECT count(*) > 0 FROM kho.quality_results WHERE validation_id = %s",
                 result.validation_id) == [(True,)]


def test_a_database_not_migrated_for_the_gates_is_refused_in_one_line(empty_db_config: KhoConfig) -> None:
    with pytest.raises(WarehouseError, match="kho warehouse migrate") as err:
        validate_raw(empty_db_config, TABLE, [1])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.qualified_name)
def test_every_row_level_expectation_of_every_raw_suite_lists_its_rows_in_sql_postgresql_runs(
        config: KhoConfig, entity: Entity) -> None:
    """What kho.quality_flags would run for each expectation, had it failed as a warning: PostgreSQL accepts every
    one (types, operators, parameters), none lists a row of the clean run (GX passed it), and on batch 3 the sex
    check finds exactly the loader bug's rows."""
    suite = load_suite(suite_path(config.expectations_dir, f"raw.{entity.raw_table}"))
    values = parameter_values()
    listed = 0
    with connect(config.warehouse, autocommit=True) as conn:
        for exp in suite["expectations"]:
            kwargs = {k: values[v["$PARAMETER"]] if isinstance(v, dict) else v for k, v in exp["kwargs"].items()}
            target = raw_table_target(entity.raw_table)
            query = flag_query(target, exp["type"], kwargs, batch_range=(3, 3))
            if query is None:
                assert exp["type"].startswith("expect_table_"), exp["type"]
                continue
            rows = conn.execute(query.sql, query.params).fetchall()  # type: ignore[arg-type]
            listed += 1
            clean = flag_query(target, exp["type"], kwargs, batch_range=CLEAN_RUN)
            assert clean is not None
            assert conn.execute(clean.sql, clean.params).fetchall() == [], (  # type: ignore[arg-type]
                exp["type"], exp["kwargs"].get("column"))
            if entity.raw_table == TABLE and exp["kwargs"].get("column") == "sex" and "value_set" in exp["kwargs"]:
                assert sorted(r[0]["cccd"] for r in rows) == sorted(r[0] for r in ROWS if r[3] == "X")
    assert listed == len(suite["expectations"]) - 1
