"""The loader against a real primary + standby: counts, merge semantics, quarantine and atomicity."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pytest

from kho.config import KhoConfig
from kho.errors import ContractError
from kho.load.batch import BatchLoader, LedgerEntry
from kho.load.pipeline import load_file
from kho.sources.identity import cccd_prefix
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect, connect_standby, wait_for_standby

pytestmark = pytest.mark.integration


def citizen(i: int, **changes: str | None) -> dict[str, str | None]:
    record: dict[str, str | None] = {
        "cccd": cccd_prefix("74", 1980 + i % 40, "M" if i % 2 else "F") + f"{i:06d}",
        "full_name": f"Trần Văn Số {i}",
        "date_of_birth": f"{1980 + i % 40}-01-15",
        "sex": "M" if i % 2 else "F",
        "ethnicity": "Kinh",
        "birth_province_code": "74",
        "hometown_province_code": "38",
        "permanent_commune_code": "25747",
        "status": "alive",
        "date_of_death": None,
        "updated_at": "2025-01-01T00:00:00Z",
    }
    record.update(changes)
    return record


def load(config: KhoConfig, records: list[dict[str, str | None]]) -> LedgerEntry:
    with connect(config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api")
        if records:
            loader.add(pa.Table.from_pylist(records))
        return loader.finish()


def scalar(config: KhoConfig, query: str) -> object:
    with connect(config.warehouse, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def raw_rows(config: KhoConfig) -> int:
    """Rows in the raw table; 0 when it does not exist."""
    if scalar(config, "SELECT to_regclass('raw.population__citizens')") is None:
        return 0
    return int(scalar(config, "SELECT count(*) FROM raw.population__citizens"))  # type: ignore[call-overload]


def test_first_batch_inserts_every_valid_row(fresh_db_config: KhoConfig) -> None:
    entry = load(fresh_db_config, [citizen(i) for i in range(50)])
    assert (entry.rows_read, entry.rows_new, entry.rows_changed, entry.rows_unchanged) == (50, 50, 0, 0)
    assert scalar(fresh_db_config, "SELECT count(*) FROM raw.population__citizens") == 50
    assert scalar(fresh_db_config, "SELECT rows_loaded FROM kho.load_ledger") == 50


def test_reloading_identical_rows_counts_them_unchanged(fresh_db_config: KhoConfig) -> None:
    load(fresh_db_config, [citizen(i) for i in range(20)])
    second = load(fresh_db_config, [citizen(i) for i in range(20)])
    assert (second.rows_new, second.rows_changed, second.rows_unchanged) == (0, 0, 20)
    assert scalar(fresh_db_config, "SELECT count(DISTINCT _batch_id) FROM raw.population__citizens") == 1


def test_a_changed_row_is_rewritten_and_counted_changed(fresh_db_config: KhoConfig) -> None:
    load(fresh_db_config, [citizen(i) for i in range(5)])
    moved = citizen(3, permanent_commune_code="25741", updated_at="2025-02-01T00:00:00Z")
    entry = load(fresh_db_config, [citizen(i) for i in range(5) if i != 3] + [moved])
    assert (entry.rows_new, entry.rows_changed, entry.rows_unchanged) == (0, 1, 4)
    assert scalar(fresh_db_config,
                  f"SELECT permanent_commune_code FROM raw.population__citizens WHERE cccd = '{moved['cccd']}'"
                  ) == "25741"


def test_an_older_version_never_overwrites_a_newer_one(fresh_db_config: KhoConfig) -> None:
    load(fresh_db_config,
         [citizen(1, updated_at="2025-03-01T00:00:00Z", status="deceased", date_of_death="2025-02-20")])
    entry = load(fresh_db_config, [citizen(1, updated_at="2025-01-01T00:00:00Z")])
    assert (entry.rows_changed, entry.rows_unchanged) == (0, 1)
    assert scalar(fresh_db_config, "SELECT status FROM raw.population__citizens") == "deceased"


def test_duplicate_keys_in_one_batch_keep_the_newest_and_count_the_rest(fresh_db_config: KhoConfig) -> None:
    died = citizen(1, status="deceased", date_of_death="2025-04-20", updated_at="2025-05-01T00:00:00Z")
    records = [citizen(1), died, citizen(1)]
    entry = load(fresh_db_config, records)
    assert (entry.rows_read, entry.rows_new, entry.rows_unchanged) == (3, 1, 2)
    assert scalar(fresh_db_config, "SELECT status FROM raw.population__citizens") == "deceased"


def test_rejected_rows_are_quarantined_with_reason_and_raw_payload(fresh_db_config: KhoConfig) -> None:
    bad_cccd = citizen(1, cccd="07419")
    no_name = citizen(2, full_name=None)
    entry = load(fresh_db_config, [citizen(0), bad_cccd, no_name])
    assert (entry.rows_read, entry.rows_new, entry.rows_rejected) == (3, 1, 2)
    with connect(fresh_db_config.warehouse, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT record_key, reason_code, reason, payload, batch_id FROM kho.quarantine ORDER BY reason_code"
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("07419", "malformed"), (no_name["cccd"], "missing_required")]
    assert "full_name" in rows[1][2]
    assert rows[0][3]["cccd"] == "07419" and rows[0][3]["full_name"] == bad_cccd["full_name"]
    assert {r[4] for r in rows} == {entry.batch_id}


def test_a_batch_missing_a_required_column_is_rejected_whole(fresh_db_config: KhoConfig) -> None:
    records = [{k: v for k, v in citizen(i).items() if k != "sex"} for i in range(3)]
    with pytest.raises(ContractError, match=r"population.*sex.*batch"):
        load(fresh_db_config, records)
    assert scalar(fresh_db_config, "SELECT count(*) FROM kho.load_ledger") == 0
    assert raw_rows(fresh_db_config) == 0


def test_a_failure_mid_batch_leaves_nothing_behind(fresh_db_config: KhoConfig) -> None:
    with connect(fresh_db_config.warehouse) as conn, pytest.raises(RuntimeError), conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api")
        loader.add(pa.Table.from_pylist([citizen(i) for i in range(10)] + [citizen(99, cccd="1")]))
        raise RuntimeError("worker died before finish()")
    assert scalar(fresh_db_config, "SELECT count(*) FROM kho.load_ledger") == 0
    assert scalar(fresh_db_config, "SELECT count(*) FROM kho.quarantine") == 0
    assert raw_rows(fresh_db_config) == 0


def test_loaded_rows_reach_the_standby(fresh_db_config: KhoConfig) -> None:
    load(fresh_db_config, [citizen(i) for i in range(30)])
    wait_for_standby(fresh_db_config.warehouse)
    with connect_standby(fresh_db_config.warehouse) as standby:
        row = standby.execute("SELECT count(*) FROM raw.population__citizens").fetchone()
    assert row is not None and row[0] == 30


def write_export_csv(path: Path, records: list[dict[str, str | None]]) -> Path:
    """A CSV export as registries deliver it: header row, dates written dd/mm/yyyy."""
    def ddmmyyyy(value: str | None) -> str:
        return "" if not value else "/".join(reversed(value.split("-")))

    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(records[0]))
        for r in records:
            writer.writerow([ddmmyyyy(v) if k in ("date_of_birth", "date_of_death") else ("" if v is None else v)
                             for k, v in r.items()])
    return path


def test_a_csv_export_with_ddmmyyyy_dates_loads_as_one_batch(fresh_db_config: KhoConfig, tmp_path: Path) -> None:
    records = [citizen(i) for i in range(40)] + [citizen(40, cccd="123")]
    entry = load_file(fresh_db_config, CITIZENS, write_export_csv(tmp_path / "citizens.csv", records))
    assert (entry.source, entry.rows_read, entry.rows_new, entry.rows_rejected) == ("file", 41, 40, 1)
    assert scalar(fresh_db_config, "SELECT min(date_of_birth)::text FROM raw.population__citizens") == "1980-01-15"


def test_reloading_the_same_export_changes_nothing(fresh_db_config: KhoConfig, tmp_path: Path) -> None:
    path = write_export_csv(tmp_path / "citizens.csv", [citizen(i) for i in range(25)])
    load_file(fresh_db_config, CITIZENS, path)
    again = load_file(fresh_db_config, CITIZENS, path)
    assert (again.rows_read, again.rows_new, again.rows_changed, again.rows_unchanged) == (25, 0, 0, 25)


def load_with(config: KhoConfig, records: list[dict[str, str | None]], *, fast_first_load: bool) -> LedgerEntry:
    with connect(config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api", fast_first_load=fast_first_load)
        loader.add(pa.Table.from_pylist(records))
        return loader.finish()


RAW_CONTENT = ("SELECT coalesce(jsonb_agg(to_jsonb(r) - '_loaded_at' - '_batch_id' - '_first_batch_id' ORDER BY cccd),"
               " '[]') FROM raw.population__citizens AS r")


def counts(entry: LedgerEntry) -> tuple[int, int, int, int, int]:
    return entry.rows_read, entry.rows_new, entry.rows_changed, entry.rows_unchanged, entry.rows_rejected


@pytest.mark.parametrize("duplicates", [False, True], ids=["distinct-keys", "repeated-keys"])
def test_first_load_into_an_empty_table_matches_the_general_merge(fresh_db_config: KhoConfig,
                                                                  duplicates: bool) -> None:
    died = citizen(3, status="deceased", date_of_death="2025-04-20", updated_at="2025-05-01T00:00:00Z")
    records = [citizen(i) for i in range(30)] + [citizen(99, cccd="1"), citizen(98, sex="X")]
    if duplicates:
        records += [citizen(5), died, citizen(3)]
    general = load_with(fresh_db_config, records, fast_first_load=False)
    general_rows = scalar(fresh_db_config, RAW_CONTENT)
    with connect(fresh_db_config.warehouse, autocommit=True) as conn:
        conn.execute("TRUNCATE raw.population__citizens")
    fast = load_with(fresh_db_config, records, fast_first_load=True)
    assert counts(fast) == counts(general)
    assert scalar(fresh_db_config, RAW_CONTENT) == general_rows
    assert (fast.rows_rejected, fast.rows_unchanged) == (2, 3 if duplicates else 0)


def test_first_load_keeps_the_key_and_batch_index(fresh_db_config: KhoConfig) -> None:
    load_with(fresh_db_config, [citizen(i) for i in range(10)], fast_first_load=True)
    indexes = scalar(fresh_db_config, "SELECT array_agg(indexdef ORDER BY indexname) FROM pg_indexes"
                                      " WHERE schemaname = 'raw' AND tablename = 'population__citizens'")
    assert indexes == [
        "CREATE INDEX population__citizens__batch_idx ON raw.population__citizens USING btree (_batch_id)",
        "CREATE UNIQUE INDEX population__citizens_pkey ON raw.population__citizens USING btree (cccd)",
    ]


def test_a_second_load_after_a_fast_first_load_is_all_unchanged(fresh_db_config: KhoConfig, tmp_path: Path) -> None:
    path = write_export_csv(tmp_path / "citizens.csv", [citizen(i) for i in range(25)] + [citizen(1)])
    first = load_file(fresh_db_config, CITIZENS, path)
    again = load_file(fresh_db_config, CITIZENS, path)
    assert counts(first) == (26, 25, 0, 1, 0)
    assert counts(again) == (26, 0, 0, 26, 0)


def test_the_cursor_covers_every_table_of_a_batch_and_its_rejects(fresh_db_config: KhoConfig) -> None:
    with connect(fresh_db_config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api")
        loader.add(pa.Table.from_pylist([citizen(1, updated_at="2025-03-01T00:00:00Z")]))
        loader.add(pa.Table.from_pylist([citizen(2, cccd="7", updated_at="2025-04-01T00:00:00Z"), citizen(3)]))
        entry = loader.finish()
    assert counts(entry) == (3, 2, 0, 0, 1)
    assert entry.cursor_to is not None and entry.cursor_to.isoformat() == "2025-04-01T00:00:00+00:00"


def test_the_row_hash_does_not_depend_on_the_session_time_zone(fresh_db_config: KhoConfig) -> None:
    load(fresh_db_config, [citizen(i) for i in range(10)])
    with connect(fresh_db_config.warehouse) as conn:
        conn.execute("SET TimeZone = 'Asia/Ho_Chi_Minh'")
        with conn.transaction():
            loader = BatchLoader(conn, CITIZENS, "api")
            loader.add(pa.Table.from_pylist([citizen(i) for i in range(10)]))
            entry = loader.finish()
    assert (entry.rows_changed, entry.rows_unchanged) == (0, 10)


AWKWARD_NAMES = ['Nguyễn "Tí" Văn', "Lê, Thị Hoa", "Trần\nVăn Nam", "Phạm \\ Văn", "Đỗ Văn;Hùng", "Ngô 'Bé' Na"]


@pytest.mark.parametrize("first_load", [True, False], ids=["copy-into-raw", "copy-into-stage"])
def test_text_that_needs_csv_quoting_is_stored_exactly(fresh_db_config: KhoConfig, first_load: bool) -> None:
    if not first_load:
        load(fresh_db_config, [citizen(100)])
    awkward = [citizen(i, full_name=name, note=f"ghi chú, số {i}") for i, name in enumerate(AWKWARD_NAMES)]
    plain = [citizen(50 + i) for i in range(3)]  # a table with nothing to quote is sent unquoted
    with connect(fresh_db_config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api")
        loader.add(pa.Table.from_pylist(awkward))
        loader.add(pa.Table.from_pylist(plain))
        entry = loader.finish()
    assert (entry.rows_new, entry.rows_rejected, loader.direct) == (len(awkward) + len(plain), 0, first_load)
    stored = scalar(fresh_db_config, "SELECT jsonb_object_agg(cccd, jsonb_build_array(full_name, _extra))"
                                     " FROM raw.population__citizens")
    expected = {r["cccd"]: [r["full_name"], {"note": r["note"]}] for r in awkward}
    expected.update({r["cccd"]: [r["full_name"], None] for r in plain})
    assert {k: v for k, v in stored.items() if k in expected} == expected  # type: ignore[union-attr]


def test_a_first_load_copies_into_the_raw_table_and_later_loads_into_a_stage(fresh_db_config: KhoConfig) -> None:
    with connect(fresh_db_config.warehouse) as conn:
        with conn.transaction():
            first = BatchLoader(conn, CITIZENS, "api")
            first.add(pa.Table.from_pylist([citizen(i) for i in range(5)]))
            first.finish()
        with conn.transaction():
            second = BatchLoader(conn, CITIZENS, "api")
            second.add(pa.Table.from_pylist([citizen(i) for i in range(5, 8)]))
            entry = second.finish()
    assert (first.direct, second.direct) == (True, False)
    assert counts(entry) == (3, 3, 0, 0, 0)
    defaults = scalar(fresh_db_config, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'raw'"
                                       " AND table_name = 'population__citizens' AND column_name LIKE '%batch_id'"
                                       " AND column_default IS NOT NULL")
    assert defaults == 0, "the first load's batch id defaults outlived it"


def test_a_failed_first_load_leaves_the_empty_table_whole(fresh_db_config: KhoConfig) -> None:
    load(fresh_db_config, [])  # the raw table exists, empty, with its key and batch index
    shape = ("SELECT (SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'raw'"
             " AND tablename = 'population__citizens'), (SELECT count(*) FROM information_schema.columns"
             " WHERE table_schema = 'raw' AND table_name = 'population__citizens' AND column_default IS NOT NULL)")
    with connect(fresh_db_config.warehouse, autocommit=True) as conn:
        before = conn.execute(shape).fetchone()
    with connect(fresh_db_config.warehouse) as conn, pytest.raises(ContractError), conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api")
        assert loader.direct
        loader.add(pa.Table.from_pylist([citizen(i) for i in range(10)]))
        loader.add(pa.Table.from_pylist([{k: v for k, v in citizen(20).items() if k != "sex"}]))
    with connect(fresh_db_config.warehouse, autocommit=True) as conn:
        assert conn.execute(shape).fetchone() == before
    assert raw_rows(fresh_db_config) == 0
    assert counts(load(fresh_db_config, [citizen(i) for i in range(10)])) == (10, 10, 0, 0, 0)


def test_the_watermark_never_passes_the_moment_the_batch_started(fresh_db_config: KhoConfig) -> None:
    """A record stamped ahead of the loader's clock (within the contract's skew, so accepted) and one stamped in
    2199 (quarantined) must not move the watermark past changes the registry has not written yet."""
    import datetime as dt

    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = dt.datetime.now(dt.UTC)
    with connect(fresh_db_config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api")
        loader.add(pa.Table.from_pylist([citizen(1, updated_at=ahead),
                                         citizen(2, updated_at="2199-01-01T00:00:00Z")]))
        entry = loader.finish()
    after = dt.datetime.now(dt.UTC)
    assert (entry.rows_new, entry.rows_rejected) == (1, 1)
    watermark = scalar(fresh_db_config, "SELECT cursor_value FROM kho.watermarks WHERE entity = 'citizens'")
    assert isinstance(watermark, dt.datetime)
    assert before - dt.timedelta(seconds=1) <= watermark <= after
    assert entry.cursor_to == watermark
