"""The load ledger as evidence: each count measured on its own, and the database refusing counts that disagree.

Expected counts here are written by hand from the rules (newest version of a key wins, the later one on a tie; a
row whose hash matches, or that is older than the stored version, is unchanged; rejects are quarantined), never
taken from the loader, and checked again against what the database holds afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from kho.config import KhoConfig
from kho.errors import LedgerMismatch
from kho.load.batch import BatchLoader, LedgerEntry
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect
from tests.integration.test_load import citizen, raw_rows, scalar, write_export_csv

pytestmark = pytest.mark.integration

Record = dict[str, str | None]
JAN, FEB, MAR = "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"


def load_batch(config: KhoConfig, records: list[Record], *, fast_first_load: bool = True,
               expect_direct: bool | None = None) -> LedgerEntry:
    """Load `records` as one batch, split over two tables as a paged read would be."""
    with connect(config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api", fast_first_load=fast_first_load)
        if expect_direct is not None:
            assert loader.direct is expect_direct, "the batch did not take the load path under test"
        half = len(records) // 2
        for part in (records[:half], records[half:]):
            if part:
                loader.add(pa.Table.from_pylist(part))
        return loader.finish()


def counts(entry: LedgerEntry) -> tuple[int, int, int, int, int]:
    return entry.rows_read, entry.rows_new, entry.rows_changed, entry.rows_unchanged, entry.rows_rejected


def ledger_row(config: KhoConfig, batch_id: int) -> tuple[int, ...] | None:
    with connect(config.warehouse, autocommit=True) as conn:
        row = conn.execute("SELECT rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected"
                           " FROM kho.load_ledger WHERE batch_id = %s", (batch_id,)).fetchone()
    return tuple(row) if row else None


def outcome_in_database(config: KhoConfig, batch_id: int) -> tuple[int, int, int]:
    """(keys this batch inserted, keys it rewrote, rows it quarantined), read from the tables themselves."""
    with connect(config.warehouse, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE _first_batch_id = %(b)s),"
            " count(*) FILTER (WHERE _batch_id = %(b)s AND _first_batch_id <> %(b)s),"
            " (SELECT count(*) FROM kho.quarantine WHERE batch_id = %(b)s)"
            " FROM raw.population__citizens", {"b": batch_id}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_a_ledger_row_that_does_not_add_up_is_refused_by_the_database(fresh_db_config: KhoConfig) -> None:
    insert = ("INSERT INTO kho.load_ledger (batch_id, registry, entity, source, started_at, rows_read, rows_new,"
              " rows_changed, rows_unchanged, rows_rejected) VALUES (nextval('kho.batch_id_seq'), 'population',"
              " 'citizens', 'api', now(), %s, %s, %s, %s, %s)")
    with connect(fresh_db_config.warehouse) as conn:
        with conn.transaction():
            who = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            assert who == (fresh_db_config.warehouse.user, False), "not the application's own login"
            conn.execute(insert, (10, 4, 3, 2, 1))  # 10 = 4 + 3 + 2 + 1: accepted
        with pytest.raises(psycopg.errors.CheckViolation) as refused, conn.transaction():
            conn.execute(insert, (10, 4, 3, 1, 1))  # one row unaccounted for
    assert refused.value.diag.constraint_name == "load_ledger_adds_up"
    assert scalar(fresh_db_config, "SELECT array_agg(rows_read) FROM kho.load_ledger") == [10]


BASE = [citizen(i) for i in range(6)] + [citizen(6, updated_at=MAR, full_name="Trần Văn Mới"), citizen(7)]
"""What the raw table holds before the batch under test: citizens 0-7, citizen 6 at its March version."""

MIXED = [
    citizen(10), citizen(11),                                       # 2 new keys
    citizen(12), citizen(12, full_name="Trần Văn Mười Hai", updated_at=FEB),  # new key twice: 1 new, 1 superseded
    citizen(1, permanent_commune_code="25741", updated_at=FEB),     # moved: 1 changed
    citizen(2, permanent_commune_code="25741", updated_at=FEB),     # two versions at the same instant: the later
    citizen(2, permanent_commune_code="25744", updated_at=FEB),     # one wins, 1 changed and 1 superseded
    citizen(3), citizen(4),                                         # identical to the stored rows: 2 unchanged
    citizen(5), citizen(5),                                         # identical, twice: 1 matched, 1 superseded
    citizen(6, full_name="Trần Văn Cũ", updated_at=FEB),            # older than the stored March version: unchanged
    citizen(7, updated_at=FEB),                                     # same content, newer updated_at: 1 changed
    citizen(20, cccd="123"), citizen(21, full_name=None),           # 2 rejected (malformed, missing required)
]
MIXED_COUNTS = (15, 3, 3, 1 + 1 + 2 + 2 + 1, 2)
"""(read, new, changed, unchanged, rejected) of MIXED over BASE, by hand: new 10, 11, 12; changed 1, 2, 7;
unchanged = 12's January version + 2's first version + 3 and 4 + both 5s + 6; rejected 20 and 21."""


def test_each_count_of_a_merge_is_what_happened_to_its_rows(fresh_db_config: KhoConfig) -> None:
    load_batch(fresh_db_config, BASE)
    entry = load_batch(fresh_db_config, MIXED, expect_direct=False)
    assert counts(entry) == MIXED_COUNTS
    assert ledger_row(fresh_db_config, entry.batch_id) == MIXED_COUNTS
    assert outcome_in_database(fresh_db_config, entry.batch_id) == (3, 3, 2)
    stored = scalar(fresh_db_config, "SELECT jsonb_object_agg(right(cccd, 2), jsonb_build_array(full_name,"
                                     " permanent_commune_code, (updated_at AT TIME ZONE 'UTC')::date::text))"
                                     " FROM raw.population__citizens WHERE right(cccd, 2) IN ('02', '06', '12')")
    assert stored == {
        "02": ["Trần Văn Số 2", "25744", "2025-02-01"],       # the later of the two February versions
        "06": ["Trần Văn Mới", "25747", "2025-03-01"],        # the older version did not overwrite it
        "12": ["Trần Văn Mười Hai", "25747", "2025-02-01"],   # the newer of its two versions
    }


FIRST = [
    *(citizen(i) for i in range(5)),                                 # 5 new
    citizen(5, updated_at=FEB), citizen(5, status="deceased", date_of_death="2025-02-20", updated_at=MAR),
    citizen(6), citizen(6),                                          # the same row twice
    citizen(7, full_name="Trần Văn Bảy"), citizen(7, full_name="Trần Thị Bảy"),  # same instant: the later wins
    citizen(20, cccd="123"), citizen(21, sex="X"),                   # 2 rejected
]
FIRST_COUNTS = (13, 8, 0, 3, 2)
"""(read, new, changed, unchanged, rejected) of FIRST into an empty table, by hand: 8 keys (0-7) new, the older
or earlier version of 5, 6 and 7 unchanged, 20 and 21 rejected."""
FIRST_DISTINCT = [r for at, r in enumerate(FIRST) if at not in (5, 7, 9)]
FIRST_DISTINCT_COUNTS = (10, 8, 0, 0, 2)
"""FIRST without the versions that lose: every key once, the same rows win."""


@pytest.mark.parametrize("fast_first_load", [True, False], ids=["copy-into-raw", "stage-and-merge"])
@pytest.mark.parametrize(("records", "expected"), [(FIRST, FIRST_COUNTS), (FIRST_DISTINCT, FIRST_DISTINCT_COUNTS)],
                         ids=["repeated-keys", "distinct-keys"])
def test_each_count_of_a_first_load_is_what_happened_to_its_rows(
    fresh_db_config: KhoConfig, fast_first_load: bool, records: list[Record], expected: tuple[int, ...]
) -> None:
    load_batch(fresh_db_config, [])  # the raw table exists and is empty
    entry = load_batch(fresh_db_config, records, fast_first_load=fast_first_load, expect_direct=fast_first_load)
    assert counts(entry) == expected
    assert ledger_row(fresh_db_config, entry.batch_id) == expected
    assert outcome_in_database(fresh_db_config, entry.batch_id) == (8, 0, 2)
    assert raw_rows(fresh_db_config) == 8
    assert scalar(fresh_db_config, "SELECT string_agg(status || ':' || full_name, ',' ORDER BY right(cccd, 1))"
                                   " FROM raw.population__citizens WHERE right(cccd, 1) IN ('5', '7')"
                                   ) == "deceased:Trần Văn Số 5,alive:Trần Thị Bảy"


SWALLOW = """
    CREATE FUNCTION public.swallow_marked_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.full_name LIKE '%(swallowed)' THEN RETURN NULL; END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER swallow BEFORE INSERT ON raw.population__citizens
        FOR EACH ROW EXECUTE FUNCTION public.swallow_marked_rows();
"""
"""A trigger that silently drops marked rows on their way into the raw table: rows lost between COPY and merge."""


def swallowing_table(config: KhoConfig, *, empty: bool) -> None:
    """The raw table with the swallowing trigger; holding citizens 0-4 unless `empty` (a first load then)."""
    load_batch(config, [] if empty else [citizen(i) for i in range(5)])
    with connect(config.warehouse, autocommit=True) as conn:
        conn.execute(SWALLOW)


def state(config: KhoConfig) -> tuple[object, ...]:
    return (raw_rows(config), scalar(config, "SELECT count(*) FROM kho.load_ledger"),
            scalar(config, "SELECT count(*) FROM kho.quarantine"))


@pytest.mark.parametrize("empty", [True, False], ids=["copy-into-raw", "stage-and-merge"])
def test_rows_lost_on_the_way_to_the_raw_table_fail_the_batch_naming_it(fresh_db_config: KhoConfig,
                                                                        empty: bool) -> None:
    swallowing_table(fresh_db_config, empty=empty)
    before = state(fresh_db_config)
    batch = [citizen(i) for i in range(3, 9)] + [citizen(9, full_name="Trần Văn (swallowed)"),
                                                 citizen(10, full_name="Trần Văn (swallowed)"), citizen(30, cccd="1")]
    with pytest.raises(LedgerMismatch) as refused:
        load_batch(fresh_db_config, batch, expect_direct=empty)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("registry population, entity citizens, batch ")
    assert "read 9 vs new " in message and "load_ledger_adds_up" in message
    assert state(fresh_db_config) == before, "a refused batch left something behind"


def test_kho_load_reports_a_ledger_mismatch_in_one_line(fresh_db_config: KhoConfig, tmp_path: Path) -> None:
    swallowing_table(fresh_db_config, empty=False)
    path = write_export_csv(tmp_path / "citizens.csv",
                            [citizen(i) for i in range(8)] + [citizen(8, full_name="Trần Văn (swallowed)")])
    env = {**os.environ, **fresh_db_config.child_env(), "KHO_PG_PASSWORD": fresh_db_config.warehouse.password()}
    done = subprocess.run(
        [sys.executable, "-m", "kho.cli", "load", "population", "citizens", str(path), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("kho: error: registry population, entity citizens, batch ")
    assert "read 9 vs new 3 + changed 0 + unchanged 5 + rejected 0" in lines[0]
    assert raw_rows(fresh_db_config) == 5
