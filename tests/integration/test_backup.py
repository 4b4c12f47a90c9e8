"""Backups with real pgBackRest against the session's Patroni warehouse: a backup restores to the figures it
recorded, a restore stops at the time asked, a damaged backup file is found and named, and a restore never writes
over a directory that holds something.

Each test works in a database of its own (`fresh_db_config`): the figures verify-restore compares are that
database's ledger, raw tables and published marts.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from kho.build.publish import built_marts, publish
from kho.config import KhoConfig
from kho.errors import WarehouseError
from kho.load.batch import BatchLoader, LedgerEntry
from kho.sources.population import CITIZENS
from kho.warehouse import backup
from kho.warehouse.backup.pgbackrest import require_user
from kho.warehouse.backup.restores import socket_dir
from kho.warehouse.connection import connect, connect_admin
from tests.integration.test_load import citizen

pytestmark = pytest.mark.integration


def load(config: KhoConfig, first: int, count: int) -> LedgerEntry:
    """One batch of `count` new citizens numbered from `first`, through the real loader (ledger row included)."""
    with connect(config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api")
        loader.add(pa.Table.from_pylist([citizen(i) for i in range(first, first + count)]))
        return loader.finish()


def publish_mart(config: KhoConfig, rows: int) -> None:
    """A mart built by hand into build_mart_backup_test and published by the real publication step."""
    with connect(config.warehouse, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS build_mart_backup_test")
        conn.execute("DROP TABLE IF EXISTS build_mart_backup_test.totals")
        conn.execute("CREATE TABLE build_mart_backup_test.totals (commune text PRIMARY KEY, citizens bigint, "
                     "ratio double precision, at timestamptz)")
        conn.execute("INSERT INTO build_mart_backup_test.totals SELECT lpad(g::text, 5, '0'), g * 7, g / 3.0, "
                     "'2025-07-01 08:00+07'::timestamptz + g * interval '1 hour' FROM generate_series(1, %s) g",
                     (rows,))
        publish(conn, built_marts(conn), run_id="test-backup", as_of=dt.date(2025, 7, 1))


def keys(conn: psycopg.Connection, first: int, count: int) -> int:
    wanted = [citizen(i)["cccd"] for i in range(first, first + count)]
    row = conn.execute("SELECT count(*) FROM raw.population__citizens WHERE cccd = ANY(%s)", (wanted,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def restored(kho_config: KhoConfig, tmp_path: Path) -> Iterator[Path]:
    """A directory to restore into; a cluster started there is stopped and removed afterwards."""
    into = tmp_path / "restored"
    yield into
    if (into / "PG_VERSION").exists():
        backup.stop_restored(into, require_user(kho_config))
    shutil.rmtree(into, ignore_errors=True)
    shutil.rmtree(socket_dir(into), ignore_errors=True)


def test_the_primary_archives_into_the_repository_through_pgbackrest(kho_config: KhoConfig) -> None:
    with connect_admin(kho_config.warehouse) as conn:
        row = conn.execute("SELECT current_setting('archive_mode'), current_setting('archive_command')").fetchone()
    assert row is not None and row[0] == "on" and "pgbackrest" in row[1] and "archive-push" in row[1]


def test_a_backup_restores_to_exactly_the_figures_it_recorded(fresh_db_config: KhoConfig) -> None:
    config = fresh_db_config
    first = load(config, 0, 300)
    publish_mart(config, 120)
    taken = backup.backup(config, "full")
    recorded = json.loads(taken.figures_path.read_text(encoding="utf-8"))
    figures = recorded["figures"]
    assert figures["ledger"]["population/citizens"]["rows_read"] == first.rows_read == 300
    assert figures["raw_rows"]["raw.population__citizens"] == 300
    assert figures["marts"]["mart_backup_test.totals"]["rows"] == "120"
    assert figures["publications"]["count"] == 1
    assert taken.kind == "full" and taken.copied_bytes > 0 and taken.mb_per_s > 0

    load(config, 1000, 50)  # after the restore point: verify-restore must not see it
    publish_mart(config, 130)

    report = backup.verify_restore(config, taken.label)
    assert report.ok, report.render()
    names = set(report.comparison.matched)
    assert {"ledger population/citizens rows_read", "raw raw.population__citizens rows",
            "mart mart_backup_test.totals hash", "publications last_id"} <= names
    assert "PASSED" in report.render()
    health = backup.status(config)
    assert health.last is not None and health.last.label == taken.label
    assert health.archive is not None and not health.archive.failing, health.render()


def test_a_restore_to_a_time_holds_what_committed_before_it_and_nothing_after(
        fresh_db_config: KhoConfig, restored: Path) -> None:
    config = fresh_db_config
    backup.backup(config, "incr")
    load(config, 0, 200)
    with connect_admin(config.warehouse) as conn:
        moment = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    load(config, 5000, 100)

    result = backup.restore(config, moment, restored, start=True)
    assert result.started and result.archived_through

    wh = config.warehouse
    with psycopg.connect(host="127.0.0.1", port=result.port, dbname=wh.dbname, user=wh.admin_user,
                         password=wh.admin_password()) as conn:
        assert keys(conn, 0, 200) == 200
        assert keys(conn, 5000, 100) == 0
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        archiving = conn.execute("SELECT current_setting('archive_mode')").fetchone()
    assert archiving == ("off",), "a restored cluster must never push WAL into the live repository"
    with connect(config.warehouse, autocommit=True) as live:
        assert keys(live, 5000, 100) == 100


def test_a_load_committing_while_the_figures_are_taken_is_waited_for_and_counted(fresh_db_config: KhoConfig) -> None:
    """The figures' transaction waits for a load under way and only then takes its snapshot: were the snapshot
    taken before the wait, the figures would miss the batch the restore point holds, and verify-restore would
    fail."""
    config = fresh_db_config
    load(config, 0, 100)
    pending = connect(config.warehouse)
    loader = BatchLoader(pending, CITIZENS, "api")
    loader.add(pa.Table.from_pylist([citizen(i) for i in range(2000, 2040)]))
    loader.finish()  # the ledger row is written; the transaction stays open
    with ThreadPoolExecutor(max_workers=1) as pool, connect_admin(config.warehouse) as watcher:
        taking = pool.submit(backup.backup, config, "incr")
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'kho.load_ledger'::regclass"
        while watcher.execute(waiting).fetchone() != (1,):
            assert not taking.done(), f"the backup did not wait for the load under way: {taking.exception()}"
            time.sleep(0.05)
        pending.commit()
        pending.close()
        taken = taking.result()
    figures = json.loads(taken.figures_path.read_text(encoding="utf-8"))["figures"]
    assert figures["ledger"]["population/citizens"]["batches"] == 2
    assert figures["raw_rows"]["raw.population__citizens"] == 140
    assert backup.verify_restore(config, taken.label).ok


def test_verify_restore_names_a_corrupted_backup_file(fresh_db_config: KhoConfig) -> None:
    config = fresh_db_config
    load(config, 0, 500)
    taken = backup.backup(config, "full")
    files = [p for p in (config.ha.backup_repo / "backup" / config.ha.scope / taken.label / "pg_data").rglob("*")
             if p.is_file() and p.stat().st_size > 64]
    victim = max(files, key=lambda p: p.stat().st_size)
    original = victim.read_bytes()
    damaged = bytearray(original)
    for i in range(16):
        damaged[len(damaged) // 2 + i] ^= 0xFF
    try:
        victim.write_bytes(bytes(damaged))
        with pytest.raises(WarehouseError) as failed:
            backup.verify_restore(config, taken.label)
    finally:
        victim.write_bytes(original)
    message = str(failed.value)
    assert str(victim) in message, message
    assert taken.label in message and "\n" not in message


def test_a_restore_to_a_time_the_archive_does_not_reach_fails_saying_so(kho_config: KhoConfig, restored: Path) -> None:
    backup.backup(kho_config, "incr")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(WarehouseError) as failed:
        backup.restore(kho_config, later, restored, start=True)
    assert "recovery ended before configured recovery target was reached" in str(failed.value)
    assert "\n" not in str(failed.value)


def test_restore_refuses_a_directory_that_is_not_empty(kho_config: KhoConfig, tmp_path: Path) -> None:
    into = tmp_path / "taken"
    into.mkdir()
    (into / "keep.txt").write_text("operator's file", encoding="utf-8")
    with pytest.raises(WarehouseError, match="not empty"):
        backup.restore(kho_config, "latest", into)
    assert [p.name for p in into.iterdir()] == ["keep.txt"]
    assert (into / "keep.txt").read_text(encoding="utf-8") == "operator's file"


def test_a_mart_with_quotes_in_its_name_is_counted_and_hashed(fresh_db_config: KhoConfig) -> None:
    """The figures name tables through identifiers, never by pasting names into SQL."""
    with connect(fresh_db_config.warehouse, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier("build_mart_o'q")))
        conn.execute(sql.SQL("CREATE TABLE {} (k int PRIMARY KEY)").format(sql.Identifier("build_mart_o'q", "t\"x")))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1), (2)").format(sql.Identifier("build_mart_o'q", "t\"x")))
        publish(conn, built_marts(conn), run_id="quotes", as_of=dt.date(2025, 7, 1))
    taken = backup.backup(fresh_db_config, "incr")
    figures = json.loads(taken.figures_path.read_text(encoding="utf-8"))["figures"]
    assert figures["marts"]["mart_o'q.t\"x"]["rows"] == "2"
