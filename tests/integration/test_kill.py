"""A worker killed with SIGKILL in the middle of COPY leaves no partial batch; the retry completes the load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kho.config import KhoConfig
from kho.load.pipeline import load_file
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect
from tests.integration.test_load import citizen, raw_rows, scalar, write_export_csv

pytestmark = pytest.mark.integration
ROWS = 300_000


def copy_in_progress(config: KhoConfig) -> bool:
    with connect(config.warehouse, autocommit=True, dbname="postgres") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_progress_copy p JOIN pg_database d ON d.oid = p.datid "
            "WHERE d.datname = %s AND p.tuples_processed > 0", (config.warehouse.dbname,)).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("loaded_before", [0, 10], ids=["first-load-into-raw", "merge-through-stage"])
def test_sigkill_during_copy_leaves_nothing_and_the_retry_loads_everything(
    fresh_db_config: KhoConfig, tmp_path: Path, loaded_before: int
) -> None:
    records = [citizen(i) for i in range(ROWS)]
    if loaded_before:
        load_file(fresh_db_config, CITIZENS, write_export_csv(tmp_path / "before.csv", records[:loaded_before]))
    path = write_export_csv(tmp_path / "citizens.csv", records)
    env = {**os.environ, **fresh_db_config.child_env(), "KHO_PG_PASSWORD": fresh_db_config.warehouse.password()}
    worker = subprocess.Popen(
        [sys.executable, "-m", "kho.cli", "load", "population", "citizens", str(path), "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not copy_in_progress(fresh_db_config):
            assert worker.poll() is None, "the load finished before COPY could be caught; raise ROWS"
            assert time.monotonic() < deadline, "COPY never started"
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL

    ledger_before = 1 if loaded_before else 0
    assert scalar(fresh_db_config, "SELECT count(*) FROM kho.load_ledger") == ledger_before
    assert scalar(fresh_db_config, "SELECT count(*) FROM kho.quarantine") == 0
    assert raw_rows(fresh_db_config) == loaded_before

    entry = load_file(fresh_db_config, CITIZENS, path)
    assert (entry.rows_read, entry.rows_new, entry.rows_unchanged, entry.rows_rejected) == (
        ROWS, ROWS - loaded_before, loaded_before, 0)
    assert raw_rows(fresh_db_config) == ROWS
    assert scalar(fresh_db_config, "SELECT count(*) FROM kho.load_ledger") == ledger_before + 1
