"""`kho runs` and `kho ledger`: what ran and what each batch loaded, newest first, as aligned plain text.

The ledger is read from the warehouse (kho.load_ledger, the proof that every record read is accounted for); runs
from Airflow's metadata DB (kho.airflow_runs).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from psycopg import sql

from kho.airflow_runs import DagRun
from kho.config import KhoConfig
from kho.errors import ConfigError
from kho.screen import Cell, count, local, span, state_cell, table
from kho.sources import ENTITIES
from kho.sources import registry as find_registry
from kho.warehouse.connection import connect


@dataclass(frozen=True)
class LedgerRow:
    """One batch as kho.load_ledger holds it."""

    batch_id: int
    registry: str
    entity: str
    source: str
    source_name: str | None
    run_id: str | None
    finished_at: dt.datetime
    read: int
    new: int
    changed: int
    unchanged: int
    rejected: int
    cursor_from: dt.datetime | None
    cursor_to: dt.datetime | None


@dataclass(frozen=True)
class LedgerQuery:
    """`kho ledger`'s filters: a registry, an entity (of that registry, or of any), a moment to start from."""

    registry: str | None = None
    entity: str | None = None
    since: dt.datetime | None = None
    limit: int = 30

    def check(self) -> None:
        """An unknown registry or entity is a typing error to point out, not an empty answer to puzzle over."""
        if self.limit < 1:
            raise ConfigError(f"--limit {self.limit}: give 1 or more")
        if self.registry is not None:
            chosen = find_registry(self.registry)  # unknown: ConfigError naming the known ones
            if self.entity is not None:
                chosen.entity(self.entity)
        elif self.entity is not None and all(e.name != self.entity for e in ENTITIES):
            names = ", ".join(sorted({e.name for e in ENTITIES}))
            raise ConfigError(f"no registry has an entity {self.entity!r}; entities: {names}")


def ledger(config: KhoConfig, query: LedgerQuery) -> list[LedgerRow]:
    """The newest batches first, filtered as asked."""
    query.check()
    conditions: list[sql.Composable] = [sql.SQL("true")]
    params: list[object] = []
    for column, value in (("registry", query.registry), ("entity", query.entity)):
        if value is not None:
            conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if query.since is not None:
        conditions.append(sql.SQL("finished_at >= %s"))
        params.append(query.since)
    statement = sql.SQL(
        "SELECT batch_id, registry, entity, source, source_name, run_id, finished_at, rows_read, rows_new, "
        "rows_changed, rows_unchanged, rows_rejected, cursor_from, cursor_to FROM kho.load_ledger WHERE {} "
        "ORDER BY batch_id DESC LIMIT %s").format(sql.SQL(" AND ").join(conditions))
    with connect(config.warehouse, autocommit=True) as conn:
        return [LedgerRow(*r) for r in conn.execute(statement, (*params, query.limit))]


def _cursor(row: LedgerRow) -> str:
    if row.cursor_from is None and row.cursor_to is None:
        return "-"
    return f"{local(row.cursor_from) if row.cursor_from else '…'} .. {local(row.cursor_to) if row.cursor_to else '…'}"


def render_ledger(rows: list[LedgerRow], *, colour: bool = False) -> list[str]:
    """Batch, entity, source, the five counts and the cursor range the batch read, times on the province's clock."""
    cells: list[list[str | Cell]] = [
        [str(r.batch_id), f"{r.registry}.{r.entity}", r.source_name or r.source, local(r.finished_at), count(r.read),
         count(r.new), count(r.changed), count(r.unchanged), count(r.rejected), _cursor(r)] for r in rows]
    return table(("BATCH", "ENTITY", "SOURCE", "FINISHED", "READ", "NEW", "CHANGED", "UNCHANGED", "REJECTED",
                  "CURSOR RANGE"), cells, align=(">", "<", "<", "<", ">", ">", ">", ">", ">", "<"),
                 colour=colour, indent="")


def render_runs(runs: list[DagRun], now: dt.datetime, *, colour: bool = False) -> list[str]:
    """DAG, run id, state, start (province's clock) and duration (so far, for a run still going)."""
    cells: list[list[str | Cell]] = [[r.dag_id, r.run_id, state_cell(r.state), local(r.start), span(r.seconds(now))]
                                     for r in runs]
    return table(("DAG", "RUN ID", "STATE", "STARTED", "DURATION"), cells, align=("<", "<", "<", "<", ">"),
                 colour=colour, indent="")
