"""Taking a backup: pgBackRest from the current primary, then the figures verify-restore will compare, recorded at
a named restore point so a restore can stop exactly where they were computed."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from kho.config import KhoConfig
from kho.errors import WarehouseError
from kho.warehouse import patroni
from kho.warehouse.backup import pgbackrest
from kho.warehouse.backup.figures import Figures, compute, lock_writers, locks
from kho.warehouse.connection import connect_admin
from kho.warehouse.layout import Member, layout
from kho.warehouse.osuser import ServerUser, owned_dir, write_owned

BackupKind = Literal["full", "diff", "incr", "auto"]
FULL_EVERY = dt.timedelta(days=7)
"""`auto` takes a full backup when the last one is older than this, else an incremental one."""
ARCHIVE_WAIT_S = 300.0
DEADLOCK_RETRIES = 3
LOCK_TIMEOUT = "15min"
"""How long the figures' transaction waits for a load or publication under way to commit."""


@dataclass(frozen=True)
class BackupResult:
    label: str
    kind: str
    node: str
    started: dt.datetime
    duration_s: float
    database_bytes: int
    copied_bytes: int
    """What this backup read and stored (the whole cluster for a full backup, the changed files otherwise)."""
    repo_bytes: int
    """What it added to the repository, compressed."""
    restore_point: str
    figures_path: Path

    @property
    def mb_per_s(self) -> float:
        return self.copied_bytes / 1e6 / self.duration_s if self.duration_s > 0 else 0.0

    def render(self) -> str:
        return "\n".join([
            f"backup {self.label} ({self.kind}) of {self.node}, started {self.started.isoformat(timespec='seconds')}",
            f"  database {_mb(self.database_bytes)}, copied {_mb(self.copied_bytes)} in {self.duration_s:.1f} s "
            f"({self.mb_per_s:.1f} MB/s), stored {_mb(self.repo_bytes)} in the repository",
            f"  restore point {self.restore_point}; figures for verify-restore in {self.figures_path}",
        ])


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def leader(config: KhoConfig) -> Member:
    """The node accepting writes now, asked over SQL: what pgBackRest requires of its pg1."""
    wh = config.warehouse
    found, errors = [], []
    for member in layout(config).members:
        try:
            with connect_admin(wh, dbname="postgres", node_index=member.index) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except WarehouseError as exc:
            errors.append(str(exc))
            continue
        if row is not None and not row[0]:
            found.append(member)
    if len(found) != 1:
        detail = f" ({'; '.join(errors)})" if errors else ""
        raise WarehouseError(f"cannot back up: expected one primary among the warehouse nodes, found "
                             f"{len(found)}{detail}; check `kho warehouse status`")
    return found[0]


def figures_dir(config: KhoConfig) -> Path:
    return config.ha.backup_repo / "kho"


def figures_path(config: KhoConfig, label: str) -> Path:
    return figures_dir(config) / f"{label}.json"


def ensure_stanza(config: KhoConfig) -> str:
    """stanza-create (idempotent) and pgBackRest's `check` against the current primary; says which node."""
    user = pgbackrest.require_user(config)
    primary = leader(config)
    pgbackrest.write_configs(config, user, primary)
    pgbackrest.stanza_create(config, user)
    pgbackrest.check(config, user)
    return f"pgBackRest stanza {config.ha.scope}: archiving from {primary.name} into {config.ha.backup_repo} checked"


def backup(config: KhoConfig, kind: BackupKind = "auto") -> BackupResult:
    """A pgBackRest backup of the current primary, then its figures at a restore point, archived before returning."""
    patroni.require_backups(config)
    user = pgbackrest.require_user(config)
    primary = leader(config)
    pgbackrest.write_configs(config, user, primary)
    pgbackrest.stanza_create(config, user)
    chosen = _choose(config, user) if kind == "auto" else kind
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    pgbackrest.run(config, user, pgbackrest.unit(config, "backup"), "backup", f"--type={chosen}")
    duration = time.monotonic() - clock
    entry = _newest(config, user)
    label = str(entry["label"])
    point = f"kho-{label}"
    figures, segment = _record(config, point)
    _wait_archived(config, segment)
    path = figures_path(config, label)
    owned_dir(path.parent, user, mode=0o750)
    write_owned(path, json.dumps({"label": label, "restore_point": point, "node": primary.name,
                                  "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
                                  "figures": figures.to_json()}, indent=1, sort_keys=True), user, mode=0o640)
    _forget_expired(config, user)
    sizes = entry.get("info", {})
    return BackupResult(label=label, kind=str(entry.get("type", chosen)), node=primary.name, started=started,
                        duration_s=duration, database_bytes=int(sizes.get("size", 0)),
                        copied_bytes=int(sizes.get("delta", 0)),
                        repo_bytes=int(sizes.get("repository", {}).get("delta", 0)), restore_point=point,
                        figures_path=path)


def _choose(config: KhoConfig, user: ServerUser) -> str:
    fulls = [b for b in pgbackrest.info(config, user).get("backup", []) if b.get("type") == "full"]
    if not fulls:
        return "full"
    last = dt.datetime.fromtimestamp(int(fulls[-1]["timestamp"]["stop"]), dt.UTC)
    return "full" if dt.datetime.now(dt.UTC) - last >= FULL_EVERY else "incr"


def _newest(config: KhoConfig, user: ServerUser) -> dict[str, Any]:
    backups = pgbackrest.info(config, user).get("backup", [])
    if not backups:
        raise WarehouseError("pgbackrest backup reported success but `pgbackrest info` lists no backup")
    return dict(backups[-1])


def _record(config: KhoConfig, point: str) -> tuple[Figures, str]:
    """In ONE transaction on the primary: wait out loads and publications, snapshot, compute the figures, and mark
    the restore point while the locks still hold, so the WAL up to the point holds exactly what the figures saw.
    Then switch WAL so the segment holding the point is archived; returns the figures and that segment."""
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return _record_once(config, point)
        except psycopg.errors.DeadlockDetected as exc:  # a table created and recreated between the plan and the lock
            if attempt == DEADLOCK_RETRIES - 1:
                raise WarehouseError(f"recording the backup's figures deadlocked {DEADLOCK_RETRIES} times with "
                                     f"loads or publications: {str(exc).strip().splitlines()[0]}") from exc
        except psycopg.Error as exc:
            raise WarehouseError(f"recording the backup's figures on the primary failed: "
                                 f"{str(exc).strip().splitlines()[0]}") from exc
    raise AssertionError("unreachable")


def _record_once(config: KhoConfig, point: str) -> tuple[Figures, str]:
    with connect_admin(config.warehouse, autocommit=True) as conn:
        plan = locks(conn)
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))  # no snapshot yet
        lock_writers(conn, plan)
        figures = compute(conn)
        conn.execute("SELECT pg_create_restore_point(%s)", (point,))
        conn.commit()
        conn.autocommit = True
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    return figures, str(row[0])


def archive_now(config: KhoConfig) -> str | None:
    """Switch the primary's WAL and wait until the segment just closed is in the repository, so a restore reaches
    the last commit; None when no primary answers (a restore after losing the warehouse uses what was archived)."""
    try:
        with connect_admin(config.warehouse, dbname="postgres") as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    except (WarehouseError, psycopg.Error):
        return None
    assert row is not None
    _wait_archived(config, str(row[0]))
    return str(row[0])


def archived(config: KhoConfig, segment: str) -> bool:
    """Whether the WAL segment is in the repository (pgBackRest stores it as <segment>-<sha1>[.ext])."""
    return any((config.ha.backup_repo / "archive" / config.ha.scope).glob(f"*/{segment[:16]}/{segment}-*"))


def _wait_archived(config: KhoConfig, segment: str) -> None:
    deadline = time.monotonic() + ARCHIVE_WAIT_S
    while not archived(config, segment):
        if time.monotonic() > deadline:
            raise WarehouseError(_archive_stuck(config, segment))
        time.sleep(0.1)


def _archive_stuck(config: KhoConfig, segment: str) -> str:
    detail = ""
    try:
        with connect_admin(config.warehouse) as conn:
            row = conn.execute("SELECT last_archived_wal, failed_count, last_failed_wal, last_failed_time "
                               "FROM pg_stat_archiver").fetchone()
        if row is not None:
            detail = (f"; pg_stat_archiver: last archived {row[0] or 'none'}, {row[1]} failures, last failed "
                      f"{row[2] or 'none'} at {row[3] or '-'}")
    except WarehouseError as exc:
        detail = f"; {exc}"
    return (f"WAL segment {segment} (holding the backup's restore point) did not reach the repository within "
            f"{ARCHIVE_WAIT_S:.0f}s{detail}; see the primary's server log for archive_command errors")


def _forget_expired(config: KhoConfig, user: ServerUser) -> None:
    """Figures of backups pgBackRest expired are of no use: nothing can restore to them any more."""
    labels = {str(b["label"]) for b in pgbackrest.info(config, user).get("backup", [])}
    for path in figures_dir(config).glob("*.json"):
        if path.stem not in labels:
            path.unlink()
