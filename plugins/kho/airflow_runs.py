"""DAG runs as Airflow recorded them, read from its metadata DB under KHO_HOME/airflow (`kho status`, `kho runs`).

Read with the standard library's sqlite3, read-only, rather than through Airflow's models: importing Airflow takes
seconds and first needs its environment prepared (and its DB migrated), which a status command must not do to a
warehouse it only looks at. The columns read (dag_run's dag_id, run_id, state, start_date, end_date, run_type and
dag's is_paused) are Airflow's own names, stable across Airflow 2 and 3.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from kho.config import KhoConfig
from kho.errors import KhoError


class AirflowUnavailable(KhoError):
    """Airflow's metadata DB is not there or cannot be read; the message says which and what makes it."""


@dataclass(frozen=True)
class DagRun:
    dag_id: str
    run_id: str
    state: str | None
    run_type: str | None
    start: dt.datetime | None
    end: dt.datetime | None

    def seconds(self, now: dt.datetime) -> float | None:
        """How long it ran, or has been running (to `now`) if it has not ended."""
        if self.start is None:
            return None
        return ((self.end or now) - self.start).total_seconds()


@dataclass(frozen=True)
class DagLine:
    """One DAG in `kho status`: whether the scheduler may start it, and its newest run."""

    dag_id: str
    paused: bool | None
    last: DagRun | None


def metadata_db(config: KhoConfig) -> Path:
    """Where kho's Airflow keeps its metadata (kho.airflow_env sets AIRFLOW__DATABASE__SQL_ALCHEMY_CONN so)."""
    return config.airflow_home / "airflow.db"


def _timestamp(value: object) -> dt.datetime | None:
    """Airflow stores UTC moments; on SQLite as text without the zone ('2026-11-30 16:16:24.502765')."""
    if value is None or value == "":
        return None
    moment = dt.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _open(config: KhoConfig) -> sqlite3.Connection:
    path = metadata_db(config)
    if not path.is_file():
        raise AirflowUnavailable(f"no Airflow metadata DB at {path}: Airflow has not run here yet (`kho demo` makes "
                                 "it)")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        conn.execute("SELECT 1 FROM dag_run LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise AirflowUnavailable(f"cannot read Airflow's metadata DB {path}: {exc}") from None
    return conn


def _runs(conn: sqlite3.Connection, dag_id: str | None, limit: int) -> list[DagRun]:
    where, params = ("WHERE dag_id = ?", [dag_id]) if dag_id else ("", [])
    rows = conn.execute(
        f"SELECT dag_id, run_id, state, run_type, start_date, end_date FROM dag_run {where} "
        "ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [DagRun(r[0], r[1], r[2], r[3], _timestamp(r[4]), _timestamp(r[5])) for r in rows]


def runs(config: KhoConfig, *, dag_id: str | None = None, limit: int = 20) -> list[DagRun]:
    """The newest runs first (all DAGs, or one)."""
    conn = _open(config)
    try:
        return _runs(conn, dag_id, limit)
    except sqlite3.Error as exc:
        raise AirflowUnavailable(f"cannot read runs from Airflow's metadata DB {metadata_db(config)}: {exc}") from None
    finally:
        conn.close()


def last_runs(config: KhoConfig, expected: tuple[str, ...]) -> list[DagLine]:
    """Each DAG kho ships (`expected`, in that order) and any other Airflow knows, with its newest run."""
    conn = _open(config)
    try:
        try:
            paused = {str(d): None if p is None else bool(p)
                      for d, p in conn.execute("SELECT dag_id, is_paused FROM dag").fetchall()}
        except sqlite3.OperationalError:  # a DB Airflow created but never parsed DAGs into
            paused = {}
        newest = {str(r[0]): int(r[1]) for r in conn.execute("SELECT dag_id, max(id) FROM dag_run GROUP BY dag_id")}
        dag_ids = [*expected, *sorted((set(paused) | set(newest)) - set(expected))]
        lines = []
        for dag_id in dag_ids:
            row = conn.execute("SELECT dag_id, run_id, state, run_type, start_date, end_date FROM dag_run "
                               "WHERE id = ?", (newest[dag_id],)).fetchone() if dag_id in newest else None
            last = DagRun(row[0], row[1], row[2], row[3], _timestamp(row[4]), _timestamp(row[5])) if row else None
            lines.append(DagLine(dag_id, paused.get(dag_id), last))
        return lines
    except sqlite3.Error as exc:
        raise AirflowUnavailable(f"cannot read runs from Airflow's metadata DB {metadata_db(config)}: {exc}") from None
    finally:
        conn.close()
