"""Task bodies for the DAGs in dags/: each builds its config at the edge, does one step, returns a small summary.

DAG files only wire these together. Return values are summaries for the Airflow UI (XCom); the state that
matters (ledger, watermarks, quality results) is written to the warehouse's `kho` schema.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from kho.config import KhoConfig
from kho.errors import QualityError
from kho.load.pipeline import SyncOptions, sync_api
from kho.load.state import bootstrap
from kho.sources import get_entity
from kho.warehouse.connection import connect, primary_address, wait_for_standby

MART_SUITES: tuple[tuple[str, str], ...] = (("mart_population", "citizens_per_commune"),)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def sync(registry: str, entity: str, *, full_refresh: bool = False, run_id: str | None = None) -> dict[str, Any]:
    """Extract → check → load one entity from its registry API; returns the ledger row."""
    config = KhoConfig.from_env()
    entry = sync_api(config, get_entity(registry, entity), SyncOptions(full_refresh=full_refresh, run_id=run_id))
    return {k: _jsonable(v) for k, v in dataclasses.asdict(entry).items()}


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


def validate_raw(registry: str, entity: str, batch_id: int) -> dict[str, Any]:
    """Run the raw table's GX suite on the batch just loaded; a blocking failure fails the task."""
    config = KhoConfig.from_env()
    return _validate(config, "raw", get_entity(registry, entity).raw_table, batch_id)


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
