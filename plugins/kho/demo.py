"""`kho demo`: the main job end to end on the embedded default — warehouse, simulator, both DAGs, a summary.

Safe to rerun: the warehouse and Airflow DB are reused, the second sync finds nothing new and says so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TextIO

from psycopg import sql

from kho import airflow_env
from kho.config import KhoConfig
from kho.errors import KhoError
from kho.sources import ENTITIES, REGISTRIES
from kho.warehouse import cluster
from kho.warehouse.connection import connect, connect_standby, wait_for_standby

DAG_ORDER = (*(f"sync_{registry}" for registry in REGISTRIES), "build_warehouse")
SUMMARY_TABLES = (*(("raw", e.raw_table) for e in ENTITIES), ("mart_population", "citizens_per_commune"))


@dataclass(frozen=True)
class DagOutcome:
    dag_id: str
    state: str
    run_id: str


def load_dagbag(config: KhoConfig) -> Any:
    """Parse kho's DAG folder once (Airflow's DagBag); import errors stop here with their messages."""
    airflow_env.prepare(config)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(config.project_root / "dags"))
    if bag.import_errors:
        raise KhoError(f"DAG import errors: {bag.import_errors}")
    return bag


def run_dag(bag: Any, dag_id: str, conf: dict[str, Any] | None = None) -> DagOutcome:
    """One in-process DAG run with `dag.test()`: real tasks, real metadata DB, no scheduler needed."""
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise KhoError(f"no DAG {dag_id!r} among {sorted(bag.dag_ids)}")
    run = dag.test(run_conf=conf or {})
    return DagOutcome(dag_id, str(run.state), str(run.run_id))


def run_dags(config: KhoConfig, dag_ids: tuple[str, ...] = DAG_ORDER, *, conf: dict[str, Any] | None = None
             ) -> list[DagOutcome]:
    """Run DAGs in order; stop at the first that does not succeed."""
    bag = load_dagbag(config)
    outcomes = []
    for dag_id in dag_ids:
        outcome = run_dag(bag, dag_id, conf if dag_id.startswith("sync_") else None)
        outcomes.append(outcome)
        if outcome.state != "success":
            raise KhoError(f"DAG {dag_id} ended {outcome.state} (run {outcome.run_id}); see the task logs above")
    return outcomes


def table_counts(config: KhoConfig) -> list[tuple[str, int | None, int | None]]:
    """Row counts per published table on the primary and on the standby (None: table missing)."""
    wait_for_standby(config.warehouse)
    rows = []
    with connect(config.warehouse, autocommit=True) as primary, connect_standby(config.warehouse) as standby:
        for schema, table in SUMMARY_TABLES:
            rows.append((f"{schema}.{table}", _count(primary, schema, table), _count(standby, schema, table)))
    return rows


def _count(conn: Any, schema: str, table: str) -> int | None:
    exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()[0]
    if exists is None:
        return None
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()[0])


def summary(config: KhoConfig, outcomes: list[DagOutcome], out: TextIO = sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("\n=== kho demo summary ===")
    for o in outcomes:
        p(f"DAG {o.dag_id:<16} {o.state:<8} {o.run_id}")
    p(f"\n  {'rows per table':<44} {'primary':>8} {'standby':>8}")
    for name, on_primary, on_standby in table_counts(config):
        p(f"  {name:<44} {on_primary!s:>8} {on_standby!s:>8}")
    with connect(config.warehouse, autocommit=True) as conn:
        ledger = conn.execute(
            "SELECT batch_id, registry || '.' || entity, rows_read, rows_new, rows_changed, rows_unchanged, "
            "rows_rejected FROM kho.load_ledger ORDER BY batch_id DESC LIMIT 12"
        ).fetchall()
        quality = conn.execute(
            "SELECT DISTINCT ON (suite_name) suite_name, success, evaluated, failed FROM kho.quality_results "
            "ORDER BY suite_name, validated_at DESC"
        ).fetchall()
    p("\nLoad ledger (latest batches): batch  entity  read = new + changed + unchanged + rejected")
    for b, ent, read, new, changed, unchanged, rejected in ledger:
        p(f"  {b:>5}  {ent}  {read} = {new} + {changed} + {unchanged} + {rejected}")
    p("\nQuality (latest per suite)")
    for suite, ok, evaluated, failed in quality:
        verdict = "passed" if ok else "FAILED"
        detail = f"{evaluated - failed}/{evaluated} expectations" if evaluated else "no new rows in the batch"
        p(f"  {suite:<45} {verdict}  {detail}")
    p("\nReplication")
    p(cluster.status(config).render())
    docs = config.gx_home / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    p("\nNext steps")
    p(f"  Data Docs:   file://{docs}")
    p(f"  Airflow UI:  . {airflow_env.env_file(config)} && uv run airflow standalone   (then http://localhost:8080)")
    p(f"  Warehouse:   uv run kho warehouse status    |  psql -h 127.0.0.1 -p {config.warehouse.primary_port} "
      f"-U {config.warehouse.user} {config.warehouse.dbname}  (password in {config.warehouse.password_file})")
