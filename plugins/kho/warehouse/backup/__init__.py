"""Backups of the warehouse with pgBackRest: continuous WAL archiving from every node, full/differential/incremental
backups of the current primary, point-in-time restores, and verify-restore, which proves a backup restores to the
figures (ledger totals, raw row counts, published mart hashes) recorded when it was taken.

`pgbackrest` writes pgBackRest's configurations and runs it, `figures` computes what is compared, `take` backs up,
`restores` restores and verifies, `health` reports for `kho warehouse status`. docs/architecture.md#backups says
why pgBackRest.
"""

from kho.warehouse.backup.health import BackupStatus, status
from kho.warehouse.backup.pgbackrest import install, postgres_parameters, write_configs
from kho.warehouse.backup.restores import (
    RestoreResult,
    VerifyFailed,
    VerifyReport,
    restore,
    start_restored,
    stop_restored,
    verify_restore,
)
from kho.warehouse.backup.take import BackupKind, BackupResult, backup, ensure_stanza, leader

__all__ = [
    "BackupKind", "BackupResult", "BackupStatus", "RestoreResult", "VerifyFailed", "VerifyReport", "backup",
    "ensure_stanza", "install", "leader", "postgres_parameters", "restore", "start_restored", "status",
    "stop_restored", "verify_restore", "write_configs",
]
