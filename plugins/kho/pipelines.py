"""Task bodies for the DAGs in dags/: each builds its config at the edge, does one step, returns a small summary.

DAG files only wire these together. Return values are summaries for the Airflow UI (XCom); the state that
matters (ledger, watermarks, quality results) is written to the warehouse's `kho` schema.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from kho.build import run as build_run
from kho.build.run import BuildPlan, local_today, parse_as_of
from kho.config import KhoConfig
from kho.load.pipeline import SyncOptions, sync_api
from kho.sources import get_entity
from kho.warehouse.connection import primary_address

LATE_ARRIVAL_LOOKBACK = dt.timedelta(days=1)
"""Registries publish some updates a day late with their original updated_at: re-read a day (counted unchanged)."""


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def sync(registry: str, entity: str, options: SyncOptions | None = None) -> dict[str, Any]:
    """Extract → check → load one entity from its registry API; returns its ledger rows and batch ids."""
    config = KhoConfig.from_env()
    entries = sync_api(config, get_entity(registry, entity), options or SyncOptions())
    batches = [{k: _jsonable(v) for k, v in dataclasses.asdict(e).items()} for e in entries]
    return {"registry": registry, "entity": entity, "batch_ids": [b["batch_id"] for b in batches],
            "batches": batches}


def sync_options_for_run(context: Mapping[str, Any]) -> SyncOptions:
    """What one DAG run asks for: a backfill loads exactly its data interval; a manual run may set `since` or
    `full_refresh`; a scheduled run continues from the watermark (it never re-derives state from `now()`)."""
    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    run_type = str(getattr(dag_run, "run_type", "") or "")
    run_id = str(context.get("run_id") or "") or None
    if run_type.endswith("backfill"):
        return SyncOptions(since=_instant(context.get("data_interval_start")),
                           until=_instant(context.get("data_interval_end")), run_id=run_id)
    since = params.get("since")
    full_refresh = bool(params.get("full_refresh", False))
    return SyncOptions(full_refresh=full_refresh, since=dt.datetime.fromisoformat(since) if since else None,
                       lookback=dt.timedelta(0) if full_refresh else LATE_ARRIVAL_LOOKBACK, run_id=run_id)


def _instant(value: Any) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(str(value))


def sync_for_run(registry: str, entity: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The `extract_load` task of a sync DAG."""
    return sync(registry, entity, sync_options_for_run(context))


def validate_raw_batches(registry: str, entity: str, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run the raw table's GX suite on each batch the sync committed; a blocking failure fails the task."""
    from kho.quality import validate

    config = KhoConfig.from_env()
    table = get_entity(registry, entity).raw_table
    suite = config.expectations_dir / f"raw.{table}.json"
    return [validate(config, suite, "raw", table, batch_id=int(batch_id)) for batch_id in summary["batch_ids"]]


def plan_build(context: Mapping[str, Any]) -> dict[str, Any]:
    """What a build_warehouse run builds: its run id, the as-of date (the `as_of` param, else the run's date in
    Asia/Ho_Chi_Minh) and whether to rebuild incremental models from scratch (`full_refresh`)."""
    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    at = getattr(dag_run, "run_after", None) or context.get("logical_date")
    default = local_today(at if isinstance(at, dt.datetime) else None)
    plan = BuildPlan(run_id=str(context.get("run_id") or "manual"), as_of=parse_as_of(params.get("as_of"),
                     default=default), full_refresh=bool(params.get("full_refresh", False)))
    return {"run_id": plan.run_id, "as_of": plan.as_of.isoformat(), "full_refresh": plan.full_refresh,
            **primary()}


def _plan(summary: Mapping[str, Any]) -> BuildPlan:
    return BuildPlan(str(summary["run_id"]), dt.date.fromisoformat(str(summary["as_of"])),
                     bool(summary["full_refresh"]))


def audit_marts() -> list[dict[str, Any]]:
    """Every built mart's GX suite, in its build schema; a blocking failure fails the task after all ran."""
    config = KhoConfig.from_env()
    return build_run.audit_marts(config, build_run.marts_to_publish(config))


def publish_marts(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Publish the audited marts in one transaction; done once the standby has replayed the publication."""
    config = KhoConfig.from_env()
    publication = build_run.publish_marts(config, _plan(summary), build_run.marts_to_publish(config))
    return {"publication_id": publication.publication_id, "as_of": publication.as_of.isoformat(),
            "published_at": publication.published_at.isoformat(),
            "tables": {c.mart: dataclasses.asdict(c) for c in publication.changes}}


def generate_docs(summary: Mapping[str, Any]) -> str:
    """dbt docs for the UI, kept under KHO_HOME."""
    return str(build_run.generate_docs(KhoConfig.from_env(), _plan(summary)))


def primary() -> dict[str, str]:
    """Where dbt should connect for this run: the node that accepts writes right now."""
    host, port = primary_address(KhoConfig.from_env().warehouse)
    return {"host": host, "port": str(port)}
