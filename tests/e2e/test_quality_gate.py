"""A blocking quality failure in a raw batch stops the night: that batch's `validate_raw` task fails (one mapped task
per batch, each retried on its own), the raw table's Asset is not emitted, `build_warehouse` is not scheduled, and
yesterday's published marts stay exactly as they were.

Real parts end to end: the four sync DAGs run with dag.test() against a registry simulator, into a warehouse
database of their own (the session warehouse's content is left alone for the other e2e tests). dag.test() runs no
scheduler, so whether build_warehouse would start is asked of the scheduler's own query
(`DagModel.dags_needing_dagruns`) over the asset queue Airflow fills as the sync DAGs emit their Assets.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from kho.assets import raw_asset
from kho.build.run import BuildPlan, build, build_dbt, marts_to_publish, publish_marts
from kho.config import KhoConfig
from kho.demo import SYNC_DAGS, DagOutcome, run_dag
from kho.load.pipeline import SyncOptions, sync_api
from kho.simulator import World
from kho.simulator import calendar as cal
from kho.simulator.generate import WorldSpec
from kho.simulator.server import ServerOptions, serve_in_thread
from kho.sources import ENTITIES
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect

pytestmark = pytest.mark.e2e

SPEC = WorldSpec(seed=23, citizens=600, days=1)
"""A clean world: yesterday is day 0, tonight the registries publish day 1."""
CONSUMER = "build_warehouse"
FAILING_DAG = f"sync_{CITIZENS.registry}"
LOADER_BUG = """
CREATE FUNCTION public.loader_bug() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.sex := 'X'; RETURN NEW; END $$;
CREATE TRIGGER loader_bug BEFORE INSERT OR UPDATE ON raw.population__citizens
    FOR EACH ROW EXECUTE FUNCTION public.loader_bug();
"""
"""Plays a loader bug: every citizen row written gets a sex no registry sends, after the contract check passed it.
The loader cannot produce such a row by design, which is what the raw suite's blocking checks are there to catch."""


def published_hashes(config: KhoConfig) -> dict[str, str]:
    """Every published mart's content, one hash per table (row order does not matter)."""
    with connect(config.warehouse, autocommit=True) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                              "WHERE table_schema LIKE 'mart\\_%' ORDER BY 1, 2").fetchall()
        hashes = {}
        for schema, table in tables:
            row = conn.execute(f'SELECT md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) '
                               f'FROM "{schema}"."{table}" AS x').fetchone()
            assert row is not None
            hashes[f"{schema}.{table}"] = row[0]
    return hashes


def publications(config: KhoConfig) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute("SELECT publication_id, run_id FROM kho.publications ORDER BY 1").fetchall()


@pytest.fixture
def yesterday(fresh_db_config: KhoConfig, dagbag: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[KhoConfig]:
    """A warehouse database of its own with day 0 loaded and its marts published, and the DAGs' tasks pointed at it
    and at a registry that has just published day 1. Yesterday is set up outside Airflow and without the mart audit
    and docs (tested elsewhere, and a third of the build's time): only tonight's runs are under test."""
    yield from _yesterday(SPEC, fresh_db_config, monkeypatch)


STALE_SPEC = dataclasses.replace(SPEC, defect_rate=0.3, defect_kinds=frozenset({"stale_commune_code"}))
"""Tonight the registries write some records after the reorganisation with the commune code of before it: the
loader takes them (the contract knows both eras), the raw gate warns."""


@pytest.fixture
def yesterday_then_stale_codes(fresh_db_config: KhoConfig, dagbag: Any, monkeypatch: pytest.MonkeyPatch
                               ) -> Iterator[KhoConfig]:
    yield from _yesterday(STALE_SPEC, fresh_db_config, monkeypatch)


def _yesterday(spec: WorldSpec, fresh_db_config: KhoConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[KhoConfig]:
    world = World.build(spec)
    with serve_in_thread(world, options=ServerOptions(credentials=fresh_db_config.ensure_registry_credentials())
                         ) as simulator:
        config = dataclasses.replace(fresh_db_config, simulator_port=simulator.port)
        for entity in ENTITIES:
            sync_api(config, entity, SyncOptions(page_size=1000))
        plan = BuildPlan("gate-day-0", dt.date.fromordinal(cal.day_ord(0)))
        build_dbt(config, plan)
        publish_marts(config, plan, marts_to_publish(config))
        world.advance(1)
        monkeypatch.setenv("KHO_PG_DATABASE", config.warehouse.dbname)
        monkeypatch.setenv("KHO_SIM_PORT", str(simulator.port))
        yield config


@pytest.fixture
def scheduler_queue(dagbag: Any) -> Iterator[None]:
    """build_warehouse as a scheduler sees it: known to Airflow with its asset references, unpaused (Airflow queues
    asset events only for unpaused consumers), its queue empty at dusk. Put back as found afterwards."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select, update

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)  # what dag.test() and the DAG processor do first
    with create_session() as session:
        paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == CONSUMER))
        assert paused is not None, f"{CONSUMER} is not in Airflow's metadata DB"
        session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == CONSUMER))
        session.execute(update(DagModel).where(DagModel.dag_id == CONSUMER).values(is_paused=False))
    try:
        yield
    finally:
        with create_session() as session:
            session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == CONSUMER))
            session.execute(update(DagModel).where(DagModel.dag_id == CONSUMER).values(is_paused=paused))


def raw_names(entities: Any) -> set[str]:
    return {raw_asset(e).name for e in entities}


def emitted(outcome: DagOutcome) -> set[str]:
    """The Assets (by name, as kho.assets names them) one DAG run emitted, from Airflow's metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return set(session.scalars(
            select(AssetModel.name).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == outcome.dag_id, AssetEvent.source_run_id == outcome.run_id)))


def task_states(outcome: DagOutcome) -> dict[str, str]:
    """State of each task instance of the run: `<task_id>` for a plain task, `<task_id>[<map index>]` for each
    instance of a mapped one."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
                for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == outcome.dag_id,
                                                                     TaskInstance.run_id == outcome.run_id))}


def queued_for_consumer() -> tuple[set[str], bool]:
    """(the raw Assets queued for build_warehouse, whether the scheduler would create its run now)."""
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        queued = set(session.scalars(
            select(AssetModel.name).join(AssetDagRunQueue, AssetDagRunQueue.asset_id == AssetModel.id)
            .where(AssetDagRunQueue.target_dag_id == CONSUMER)))
        _, triggered = DagModel.dags_needing_dagruns(session)
        session.rollback()  # the scheduler's query locks rows; create nothing, release them
    return queued, CONSUMER in triggered


def test_a_blocking_failure_in_a_raw_batch_stops_the_night_before_build_warehouse(
    dagbag: Any, yesterday: KhoConfig, scheduler_queue: None, capfd: pytest.CaptureFixture[str]
) -> None:
    marts, published = published_hashes(yesterday), publications(yesterday)
    assert marts and published, "yesterday's build should have published the marts"
    with connect(yesterday.warehouse, autocommit=True) as conn:
        conn.execute(LOADER_BUG)
    dag = dagbag.get_dag(FAILING_DAG)
    retries = {task.task_id: task.retries for task in dag.tasks}
    try:
        for task in dag.tasks:  # a blocking failure fails again on retry: do not wait out the retry delay here
            task.retries = 0
        tonight = {dag_id: run_dag(dagbag, dag_id) for dag_id in SYNC_DAGS}
    finally:
        for task in dag.tasks:
            task.retries = retries[task.task_id]
    logs = capfd.readouterr()

    failing = tonight.pop(FAILING_DAG)
    assert failing.state == "failed"
    states = task_states(failing)
    assert states[f"{CITIZENS.name}.extract_load"] == "success"
    assert states[f"{CITIZENS.name}.validate_raw"] == "failed"
    assert states[f"{CITIZENS.name}.raw_ready"] == "upstream_failed"
    assert "raw.population__citizens (batch" in logs.out + logs.err
    assert "expect_column_values_to_be_in_set(sex)" in logs.out + logs.err
    others = raw_names(e for e in ENTITIES if e.registry == CITIZENS.registry and e != CITIZENS)
    assert emitted(failing) == others, "every entity but citizens passed its suite and emitted its Asset"
    assert all(o.state == "success" for o in tonight.values()), tonight
    assert set().union(*map(emitted, tonight.values())) == raw_names(e for e in ENTITIES
                                                                     if e.registry != CITIZENS.registry)

    queued, would_run = queued_for_consumer()
    assert queued == raw_names(ENTITIES) - raw_names([CITIZENS])
    assert not would_run, f"{CONSUMER} must wait for every raw Asset; citizens never came"
    assert published_hashes(yesterday) == marts
    assert publications(yesterday) == published

    # The gate was all that held the build back: fixed and reloaded, citizens passes and the night can go on.
    with connect(yesterday.warehouse, autocommit=True) as conn:
        conn.execute("DROP TRIGGER loader_bug ON raw.population__citizens")
    reloaded = run_dag(dagbag, FAILING_DAG, {"full_refresh": True})
    assert reloaded.state == "success" and raw_asset(CITIZENS).name in emitted(reloaded)
    assert queued_for_consumer() == (raw_names(ENTITIES), True)


def test_a_warning_is_recorded_and_reported_but_the_night_goes_on_to_publish(
    dagbag: Any, yesterday_then_stale_codes: KhoConfig, scheduler_queue: None
) -> None:
    config = yesterday_then_stale_codes
    marts, published = published_hashes(config), publications(config)

    tonight = {dag_id: run_dag(dagbag, dag_id) for dag_id in SYNC_DAGS}

    assert {o.state for o in tonight.values()} == {"success"}, tonight
    assert set().union(*map(emitted, tonight.values())) == raw_names(ENTITIES)
    assert queued_for_consumer() == (raw_names(ENTITIES), True), "a warning must not hold back the build"
    with connect(config.warehouse, autocommit=True) as conn:
        warned = conn.execute("SELECT DISTINCT r.rule FROM kho.quality_results r JOIN kho.quality_validations v "
                              "USING (validation_id) WHERE v.state = 'warned' AND NOT r.success").fetchall()
        flagged = conn.execute("SELECT count(*) FROM kho.quality_flags WHERE rule = 'commune_code_valid_for_date'"
                               ).fetchone()
        blocking = conn.execute("SELECT count(*) FROM kho.quality_validations WHERE state = 'failed'").fetchone()
    assert warned == [("commune_code_valid_for_date",)]
    assert flagged is not None and flagged[0] > 0
    assert blocking == (0,)

    build(config, BuildPlan("gate-day-1", dt.date.fromordinal(cal.day_ord(1))))  # audit warns, publication goes on
    assert len(publications(config)) == len(published) + 1
    assert published_hashes(config) != marts


LATER_BATCHES_BUG = """
CREATE FUNCTION public.later_batches_bug() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM raw.population__citizens WHERE _batch_id <> NEW._batch_id) THEN NEW.sex := 'X'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER later_batches_bug BEFORE INSERT ON raw.population__citizens
    FOR EACH ROW EXECUTE FUNCTION public.later_batches_bug();
"""
"""A loader bug that spares the first batch of a load and spoils every later one."""


@pytest.fixture
def first_night(fresh_db_config: KhoConfig, dagbag: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[KhoConfig]:
    """A new, empty warehouse database and a clean registry at day 0, the DAGs' tasks pointed at both."""
    world = World.build(SPEC)
    with serve_in_thread(world, options=ServerOptions(credentials=fresh_db_config.ensure_registry_credentials())
                         ) as simulator:
        monkeypatch.setenv("KHO_PG_DATABASE", fresh_db_config.warehouse.dbname)
        monkeypatch.setenv("KHO_SIM_PORT", str(simulator.port))
        yield fresh_db_config


def test_a_run_s_batches_are_validated_together_and_a_retry_revalidates_the_run(dagbag: Any,
                                                                               first_night: KhoConfig) -> None:
    with connect(first_night.warehouse, autocommit=True) as conn:
        conn.execute(LATER_BATCHES_BUG)
    validate = f"{CITIZENS.name}.validate_raw"
    dag = dagbag.get_dag(FAILING_DAG)
    saved = {t.task_id: (t.retries, t.retry_delay, t.retry_exponential_backoff) for t in dag.tasks}
    try:
        for task in dag.tasks:  # one immediate retry for the gate, none elsewhere
            task.retries = 1 if task.task_id == validate else 0
            task.retry_delay, task.retry_exponential_backoff = dt.timedelta(0), 0
        outcome = run_dag(dagbag, FAILING_DAG, {"pages_per_batch": 1})
    finally:
        for task in dag.tasks:
            task.retries, task.retry_delay, task.retry_exponential_backoff = saved[task.task_id]

    with connect(first_night.warehouse, autocommit=True) as conn:
        batches = [r[0] for r in conn.execute(
            "SELECT batch_id FROM kho.load_ledger WHERE entity = %s ORDER BY batch_id", (CITIZENS.name,))]
        validations = conn.execute(
            "SELECT run_id, first_batch_id, last_batch_id, state, rows_validated FROM kho.quality_validations "
            "WHERE suite_name = %s ORDER BY validation_id", (f"raw.{CITIZENS.raw_table}",)).fetchall()
        spoiled = conn.execute("SELECT count(*) FROM raw.population__citizens WHERE sex = 'X'").fetchone()
    assert len(batches) >= 2, "a page per batch should split the registry's citizens into several batches"
    states = {k: v for k, v in task_states(outcome).items() if k.startswith(f"{CITIZENS.name}.")}
    assert states == {f"{CITIZENS.name}.extract_load": "success", validate: "failed",
                      f"{CITIZENS.name}.raw_ready": "upstream_failed"}
    # One validation per try, each over every batch of the run, each failing on the later batches' rows.
    assert [(v[1], v[2], v[3]) for v in validations] == [(batches[0], batches[-1], "failed")] * 2
    assert {v[0] for v in validations} == {outcome.run_id}
    assert spoiled is not None and spoiled[0] > 0
    assert outcome.state == "failed"
    assert emitted(outcome) == raw_names(e for e in ENTITIES if e.registry == CITIZENS.registry and e != CITIZENS)
