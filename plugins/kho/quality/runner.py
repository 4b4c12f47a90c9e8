"""Run the GX project's checkpoints (declared once under `expectations/`) and record what they found.

A raw gate validates everything one run committed to a raw table at once: it opens a row in
kho.quality_validations over the run's batch range and points the table's gate view at that range (one gate per
table at a time), runs the table's checkpoint (GX reads the rows through the view), then records every
expectation's outcome in kho.quality_results, every row that failed a warning in kho.quality_flags (found with SQL:
GX reports counts), and closes the validation as passed, warned or failed. A mart is validated whole, the same way,
before publication.

GX takes seconds to import and logs a lot at INFO, so it is imported lazily here and quietened: importing
`kho.quality` stays cheap for the CLI and for Airflow's DAG parser.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import psycopg
from psycopg import sql

from kho.config import KhoConfig, WarehouseConfig
from kho.errors import ConfigError, QualityError, WarehouseError
from kho.quality import project
from kho.quality.flags import FlagQuery, flag_query
from kho.quality.suites import Severity, load_suite, parameter_values, rule_of, severity_of, suite_path

if TYPE_CHECKING:
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.data_context import FileDataContext

log = logging.getLogger(__name__)

NOISY_LOGGERS = ("great_expectations",)


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict, flattened out of GX's result objects."""

    index: int
    """Its position in the suite (what kho.quality_results and kho.quality_flags key on)."""
    type: str
    column: str | None
    rule: str | None
    severity: Severity
    success: bool
    unexpected_count: int | None
    element_count: int | None
    kwargs: Mapping[str, Any]
    """As validated: $PARAMETERs resolved (the flag query reads them)."""


@dataclass(frozen=True)
class QualityResult:
    """What a validation found, in kho's terms: enough to decide, to record and to point a person at Data Docs."""

    validation_id: int
    suite: str
    table: str
    """The relation the suite describes: `raw.<table>` or `mart_<domain>.<table>`."""
    run_id: str | None
    first_batch_id: int | None
    last_batch_id: int | None
    results: tuple[ExpectationOutcome, ...]
    rows: int | None
    """Rows validated (GX's element count), None when GX counted none."""
    data_docs_path: Path | None
    flagged: int = 0
    """Rows listed in kho.quality_flags for the warnings that failed."""

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(r for r in self.results if not r.success)

    @property
    def blocking_failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(r for r in self.failures if r.severity == "blocking")

    @property
    def success(self) -> bool:
        return not self.failures

    @property
    def state(self) -> str:
        return "failed" if self.blocking_failures else "warned" if self.failures else "passed"

    @property
    def batch_range(self) -> str:
        if self.first_batch_id is None:
            return "the whole table"
        if self.first_batch_id == self.last_batch_id:
            return f"batch {self.first_batch_id}"
        return f"batches {self.first_batch_id}-{self.last_batch_id}"

    def summary(self) -> dict[str, Any]:
        """What the Airflow task returns and the webhook receives: small, JSON, enough to act on."""
        return {
            "validation_id": self.validation_id, "suite": self.suite, "table": self.table, "run_id": self.run_id,
            "first_batch_id": self.first_batch_id, "last_batch_id": self.last_batch_id, "state": self.state,
            "rows": self.rows, "evaluated": len(self.results), "failed": len(self.failures),
            "blocking_failed": len(self.blocking_failures), "flagged_rows": self.flagged,
            "failures": [{"expectation": r.type, "column": r.column, "rule": r.rule, "severity": r.severity,
                          "unexpected_count": r.unexpected_count} for r in self.failures],
            "data_docs": str(self.data_docs_path or ""),
        }


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


# ------------------------------------------------------------------------------------------------- entry points


def validate_raw(config: KhoConfig, raw_table: str, batch_ids: Sequence[int], *, run_id: str | None = None
                 ) -> QualityResult:
    """Validate every row the batches `batch_ids` left in `raw.<raw_table>` (a run's batches: one validation over
    first..last), record it, tell the webhook if anything failed, and raise QualityError on a blocking failure.

    Rows a batch counted unchanged keep their earlier batch id and were validated with it; the batch ids between
    first and last that belong to other tables own no row of this one."""
    if not batch_ids:
        raise ValueError("validate_raw needs at least one batch id")
    target = project.raw_table_target(raw_table)
    return _gate(config, target, run_id=run_id, batch_range=(min(batch_ids), max(batch_ids)))


def validate_mart(config: KhoConfig, mart: str, build_schema: str, table: str, *, run_id: str | None = None
                  ) -> QualityResult:
    """Validate the build table of mart `mart` (`mart_<domain>.<table>`) whole; raise on a blocking failure."""
    return _gate(config, project.Target(mart, "mart", build_schema, table), run_id=run_id, batch_range=None)


def raise_for_blocking(result: QualityResult) -> None:
    """Stop the pipeline when a blocking expectation failed, naming each with its count and where to look."""
    blocking = result.blocking_failures
    if not blocking:
        return
    failed = "; ".join(f"{_label(r)}: {_count(r)}" for r in blocking)
    warned = len(result.failures) - len(blocking)
    also = f" ({warned} warning(s) failed too, their rows in kho.quality_flags)" if warned else ""
    docs = f" Details: {result.data_docs_path}." if result.data_docs_path else ""
    where = "" if result.first_batch_id is None else \
        f" WHERE _batch_id BETWEEN {result.first_batch_id} AND {result.last_batch_id}"
    raise QualityError(
        f"{result.table} ({result.batch_range}) failed {len(blocking)} blocking expectation(s) of suite "
        f"{result.suite}: {failed}{also}. Validation {result.validation_id} in kho.quality_results.{docs} Fix the "
        f"data or the loader, then reload; find the failing rows with SQL on {result.table}{where} (GX reports "
        "counts)."
    )


def _label(r: ExpectationOutcome) -> str:
    what = r.rule or r.type
    return f"{what}({r.column})" if r.column else what


def _count(r: ExpectationOutcome) -> str:
    if r.unexpected_count is None:
        return "failed"
    rows = f" of {r.element_count}" if r.element_count is not None else ""
    return f"{r.unexpected_count}{rows} rows unexpected"


# ------------------------------------------------------------------------------------------------- one gate


def _gate(config: KhoConfig, target: project.Target, *, run_id: str | None,
          batch_range: tuple[int, int] | None) -> QualityResult:
    from kho.warehouse.connection import connect
    from kho.warehouse.migrations import require_schema

    suite = load_suite(suite_path(config.expectations_dir, target.suite))
    with connect(config.warehouse, autocommit=True) as lock:
        require_schema(lock)  # kho.quality_validations and the gate views are made by `kho warehouse migrate`
        # One gate per table at a time (a second waits): the gate view shows the open validation's rows. Held on its
        # own session, so a process that dies (or loses the primary) lets go of it.
        lock.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"kho.gate:{target.suite}",))
        return _gated(config, target, suite, run_id, batch_range)


def _gated(config: KhoConfig, target: project.Target, suite: Mapping[str, Any], run_id: str | None,
           batch_range: tuple[int, int] | None) -> QualityResult:
    """The gate, once its lock is held: open, validate, record, close, tell."""
    from kho.quality.notify import notify
    from kho.warehouse.connection import connect

    with connect(config.warehouse, autocommit=True) as conn:
        validation_id = _open(conn, target, run_id, batch_range)
    first, last = batch_range if batch_range is not None else (None, None)
    try:
        context, outcome = _run_checkpoint(config, target)
        results = _outcomes(outcome, suite)
        docs = _docs_path(context, outcome, target)
        rows = max((r.element_count for r in results if r.element_count is not None), default=None)
        result = QualityResult(validation_id, target.suite, target.suite, run_id, first, last, results, rows, docs)
        with connect(config.warehouse) as conn, conn.transaction():
            result = dataclasses.replace(result, flagged=_record(conn, result, target))
    except BaseException:
        # Whatever stopped it (GX, the warehouse, a kill), the validation must not stay `running`: nothing would
        # say it never finished.
        with contextlib.suppress(psycopg.Error), connect(config.warehouse, autocommit=True) as conn:
            _close(conn, validation_id, "abandoned")
        raise
    flagged = result.flagged
    log.info("%s (%s): %s, %d expectations, %d failed (%d blocking), %d rows flagged", result.table,
             result.batch_range, result.state, len(results), len(result.failures), len(result.blocking_failures),
             flagged)
    if result.failures:
        notify(config.quality, result.summary())
    raise_for_blocking(result)
    return result


def _open(conn: psycopg.Connection[Any], target: project.Target, run_id: str | None,
          batch_range: tuple[int, int] | None) -> int:
    """A running validation of `target`, and for a raw table its gate view pointed at the validation's range. A
    validation of the same table left running by a process that died is abandoned first."""
    from kho.warehouse.migrations import gate_view

    first, last = batch_range if batch_range is not None else (None, None)
    with conn.transaction():
        conn.execute("UPDATE kho.quality_validations SET state = 'abandoned', finished_at = now() "
                     "WHERE table_name = %s AND state = 'running'", (target.suite,))
        row = conn.execute(
            "INSERT INTO kho.quality_validations (run_id, suite_name, table_name, first_batch_id, last_batch_id) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING validation_id",
            (run_id, target.suite, target.suite, first, last)).fetchone()
        assert row is not None
        if target.layer == project.RAW_LAYER:
            if batch_range is None:
                raise ValueError("a raw gate validates a batch range")
            try:
                conn.execute(gate_view(target.table, int(row[0]), batch_range))
            except psycopg.errors.InvalidTableDefinition as exc:
                raise WarehouseError(f"gate.{target.table} no longer matches raw.{target.table}: run `kho warehouse "
                                     "migrate`") from exc
    return int(row[0])


def _close(conn: psycopg.Connection[Any], validation_id: int, state: str, result: QualityResult | None = None
           ) -> None:
    """End a validation: its state, and what it found when it finished (nothing when it was abandoned)."""
    found: tuple[Any, ...] = (None,) * 5
    if result is not None:
        docs = str(result.data_docs_path) if result.data_docs_path else None
        found = (result.rows, len(result.results), len(result.failures), len(result.blocking_failures), docs)
    conn.execute(
        "UPDATE kho.quality_validations SET state = %s, finished_at = now(), rows_validated = %s, evaluated = %s, "
        "failed = %s, blocking_failed = %s, data_docs_path = %s WHERE validation_id = %s",
        (state, *found, validation_id))


def _record(conn: psycopg.Connection[Any], result: QualityResult, target: project.Target) -> int:
    """Every outcome into kho.quality_results, every row failing a warning into kho.quality_flags, and the
    validation closed: one transaction, so a validation is recorded whole or not at all."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO kho.quality_results (validation_id, expectation_index, run_id, suite_name, table_name, "
            "expectation_type, column_name, rule, severity, success, unexpected_count, element_count, "
            "first_batch_id, last_batch_id, validated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
            [(result.validation_id, r.index, result.run_id, result.suite, result.table, r.type, r.column, r.rule,
              r.severity, r.success, r.unexpected_count, r.element_count, result.first_batch_id,
              result.last_batch_id) for r in result.results])
    flagged = 0
    for r in result.failures:
        if r.severity != "warning":
            continue
        query = flag_query(target, r.type, r.kwargs, batch_range=(
            None if result.first_batch_id is None else (result.first_batch_id, result.last_batch_id)))
        if query is None:
            log.warning("%s: %s failed but kho cannot list its rows in SQL (not a row-level expectation)",
                        result.suite, _label(r))
            continue
        flagged += _insert_flags(conn, result, r, query)
    _close(conn, result.validation_id, result.state, result)
    return flagged


def _insert_flags(conn: psycopg.Connection[Any], result: QualityResult, r: ExpectationOutcome, query: FlagQuery
                  ) -> int:
    statement = sql.SQL(
        "INSERT INTO kho.quality_flags (validation_id, expectation_index, table_name, rule, row_key, batch_id, "
        "observed) SELECT %(_validation_id)s, %(_index)s, %(_table)s, %(_rule)s, row_key, batch_id, observed "
        "FROM ({}) AS flagged").format(sql.SQL(query.sql))  # compiled by SQLAlchemy, values bound
    cur = conn.execute(statement, {**query.params, "_validation_id": result.validation_id, "_index": r.index,
                                   "_table": result.table, "_rule": r.rule})
    return cur.rowcount


# ------------------------------------------------------------------------------------------------- GX


def _run_checkpoint(config: KhoConfig, target: project.Target) -> tuple[FileDataContext, CheckpointResult]:
    """The checkpoint's result, and the context that ran it."""
    _import_gx()  # first: GX's import logs at INFO unless its logger is quieted before
    from great_expectations.exceptions import DataContextError, GreatExpectationsError

    context = gx_context(config)
    try:
        checkpoint = context.checkpoints.get(target.suite)
    except DataContextError as exc:
        raise ConfigError(f"no GX checkpoint {target.suite!r} under {config.expectations_dir}: run `kho generate` "
                          "(it declares one per raw table and per mart suite)") from exc
    try:
        return context, checkpoint.run(expectation_parameters=parameter_values())
    except GreatExpectationsError as exc:  # a suite parameter missing, a datasource GX cannot reach, ...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise QualityError(f"GX could not validate {target.suite}: {reason}") from exc


def gx_context(config: KhoConfig) -> FileDataContext:
    """The file context of the project under `expectations/`, with the URL and KHO_GX_HOME given at run time only
    (nothing with a password is ever written, and GX writes under KHO_GX_HOME alone)."""
    gx = _import_gx()
    config.gx_home.mkdir(parents=True, exist_ok=True)
    context: FileDataContext = gx.get_context(
        mode="file", context_root_dir=str(config.expectations_dir),
        runtime_environment={project.URL_VARIABLE: warehouse_url(config.warehouse),
                             project.HOME_VARIABLE: str(config.gx_home)})
    return context


def _import_gx() -> Any:
    """Import GX and kho's domain expectations on first use, keeping GX's INFO chatter out of task logs."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    import great_expectations as gx

    import kho.quality.domain  # noqa: F401  # registers kho's custom expectations before a suite is read

    return gx


def _outcomes(outcome: CheckpointResult | None, suite: Mapping[str, Any]) -> tuple[ExpectationOutcome, ...]:
    if outcome is None:
        return ()
    (_, validation), *_ = outcome.run_results.items()
    index = {str(e.get("id")): i for i, e in enumerate(suite["expectations"])}
    found = []
    for result in validation.results:
        config = result.expectation_config
        assert config is not None
        position = index.get(str(config.id))
        if position is None:
            raise ConfigError(f"suite {suite['name']}: GX returned a result for expectation {config.id} "
                              f"({config.type}), which the suite file does not hold: run `kho generate`")
        found.append(_outcome(position, result, suite["expectations"][position]))
    return tuple(sorted(found, key=lambda r: r.index))


def _outcome(index: int, result: ExpectationValidationResult, declared: Mapping[str, Any]) -> ExpectationOutcome:
    config = result.expectation_config
    assert config is not None
    kwargs = dict(config.kwargs)
    column = kwargs.get("column")
    if column is None and "column_list" in kwargs:
        column = ",".join(kwargs["column_list"])
    if column is None and "column_A" in kwargs:
        column = f"{kwargs['column_A']},{kwargs['column_B']}"
    details = result.result or {}
    unexpected = details.get("unexpected_count")
    if unexpected is None and config.type == "unexpected_rows_expectation":
        unexpected = details.get("observed_value")
    elements = details.get("element_count")
    return ExpectationOutcome(
        index=index,
        type=config.type,
        column=column,
        rule=rule_of(declared),
        severity=severity_of(declared),
        success=bool(result.success),
        unexpected_count=int(unexpected) if isinstance(unexpected, int) else None,
        element_count=int(elements) if isinstance(elements, int) else None,
        kwargs=kwargs,
    )


def _docs_path(context: FileDataContext | None, outcome: CheckpointResult | None, target: project.Target
               ) -> Path | None:
    """The local Data Docs page of this validation (under KHO_GX_HOME/data_docs). A mart's checkpoint builds it;
    a raw gate's page is built only when something failed (raw gates run in parallel and otherwise leave the site
    to the nightly build, so they never write the shared index at once)."""
    if context is None or outcome is None:
        return None
    (identifier, validation), *_ = outcome.run_results.items()
    if not target.updates_data_docs:
        if validation.success:
            return None
        context.build_data_docs(resource_identifiers=[identifier])
    for site in context.get_docs_sites_urls(resource_identifier=identifier):
        url = site.get("site_url")
        if url and url.startswith("file://"):
            return Path(unquote(urlparse(url).path))
    return None
