"""The embedded warehouse: a local PostgreSQL primary and its streaming-replication standby, run by kho itself.

`up`, `down`, `status` and `destroy` are what `kho warehouse ...` calls. Everything lives under
`config.home / "pg"`: one data directory per node, its log beside it, and the standby's replication password file.
Settings kho owns are written to `kho.conf` in each data directory (included from postgresql.conf), so running
`up` again with other ports rewrites them instead of piling up edits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import importlib.util
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, LiteralString

import psycopg

from kho.config import KhoConfig, WarehouseConfig
from kho.errors import ConfigError, KhoError, WarehouseError
from kho.warehouse import logins
from kho.warehouse.connection import connect_node

if TYPE_CHECKING:
    from kho.warehouse.migrations import MigrationReport

log = logging.getLogger(__name__)

NodeName = Literal["primary", "standby"]
Role = Literal["primary", "standby", "down"]
BinarySource = Literal["system", "pgserver"]

LISTEN_HOST = "127.0.0.1"
"""The embedded nodes listen on loopback TCP only; no Unix sockets, so long KHO_HOME paths cannot break them."""
SLOT_NAME = "kho_standby"
"""Physical slot on the primary: it keeps WAL until the standby has it, so a stopped standby can catch up."""
STANDBY_APPLICATION_NAME = "kho_standby"
"""How the standby names itself in the primary's pg_stat_replication."""
NODE_NAMES: tuple[NodeName, NodeName] = ("primary", "standby")
LOG_DIRECTORY = "log"
"""Each node's server logs (text and JSON lines), relative to its data directory."""
JSONLOG_SINCE = 15
"""The first PostgreSQL major with `log_destination = jsonlog`, the form kho.warehouse.audit reads."""
REQUIRED_PROGRAMS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
START_TIMEOUT_S = 60
STREAMING_TIMEOUT_S = 60.0
_CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class PgBinaries:
    """One PostgreSQL installation's programs; every node of a cluster must run the same major version."""

    bindir: Path
    source: BinarySource
    major: int

    def program(self, name: str) -> str:
        return str(self.bindir / name)

    @property
    def pkglibdir(self) -> Path:
        """Where this installation's loadable modules live (Debian: /usr/lib/postgresql/N/lib)."""
        return _pkglibdir(self.bindir)

    @property
    def has_pgaudit(self) -> bool:
        """Whether pgaudit is installed for these binaries (Debian's postgresql-N-pgaudit), so kho can load it."""
        return (self.pkglibdir / "pgaudit.so").is_file()


def find_binaries(source: Literal["auto", "system", "pgserver"] = "auto", *, major: int | None = None) -> PgBinaries:
    """The PostgreSQL server programs to run: the system's install first, else the `pgserver` wheel's.

    `major` restricts the choice to one version, so an existing data directory is always run by the version that
    created it (a pgserver-built PG 16 cluster keeps working on a machine whose system PostgreSQL is 15).
    """
    looked: list[str] = []
    for bindir, origin in _candidate_bindirs(source):
        missing = [p for p in REQUIRED_PROGRAMS if not os.access(bindir / p, os.X_OK)]
        if missing:
            looked.append(f"{bindir} ({origin}: lacks {', '.join(missing)})")
            continue
        found = _binary_major(bindir)
        if major is not None and found != major:
            looked.append(f"{bindir} ({origin}: PostgreSQL {found}, need {major})")
            continue
        return PgBinaries(bindir=bindir, source=origin, major=found)
    wanted = f"PostgreSQL {major} " if major is not None else "PostgreSQL "
    raise WarehouseError(
        f"no {wanted}server binaries found (source={source}; looked at: {'; '.join(looked) or 'nothing'}). "
        "Install them (`apt-get install postgresql`) or the pgserver wheel (`uv sync`)."
    )


def _candidate_bindirs(source: str) -> Iterator[tuple[Path, BinarySource]]:
    seen: set[Path] = set()
    candidates: list[tuple[Path, BinarySource]] = []
    if source in ("auto", "system"):
        candidates += [(d, "system") for d in _system_bindirs()]
    if source in ("auto", "pgserver"):
        spec = importlib.util.find_spec("pgserver")  # finds the wheel without importing it (import has side effects)
        if spec is not None and spec.submodule_search_locations:
            candidates.append((Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin", "pgserver"))
    for bindir, origin in candidates:
        resolved = bindir.resolve()
        if resolved not in seen and resolved.is_dir():
            seen.add(resolved)
            yield resolved, origin


def _system_bindirs() -> list[Path]:
    dirs: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            dirs.append(Path(out.stdout.strip()))
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    return dirs + versions


@functools.lru_cache(maxsize=16)
def _binary_major(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out.stdout)
    if out.returncode != 0 or not match:
        raise WarehouseError(f"{bindir}/postgres --version failed: {(out.stderr or out.stdout).strip()}")
    return int(match.group(1))


@functools.lru_cache(maxsize=16)
def _pkglibdir(bindir: Path) -> Path:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(bindir / "pg_config"), "--pkglibdir"], capture_output=True, text=True, timeout=10,
                             check=True)
        if out.stdout.strip():
            return Path(out.stdout.strip())
    for candidate in (bindir.parent / "lib" / "postgresql", bindir.parent / "lib"):
        if (candidate / "plpgsql.so").is_file():
            return candidate
    return bindir.parent / "lib"


def _data_major(datadir: Path) -> int | None:
    try:
        return int((datadir / "PG_VERSION").read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class NodeStatus:
    """What one node reports about itself (and, for a standby, what the primary reports about it)."""

    name: NodeName
    host: str
    port: int
    running: bool
    role: Role
    current_lsn: str | None = None
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    replication_state: str | None = None
    """This standby's `state` in the primary's pg_stat_replication ('streaming' when healthy)."""
    receiver_status: str | None = None
    """This standby's own pg_stat_wal_receiver status."""
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ClusterStatus:
    """Both nodes' state; the CLI prints `render()` and exits non-zero unless `healthy`."""

    nodes: tuple[NodeStatus, ...]
    migration: MigrationReport | None = None
    """What `up` migrated in the warehouse database (None from `status`)."""

    def node(self, name: NodeName) -> NodeStatus:
        return next(n for n in self.nodes if n.name == name)

    @property
    def problems(self) -> list[str]:
        """Why the cluster is not healthy, one sentence each; empty when it is."""
        found = [f"{n.name} ({n.host}:{n.port}) is not running: {n.error or 'no answer'}" for n in self.nodes
                 if not n.running]
        primaries = [n.name for n in self.nodes if n.role == "primary"]
        if len(primaries) != 1 and all(n.running for n in self.nodes):
            found.append(f"expected exactly one primary, found {len(primaries)} ({', '.join(primaries) or 'none'})")
        found += [
            f"{n.name} is not streaming from the primary (replication state {n.replication_state or 'none'}, "
            f"receiver {n.receiver_status or 'none'})"
            for n in self.nodes if n.role == "standby" and n.replication_state != "streaming"
        ]
        return found

    @property
    def healthy(self) -> bool:
        """Both nodes up, exactly one primary, and the standby streaming from it."""
        return len(self.nodes) == 2 and not self.problems

    def render(self) -> str:
        header = ("NODE", "ADDRESS", "RUNNING", "ROLE", "WAL LSN", "RECEIVED", "REPLAYED", "REPLICATION", "LAG")
        rows = [header] + [_render_row(n) for n in self.nodes]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"schema: {line}" for line in self.migration.lines()] if self.migration else []
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        problems = self.problems
        lines.append("healthy" if not problems else "UNHEALTHY:")
        lines += [f"  - {p}" for p in problems]
        return "\n".join(lines)


def _render_row(n: NodeStatus) -> tuple[str, ...]:
    lag = "-"
    if n.lag_bytes is not None:
        lag = f"{n.lag_bytes} B" + (f" / {n.lag_seconds:.3f} s" if n.lag_seconds is not None else "")
    return (
        n.name, f"{n.host}:{n.port}", "yes" if n.running else "no", n.role, n.current_lsn or "-",
        n.receive_lsn or "-", n.replay_lsn or "-", n.replication_state or n.receiver_status or "-", lag,
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
    error: str | None = None


def status(config: KhoConfig) -> ClusterStatus:
    """Ask each configured node, over SQL, what it is; works for any primary + standby pair, embedded or not."""
    wh = config.warehouse
    probes = [_probe(wh, i) for i in range(len(NODE_NAMES))]
    primaries = [p for p in probes if p.role == "primary"]
    rows = primaries[0].replication if len(primaries) == 1 else ()
    nodes = []
    for index, (name, probe) in enumerate(zip(NODE_NAMES, probes, strict=True)):
        row = _replication_row_for(name, rows, standbys=sum(p.role == "standby" for p in probes)) \
            if probe.role == "standby" else None
        nodes.append(NodeStatus(
            name=name, host=wh.hosts[index], port=wh.ports[index], running=probe.role != "down", role=probe.role,
            current_lsn=probe.current_lsn, receive_lsn=probe.receive_lsn, replay_lsn=probe.replay_lsn,
            replication_state=row.state if row else None, receiver_status=probe.receiver_status,
            lag_bytes=row.lag_bytes if row else None, lag_seconds=row.lag_seconds if row else None,
            error=probe.error,
        ))
    return ClusterStatus(nodes=tuple(nodes))


def _replication_row_for(name: NodeName, rows: Sequence[_ReplicationRow], *, standbys: int
                         ) -> _ReplicationRow | None:
    """The primary's pg_stat_replication row for this standby: by application name, else the only one there is."""
    for row in rows:
        if row.application_name == f"kho_{name}":
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
    return _Probe(
        role="primary", current_lsn=current,
        replication=tuple(_ReplicationRow(r[0], r[1], r[2], r[3], r[4]) for r in rows),
    )


def _scalar(conn: psycopg.Connection, query: LiteralString) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


# --------------------------------------------------------------------------------------------------- OS user


@dataclass(frozen=True)
class _PgUser:
    """Who runs the server programs: the current user, or `config.pg_os_user` when kho runs as root.

    initdb and postgres refuse to run as root, and sessions and CI run as root.
    """

    name: str
    uid: int
    gid: int
    switch: Literal["none", "runuser", "setpriv", "su"]
    tool: str = ""
    """Absolute path of the runuser/setpriv/su program, when `switch` is not "none"."""

    @property
    def is_other(self) -> bool:
        return self.switch != "none"

    def argv(self, args: Sequence[str]) -> list[str]:
        if self.switch == "runuser":
            return [self.tool, "-u", self.name, "--", *args]
        if self.switch == "setpriv":
            return [self.tool, f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *args]
        if self.switch == "su":
            return [self.tool, "-s", "/bin/sh", self.name, "-c", "exec " + shlex.join(args)]
        return list(args)

    def run(self, args: Sequence[str], *, cwd: Path, timeout: float, password: str | None = None) -> str:
        """Run one PostgreSQL program as this user; a password goes through PGPASSWORD, never argv."""
        env = {"PATH": _CHILD_PATH, "LC_ALL": "C"}
        if password is not None:
            env["PGPASSWORD"] = password
        program = Path(args[0]).name
        try:
            done = subprocess.run(self.argv(args), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise WarehouseError(f"{program} did not finish within {timeout:.0f}s") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()[-2000:]
            raise WarehouseError(f"{program} failed (exit {done.returncode}) as user {self.name}: {detail}")
        return done.stdout

    def chown(self, path: Path) -> None:
        if self.is_other:
            os.chown(path, self.uid, self.gid)

    def can_search(self, directory: Path) -> bool:
        st = directory.stat()
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid in os.getgrouplist(self.name, self.gid):
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)


def _pg_user(config: KhoConfig, *, create: bool) -> _PgUser | None:
    """The user that owns the data directories; None when running as root and that user does not exist yet."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return _PgUser(me.pw_name, me.pw_uid, me.pw_gid, "none")
    name = config.pg_os_user
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if not create:
            return None
        _create_system_user(name)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise ConfigError(f"KHO_PG_OS_USER={name} is root; PostgreSQL refuses to run as root, use e.g. 'postgres'")
    for switch in ("runuser", "setpriv", "su"):
        tool = shutil.which(switch, path=_CHILD_PATH)
        if tool:
            return _PgUser(name, entry.pw_uid, entry.pw_gid, switch, tool)
    raise WarehouseError(f"cannot run PostgreSQL as {name!r}: none of runuser, setpriv or su is installed")


def _create_system_user(name: str) -> None:
    useradd = shutil.which("useradd", path=_CHILD_PATH)
    if useradd is None:
        raise WarehouseError(f"OS user {name!r} does not exist and useradd is missing: create it, or set "
                             "KHO_PG_OS_USER to an existing unprivileged user")
    done = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise WarehouseError(f"could not create OS user {name!r} ({done.stderr.strip()}); create it by hand, or set "
                             "KHO_PG_OS_USER to an existing unprivileged user")
    log.warning("created system user %r to run PostgreSQL (it refuses to run as root)", name)


def _grant_search(path: Path, user: _PgUser) -> None:
    """Let the server user reach `path` through ancestors it cannot enter (e.g. a root-only `mktemp -d`).

    Only search (o+x) is granted, never read, so names in those directories stay private.
    """
    if not user.is_other:
        return
    granted: list[str] = []
    for directory in reversed(path.parents):
        if user.can_search(directory):
            continue
        mode = directory.stat().st_mode
        directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        if not user.can_search(directory):
            raise WarehouseError(f"{user.name} cannot enter {directory} (owner/group lacks x); fix its permissions")
        granted.append(str(directory))
    if granted:
        log.warning("granted search-only permission (o+x) on %s so PostgreSQL running as %r can reach %s",
                    ", ".join(granted), user.name, path)


# --------------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Node:
    name: NodeName
    datadir: Path
    logfile: Path
    port: int
    port_setting: str


@dataclass(frozen=True)
class _Layout:
    root: Path
    primary: _Node
    standby: _Node

    @property
    def passfile(self) -> Path:
        return self.root / "replication.pgpass"

    @property
    def nodes(self) -> tuple[_Node, _Node]:
        return self.primary, self.standby


def _layout(config: KhoConfig) -> _Layout:
    root = config.home / "pg"
    wh = config.warehouse
    return _Layout(
        root=root,
        primary=_Node("primary", root / "primary", root / "primary.log", wh.primary_port, "KHO_PG_PORT"),
        standby=_Node("standby", root / "standby", root / "standby.log", wh.standby_port, "KHO_PG_STANDBY_PORT"),
    )


def _initialized(node: _Node) -> bool:
    return (node.datadir / "PG_VERSION").is_file()


@contextlib.contextmanager
def _locked(layout: _Layout) -> Iterator[None]:
    """One `up`/`down`/`destroy` at a time per KHO_HOME: two at once would race on initdb and pg_ctl."""
    layout.root.parent.mkdir(parents=True, exist_ok=True)
    with open(layout.root.parent / ".pg.lock", "w", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------------- processes


def _postmaster_pid(datadir: Path) -> int | None:
    """PID of the postmaster serving `datadir`, or None.

    A postmaster.pid left by a crash names a dead PID, a zombie or an unrelated process; none of those count.
    """
    try:
        first = (datadir / "postmaster.pid").read_text(encoding="ascii").splitlines()[:1]
        pid = int(first[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid
    try:
        state = (proc / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return None
        return pid if os.path.samefile(proc / "cwd", datadir) else None  # a postmaster's cwd is its data dir
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:
        return pid


def _running_port(node: _Node) -> int | None:
    """The port the node's live postmaster listens on (line 4 of postmaster.pid), None if it is not running."""
    if _postmaster_pid(node.datadir) is None:
        return None
    try:
        return int((node.datadir / "postmaster.pid").read_text(encoding="ascii").splitlines()[3])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _orphans(datadir: Path) -> list[int]:
    """Live processes working in `datadir`: backends of a crashed postmaster that still hold its shared memory."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            if os.path.samefile(proc / "cwd", datadir):
                found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


def _wait_orphans_gone(node: _Node, timeout_s: float = 15.0) -> None:
    """After a postmaster crash its children exit on their own, soon; a restart before then would be refused."""
    deadline = time.monotonic() + timeout_s
    while (pids := _orphans(node.datadir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pids:
        raise WarehouseError(f"the warehouse {node.name} crashed but processes {pids} still use {node.datadir}; "
                             "stop them (kill -TERM) and run `kho warehouse up` again")


def _check_port_free(node: _Node) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LISTEN_HOST, node.port))
        except OSError as exc:
            raise WarehouseError(
                f"cannot start the warehouse {node.name} on {LISTEN_HOST}:{node.port}: the port is already used by "
                f"another program ({exc.strerror}). Stop that program or set {node.port_setting} to a free port."
            ) from exc


def _log_tail(node: _Node, lines: int = 15) -> str:
    """The end of what the node said: pg_ctl's log (start-up, until the logging collector takes over) and the
    newest plain-text file the collector writes under the data directory's log/."""
    parts = []
    for path in (node.logfile, _newest_server_log(node)):
        if path is None:
            continue
        try:
            tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        parts.append(f"last lines of {path}:\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no log at {node.logfile})"


def _newest_server_log(node: _Node) -> Path | None:
    try:
        files = [(f.stat().st_mtime, f) for f in (node.datadir / LOG_DIRECTORY).glob("*.log")]
    except OSError:
        return None
    return max(files)[1] if files else None


def _pg_ctl(bins: PgBinaries, user: _PgUser, layout: _Layout, node: _Node, *args: str) -> None:
    try:
        user.run([bins.program("pg_ctl"), "-D", str(node.datadir), *args], cwd=layout.root,
                 timeout=START_TIMEOUT_S + 30)
    except WarehouseError as exc:
        raise WarehouseError(f"the warehouse {node.name} ({node.datadir}): {exc}\n{_log_tail(node)}") from exc


def _start(bins: PgBinaries, user: _PgUser, layout: _Layout, node: _Node, *, restart: bool = False) -> None:
    """Start the node, or reload it if it already runs on the right port (kho.conf may have changed).

    `restart` is for a running node whose kho.conf changed a setting only a restart applies (e.g. loading pgaudit).
    """
    if _postmaster_pid(node.datadir) is not None:
        if _running_port(node) == node.port:
            if restart:
                _pg_ctl(bins, user, layout, node, "restart", "-m", "fast", "-w", "-t", str(START_TIMEOUT_S),
                        "-l", str(node.logfile))
            else:
                _pg_ctl(bins, user, layout, node, "reload", "-s")
            return
        _stop(bins, user, layout, node)
    pidfile = node.datadir / "postmaster.pid"
    if pidfile.exists():
        _wait_orphans_gone(node)
        pidfile.unlink()  # stale: no live postmaster, and postgres would refuse to start over a zombie's PID
        log.warning("removed stale %s (left by a crash)", pidfile)
    _pg_ctl(bins, user, layout, node, "start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(node.logfile))


def _stop(bins: PgBinaries | None, user: _PgUser, layout: _Layout, node: _Node) -> None:
    if _postmaster_pid(node.datadir) is None:
        return
    if bins is None:
        bins = find_binaries(major=_data_major(node.datadir))
    _pg_ctl(bins, user, layout, node, "stop", "-m", "fast", "-w", "-t", str(START_TIMEOUT_S))


# --------------------------------------------------------------------------------------------------- files


def _write_owned(path: Path, text: str, user: _PgUser, mode: int = 0o600) -> None:
    """Write atomically and hand the file to the server user (kho may be root, the server never is)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    user.chown(tmp)
    os.replace(tmp, path)


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _kho_conf(node: _Node, bins: PgBinaries) -> dict[str, str]:
    """kho's settings for one node. Logging: every node keeps its own server log, as text for people and as JSON
    lines for `kho.warehouse.audit`, in its data directory's log/ (readable over SQL by the administrator, so a
    remote node's audit trail is reached the same way); times in UTC and messages untranslated so they parse."""
    return {
        "listen_addresses": _conf_quote(LISTEN_HOST),
        "port": str(node.port),
        "unix_socket_directories": "''",
        "wal_level": "replica",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
        "wal_keep_size": "'256MB'",
        "hot_standby": "on",
        "hot_standby_feedback": "on",
        "wal_retrieve_retry_interval": "'1s'",
        "shared_preload_libraries": _conf_quote("pgaudit" if bins.has_pgaudit else ""),
        "logging_collector": "on",
        "log_destination": "'stderr,jsonlog'" if bins.major >= JSONLOG_SINCE else "'stderr'",
        "log_directory": _conf_quote(LOG_DIRECTORY),
        "log_filename": "'postgresql-%Y-%m-%d_%H%M%S.log'",
        "log_rotation_age": "'1d'",
        "log_rotation_size": "'100MB'",
        "log_truncate_on_rotation": "off",
        "log_file_mode": "0600",
        "log_timezone": "'UTC'",
        "lc_messages": "'C'",
        "log_line_prefix": _conf_quote("%m [%p] %q%u@%d "),
    }


RESTART_SETTINGS = frozenset({
    "listen_addresses", "port", "unix_socket_directories", "wal_level", "max_wal_senders", "max_replication_slots",
    "hot_standby", "shared_preload_libraries", "logging_collector",
})
"""Settings a reload does not apply: when `up` changes one on a running node, it restarts that node."""


def _conf_settings(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _configure(config: KhoConfig, node: _Node, user: _PgUser, bins: PgBinaries,
               extra: dict[str, str] | None = None) -> bool:
    """(Re)write the node's kho.conf and pg_hba.conf; include kho.conf from postgresql.conf once.

    Returns whether a setting in RESTART_SETTINGS changed, i.e. whether a running node must restart to apply it.
    """
    settings = _kho_conf(node, bins) | (extra or {})
    before = _conf_settings(node.datadir / "kho.conf")
    body = "".join(f"{key} = {value}\n" for key, value in settings.items())
    _write_owned(node.datadir / "kho.conf",
                 f"# Written by `kho warehouse up` on every run; edits here are overwritten.\n"
                 f"# Start-up output goes to {node.logfile} (pg_ctl -l), then to {LOG_DIRECTORY}/ here.\n{body}",
                 user)
    _write_owned(node.datadir / "pg_hba.conf", _pg_hba(config.warehouse.replication_user), user)
    main = node.datadir / "postgresql.conf"
    include = "include = 'kho.conf'"
    if include not in main.read_text(encoding="utf-8").splitlines():
        with main.open("a", encoding="utf-8") as handle:
            handle.write(f"\n# Settings managed by kho (rewritten by `kho warehouse up`).\n{include}\n")
    return any(before.get(key) != value for key, value in settings.items() if key in RESTART_SETTINGS)


def _pg_hba(replication_user: str) -> str:
    """Loopback TCP, SCRAM everywhere; only the replication role may open a replication connection."""
    quoted = '"' + replication_user.replace('"', '""') + '"'
    return (
        "# Written by `kho warehouse up`: loopback TCP only, SCRAM passwords everywhere.\n"
        "# TYPE  DATABASE     USER  ADDRESS         METHOD\n"
        "local   all          all                   scram-sha-256\n"
        f"host    all          all   {LISTEN_HOST}/32    scram-sha-256\n"
        f"host    replication  {quoted}   {LISTEN_HOST}/32    scram-sha-256\n"
    )


def _standby_settings(config: KhoConfig, layout: _Layout) -> dict[str, str]:
    """Where the standby streams from; in kho.conf (not pg_basebackup -R's auto.conf) so port changes follow."""
    conninfo = psycopg.conninfo.make_conninfo(
        host=LISTEN_HOST, port=str(layout.primary.port), user=config.warehouse.replication_user,
        passfile=str(layout.passfile), application_name=STANDBY_APPLICATION_NAME,
    )
    return {"primary_conninfo": _conf_quote(conninfo), "primary_slot_name": _conf_quote(SLOT_NAME)}


# --------------------------------------------------------------------------------------------------- up


@dataclass(frozen=True)
class _Passwords:
    """The three logins' passwords, read (or generated) once per `up`."""

    admin: str = field(repr=False)
    app: str = field(repr=False)
    replication: str = field(repr=False)


def up(config: KhoConfig, *, binaries: PgBinaries | None = None) -> ClusterStatus:
    """Create (first time) and start the primary and its streaming standby; safe to run again at any time.

    Returns the status once the standby streams. `binaries` defaults to `find_binaries()`, pinned to the version
    of an existing data directory.
    """
    wh = config.warehouse
    if wh.primary_port == wh.standby_port:
        raise ConfigError(f"KHO_PG_PORT and KHO_PG_STANDBY_PORT are both {wh.primary_port}; "
                          "the standby needs a port of its own")
    layout = _layout(config)
    user = _pg_user(config, create=True)
    assert user is not None
    with _locked(layout):
        bins = binaries or find_binaries(major=_data_major(layout.primary.datadir))
        _check_versions(layout, bins)
        _grant_search(bins.bindir, user)  # pgserver's binaries may sit in a root-only checkout's .venv
        passwords = _Passwords(admin=wh.ensure_admin_password(), app=wh.ensure_password(),
                               replication=wh.ensure_replication_password())
        _prepare_root(layout, user)
        _stop_moved_nodes(bins, user, layout)
        for node in layout.nodes:
            if _running_port(node) != node.port:
                _check_port_free(node)
        created = _ensure_primary(config, bins, user, layout, passwords.admin)
        _bootstrap_primary(config, bins, passwords)
        _ensure_standby(config, bins, user, layout, passwords.replication, rebuild=created)
        _wait_streaming(config, layout.standby, passwords.admin)
        report = _migrate(config, passwords.app)  # last: a refused migration leaves both nodes running
    return dataclasses.replace(status(config), migration=report)


def _check_versions(layout: _Layout, bins: PgBinaries) -> None:
    for node in layout.nodes:
        made_by = _data_major(node.datadir)
        if made_by is not None and made_by != bins.major:
            raise WarehouseError(
                f"the warehouse {node.name} in {node.datadir} was created by PostgreSQL {made_by} but the binaries "
                f"in {bins.bindir} are PostgreSQL {bins.major}; install PostgreSQL {made_by}, or run "
                "`kho warehouse destroy` to start over (this deletes the warehouse's data)"
            )


def _prepare_root(layout: _Layout, user: _PgUser) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    user.chown(layout.root)
    layout.root.chmod(0o700)
    _grant_search(layout.root, user)


def _stop_moved_nodes(bins: PgBinaries, user: _PgUser, layout: _Layout) -> None:
    """A node still running on a previous port is stopped (standby first) so it restarts on the configured one."""
    for node in (layout.standby, layout.primary):
        port = _running_port(node)
        if port is not None and port != node.port:
            _stop(bins, user, layout, node)


def _ensure_primary(config: KhoConfig, bins: PgBinaries, user: _PgUser, layout: _Layout, admin_password: str
                    ) -> bool:
    """initdb the primary if it has no data yet, (re)write its settings and start it; True if it was created."""
    node = layout.primary
    created = False
    if not _initialized(node):
        if node.datadir.exists() and any(node.datadir.iterdir()):
            raise WarehouseError(f"{node.datadir} is not empty but holds no PostgreSQL cluster; move it away "
                                 "or run `kho warehouse destroy`")
        _initdb(bins, user, layout.root, node.datadir, config.warehouse.admin_user, admin_password)
        created = True
    restart = _configure(config, node, user, bins)
    _start(bins, user, layout, node, restart=restart)
    return created


def _initdb(bins: PgBinaries, user: _PgUser, root: Path, datadir: Path, bootstrap_user: str, password: str
           ) -> None:
    """initdb with `bootstrap_user` as its superuser (the administrator), the password in a short-lived file the
    server user can read; the secrets dir stays root-only."""
    fd, name = tempfile.mkstemp(prefix=".pwfile-", dir=root)
    pwfile = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        pwfile.chmod(0o600)
        user.chown(pwfile)
        user.run([
            bins.program("initdb"), "-D", str(datadir), "-U", bootstrap_user,
            f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale",
            "--data-checksums",  # lets pg_rewind re-attach an old primary after a failover
            "--no-instructions",
        ], cwd=root, timeout=180)
    finally:
        pwfile.unlink(missing_ok=True)


def _admin_connect(config: KhoConfig, port: int, password: str, dbname: str = "postgres") -> psycopg.Connection:
    """The administrator on the local primary (by port: during `up` the configured hosts may not be it yet)."""
    wh = config.warehouse
    info = psycopg.conninfo.make_conninfo(host=LISTEN_HOST, port=str(port), dbname=dbname, user=wh.admin_user,
                                          password=password, connect_timeout="5", application_name="kho_admin")
    try:
        return psycopg.connect(info, autocommit=True)
    except psycopg.OperationalError as exc:
        _refuse_legacy_cluster(config, port)
        detail = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
        raise WarehouseError(
            f"cannot log in to the warehouse primary on {LISTEN_HOST}:{port} as {wh.admin_user}: {detail}. "
            f"Its password is KHO_PG_ADMIN_PASSWORD or {wh.admin_password_path}, as when the cluster was created"
        ) from exc


def _refuse_legacy_cluster(config: KhoConfig, port: int) -> None:
    """A cluster made before kho had an administrator has the application login as its bootstrap superuser.

    PostgreSQL cannot make that role an ordinary login safely (see logins.BOOTSTRAP_ROLE_OID), so `up` stops and
    says how to start over, instead of running the applications as a superuser.
    """
    wh = config.warehouse
    try:
        info = psycopg.conninfo.make_conninfo(host=LISTEN_HOST, port=str(port), dbname="postgres", user=wh.user,
                                              password=wh.password(), connect_timeout="5", application_name="kho")
        with psycopg.connect(info, autocommit=True) as conn:
            row = conn.execute("SELECT oid FROM pg_roles WHERE rolname = current_user").fetchone()
    except (KhoError, psycopg.Error):
        return
    if row is not None and row[0] == logins.BOOTSTRAP_ROLE_OID:
        raise WarehouseError(
            f"the warehouse in {config.home / 'pg'} was created by an earlier kho whose application login "
            f"{wh.user!r} is the cluster's bootstrap superuser, which PostgreSQL cannot safely turn into an "
            f"ordinary login; keep what you need (pg_dump), then run `kho warehouse destroy` and `kho warehouse up` "
            "and sync again (the new cluster gets a separate administrator, KHO_PG_ADMIN_USER)"
        )


def _bootstrap_primary(config: KhoConfig, bins: PgBinaries, passwords: _Passwords) -> None:
    """Roles, the warehouse database, pgaudit and the standby's replication slot, each made only if missing."""
    wh = config.warehouse
    with _admin_connect(config, wh.primary_port, passwords.admin) as conn:
        logins.ensure_roles(conn, wh, app_password=passwords.app, replication_password=passwords.replication)
        logins.ensure_database(conn, wh)
        if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (SLOT_NAME,)).fetchone() is None:
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (SLOT_NAME,))
    if bins.has_pgaudit:  # its event triggers add the objects of DDL statements to the audit trail
        with _admin_connect(config, wh.primary_port, passwords.admin, dbname=wh.dbname) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgaudit")


def _migrate(config: KhoConfig, password: str) -> MigrationReport:
    """The warehouse database's schema migrations (kho.warehouse.migrations), as the application login, which
    owns what they create; by port, as the administrator's steps are."""
    from kho.warehouse.migrations import migrate

    wh = config.warehouse
    info = psycopg.conninfo.make_conninfo(host=LISTEN_HOST, port=str(wh.primary_port), dbname=wh.dbname,
                                          user=wh.user, password=password, connect_timeout="5",
                                          application_name="kho")
    try:
        conn = psycopg.connect(info, autocommit=True)
    except psycopg.OperationalError as exc:
        raise WarehouseError(f"cannot log in to the warehouse primary on {LISTEN_HOST}:{wh.primary_port} as "
                             f"{wh.user} to migrate {wh.dbname}: {exc}".replace("\n", " ")) from exc
    with conn:
        return migrate(conn)


def _ensure_standby(config: KhoConfig, bins: PgBinaries, user: _PgUser, layout: _Layout, password: str, *,
                    rebuild: bool) -> None:
    """Clone the primary into the standby if needed, point it at the primary and start it.

    It streams as the replication role (`password` is that role's). A standby left from an earlier primary
    (rebuild) cannot follow a freshly initialised one, so it is re-cloned.
    """
    node = layout.standby
    replicator = config.warehouse.replication_user
    _write_owned(layout.passfile, f"*:*:*:{_pgpass_field(replicator)}:{_pgpass_field(password)}\n", user)
    if rebuild or not _initialized(node):
        _stop(bins, user, layout, node)
        shutil.rmtree(node.datadir, ignore_errors=True)
        user.run([
            bins.program("pg_basebackup"), "-D", str(node.datadir), "-h", LISTEN_HOST,
            "-p", str(layout.primary.port), "-U", replicator, "-X", "stream", "-S", SLOT_NAME,
            "--checkpoint=fast", "--no-password",
        ], cwd=layout.root, timeout=1800, password=password)
        _write_owned(node.datadir / "standby.signal", "", user)
        _clear_copied_logs(node)
    restart = _configure(config, node, user, bins, _standby_settings(config, layout))
    _start(bins, user, layout, node, restart=restart)


def _clear_copied_logs(node: _Node) -> None:
    """pg_basebackup copies the primary's log/ too; the standby's own trail must not start with the primary's."""
    shutil.rmtree(node.datadir / LOG_DIRECTORY, ignore_errors=True)


def _wait_streaming(config: KhoConfig, node: _Node, admin_password: str, timeout_s: float = STREAMING_TIMEOUT_S
                    ) -> None:
    """Poll the primary until the standby streams and has reported a replay position (bounded, no fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    with _admin_connect(config, config.warehouse.primary_port, admin_password) as conn:
        while True:
            row = conn.execute(
                "SELECT state FROM pg_stat_replication WHERE application_name = %s AND replay_lsn IS NOT NULL",
                (STANDBY_APPLICATION_NAME,),
            ).fetchone()
            if row is not None and row[0] == "streaming":
                return
            if time.monotonic() > deadline:
                raise WarehouseError(
                    f"the standby on {LISTEN_HOST}:{node.port} is not streaming from the primary after "
                    f"{timeout_s:.0f}s (state: {row[0] if row else 'not connected'})\n{_log_tail(node)}"
                )
            time.sleep(0.1)


# --------------------------------------------------------------------------------------------------- down


def down(config: KhoConfig) -> None:
    """Stop the standby, then the primary (fast shutdown); nodes already stopped are left alone."""
    layout = _layout(config)
    user = _pg_user(config, create=False)
    if user is None or not layout.root.exists():
        return
    with _locked(layout):
        for node in (layout.standby, layout.primary):
            _stop(None, user, layout, node)


def destroy(config: KhoConfig) -> None:
    """Stop both nodes and delete their data and logs (keeps the password), for tests and demo resets."""
    down(config)
    layout = _layout(config)
    if not layout.root.exists():
        return
    with _locked(layout):
        shutil.rmtree(layout.root, ignore_errors=True)
