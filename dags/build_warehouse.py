"""
### build_warehouse

Runs when the population raw table has been refreshed (Asset-scheduled on `raw.population__citizens`).

1. `resolve_primary` finds the node that accepts writes now (libpq `target_session_attrs=read-write`), so dbt
   follows a failover without configuration changes.
2. `dbt` is the dbt project in `dbt_project/`, rendered by astronomer-cosmos: one task per model, its tests
   right after it (staging → marts).
3. `validate_marts` runs the GX suites of the published marts and refreshes Data Docs.
4. `wait_for_backup` holds the run until the standby has replayed everything it wrote.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode

from kho import pipelines
from kho.assets import raw_uri
from kho.config import PROJECT_ROOT
from kho.sources.population import CITIZENS

DBT_PROJECT = PROJECT_ROOT / "dbt_project"


@dag(
    dag_id="build_warehouse",
    schedule=[Asset(raw_uri(CITIZENS))],
    start_date=pendulum.datetime(2025, 7, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=2),
    tags=["kho", "dbt", "marts"],
    doc_md=__doc__,
    default_args={"owner": "kho-data-engineering", "retries": 1, "retry_delay": dt.timedelta(minutes=2)},
)
def build_warehouse() -> None:
    @task
    def resolve_primary() -> dict:
        return pipelines.resolve_primary()

    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(
            dbt_project_path=DBT_PROJECT,
            install_dbt_deps=False,
            env_vars={
                "KHO_DBT_HOST": "{{ ti.xcom_pull(task_ids='resolve_primary')['host'] }}",
                "KHO_DBT_PORT": "{{ ti.xcom_pull(task_ids='resolve_primary')['port'] }}",
            },
        ),
        profile_config=ProfileConfig(
            profile_name="kho", target_name="warehouse", profiles_yml_filepath=DBT_PROJECT / "profiles.yml"
        ),
        execution_config=ExecutionConfig(invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(load_method=LoadMode.DBT_LS, invocation_mode=InvocationMode.DBT_RUNNER,
                                   emit_datasets=False, should_detach_multiple_parents_tests=True),
        operator_args={"install_deps": False},
    )

    @task
    def validate_marts() -> list:
        return pipelines.validate_marts()

    @task
    def wait_for_backup() -> dict:
        return pipelines.wait_for_backup()

    primary = resolve_primary()
    primary >> dbt
    dbt >> validate_marts() >> wait_for_backup()


build_warehouse()
