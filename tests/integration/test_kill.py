"""A worker killed with SIGKILL after part of its work went through leaves exactly the batches it committed.

The kill lands late on purpose: after a whole block of an export file has been COPYed (`kho load`), or after a sync
checkpoint has committed and the next batch has written rows (`kho sync`). Killed earlier, a loader that committed
block by block, or a watermark that ran ahead of its batch, would look atomic. The moments are read from the
database (COPY progress, the worker's transaction and statement), never guessed with a sleep.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kho.config import KhoConfig
from kho.load.pipeline import SyncOptions, load_file, sync_api
from kho.simulator import World
from kho.simulator.defects import ALL_DEFECT_KINDS, DRIFT_KINDS
from kho.simulator.generate import WorldSpec
from kho.simulator.server import ServerOptions, serve_in_thread
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect
from tests.integration.test_load import citizen, raw_rows, scalar, write_export_csv
from tests.support.checksums import TableChecksum, table_checksums

pytestmark = pytest.mark.integration

ROWS = 300_000
"""About four 8 MiB blocks of CSV (kho.extract.files.BLOCK_BYTES), so the worker is still busy after the first."""
MALFORMED_EVERY = 1000
"""Every 1000th record (the 6th, the 1006th, …) has a malformed CCCD: a batch committed too early would leave
quarantine rows too."""
SYNC_CITIZENS = 40_000
"""Four checkpoints of `kho sync`'s 20 pages × 500 records, and a fifth part-batch."""
POLL_S = 0.002
DEADLINE_S = 120.0


def export_records(n: int) -> list[dict[str, str | None]]:
    return [citizen(i, cccd=f"X{i:011d}") if i % MALFORMED_EVERY == 5 else citizen(i) for i in range(n)]


def spawn(config: KhoConfig, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`kho <args>` as its own process, as Airflow's worker or an operator would run it; its output goes to `log`."""
    env = {**os.environ, **config.child_env(), "KHO_PG_PASSWORD": config.warehouse.password()}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "kho.cli", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def kill_when(worker: subprocess.Popen[bytes], log: Path, config: KhoConfig, moment: Callable[[Any], int | None],
              too_small: str) -> None:
    """Poll `moment(conn)` until it names the worker's backend, SIGKILL the worker, and return once that backend
    is gone (its transaction rolled back, not merely still open)."""
    deadline = time.monotonic() + DEADLINE_S
    with connect(config.warehouse, autocommit=True) as conn:
        try:
            while (backend := moment(conn)) is None:
                assert worker.poll() is None, (
                    f"the worker exited ({worker.returncode}) before it could be caught; {too_small}. Its output:\n"
                    + log.read_text(errors="replace")[-2000:])
                assert time.monotonic() < deadline, "the worker never reached the moment to kill it"
                time.sleep(POLL_S)
            worker.send_signal(signal.SIGKILL)
        finally:
            worker.kill()
            worker.wait(timeout=30)
        assert worker.returncode == -signal.SIGKILL
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone():
            assert time.monotonic() < deadline, f"backend {backend} outlived its killed client"
            time.sleep(POLL_S)


class AfterFirstBlock:
    """The moment a second COPY of data starts in the worker's transaction: the first block went all the way.

    Each block of the file is one COPY statement (its `query_start` tells them apart); COPYs into quarantine do
    not count. Seeing a later COPY than the first one seen means at least one whole block was COPYed.
    """

    def __init__(self) -> None:
        self.first: dt.datetime | None = None

    def __call__(self, conn: Any) -> int | None:
        row = conn.execute(
            """
            SELECT p.pid, a.query_start FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)
            WHERE p.datname = current_database() AND p.pid <> pg_backend_pid() AND p.command = 'COPY FROM'
              AND p.tuples_processed > 0 AND p.relid IS DISTINCT FROM to_regclass('kho.quarantine')
            """).fetchone()
        if row is None:
            return None
        if self.first is None:
            self.first = row[1]
        return int(row[0]) if row[1] != self.first else None


def committed_state(config: KhoConfig) -> dict[str, TableChecksum]:
    """Everything a batch writes (raw rows, quarantine, ledger, watermarks), checksummed table by table."""
    with connect(config.warehouse, autocommit=True) as conn:
        return table_checksums(conn, ["raw", "kho"])


@pytest.mark.parametrize("loaded_before", [0, 10], ids=["first-load-into-raw", "merge-through-stage"])
def test_sigkill_after_a_whole_block_leaves_exactly_the_committed_batches_and_the_retry_loads_everything(
    fresh_db_config: KhoConfig, tmp_path: Path, loaded_before: int
) -> None:
    config = fresh_db_config
    records = export_records(ROWS)
    rejected = sum(1 for i in range(ROWS) if i % MALFORMED_EVERY == 5)
    before_rejected = 1 if loaded_before else 0
    if loaded_before:
        load_file(config, CITIZENS, write_export_csv(tmp_path / "before.csv", records[:loaded_before]))
    before = committed_state(config)
    path = write_export_csv(tmp_path / "citizens.csv", records)

    log = tmp_path / "worker.log"
    kill_when(spawn(config, log, "load", "population", "citizens", str(path), "--no-progress"), log, config,
              AfterFirstBlock(), "raise ROWS")

    assert committed_state(config) == before
    assert scalar(config, "SELECT count(*) FROM kho.load_ledger") == (1 if loaded_before else 0)
    assert scalar(config, "SELECT count(*) FROM kho.quarantine") == before_rejected
    assert raw_rows(config) == loaded_before - before_rejected
    assert scalar(config, "SELECT count(*) FROM kho.watermarks") == 0

    entry = load_file(config, CITIZENS, path)
    new = ROWS - rejected - (loaded_before - before_rejected)
    assert (entry.rows_read, entry.rows_new, entry.rows_changed, entry.rows_rejected) == (ROWS, new, 0, rejected)
    assert raw_rows(config) == ROWS - rejected
    assert scalar(config, "SELECT count(*) FROM kho.load_ledger") == (2 if loaded_before else 1)
    assert scalar(config, "SELECT count(*) FROM kho.quarantine") == before_rejected + rejected


@contextmanager
def serving(world: World, config: KhoConfig) -> Iterator[KhoConfig]:
    """The world behind OAuth2 on a free port, and `config` pointed at it (the worker gets it through its env)."""
    options = ServerOptions(credentials=config.ensure_registry_credentials())
    with serve_in_thread(world, options=options) as simulator:
        yield dataclasses.replace(config, simulator_port=simulator.port)


def in_a_later_checkpoint(conn: Any) -> int | None:
    """The worker's backend once a checkpoint has committed and the next batch has COPYed rows into its stage.

    A sync's first batch into an empty raw table COPYs straight into it; only later batches have a stage. The
    backend's transaction id says the batch has written; its last statement, that rows went into the stage.
    """
    row = conn.execute(
        """
        SELECT a.pid FROM pg_stat_activity a
        WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.backend_xid IS NOT NULL
          AND a.query LIKE 'COPY "\\_kho\\_stage"%' AND EXISTS (SELECT FROM kho.load_ledger)
        """).fetchone()
    return None if row is None else int(row[0])


def rows(config: KhoConfig, query: str) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def stored_keys(config: KhoConfig) -> set[str]:
    """Every key the warehouse holds for citizens: loaded, or quarantined with the text it was served as."""
    return {r[0] for r in rows(config, "SELECT cccd FROM raw.population__citizens UNION "
                                       "SELECT coalesce(record_key, '') FROM kho.quarantine")}


def served_key(record: dict[str, Any]) -> str:
    return "" if record.get("cccd") is None else str(record["cccd"])


def served_at(record: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(record["updated_at"]))


def test_sigkill_after_a_sync_checkpoint_keeps_exactly_the_committed_batches_and_a_rerun_reads_the_rest(
    fresh_db_config: KhoConfig, tmp_path: Path
) -> None:
    kinds = ALL_DEFECT_KINDS - DRIFT_KINDS
    world = World.build(WorldSpec(20250702, citizens=SYNC_CITIZENS, days=0, defect_rate=0.01, defect_kinds=kinds))
    served = world.snapshot(CITIZENS)  # in the order the API pages them: (updated_at, cccd)
    with serving(world, fresh_db_config) as config:
        log = tmp_path / "worker.log"
        kill_when(spawn(config, log, "sync", "population", "citizens"), log, config, in_a_later_checkpoint,
                  "raise SYNC_CITIZENS")

        ledger = rows(config, "SELECT batch_id, rows_read, rows_new, rows_rejected, cursor_to FROM kho.load_ledger "
                              "ORDER BY batch_id")
        assert ledger, "the kill came after a committed checkpoint"
        batches = {b[0] for b in ledger}
        read_before = sum(b[1] for b in ledger)
        assert read_before < len(served), "the sync was killed before it read everything"
        raw_batches = rows(config, "SELECT DISTINCT _batch_id FROM raw.population__citizens UNION "
                                   "SELECT DISTINCT _first_batch_id FROM raw.population__citizens")
        assert {b[0] for b in raw_batches} <= batches
        assert raw_rows(config) == sum(b[2] for b in ledger)
        assert dict(rows(config, "SELECT batch_id, count(*) FROM kho.quarantine GROUP BY 1")) == {
            b[0]: b[3] for b in ledger if b[3]}
        assert rows(config, "SELECT cursor_value, batch_id FROM kho.watermarks") == [
            (max(b[4] for b in ledger), max(batches))]
        # Exactly the records of the committed pages: the first `read_before` the registry served, nothing after.
        assert stored_keys(config) == {served_key(r) for r in served[:read_before]}

        mark = max(b[4] for b in ledger)
        rerun = sync_api(config, CITIZENS, SyncOptions())

    read_again = sum(e.rows_read for e in rerun)
    assert read_again == sum(1 for r in served if served_at(r) >= mark), "the rerun starts at the watermark"
    shared_second = sum(1 for r in served[:read_before] if served_at(r) >= mark)
    assert read_before + read_again - shared_second == len(served), "every record read once, the boundary twice"
    assert stored_keys(config) == {served_key(r) for r in served}
    total_new, total_rejected = rows(config, "SELECT sum(rows_new), sum(rows_rejected) FROM kho.load_ledger")[0]
    assert raw_rows(config) == total_new, "no record loaded twice"
    assert scalar(config, "SELECT count(*) FROM kho.quarantine") == total_rejected
    expected_quarantine = {("|".join(d.key), d.expected_reason_code) for d in world.ground_truth
                           if d.qualified_entity == CITIZENS.qualified_name and d.expected_reason_code}
    assert set(rows(config, "SELECT record_key, reason_code FROM kho.quarantine")) == expected_quarantine
