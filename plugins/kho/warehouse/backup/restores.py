"""Restoring: a backup (to a time, a restore point, or the latest WAL) into a new directory that starts as a
standalone cluster beside the live ones, and verify-restore, which proves a backup restores to what it recorded.

A restored cluster must never write into the live repository or follow the live primary: archiving is off, it has
no primary_conninfo, no synchronous standby to wait for, and it promotes itself when recovery reaches its target.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg

from kho.config import KhoConfig
from kho.errors import WarehouseError
from kho.warehouse import patroni
from kho.warehouse.backup import pgbackrest
from kho.warehouse.backup.figures import Comparison, Figures, compare, compute
from kho.warehouse.backup.take import archive_now, figures_path
from kho.warehouse.binaries import data_major, find_binaries
from kho.warehouse.layout import LOG_DIRECTORY, layout
from kho.warehouse.osuser import ServerUser, grant_search, owned_dir, write_owned

RestoreTo = Literal["latest"] | dt.datetime
VERIFY_HBA = "kho_verify_hba.conf"
PATH_SETTINGS = ("hba_file", "ident_file")
"""Settings Patroni writes as absolute paths into the node's own directory: a restore points them at its copies."""


@dataclass(frozen=True)
class RestoreResult:
    into: Path
    target: str
    label: str
    duration_s: float
    restored_bytes: int
    port: int
    started: bool
    recovery_s: float | None = None
    """From start to the end of recovery (promotion), when started."""
    archived_through: str | None = None
    """The live primary's WAL segment switched and archived just before restoring (None: no primary answered)."""

    @property
    def mb_per_s(self) -> float:
        return self.restored_bytes / 1e6 / self.duration_s if self.duration_s > 0 else 0.0

    def render(self) -> str:
        lines = [
            f"restored backup {self.label} into {self.into} (target: {self.target})",
            f"  the live primary's WAL archived through {self.archived_through} first" if self.archived_through
            else "  no live primary answered: restored from the WAL archived so far",
            f"  {self.restored_bytes / 1e6:.1f} MB in {self.duration_s:.1f} s ({self.mb_per_s:.1f} MB/s)",
        ]
        if self.started:
            lines.append(f"  running on port {self.port}, recovered and promoted in {self.recovery_s or 0:.1f} s; "
                         f"stop it with: pg_ctl stop -D {self.into}")
        else:
            lines.append(f"  not started; settings for port {self.port} written (archiving off, no primary to "
                         f"follow): start it with: pg_ctl start -D {self.into}")
        return "\n".join(lines)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def restore(config: KhoConfig, to: RestoreTo, into: Path, *, port: int | None = None,
            start: bool = False) -> RestoreResult:
    """Restore into a new or empty directory, to `to` ("latest": every archived WAL; a datetime: the last commit
    at or before it); the result starts standalone on `port` (default a free one), now if `start`."""
    patroni.require_backups(config)
    user = pgbackrest.require_user(config)
    if to == "latest":
        options, target = ["--type=default"], "latest archived WAL"
    elif isinstance(to, dt.datetime):
        moment = to if to.tzinfo else to.astimezone()
        stamp = moment.isoformat(sep=" ")
        options, target = ["--type=time", f"--target={stamp}", "--target-action=promote"], f"time {stamp}"
    else:
        raise WarehouseError(f"restore --to {to!r}: give 'latest' or a time (e.g. 2025-07-01T08:00:00+07:00)")
    into = into.resolve()
    _prepare(into, user)
    segment = archive_now(config)
    result = _restore(config, user, into, options, target, port=port or free_port(), start=start)
    return RestoreResult(**{**result.__dict__, "archived_through": segment})


def _restore(config: KhoConfig, user: ServerUser, into: Path, options: Sequence[str], target: str, *, port: int,
             start: bool, private: bool = False) -> RestoreResult:
    """Into a directory `_prepare` made."""
    u = pgbackrest.write_restore_config(config, user)
    clock = time.monotonic()
    out = pgbackrest.run(config, user, u, "restore", f"--pg1-path={into}", "--archive-mode=off", *options,
                         console="info")
    duration = time.monotonic() - clock
    match = re.search(r"restore backup set (\S+?),", out.stdout)
    _standalone(into, user, port, private=private)
    result = RestoreResult(into=into, target=target, label=match.group(1) if match else "?", duration_s=duration,
                           restored_bytes=_size(into), port=port, started=False)
    if not start:
        return result
    recovery = start_restored(into, user)
    return RestoreResult(**{**result.__dict__, "started": True, "recovery_s": recovery})


def _prepare(into: Path, user: ServerUser) -> None:
    if into.exists() and not into.is_dir():
        raise WarehouseError(f"cannot restore into {into}: it is not a directory")
    if into.is_dir() and any(into.iterdir()):
        raise WarehouseError(f"cannot restore into {into}: it is not empty; give a new or empty directory")
    into.parent.mkdir(parents=True, exist_ok=True)
    owned_dir(into, user)


def socket_dir(into: Path) -> Path:
    """Short (a Unix socket's path must fit 107 bytes) and derived from the directory, so restores never clash."""
    return Path(tempfile.gettempdir()) / f"kho-restore-{hashlib.sha256(str(into).encode()).hexdigest()[:12]}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _standalone(into: Path, user: ServerUser, port: int, *, private: bool) -> None:
    """Settings appended to postgresql.auto.conf (its last word wins over postgresql.conf and pgBackRest's lines)."""
    sockets = owned_dir(socket_dir(into), user)
    settings = {
        "port": str(port), "unix_socket_directories": str(sockets), "cluster_name": "kho-restore",
        "archive_mode": "off", "archive_command": "", "primary_conninfo": "", "primary_slot_name": "",
        # No hot standby during recovery: pg_ctl -w then returns once recovery has promoted, and no setting must
        # match the primary's (max_connections, ... lower than the primary's would pause a hot standby's recovery).
        "synchronous_standby_names": "", "hot_standby": "off",
    }
    settings.update(_local_paths(into))
    if private:  # verify-restore: reachable only through its own socket directory, by kho (root or the server user)
        write_owned(into / VERIFY_HBA, "local all all trust\n", user)
        settings.update({"listen_addresses": "", "hba_file": str(into / VERIFY_HBA)})
    lines = [f"{name} = {_quote(value)}" for name, value in settings.items()]
    with (into / "postgresql.auto.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# kho restore: a standalone cluster, never archiving into the live repository\n")
        conf.write("\n".join(lines) + "\n")
    with contextlib.suppress(FileNotFoundError):
        (into / "standby.signal").unlink()


def _local_paths(into: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    conf = into / "postgresql.conf"
    if not conf.is_file():
        return found
    for line in conf.read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.match(r"\s*(\w+)\s*=?\s*'([^']*)'", line)
        if match and match.group(1) in PATH_SETTINGS and match.group(2).startswith("/"):
            own = into / Path(match.group(2)).name
            if own.is_file():
                found[match.group(1)] = str(own)
    return found


def _size(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(directory) / name).lstat().st_size
    return total


def _pg_ctl(into: Path) -> str:
    major = data_major(into)
    return find_binaries(major=major).program("pg_ctl")


def _controldata(into: Path) -> str:
    major = data_major(into)
    return find_binaries(major=major).program("pg_controldata")


def start_restored(into: Path, user: ServerUser) -> float:
    """Start a restored cluster and wait until recovery has reached its target and promoted; returns the seconds."""
    clock, since = time.monotonic(), time.time() - 1
    startup_log = into / LOG_DIRECTORY / "kho-restore-startup.log"
    owned_dir(startup_log.parent, user)
    try:
        user.run([_pg_ctl(into), "-D", str(into), "-l", str(startup_log), "-w", "-t",
                  str(int(pgbackrest.LONG_TIMEOUT_S)), "start"], cwd=into, timeout=pgbackrest.LONG_TIMEOUT_S)
    except WarehouseError as exc:
        raise WarehouseError(f"the restored cluster in {into} did not start: {_fatal(into, since) or exc}") from exc
    while True:
        state = user.run([_controldata(into), "-D", str(into)], cwd=into, timeout=60)
        if re.search(r"Database cluster state:\s+in production", state):
            return time.monotonic() - clock
        if not _running(into):
            raise WarehouseError(f"the restored cluster in {into} stopped during recovery: "
                                 f"{_fatal(into, since) or 'see its log in ' + str(into / LOG_DIRECTORY)}")
        time.sleep(0.2)


def _running(into: Path) -> bool:
    try:
        pid = int((into / "postmaster.pid").read_text(encoding="ascii").splitlines()[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _fatal(into: Path, since: float) -> str:
    """The last FATAL or PANIC line the restored cluster logged since `since` (e.g. recovery ended before its
    target); its directory also holds the backed-up node's older logs, which say nothing about this start."""
    logs = sorted((p for p in (into / LOG_DIRECTORY).glob("*") if p.suffix != ".json" and p.stat().st_mtime >= since),
                  key=lambda p: p.stat().st_mtime)
    for path in reversed(logs):
        for line in reversed(path.read_text(encoding="utf-8", errors="replace").splitlines()):
            if "FATAL:" in line or "PANIC:" in line:
                return line.split("FATAL:", 1)[-1].split("PANIC:", 1)[-1].strip()
    return ""


def stop_restored(into: Path, user: ServerUser) -> None:
    """Stop a cluster `restore` started (fast: disconnects sessions); nothing if it is not running."""
    if _running(into):
        user.run([_pg_ctl(into), "-D", str(into), "-m", "fast", "-w", "stop"], cwd=into, timeout=300)


# --------------------------------------------------------------------------------------------- verify-restore


@dataclass(frozen=True)
class VerifyReport:
    label: str
    restore_point: str
    repository: str
    """What `pgbackrest verify` checked (every backup and archived WAL file against its checksum)."""
    comparison: Comparison
    restore: RestoreResult

    @property
    def ok(self) -> bool:
        return self.comparison.ok

    def render(self) -> str:
        r = self.restore
        lines = [f"verify-restore of backup {self.label} at restore point {self.restore_point}",
                 f"  repository: {self.repository}",
                 f"  restored {r.restored_bytes / 1e6:.1f} MB in {r.duration_s:.1f} s ({r.mb_per_s:.1f} MB/s), "
                 f"recovered in {r.recovery_s or 0:.1f} s"]
        lines += [f"  DIFFERS {name}: at backup {left}, restored {right}" for name, left, right
                  in self.comparison.differed]
        lines += [f"  ok      {name}" for name in self.comparison.matched]
        total = len(self.comparison.matched) + len(self.comparison.differed)
        lines.append(f"{'PASSED' if self.ok else 'FAILED'}: {len(self.comparison.matched)} of {total} figures match")
        return "\n".join(lines)


class VerifyFailed(WarehouseError):
    """The restored figures differ from those recorded at the backup; `report` says which."""

    def __init__(self, report: VerifyReport) -> None:
        shown = "; ".join(f"{n}: {a} at backup, {b} restored" for n, a, b in report.comparison.differed[:3])
        more = len(report.comparison.differed) - 3
        super().__init__(f"verify-restore of backup {report.label}: {len(report.comparison.differed)} figures "
                         f"differ ({shown}{f'; and {more} more' if more > 0 else ''})")
        self.report = report


def verify_repository(config: KhoConfig, user: ServerUser) -> str:
    """`pgbackrest verify`: every file of every backup and every archived WAL segment against its checksum.

    pgBackRest 2.45 exits 0 even when it finds damage, so its report is read: any invalid or missing file fails,
    named by its path in the repository."""
    u = pgbackrest.write_restore_config(config, user)
    out = pgbackrest.run(config, user, u, "verify", "--output=text", "--verbose", console="info").stdout
    bad = [_in_repo(config, m.group(1), m.group(2)) for m in
           re.finditer(r"INFO: ((?:invalid|missing|error)[^']*?|[^']*?(?:invalid|missing|error))\s*'([^']+)'", out)]
    if "status: error" in out or bad:
        invalid = list(dict.fromkeys(re.findall(r"backup: (\S+), status: invalid", out)))
        where = f" (backup {', '.join(invalid)} invalid)" if invalid else ""
        listed = "; ".join(dict.fromkeys(bad)) if bad else _summary(out)
        raise WarehouseError(f"pgbackrest verify found damage in the repository{where}: {listed}")
    report = out[out.rfind("\nstanza:"):]  # the text report, after the same report's copy in the INFO log line
    checked = re.findall(r"total files checked: (\d+)", report)
    wal = re.findall(r"total WAL checked: (\d+)", report)
    return (f"{sum(map(int, checked))} backup files and {sum(map(int, wal))} WAL segments verified against their "
            "checksums")


def _in_repo(config: KhoConfig, problem: str, path: str) -> str:
    kind = "backup" if re.match(r"\d{8}-\d{6}F", path) else "archive"
    return f"{config.ha.backup_repo / kind / config.ha.scope / path} ({problem.strip()})"


def _summary(out: str) -> str:
    return " / ".join(line.strip() for line in out.splitlines()
                      if "status:" in line or "invalid:" in line) or "see `pgbackrest verify --verbose`"


def verify_restore(config: KhoConfig, label: str | None = None) -> VerifyReport:
    """Verify the repository, restore a backup (default: the newest with recorded figures) to its restore point in
    a scratch cluster, compare its figures with those recorded, and remove the scratch cluster.

    Raises WarehouseError naming the file when the repository is damaged, VerifyFailed when a figure differs."""
    patroni.require_backups(config)
    user = pgbackrest.require_user(config)
    repository = verify_repository(config, user)
    label = label or _newest_recorded(config, user)
    recorded_file = figures_path(config, label)
    if not recorded_file.is_file():
        raise WarehouseError(f"backup {label} has no recorded figures ({recorded_file}): only backups taken by "
                             "`kho warehouse backup` can be verified")
    recorded = json.loads(recorded_file.read_text(encoding="utf-8"))
    point = str(recorded["restore_point"])
    scratch = layout(config).root / "verify-restore"
    with _alone(scratch):
        return _verify_into(config, user, label, point, recorded, repository, scratch)


def _verify_into(config: KhoConfig, user: ServerUser, label: str, point: str, recorded: dict[str, Any],
                 repository: str, scratch: Path) -> VerifyReport:
    _discard(scratch, user)
    try:
        _prepare(scratch, user)
        result = _restore(config, user, scratch, ["--type=name", f"--target={point}", "--target-action=promote",
                                                  f"--set={label}"],
                          f"restore point {point}", port=free_port(), start=True, private=True)
        with _connect_private(config, scratch, result.port) as conn:
            restored = compute(conn)
    finally:
        _discard(scratch, user)
    report = VerifyReport(label=label, restore_point=point, repository=repository,
                          comparison=compare(Figures.from_json(recorded["figures"]), restored), restore=result)
    if not report.ok:
        raise VerifyFailed(report)
    return report


def _newest_recorded(config: KhoConfig, user: ServerUser) -> str:
    labels = [str(b["label"]) for b in pgbackrest.info(config, user).get("backup", [])]
    for label in reversed(labels):
        if figures_path(config, label).is_file():
            return label
    raise WarehouseError(f"no backup to verify in {config.ha.backup_repo}: run `kho warehouse backup` first")


@contextlib.contextmanager
def _alone(scratch: Path) -> Iterator[None]:
    """One verify-restore at a time per warehouse: a second would discard the first's scratch cluster."""
    scratch.parent.mkdir(parents=True, exist_ok=True)
    with (scratch.parent / f".{scratch.name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WarehouseError("another verify-restore of this warehouse is running; wait for it to finish") \
                from None
        yield


@contextlib.contextmanager
def _connect_private(config: KhoConfig, into: Path, port: int) -> Iterator[psycopg.Connection]:
    grant_search(socket_dir(into), pgbackrest.require_user(config))
    try:
        conn = psycopg.connect(host=str(socket_dir(into)), port=port, dbname=config.warehouse.dbname,
                               user=config.warehouse.admin_user, application_name="kho_verify_restore")
    except psycopg.OperationalError as exc:
        raise WarehouseError(f"cannot reach the restored cluster in {into}: {str(exc).strip()}") from exc
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    with conn:
        yield conn


def _discard(scratch: Path, user: ServerUser) -> None:
    if scratch.exists():
        with contextlib.suppress(WarehouseError):
            stop_restored(scratch, user)
        shutil.rmtree(scratch)
    shutil.rmtree(socket_dir(scratch), ignore_errors=True)
