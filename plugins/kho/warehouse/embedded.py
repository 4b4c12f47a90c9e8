"""The embedded warehouse's lifecycle: one etcd and one Patroni per node on this machine, run by kho itself.

`up`, `down` and `destroy` are what `kho warehouse ...` calls. `up` creates what is missing and starts what is
stopped; it is safe to run at any time, and after a failover it leaves the new roles as they are. Patroni, not kho,
decides which node is the primary (kho.warehouse.patroni). Files: kho.warehouse.layout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import yaml

from kho.config import KhoConfig
from kho.errors import ConfigError, WarehouseError
from kho.warehouse import backup, logins, patroni, runtime
from kho.warehouse.binaries import PgBinaries, data_major, find_binaries
from kho.warehouse.health import ClusterStatus, status
from kho.warehouse.layout import LISTEN_HOST, Layout, Member, layout
from kho.warehouse.osuser import ServerUser, grant_search, owned_dir, server_user, write_owned

log = logging.getLogger(__name__)

LEADER_TIMEOUT_S = 180.0
"""initdb, or a crashed primary's recovery, before Patroni reports a running leader."""
STREAMING_TIMEOUT_S = 600.0
"""A new replica's base backup of the whole warehouse, then streaming."""
STOP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class _Passwords:
    admin: str = field(repr=False)
    app: str = field(repr=False)
    replication: str = field(repr=False)


# --------------------------------------------------------------------------------------------------- up


def up(config: KhoConfig, *, binaries: PgBinaries | None = None) -> ClusterStatus:
    """Create (first time) and start etcd and every node under Patroni; return the status once replicas stream."""
    _check_ports(config)
    lay = layout(config)
    user = server_user(config, create=True)
    assert user is not None
    with _locked(lay):
        _refuse_old_layout(lay)
        made_by = next((m for m in (data_major(x.datadir) for x in lay.members) if m is not None), None)
        bins = binaries or find_binaries(major=made_by)
        _check_versions(lay, bins)
        grant_search(bins.bindir, user)  # pgserver's binaries may sit in a root-only checkout's .venv
        wh = config.warehouse
        passwords = _Passwords(admin=wh.ensure_admin_password(), app=wh.ensure_password(),
                               replication=wh.ensure_replication_password())
        config.ha.ensure_rest_password()
        owned_dir(lay.root, user)
        for member in lay.members:
            owned_dir(member.socket_dir.parent, user)
            owned_dir(member.socket_dir, user)
        rt = runtime.prepare(user, lay.runtime)
        _write_backup_configs(config, user, bins)
        if config.ha.embedded_etcd:
            _ensure_etcd(config, lay, user, rt)
        write_owned(lay.ctl_config, patroni.render(patroni.ctl_settings(config), "patronictl's view of the "
                                                   "cluster; written by `kho warehouse up`"), user)
        _start_members(config, lay, user, rt, bins)
        view = patroni.wait_for(config, lambda v: v.leader is not None, "a running leader", LEADER_TIMEOUT_S)
        patroni.patch_dcs(config, lay)
        assert view.leader is not None
        leader = _wait_writable(config, lay, passwords.admin)
        _bootstrap_primary(config, leader, bins, passwords)
        _wait_streaming(config, lay)
        now = patroni.cluster(config, lay)
        for state in [m for m in now.members if m.pending_restart] if now else []:  # left by an earlier `up`
            patroni.restart_when_pending(config, lay.member(state.name))
            _wait_streaming(config, lay)
        _ensure_stanza(config, bins)
        report = _migrate(config, leader, passwords.app)  # last: a refused migration leaves the nodes running
    return dataclasses.replace(status(config), migration=report)


def _check_ports(config: KhoConfig) -> None:
    """Every node, every Patroni and the embedded etcd need a port of their own."""
    wh, ha = config.warehouse, config.ha
    named = [(m_setting, port) for m_setting, port in zip(
        [("KHO_PG_PORT", "KHO_PG_STANDBY_PORT")[i] if i < 2 else "KHO_PG_PORTS" for i in range(len(wh.ports))],
        wh.ports, strict=True)]
    named += [("KHO_PATRONI_PORTS", p) for p in ha.rest_ports]
    if ha.embedded_etcd:
        named += [("KHO_ETCD_PORT", ha.etcd_port), ("KHO_ETCD_PEER_PORT", ha.etcd_peer_port)]
    seen: dict[int, str] = {}
    for setting, port in named:
        if port in seen:
            both = seen[port] if seen[port] == setting else f"{seen[port]} and {setting}"
            raise ConfigError(f"{both} use port {port} twice; every warehouse node, its Patroni and etcd need a "
                              "port of their own")
        seen[port] = setting


def _refuse_old_layout(lay: Layout) -> None:
    old = lay.root / "primary"
    if (old / "PG_VERSION").is_file():
        raise WarehouseError(
            f"the warehouse in {lay.root} was made by an earlier kho that ran PostgreSQL without Patroni; keep what "
            "you need (pg_dump), then run `kho warehouse destroy` and `kho warehouse up` and sync again"
        )


def _check_versions(lay: Layout, bins: PgBinaries) -> None:
    for member in lay.members:
        made_by = data_major(member.datadir)
        if made_by is not None and made_by != bins.major:
            raise WarehouseError(
                f"the warehouse node {member.name} in {member.datadir} was created by PostgreSQL {made_by} but the "
                f"binaries in {bins.bindir} are PostgreSQL {bins.major}; install PostgreSQL {made_by}, or run "
                "`kho warehouse destroy` to start over (this deletes the warehouse's data)"
            )


def _write_backup_configs(config: KhoConfig, user: ServerUser, bins: PgBinaries) -> None:
    if patroni.archiving_unsupported(bins.major) is None:
        backup.write_configs(config, user)


def _ensure_stanza(config: KhoConfig, bins: PgBinaries) -> None:
    """The backup repository's stanza, checked against the primary; where pgBackRest cannot serve this
    PostgreSQL the nodes do not archive, and `up` says so (backups then fail with the same reason)."""
    why = patroni.archiving_unsupported(bins.major)
    if why is not None:
        log.warning("no WAL archiving and no backups: %s", why)
        return
    backup.ensure_stanza(config)


# --------------------------------------------------------------------------------------------------- etcd


def _ensure_etcd(config: KhoConfig, lay: Layout, user: ServerUser, rt: runtime.Runtime) -> None:
    """One etcd member on loopback, as the server user, data beside the nodes'; waits until it is healthy."""
    ha = config.ha
    marker = str(lay.etcd_dir)
    pid = _alive(lay.etcd_pidfile, marker)
    client = f"http://{LISTEN_HOST}:{ha.etcd_port}"
    if pid is not None and _alive(lay.etcd_pidfile, f"--listen-client-urls {client} ") is None:
        _stop_etcd(lay)  # running on other ports than configured: restart it on these
        pid = None
    if pid is None:
        _check_port_free(ha.etcd_port, "etcd", "KHO_ETCD_PORT")
        _check_port_free(ha.etcd_peer_port, "etcd (peer)", "KHO_ETCD_PEER_PORT")
        owned_dir(lay.etcd_dir, user)
        peer = f"http://{LISTEN_HOST}:{ha.etcd_peer_port}"
        argv = [rt.etcd, "--name", "kho", "--data-dir", marker, "--listen-client-urls", client,
                "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls",
                peer, "--initial-cluster", f"kho={peer}", "--initial-cluster-state", "new",
                "--initial-cluster-token", f"kho-{ha.scope}", "--log-level", "warn"]
        with open(lay.etcd_log, "ab") as output:
            user.chown(lay.etcd_log)
            pid = user.spawn(argv, cwd=lay.root, env={"ETCD_UNSUPPORTED_ARCH": ""}, output=output)
        write_owned(lay.etcd_pidfile, f"{pid}\n", user, 0o644)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(f"http://{LISTEN_HOST}:{ha.etcd_port}/health", timeout=2)
            if response.json().get("health") in ("true", True):
                return
        if _alive(lay.etcd_pidfile, marker) is None:
            raise WarehouseError(f"etcd exited on start: {_tail(lay.etcd_log)}")
        if time.monotonic() > deadline:
            raise WarehouseError(f"etcd on {LISTEN_HOST}:{ha.etcd_port} is not healthy after 60s: "
                                 f"{_tail(lay.etcd_log)}")
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------------- Patroni


def _start_members(config: KhoConfig, lay: Layout, user: ServerUser, rt: runtime.Runtime, bins: PgBinaries) -> None:
    """Write each node's Patroni configuration and start the ones not running. A brand-new cluster starts its
    first node alone, so it bootstraps (initdb) and the others clone it. A running node whose addresses changed
    is restarted (all such nodes are stopped first, replicas before the leader, so ports can be swapped); one
    whose restart-only settings changed is reloaded, then restarted in place by its Patroni."""
    fresh = not any((m.datadir / "PG_VERSION").is_file() for m in lay.members)
    changed, moved, restart = _write_member_configs(config, lay, user, bins)
    if moved:
        view = patroni.cluster(config, lay)
        leader = view.leader.name if view and view.leader else None
        for member in sorted(moved, key=lambda m: m.name == leader):
            _stop_member(lay, member, user)
    for member in lay.members:
        pid = patroni_pid(member)
        if pid is not None:
            if member.name in changed:
                os.kill(pid, signal.SIGHUP)  # Patroni reloads its configuration file
            continue
        _start_member(config, lay, member, user, rt)
        if fresh and member.index == 0:
            patroni.wait_for(config, lambda v, name=member.name: v.leader is not None and v.leader.name == name,
                             f"{member.name}'s bootstrap", LEADER_TIMEOUT_S)
    for member in restart:
        patroni.restart_when_pending(config, member)


def _write_member_configs(config: KhoConfig, lay: Layout, user: ServerUser, bins: PgBinaries
                          ) -> tuple[set[str], list[Member], list[Member]]:
    """Write every node's Patroni configuration; (nodes whose file changed, running nodes that must move,
    running nodes whose restart-only settings changed)."""
    changed: set[str] = set()
    moved: list[Member] = []
    restart: list[Member] = []
    for member in lay.members:
        settings = patroni.config_for(config, member, bins, user.name)
        previous = _read_yaml(member.patroni_config)
        write_owned(member.patroni_config, patroni.render(settings, f"Patroni for {member.name}; written by "
                                                          "`kho warehouse up` on every run, edits are overwritten"),
                    user)
        if previous != settings:
            changed.add(member.name)
        if previous is None or patroni_pid(member) is None:
            continue
        if _moved(previous, settings):
            moved.append(member)
        elif patroni.restart_parameters_changed(previous, settings):
            restart.append(member)
    return changed, moved, restart


def _moved(before: dict, after: dict) -> bool:
    """Whether a running node must restart: its addresses changed (a reload does not move a listening socket)."""
    return any(before.get(section, {}).get(key) != after[section][key]
               for section, key in (("restapi", "listen"), ("postgresql", "listen"), ("postgresql", "data_dir")))


def _start_member(config: KhoConfig, lay: Layout, member: Member, user: ServerUser, rt: runtime.Runtime) -> None:
    _check_port_free(member.rest_port, f"Patroni of {member.name}", "KHO_PATRONI_PORTS")
    if _postmaster_pid(member.datadir) is None:
        _check_port_free(member.port, f"the warehouse node {member.name}", member.port_setting)
    if member.datadir.exists():
        user.chown(member.datadir)
    env = {**rt.env(), **patroni.secret_env(config), "HOME": str(lay.root), "PGAPPNAME": "patroni"}
    owned_dir(member.patroni_log_dir, user)
    with open(member.patroni_output, "ab") as output:
        user.chown(member.patroni_output)
        pid = user.spawn(rt.patroni_argv(member.patroni_config), cwd=lay.root, env=env, output=output)
    write_owned(member.patroni_pidfile, f"{pid}\n", user, 0o644)
    log.info("started Patroni for %s (pid %s)", member.name, pid)


def _stop_member(lay: Layout, member: Member, user: ServerUser) -> None:
    """SIGTERM to Patroni stops its PostgreSQL (fast) and releases the leader lock; a PostgreSQL left running by a
    Patroni that was killed is stopped with pg_ctl."""
    pid = _alive(member.patroni_pidfile, str(member.patroni_config))
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(lambda: _alive(member.patroni_pidfile, str(member.patroni_config)), STOP_TIMEOUT_S):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    member.patroni_pidfile.unlink(missing_ok=True)
    if _postmaster_pid(member.datadir) is not None:
        bins = find_binaries(major=data_major(member.datadir))
        with contextlib.suppress(WarehouseError):
            user.run([bins.program("pg_ctl"), "-D", str(member.datadir), "stop", "-m", "fast", "-w", "-t", "60"],
                     cwd=lay.root, timeout=90)


# --------------------------------------------------------------------------------------------------- bootstrap


def _admin_connect(config: KhoConfig, member: Member, password: str, dbname: str = "postgres"
                   ) -> psycopg.Connection:
    """The administrator on the leader, by its address (during `up` the configured order may not lead to it)."""
    wh = config.warehouse
    info = psycopg.conninfo.make_conninfo(host=member.host, port=str(member.port), dbname=dbname,
                                          user=wh.admin_user, password=password, connect_timeout="5",
                                          application_name="kho_admin")
    try:
        return psycopg.connect(info, autocommit=True)
    except psycopg.OperationalError as exc:
        detail = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
        raise WarehouseError(
            f"cannot log in to the warehouse primary {member.name} on {member.host}:{member.port} as "
            f"{wh.admin_user}: {detail}. Its password is KHO_PG_ADMIN_PASSWORD or {wh.admin_password_path}, as "
            "when the cluster was created"
        ) from exc


def _wait_writable(config: KhoConfig, lay: Layout, password: str) -> Member:
    """The leader once its PostgreSQL accepts writes: Patroni names a leader as soon as it holds the lock, while
    the node may still be finishing its promotion (read-only for a moment)."""
    deadline = time.monotonic() + LEADER_TIMEOUT_S
    while True:
        view = patroni.cluster(config, lay)
        if view is not None and view.leader is not None:
            member = lay.member(view.leader.name)
            with contextlib.suppress(WarehouseError, psycopg.Error), \
                    _admin_connect(config, member, password) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and row[0] is False:
                    return member
        if time.monotonic() > deadline:
            raise WarehouseError(f"no node accepts writes {LEADER_TIMEOUT_S:.0f}s after Patroni named a leader")
        time.sleep(0.2)


def _bootstrap_primary(config: KhoConfig, leader: Member, bins: PgBinaries, passwords: _Passwords) -> None:
    """Roles, the warehouse database and pgaudit, each made only if missing (Patroni made the replication role
    and manages the replication slots)."""
    wh = config.warehouse
    with _admin_connect(config, leader, passwords.admin) as conn:
        logins.ensure_roles(conn, wh, app_password=passwords.app, replication_password=passwords.replication)
        logins.ensure_database(conn, wh)
    if bins.has_pgaudit:  # its event triggers add the objects of DDL statements to the audit trail
        with _admin_connect(config, leader, passwords.admin, dbname=wh.dbname) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgaudit")


def _wait_streaming(config: KhoConfig, lay: Layout) -> None:
    try:
        patroni.wait_for(config, lambda v: patroni.replicas_streaming(config, v),
                         "every replica streaming from the leader", STREAMING_TIMEOUT_S)
    except WarehouseError as exc:
        tails = "\n".join(f"{m.name}: {_tail(m.patroni_log)}\n{_tail(m.patroni_output, 5)}" for m in lay.members)
        raise WarehouseError(f"{exc}\n{tails}") from exc


def _migrate(config: KhoConfig, leader: Member, password: str):
    """The warehouse database's schema migrations, as the application login, which owns what they create."""
    from kho.warehouse.migrations import migrate

    wh = config.warehouse
    info = psycopg.conninfo.make_conninfo(host=leader.host, port=str(leader.port), dbname=wh.dbname,
                                          user=wh.user, password=password, connect_timeout="5",
                                          application_name="kho")
    try:
        conn = psycopg.connect(info, autocommit=True)
    except psycopg.OperationalError as exc:
        raise WarehouseError(f"cannot log in to the warehouse primary {leader.name} as {wh.user} to migrate "
                             f"{wh.dbname}: {exc}".replace("\n", " ")) from exc
    with conn:
        return migrate(conn)


# --------------------------------------------------------------------------------------------------- rejoin


def rejoin(config: KhoConfig, name: str | None = None, *, reinit: bool = False) -> patroni.Change:
    """Bring a stopped or failed node back as a replica of the current leader: start its Patroni, which rewinds
    an old primary with pg_rewind (use_pg_rewind) and follows the leader. With `reinit`, a node that cannot
    rejoin that way is cloned afresh from the leader (`patronictl reinit`)."""
    lay = layout(config)
    user = server_user(config, create=False)
    if user is None:
        raise WarehouseError("the embedded warehouse was never started here; run `kho warehouse up`")
    before = patroni.cluster(config, lay)
    if before is None or before.leader is None:
        raise WarehouseError("no running leader to rejoin; start the warehouse with `kho warehouse up`")
    targets = [lay.member(name)] if name else [m for m in lay.members if patroni_pid(m) is None]
    started = time.monotonic()
    notes = []
    with _locked(lay):
        made_by = next((m for m in (data_major(x.datadir) for x in lay.members) if m is not None), None)
        bins = find_binaries(major=made_by)
        rt = runtime.prepare(user, lay.runtime)
        for member in targets:
            if member.name == before.leader.name:
                raise WarehouseError(f"{member.name} is the primary; it has nothing to rejoin")
            offset = member.patroni_log.stat().st_size if member.patroni_log.exists() else 0
            if patroni_pid(member) is None:
                write_owned(member.patroni_config, patroni.render(
                    patroni.config_for(config, member, bins, user.name),
                    f"Patroni for {member.name}; written by `kho warehouse up`"), user)
                _start_member(config, lay, member, user, rt)
                notes.append(f"{member.name}: started its Patroni")
            elif reinit:
                patroni.reinit(config, member.name)
                notes.append(f"{member.name}: cloned afresh from {before.leader.name} (patronictl reinit)")
            try:
                patroni.wait_for(config, lambda v, n=member.name: (v.member(n) is not None
                                 and v.member(n).state == "streaming"),
                                 f"{member.name} streaming from {before.leader.name}", 300 if not reinit else 60)
            except WarehouseError:
                if not reinit:
                    raise
                patroni.reinit(config, member.name)
                notes.append(f"{member.name}: could not rewind; cloned afresh from {before.leader.name}")
                patroni.wait_for(config, lambda v, n=member.name: (v.member(n) is not None
                                 and v.member(n).state == "streaming"),
                                 f"{member.name} streaming after reinit", STREAMING_TIMEOUT_S)
            said = _read_from(member.patroni_log, offset)
            if "pg_rewind" in said:
                notes.append(f"{member.name}: rewound with pg_rewind to follow {before.leader.name}")
    after = patroni.wait_for(config, lambda v: patroni.replicas_streaming(config, v),
                             "every replica streaming from the leader", STREAMING_TIMEOUT_S)
    return patroni.Change("rejoin", before, after, time.monotonic() - started, tuple(notes))


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------- down


def down(config: KhoConfig) -> None:
    """Stop every node (replicas first, so no failover starts), then etcd; what is stopped is left alone."""
    lay = layout(config)
    user = server_user(config, create=False)
    if user is None or not lay.root.exists():
        return
    with _locked(lay):
        view = patroni.cluster(config, lay)
        leader = view.leader.name if view and view.leader else None
        for member in sorted(lay.members, key=lambda m: m.name == leader):
            _stop_member(lay, member, user)
        _stop_etcd(lay)
        _stop_pre_patroni_nodes(lay, user)
        if lay.members and not any(_postmaster_pid(m.datadir) for m in lay.members):
            shutil.rmtree(lay.members[0].socket_dir.parent, ignore_errors=True)  # `up` makes it again


def _stop_pre_patroni_nodes(lay: Layout, user: ServerUser) -> None:
    """Nodes an earlier kho ran without Patroni (pg/primary, pg/standby), so `destroy` never deletes the data of a
    running server."""
    for name in ("standby", "primary"):
        datadir = lay.root / name
        if _postmaster_pid(datadir) is None:
            continue
        bins = find_binaries(major=data_major(datadir))
        with contextlib.suppress(WarehouseError):
            user.run([bins.program("pg_ctl"), "-D", str(datadir), "stop", "-m", "fast", "-w", "-t", "60"],
                     cwd=lay.root, timeout=90)


def _stop_etcd(lay: Layout) -> None:
    pid = _alive(lay.etcd_pidfile, str(lay.etcd_dir))
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(lambda: _alive(lay.etcd_pidfile, str(lay.etcd_dir)), 30):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    lay.etcd_pidfile.unlink(missing_ok=True)


def destroy(config: KhoConfig) -> None:
    """Stop everything and delete the nodes' data, logs, etcd's data and the sockets (keeps passwords, backups)."""
    down(config)
    lay = layout(config)
    with contextlib.suppress(OSError):
        shutil.rmtree(lay.members[0].socket_dir.parent) if lay.members else None
    if not lay.root.exists():
        return
    with _locked(lay):
        shutil.rmtree(lay.root, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- processes


def _alive(pidfile: Path, marker: str) -> int | None:
    """The PID in `pidfile` if that process lives (not a zombie) and its command line names `marker`."""
    try:
        pid = int(pidfile.read_text(encoding="ascii").split()[0])
        proc = Path("/proc") / str(pid)
        if (proc / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return None
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    return pid if marker in cmdline else None


def _postmaster_pid(datadir: Path) -> int | None:
    """PID of the postmaster serving `datadir` (its cwd is the data directory), or None."""
    try:
        pid = int((datadir / "postmaster.pid").read_text(encoding="ascii").splitlines()[0])
        proc = Path("/proc") / str(pid)
        if (proc / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return None
        return pid if os.path.samefile(proc / "cwd", datadir) else None
    except (OSError, ValueError, IndexError):
        return None


def postmaster_pid(member: Member) -> int | None:
    return _postmaster_pid(member.datadir)


def patroni_pid(member: Member) -> int | None:
    return _alive(member.patroni_pidfile, str(member.patroni_config))


def _wait_gone(probe, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while probe() is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _check_port_free(port: int, what: str, setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LISTEN_HOST, port))
        except OSError as exc:
            raise WarehouseError(
                f"cannot start {what} on {LISTEN_HOST}:{port}: the port is already used by another program "
                f"({exc.strerror}). Stop that program or set {setting} to a free port."
            ) from exc


def _read_yaml(path: Path) -> dict | None:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return f"last lines of {path}:\n" + "\n".join(text)


@contextlib.contextmanager
def _locked(lay: Layout) -> Iterator[None]:
    """One `up`/`down`/`destroy` at a time per KHO_HOME: two at once would race on the nodes' processes."""
    lay.root.parent.mkdir(parents=True, exist_ok=True)
    with open(lay.root.parent / ".pg.lock", "w", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

