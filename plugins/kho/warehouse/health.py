"""What state the warehouse is in, and whether it is healthy: `kho warehouse status` and the warehouse_health DAG.

Each node is asked over SQL what it is (role, LSNs, its WAL receiver); the primary reports replication lag and how
much WAL each replication slot holds back; Patroni's REST API adds its view (leader, synchronous standby, timeline,
pending restarts) and the last failover. Works for any number of nodes, embedded or not.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, LiteralString

import psycopg

from kho.config import HaConfig, KhoConfig, WarehouseConfig
from kho.errors import KhoError
from kho.warehouse import patroni
from kho.warehouse.connection import connect_node
from kho.warehouse.layout import layout, member_name

if TYPE_CHECKING:
    from kho.warehouse.backup import BackupStatus
    from kho.warehouse.migrations import MigrationReport

Role = Literal["primary", "standby", "down"]


@dataclass(frozen=True)
class NodeStatus:
    """What one node reports about itself (and, for a standby, what the primary reports about it)."""

    name: str
    host: str
    port: int
    running: bool
    role: Role
    patroni_role: str | None = None
    """leader, replica or sync_standby, as Patroni says; None when its Patroni does not answer."""
    patroni_state: str | None = None
    timeline: int | None = None
    current_lsn: str | None = None
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    replication_state: str | None = None
    """This standby's `state` in the primary's pg_stat_replication ('streaming' when healthy)."""
    receiver_status: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    slot_retained_bytes: int | None = None
    """WAL the primary keeps for this node's replication slot."""
    pending_restart: bool = False
    error: str | None = None


@dataclass(frozen=True)
class ClusterStatus:
    """Every node's state; the CLI prints `render()` and exits non-zero unless `healthy`."""

    nodes: tuple[NodeStatus, ...]
    synchronous: bool = True
    patroni_answered: bool = True
    last_failover: dict[str, Any] | None = None
    migration: MigrationReport | None = None
    """What `up` migrated in the warehouse database (None from `status`)."""

    def node(self, name: str) -> NodeStatus:
        return next(n for n in self.nodes if n.name == name)

    @property
    def primary(self) -> NodeStatus | None:
        found = [n for n in self.nodes if n.role == "primary"]
        return found[0] if len(found) == 1 else None

    @property
    def standbys(self) -> list[NodeStatus]:
        return [n for n in self.nodes if n.role == "standby"]

    @property
    def problems(self) -> list[str]:
        """Why the cluster is not healthy, one sentence each; empty when it is."""
        found = [f"{n.name} ({n.host}:{n.port}) is not running: {n.error or 'no answer'}" for n in self.nodes
                 if not n.running]
        primaries = [n.name for n in self.nodes if n.role == "primary"]
        if len(primaries) != 1:
            found.append(f"expected exactly one primary, found {len(primaries)} ({', '.join(primaries) or 'none'})")
        found += [
            f"{n.name} is not streaming from the primary (replication state {n.replication_state or 'none'}, "
            f"receiver {n.receiver_status or 'none'})"
            for n in self.nodes if n.role == "standby" and n.replication_state != "streaming"
        ]
        if not self.patroni_answered:
            found.append("no node's Patroni answers on its REST API: nothing would fail over")
        elif self.synchronous and len(self.standbys) and not any(n.patroni_role == "sync_standby"
                                                                  for n in self.nodes):
            found.append("synchronous mode is on but no standby is synchronous: commits are not yet on two nodes")
        found += [f"{n.name} waits for a restart to apply a setting (`kho warehouse up` restarts it)"
                  for n in self.nodes if n.pending_restart]
        return found

    @property
    def healthy(self) -> bool:
        return len(self.nodes) >= 2 and not self.problems

    def render(self) -> str:
        header = ("NODE", "ADDRESS", "ROLE", "PATRONI", "TL", "WAL LSN", "REPLAYED", "REPLICATION", "LAG", "SLOT")
        rows = [header] + [_render_row(n) for n in self.nodes]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"schema: {line}" for line in self.migration.lines()] if self.migration else []
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        mode = "synchronous (remote_apply)" if self.synchronous else "asynchronous"
        lines.append(f"replication: {mode}")
        if self.last_failover:
            f = self.last_failover
            lines.append(f"last promotion: timeline {f['timeline']} at {f.get('at') or '?'}"
                         f"{' to ' + f['new_leader'] if f.get('new_leader') else ''} ({f.get('reason')})")
        else:
            lines.append("last promotion: none (still on the first timeline)")
        problems = self.problems
        lines.append("healthy" if not problems else "UNHEALTHY:")
        lines += [f"  - {p}" for p in problems]
        return "\n".join(lines)


def _render_row(n: NodeStatus) -> tuple[str, ...]:
    lag = "-"
    if n.lag_bytes is not None:
        lag = f"{n.lag_bytes} B" + (f" / {n.lag_seconds:.3f} s" if n.lag_seconds is not None else "")
    slot = f"{n.slot_retained_bytes} B" if n.slot_retained_bytes is not None else "-"
    patroni_cell = f"{n.patroni_role}/{n.patroni_state}" if n.patroni_role else "-"
    return (
        n.name, f"{n.host}:{n.port}", n.role, patroni_cell, str(n.timeline) if n.timeline is not None else "-",
        n.current_lsn or "-", n.replay_lsn or "-", n.replication_state or n.receiver_status or "-", lag, slot,
    )


@dataclass(frozen=True)
class _ReplicationRow:
    application_name: str
    state: str | None
    replay_lsn: str | None
    lag_bytes: int | None
    lag_seconds: float | None


@dataclass(frozen=True)
class _Probe:
    role: Role
    current_lsn: str | None = None
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    receiver_status: str | None = None
    replication: tuple[_ReplicationRow, ...] = ()
    slots: dict[str, int | None] = field(default_factory=dict)
    error: str | None = None


def status(config: KhoConfig) -> ClusterStatus:
    """Ask each configured node, and Patroni, what the cluster is."""
    wh = config.warehouse
    lay = layout(config)
    view = patroni.cluster(config, lay)
    probes = [_probe(wh, i) for i in range(len(wh.ports))]
    primaries = [p for p in probes if p.role == "primary"]
    rows = primaries[0].replication if len(primaries) == 1 else ()
    slots = primaries[0].slots if len(primaries) == 1 else {}
    nodes = []
    for index, probe in enumerate(probes):
        name = member_name(index)
        state = view.member(name) if view else None
        row = _replication_row_for(name, rows, standbys=sum(p.role == "standby" for p in probes)) \
            if probe.role == "standby" else None
        nodes.append(NodeStatus(
            name=name, host=wh.hosts[index], port=wh.ports[index], running=probe.role != "down", role=probe.role,
            patroni_role=state.role if state else None, patroni_state=state.state if state else None,
            timeline=state.timeline if state else None, current_lsn=probe.current_lsn,
            receive_lsn=probe.receive_lsn, replay_lsn=probe.replay_lsn,
            replication_state=row.state if row else None, receiver_status=probe.receiver_status,
            lag_bytes=row.lag_bytes if row else None, lag_seconds=row.lag_seconds if row else None,
            slot_retained_bytes=slots.get(name) if probe.role == "standby" or name in slots else None,
            pending_restart=state.pending_restart if state else False, error=probe.error,
        ))
    promotions = patroni.history(config, lay) if view else []
    return ClusterStatus(nodes=tuple(nodes), synchronous=config.ha.synchronous, patroni_answered=view is not None,
                         last_failover=promotions[-1] if promotions else None)


def _replication_row_for(name: str, rows: Sequence[_ReplicationRow], *, standbys: int) -> _ReplicationRow | None:
    """The primary's pg_stat_replication row for this standby: by application name (Patroni names each
    replica's connection after its member), else the only one there is."""
    for row in rows:
        if row.application_name == name:
            return row
    return rows[0] if len(rows) == 1 and standbys == 1 else None


def _probe(wh: WarehouseConfig, index: int) -> _Probe:
    try:
        with connect_node(wh, index) as conn:
            if not _scalar(conn, "SELECT pg_is_in_recovery()"):
                return _probe_primary(conn)
            row = conn.execute(
                "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
                "(SELECT status FROM pg_stat_wal_receiver)"
            ).fetchone()
            assert row is not None
            return _Probe(role="standby", receive_lsn=row[0], replay_lsn=row[1], receiver_status=row[2])
    except (KhoError, psycopg.Error) as exc:
        return _Probe(role="down", error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def _probe_primary(conn: psycopg.Connection) -> _Probe:
    current = str(_scalar(conn, "SELECT pg_current_wal_lsn()::text"))
    rows = conn.execute(
        "SELECT application_name, state, replay_lsn::text, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, "
        "coalesce(extract(epoch FROM replay_lag)::float8, "
        "         CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN 0.0 END) "
        "FROM pg_stat_replication ORDER BY application_name"
    ).fetchall()
    slots = conn.execute(
        "SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots "
        "WHERE slot_type = 'physical'"
    ).fetchall()
    return _Probe(
        role="primary", current_lsn=current,
        replication=tuple(_ReplicationRow(r[0], r[1], r[2], r[3], r[4]) for r in rows),
        slots={str(name): retained for name, retained in slots},
    )


def _scalar(conn: psycopg.Connection, query: LiteralString) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


# --------------------------------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class HealthReport:
    """The warehouse_health DAG's verdict: the cluster's problems plus every threshold crossed."""

    status: ClusterStatus
    alerts: tuple[str, ...]
    checked: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.alerts

    def render(self) -> str:
        lines = [f"checked: {line}" for line in self.checked]
        lines += [f"ALERT: {a}" for a in self.alerts] or ["no alert"]
        return "\n".join(lines)


def check(config: KhoConfig, *, disk_paths: Sequence[Path] | None = None) -> HealthReport:
    """The cluster's problems; lag, slot retention and free disk against KHO_HEALTH_* thresholds; WAL archiving
    and the age of the last backups."""
    state = status(config)
    checked = [f"{len(state.nodes)} nodes, primary {state.primary.name if state.primary else 'none'}"]
    checked += [f"{node.name}: lag {node.lag_bytes} B / {node.lag_seconds} s" for node in state.standbys]
    alerts = [*state.problems, *threshold_alerts(state, config.ha)]
    alerts += _backup_alerts(config, checked)
    alerts += disk_alerts(config, disk_paths, checked)
    return HealthReport(status=state, alerts=tuple(alerts), checked=tuple(checked))


def threshold_alerts(state: ClusterStatus, ha: HaConfig) -> list[str]:
    """Standbys replaying too far behind, and replication slots holding back too much WAL (KHO_HEALTH_*)."""
    alerts = []
    for node in state.standbys:
        if node.lag_bytes is not None and node.lag_bytes > ha.max_lag_bytes:
            alerts.append(f"{node.name} lags {node.lag_bytes} bytes behind the primary (threshold "
                          f"KHO_HEALTH_MAX_LAG_BYTES={ha.max_lag_bytes})")
        if node.lag_seconds is not None and node.lag_seconds > ha.max_lag_seconds:
            alerts.append(f"{node.name} replays {node.lag_seconds:.1f} s behind the primary (threshold "
                          f"KHO_HEALTH_MAX_LAG_S={ha.max_lag_seconds:g})")
    for node in state.nodes:
        if node.slot_retained_bytes is not None and node.slot_retained_bytes > ha.max_slot_retained_bytes:
            alerts.append(f"replication slot {node.name} holds {node.slot_retained_bytes} bytes of WAL on the "
                          f"primary (threshold KHO_HEALTH_MAX_SLOT_BYTES={ha.max_slot_retained_bytes}); a node "
                          "that stays away fills the primary's disk")
    return alerts


def disk_alerts(config: KhoConfig, disk_paths: Sequence[Path] | None = None, checked: list[str] | None = None
                ) -> list[str]:
    """Disks (of the nodes' data directories and the backup repository, by default) with too little free."""
    alerts = []
    paths = list(disk_paths) if disk_paths is not None else _local_paths(config)
    for path in paths:
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        free = 100.0 * usage.free / usage.total if usage.total else 100.0
        if checked is not None:
            checked.append(f"disk of {path}: {free:.1f}% free")
        if free < config.ha.min_disk_free_percent:
            alerts.append(f"the disk holding {path} has {free:.1f}% free (threshold "
                          f"KHO_HEALTH_MIN_DISK_FREE_PERCENT={config.ha.min_disk_free_percent:g})")
    return alerts


def _backup_alerts(config: KhoConfig, checked: list[str]) -> list[str]:
    from kho.warehouse import backup

    why = patroni.backups_unsupported(config)
    if why is not None:
        checked.append(f"backups: none here ({why})")
        return []
    state = backup.status(config)
    checked.append(state.render().splitlines()[0] + (f", last {state.last.label}" if state.last else ", none yet"))
    return backup_alerts(state)


def backup_alerts(state: BackupStatus) -> list[str]:
    """Archiving that fails, and backups grown old. A repository that never held a backup is reported, not
    alerted: the warehouse_backup DAG's own failure says a nightly backup did not happen."""
    if state.last is None and state.error is None:
        return [p for p in state.problems if "no full backup" not in p]
    return list(state.problems)


def _local_paths(config: KhoConfig) -> list[Path]:
    """The embedded nodes' data directories and the backup repository, where they exist on this machine."""
    lay = layout(config)
    return [p for p in (*(m.datadir for m in lay.members), config.ha.backup_repo) if p.exists()]
