"""The main job end to end: real DAG runs (dag.test), real dbt through Cosmos, real GX, primary + standby."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from kho.config import KhoConfig
from kho.demo import run_dag
from kho.warehouse.connection import connect, connect_standby, wait_for_standby

pytestmark = pytest.mark.e2e


def query(conn: Any, text: str) -> Any:
    row = conn.execute(text).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


@pytest.fixture(scope="module")
def first_runs(kho_config: KhoConfig, dagbag: Any, simulator: Any) -> dict[str, str]:
    """Every DAG once, in order, as the demo runs them."""
    from kho.demo import DAG_ORDER

    return {dag_id: run_dag(dagbag, dag_id).state for dag_id in DAG_ORDER}


def test_every_dag_succeeds(first_runs: dict[str, str]) -> None:
    from kho.demo import DAG_ORDER

    assert first_runs == dict.fromkeys(DAG_ORDER, "success")


def test_the_nightly_build_writes_the_run_report_after_publishing(
    kho_config: KhoConfig, first_runs: dict[str, str]
) -> None:
    page = kho_config.home / "report" / "index.html"
    with connect(kho_config.warehouse, autocommit=True) as conn:
        published = query(conn, "SELECT max(published_at) FROM kho.publications")
    assert page.stat().st_mtime >= published.timestamp()
    text = page.read_text(encoding="utf-8")
    for plot in ("ledger", "quality_days", "coverage_new", "coverage_old", "coverage_communes", "vital_events"):
        assert f'id="{plot}" data-state="drawn"' in text, plot


def test_kho_runs_and_kho_status_show_each_dags_newest_run_as_airflow_recorded_it(
    kho_config: KhoConfig, first_runs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Read from Airflow's own metadata DB, which the runs above wrote (right after them, before later tests run
    more)."""
    from kho.cli import build_parser
    from kho.demo import DAG_ORDER
    from kho.status import gather

    args = build_parser().parse_args(["runs", "--limit", "100"])
    assert args.handler(args, kho_config) == 0
    newest: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        newest.setdefault(line.split()[0], line.split())
    assert {dag_id: newest[dag_id][2] for dag_id in DAG_ORDER} == dict.fromkeys(DAG_ORDER, "success")
    assert all(newest[dag_id][-1] == "s" for dag_id in DAG_ORDER), "each run's duration"
    report = gather(kho_config)
    assert not isinstance(report.dags, str)
    lines = {d.dag_id: d for d in report.dags}
    assert [d.dag_id for d in report.dags][:len(DAG_ORDER)] == list(DAG_ORDER)
    assert {dag_id: (lines[dag_id].last.state if lines[dag_id].last else None) for dag_id in DAG_ORDER} == \
        dict.fromkeys(DAG_ORDER, "success")
    assert {dag_id: lines[dag_id].last.run_id if lines[dag_id].last else None for dag_id in DAG_ORDER} == \
        {dag_id: newest[dag_id][1] for dag_id in DAG_ORDER}
    assert not isinstance(report.datasets, str) and {d.name for d in report.datasets} >= {
        "mart_population.golden_citizens", "mart_audit.cross_registry_contradictions"}


def test_the_mart_counts_every_simulated_citizen_on_primary_and_standby(
    kho_config: KhoConfig, first_runs: dict[str, str]
) -> None:
    expected = kho_config.simulator_citizens
    total = "SELECT sum(citizens_total) FROM mart_population.citizens_per_commune"
    golden = "SELECT count(*) FROM mart_population.golden_citizens"
    with connect(kho_config.warehouse, autocommit=True) as primary:
        assert query(primary, total) == expected
        assert query(primary, golden) == expected
        assert query(primary, "SELECT count(*) FROM raw.population__citizens") == expected
    wait_for_standby(kho_config.warehouse)
    with connect_standby(kho_config.warehouse) as standby:
        assert query(standby, "SELECT pg_is_in_recovery()") is True
        assert query(standby, total) == expected
        assert query(standby, golden) == expected


def test_quality_results_are_recorded_for_raw_and_mart(kho_config: KhoConfig, first_runs: dict[str, str]) -> None:
    """Every raw table and mart validated, no blocking expectation failed (the night published), and any warning's
    rows listed in kho.quality_flags."""
    with connect(kho_config.warehouse, autocommit=True) as conn:
        suites = {r[0]: r[1] for r in conn.execute(
            "SELECT suite_name, coalesce(bool_and(success) FILTER (WHERE severity = 'blocking'), true) "
            "FROM kho.quality_results GROUP BY suite_name")}
        unlisted = conn.execute(
            "SELECT r.suite_name, r.expectation_type FROM kho.quality_results r WHERE NOT r.success AND "
            "r.severity = 'warning' AND r.unexpected_count > 0 AND r.expectation_type LIKE 'expect_column_values%' "
            "AND NOT EXISTS (SELECT FROM kho.quality_flags f WHERE f.validation_id = r.validation_id AND "
            "f.expectation_index = r.expectation_index)").fetchall()
    from kho.config import PROJECT_ROOT
    from kho.quality.project import mart_suites
    from kho.sources import ENTITIES

    marts = set(mart_suites(PROJECT_ROOT / "expectations"))
    assert set(suites) == {f"raw.{e.raw_table}" for e in ENTITIES} | marts
    assert all(suites.values())
    assert unlisted == []


def test_the_demo_summary_shows_the_published_datasets_quarantine_and_audit(
    kho_config: KhoConfig, first_runs: dict[str, str]
) -> None:
    import io

    from kho.demo import DagOutcome, summary

    out = io.StringIO()
    summary(kho_config, [DagOutcome(dag_id, state, "run") for dag_id, state in first_runs.items()], out)
    text = out.getvalue()
    for heading in ("Published datasets (publication #", "Quarantine by reason", "Cross-registry contradictions",
                    "Load ledger per entity"):
        assert heading in text
    golden = next(line for line in text.splitlines() if "mart_population.golden_citizens" in line).split()
    assert golden[1] == golden[2] == str(kho_config.simulator_citizens), "rows on the primary and on the standby"


def test_the_demo_gives_each_agency_a_login_that_reads_its_datasets_on_the_standby(
    kho_config: KhoConfig, first_runs: dict[str, str]
) -> None:
    import io

    from psycopg import sql

    from kho.demo import DagOutcome, apply_access, summary
    from kho.warehouse import access
    from kho.warehouse.connection import connect_admin

    try:
        agencies = apply_access(kho_config)
        out = io.StringIO()
        summary(kho_config, [DagOutcome(d, s, "run") for d, s in first_runs.items()], out, agencies=agencies)
        text = out.getvalue()
        assert "Agency logins" in text and 'psql "$(uv run kho access credentials health)"' in text
        seen = {a.role: (a.dataset, a.rows) for a in agencies}
        assert set(seen) == {"agency_health", "agency_police", "agency_statistics", "agency_tax"}
        assert seen["agency_health"][0].startswith("masked_health.") and seen["agency_health"][1] > 0
        assert seen["agency_police"][0].startswith("mart_population.")
        with connect(kho_config.warehouse, autocommit=True) as conn:
            everyone = query(conn, "SELECT count(*) FROM mart_population.golden_citizens")
        assert 0 < seen["agency_police"][1] < everyone, "the police read province 79 only"
    finally:  # the agencies' roles are cluster-wide: leave none behind, and PUBLIC's defaults as other modules expect
        with connect_admin(kho_config.warehouse) as conn:
            access.apply(conn, kho_config, access.AccessFile(agencies=()))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC").format(
                sql.Identifier(kho_config.warehouse.dbname)))
            conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")


def _published_hashes(conn: Any) -> dict[str, str]:
    tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                          "WHERE table_schema LIKE 'mart\\_%' ORDER BY 1, 2").fetchall()
    return {f"{s}.{t}": query(conn, f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                                    f"FROM {s}.{t} AS x") for s, t in tables}


def test_a_build_failing_a_dbt_test_fails_naming_it_and_leaves_the_published_marts_unchanged(
    kho_config: KhoConfig, dagbag: Any, first_runs: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    with connect(kho_config.warehouse, autocommit=True) as conn:
        before = _published_hashes(conn)
        publications = query(conn, "SELECT count(*) FROM kho.publications")
        # A sex no registry may send, written behind the loader's back: golden_citizens' accepted_values test fails.
        conn.execute("INSERT INTO raw.population__citizens (cccd, full_name, date_of_birth, sex, ethnicity, "
                     "birth_province_code, hometown_province_code, permanent_commune_code, status, updated_at, "
                     "_batch_id, _first_batch_id) SELECT '001990000001', 'Lỗi Thử', date '1999-01-01', 'X', 'Kinh', "
                     "'01', '01', permanent_commune_code, 'alive', now(), _batch_id, _batch_id "
                     "FROM raw.population__citizens LIMIT 1")
    dag = dagbag.get_dag("build_warehouse")
    retries = {task.task_id: task.retries for task in dag.tasks}
    try:
        for task in dag.tasks:  # a failing test fails again on retry: do not wait out the retry delay here
            task.retries = 0
        outcome = run_dag(dagbag, "build_warehouse", {"full_refresh": True})
        logs = capfd.readouterr()
        with connect(kho_config.warehouse, autocommit=True) as conn:
            assert _published_hashes(conn) == before
            assert query(conn, "SELECT count(*) FROM kho.publications") == publications
        assert outcome.state == "failed"
        assert "accepted_values_golden_citizens_sex" in logs.out + logs.err
    finally:
        for task in dag.tasks:
            task.retries = retries[task.task_id]
        with connect(kho_config.warehouse, autocommit=True) as conn:
            conn.execute("DELETE FROM raw.population__citizens WHERE cccd = '001990000001'")


def test_a_second_sync_loads_nothing_new_and_the_ledger_says_so(
    kho_config: KhoConfig, dagbag: Any, first_runs: dict[str, str]
) -> None:
    assert run_dag(dagbag, "sync_population").state == "success"
    with connect(kho_config.warehouse, autocommit=True) as conn:
        last = conn.execute(
            "SELECT rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected, rows_loaded "
            "FROM kho.load_ledger WHERE entity = 'citizens' ORDER BY batch_id DESC LIMIT 1").fetchone()
        raw_rows = query(conn, "SELECT count(*) FROM raw.population__citizens")
    assert last is not None
    read, new, changed, unchanged, rejected, loaded = last
    assert (new, changed, loaded, rejected) == (0, 0, 0, 0)
    assert read == unchanged
    assert raw_rows == kho_config.simulator_citizens


@pytest.fixture
def defective_registry(kho_config: KhoConfig, monkeypatch: pytest.MonkeyPatch, fresh_db_config: KhoConfig
                       ) -> Iterator[tuple[KhoConfig, Any]]:
    """A registry with injected defects behind OAuth2, read by the DAG into a database of its own."""
    from kho.simulator import World, WorldSpec
    from kho.simulator.server import ServerOptions, serve_in_thread
    from tests.conftest import free_port

    port = free_port()
    world = World.build(WorldSpec(11, 600, 0, 0.05))
    options = ServerOptions(credentials=kho_config.ensure_registry_credentials())
    running = serve_in_thread(world, "127.0.0.1", port, options)
    monkeypatch.setenv("KHO_SIM_PORT", str(port))
    monkeypatch.setenv("KHO_PG_DATABASE", fresh_db_config.warehouse.dbname)
    yield dataclasses.replace(fresh_db_config, simulator_port=port), world
    running.stop()


def test_defective_records_end_in_quarantine_with_their_reason_and_the_ledger_adds_up(
    dagbag: Any, defective_registry: tuple[KhoConfig, Any]
) -> None:
    from kho.sources.population import CITIZENS

    config, world = defective_registry
    truth = [d for d in world.ground_truth if d.qualified_entity == CITIZENS.qualified_name and d.expected_reason_code]
    assert truth, "the defect rate should inject row-level defects"
    served = world.snapshot(CITIZENS)
    assert run_dag(dagbag, "sync_population").state == "success"
    with connect(config.warehouse, autocommit=True) as conn:
        read, new, changed, unchanged, rejected = conn.execute(
            "SELECT sum(rows_read), sum(rows_new), sum(rows_changed), sum(rows_unchanged), sum(rows_rejected) "
            "FROM kho.load_ledger WHERE entity = 'citizens'").fetchone()
        quarantined = sorted(conn.execute(
            "SELECT payload->>'cccd', reason_code FROM kho.quarantine WHERE entity = 'citizens'").fetchall(), key=str)
        loaded = query(conn, "SELECT count(*) FROM raw.population__citizens")
    assert read == len(served) == new + changed + unchanged + rejected
    assert quarantined == sorted(((d.key[0], d.expected_reason_code) for d in truth), key=str)
    assert loaded == len({r["cccd"] for r in served} - {d.key[0] for d in truth})


def test_the_standby_holds_the_same_content_as_the_primary_in_every_table(
    kho_config: KhoConfig, first_runs: dict[str, str]
) -> None:
    """Last in the module, so it compares what every test above left; a checksum per table, not a count."""
    from kho.sources import ENTITIES
    from tests.support.checksums import differences, primary_and_standby_checksums

    wait_for_standby(kho_config.warehouse)
    primary, standby = primary_and_standby_checksums(kho_config.warehouse)
    schemas = {name.split(".")[0] for name in primary}
    assert {"raw", "kho", "intermediate", "snapshots", "reference"} <= schemas
    assert {f"raw.{e.raw_table}" for e in ENTITIES} <= set(primary)
    published = {name for name in primary if name.startswith("mart_")}
    assert {name.split(".")[0] for name in published} == {
        "mart_population", "mart_civil_status", "mart_health", "mart_business", "mart_audit"}
    assert primary["mart_population.golden_citizens"].rows == kho_config.simulator_citizens
    assert differences(primary, standby) == {}
