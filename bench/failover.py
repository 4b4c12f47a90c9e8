"""Failover benchmark: SIGKILL the primary during continuous small writes; RTO and committed writes lost.

    uv run --frozen python bench/failover.py [--trials 5] [--modes sync,async] [--kills postgres,node]

For each replication mode (synchronous: Patroni's synchronous_mode with remote_apply; asynchronous:
KHO_PG_SYNCHRONOUS=off) a fresh embedded warehouse (two nodes under Patroni, one etcd, temporary KHO_HOME, free
ports) takes `--trials` kills of each kind:

- `postgres`: the primary's PostgreSQL (its postmaster and every backend, SIGKILL at once); its Patroni lives on;
- `node`: the whole node (its Patroni, then its PostgreSQL, SIGKILL): the leader lock must expire (ttl) first.

A trial: a writer process commits one small row per transaction through the multi-host conninfo
(`target_session_attrs=read-write`, what every kho writer uses), logging each id once its COMMIT returned. After
about a second of writes a marker row is published as build_warehouse publishes (commit, then
`wait_for_standby`); then the primary is killed. The writer reconnects until a node accepts writes and keeps
going; a second after its first commit past the kill it is stopped. Printed per trial:

- RTO: from the kill to the writer's first commit after it (on the node that is primary then);
- lost: ids the writer saw committed that the primary no longer has afterwards;
- the published marker, present or not.

Then the killed node rejoins (`embedded.rejoin`: Patroni rewinds it with pg_rewind and it follows) and the next
trial kills whichever node leads. Targets (issue 13): RTO median <= 15 s; 0 committed writes lost in synchronous
mode; 0 published batches lost in either mode. Printed, written to bench/results/failover.json; never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from common import cluster_env, log  # bench/common.py

from kho.config import HaConfig, KhoConfig
from kho.warehouse import embedded, patroni
from kho.warehouse.connection import connect, conninfo, wait_for_standby
from kho.warehouse.layout import Member, layout

RESULTS = Path(__file__).parent / "results"
TARGET_RTO_S = 15.0
WARM_UP_S = 1.0
"""Writes before the publish and the kill: the writer is in its steady state when the primary dies."""
AFTER_S = 1.0
"""Writes after the first one past the kill: the new primary keeps taking them."""
RECOVERY_TIMEOUT_S = 180.0
IDS_PER_TRIAL = 10_000_000
"""Each trial's writer numbers its rows from trial * IDS_PER_TRIAL, so no two trials share an id."""
WRITER_ENV = "KHO_BENCH_FAILOVER_WRITER"
"""Set in the writer's environment: `start_id trial log_path` (no secret; the password comes in KHO_PG_PASSWORD)."""


@dataclass(frozen=True)
class Trial:
    mode: str
    kill: str
    trial: int
    killed: str
    new_primary: str
    rto_s: float
    committed: int
    """Writes the writer saw committed in this trial (before and after the kill)."""
    lost: int
    marker_kept: bool
    """The row published (committed, then replayed by the standby) just before the kill is on the primary after."""
    failed_attempts: int
    """Writes that raised (no COMMIT confirmed): connection lost, refused, read-only; not counted as committed."""


# --------------------------------------------------------------------------------------------------- the writer


def writer_main(spec: str) -> int:
    """The writer process: one INSERT per transaction through the multi-host conninfo, forever (until SIGTERM),
    each confirmed commit logged as `id monotonic_time port` (CLOCK_MONOTONIC is the same clock in every process
    on this machine, so the parent can compare it with the moment of its kill)."""
    start_id, trial, path = spec.split(" ", 2)
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    info = conninfo(KhoConfig.from_env().warehouse)
    next_id = int(start_id)
    conn: psycopg.Connection | None = None
    with open(path, "w", encoding="ascii", buffering=1) as out:
        while not stop:
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(info, autocommit=True)
                next_id += 1
                conn.execute("INSERT INTO bench.writes (id, trial) VALUES (%s, %s)", (next_id, trial))
                out.write(f"{next_id} {time.monotonic():.6f} {conn.info.port}\n")
            except psycopg.Error as exc:
                out.write(f"# failed {next_id} {time.monotonic():.6f} {type(exc).__name__}\n")
                with contextlib.suppress(psycopg.Error):
                    if conn is not None:
                        conn.close()
                conn = None
                time.sleep(0.05)
    return 0


@dataclass(frozen=True)
class Commit:
    id: int
    at: float
    port: int


def read_writer_log(path: Path) -> tuple[list[Commit], int]:
    commits, failed = [], 0
    for line in path.read_text(encoding="ascii").splitlines():
        if line.startswith("# failed"):
            failed += 1
        elif line and not line.startswith("#"):
            ident, at, port = line.split()
            commits.append(Commit(int(ident), float(at), int(port)))
    return commits, failed


def start_writer(config: KhoConfig, trial_no: int, trial: str, path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **config.child_env(), "KHO_PG_PASSWORD": config.warehouse.password(),
           WRITER_ENV: f"{trial_no * IDS_PER_TRIAL} {trial} {path}"}
    return subprocess.Popen([sys.executable, __file__], env=env)


# --------------------------------------------------------------------------------------------------- kills


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (a postmaster's backends and auxiliary processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int((entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_postgres(member: Member) -> None:
    """SIGKILL the node's postmaster and every process it forked, as a crash of the server (or an OOM kill of the
    whole instance) leaves it: no shutdown checkpoint, no last WAL sent."""
    pid = embedded.postmaster_pid(member)
    if pid is None:
        raise RuntimeError(f"{member.name} runs no PostgreSQL to kill")
    family = [pid, *children(pid)]
    for target in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def kill_node(member: Member) -> None:
    """The node is lost: its Patroni (which would otherwise restart PostgreSQL or release the lock) and its
    PostgreSQL, both SIGKILL. Nothing releases the leader lock; it expires after ttl."""
    pid = embedded.patroni_pid(member)
    if pid is None:
        raise RuntimeError(f"{member.name} runs no Patroni to kill")
    os.kill(pid, signal.SIGKILL)
    kill_postgres(member)


KILLS = {"postgres": kill_postgres, "node": kill_node}


# --------------------------------------------------------------------------------------------------- one trial


def healthy(config: KhoConfig) -> patroni.ClusterView:
    return patroni.wait_for(config, lambda v: patroni.replicas_streaming(config, v),
                            "every replica streaming from the leader", RECOVERY_TIMEOUT_S)


def run_trial(config: KhoConfig, mode: str, kill: str, trial_no: int, work: Path) -> Trial:
    view = healthy(config)
    assert view.leader is not None
    lay = layout(config)
    victim = lay.member(view.leader.name)
    trial = f"{mode}-{kill}-{trial_no}"
    path = work / f"{trial}.log"
    writer = start_writer(config, trial_no, trial, path)
    try:
        time.sleep(WARM_UP_S)
        with connect(config.warehouse, autocommit=True) as conn:  # the publish step: commit, then the standby
            conn.execute("INSERT INTO bench.published (trial) VALUES (%s)", (trial,))
        wait_for_standby(config.warehouse)
        killed_at = time.monotonic()
        KILLS[kill](victim)
        first = wait_first_commit_after(path, killed_at, writer)
        time.sleep(AFTER_S)
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.wait(timeout=60)
    commits, failed = read_writer_log(path)
    with connect(config.warehouse, autocommit=True) as conn:
        present = {r[0] for r in conn.execute("SELECT id FROM bench.writes WHERE trial = %s", (trial,))}
        kept = conn.execute("SELECT count(*) FROM bench.published WHERE trial = %s", (trial,)).fetchone()
        new_primary = conn.info.port
    lost = sum(1 for c in commits if c.id not in present)
    new_name = next(m.name for m in lay.members if m.port == new_primary)
    result = Trial(mode=mode, kill=kill, trial=trial_no, killed=victim.name, new_primary=new_name,
                   rto_s=first.at - killed_at, committed=len(commits), lost=lost,
                   marker_kept=bool(kept and kept[0]), failed_attempts=failed)
    log(f"{trial}: killed {victim.name}, primary now {new_name}, RTO {result.rto_s:.2f} s, "
        f"{result.committed} committed, {lost} lost, marker {'kept' if result.marker_kept else 'LOST'}")
    rejoin(config)
    return result


def wait_first_commit_after(path: Path, killed_at: float, writer: subprocess.Popen[bytes]) -> Commit:
    """The first commit on a connection opened after the kill: the writer's first failure past the kill marks the
    old connection's end (a commit confirmed just before the kill may be logged just after it)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        if writer.poll() is not None:
            raise RuntimeError(f"the writer exited ({writer.returncode}) during the failover")
        broken = False
        for line in path.read_text(encoding="ascii").splitlines():
            if line.startswith("# failed") and float(line.split()[3]) > killed_at:
                broken = True
            elif broken and line and not line.startswith("#"):
                ident, at, port = line.split()
                return Commit(int(ident), float(at), int(port))
        time.sleep(0.1)
    raise RuntimeError(f"no write committed within {RECOVERY_TIMEOUT_S:.0f} s of the kill")


def rejoin(config: KhoConfig) -> None:
    """Bring the killed node back as a replica. A node whose Patroni lives (only PostgreSQL was killed) comes back
    by itself; `rejoin` then waits for it to stream."""
    started = time.monotonic()
    change = embedded.rejoin(config)
    log(f"  rejoined in {time.monotonic() - started:.1f} s: " + "; ".join(change.notes or ("by its own Patroni",)))


# --------------------------------------------------------------------------------------------------- a mode


PATRONI_DEFAULTS = {"KHO_PATRONI_TTL": "30", "KHO_PATRONI_LOOP_WAIT": "10", "KHO_PATRONI_RETRY_TIMEOUT": "10"}
"""Patroni's own defaults (patroni/config.py): the `defaults` mode, the baseline the tuned values are measured
against in the same run (synchronous, whole-node kills: where only the timing settings matter)."""


def run_mode(mode: str, kills: list[str], trials: int, work: Path) -> list[Trial]:
    env = {**cluster_env(work / mode / "home"), "KHO_PG_SYNCHRONOUS": "off" if mode == "async" else "on",
           **(PATRONI_DEFAULTS if mode == "defaults" else {})}
    if mode == "defaults":
        kills = [k for k in kills if k == "node"]
    config = KhoConfig.from_env(env)
    results = []
    try:
        log(f"{mode}: starting a two-node warehouse under Patroni")
        embedded.up(config)
        with connect(config.warehouse, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
            conn.execute("CREATE TABLE IF NOT EXISTS bench.writes (id bigint PRIMARY KEY, trial text NOT NULL, "
                         "at timestamptz NOT NULL DEFAULT clock_timestamp())")
            conn.execute("CREATE TABLE IF NOT EXISTS bench.published (trial text PRIMARY KEY)")
        number = 0
        for kill in kills:
            for _ in range(trials):
                number += 1
                results.append(run_trial(config, mode, kill, number, work / mode))
    finally:
        embedded.destroy(config)
    return results


def summarise(results: list[Trial]) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for r in results:
        groups.setdefault(f"{r.mode}/{r.kill}", []).append(r)
    out = {}
    for key, rows in groups.items():
        out[key] = {"rto_median_s": statistics.median(r.rto_s for r in rows),
                    "rto_max_s": max(r.rto_s for r in rows),
                    "lost_total": sum(r.lost for r in rows),
                    "markers_lost": sum(1 for r in rows if not r.marker_kept),
                    "trials": len(rows)}
    return out


def print_table(results: list[Trial], summary: dict[str, Any]) -> None:
    print(f"\n{'mode':<9}{'kill':<10}{'trial':>6}  {'killed':<7}{'new':<6}{'RTO s':>8}{'committed':>11}"
          f"{'lost':>6}{'marker':>8}")
    for r in results:
        print(f"{r.mode:<9}{r.kill:<10}{r.trial:>6}  {r.killed:<7}{r.new_primary:<6}{r.rto_s:>8.2f}"
              f"{r.committed:>11}{r.lost:>6}{'kept' if r.marker_kept else 'LOST':>8}")
    print(f"\n{'mode/kill':<16}{'RTO median s':>13}{'RTO max s':>11}{'lost':>6}{'markers lost':>14}  verdict")
    for key, s in summary.items():
        sync = not key.startswith("async/")
        misses = []
        if s["rto_median_s"] > TARGET_RTO_S:
            misses.append(f"RTO median > {TARGET_RTO_S:g} s")
        if sync and s["lost_total"]:
            misses.append("committed writes lost in synchronous mode")
        if s["markers_lost"]:
            misses.append("a published marker lost")
        verdict = "meets the targets" if not misses else "misses: " + ", ".join(misses)
        print(f"{key:<16}{s['rto_median_s']:>13.2f}{s['rto_max_s']:>11.2f}{s['lost_total']:>6}"
              f"{s['markers_lost']:>14}  {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--modes", default="sync,async", help="comma-separated: sync, async, defaults (synchronous "
                        "with Patroni's default ttl 30 / loop_wait 10 / retry_timeout 10, whole-node kills: the "
                        "baseline)")
    parser.add_argument("--kills", default="postgres,node", help="comma-separated: postgres, node")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    kills = [k.strip() for k in args.kills.split(",") if k.strip()]
    if set(modes) - {"sync", "async", "defaults"} or set(kills) - set(KILLS):
        parser.error("modes are sync, async, defaults; kills are postgres, node")
    RESULTS.mkdir(exist_ok=True)
    results: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="kho-bench-failover-") as tmp:
        for mode in modes:
            (Path(tmp) / mode).mkdir()
            results += run_mode(mode, kills, args.trials, Path(tmp))
    summary = summarise(results)
    ha = HaConfig()
    report = {"trials": args.trials, "settings": {"ttl": ha.ttl, "loop_wait": ha.loop_wait,
                                                  "retry_timeout": ha.retry_timeout},
              "results": [asdict(r) for r in results], "summary": summary,
              "target": {"rto_median_s": TARGET_RTO_S, "lost_sync": 0, "published_lost": 0}}
    (RESULTS / "failover.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(results, summary)
    print(f"\nPatroni ttl {ha.ttl} s, loop_wait {ha.loop_wait} s, retry_timeout {ha.retry_timeout} s "
          f"(defaults mode: Patroni's own, {PATRONI_DEFAULTS})")
    if "sync/node" in summary and "defaults/node" in summary:
        ratio = summary["sync/node"]["rto_median_s"] / summary["defaults/node"]["rto_median_s"]
        print(f"whole-node RTO median, kho's settings / Patroni's defaults: {ratio:.2f}x")
    print(f"results: {RESULTS / 'failover.json'}")
    return 0


if __name__ == "__main__":
    spec = os.environ.get(WRITER_ENV)
    sys.exit(writer_main(spec) if spec else main())
