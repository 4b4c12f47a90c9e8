"""Task bodies for the DAGs in dags/: each builds its config at the edge, does one step, returns a small summary.

DAG files only wire these together. Return values are summaries for the Airflow UI (XCom); the state that
matters (ledger, watermarks, quality results) is written to the warehouse's `kho` schema.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from kho.config import KhoConfig
from kho.errors import QualityError
from kho.load.pipeline import SyncOptions, sync_api
from kho.load.state import bootstrap
from kho.sources import get_entity
from kho.warehouse.connection import connect, primary_address, wait_for_standby

LATE_ARRIVAL_LOOKBACK = dt.timedelta(days=1)
"""Registries publish some updates a day late with their original updated_at: re-read a day (counted unchanged)."""
MART_SUITES: tuple[tuple[str, str], ...] = (("mart_population", "citizens_per_commune"),)


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


def _validate(config: KhoConfig, schema: str, table: str, batch_id: int | None) -> dict[str, Any]:
    from kho.quality import raise_for_blocking, record_result, run_suite, warehouse_url

    suite_file = config.expectations_dir / f"{schema}.{table}.json"
    result = run_suite(config.gx_home, warehouse_url(config.warehouse), suite_file, schema, table, batch_id=batch_id)
    with connect(config.warehouse) as conn:
        bootstrap(conn)
        record_result(conn, result)
    summary = {
        "suite": result.suite, "table": f"{schema}.{table}", "batch_id": batch_id, "success": result.success,
        "evaluated": result.evaluated, "failed": result.failed, "data_docs": str(result.data_docs_path or ""),
    }
    raise_for_blocking(result)
    return summary


def validate_raw_batches(registry: str, entity: str, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run the raw table's GX suite on each batch the sync committed; a blocking failure fails the task."""
    config = KhoConfig.from_env()
    table = get_entity(registry, entity).raw_table
    return [_validate(config, "raw", table, int(batch_id)) for batch_id in summary["batch_ids"]]


def validate_marts() -> list[dict[str, Any]]:
    """Run every published mart's GX suite; a blocking failure fails the task after all suites ran."""
    config = KhoConfig.from_env()
    summaries, failures = [], []
    for schema, table in MART_SUITES:
        try:
            summaries.append(_validate(config, schema, table, None))
        except QualityError as exc:
            failures.append(str(exc))
    if failures:
        raise QualityError("; ".join(failures))
    return summaries


def resolve_primary() -> dict[str, str]:
    """Where dbt should connect for this run: the node that accepts writes right now."""
    host, port = primary_address(KhoConfig.from_env().warehouse)
    return {"host": host, "port": str(port)}


def wait_for_backup() -> dict[str, Any]:
    """Publishing waits until the standby has replayed everything the run wrote."""
    config = KhoConfig.from_env()
    lag = wait_for_standby(config.warehouse)
    return {"standby_lag_bytes": lag}
