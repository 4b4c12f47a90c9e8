"""Every DAG file imports cleanly and carries what operations rely on: tags, owner, retries, no cycles."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter

from kho import dag_defaults
from kho.assets import raw_asset
from kho.build.dbt import DBT_PROJECT
from kho.config import PROJECT_ROOT
from kho.sources import REGISTRIES, entities_of

pytestmark = pytest.mark.e2e
DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))


def test_every_dag_file_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert {Path(d.fileloc).name for d in dagbag.dags.values()} == {p.name for p in DAG_FILES}


def test_there_is_one_sync_dag_per_registry_the_build_dag_and_the_warehouse_dags(dagbag: Any) -> None:
    assert set(dagbag.dag_ids) == {f"sync_{r.slug}" for r in REGISTRIES} | {
        "build_warehouse", "warehouse_health", "warehouse_backup"}


def test_each_sync_dag_loads_and_validates_every_entity_of_its_registry(dagbag: Any) -> None:
    for registry in REGISTRIES:
        dag = dagbag.get_dag(f"sync_{registry.slug}")
        entities = entities_of(registry.slug)
        expected = {f"{e.name}.{step}" for e in entities for step in ("extract_load", "validate_raw", "raw_ready")}
        assert {t.task_id for t in dag.tasks} == expected
        emitted = {(t.task_id, outlet.name, outlet.uri) for t in dag.tasks for outlet in t.outlets}
        assert emitted == {(f"{e.name}.raw_ready", raw_asset(e).name, raw_asset(e).uri) for e in entities}


def test_a_run_s_batches_are_validated_by_one_gate_task_and_the_asset_waits_for_it(dagbag: Any) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for registry in REGISTRIES:
        dag = dagbag.get_dag(f"sync_{registry.slug}")
        for entity in entities_of(registry.slug):
            validate = dag.get_task(f"{entity.name}.validate_raw")
            ready = dag.get_task(f"{entity.name}.raw_ready")
            assert not isinstance(validate, MappedOperator), f"{validate.task_id}: one validation per run"
            assert validate.upstream_task_ids == {f"{entity.name}.extract_load"}
            assert ready.upstream_task_ids == {validate.task_id}
            assert ready.trigger_rule == "all_success", "a failed gate must hold back the Asset"


def test_each_sync_dag_runs_on_its_registrys_schedule_over_the_interval_since_its_last_run(dagbag: Any) -> None:
    """The run's data interval spans from the previous cron tick to this one, in the registry's timezone: what a
    backfill loads. A trigger timetable (Airflow 3's default for a cron string) would give every run an empty one."""
    import pendulum
    from airflow.serialization.serialized_objects import DagSerialization

    for registry in REGISTRIES:
        dag = dagbag.get_dag(f"sync_{registry.slug}")
        timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable  # as the scheduler has it
        assert timetable.summary == registry.schedule
        after = pendulum.datetime(2026, 3, 10, 12, 0, tz=registry.timezone)
        interval = timetable.infer_manual_data_interval(run_after=after)
        start, end = (pendulum.instance(t).in_tz(registry.timezone) for t in (interval.start, interval.end))
        assert start < end <= after
        assert croniter.match(registry.schedule, start) and croniter.match(registry.schedule, end)
        following = croniter(registry.schedule, start.naive()).get_next(dt.datetime)
        assert following == end.naive(), "the interval is exactly one period of the schedule"
        assert dag.timezone.name == registry.timezone
        assert dag.start_date == dag_defaults.start_date(registry.timezone)


def test_every_dag_has_tags_owner_retries_and_docs(dagbag: Any) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "kho" in dag.tags, f"{dag_id} is not tagged kho"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert not dag.catchup, f"{dag_id} would backfill every day since its start date when unpaused"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_sync_tasks_are_owned_as_their_registry_says_and_back_off_between_retries(dagbag: Any) -> None:
    """Airflow 3 reads the backoff as a multiplier: `True` is 1, a constant delay; a real backoff is above 1."""
    for registry in REGISTRIES:
        dag = dagbag.get_dag(f"sync_{registry.slug}")
        for task in dag.tasks:
            assert task.owner == registry.owner
            assert float(task.retry_exponential_backoff) > 1, f"{task.task_id} retries at a constant delay"
            assert task.max_retry_delay is not None and task.max_retry_delay > task.retry_delay


def test_no_dag_has_a_cycle(dagbag: Any) -> None:
    for dag in dagbag.dags.values():
        order = dag.topological_sort()
        assert len(order) == len(dag.tasks)


def test_dag_id_matches_its_file_name_unless_generated_from_the_sources(dagbag: Any) -> None:
    for dag_id, dag in dagbag.dags.items():
        if Path(dag.fileloc).stem == "sync_registries":
            assert dag_id in {f"sync_{r.slug}" for r in REGISTRIES}
        else:
            assert Path(dag.fileloc).stem == dag_id


def asset_keys(condition: Any) -> set[tuple[str, str]]:
    """(name, URI) of the Assets a schedule's asset condition names (an Asset, or AssetAll/AssetAny of them)."""
    if hasattr(condition, "objects"):
        return set().union(*(asset_keys(o) for o in condition.objects))
    return {(condition.name, condition.uri)} if hasattr(condition, "uri") else set()


def test_the_build_dag_waits_for_every_raw_table_the_sync_dags_emit(dagbag: Any) -> None:
    from airflow.sdk.definitions.asset import AssetAll

    emitted = {(outlet.name, outlet.uri) for registry in REGISTRIES
               for task in dagbag.get_dag(f"sync_{registry.slug}").tasks for outlet in task.outlets}
    condition = dagbag.get_dag("build_warehouse").timetable.asset_condition
    assert isinstance(condition, AssetAll), "the build must wait for all raw tables, not any one of them"
    assert asset_keys(condition) == emitted
    assert len(emitted) == len([e for r in REGISTRIES for e in entities_of(r.slug)])


def test_the_build_dag_publishes_only_after_dbt_and_the_audit(dagbag: Any) -> None:
    dag = dagbag.get_dag("build_warehouse")
    publish = dag.get_task("publish")
    upstream = publish.get_flat_relative_ids(upstream=True)
    assert "audit_marts" in upstream
    assert {t.task_id for t in dag.tasks if t.task_id.startswith("dbt.")} <= upstream
    assert dag.get_task("audit_marts").trigger_rule == publish.trigger_rule == "all_success"


def test_the_build_dag_draws_the_run_report_after_publishing_and_nothing_waits_for_it(dagbag: Any) -> None:
    """A report that fails is retried alone: the publication, and the Asset the backup runs on, come before it."""
    dag = dagbag.get_dag("build_warehouse")
    report = dag.get_task("run_report")
    assert report.upstream_task_ids == {"publish"}
    assert report.downstream_task_ids == set()
    assert not report.outlets


def test_the_health_dag_checks_every_five_minutes_one_run_at_a_time_without_catching_up(dagbag: Any) -> None:
    """As the scheduler has it: a run at every fifth minute, with no data interval (a probe looks at now)."""
    import pendulum
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    dag = dagbag.get_dag("warehouse_health")
    assert [t.task_id for t in dag.tasks] == ["check"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.dagrun_timeout is not None and dag.dagrun_timeout < dt.timedelta(minutes=5)
    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    assert timetable.summary == "*/5 * * * *"
    start = pendulum.datetime(2026, 3, 10, 12, 1, tz=dag.timezone)
    runs = []
    last = None
    for _ in range(2):
        info = timetable.next_dagrun_info(last_automated_data_interval=last,
                                          restriction=TimeRestriction(earliest=start, latest=None, catchup=True))
        runs.append(pendulum.instance(info.run_after).in_tz(dag.timezone))
        last = info.data_interval
        assert info.data_interval.start == info.data_interval.end
    assert [(r.hour, r.minute) for r in runs] == [(12, 5), (12, 10)]


def test_the_backup_dag_runs_on_what_the_build_dag_publishes_and_verifies_after_backing_up(dagbag: Any) -> None:
    published = {(o.name, o.uri) for t in dagbag.get_dag("build_warehouse").tasks if t.task_id == "publish"
                 for o in t.outlets}
    assert len(published) == 1
    dag = dagbag.get_dag("warehouse_backup")
    assert asset_keys(dag.timetable.asset_condition) == published
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.get_task("verify_restore").upstream_task_ids == {"backup"}
    assert dag.get_task("verify_restore").trigger_rule == "all_success"


def test_the_build_dag_has_a_dbt_task_for_every_model_past_staging(dagbag: Any) -> None:
    """Rendered from the manifest, the graph still holds every intermediate model and mart of dbt_project/ (read
    from the files, not from the manifest), and no exposure or hook becomes a task."""
    dag = dagbag.get_dag("build_warehouse")
    models = {p.stem for p in (DBT_PROJECT / "models").rglob("*.sql") if "staging" not in p.parts}
    assert len(models) > 10
    rendered = {t.task_id.removeprefix("dbt.").removesuffix("_model_build") for t in dag.tasks
                if t.task_id.endswith("_model_build")}
    assert rendered == models
    assert not [t.task_id for t in dag.tasks if "exposure" in t.task_id or "on_run_start" in t.task_id]


def test_the_env_file_points_airflow_standalone_at_kho_dags(kho_config: Any, dagbag: Any) -> None:
    """What `kho demo` tells users to source before opening the UI points Airflow at kho's DAGs and DB."""
    import subprocess

    from kho.airflow_env import env_file

    path = env_file(kho_config)
    assert 'KHO_PG_PASSWORD="$(cat' in path.read_text(encoding="utf-8")

    def airflow_config(section: str, key: str) -> str:
        return subprocess.run(
            ["bash", "-c", f". {path} && airflow config get-value {section} {key}"], capture_output=True, text=True,
            check=True, env={"HOME": str(kho_config.home), "PATH": "/usr/bin:/bin"}).stdout.strip().splitlines()[-1]

    assert airflow_config("core", "dags_folder") == str(PROJECT_ROOT / "dags")
    assert airflow_config("database", "sql_alchemy_conn") == f"sqlite:///{kho_config.airflow_home / 'airflow.db'}"
