"""Backup benchmark: pgBackRest backup and restore throughput (MB/s) on a warehouse of N citizens.

    uv run --frozen --group bench python bench/backup.py [--citizens 1000000] [--seed 20250701]
                                     [--compress lz4,zst] [--keep]

1. The simulator exports day 0's snapshot and day 1's change feed of every entity (CSV) into a temporary directory.
2. A fresh embedded warehouse (two nodes under Patroni, etcd) in a temporary KHO_HOME on free ports; day 0 is
   loaded (one batch per file), built and published (`kho build`'s steps), then VACUUM (ANALYZE) and a CHECKPOINT,
   untimed: the warehouse as it stands after a first night.
3. For each compression type (`--compress`): a full backup (`kho.warehouse.backup.backup`, as `kho warehouse
   backup --type full` runs it: pgBackRest from the primary, then the figures at a restore point), timed; then
   that backup restored into an empty directory to its consistency point (`--type=immediate`, no WAL beyond the
   backup's own), timed apart from starting the restored cluster (recovery and promotion).
4. Day 1 is loaded and built, then an incremental backup (the nightly one), timed.
5. verify-restore of the incremental backup (pgbackrest verify of the whole repository, restore to the restore point,
   recovery, comparison of the figures), each part timed.

MB/s is database bytes copied (backup) or written (restore) per second of wall time; the repository bytes show the
compression. Results go to bench/results/backup.json; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cluster_env, log, timed  # bench/common.py

from kho.build.run import BuildPlan, build
from kho.config import KhoConfig
from kho.load.pipeline import load_file
from kho.simulator import calendar as cal
from kho.simulator.export import Manifest, export
from kho.simulator.generate import WorldSpec
from kho.sources import get_entity
from kho.warehouse import backup, embedded
from kho.warehouse.backup import pgbackrest
from kho.warehouse.backup import restores as restoring
from kho.warehouse.connection import connect, connect_admin

RESULTS = Path(__file__).parent / "results"


def load_day(config: KhoConfig, manifest: Manifest, out: Path, day: int) -> float:
    seconds, _ = timed(lambda: [load_file(config, get_entity(f.registry, f.entity), out / f.path)
                                for f in manifest.files if f.day == day])
    return seconds


def settle(config: KhoConfig) -> None:
    with connect(config.warehouse, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


def database_bytes(config: KhoConfig) -> int:
    with connect_admin(config.warehouse, dbname="postgres") as conn:
        row = conn.execute("SELECT sum(pg_database_size(oid)) FROM pg_database").fetchone()
    return int(row[0]) if row else 0


def repo_bytes(config: KhoConfig) -> int:
    total = 0
    for directory, _, files in os.walk(config.ha.backup_repo / "backup"):
        total += sum((Path(directory) / f).lstat().st_size for f in files)
    return total


def restore_set(config: KhoConfig, label: str, into: Path) -> dict[str, Any]:
    """The backup set alone (to its consistency point), then started: restore and recovery timed apart."""
    user = pgbackrest.require_user(config)
    restoring._prepare(into, user)
    result = restoring._restore(config, user, into, ["--type=immediate", "--target-action=promote", f"--set={label}"],
                                f"backup {label}", port=restoring.free_port(), start=False)
    recovery = restoring.start_restored(into, user)
    restoring.stop_restored(into, user)
    shutil.rmtree(into)
    shutil.rmtree(restoring.socket_dir(into), ignore_errors=True)
    return {"restored_bytes": result.restored_bytes, "restore_seconds": result.duration_s,
            "restore_mb_per_s": result.mb_per_s, "recovery_seconds": recovery}


def backup_run(config: KhoConfig, kind: backup.BackupKind) -> dict[str, Any]:
    wall, result = timed(lambda: backup.backup(config, kind))
    log(result.render())
    return {"label": result.label, "kind": result.kind, "pgbackrest_seconds": result.duration_s,
            "with_figures_seconds": wall, "database_bytes": result.database_bytes,
            "copied_bytes": result.copied_bytes, "repo_bytes": result.repo_bytes, "mb_per_s": result.mb_per_s}


def measure(args: argparse.Namespace, work: Path, config: KhoConfig) -> dict[str, Any]:
    spec = WorldSpec(args.seed, args.citizens, days=1)
    out = work / "export"
    log(f"exporting {args.citizens:,} citizens (seed {args.seed}), day 0 and day 1")
    export_s, manifest = timed(lambda: export(spec, out, day=range(2), formats=("csv",), gzip=False))
    log(f"exported in {export_s:.1f} s")
    embedded.up(config)
    day0, day1 = (dt.date.fromordinal(cal.day_ord(d)) for d in (0, 1))
    log(f"loaded day 0 in {load_day(config, manifest, out, 0):.1f} s; building")
    build(config, BuildPlan("bench-backup-0", day0, full_refresh=True))
    settle(config)
    size = database_bytes(config)
    log(f"warehouse: {size / 1e6:.0f} MB in all databases")
    per_type: dict[str, Any] = {}
    for compress in args.compress.split(","):
        pgbackrest.COMPRESS_TYPE = compress  # the module's choice, overridden for this comparison only
        before = repo_bytes(config)
        run = backup_run(config, "full")
        run["repo_bytes_on_disk"] = repo_bytes(config) - before
        log(f"{compress}: restoring {run['label']}")
        run.update(restore_set(config, run["label"], work / f"restore-{compress}"))
        log(f"{compress}: restored {run['restored_bytes'] / 1e6:.0f} MB in {run['restore_seconds']:.1f} s "
            f"({run['restore_mb_per_s']:.0f} MB/s), recovered in {run['recovery_seconds']:.1f} s")
        per_type[compress] = run
    pgbackrest.COMPRESS_TYPE = args.compress.split(",")[0]
    log(f"loaded day 1 in {load_day(config, manifest, out, 1):.1f} s; building")
    build(config, BuildPlan("bench-backup-1", day1))
    incremental = backup_run(config, "incr")
    verify_s, report = timed(lambda: backup.verify_restore(config, incremental["label"]))
    log(report.render().splitlines()[-1])
    verify = {"seconds": verify_s, "restore_seconds": report.restore.duration_s,
              "restore_mb_per_s": report.restore.mb_per_s, "recovery_seconds": report.restore.recovery_s,
              "figures": len(report.comparison.matched), "repository": report.repository, "ok": report.ok}
    return {"citizens": args.citizens, "seed": args.seed, "cpus": os.cpu_count(), "database_bytes": size,
            "process_max": pgbackrest.PROCESS_MAX, "full": per_type, "incremental": incremental,
            "verify_restore": verify}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20250701)
    parser.add_argument("--compress", default="lz4,zst", help="compression types to compare, the first kept")
    parser.add_argument("--keep", action="store_true", help="leave the warehouse running (for a look afterwards)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kho-bench-backup-"))
    config = KhoConfig.from_env(cluster_env(work / "home"))
    started = time.perf_counter()
    try:
        results = measure(args, work, config)
    finally:
        if not args.keep:
            embedded.destroy(config)
            shutil.rmtree(work, ignore_errors=True)
    results["wall_seconds"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backup.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'':8}{'backup MB/s':>12}{'repo MB':>9}{'restore MB/s':>14}{'recovery s':>12}")
    for compress, run in results["full"].items():
        print(f"{compress:8}{run['mb_per_s']:>12.0f}{run['repo_bytes'] / 1e6:>9.0f}{run['restore_mb_per_s']:>14.0f}"
              f"{run['recovery_seconds']:>12.1f}")
    inc, ver = results["incremental"], results["verify_restore"]
    print(f"incremental: {inc['copied_bytes'] / 1e6:.0f} MB copied in {inc['pgbackrest_seconds']:.1f} s; "
          f"verify-restore {ver['seconds']:.1f} s (restore {ver['restore_mb_per_s']:.0f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
