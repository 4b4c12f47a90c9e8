"""`kho status` and `kho ledger` against a real warehouse: the numbers they print are the ledger's, the
quarantine's, the validations' and the publications' — rows written by the real loader, or by SQL where only a
state is needed (a validation's outcome, a publication's time, a batch of yesterday).

The expected figures are written by hand from what each test loads, never read back through kho's own queries.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pytest

from kho.cli import build_parser
from kho.config import KhoConfig
from kho.load.batch import BatchLoader, LedgerEntry
from kho.screen import local_day
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect
from tests.integration.test_load import citizen

pytestmark = pytest.mark.integration


def load(config: KhoConfig, records: list[dict[str, str | None]]) -> LedgerEntry:
    with connect(config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, CITIZENS, "api")
        loader.add(pa.Table.from_pylist(records))
        return loader.finish()


def run(config: KhoConfig, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """A kho command as the CLI runs it, on this test's database; its exit code and what it printed."""
    args = build_parser().parse_args(list(argv))
    code = args.handler(args, config)
    return code, capsys.readouterr().out


def section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


def row(lines: list[str], first: str) -> list[str]:
    return next(line.split() for line in lines if line.split()[:1] == [first])


@pytest.fixture
def a_day(fresh_db_config: KhoConfig) -> dict[str, Any]:
    """Today: two population batches by the loader (one with two rejects), a validation of each layer by how it
    ended, and two publications; yesterday: an insurance batch with a reject, and a failed validation."""
    config = fresh_db_config
    first = load(config, [citizen(0), citizen(1, cccd="07419"), citizen(2, full_name=None)])
    second = load(config, [citizen(0), citizen(3)])
    _, today, _ = local_day(dt.datetime.now(dt.UTC))
    yesterday = today - dt.timedelta(hours=1)
    with connect(config.warehouse, autocommit=True) as conn:
        old = conn.execute(
            "INSERT INTO kho.load_ledger (batch_id, registry, entity, source, started_at, finished_at, cursor_from, "
            "cursor_to, rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected) VALUES "
            "(nextval('kho.batch_id_seq'), 'insurance', 'participants', 'api', %s, %s, %s, %s, 7, 6, 0, 0, 1) "
            "RETURNING batch_id", (yesterday, yesterday, yesterday - dt.timedelta(days=1), yesterday)).fetchone()
        assert old is not None
        conn.execute("INSERT INTO kho.quarantine (batch_id, registry, entity, reason_code, reason, payload, "
                     "quarantined_at) VALUES (%s, 'insurance', 'participants', 'out_of_range', 'test', '{}', %s)",
                     (old[0], yesterday))
        for suite, state, at in (("raw.population__citizens", "passed", None),
                                 ("raw.population__citizens", "failed", None),
                                 ("raw.population__households", "passed", None),
                                 ("mart_population.golden_citizens", "warned", None),
                                 ("raw.insurance__participants", "failed", yesterday)):
            conn.execute(
                "INSERT INTO kho.quality_validations (run_id, suite_name, table_name, state, started_at, "
                "finished_at) VALUES ('t', %s, %s, %s, coalesce(%s, now()), coalesce(%s, now()))",
                (suite, suite, state, at, at))
        tables = {"mart_population.golden_citizens": {"rows": 3}, "mart_health.insurance_coverage_by_province": {}}
        conn.execute("INSERT INTO kho.publications (run_id, as_of, batch_seq, published_at, tables) VALUES "
                     "('night-1', '2026-11-28', 1, now() - interval '3 hours', %s), "
                     "('night-2', '2026-11-29', 2, now() - interval '1 hour', %s)",
                     (json.dumps(tables), json.dumps({"mart_population.golden_citizens": {"rows": 4}})))
    return {"first": first, "second": second, "old_batch": old[0]}


def test_status_prints_todays_ledger_per_registry_and_leaves_yesterday_out(
        fresh_db_config: KhoConfig, a_day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(fresh_db_config, capsys, "status")
    ledger = section(out, "Loaded today")
    # batch 1: 3 read = 1 new + 2 rejected; batch 2: 2 read = 1 new (citizen 3) + 1 unchanged (citizen 0)
    assert row(ledger, "population") == ["population", "2", "5", "2", "0", "1", "2"]
    assert row(ledger, "insurance") == ["insurance", "0", "0", "0", "0", "0", "0"], "its batch was yesterday"
    assert row(ledger, "total") == ["total", "2", "5", "2", "0", "1", "2"]


def test_status_counts_quarantine_by_reason_today_and_in_all(
        fresh_db_config: KhoConfig, a_day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(fresh_db_config, capsys, "status")
    quarantine = section(out, "Quarantine by reason")
    assert row(quarantine, "malformed") == ["malformed", "1", "1"]
    assert row(quarantine, "missing_required") == ["missing_required", "1", "1"]
    assert row(quarantine, "out_of_range") == ["out_of_range", "0", "1"]


def test_status_gives_todays_validations_per_layer_and_a_blocking_failure_needs_attention(
        fresh_db_config: KhoConfig, a_day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(fresh_db_config, capsys, "status")
    quality = section(out, "Quality today")
    assert row(quality, "raw") == ["raw", "2", "0", "1", "0", "0", "67%"]
    assert row(quality, "mart") == ["mart", "0", "1", "0", "0", "0", "0%"]
    needs = section(out, "Needs attention")
    assert any("1 validation(s) failed a blocking expectation today: raw.population__citizens" in line
               for line in needs)
    assert not any("raw.insurance__participants" in line for line in needs), "yesterday's failure is not today's"
    assert code == 1


def test_status_shows_each_published_datasets_newest_publication_and_its_age(
        fresh_db_config: KhoConfig, a_day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(fresh_db_config, capsys, "status")
    datasets = section(out, "Published datasets")
    golden = row(datasets, "mart_population.golden_citizens")
    coverage = row(datasets, "mart_health.insurance_coverage_by_province")
    assert golden[1:3] == ["2026-11-29", "#2"] and golden[-4:-2] == ["1", "h"]
    assert coverage[1:3] == ["2026-11-28", "#1"] and coverage[-4:-2] == ["3", "h"]
    assert not any("newest publication" in line for line in section(out, "Needs attention"))


def test_status_on_a_quiet_day_reads_every_warehouse_part_and_flags_none_of_them(
        fresh_db_config: KhoConfig, capsys: pytest.CaptureFixture[str]) -> None:
    """On an empty migrated database nothing of the warehouse's own figures is wrong: no part is unread."""
    load(fresh_db_config, [citizen(0)])
    _, out = run(fresh_db_config, capsys, "status")
    assert row(section(out, "Loaded today"), "population") == ["population", "1", "1", "1", "0", "0", "0"]
    assert section(out, "Quarantine by reason") == ["  nothing quarantined"]
    assert section(out, "Published datasets")[0].startswith("  nothing published yet")
    needs = section(out, "Needs attention") if "Needs attention" in out else []
    assert not any(line.strip().startswith("- warehouse:") or "validation" in line for line in needs)


def test_ledger_lists_batches_newest_first_with_counts_source_and_cursor(
        fresh_db_config: KhoConfig, a_day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(fresh_db_config, capsys, "ledger")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["BATCH", "ENTITY"]
    batches = [int(line.split()[0]) for line in lines[1:]]
    assert batches == sorted([a_day["first"].batch_id, a_day["second"].batch_id, a_day["old_batch"]], reverse=True)
    by_batch = {int(line.split()[0]): line.split() for line in lines[1:]}
    assert by_batch[a_day["second"].batch_id][1:3] == ["population.citizens", "api"]
    assert by_batch[a_day["second"].batch_id][5:10] == ["2", "1", "0", "1", "0"]
    assert by_batch[a_day["first"].batch_id][5:10] == ["3", "1", "0", "0", "2"]
    old = by_batch[a_day["old_batch"]]
    assert old[5:10] == ["7", "6", "0", "0", "1"] and ".." in old, "a cursor range from .. to"


def test_ledger_filters_by_registry_entity_since_and_limit(
        fresh_db_config: KhoConfig, a_day: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    def batches(*argv: str) -> list[int]:
        _, out = run(fresh_db_config, capsys, "ledger", *argv)
        return [int(line.split()[0]) for line in out.splitlines()[1:]]

    first, second, old = a_day["first"].batch_id, a_day["second"].batch_id, a_day["old_batch"]
    assert batches("--registry", "population") == [second, first]
    assert batches("--entity", "participants") == [old]
    assert batches("--registry", "insurance", "--entity", "participants") == [old]
    _, today, _ = local_day(dt.datetime.now(dt.UTC))
    assert sorted(batches("--since", today.isoformat())) == sorted([first, second])
    assert batches("--limit", "1") == [max(first, second, old)]
