"""`kho demo`: the main job end to end on the embedded default — warehouse, simulator, every DAG, a summary.

The demo's world is a realistic one, deterministic by seed: a small share of defective records and a few days of
daily feeds. Day 0 is synced, then each day's feed, by the four sync DAGs; build_warehouse then models, audits and
publishes the shared datasets. The summary shows what agencies now read, what was quarantined and why, and what the
audit mart found that no single registry can see.

Safe to rerun: the warehouse and Airflow DB are reused, the second round of syncs finds nothing new and the build
publishes no change.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from psycopg import sql

from kho import airflow_env, console
from kho.config import KhoConfig
from kho.errors import KhoError
from kho.sources import REGISTRIES
from kho.warehouse import health
from kho.warehouse.connection import connect, connect_standby, wait_for_standby

log = logging.getLogger(__name__)

SYNC_DAGS = tuple(registry.dag_id for registry in REGISTRIES)
DAG_ORDER = (*SYNC_DAGS, "build_warehouse")
DEMO_DAYS = 2
"""Daily feeds after the initial state: enough for moves, births, deaths and late updates to show."""
DEMO_DEFECT_RATE = 0.01
DEMO_LEAVES_OUT = frozenset({"schema_drift_renamed_field"})
"""A renamed field rejects its whole batch (by design: an operator must look), which would stop the demo."""


@dataclass(frozen=True)
class DagOutcome:
    dag_id: str
    state: str
    run_id: str


def load_dagbag(config: KhoConfig) -> Any:
    """Parse kho's DAG folder once (Airflow's DagBag); import errors stop here with their messages."""
    airflow_env.prepare(config)
    from airflow.dag_processing.dagbag import DagBag

    console.after_airflow_import()  # Airflow set up its logging on import: its output goes to the log file
    bag = DagBag(str(config.project_root / "dags"))
    if bag.import_errors:
        raise KhoError(f"DAG import errors: {bag.import_errors}")
    return bag


def run_dag(bag: Any, dag_id: str, conf: dict[str, Any] | None = None) -> DagOutcome:
    """One in-process DAG run with `dag.test()`: real tasks, real metadata DB, no scheduler needed."""
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise KhoError(f"no DAG {dag_id!r} among {sorted(bag.dag_ids)}")
    started = time.monotonic()
    run = dag.test(run_conf=conf or {})
    outcome = DagOutcome(dag_id, str(run.state), str(run.run_id))
    log.log(logging.INFO if outcome.state == "success" else logging.ERROR, "%s: %s in %.1f s (run %s)", dag_id,
            outcome.state, time.monotonic() - started, outcome.run_id)
    return outcome


def run_dags(config: KhoConfig, dag_ids: tuple[str, ...] = DAG_ORDER, *, conf: dict[str, Any] | None = None,
             bag: Any = None) -> list[DagOutcome]:
    """Run DAGs in order; stop at the first that does not succeed."""
    bag = bag or load_dagbag(config)
    outcomes = []
    for dag_id in dag_ids:
        outcome = run_dag(bag, dag_id, conf)
        outcomes.append(outcome)
        if outcome.state != "success":
            raise KhoError(f"DAG {dag_id} ended {outcome.state} (run {outcome.run_id}); its tasks' logs are in "
                           f"{console.log_file(config)}")
    return outcomes


def run(config: KhoConfig, advance: Callable[[int], None], *, days: int, as_of: dt.date,
        full_refresh: bool = False) -> list[DagOutcome]:
    """Sync day 0, then each day's feed (`advance(day)` publishes it), then build and publish as of `as_of`;
    `full_refresh` re-reads the registries from the beginning and rebuilds the marts from scratch."""
    bag = load_dagbag(config)
    outcomes = run_dags(config, SYNC_DAGS, conf={"full_refresh": full_refresh}, bag=bag)
    for day in range(1, days + 1):
        advance(day)
        log.info("registries published day %d's feed", day)
        outcomes += run_dags(config, SYNC_DAGS, bag=bag)
    outcomes += run_dags(config, ("build_warehouse",), conf={"as_of": as_of.isoformat(), "full_refresh": full_refresh},
                         bag=bag)
    return outcomes


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator already serving on the demo's port (`kho up`, `kho simulate serve`)."""

    url: str
    day: int


def running_simulator(config: KhoConfig) -> RunningSimulator | None:
    """The kho simulator answering on KHO_SIM_HOST:KHO_SIM_PORT, or None when nothing listens there.

    Something else on that port is refused in one line: the demo cannot serve its registries beside it.
    """
    import httpx

    from kho.simulator.server import HEALTH_PATH

    url = f"http://{config.simulator_host}:{config.simulator_port}"
    try:
        response = httpx.get(url + HEALTH_PATH, timeout=5.0)
    except httpx.ConnectError:
        return None
    except httpx.HTTPError as exc:
        raise KhoError(f"something on {url} (KHO_SIM_PORT) does not answer as kho's simulator does ({exc}); stop "
                       "it or set KHO_SIM_PORT to a free port") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("day"), int):
        raise KhoError(f"{url} (KHO_SIM_PORT) answers, but not as kho's simulator (GET {HEALTH_PATH}: "
                       f"{response.status_code}); stop it or set KHO_SIM_PORT to a free port")
    return RunningSimulator(url, body["day"])


def _count(conn: Any, schema: str, table: str) -> int | None:
    exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()[0]
    if exists is None:
        return None
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()[0])


def published_datasets(config: KhoConfig) -> list[tuple[str, int | None, int | None, dict[str, Any]]]:
    """The latest publication's marts: rows on the primary and on the standby, and what the publication changed."""
    wait_for_standby(config.warehouse)
    with connect(config.warehouse, autocommit=True) as primary, connect_standby(config.warehouse) as standby:
        found = primary.execute("SELECT tables FROM kho.publications ORDER BY publication_id DESC LIMIT 1"
                                ).fetchone() if _count(primary, "kho", "publications") is not None else None
        tables: dict[str, dict[str, Any]] = found[0] if found else {}
        out = []
        for name, change in sorted(tables.items()):
            schema, table = name.split(".", 1)
            out.append((name, _count(primary, schema, table), _count(standby, schema, table), change))
    return out


@dataclass(frozen=True)
class AgencyView:
    """What one agency's login reads on the standby after `kho access apply`."""

    role: str
    name: str
    reads: str
    provinces: str
    pii: str
    dataset: str
    rows: int


def apply_access(config: KhoConfig) -> list[AgencyView]:
    """`kho access apply` with the repository's access file, then each agency's first dataset as it sees it."""
    from kho.config import PROJECT_ROOT
    from kho.sources.reference import province_codes_2025
    from kho.warehouse import access
    from kho.warehouse.access import roles
    from kho.warehouse.connection import connect_admin

    declared = access.load(PROJECT_ROOT / "access" / "agencies.yml", known_provinces=province_codes_2025())
    with connect_admin(config.warehouse) as conn:
        access.apply(conn, config, declared)
    wait_for_standby(config.warehouse)
    views = []
    for agency in declared.agencies:
        password = roles.read_password(config, agency.slug)
        with psycopg.connect(roles.connection_uri(config, agency, password or ""), autocommit=True) as conn:
            first = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema = ANY (current_schemas(false)) ORDER BY 1, 2 LIMIT 1").fetchone()
            counted = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*first))).fetchone() \
                if first else None
            rows = int(counted[0]) if counted else 0
        views.append(AgencyView(agency.role, agency.name, ", ".join(agency.datasets),
                                "all" if agency.all_provinces else ", ".join(agency.province_list),
                                "in clear" if agency.pii == "full" else "masked",
                                ".".join(first) if first else "-", rows))
    return views


def _print_agencies(p: Callable[..., None], agencies: list[AgencyView]) -> None:
    if not agencies:
        return
    p("\nAgency logins (access/agencies.yml; each reads the standby, its provinces only)")
    for a in agencies:
        p(f"  {a.role:<18} {a.name}")
        p(f"  {'':<18} reads {a.reads}; provinces {a.provinces}; personal data {a.pii}")
        p(f"  {'':<18} sees {a.rows} rows of {a.dataset}")


def summary(config: KhoConfig, outcomes: list[DagOutcome], out: TextIO = sys.stdout,
            agencies: list[AgencyView] | None = None) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("\n=== kho demo summary ===")
    runs: dict[str, list[str]] = {}
    for o in outcomes:
        runs.setdefault(o.dag_id, []).append(o.state)
    for dag_id, states in runs.items():
        p(f"DAG {dag_id:<18} {len(states)} run(s): {', '.join(sorted(set(states)))}")
    with connect(config.warehouse, autocommit=True) as conn:
        publication = conn.execute(
            "SELECT publication_id, run_id, as_of, published_at FROM kho.publications "
            "ORDER BY publication_id DESC LIMIT 1").fetchone()
        ledger = conn.execute(
            "SELECT registry || '.' || entity, count(*), sum(rows_read), sum(rows_new), sum(rows_changed), "
            "sum(rows_unchanged), sum(rows_rejected) FROM kho.load_ledger GROUP BY 1 ORDER BY 1").fetchall()
        quarantine = conn.execute(
            "SELECT registry || '.' || entity, reason_code, count(*) FROM kho.quarantine "
            "GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        findings = conn.execute(
            "SELECT kind, count(*) FROM mart_audit.cross_registry_contradictions GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall() if _count(conn, "mart_audit", "cross_registry_contradictions") is not None else []
        quality = conn.execute(
            "SELECT count(DISTINCT suite_name), count(*) FILTER (WHERE state = 'failed'), "
            "count(*) FILTER (WHERE state = 'warned'), (SELECT count(*) FROM kho.quality_flags) "
            "FROM kho.quality_validations").fetchone()
    if publication:
        number, run_id, as_of, at = publication
        p(f"\nPublished datasets (publication #{number}, run {run_id}, as of {as_of}, "
          f"{at.isoformat(timespec='seconds')})")
    p(f"  {'dataset':<56} {'primary':>8} {'standby':>8}   this publication")
    for name, on_primary, on_standby, change in published_datasets(config):
        how = "created" if change.get("recreated") else (
            f"+{change['inserted']} ~{change['updated']} -{change['deleted']}")
        p(f"  {name:<56} {on_primary!s:>8} {on_standby!s:>8}   {how}")
    p("\nLoad ledger per entity: batches  read = new + changed + unchanged + rejected")
    for entity, batches, read, new, changed, unchanged, rejected in ledger:
        p(f"  {entity:<40} {batches:>3}  {read} = {new} + {changed} + {unchanged} + {rejected}")
    p("\nQuarantine by reason (rows the registries sent that the contracts refused)")
    for entity, reason, count in quarantine or [("(none)", "", 0)]:
        p(f"  {entity:<40} {reason:<20} {count:>6}")
    p("\nCross-registry contradictions found by the audit mart (mart_audit.cross_registry_contradictions)")
    for kind, count in findings or [("(none)", 0)]:
        p(f"  {kind:<40} {count:>6}")
    if quality:
        suites, blocking, warnings, flagged = quality
        p(f"\nQuality: {suites} GX suites run; {blocking} validations failed a blocking expectation, {warnings} only "
          f"warnings ({flagged} rows listed in kho.quality_flags)")
    _print_agencies(p, agencies or [])
    p("\nReplication")
    p(health.status(config).render())
    p("\nNext steps")
    p(f"  Docs:        uv run kho docs   (then http://127.0.0.1:{config.docs_port}/: dbt docs, Data Docs, run report)")
    p(f"  Airflow UI:  uv run kho up   (then {airflow_env.api_base_url(config)} as {airflow_env.UI_USER!r}, password "
      f"in {airflow_env.passwords_file(config)}; `uv run kho down` stops it)")
    p("  Warehouse:   uv run kho warehouse status    |  uv run kho access check")
    p("  As an agency: psql \"$(uv run kho access credentials health)\"   (lands on the standby)")
