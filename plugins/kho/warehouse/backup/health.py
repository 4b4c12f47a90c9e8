"""Backup health for `kho warehouse status` and the warehouse_health DAG: the last backups' age, and whether the
primary's WAL reaches the repository (pg_stat_archiver)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kho.config import KhoConfig
from kho.errors import KhoError, WarehouseError
from kho.warehouse.backup import pgbackrest
from kho.warehouse.connection import connect_admin

MAX_FULL_AGE = dt.timedelta(days=8)
"""`auto` takes a full backup weekly: one older than a week and a day means the nightly backup is not running."""
MAX_BACKUP_AGE = dt.timedelta(hours=26)
"""The nightly backup runs every 24 hours; two hours of slack for a long build before it."""


@dataclass(frozen=True)
class LastBackup:
    label: str
    kind: str
    stopped: dt.datetime


@dataclass(frozen=True)
class ArchiveStatus:
    last_archived_wal: str | None
    last_archived_at: dt.datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_at: dt.datetime | None

    @property
    def failing(self) -> bool:
        """The last attempt failed: a failure more recent than the last success."""
        return self.last_failed_at is not None and (self.last_archived_at is None
                                                    or self.last_failed_at > self.last_archived_at)


@dataclass(frozen=True)
class BackupStatus:
    repository: str
    backups: int
    last_full: LastBackup | None
    last: LastBackup | None
    archive: ArchiveStatus | None
    archive_range: tuple[str, str] | None
    now: dt.datetime
    error: str | None = None

    @property
    def problems(self) -> list[str]:
        found = [self.error] if self.error else []
        if self.last_full is None:
            found.append("no full backup in the repository: run `kho warehouse backup --type full`")
        elif self.now - self.last_full.stopped > MAX_FULL_AGE:
            found.append(f"the last full backup ({self.last_full.label}) is {_age(self.now - self.last_full.stopped)}"
                         " old")
        if self.last is not None and self.now - self.last.stopped > MAX_BACKUP_AGE:
            found.append(f"the last backup ({self.last.label}) is {_age(self.now - self.last.stopped)} old: is the "
                         "warehouse_backup DAG running?")
        if self.archive is not None and self.archive.failing:
            found.append(f"WAL archiving is failing: {self.archive.last_failed_wal} failed at "
                         f"{self.archive.last_failed_at} ({self.archive.failed_count} failures since the statistics "
                         "were reset); see the primary's server log")
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems

    def render(self) -> str:
        def line(what: str, b: LastBackup | None) -> str:
            if b is None:
                return f"  {what}: none"
            return f"  {what}: {b.label} ({b.kind}) at {b.stopped.isoformat(timespec='seconds')}, " \
                   f"{_age(self.now - b.stopped)} ago"
        lines = [f"backups in {self.repository}: {self.backups}", line("last full", self.last_full),
                 line("last", self.last)]
        if self.archive_range:
            lines.append(f"  archived WAL: {self.archive_range[0]} .. {self.archive_range[1]}")
        if self.archive is not None:
            a = self.archive
            lines.append(f"  archiver: last archived {a.last_archived_wal or 'none'} at {a.last_archived_at or '-'}, "
                         f"{a.failed_count} failures (last {a.last_failed_wal or 'none'} at {a.last_failed_at or '-'})")
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)


def _age(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _last(backups: list[dict[str, Any]]) -> LastBackup | None:
    if not backups:
        return None
    b = backups[-1]
    return LastBackup(str(b["label"]), str(b["type"]), dt.datetime.fromtimestamp(int(b["timestamp"]["stop"]), dt.UTC))


def status(config: KhoConfig) -> BackupStatus:
    """What the repository holds and how the primary's archiving goes; never raises for an unhealthy state."""
    now = dt.datetime.now(dt.UTC)
    repo = str(config.ha.backup_repo)
    try:
        user = pgbackrest.require_user(config)
        pgbackrest.write_restore_config(config, user)
        stanza = pgbackrest.info(config, user)
    except WarehouseError as exc:
        return BackupStatus(repo, 0, None, None, _archiver(config), None, now, error=str(exc))
    backups = list(stanza.get("backup", []))
    ranges = [a for a in stanza.get("archive", []) if a.get("min")]
    return BackupStatus(
        repository=repo, backups=len(backups), last_full=_last([b for b in backups if b.get("type") == "full"]),
        last=_last(backups), archive=_archiver(config),
        archive_range=(str(ranges[0]["min"]), str(ranges[-1]["max"])) if ranges else None, now=now,
    )


def _archiver(config: KhoConfig) -> ArchiveStatus | None:
    try:
        with connect_admin(config.warehouse, dbname="postgres") as conn:
            row = conn.execute("SELECT last_archived_wal, last_archived_time, failed_count, last_failed_wal, "
                               "last_failed_time FROM pg_stat_archiver").fetchone()
    except KhoError:  # no primary, or no administrator password here
        return None
    if row is None:
        return None
    return ArchiveStatus(row[0], row[1], int(row[2]), row[3], row[4])
