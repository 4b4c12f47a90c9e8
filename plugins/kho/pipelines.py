"""Task bodies for the DAGs in dags/: each builds its config at the edge, does one step, returns a small summary.

DAG files only wire these together. Return values are summaries for the Airflow UI (XCom); the state that
matters (ledger, watermarks, quality results) is written to the warehouse's `kho` schema. Each stage also logs its
lines at INFO (rows read, loaded and quarantined, the ledger line, the quality summary, the standby's lag after a
publication): they are what a person reads in a task's log.

The DAG processor imports this module with every DAG file, so it imports nothing heavy itself: the stages it
drives (loader, GX, dbt, publication, connections) are imported inside the task bodies, when a task runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from kho.config import KhoConfig

if TYPE_CHECKING:
    from kho.build.run import BuildPlan
    from kho.load.pipeline import SyncOptions
    from kho.warehouse.backup import BackupKind

log = logging.getLogger(__name__)
LATE_ARRIVAL_LOOKBACK = dt.timedelta(days=1)
"""Registries publish some updates a day late with their original updated_at: re-read a day (counted unchanged)."""


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def sync(registry: str, entity: str, options: SyncOptions | None = None) -> list[dict[str, Any]]:
    """Extract → check → load one entity from its registry API; returns the batches it committed, one ledger row
    each (always at least one: a sync that found nothing commits its zero row)."""
    from kho.load.pipeline import SyncOptions, sync_api
    from kho.sources import get_entity

    config = KhoConfig.from_env()
    qualified = f"{registry}.{entity}"
    entries = sync_api(config, get_entity(registry, entity), options or SyncOptions())
    for e in entries:  # the ledger line says it all for one batch: read = loaded (new, changed) + unchanged + rejected
        log.info("ledger %s", e.summary())
    if len(entries) > 1:
        log.info("load %s: %d batches, %d rows read, %d loaded (new or changed), %d unchanged, %d quarantined",
                 qualified, len(entries), sum(e.rows_read for e in entries), sum(e.rows_loaded for e in entries),
                 sum(e.rows_unchanged for e in entries), sum(e.rows_rejected for e in entries))
    return [{k: _jsonable(v) for k, v in dataclasses.asdict(e).items()} for e in entries]


def sync_options_for_run(context: Mapping[str, Any]) -> SyncOptions:
    """What one DAG run asks for: a backfill loads exactly its data interval; a manual run may set `since` or
    `full_refresh` (and `pages_per_batch`); a scheduled run continues from the watermark (it never re-derives state
    from `now()`)."""
    from kho.load.pipeline import SyncOptions

    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    run_type = str(getattr(dag_run, "run_type", "") or "")
    run_id = str(context.get("run_id") or "") or None
    if run_type.endswith("backfill"):
        return SyncOptions(since=_instant(context.get("data_interval_start")),
                           until=_instant(context.get("data_interval_end")), run_id=run_id)
    since = params.get("since")
    full_refresh = bool(params.get("full_refresh", False))
    pages = params.get("pages_per_batch")
    return SyncOptions(full_refresh=full_refresh, since=dt.datetime.fromisoformat(since) if since else None,
                       lookback=dt.timedelta(0) if full_refresh else LATE_ARRIVAL_LOOKBACK, run_id=run_id,
                       pages_per_batch=int(pages) if pages is not None else None)


def _instant(value: Any) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(str(value))


def sync_for_run(registry: str, entity: str, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `extract_load` task of a sync DAG: the batches this run committed, which `validate_raw` validates.

    A retried try resumes from the watermark, so the batches an earlier try committed before it failed (its primary
    lost in a failover, the registry gone) are returned too: otherwise no raw suite would ever check them."""
    options = sync_options_for_run(context)
    committed = sync(registry, entity, options)
    if options.run_id is None:
        return committed
    return _committed_by_earlier_tries(registry, entity, options.run_id, {b["batch_id"] for b in committed}) + committed


def _committed_by_earlier_tries(registry: str, entity: str, run_id: str, seen: set[int]) -> list[dict[str, Any]]:
    from kho.warehouse.connection import connect

    with connect(KhoConfig.from_env().warehouse, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT batch_id, registry, entity, source, rows_read, rows_new, rows_changed, rows_unchanged, "
            "rows_rejected, cursor_from, cursor_to, unknown_fields, source_name FROM kho.load_ledger "
            "WHERE registry = %s AND entity = %s AND run_id = %s ORDER BY batch_id", (registry, entity, run_id))
        names = [column.name for column in cur.description or ()]
        return [{k: _jsonable(v) for k, v in zip(names, row, strict=True)} for row in cur if row[0] not in seen]


def validate_raw_run(registry: str, entity: str, batches: Iterable[Mapping[str, Any]],
                     context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The raw gate of one run: the raw table's suite over every batch this run committed, as one validation
    (kho.quality_results, kho.quality_flags); a blocking failure fails the task naming each failing expectation and
    its count, a warning is recorded and reported (and sent to the webhook) and the run goes on."""
    from kho.quality import validate_raw
    from kho.sources import get_entity

    config = KhoConfig.from_env()
    batch_ids = sorted(int(b["batch_id"]) for b in batches)
    run_id = str((context or {}).get("run_id") or "") or None
    result = validate_raw(config, get_entity(registry, entity).raw_table, batch_ids, run_id=run_id)
    return {**result.summary(), "batch_ids": batch_ids}


def raw_ready(registry: str, entity: str, gate: Mapping[str, Any],
              outlet_events: MutableMapping[Any, Any]) -> dict[str, Any]:
    """This run's batches passed the raw gate: the entity's Asset is emitted, its event saying which batches (what a
    consumer may look up in kho.load_ledger) and which validation passed them."""
    from kho.assets import raw_asset
    from kho.sources import get_entity

    validated = sorted(int(b) for b in gate["batch_ids"])
    summary = {"registry": registry, "entity": entity, "batch_ids": validated,
               "validation_id": gate.get("validation_id"), "quality": gate.get("state")}
    outlet_events[raw_asset(get_entity(registry, entity))].extra = summary
    return summary


def plan_build(context: Mapping[str, Any]) -> dict[str, Any]:
    """What a build_warehouse run builds: its run id, the as-of date (the `as_of` param, else the run's date in
    Asia/Ho_Chi_Minh) and whether to rebuild incremental models from scratch (`full_refresh`)."""
    from kho.build.run import BuildPlan, local_today, parse_as_of

    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    at = getattr(dag_run, "run_after", None) or context.get("logical_date")
    default = local_today(at if isinstance(at, dt.datetime) else None)
    plan = BuildPlan(run_id=str(context.get("run_id") or "manual"), as_of=parse_as_of(params.get("as_of"),
                     default=default), full_refresh=bool(params.get("full_refresh", False)))
    return {"run_id": plan.run_id, "as_of": plan.as_of.isoformat(), "full_refresh": plan.full_refresh,
            **primary()}


def _plan(summary: Mapping[str, Any]) -> BuildPlan:
    from kho.build.run import BuildPlan

    return BuildPlan(str(summary["run_id"]), dt.date.fromisoformat(str(summary["as_of"])),
                     bool(summary["full_refresh"]))


def audit_marts(context: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every built mart's GX checkpoint, on its build table; a blocking failure fails the task after all ran."""
    from kho.build import run as build_run

    config = KhoConfig.from_env()
    run_id = str((context or {}).get("run_id") or "") or None
    return build_run.audit_marts(config, build_run.marts_to_publish(config), run_id)


def publish_marts(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Publish the audited marts in one transaction; done once the standby has replayed the publication."""
    from kho.build import run as build_run

    config = KhoConfig.from_env()
    publication = build_run.publish_marts(config, _plan(summary), build_run.marts_to_publish(config))
    log.info("published #%d as of %s: %d dataset(s)", publication.publication_id, publication.as_of,
             len(publication.changes))
    _log_standby_lag(config)
    return {"publication_id": publication.publication_id, "as_of": publication.as_of.isoformat(),
            "published_at": publication.published_at.isoformat(),
            "tables": {c.mart: dataclasses.asdict(c) for c in publication.changes}}


def _log_standby_lag(config: KhoConfig) -> None:
    """Each standby's lag once the publication was replayed (publish_marts waits for it): what agencies now read."""
    from kho.warehouse import health

    for node in health.status(config).standbys:
        log.info("standby %s lag after publication: %s bytes, %s s", node.name,
                 "?" if node.lag_bytes is None else node.lag_bytes,
                 "?" if node.lag_seconds is None else f"{node.lag_seconds:.1f}")


def generate_docs(summary: Mapping[str, Any]) -> str:
    """dbt docs for the UI, kept under KHO_HOME; and the quality gates' retention applied (GX results, their Data
    Docs pages and kho.quality_flags older than KHO_QUALITY_RETENTION_DAYS), once a night, after the marts' Data
    Docs were built."""
    from kho.build import run as build_run
    from kho.quality.retention import prune
    from kho.warehouse.connection import connect

    config = KhoConfig.from_env()
    page = build_run.generate_docs(config, _plan(summary))
    with connect(config.warehouse, autocommit=True) as conn:
        prune(config, conn)
    return str(page)


def run_report() -> str:
    """The run report under KHO_HOME/report, after the publication: a failure fails this task alone (retry it by
    itself), never the publication, which has already happened."""
    from kho.report.page import write_report

    return str(write_report(KhoConfig.from_env()).path)


def primary() -> dict[str, str]:
    """Where dbt should connect for this run: the node that accepts writes right now."""
    from kho.warehouse.connection import primary_address

    host, port = primary_address(KhoConfig.from_env().warehouse)
    return {"host": host, "port": str(port)}


def warehouse_health() -> dict[str, Any]:
    """The warehouse against its KHO_HEALTH_* thresholds, logged whole. An alert fails the task at once, one line
    per alert, with AirflowFailException: a retry would only hold the alert back for its delay."""
    from airflow.sdk.exceptions import AirflowFailException

    from kho.warehouse import health

    report = health.check(KhoConfig.from_env())
    log.info("warehouse health:\n%s", report.render())
    if not report.ok:
        raise AirflowFailException(f"{len(report.alerts)} warehouse alert(s):\n" + "\n".join(report.alerts))
    primary_node = report.status.primary
    return {"primary": primary_node.name if primary_node else None, "nodes": len(report.status.nodes),
            "checked": list(report.checked)}


def warehouse_backup(kind: BackupKind = "auto") -> dict[str, Any]:
    """A pgBackRest backup of the current primary (full once a week, else incremental, for `auto`), with the
    figures verify-restore will compare."""
    from airflow.sdk.exceptions import AirflowFailException

    from kho.warehouse import backup, patroni

    config = KhoConfig.from_env()
    try:
        result = backup.backup(config, kind)
    except patroni.BackupsUnavailable as exc:  # pgBackRest cannot serve this PostgreSQL here: no retry changes it
        raise AirflowFailException(str(exc)) from exc
    log.info("%s", result.render())
    return {"label": result.label, "kind": result.kind, "node": result.node, "restore_point": result.restore_point,
            "duration_s": round(result.duration_s, 1), "mb_per_s": round(result.mb_per_s, 1)}


def verify_restore(taken: Mapping[str, Any]) -> dict[str, Any]:
    """Restore the backup just taken into a scratch cluster and compare its figures with those recorded. A figure
    that differs fails the task at once (AirflowFailException): restoring the same backup again gives the same."""
    from airflow.sdk.exceptions import AirflowFailException

    from kho.warehouse import backup

    try:
        report = backup.verify_restore(KhoConfig.from_env(), str(taken["label"]))
    except backup.VerifyFailed as failed:
        log.error("%s", failed.report.render())
        raise AirflowFailException(str(failed)) from None
    log.info("%s", report.render())
    return {"label": report.label, "restore_point": report.restore_point, "repository": report.repository,
            "figures_matched": len(report.comparison.matched)}
