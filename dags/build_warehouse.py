"""
### build_warehouse

Builds the shared datasets once every registry's raw tables have been refreshed for the night (Asset-scheduled on
all twelve raw tables), and publishes them only when they pass their gates: write → audit → publish.

1. `plan` fixes the run's as-of date (param `as_of`, else the run's date in Asia/Ho_Chi_Minh) and finds the node
   that accepts writes now (libpq `target_session_attrs=read-write`), so dbt follows a failover.
2. `dbt` is the dbt project in `dbt_project/`, rendered by astronomer-cosmos from the project's dbt manifest (no
   `dbt ls` when the DAG is parsed; `kho manifest` writes it under KHO_HOME, and parsing fails naming that command
   if the project changed since): one task per seed, model and snapshot, its tests right after it. Marts are
   built into private `build_mart_<domain>` schemas.
3. `audit_marts` runs every mart's GX suite on its build table; a blocking failure stops the run here.
4. `publish` makes the audited marts visible in `mart_<domain>` in one transaction and records it in
   `kho.publications`; it completes once the standby has replayed the publication, and then emits the
   `kho.publications` Asset (`warehouse_backup` runs on it).
5. `docs` regenerates the dbt docs under KHO_HOME, and `run_report` draws the run report (loads, quarantine,
   quality, insurance coverage, vital events) into KHO_HOME/report/index.html. Both run after the publication: one
   that fails is retried alone and leaves the published marts as they are.

Beside them, `source_freshness` runs `dbt source freshness` on the twelve raw tables: a registry that has not
loaded for longer than its sources file allows fails the run (so someone looks), without holding back the
publication of what the other registries sent.

A failing dbt test or GX suite leaves yesterday's published marts exactly as they were. Param `full_refresh`
rebuilds the incremental models from scratch (same result, more time).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode, TestBehavior
from cosmos.operators.local import DbtBuildLocalOperator, DbtSourceLocalOperator

from kho import dag_defaults, pipelines
from kho.assets import every_raw_table, published_marts
from kho.build.dbt import BUILD_AS_OF, BUILD_RUN_ID, DBT_PROJECT, build_session_options, dag_manifest
from kho.config import KhoConfig
from kho.sources import ENTITIES

FOUNDATION = ["path:seeds", "path:models/staging"]
"""Reference seeds and the 1:1 staging views: cheap, so built together in one task; only the tests whose every
parent is among them run there (`cautious`); a mart's test that also reads a seed has two parents, so Cosmos runs it
as its own task right after the mart."""
NOT_NIGHTLY = ["resource_type:unit_test"]
"""Unit tests check the models' logic on fixed inputs: CI runs them, the nightly build does not (dbt's advice)."""
NOT_BUILT = ["resource_type:exposure", "resource_type:operation"]
"""The manifest also holds the agencies' exposures and the on-run-start hook: nothing to build (the hook runs with
every dbt invocation), so no task, and no warning from Cosmos at every parse."""
PROFILE = ProfileConfig(profile_name="kho", target_name="warehouse", profiles_yml_filepath=DBT_PROJECT / "profiles.yml")
MANIFEST = dag_manifest(KhoConfig.from_env())
"""The dbt graph as `dbt parse` left it under KHO_HOME; missing or stale, this file fails to import, saying why."""


def dbt_project(env: dict[str, str]) -> ProjectConfig:
    project = ProjectConfig(dbt_project_path=DBT_PROJECT, install_dbt_deps=False, env_vars=env)
    # A plain path, not the ObjectStoragePath Cosmos makes of `manifest_path=`: opening one loads every Airflow
    # plugin (Cosmos's own pulls in FastAPI), 0.6 s of each parse for a local file.
    project.manifest_path = MANIFEST
    return project


def _from_plan(field: str) -> str:
    return "{{ ti.xcom_pull(task_ids='plan')['" + field + "'] }}"


@dag(
    dag_id="build_warehouse",
    schedule=every_raw_table(ENTITIES),  # every registry's raw tables refreshed and their suites passed
    start_date=dag_defaults.start_date(),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=2),
    tags=dag_defaults.tags("dbt", "marts"),
    doc_md=__doc__,
    default_args=dag_defaults.default_args(dag_defaults.BUILD_RETRIES),
    params={
        "as_of": Param(None, type=["null", "string"], format="date",
                       description="The date the marts describe (YYYY-MM-DD); the run's date by default"),
        "full_refresh": Param(False, type="boolean", description="Rebuild incremental models from scratch"),
    },
)
def build_warehouse() -> None:
    @task
    def plan(**context: object) -> dict:
        return pipelines.plan_build(context)

    dbt_env = {"KHO_DBT_HOST": _from_plan("host"), "KHO_DBT_PORT": _from_plan("port"),
               BUILD_AS_OF: _from_plan("as_of"), BUILD_RUN_ID: _from_plan("run_id"),
               "PGOPTIONS": build_session_options()}
    # emit_datasets=False as in the task group: kho's Assets are declared once (kho.assets); Cosmos's own would only
    # log that Airflow 3 refuses their OpenLineage URIs and that nothing consumes them, at every run.
    dbt_args = {"install_deps": False, "full_refresh": _from_plan("full_refresh"), "emit_datasets": False}
    foundation = DbtBuildLocalOperator(
        task_id="seeds_and_staging", project_dir=DBT_PROJECT, profile_config=PROFILE, select=FOUNDATION,
        env=dbt_env, invocation_mode=InvocationMode.DBT_RUNNER, indirect_selection="cautious", **dbt_args,
    )
    freshness = DbtSourceLocalOperator(
        task_id="source_freshness", project_dir=DBT_PROJECT, profile_config=PROFILE, env=dbt_env,
        invocation_mode=InvocationMode.DBT_RUNNER, install_deps=False,
    )
    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=dbt_project(dbt_env),
        profile_config=PROFILE,
        execution_config=ExecutionConfig(invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST,
                                   exclude=FOUNDATION + NOT_NIGHTLY + NOT_BUILT, test_behavior=TestBehavior.BUILD,
                                   emit_datasets=False, should_detach_multiple_parents_tests=True),
        operator_args=dbt_args,
    )

    @task
    def audit_marts(**context: object) -> list:
        return pipelines.audit_marts(context)

    @task(outlets=[published_marts()])  # warehouse_backup waits for it
    def publish(summary: dict) -> dict:
        return pipelines.publish_marts(summary)

    @task
    def docs(summary: dict) -> str:
        return pipelines.generate_docs(summary)

    @task
    def run_report() -> str:
        return pipelines.run_report()

    planned = plan()
    published = publish(planned)
    planned >> foundation >> dbt >> audit_marts() >> published >> [docs(planned), run_report()]
    planned >> freshness  # a registry silent past error_after fails the run, but does not hold back the others' data


build_warehouse()
