"""
Generates one sync DAG per registry in `kho.sources.REGISTRIES`: `sync_population`, `sync_insurance`,
`sync_civil_status`, `sync_business`, and one for each registry added through `KHO_REGISTRY_MODULES` (a family,
so dag_id is `sync_<registry>`, not this file's name).

Each DAG runs on its registry's schedule, in the registry's timezone, owned as the `Registry` says, and holds, per
entity of its registry, a task group:

1. `extract_load` pages the registry API (OAuth2) from the entity's committed watermark, checks each row against
   its contract, quarantines rejects with a reason, COPYs and merges the rest, and writes one `kho.load_ledger`
   row per committed batch (read = new + changed + unchanged + rejected), the watermark advancing with the data.
   A backfill run loads exactly its data interval; a manual run takes `full_refresh` and `since`.
2. `validate_raw` runs the entity's GX suite (`expectations/raw.<registry>__<entity>.json`) on the batches just
   loaded and, on success, emits the raw table's Asset.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import DAG, Asset, Param, TaskGroup, task

from kho import pipelines
from kho.assets import raw_uri
from kho.sources import REGISTRIES
from kho.sources.contract import Entity


def entity_group(entity: Entity) -> TaskGroup:
    with TaskGroup(group_id=entity.name) as group:
        @task(task_id="extract_load")
        def extract_load(**context: object) -> dict:
            return pipelines.sync_for_run(entity.registry, entity.name, context)

        @task(task_id="validate_raw", outlets=[Asset(raw_uri(entity))])
        def validate_raw(summary: dict) -> list:
            return pipelines.validate_raw_batches(entity.registry, entity.name, summary)

        validate_raw(extract_load())
    return group


for registry in REGISTRIES:
    with DAG(
        dag_id=registry.dag_id,
        description=f"{registry.title}, owned by {registry.agency}",
        schedule=registry.schedule,
        start_date=pendulum.datetime(2025, 7, 1, tz=registry.timezone),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=dt.timedelta(hours=4),
        tags=["kho", "ingest", registry.slug],
        doc_md=__doc__,
        default_args={"owner": registry.owner, "retries": 3, "retry_delay": dt.timedelta(minutes=2),
                      "retry_exponential_backoff": True, "max_retry_delay": dt.timedelta(minutes=20)},
        params={
            "full_refresh": Param(False, type="boolean", description="Re-read the registry from the beginning"),
            "since": Param(None, type=["null", "string"], format="date-time",
                           description="Start from this instant instead of the watermark (ISO 8601)"),
        },
    ):
        for entity in registry.entities:
            entity_group(entity)
