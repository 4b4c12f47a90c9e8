"""`kho status`: the operator's one screen — the newest run of each DAG, today's loads, the quarantine, quality,
replication, backups and how fresh each published dataset is — and what of it needs attention (exit 1).

Each part is read on its own and a part that cannot be read says why in its own line, so a stopped warehouse or an
Airflow that never ran still gives the rest of the screen. What "needs attention" means is said once, in
`StatusReport.attention`: a DAG whose newest run failed, a validation that failed a blocking expectation today,
what the warehouse_health DAG alerts on (nodes, lag, slots, disk, backups), and marts not published for a day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from kho import airflow_runs
from kho.airflow_runs import DagLine
from kho.config import KhoConfig
from kho.errors import KhoError, WarehouseError
from kho.screen import Cell, count, local, local_day, paint, span, state_cell, table
from kho.sources import REGISTRIES
from kho.warehouse.connection import connect

if TYPE_CHECKING:
    from kho.warehouse.backup import BackupStatus
    from kho.warehouse.health import HealthReport

KHO_DAGS = (*(r.dag_id for r in REGISTRIES), "build_warehouse", "warehouse_health", "warehouse_backup")
"""The DAGs kho ships, in the order a night runs them; a DAG Airflow knows besides is listed after them."""
FAILED_RUN_STATES = frozenset({"failed", "upstream_failed"})
PUBLICATION_MAX_AGE = dt.timedelta(hours=26)
"""build_warehouse publishes nightly; two hours of slack for a long night, as for the nightly backup."""
LAYERS = ("raw", "mart")


@dataclass(frozen=True)
class LedgerTotal:
    """One registry's batches committed today, with the ledger's five counts summed."""

    registry: str
    batches: int
    read: int
    new: int
    changed: int
    unchanged: int
    rejected: int


@dataclass(frozen=True)
class QuarantineReason:
    reason: str
    today: int
    total: int


@dataclass(frozen=True)
class QualityLayer:
    """Today's validations of one layer (raw tables, or marts) by how they ended."""

    layer: str
    passed: int = 0
    warned: int = 0
    failed: int = 0
    abandoned: int = 0
    running: int = 0

    @property
    def pass_rate(self) -> float | None:
        """Share of the validations that ended with every expectation met; None when none ended."""
        ended = self.passed + self.warned + self.failed
        return self.passed / ended if ended else None


@dataclass(frozen=True)
class DatasetFreshness:
    """A published mart and the newest publication that carried it."""

    name: str
    publication_id: int
    as_of: dt.date
    published_at: dt.datetime


@dataclass(frozen=True)
class StatusReport:
    """Everything `kho status` shows; a part that could not be read holds the one-line reason instead."""

    now: dt.datetime
    home: str
    airflow_db: str
    dags: list[DagLine] | str
    ledger: list[LedgerTotal] | str
    quarantine: list[QuarantineReason] | str
    quality: list[QualityLayer] | str
    failed_suites: list[str] = field(default_factory=list)
    health: HealthReport | str = "not checked"
    backup: BackupStatus | str = "not checked"
    datasets: list[DatasetFreshness] | str = "not read"

    @property
    def day(self) -> dt.date:
        return local_day(self.now)[0]

    @property
    def attention(self) -> list[str]:
        """What an operator should act on, one sentence each; empty when all is well."""
        found: list[str] = []
        if not isinstance(self.dags, str):
            found += [f"{d.dag_id}: its newest run {d.last.run_id} ended {d.last.state} "
                      f"(started {local(d.last.start)}); `kho runs --dag {d.dag_id}` and its task logs say more"
                      for d in self.dags if d.last is not None and d.last.state in FAILED_RUN_STATES]
        parts = (self.ledger, self.quarantine, self.quality, self.datasets)
        found += sorted({f"warehouse: {part}" for part in parts if isinstance(part, str)})
        if self.failed_suites:
            found.append(f"{len(self.failed_suites)} validation(s) failed a blocking expectation today: "
                         f"{', '.join(sorted(set(self.failed_suites)))} (kho.quality_results)")
        if isinstance(self.health, str):
            found.append(f"warehouse health: {self.health}")
        else:
            found += list(self.health.alerts)
        if isinstance(self.datasets, list) and self.datasets:
            newest = max(self.datasets, key=lambda d: d.published_at)
            age = self.now - newest.published_at
            if age > PUBLICATION_MAX_AGE:
                found.append(f"the newest publication (#{newest.publication_id}, as of {newest.as_of}) is "
                             f"{span(age.total_seconds())} old: is build_warehouse running?")
        return found

    def render(self, *, colour: bool = False) -> str:
        lines = [f"kho status at {local(self.now)} (Asia/Ho_Chi_Minh), KHO_HOME {self.home}"]
        for part in (_dag_lines, _ledger_lines, _quarantine_lines, _quality_lines, _replication_lines,
                     _backup_lines, _dataset_lines):
            lines += ["", *part(self, colour)]
        problems = self.attention
        lines.append("")
        if problems:
            lines.append(paint(f"Needs attention ({len(problems)}):", "bad", colour))
            lines += [f"  - {p}" for p in problems]
        else:
            lines.append(paint("Nothing needs attention.", "good", colour))
        return "\n".join(lines)


def _unread(title: str, why: str) -> list[str]:
    return [title, f"  {why}"]


def _dag_lines(r: StatusReport, colour: bool) -> list[str]:
    title = f"DAG runs, the newest of each (Airflow metadata DB {r.airflow_db})"
    if isinstance(r.dags, str):
        return _unread(title, r.dags)
    rows: list[list[str | Cell]] = []
    for d in r.dags:
        scheduler = "-" if d.paused is None else ("paused" if d.paused else "active")
        if d.last is None:
            rows.append([d.dag_id, scheduler, "-", Cell("never run"), "-", "-"])
            continue
        rows.append([d.dag_id, scheduler, d.last.run_id, state_cell(d.last.state), local(d.last.start),
                     span(d.last.seconds(r.now))])
    return [title, *table(("DAG", "SCHEDULE", "LAST RUN", "STATE", "STARTED", "DURATION"), rows,
                          align=("<", "<", "<", "<", "<", ">"), colour=colour)]


def _ledger_lines(r: StatusReport, colour: bool) -> list[str]:
    title = f"Loaded today ({r.day}), per registry: read = new + changed + unchanged + rejected (kho.load_ledger)"
    if isinstance(r.ledger, str):
        return _unread(title, r.ledger)
    rows: list[list[str | Cell]] = [[t.registry, count(t.batches), count(t.read), count(t.new), count(t.changed),
                                     count(t.unchanged), count(t.rejected)] for t in r.ledger]
    sums = [sum(getattr(t, f) for t in r.ledger) for f in ("batches", "read", "new", "changed", "unchanged",
                                                           "rejected")]
    rows.append(["total", *(count(s) for s in sums)])
    return [title, *table(("REGISTRY", "BATCHES", "READ", "NEW", "CHANGED", "UNCHANGED", "REJECTED"), rows,
                          align=("<", ">", ">", ">", ">", ">", ">"), colour=colour)]


def _quarantine_lines(r: StatusReport, colour: bool) -> list[str]:
    title = "Quarantine by reason (kho.quarantine)"
    if isinstance(r.quarantine, str):
        return _unread(title, r.quarantine)
    if not r.quarantine:
        return [title, "  nothing quarantined"]
    rows: list[list[str | Cell]] = [[q.reason, count(q.today), count(q.total)] for q in r.quarantine]
    return [title, *table(("REASON", "TODAY", "ALL"), rows, align=("<", ">", ">"), colour=colour)]


def _quality_lines(r: StatusReport, colour: bool) -> list[str]:
    title = "Quality today: Great Expectations validations per layer (kho.quality_validations)"
    if isinstance(r.quality, str):
        return _unread(title, r.quality)
    rows: list[list[str | Cell]] = []
    for q in r.quality:
        rate = "-" if q.pass_rate is None else f"{q.pass_rate:.0%}"
        rows.append([q.layer, count(q.passed), Cell(count(q.warned), "warn" if q.warned else "plain"),
                     Cell(count(q.failed), "bad" if q.failed else "plain"), count(q.abandoned), count(q.running),
                     rate])
    return [title, *table(("LAYER", "PASSED", "WARNED", "FAILED", "ABANDONED", "RUNNING", "PASS RATE"), rows,
                          align=("<", ">", ">", ">", ">", ">", ">"), colour=colour)]


def _replication_lines(r: StatusReport, colour: bool) -> list[str]:
    title = "Replication (kho warehouse status has the details)"
    if isinstance(r.health, str):
        return _unread(title, r.health)
    rows: list[list[str | Cell]] = []
    for n in r.health.status.nodes:
        lag = "-" if n.lag_bytes is None else f"{n.lag_bytes:,} B" + (
            "" if n.lag_seconds is None else f" / {n.lag_seconds:.3f} s")
        role = Cell(n.role, "bad" if n.role == "down" else "plain")
        rows.append([n.name, f"{n.host}:{n.port}", role, n.replication_state or n.receiver_status or "-", lag])
    return [title, *table(("NODE", "ADDRESS", "ROLE", "REPLICATION", "LAG"), rows,
                          align=("<", "<", "<", "<", ">"), colour=colour)]


def _backup_lines(r: StatusReport, colour: bool) -> list[str]:
    title = "Backups (pgBackRest)"
    if isinstance(r.backup, str):
        return _unread(title, r.backup)
    b = r.backup
    lines = [title, f"  repository {b.repository}: {b.backups} backup(s)"]
    for what, last in (("newest", b.last), ("newest full", b.last_full)):
        lines.append(f"  {what}: none" if last is None else
                     f"  {what}: {last.label} ({last.kind}), finished {local(last.stopped)}, "
                     f"{span((r.now - last.stopped).total_seconds())} old")
    if b.error:
        lines.append(f"  {b.error}")
    return lines


def _dataset_lines(r: StatusReport, colour: bool) -> list[str]:
    title = "Published datasets, the newest publication of each (kho.publications)"
    if isinstance(r.datasets, str):
        return _unread(title, r.datasets)
    if not r.datasets:
        return [title, "  nothing published yet (`kho build` or the build_warehouse DAG publishes)"]
    rows: list[list[str | Cell]] = []
    for d in r.datasets:
        age = r.now - d.published_at
        rows.append([d.name, str(d.as_of), f"#{d.publication_id}", local(d.published_at),
                     Cell(span(age.total_seconds()), "warn" if age > PUBLICATION_MAX_AGE else "plain")])
    return [title, *table(("DATASET", "AS OF", "PUBLICATION", "PUBLISHED", "AGE"), rows,
                          align=("<", "<", ">", "<", ">"), colour=colour)]


# --------------------------------------------------------------------------------------------------- reading


def gather(config: KhoConfig, *, now: dt.datetime | None = None) -> StatusReport:
    """Read every part of the screen; none raises for what it cannot read."""
    moment = now or dt.datetime.now(dt.UTC)
    dags: list[DagLine] | str
    try:
        dags = airflow_runs.last_runs(config, KHO_DAGS)
    except KhoError as exc:
        dags = str(exc)
    figures = _warehouse_figures(config, moment)
    backups = _backup(config)
    return StatusReport(
        now=moment, home=str(config.home), airflow_db=str(airflow_runs.metadata_db(config)), dags=dags,
        health=_health(config, backups), backup=backups, **figures,
    )


def _warehouse_figures(config: KhoConfig, now: dt.datetime) -> dict[str, Any]:
    """Ledger, quarantine, quality and publications over one connection to the primary; each query on its own,
    so a table this warehouse lacks spoils only its own part."""
    _, start, end = local_day(now)
    try:
        conn = connect(config.warehouse, autocommit=True)
    except (KhoError, psycopg.Error) as exc:
        addresses = ", ".join(f"{h}:{p}" for h, p in zip(config.warehouse.hosts, config.warehouse.ports, strict=True))
        why = (f"not read: no primary answers ({addresses}; `kho warehouse status` says why)"
               if isinstance(exc, WarehouseError) else f"not read: {_first_line(exc)}")
        return {"ledger": why, "quarantine": why, "quality": why, "datasets": why}
    with conn:
        figures: dict[str, Any] = {}
        for name, read in (("ledger", _ledger), ("quarantine", _quarantine), ("quality", _quality),
                           ("datasets", _datasets)):
            try:
                figures[name] = read(conn, start, end)
            except psycopg.Error as exc:
                figures[name] = f"cannot read it: {_first_line(exc)} (is the schema migrated? `kho warehouse migrate`)"
        try:
            figures["failed_suites"] = [r[0] for r in conn.execute(
                "SELECT suite_name FROM kho.quality_validations WHERE state = 'failed' AND started_at >= %s "
                "AND started_at < %s ORDER BY validation_id", (start, end))]
        except psycopg.Error:
            figures["failed_suites"] = []
    return figures


def _ledger(conn: psycopg.Connection[Any], start: dt.datetime, end: dt.datetime) -> list[LedgerTotal]:
    found = {r[0]: LedgerTotal(*r) for r in conn.execute(
        "SELECT registry, count(*), sum(rows_read), sum(rows_new), sum(rows_changed), sum(rows_unchanged), "
        "sum(rows_rejected) FROM kho.load_ledger WHERE finished_at >= %s AND finished_at < %s "
        "GROUP BY registry ORDER BY registry", (start, end))}
    known = [r.slug for r in REGISTRIES]
    return [found.get(slug) or LedgerTotal(slug, 0, 0, 0, 0, 0, 0) for slug in known] + \
        [found[slug] for slug in sorted(set(found) - set(known))]


def _quarantine(conn: psycopg.Connection[Any], start: dt.datetime, end: dt.datetime) -> list[QuarantineReason]:
    return [QuarantineReason(*r) for r in conn.execute(
        "SELECT reason_code, count(*) FILTER (WHERE quarantined_at >= %s AND quarantined_at < %s), count(*) "
        "FROM kho.quarantine GROUP BY reason_code ORDER BY 2 DESC, 3 DESC, 1", (start, end))]


def _quality(conn: psycopg.Connection[Any], start: dt.datetime, end: dt.datetime) -> list[QualityLayer]:
    """Layers as the suites name them (`raw.<table>`, `mart_<domain>.<table>`): raw tables, and marts."""
    counts: dict[str, dict[str, int]] = {layer: {} for layer in LAYERS}
    for layer, state, n in conn.execute(
            "SELECT CASE WHEN suite_name LIKE 'raw.%%' THEN 'raw' ELSE 'mart' END, state, count(*) "
            "FROM kho.quality_validations WHERE started_at >= %s AND started_at < %s GROUP BY 1, 2", (start, end)):
        counts[layer][state] = int(n)
    return [QualityLayer(layer, **states) for layer, states in counts.items()]


def _datasets(conn: psycopg.Connection[Any], start: dt.datetime, end: dt.datetime) -> list[DatasetFreshness]:
    return [DatasetFreshness(*r) for r in conn.execute(
        "SELECT DISTINCT ON (t.name) t.name, p.publication_id, p.as_of, p.published_at "
        "FROM kho.publications AS p, jsonb_object_keys(p.tables) AS t (name) "
        "ORDER BY t.name, p.publication_id DESC")]


def _health(config: KhoConfig, backup: BackupStatus | str) -> HealthReport | str:
    """What the warehouse_health DAG alerts on (nodes, lag, slots, backups, disk), from the backup status already
    read: the two never disagree, and pgBackRest is asked once."""
    from kho.warehouse import health

    try:
        state = health.status(config)
        alerts = [*state.problems, *health.threshold_alerts(state, config.ha)]
        if not isinstance(backup, str):
            alerts += health.backup_alerts(backup)
        alerts += health.disk_alerts(config)
    except (KhoError, psycopg.Error) as exc:
        return f"cannot check: {_first_line(exc)}"
    return health.HealthReport(status=state, alerts=tuple(alerts), checked=())


def _backup(config: KhoConfig) -> BackupStatus | str:
    from kho.warehouse import backup, patroni

    try:
        why = patroni.backups_unsupported(config)
        if why is not None:
            return f"none here ({why})"
        if not config.ha.backup_repo.is_dir():
            return f"no repository at {config.ha.backup_repo} yet (`kho warehouse up` makes it)"
        return backup.status(config)
    except KhoError as exc:
        return f"unknown ({_first_line(exc)})"


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """An error on one screen line: its first line, cut at `limit` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 1] + "…"
