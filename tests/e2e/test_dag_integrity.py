"""Every DAG file imports cleanly and carries what operations rely on: tags, owner, retries, no cycles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kho.assets import raw_uri
from kho.config import PROJECT_ROOT
from kho.sources import REGISTRIES, entities_of

pytestmark = pytest.mark.e2e
DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))


def test_every_dag_file_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert {Path(d.fileloc).name for d in dagbag.dags.values()} == {p.name for p in DAG_FILES}


def test_there_is_one_sync_dag_per_registry_and_the_build_dag(dagbag: Any) -> None:
    assert set(dagbag.dag_ids) == {f"sync_{r.slug}" for r in REGISTRIES} | {"build_warehouse"}


def test_each_sync_dag_loads_and_validates_every_entity_of_its_registry(dagbag: Any) -> None:
    from airflow.sdk import Asset  # after the dagbag fixture pointed Airflow at its home

    for registry in REGISTRIES:
        dag = dagbag.get_dag(f"sync_{registry.slug}")
        entities = entities_of(registry.slug)
        expected = {f"{e.name}.{step}" for e in entities for step in ("extract_load", "validate_raw")}
        assert {t.task_id for t in dag.tasks} == expected
        emitted = {outlet.uri for t in dag.tasks for outlet in t.outlets}
        assert emitted == {Asset(raw_uri(e)).uri for e in entities}


def test_every_dag_has_tags_owner_retries_and_docs(dagbag: Any) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


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


def asset_uris(condition: Any) -> set[str]:
    """URIs named by a schedule's asset condition (an Asset, or AssetAll/AssetAny of them)."""
    if hasattr(condition, "objects"):
        return set().union(*(asset_uris(o) for o in condition.objects))
    return {condition.uri} if hasattr(condition, "uri") else set()


def test_the_build_dag_waits_for_every_raw_table_the_sync_dags_emit(dagbag: Any) -> None:
    from airflow.sdk.definitions.asset import AssetAll

    emitted = {outlet.uri for registry in REGISTRIES for task in dagbag.get_dag(f"sync_{registry.slug}").tasks
               for outlet in task.outlets}
    condition = dagbag.get_dag("build_warehouse").timetable.asset_condition
    assert isinstance(condition, AssetAll), "the build must wait for all raw tables, not any one of them"
    assert asset_uris(condition) == emitted
    assert len(emitted) == len([e for r in REGISTRIES for e in entities_of(r.slug)])


def test_the_build_dag_publishes_only_after_dbt_and_the_audit(dagbag: Any) -> None:
    dag = dagbag.get_dag("build_warehouse")
    publish = dag.get_task("publish")
    upstream = publish.get_flat_relative_ids(upstream=True)
    assert "audit_marts" in upstream
    assert {t.task_id for t in dag.tasks if t.task_id.startswith("dbt.")} <= upstream
    assert dag.get_task("audit_marts").trigger_rule == publish.trigger_rule == "all_success"


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
