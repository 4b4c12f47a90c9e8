"""Run a suite from `expectations/` against one warehouse table (or one load batch of it) with GX 1.x.

GX takes seconds to import and logs a lot at INFO, so it is imported lazily here and quietened: importing
`kho.quality` stays cheap for the CLI and for Airflow's DAG parser.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlparse

import psycopg
from psycopg.types.json import Jsonb

from kho.config import KhoConfig, WarehouseConfig
from kho.errors import QualityError
from kho.quality.suites import BATCH_COLUMN, Severity, Suite, gx_suite, load_suite, severity_of, suite_name

if TYPE_CHECKING:
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.data_context import FileDataContext
    from great_expectations.datasource.fluent import PostgresDatasource

log = logging.getLogger(__name__)

DATASOURCE_NAME = "kho_warehouse"
URL_VARIABLE = "KHO_GX_WAREHOUSE_URL"
"""GX stores `${KHO_GX_WAREHOUSE_URL}` in great_expectations.yml; the real URL (with its password) is handed to the
context at run time only, so it is never written under gx_home."""
WHOLE_TABLE = "whole_table"
BY_BATCH = "by_batch_id"
RESULT_FORMAT = "SUMMARY"
NOISY_LOGGERS = ("great_expectations",)

class ExpectationOutcome(NamedTuple):
    """One expectation's verdict, flattened out of GX's result objects."""

    type: str
    column: str | None
    success: bool
    unexpected_count: int | None
    severity: Severity


@dataclass(frozen=True)
class QualityResult:
    """What a suite run found, in kho's terms: enough to decide, to record and to point a person at Data Docs."""

    suite: str
    table: str
    """Qualified `<schema>.<table>`."""
    batch_id: int | None
    """The load batch validated, or None when the whole table was."""
    success: bool
    evaluated: int
    failed: int
    blocking_failed: int
    results: tuple[ExpectationOutcome, ...]
    data_docs_path: Path | None

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(r for r in self.results if not r.success)


def warehouse_url(wh: WarehouseConfig, driver: str = "psycopg") -> str:
    """A SQLAlchemy URL listing every node with `target_session_attrs=read-write`, so GX finds the current primary
    the same way `kho.warehouse.connection` does. The password is URL-quoted by SQLAlchemy."""
    from sqlalchemy.engine import URL

    return URL.create(
        f"postgresql+{driver}",
        username=wh.user,
        password=wh.password(),
        database=wh.dbname,
        query={
            "host": [f"{h}:{p}" for h, p in zip(wh.hosts, wh.ports, strict=True)],
            "target_session_attrs": "read-write",
            "connect_timeout": "5",
            "application_name": "kho-quality",
        },
    ).render_as_string(hide_password=False)


def run_suite(
    gx_home: Path,
    url: str,
    suite_file: Path,
    schema: str,
    table: str,
    *,
    batch_id: int | None = None,
    build_docs: bool = True,
) -> QualityResult:
    """Validate `schema.table` (only the rows of load batch `batch_id` when given) against `suite_file`.

    Everything GX needs is (re)declared idempotently in the file context at gx_home on each run, so the
    context is a cache of the suites in `expectations/`, never a second source of truth.
    """
    suite = load_suite(suite_file)
    gx = _import_gx()
    with _locked(gx_home):
        return _run(gx, _context(gx_home, url), suite, schema, table, batch_id=batch_id, build_docs=build_docs)


def _run(
    gx: Any, context: FileDataContext, suite: Suite, schema: str, table: str, *, batch_id: int | None,
    build_docs: bool,
) -> QualityResult:
    """Declare the datasource, asset, batch definition, suite, validation and checkpoint, then run it."""
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.exceptions.exceptions import NoAvailableBatchesError

    asset_name = suite_name(schema, table)
    batch_definition = _batch_definition(_datasource(context), asset_name, schema, table, batch_id)
    gx_suite_ = context.suites.add_or_update(gx_suite(suite))
    run_name = f"{suite['name']}__{batch_definition.name}"
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=run_name, data=batch_definition, suite=gx_suite_)
    )
    actions = [UpdateDataDocsAction(name="update_data_docs")] if build_docs else []
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(name=run_name, validation_definitions=[validation], actions=actions, result_format=RESULT_FORMAT)
    )
    parameters = {} if batch_id is None else {BATCH_COLUMN: batch_id}
    try:
        outcome = checkpoint.run(batch_parameters=parameters)
    except NoAvailableBatchesError:
        # The merge keeps an unchanged row's old _batch_id, so a batch that changed nothing owns no rows.
        log.warning("%s: no rows carry %s=%s; nothing to validate", asset_name, BATCH_COLUMN, batch_id)
        return QualityResult(suite["name"], asset_name, batch_id, True, 0, 0, 0, (), None)
    return _quality_result(context, outcome, suite["name"], asset_name, batch_id, build_docs)


def validate(config: KhoConfig, suite_file: Path, schema: str, table: str, *, batch_id: int | None = None
             ) -> dict[str, Any]:
    """Run a suite on `schema.table` (or one load batch of it), record the result in kho.quality_results, and
    raise QualityError if a blocking expectation failed; returns a summary for the task log."""
    from kho.warehouse.connection import connect
    from kho.warehouse.migrations import require_schema

    result = run_suite(config.gx_home, warehouse_url(config.warehouse), suite_file, schema, table, batch_id=batch_id)
    with connect(config.warehouse) as conn:
        require_schema(conn)  # kho.quality_results is made by `kho warehouse migrate`
        with conn.transaction():
            record_result(conn, result)
    summary = {
        "suite": result.suite, "table": f"{schema}.{table}", "batch_id": batch_id, "success": result.success,
        "evaluated": result.evaluated, "failed": result.failed, "data_docs": str(result.data_docs_path or ""),
    }
    raise_for_blocking(result)
    return summary


def raise_for_blocking(result: QualityResult) -> None:
    """Stop the pipeline when a blocking expectation failed, naming what failed and where to look."""
    if result.blocking_failed == 0:
        return
    failed = "; ".join(
        f"{r.type}({r.column or 'table'}): {r.unexpected_count if r.unexpected_count is not None else '?'} unexpected"
        for r in result.failures
        if r.severity == "blocking"
    )
    batch = f"batch {result.batch_id}" if result.batch_id is not None else "the whole table"
    docs = f" Details: {result.data_docs_path}." if result.data_docs_path else ""
    raise QualityError(
        f"{result.table} ({batch}) failed {result.blocking_failed} blocking expectation(s) of suite "
        f"{result.suite}: {failed}.{docs} Fix the data or the loader, then reload the batch; find the failing rows "
        f"with SQL on {result.table} (GX reports only a sample)."
    )


def record_result(conn: psycopg.Connection[Any], result: QualityResult) -> int:
    """Insert one row into kho.quality_results inside the caller's transaction; return its id.

    Quality history lives in the warehouse's `kho` schema so it fails over with the data it describes.
    """
    rows = [r._asdict() for r in result.results]
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO kho.quality_results
                (suite_name, table_name, batch_id, success, evaluated, failed, blocking_failed, results,
                 data_docs_path)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING result_id
            """,
            (
                result.suite, result.table, result.batch_id, result.success, result.evaluated, result.failed,
                result.blocking_failed, Jsonb(rows),
                str(result.data_docs_path) if result.data_docs_path else None,
            ),
        )
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def _locked(gx_home: Path) -> Iterator[None]:
    """One GX run at a time per gx_home: GX rewrites great_expectations.yml and the Data Docs index on every run,
    and two Airflow tasks doing so at once would corrupt them."""
    gx_home.mkdir(parents=True, exist_ok=True)
    with (gx_home / ".kho-gx.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _import_gx() -> Any:
    """Import GX on first use and keep its INFO chatter out of task logs (it starts logging during the import)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _context(gx_home: Path, url: str) -> FileDataContext:
    """The file context at gx_home (created on first use), with the URL given only as a runtime variable."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=gx_home, runtime_environment={URL_VARIABLE: url})
    bars = context.variables.progress_bars  # a ProgressBarsConfig when set here, a dict once read back from yml
    quiet = {"globally": False, "metric_calculations": False}
    if bars is None or any(key not in bars or bars[key] for key in quiet):
        # tqdm bars on stderr turn every Airflow task log into noise.
        context.variables.progress_bars = ProgressBarsConfig(**quiet)
        context.variables.save()
    return context


def _datasource(context: FileDataContext) -> PostgresDatasource:
    """The one warehouse datasource, stored with a `${...}` placeholder instead of the URL.

    add_or_update replaces the datasource with a fresh one and so drops every other table's asset; the stored
    placeholder never changes, so it runs only when the datasource is missing or differs.
    """
    from great_expectations.datasource.fluent import PostgresDatasource

    template = f"${{{URL_VARIABLE}}}"
    existing = context.data_sources.all().get(DATASOURCE_NAME)
    if isinstance(existing, PostgresDatasource) and str(existing.connection_string) == template:
        return existing
    datasource: PostgresDatasource = context.data_sources.add_or_update_postgres(
        DATASOURCE_NAME, connection_string=template
    )
    return datasource


def _batch_definition(
    datasource: PostgresDatasource, asset_name: str, schema: str, table: str, batch_id: int | None
) -> BatchDefinition[Any]:
    """The whole table, or one load batch: a column-value partitioner on `_batch_id` filters `WHERE _batch_id = :v`
    (after one `SELECT DISTINCT _batch_id` GX runs to list the batches).

    GX 1.24's SQL assets implement PartitionerColumnValue but its add-time check only knows date partitioners,
    hence `validate_partitioner=False`; the batch id itself arrives as a batch parameter on each run.
    """
    from great_expectations.core.partitioners import PartitionerColumnValue

    try:
        asset = datasource.get_asset(asset_name)
    except LookupError:
        asset = datasource.add_table_asset(name=asset_name, schema_name=schema, table_name=table)
    name = WHOLE_TABLE if batch_id is None else BY_BATCH
    if any(d.name == name for d in asset.batch_definitions):
        asset.delete_batch_definition(name)  # redeclared each run, so a code change never meets a stale definition
    if batch_id is None:
        return asset.add_batch_definition_whole_table(WHOLE_TABLE)
    return asset.add_batch_definition(
        BY_BATCH, partitioner=PartitionerColumnValue(column_name=BATCH_COLUMN), validate_partitioner=False
    )


def _quality_result(
    context: FileDataContext,
    outcome: CheckpointResult,
    suite: str,
    table: str,
    batch_id: int | None,
    build_docs: bool,
) -> QualityResult:
    (identifier, validation), *_ = outcome.run_results.items()
    results = tuple(_outcome(r) for r in validation.results)
    failed = tuple(r for r in results if not r.success)
    docs: Path | None = None
    if build_docs:
        docs = _docs_path(context, identifier)
    return QualityResult(
        suite=suite,
        table=table,
        batch_id=batch_id,
        success=bool(validation.success),
        evaluated=len(results),
        failed=len(failed),
        blocking_failed=sum(1 for r in failed if r.severity == "blocking"),
        results=results,
        data_docs_path=docs,
    )


def _outcome(result: ExpectationValidationResult) -> ExpectationOutcome:
    config = result.expectation_config
    assert config is not None
    kwargs = config.kwargs
    column = kwargs.get("column")
    if column is None and "column_list" in kwargs:
        column = ",".join(kwargs["column_list"])
    if column is None and "column_A" in kwargs:
        column = f"{kwargs['column_A']},{kwargs['column_B']}"
    details = result.result or {}
    unexpected = details.get("unexpected_count")
    if unexpected is None and config.type == "unexpected_rows_expectation":
        unexpected = details.get("observed_value")
    return ExpectationOutcome(
        type=config.type,
        column=column,
        success=bool(result.success),
        unexpected_count=int(unexpected) if isinstance(unexpected, int) else None,
        severity=severity_of({"meta": config.meta}),
    )


def _docs_path(context: FileDataContext, identifier: Any) -> Path | None:
    """The local Data Docs page of this validation run (a file under gx_home/gx/uncommitted/data_docs)."""
    for site in context.get_docs_sites_urls(resource_identifier=identifier):
        url = site.get("site_url")
        if url and url.startswith("file://"):
            return Path(unquote(urlparse(url).path))
    return None
