"""Failover on a real cluster of its own: Patroni, etcd and two PostgreSQL nodes, real Airflow DAG runs.

1. The primary node (its Patroni and its PostgreSQL) is SIGKILLed while a sync DAG run has a batch in flight, a
   moment read from the database (a citizens batch holds the raw table, after an earlier batch committed), never a
   sleep. Patroni promotes the standby once the dead leader's lock expires; the sync task, retried by Airflow,
   finds the new primary through the multi-host conninfo and finishes; the other syncs and build_warehouse follow.
   Raw tables and published marts then equal what the simulator served (marts: tests/support/marts_oracle.py).
2. The old primary rejoins as a standby (Patroni rewinds it with pg_rewind when its WAL went past the promotion)
   and streams, as soon as the standby has taken over and while the DAGs go on; a switchover back, with a writer
   committing through it, loses nothing.
3. The standby node is killed: in synchronous mode Patroni (not strict) drops it from synchronous_standby_names and
   the primary goes on committing alone; restarted, the standby catches up to the same rows.

The DAGs run in a process of their own (`DAG_RUNNER`), as a worker would: Airflow in this test process would be
tied to whichever KHO_HOME imported it first, and this cluster has its own. Their retry delays are scaled down
(same count, same backoff) so a retry waits seconds rather than the two minutes production gives a failover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kho.config import KhoConfig
from kho.simulator import World
from kho.simulator import calendar as cal
from kho.simulator.generate import WorldSpec
from kho.simulator.server import ServerOptions, serve_in_thread
from kho.sources import ENTITIES, REGISTRIES
from kho.sources.contract import Entity
from kho.warehouse import embedded, patroni
from kho.warehouse.connection import connect, conninfo, wait_for_standby
from kho.warehouse.layout import Member, layout
from tests.conftest import free_ports
from tests.support import marts_oracle
from tests.support.checksums import TableChecksum, differences, primary_and_standby_checksums, table_checksums

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SPEC = WorldSpec(seed=13, citizens=3000)
"""Day 0 of a world without defects (every record loads, so the oracle applies): six pages of citizens."""
AS_OF = dt.date.fromordinal(cal.day_ord(0))
SYNC_CONF = {"pages_per_batch": 1}
"""One page per committed batch: the citizens sync commits six batches, so the kill lands between two of them."""
RETRY_DELAY_S = 5
"""With the DAGs' backoff (x2) and three retries, the last retry starts 35 s or more after the failure: past the
leader lock's expiry (ttl 20 s) and the promotion."""
KILLED_DAG = "sync_population"
DAGS = (KILLED_DAG, *(r.dag_id for r in REGISTRIES if r.dag_id != KILLED_DAG), "build_warehouse")
"""In the order they run: the sync whose primary is killed first, then the other syncs, then the build."""
POLL_S = 0.002
MARTS = {
    "golden_citizens": "mart_population", "households": "mart_population", "citizens_per_commune": "mart_population",
    "vital_events_by_commune_month": "mart_civil_status", "insurance_coverage_by_commune": "mart_health",
    "insurance_coverage_by_province": "mart_health", "enterprises": "mart_business",
    "active_enterprises_by_industry_province": "mart_business",
}
DAG_RUNNER = """
import datetime as dt, json, sys
from kho.config import KhoConfig
from kho.demo import load_dagbag, run_dag
bag = load_dagbag(KhoConfig.from_env())
runs, delay = json.loads(sys.argv[1])
for dag_id, conf in runs:
    for task in bag.get_dag(dag_id).tasks:
        task.retry_delay = dt.timedelta(seconds=delay)
    outcome = run_dag(bag, dag_id, conf)
    print("OUTCOME " + json.dumps([dag_id, outcome.state]), flush=True)
"""


# --------------------------------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def ha_config() -> Iterator[KhoConfig]:
    """Two nodes under Patroni and an etcd of this module's own (its kills must not reach the session's nodes).
    Its home is outside pytest's basetemp for the reason tests/conftest.py gives."""
    home = Path(tempfile.mkdtemp(prefix="kho-failover-home-"))
    primary, standby, simulator, rest1, rest2, etcd, etcd_peer = free_ports(7)
    config = KhoConfig.from_env({
        "KHO_HOME": str(home), "KHO_PG_PORT": str(primary), "KHO_PG_STANDBY_PORT": str(standby),
        "KHO_PATRONI_PORTS": f"{rest1},{rest2}", "KHO_ETCD_PORT": str(etcd), "KHO_ETCD_PEER_PORT": str(etcd_peer),
        "KHO_SIM_PORT": str(simulator), "KHO_SIM_CITIZENS": str(SPEC.citizens), "KHO_SIM_SEED": str(SPEC.seed),
    })
    try:
        embedded.up(config)
        yield config
    finally:
        embedded.destroy(config)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def world(ha_config: KhoConfig) -> Iterator[World]:
    """The registries the DAGs read, behind OAuth2 on the cluster's simulator port."""
    built = World.build(SPEC)
    options = ServerOptions(credentials=ha_config.ensure_registry_credentials())
    with serve_in_thread(built, ha_config.simulator_host, ha_config.simulator_port, options):
        yield built


def leader(config: KhoConfig) -> Member:
    view = patroni.wait_for(config, lambda v: v.leader is not None, "a running leader", 300)
    assert view.leader is not None
    return layout(config).member(view.leader.name)


def all_streaming(config: KhoConfig) -> patroni.ClusterView:
    return patroni.wait_for(config, lambda v: patroni.replicas_streaming(config, v),
                            "every replica streaming from the leader", 600)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def kill_node(member: Member) -> None:
    """The node is lost: its Patroni, then its postmaster and every process it forked, all SIGKILL. Nothing
    releases the leader lock: it expires after ttl."""
    patroni_pid, postmaster = embedded.patroni_pid(member), embedded.postmaster_pid(member)
    assert patroni_pid is not None and postmaster is not None, f"{member.name} is not running"
    os.kill(patroni_pid, signal.SIGKILL)
    for pid in [postmaster, *children(postmaster)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while embedded.patroni_pid(member) is not None or embedded.postmaster_pid(member) is not None:
        time.sleep(POLL_S)


def rows(config: KhoConfig, query: sql.Composable | str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def scalar(config: KhoConfig, query: str, params: tuple[Any, ...] = ()) -> Any:
    return rows(config, query, params)[0][0]


# --------------------------------------------------------------------------------------------------- 1. the kill


@dataclasses.dataclass
class KilledSync:
    config: KhoConfig
    served: dict[str, list[dict[str, Any]]]
    victim: str
    timeline_before: int
    committed_before_kill: set[int]
    """Ledger batches the primary had committed when it was killed (synchronous mode: applied on the standby)."""
    rejoined: patroni.Change
    """What `embedded.rejoin` did to bring the killed node back as a standby."""
    outcomes: dict[str, str]
    output: str


def citizens_batch_in_flight(conn: psycopg.Connection) -> tuple[int, list[int]] | None:
    """A backend whose open transaction holds the citizens raw table, once a citizens batch has committed: a sync
    batch in flight after a checkpoint. Returns it and the batches committed so far."""
    row = conn.execute(
        """
        SELECT a.pid, (SELECT array_agg(batch_id) FROM kho.load_ledger)
        FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
        WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.backend_xid IS NOT NULL
          AND l.relation = 'raw.population__citizens'::regclass
          AND EXISTS (SELECT FROM kho.load_ledger WHERE entity = 'citizens')
        LIMIT 1
        """).fetchone()
    return None if row is None else (int(row[0]), list(row[1]))


def run_dags(config: KhoConfig, runs: list[tuple[str, dict[str, Any]]], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **config.child_env(), "KHO_PG_PASSWORD": config.warehouse.password()}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", DAG_RUNNER, json.dumps([runs, RETRY_DELAY_S])], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def kill_primary_in_flight(config: KhoConfig, runner: subprocess.Popen[bytes], log: Path) -> tuple[Member, set[int]]:
    """Poll the primary until a citizens batch is in flight, then kill the primary's node."""
    victim = leader(config)
    with connect(config.warehouse, autocommit=True) as conn:
        while (moment := citizens_batch_in_flight(conn)) is None:
            assert runner.poll() is None, ("the DAG runner ended before a citizens batch could be caught in flight:\n"
                                           + log.read_text(errors="replace")[-3000:])
            time.sleep(POLL_S)
    kill_node(victim)
    return victim, set(moment[1])


@pytest.fixture(scope="module")
def killed_sync(ha_config: KhoConfig, world: World, tmp_path_factory: pytest.TempPathFactory) -> KilledSync:
    """sync_population with its primary node killed mid-batch, then every other sync and build_warehouse.

    Once the standby is promoted the old primary is rejoined, as an operator would (`kho warehouse rejoin`), while
    the DAGs go on: build_warehouse publishes only once a standby has replayed the build (RPO 0 for published
    data), so with one node left its publish step would wait and fail."""
    config = ha_config
    timeline = leader_timeline(config)
    log = tmp_path_factory.mktemp("failover") / "dags.log"
    runs = [(dag_id, SYNC_CONF if dag_id == KILLED_DAG else {"as_of": AS_OF.isoformat()}
             if dag_id == "build_warehouse" else {}) for dag_id in DAGS]
    runner = run_dags(config, runs, log)
    try:
        victim, committed = kill_primary_in_flight(config, runner, log)
        patroni.wait_for(config, lambda v: v.leader is not None and v.leader.name != victim.name,
                         "the standby's promotion", 300)
        rejoined = embedded.rejoin(config, victim.name)
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    output = log.read_text(errors="replace")
    outcomes = dict(json.loads(line.removeprefix("OUTCOME ")) for line in output.splitlines()
                    if line.startswith("OUTCOME "))
    served = {e.qualified_name: world.snapshot(e) for e in ENTITIES}
    return KilledSync(config, served, victim.name, timeline, committed, rejoined, outcomes, output)


def leader_timeline(config: KhoConfig) -> int:
    view = patroni.wait_for(config, lambda v: v.leader is not None and v.leader.timeline is not None,
                            "a leader with a timeline", 300)
    assert view.leader is not None and view.leader.timeline is not None
    return view.leader.timeline


def test_killing_the_primary_mid_sync_promotes_the_standby_and_every_dag_run_succeeds(killed_sync: KilledSync
                                                                                      ) -> None:
    assert killed_sync.outcomes == dict.fromkeys(DAGS, "success"), killed_sync.output[-5000:]
    now = leader(killed_sync.config)
    assert now.name != killed_sync.victim, "the standby took over"
    assert leader_timeline(killed_sync.config) > killed_sync.timeline_before, "a promotion starts a new timeline"


def test_the_killed_sync_task_was_retried_and_completed_on_the_new_primary(killed_sync: KilledSync) -> None:
    db = sqlite3.connect(killed_sync.config.airflow_home / "airflow.db")
    try:
        tries = db.execute("SELECT try_number, state FROM task_instance WHERE dag_id = 'sync_population' "
                           "AND task_id = 'citizens.extract_load'").fetchall()
    finally:
        db.close()
    assert tries and tries[-1][1] == "success"
    assert tries[-1][0] > 1, "the try the kill interrupted failed; a later one succeeded"
    # Batches committed after the kill exist, so the retry loaded on the new primary (the old one is dead).
    batches = {r[0] for r in rows(killed_sync.config, "SELECT batch_id FROM kho.load_ledger WHERE entity = "
                                                      "'citizens'")}
    assert batches - killed_sync.committed_before_kill


def test_raw_tables_hold_exactly_what_the_registries_served_with_no_duplicate_key(killed_sync: KilledSync) -> None:
    expected = marts_oracle.load(killed_sync.served)
    for entity in ENTITIES:
        stored = raw_rows(killed_sync.config, entity)
        keys = [tuple(r[k] for k in entity.key) for r in stored]
        assert len(keys) == len(set(keys)), f"{entity.raw_table}: a key stored twice"
        wanted = {tuple(r[k] for k in entity.key): r for r in expected.rows(entity.qualified_name)}
        got = dict(zip(keys, stored, strict=True))
        assert got.keys() == wanted.keys(), f"{entity.raw_table}: keys differ from the served records"
        differing = [k for k in wanted if got[k] != wanted[k]]
        assert not differing, f"{entity.raw_table}: {len(differing)} rows differ, e.g. {differing[:3]}"


def raw_rows(config: KhoConfig, entity: Entity) -> list[dict[str, Any]]:
    columns = sql.SQL(", ").join(map(sql.Identifier, entity.field_names))
    with connect(config.warehouse, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql.SQL("SELECT {} FROM {}").format(
            columns, sql.Identifier("raw", entity.raw_table))).fetchall()


def test_every_ledger_row_adds_up_and_no_record_was_loaded_twice(killed_sync: KilledSync) -> None:
    config = killed_sync.config
    ledger = rows(config, "SELECT batch_id, rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected "
                          "FROM kho.load_ledger")
    assert ledger
    assert all(read == new + changed + unchanged + rejected for _, read, new, changed, unchanged, rejected in ledger)
    for entity in ENTITIES:
        new, rejected = rows(config, "SELECT coalesce(sum(rows_new), 0), coalesce(sum(rows_rejected), 0) FROM "
                                     "kho.load_ledger WHERE registry = %s AND entity = %s",
                             (entity.registry, entity.name))[0]
        stored = scalar(config, sql.SQL("SELECT count(*) FROM {}").format(  # type: ignore[arg-type]
            sql.Identifier("raw", entity.raw_table)))
        assert (new, rejected) == (stored, 0), f"{entity.qualified_name}: each record new exactly once"
        assert stored == len(marts_oracle.load(killed_sync.served).rows(entity.qualified_name))


def test_no_committed_or_published_batch_is_missing(killed_sync: KilledSync) -> None:
    config = killed_sync.config
    ledger = {r[0] for r in rows(config, "SELECT batch_id FROM kho.load_ledger")}
    assert killed_sync.committed_before_kill, "the kill came after a committed batch"
    assert killed_sync.committed_before_kill <= ledger, "a batch committed before the kill is gone"
    validated = {r[0] for r in rows(config, "SELECT l.batch_id FROM kho.load_ledger l WHERE EXISTS (SELECT FROM "
                                            "kho.quality_validations v WHERE v.table_name = 'raw.' || l.registry || "
                                            "'__' || l.entity AND v.state IN ('passed', 'warned') AND l.batch_id "
                                            "BETWEEN v.first_batch_id AND v.last_batch_id)")}
    assert ledger <= validated, f"batches no passing raw gate covered: {sorted(ledger - validated)}"
    db = sqlite3.connect(config.airflow_home / "airflow.db")
    try:
        events = [json.loads(r[0]) for r in db.execute("SELECT extra FROM asset_event WHERE extra LIKE '%batch_ids%'")]
    finally:
        db.close()
    announced = {int(b) for e in events for b in e["batch_ids"]}
    assert ledger <= announced, f"batches no raw table's Asset event names: {sorted(ledger - announced)}"
    published = rows(config, "SELECT as_of FROM kho.publications")
    assert [p[0] for p in published] == [AS_OF]


@pytest.fixture(scope="module")
def expected_marts(killed_sync: KilledSync) -> dict[str, list[dict[str, Any]]]:
    return marts_oracle.compute_all(killed_sync.served, AS_OF)


@pytest.mark.parametrize("mart", sorted(MARTS))
def test_a_published_mart_equals_its_computation_from_the_served_records(
    killed_sync: KilledSync, expected_marts: dict[str, list[dict[str, Any]]], mart: str
) -> None:
    with connect(killed_sync.config.warehouse, autocommit=True) as conn, \
            conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        published = cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(MARTS[mart], mart))).fetchall()
    got = marts_oracle.by_primary_key(mart, published)
    wanted = marts_oracle.by_primary_key(mart, expected_marts[mart])
    assert wanted, f"{mart} is empty: nothing was compared"
    assert got.keys() == wanted.keys()
    differing = [key for key in wanted if got[key] != wanted[key]]
    assert not differing, f"{mart}: {len(differing)} rows differ, e.g. {differing[:3]}"


# --------------------------------------------------------------------------------------------------- 2. rejoin


class Writer:
    """A thread committing one small row per transaction through the multi-host conninfo, as every kho writer
    connects; it remembers each id whose COMMIT returned. Failed attempts (no primary for a moment) are retried
    with a new id, so an id is counted only once it is known to be committed."""

    def __init__(self, config: KhoConfig, table: str) -> None:
        self.info = conninfo(config.warehouse)
        self.table = sql.Identifier("failover_test", table)
        self.committed: list[int] = []
        self.failures = 0
        self._stop = threading.Event()
        with connect(config.warehouse, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS failover_test")
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(self.table))
        self._thread = threading.Thread(target=self._run, name=f"writer-{table}", daemon=True)

    def _run(self) -> None:
        next_id, conn = 0, None
        while not self._stop.is_set():
            next_id += 1
            try:
                if conn is None:
                    conn = psycopg.connect(self.info, autocommit=True)
                conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(self.table), (next_id,))
                self.committed.append(next_id)
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def wait_for_commits(self, more: int) -> None:
        target = len(self.committed) + more
        while len(self.committed) < target:
            assert self._thread.is_alive()
            time.sleep(0.01)

    def __enter__(self) -> Writer:
        self._thread.start()
        self.wait_for_commits(20)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def stored(self, config: KhoConfig) -> set[int]:
        return {r[0] for r in rows(config, sql.SQL("SELECT id FROM {}").format(self.table))}


def business_checksums(config: KhoConfig) -> dict[str, TableChecksum]:
    """Every table kho writes (raw, its bookkeeping, the published marts), read on the primary."""
    with connect(config.warehouse, autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname IN ('raw', 'kho') OR nspname LIKE 'mart\\_%'")]
        return table_checksums(conn, schemas)


def test_the_old_primary_rejoined_as_a_standby_streaming_the_new_timeline_with_the_same_data(
    killed_sync: KilledSync
) -> None:
    config, old = killed_sync.config, killed_sync.victim
    print("\n" + killed_sync.rejoined.render())
    after = killed_sync.rejoined.after
    state, now = after.member(old), after.leader
    assert now is not None and now.name != old
    assert state is not None and not state.is_leader and state.state == "streaming"
    assert state.timeline == now.timeline, "it follows the new primary's timeline"
    all_streaming(config)
    wait_for_standby(config.warehouse)
    primary, standby = primary_and_standby_checksums(config.warehouse)
    assert differences(primary, standby) == {}, "the rejoined node holds exactly the new primary's data"


def test_a_switchover_back_to_the_old_primary_loses_nothing(killed_sync: KilledSync) -> None:
    config, old = killed_sync.config, killed_sync.victim
    embedded.rejoin(config)  # a no-op after the test above; brings the node back if this test runs alone
    all_streaming(config)
    before = business_checksums(config)
    with Writer(config, "switchover") as writer:
        done = patroni.switchover(config, old)
        writer.wait_for_commits(20)  # the writer found the new primary and goes on
    print("\n" + done.render())
    assert leader(config).name == old
    assert business_checksums(config) == before
    committed = set(writer.committed)
    assert committed, "the writer committed through the switchover"
    assert committed - writer.stored(config) == set(), "a write confirmed before the switchover is gone"


# --------------------------------------------------------------------------------------------------- 3. standby


def test_with_the_standby_killed_the_primary_goes_on_committing_and_the_restarted_standby_catches_up(
    killed_sync: KilledSync
) -> None:
    config = killed_sync.config
    embedded.rejoin(config)  # whatever the tests before left down comes back first
    view = all_streaming(config)
    primary = leader(config)
    standby = next(m for m in layout(config).members if m.name != primary.name)
    assert any(m.role == "sync_standby" for m in view.members), "synchronous mode with a synchronous standby"

    with Writer(config, "standby_down") as writer:
        kill_node(standby)
        writer.wait_for_commits(200)  # commits after the kill: the primary did not wait for the dead standby
        alone = patroni.wait_for(config, lambda v: not any(m.role == "sync_standby" for m in v.members),
                                 "Patroni dropping the dead synchronous standby", 120)
        assert alone.leader is not None and alone.leader.name == primary.name, "no failover: the primary stayed"
        writer.wait_for_commits(200)
    assert writer.committed and set(writer.committed) <= writer.stored(config)
    assert scalar(config, "SELECT count(*) FROM failover_test.standby_down") == len(writer.committed)

    embedded.rejoin(config, standby.name)
    view = all_streaming(config)
    assert view.leader is not None and view.leader.name == primary.name
    back = view.member(standby.name)
    assert back is not None and back.role == "sync_standby", "synchronous again"
    wait_for_standby(config.warehouse)
    on_primary, on_standby = primary_and_standby_checksums(config.warehouse)
    assert on_primary["failover_test.standby_down"].rows == len(writer.committed)
    assert differences(on_primary, on_standby) == {}, "the standby caught up with everything written without it"
