"""
Generates one sync DAG per registry in `kho.sources.REGISTRIES`: `sync_population`, `sync_insurance`,
`sync_civil_status`, `sync_business`, and one for each registry added through `KHO_REGISTRY_MODULES` (a family,
so dag_id is `sync_<registry>`, not this file's name).

Each DAG runs on its registry's cron schedule, in the registry's timezone (each run's data interval is the time
since the previous one), owned as the `Registry` says, and holds, per entity of its registry, a task group:

1. `extract_load` pages the registry API (OAuth2) from the entity's committed watermark, checks each row against
   its contract, quarantines rejects with a reason, COPYs and merges the rest, and writes one `kho.load_ledger`
   row per committed batch (read = new + changed + unchanged + rejected), the watermark advancing with the data.
   It returns the batches it committed (at least one). A backfill run loads exactly its data interval; a manual
   run takes `full_refresh`, `since` and `pages_per_batch`.
2. `validate_raw`, the raw gate, runs the entity's GX checkpoint (`expectations/checkpoints/raw.<registry>__<entity>`)
   once over every batch the run committed (one validation over their range) and records each expectation's
   outcome in `kho.quality_results` and every row failing a warning in `kho.quality_flags`; a blocking failure
   fails the task with the failing expectations and counts in its message, a warning is reported (and sent to
   the quality webhook, if one is set) and the run goes on.
3. `raw_ready` runs once the gate passed and emits the raw table's Asset (`kho.assets.raw_asset`), its event
   naming the batches and the validation.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_parsing_context, task, task_group

from kho import dag_defaults, pipelines
from kho.assets import raw_asset
from kho.sources import REGISTRIES, Registry
from kho.sources.contract import Entity


def run_params() -> dict[str, Param]:
    return {
        "full_refresh": Param(False, type="boolean", description="Re-read the registry from the beginning"),
        "since": Param(None, type=["null", "string"], format="date-time",
                       description="Start from this instant instead of the watermark (ISO 8601)"),
        "pages_per_batch": Param(None, type=["null", "integer"], minimum=1,
                                 description="Pages per committed batch (default: the registry's paging)"),
    }


def entity_group(entity: Entity) -> None:
    @task_group(group_id=entity.name)
    def load_and_validate() -> None:
        @task
        def extract_load(**context: object) -> list:
            return pipelines.sync_for_run(entity.registry, entity.name, context)

        @task
        def validate_raw(batches: list, **context: object) -> dict:
            return pipelines.validate_raw_run(entity.registry, entity.name, batches, context)

        @task(outlets=[raw_asset(entity)])
        def raw_ready(gate: dict, **context: object) -> dict:
            return pipelines.raw_ready(entity.registry, entity.name, gate, context["outlet_events"])

        raw_ready(validate_raw(extract_load()))

    load_and_validate()


def sync_dag(registry: Registry) -> None:
    @dag(
        dag_id=registry.dag_id,
        description=f"{registry.title}, owned by {registry.agency}",
        schedule=CronDataIntervalTimetable(registry.schedule, timezone=registry.timezone),
        start_date=dag_defaults.start_date(registry.timezone),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=dt.timedelta(hours=4),
        tags=dag_defaults.tags("ingest", registry.slug),
        doc_md=__doc__,
        default_args=dag_defaults.default_args(dag_defaults.REGISTRY_RETRIES, owner=registry.owner),
        params=run_params(),
    )
    def sync() -> None:
        for entity in registry.entities:
            entity_group(entity)

    sync()


# A worker running one task needs only that task's DAG: skip generating the others (Airflow's parsing context).
wanted = get_parsing_context().dag_id
for registry in REGISTRIES:
    if wanted is None or wanted == registry.dag_id:
        sync_dag(registry)
