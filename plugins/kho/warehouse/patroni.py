"""Patroni: the configuration kho gives it, and control through its REST API and patronictl.

kho does not implement failover. Patroni (one per node) holds the leader lock in etcd, promotes the best replica
when the leader's lock expires, rewinds an old primary with pg_rewind so it rejoins as a replica, and manages the
replication slots and synchronous standby. kho writes its configuration (`config_for`, the same template the
compose deployment fills from the environment), reads its REST API (`cluster`, `history`) and drives planned and
unplanned changes through `patronictl` (`switchover`, `failover`, `reinit`).

Why the timing values are what they are, and what synchronous mode promises: docs/architecture.md#failover.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from kho.config import KhoConfig
from kho.errors import WarehouseError
from kho.warehouse.binaries import JSONLOG_SINCE, PgBinaries
from kho.warehouse.layout import LISTEN_HOST, LOG_DIRECTORY, Layout, Member, layout

NAMESPACE = "/service/"
REST_TIMEOUT_S = 3.0


# --------------------------------------------------------------------------------------------------- configuration


def dcs_settings(config: KhoConfig) -> dict[str, Any]:
    """The cluster-wide settings Patroni keeps in etcd (`patronictl show-config`); `up` keeps them current."""
    ha = config.ha
    return {
        "ttl": ha.ttl,
        "loop_wait": ha.loop_wait,
        "retry_timeout": ha.retry_timeout,
        "maximum_lag_on_failover": ha.maximum_lag_on_failover,
        "synchronous_mode": ha.synchronous,
        # Not strict: with the standby down the primary keeps accepting writes alone (and Patroni will not promote
        # a replica that was not synchronous). Strict mode would stop every write until a standby returns.
        "synchronous_mode_strict": False,
        # A crashed primary: in synchronous mode the synchronous standby has applied every commit, so promoting it
        # at once loses nothing and is the fastest recovery; in asynchronous mode Patroni first restarts it in
        # place (crash recovery keeps every commit) and fails over only if it is not back within 30 s.
        "primary_start_timeout": 0 if ha.synchronous else 30,
        "check_timeline": True,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                "wal_level": "replica",
                "hot_standby": "on",
                "max_connections": 100,
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "wal_keep_size": "256MB",
                "wal_log_hints": "on",
                "hot_standby_feedback": "on",
                # A commit returns once the synchronous standby has applied it: agencies reading the standby see
                # what the primary confirmed.
                "synchronous_commit": "remote_apply" if ha.synchronous else "on",
            },
        },
    }


LOGGING_PARAMETERS: dict[str, str] = {
    "logging_collector": "on",
    "log_directory": LOG_DIRECTORY,
    "log_filename": "postgresql-%Y-%m-%d_%H%M%S.log",
    "log_rotation_age": "1d",
    "log_rotation_size": "100MB",
    "log_truncate_on_rotation": "off",
    "log_file_mode": "0600",
    "log_timezone": "UTC",
    "lc_messages": "C",
    "log_line_prefix": "%m [%p] %q%u@%d ",
}
"""Every node's server log, embedded or in compose: text for people and JSON lines for kho.warehouse.audit, in the
data directory's log/, times in UTC and messages untranslated so they parse."""


def local_parameters(config: KhoConfig, member: Member, bins: PgBinaries) -> dict[str, Any]:
    """This node's own PostgreSQL settings: its socket, logs (LOGGING_PARAMETERS), pgaudit when installed, and
    archiving to pgBackRest."""
    archiving = _backup_parameters(config, member)
    return {
        "unix_socket_directories": str(member.socket_dir),
        "unix_socket_permissions": "0700",
        "wal_retrieve_retry_interval": "1s",
        "shared_preload_libraries": "pgaudit" if bins.has_pgaudit else "",
        **LOGGING_PARAMETERS,
        "log_destination": "stderr,jsonlog" if bins.major >= JSONLOG_SINCE else "stderr",
        **archiving,
    }


def _backup_parameters(config: KhoConfig, member: Member) -> dict[str, Any]:
    """Archiving to pgBackRest, where it can serve this PostgreSQL; never an archive_command that fails on every
    segment (the primary would keep all its WAL until its disk is full)."""
    from kho.warehouse import backup

    if archiving_unsupported(member_major(member)) is not None:
        return {}
    return dict(backup.postgres_parameters(config, member))


PGBACKREST_MAX_MAJOR = ((2, 46, 15), (2, 54, 16))
"""(pgBackRest versions below, the newest PostgreSQL major they support): 2.45 knows PostgreSQL 15 at most, 2.46
added 16, 2.54 added 17."""


def pgbackrest_version() -> tuple[int, ...] | None:
    program = shutil.which("pgbackrest", path="/usr/local/bin:/usr/bin:/bin")
    if program is None:
        return None
    try:
        out = subprocess.run([program, "version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2])) if match else None


def archiving_unsupported(major: int | None) -> str | None:
    """Why pgBackRest cannot archive and back up this PostgreSQL major here, or None if it can."""
    version = pgbackrest_version()
    if version is None:
        return "pgbackrest is not installed (as root: `apt-get install pgbackrest`; `make setup` does it)"
    newest = next((limit for *below, limit in PGBACKREST_MAX_MAJOR if version < tuple(below)), 17)
    if major is not None and major > newest:
        return (f"pgBackRest {'.'.join(map(str, version))} supports PostgreSQL up to {newest}, and the warehouse "
                f"runs PostgreSQL {major}: install a newer pgBackRest")
    return None


class BackupsUnavailable(WarehouseError):
    """pgBackRest cannot back up this warehouse on this machine (missing, or too old for its PostgreSQL)."""


def backups_unsupported(config: KhoConfig) -> str | None:
    """Why this warehouse's nodes cannot be archived and backed up here, or None."""
    majors = [member_major(m) for m in layout(config).members]
    return archiving_unsupported(max((m or 0) for m in majors) or None)


def require_backups(config: KhoConfig) -> None:
    why = backups_unsupported(config)
    if why is not None:
        raise BackupsUnavailable(f"no backups here: {why}")


def member_major(member: Member) -> int | None:
    from kho.warehouse.binaries import data_major

    return data_major(member.datadir)


LOOPBACK = f"{LISTEN_HOST}/32"


def pg_hba(config: KhoConfig, network: str = LOOPBACK) -> list[str]:
    """SCRAM over TCP from `network` only (loopback for an embedded node, the compose network in a container); the
    replication role alone may replicate; over the node's own socket (0700, so only the server user reaches it) the
    server user is the administrator by peer identity (pg_ident, for pgBackRest)."""
    wh = config.warehouse

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    return [
        f"local all {q(wh.admin_user)} peer map=kho",
        "local all all scram-sha-256",
        f"host all all {network} scram-sha-256",
        f"host replication {q(wh.replication_user)} {network} scram-sha-256",
    ]


def cluster_settings(config: KhoConfig, *, parameters: dict[str, Any], network: str, os_user: str,
                     member: dict[str, Any] | None = None, log: dict[str, Any] | None = None,
                     postgresql: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Patroni configuration every node shares, embedded or in compose, with what is a node's own laid in:
    `member` (name, restapi, etcd3), `log` (Patroni's log files) and `postgresql` (addresses and directories)."""
    ha, wh = config.ha, config.warehouse
    member = member or {}
    return {
        "scope": ha.scope,
        "namespace": NAMESPACE,
        **({"name": member["name"]} if "name" in member else {}),
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s", **(log or {})},
        **({"restapi": member["restapi"]} if "restapi" in member else {}),
        "etcd3": member.get("etcd3", {"protocol": "http"}),
        "bootstrap": {
            "dcs": dcs_settings(config),
            "initdb": [{"encoding": "UTF8"}, "no-locale", "data-checksums", {"auth": "scram-sha-256"}],
        },
        "postgresql": {
            **(postgresql or {}),
            "authentication": {
                "superuser": {"username": wh.admin_user},
                "replication": {"username": wh.replication_user},
                "rewind": {"username": wh.admin_user},
            },
            "parameters": parameters,
            "pg_hba": pg_hba(config, network),
            "pg_ident": [f"kho {os_user} {wh.admin_user}"],
            "basebackup": [{"checkpoint": "fast"}],
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        "watchdog": {"mode": "off"},
    }


def config_for(config: KhoConfig, member: Member, bins: PgBinaries, os_user: str) -> dict[str, Any]:
    """One embedded node's Patroni configuration. Passwords are not in it: Patroni reads them from its environment
    (`secret_env`), as it does in the compose deployment."""
    rest = f"{member.host}:{member.rest_port}"
    address = f"{member.host}:{member.port}"
    return cluster_settings(
        config, parameters=local_parameters(config, member, bins), network=LOOPBACK, os_user=os_user,
        member={"name": member.name, "restapi": {"listen": rest, "connect_address": rest},
                "etcd3": {"hosts": list(config.ha.etcd_endpoints), "protocol": "http"}},
        log={"dir": str(member.patroni_log_dir), "file_num": 4, "file_size": 10_000_000},
        postgresql={"listen": address, "connect_address": address, "data_dir": str(member.datadir),
                    "bin_dir": str(bins.bindir), "pgpass": str(member.pgpass)},
    )


def secret_env(config: KhoConfig) -> dict[str, str]:
    """The passwords Patroni needs, for its environment only (never its config file or argv)."""
    wh = config.warehouse
    return {
        "PATRONI_SUPERUSER_PASSWORD": wh.admin_password(),
        "PATRONI_REPLICATION_PASSWORD": wh.ensure_replication_password(),
        "PATRONI_REWIND_PASSWORD": wh.admin_password(),
        "PATRONI_RESTAPI_USERNAME": config.ha.rest_user,
        "PATRONI_RESTAPI_PASSWORD": config.ha.ensure_rest_password(),
    }


def render(settings: Mapping[str, Any], header: str) -> str:
    return f"# {header}\n" + yaml.safe_dump(dict(settings), sort_keys=False, default_flow_style=False)


def ctl_settings(config: KhoConfig) -> dict[str, Any]:
    """patronictl's configuration: where etcd is and which cluster (no secrets)."""
    return {"scope": config.ha.scope, "namespace": NAMESPACE,
            "etcd3": {"hosts": list(config.ha.etcd_endpoints), "protocol": "http"}}


# --------------------------------------------------------------------------------------------------- REST API


@dataclass(frozen=True)
class MemberState:
    """One member as Patroni's /cluster reports it."""

    name: str
    role: str
    """leader, replica, sync_standby, standby_leader (or "down" when Patroni has no key for it)."""
    state: str
    """running, streaming, starting, stopped, crashed, ..."""
    host: str | None
    port: int | None
    timeline: int | None
    lag_bytes: int | None
    pending_restart: bool = False

    @property
    def is_leader(self) -> bool:
        return self.role in ("leader", "standby_leader")


@dataclass(frozen=True)
class ClusterView:
    members: tuple[MemberState, ...]

    @property
    def leader(self) -> MemberState | None:
        return next((m for m in self.members if m.is_leader and m.state == "running"), None)

    def member(self, name: str) -> MemberState | None:
        return next((m for m in self.members if m.name == name), None)


def _lag(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _first_answer(config: KhoConfig, lay: Layout | None, path: str) -> Any:
    """The JSON body from the first member whose REST API answers GET `path`; None if none does."""
    for member in (lay or layout(config)).members:
        try:
            response = httpx.get(f"{member.rest_url}{path}", timeout=REST_TIMEOUT_S)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError):
            continue
    return None


def cluster(config: KhoConfig, lay: Layout | None = None) -> ClusterView | None:
    """Patroni's view of the cluster, from the first member whose REST API answers; None if none does."""
    body = _first_answer(config, lay, "/cluster")
    if body is None:
        return None
    members = tuple(
        MemberState(name=str(m.get("name")), role=str(m.get("role", "?")), state=str(m.get("state", "?")),
                    host=m.get("host"), port=m.get("port"), timeline=m.get("timeline"),
                    lag_bytes=_lag(m.get("lag", m.get("replay_lag"))),
                    pending_restart=bool(m.get("pending_restart", False)))
        for m in (body.get("members", []) if isinstance(body, dict) else [])
    )
    return ClusterView(members=members)


def history(config: KhoConfig, lay: Layout | None = None) -> list[dict[str, Any]]:
    """The cluster's timeline history (GET /history): one entry per promotion, newest last."""
    rows = _first_answer(config, lay, "/history") or []
    return [{"timeline": row[0], "lsn": row[1], "reason": row[2], "at": row[3] if len(row) > 3 else None,
             "new_leader": row[4] if len(row) > 4 else None}
            for row in (rows if isinstance(rows, list) else []) if isinstance(row, list) and len(row) >= 3]


def leader(config: KhoConfig, lay: Layout | None = None) -> Member | None:
    """The member that is the primary now, by Patroni's account."""
    lay = lay or layout(config)
    view = cluster(config, lay)
    if view is None or view.leader is None:
        return None
    try:
        return lay.member(view.leader.name)
    except KeyError:
        return None


def patch_dcs(config: KhoConfig, lay: Layout | None = None) -> bool:
    """Bring the cluster-wide settings in etcd to what `dcs_settings` says (PATCH /config); True if it answered."""
    lay = lay or layout(config)
    auth = (config.ha.rest_user, config.ha.rest_password())
    for member in lay.members:
        try:
            response = httpx.patch(f"{member.rest_url}/config", json=dcs_settings(config), auth=auth,
                                   timeout=REST_TIMEOUT_S)
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            return True
    return False


RESTART_PARAMETERS = frozenset({
    "archive_mode", "shared_preload_libraries", "max_connections", "max_wal_senders", "max_replication_slots",
    "wal_level", "hot_standby", "logging_collector", "unix_socket_directories", "unix_socket_permissions",
    "max_worker_processes", "max_prepared_transactions", "max_locks_per_transaction", "track_commit_timestamp",
})
"""PostgreSQL settings a reload does not apply: a node whose value of one changed must restart."""


def restart_parameters_changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """The restart-only parameters that differ between two configurations of one node."""
    if before is None:
        return []

    def params(settings: Mapping[str, Any]) -> dict[str, Any]:
        local = settings.get("postgresql", {}).get("parameters", {}) or {}
        return {k: v for k, v in local.items() if k in RESTART_PARAMETERS}

    old, new = params(before), params(after)
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def restart_when_pending(config: KhoConfig, member: Member, timeout_s: float = 60.0) -> None:
    """After a reload that changed a restart-only setting: wait until this node's Patroni reports the restart
    pending (it applies a reload on its next cycle), then restart PostgreSQL through Patroni, in place (a leader
    stays the leader)."""
    auth = (config.ha.rest_user, config.ha.rest_password())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{member.rest_url}/patroni", timeout=REST_TIMEOUT_S).json()
        except (httpx.HTTPError, ValueError):
            body = {}
        if body.get("pending_restart"):
            response = httpx.post(f"{member.rest_url}/restart", json={"restart_pending": True}, auth=auth,
                                  timeout=180)
            if response.status_code not in (200, 202):
                raise WarehouseError(f"Patroni of {member.name} refused to restart it: {response.text.strip()}")
            return
        time.sleep(0.25)
    raise WarehouseError(f"{member.name} did not report the restart its new settings need within {timeout_s:.0f}s; "
                         "run `kho warehouse up` again")


# --------------------------------------------------------------------------------------------------- patronictl


def patronictl(config: KhoConfig, args: Sequence[str], *, timeout: float = 180) -> str:
    """Run patronictl (kho's own environment's) against the cluster; its output, or a one-line error."""
    lay = layout(config)
    program = Path(sys.executable).with_name("patronictl")
    argv = [str(program)] if program.exists() else [sys.executable, "-c", "from patroni.ctl import ctl; ctl()"]
    env = {**os.environ, "PATRONI_RESTAPI_USERNAME": config.ha.rest_user,
           "PATRONI_RESTAPI_PASSWORD": config.ha.rest_password(), "NO_COLOR": "1", "TERM": "dumb"}
    try:
        done = subprocess.run([*argv, "-c", str(lay.ctl_config), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WarehouseError(f"patronictl {' '.join(args)} did not finish within {timeout:.0f}s") from exc
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        last = [line for line in output.splitlines() if line.strip()]
        raise WarehouseError(f"patronictl {args[0]} failed: {last[-1] if last else 'exit ' + str(done.returncode)}")
    return output


def wait_for(config: KhoConfig, predicate: Any, what: str, timeout_s: float) -> ClusterView:
    """Poll /cluster until `predicate(view)` holds; the last view, or an error naming what was awaited."""
    deadline = time.monotonic() + timeout_s
    view = None
    while time.monotonic() < deadline:
        view = cluster(config)
        if view is not None and predicate(view):
            return view
        time.sleep(0.25)
    seen = ", ".join(f"{m.name} {m.role}/{m.state}" for m in view.members) if view else "no Patroni answered"
    raise WarehouseError(f"{what} did not happen within {timeout_s:.0f}s (cluster: {seen})")


def replicas_streaming(config: KhoConfig, view: ClusterView) -> bool:
    """Every member runs, one leads, the others stream from it (one of them synchronous in synchronous mode)."""
    if view.leader is None or len(view.members) < len(config.warehouse.ports):
        return False
    replicas = [m for m in view.members if not m.is_leader]
    if not all(m.state == "streaming" for m in replicas):
        return False
    return not config.ha.synchronous or not replicas or any(m.role == "sync_standby" for m in replicas)


# --------------------------------------------------------------------------------------------------- changes


@dataclass(frozen=True)
class Change:
    """What a switchover, failover or rejoin did, for the operator."""

    action: str
    before: ClusterView | None
    after: ClusterView
    seconds: float
    notes: tuple[str, ...] = ()

    def render(self) -> str:
        if self.action == "rejoin":
            leader = self.after.leader
            lines = [f"rejoin: following leader {leader.name if leader else 'none'} on timeline "
                     f"{leader.timeline if leader else '?'}, in {self.seconds:.1f} s"]
            lines += [f"  {m.name}: {m.role}/{m.state}" + (f", lag {m.lag_bytes} B" if m.lag_bytes is not None
                                                            else "") for m in self.after.members]
            return "\n".join(lines + [f"  {note}" for note in self.notes])
        old = self.before.leader.name if self.before and self.before.leader else "none"
        new = self.after.leader.name if self.after.leader else "none"
        old_tl = self.before.leader.timeline if self.before and self.before.leader else None
        new_tl = self.after.leader.timeline if self.after.leader else None
        lines = [f"{self.action}: leader {old} -> {new}, timeline {old_tl} -> {new_tl}, in {self.seconds:.1f} s"]
        lines += [f"  {m.name}: {m.role}/{m.state}" + (f", lag {m.lag_bytes} B" if m.lag_bytes is not None else "")
                  for m in self.after.members]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def _pick_candidate(config: KhoConfig, view: ClusterView, candidate: str | None) -> str:
    names = [m.name for m in view.members]
    if candidate is not None:
        if candidate not in names and candidate not in {m.name for m in layout(config).members}:
            raise WarehouseError(f"no warehouse node {candidate!r}; the nodes are {', '.join(names)}")
        return candidate
    replicas = [m for m in view.members if not m.is_leader and m.state in ("streaming", "running")]
    replicas.sort(key=lambda m: (m.role != "sync_standby", m.lag_bytes if m.lag_bytes is not None else 1 << 62))
    if not replicas:
        raise WarehouseError("no replica is streaming, so none can take over; see `kho warehouse status`")
    return replicas[0].name


def switchover(config: KhoConfig, candidate: str | None = None) -> Change:
    """A planned change of primary with nothing lost: Patroni stops the primary cleanly (its last WAL reaches the
    replicas first), promotes the candidate and makes the old primary follow it."""
    view = cluster(config)
    if view is None or view.leader is None:
        raise WarehouseError("no running leader to switch over from; for an unplanned change use "
                             "`kho warehouse failover`")
    target = _pick_candidate(config, view, candidate)
    if target == view.leader.name:
        raise WarehouseError(f"{target} is already the primary")
    started = time.monotonic()
    patronictl(config, ["switchover", config.ha.scope, "--leader", view.leader.name, "--candidate", target,
                        "--force"])
    after = wait_for(config, lambda v: v.leader is not None and v.leader.name == target
                     and replicas_streaming(config, v), f"{target} leading with every replica streaming", 300)
    return Change("switchover", view, after, time.monotonic() - started)


def failover(config: KhoConfig, candidate: str | None = None) -> Change:
    """An unplanned change of primary (the primary is unhealthy or gone): Patroni promotes the candidate; in
    synchronous mode only the synchronous standby qualifies, so nothing committed is lost."""
    view = cluster(config)
    if view is None:
        raise WarehouseError("no node's Patroni answers; start them with `kho warehouse up`")
    target = _pick_candidate(config, view, candidate)
    started = time.monotonic()
    patronictl(config, ["failover", config.ha.scope, "--candidate", target, "--force"])
    after = wait_for(config, lambda v: v.leader is not None and v.leader.name == target,
                     f"{target} leading", 300)
    return Change("failover", view, after, time.monotonic() - started)


def reinit(config: KhoConfig, member: str) -> None:
    """Rebuild a replica from the leader (a fresh base backup), when pg_rewind cannot bring it back."""
    patronictl(config, ["reinit", config.ha.scope, member, "--force", "--wait"], timeout=1800)
