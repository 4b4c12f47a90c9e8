"""API syncs end to end: the real simulator over HTTP (faults, rate limits, drift) into a real warehouse.

Each test builds a small seeded world, serves it with `serve_in_thread` and syncs it with `sync_api` into an empty
database, then compares what was committed with what the world serves and with its ground truth of defects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest

from kho.config import KhoConfig
from kho.errors import ContractError
from kho.extract.api import RetryPolicy
from kho.load.batch import LedgerEntry
from kho.load.pipeline import SyncOptions, sync_api
from kho.simulator import World
from kho.simulator import calendar as cal
from kho.simulator.defects import ALL_DEFECT_KINDS, DRIFT_KINDS, Injector
from kho.simulator.faults import FaultSpec
from kho.simulator.generate import WorldSpec, engine
from kho.simulator.server import ServerOptions, serve_in_thread
from kho.sources import REGISTRIES, entities_of, get_entity
from kho.sources.contract import Entity, Field
from kho.sources.population import CITIZENS
from kho.warehouse.connection import connect

pytestmark = pytest.mark.integration

SEED = 20250701
ROW_DEFECTS = ALL_DEFECT_KINDS - DRIFT_KINDS
FAST_RETRY = RetryPolicy(max_attempts=12, base_delay_s=0.01, max_delay_s=0.05, max_wait_s=0.05, deadline_s=60)
"""Real sleeps, but short: a 429's one-second Retry-After is cut to 50 ms so the tests stay quick."""
SMALL = SyncOptions(page_size=100, pages_per_batch=3, lookback=dt.timedelta(days=1), retry=FAST_RETRY)
"""Small pages and checkpoints so every sync crosses several batch boundaries."""


def build(days: int = 3, defect_rate: float = 0.03, kinds: frozenset[str] = ROW_DEFECTS) -> World:
    return World.build(WorldSpec(SEED, citizens=1500, days=days, defect_rate=defect_rate, defect_kinds=kinds))


@contextmanager
def serving(world: World, config: KhoConfig, **options: Any) -> Iterator[KhoConfig]:
    """The world behind OAuth2 on a free port, and `config` pointed at it."""
    server_options = ServerOptions(credentials=config.ensure_registry_credentials(), **options)
    with serve_in_thread(world, options=server_options) as simulator:
        yield dataclasses.replace(config, simulator_port=simulator.port)


def rows(config: KhoConfig, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def raw_state(config: KhoConfig, entity: Entity) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Contract fields of the raw table, by key."""
    columns = ", ".join(f'"{f.name}"' for f in entity.fields)
    result: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows(config, f"SELECT {columns} FROM raw.{entity.raw_table}"):
        record = dict(zip(entity.field_names, row, strict=True))
        result[tuple(record[k] for k in entity.key)] = record
    return result


def _typed(entity: Entity, record: dict[str, str | None]) -> dict[str, Any]:
    """A served record as the raw table should hold it, by hand from its wire text (trimmed, blank = null, names
    to NFC), not by the contract code the loader itself runs."""
    parse: dict[str, Callable[[str, Field], Any]] = {
        "text": lambda text, f: unicodedata.normalize("NFC", text) if f.normalise_nfc else text,
        "date": lambda text, f: dt.datetime.strptime(text, f.format or "%Y-%m-%d").date(),
        "timestamptz": lambda text, _: _instant(text),
        "integer": lambda text, _: int(text),
        "numeric": lambda text, _: Decimal(text),
        "boolean": lambda text, _: text.lower() in ("true", "t", "1", "yes"),
    }
    typed: dict[str, Any] = {}
    for f in entity.fields:
        text = (record.get(f.name) or "").strip()
        typed[f.name] = parse[f.type](text, f) if text else None
    return typed


def _instant(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _identity(record: dict[str, str | None]) -> str:
    return repr(sorted(record.items()))


def accepted_served(world: World, entity: Entity, served: list[dict[str, str | None]] | None = None
                    ) -> list[dict[str, str | None]]:
    """What the world serves (cursor order; or the part of it given) minus the records its ground truth says must
    be quarantined: the simulator names the defects of each row it serves, so the contract check under test is not
    asked."""
    rejected = {_identity(copy) for row in engine(world.spec).snapshot(entity, world.day)
                if any(d.expected_reason_code for d in row.defects) for copy in row.copies}
    return [r for r in (world.snapshot(entity) if served is None else served) if _identity(r) not in rejected]


def served_versions(world: World, entity: Entity) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Accepted served records, typed, keeping per key every version tied at the newest updated_at (a conflicting
    update serves two; either may win the merge)."""
    newest: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in (_typed(entity, r) for r in accepted_served(world, entity)):
        key = tuple(record[k] for k in entity.key)
        kept = newest.get(key)
        if kept is None or record[entity.cursor] > kept[0][entity.cursor]:
            newest[key] = [record]
        elif record[entity.cursor] == kept[0][entity.cursor]:
            kept.append(record)
    return newest


def quarantined(config: KhoConfig, entity: Entity) -> set[tuple[str, str]]:
    return set(rows(config, "SELECT DISTINCT record_key, reason_code FROM kho.quarantine WHERE registry = %s "
                            "AND entity = %s", (entity.registry, entity.name)))


def assert_matches_world(config: KhoConfig, world: World, entity: Entity,
                         earlier: frozenset[tuple[Any, ...]] = frozenset()) -> frozenset[tuple[Any, ...]]:
    """Every accepted served record is in the raw table in its newest version, and the raw table holds no key
    that was never served and accepted (a key the registry stopped serving, e.g. because its newest version
    arrived with a malformed id, keeps its last accepted row). Returns the keys served so far."""
    raw, expected = raw_state(config, entity), served_versions(world, entity)
    missing = sorted(set(expected) - set(raw))
    assert not missing, f"{entity.qualified_name}: {len(missing)} served keys missing, e.g. {missing[:3]}"
    wrong = [key for key, versions in expected.items() if raw[key] not in versions]
    assert not wrong, f"{entity.qualified_name}: {len(wrong)} rows differ, e.g. {raw[wrong[0]]} vs {expected[wrong[0]]}"
    extra = set(raw) - set(expected) - earlier
    assert not extra, f"{entity.qualified_name}: raw keys the world never served: {sorted(extra)[:3]}"
    return earlier | frozenset(expected)


def assert_ledger_adds_up(config: KhoConfig, entity: Entity) -> None:
    """Per batch read = new + changed + unchanged + rejected, and every raw row was new in exactly one batch."""
    batches = rows(config, "SELECT rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected FROM "
                           "kho.load_ledger WHERE registry = %s AND entity = %s", (entity.registry, entity.name))
    assert batches and all(r == n + c + u + j for r, n, c, u, j in batches)
    assert sum(b[1] for b in batches) == len(raw_state(config, entity))


def expected_quarantine(world: World, entity: Entity) -> set[tuple[str, str]]:
    return {("|".join(d.key), code) for d in world.ground_truth
            if d.qualified_entity == entity.qualified_name and (code := d.expected_reason_code) is not None}


def watermark(config: KhoConfig, entity: Entity) -> dt.datetime | None:
    found = rows(config, "SELECT cursor_value FROM kho.watermarks WHERE registry = %s AND entity = %s",
                 (entity.registry, entity.name))
    return found[0][0] if found else None


@pytest.mark.parametrize("registry", [r.slug for r in REGISTRIES])
def test_a_full_load_then_incremental_days_reach_exactly_the_served_state(
    fresh_db_config: KhoConfig, registry: str
) -> None:
    world = build(days=3)
    entities = entities_of(registry)
    with serving(world, fresh_db_config) as config:
        served: dict[str, frozenset[tuple[Any, ...]]] = {e.name: frozenset() for e in entities}
        for day in range(4):
            world.advance(day)
            for entity in entities:
                sync_api(config, entity, SMALL)
                served[entity.name] = assert_matches_world(config, world, entity, served[entity.name])
    for entity in entities:
        assert quarantined(config, entity) == expected_quarantine(world, entity), entity.qualified_name
        assert_ledger_adds_up(config, entity)
    assert len(rows(config, "SELECT 1 FROM kho.load_ledger WHERE rows_read > 0")) > len(entities)


def test_a_rerun_with_no_new_data_changes_nothing(fresh_db_config: KhoConfig) -> None:
    world = build(days=0)
    with serving(world, fresh_db_config) as config:
        sync_api(config, CITIZENS, SMALL)
        before = rows(config, "SELECT md5(string_agg(_row_hash::text || ':' || _batch_id, ',' ORDER BY cccd)) "
                              "FROM raw.population__citizens")
        mark = watermark(config, CITIZENS)
        again = sync_api(config, CITIZENS, SMALL)
    assert sum(e.rows_new + e.rows_changed for e in again) == 0
    assert all(e.rows_read == e.rows_unchanged + e.rows_rejected for e in again)
    assert rows(config, "SELECT md5(string_agg(_row_hash::text || ':' || _batch_id, ',' ORDER BY cccd)) "
                        "FROM raw.population__citizens") == before
    assert watermark(config, CITIZENS) == mark


def test_server_errors_at_20_percent_and_a_tight_rate_limit_still_reach_the_served_state(
    fresh_db_config: KhoConfig,
) -> None:
    world = build(days=1)
    faults = FaultSpec(error_rate=0.2, seed=4)
    with serving(world, fresh_db_config, rate_per_s=40, burst=2, faults=faults) as config:
        for day in (0, 1):
            world.advance(day)
            for entity in entities_of("population"):
                sync_api(config, entity, SMALL)
    for entity in entities_of("population"):
        assert_matches_world(config, world, entity)
        assert quarantined(config, entity) == expected_quarantine(world, entity)
        assert_ledger_adds_up(config, entity)


def test_a_dropped_connection_mid_paging_is_retried(fresh_db_config: KhoConfig) -> None:
    world = build(days=0)
    with serving(world, fresh_db_config, faults=FaultSpec(drop_rate=0.2, seed=9)) as config:
        entries = sync_api(config, CITIZENS, SMALL)
    assert len(entries) > 1
    assert_matches_world(config, world, CITIZENS)
    assert_ledger_adds_up(config, CITIZENS)


class WorkerDied(Exception):
    """Stands for a worker killed in the middle of a batch."""


def test_a_crash_between_checkpoints_keeps_whole_batches_and_the_next_sync_completes(
    fresh_db_config: KhoConfig,
) -> None:
    world = build(days=0)

    def die_on_page_8(pages: int, _rows: int) -> None:
        if pages == 8:
            raise WorkerDied

    with serving(world, fresh_db_config) as config:
        with pytest.raises(WorkerDied):
            sync_api(config, CITIZENS, dataclasses.replace(SMALL, on_page=die_on_page_8))
        committed = rows(config, "SELECT batch_id, rows_read, rows_new, cursor_to FROM kho.load_ledger "
                                 "ORDER BY batch_id")
        assert [r[1] for r in committed] == [300, 300]  # pages 1-6 in two whole batches; 7-8 rolled back
        first_600 = world.snapshot(CITIZENS)[:600]
        assert set(raw_state(config, CITIZENS)) == {(r["cccd"],) for r in accepted_served(world, CITIZENS, first_600)}
        assert len(raw_state(config, CITIZENS)) == sum(r[2] for r in committed)
        assert watermark(config, CITIZENS) == committed[-1][3] == _instant(str(first_600[-1]["updated_at"]))
        assert rows(config, "SELECT DISTINCT _batch_id FROM raw.population__citizens ORDER BY 1") == \
            [(r[0],) for r in committed]
        resumed = sync_api(config, CITIZENS, SMALL)
    assert resumed[0].cursor_from == committed[-1][3] - SMALL.lookback
    assert_matches_world(config, world, CITIZENS)
    assert quarantined(config, CITIZENS) == expected_quarantine(world, CITIZENS)
    assert_ledger_adds_up(config, CITIZENS)


def test_a_backfill_loads_only_its_interval_and_never_moves_the_watermark_back_or_past_a_gap(
    fresh_db_config: KhoConfig,
) -> None:
    world = build(days=3, defect_rate=0.0)
    world.advance(3)
    since = dt.datetime.fromtimestamp(cal.day_start(1), dt.UTC)
    until = dt.datetime.fromtimestamp(cal.day_start(3), dt.UTC)
    low, high = cal.timestamp(cal.day_start(1)), cal.timestamp(cal.day_start(3))
    in_interval = {r["cccd"] for r in world.snapshot(CITIZENS) if low <= str(r["updated_at"]) < high}
    assert in_interval
    with serving(world, fresh_db_config) as config:
        entries = sync_api(config, CITIZENS, dataclasses.replace(SMALL, since=since, until=until))
        assert set(raw_state(config, CITIZENS)) == {(k,) for k in in_interval}
        assert sum(e.rows_read for e in entries) == len(in_interval)
        assert entries[0].cursor_from == since
        assert watermark(config, CITIZENS) is None  # the interval starts after a gap: the watermark holds
        full = sync_api(config, CITIZENS, SMALL)
        mark = watermark(config, CITIZENS)
        assert mark is not None and mark >= until
        sync_api(config, CITIZENS, dataclasses.replace(SMALL, since=since, until=until))
        assert watermark(config, CITIZENS) == mark  # a backfill never moves the watermark back
    assert full and len(raw_state(config, CITIZENS)) == len(served_versions(world, CITIZENS))


def ledger_of(config: KhoConfig, entity: Entity) -> list[tuple[Any, ...]]:
    return rows(config, "SELECT batch_id, unknown_fields FROM kho.load_ledger WHERE registry = %s AND entity = %s "
                        "ORDER BY batch_id", (entity.registry, entity.name))


def test_schema_drift_keeps_an_added_field_and_rejects_a_batch_missing_a_required_one(
    fresh_db_config: KhoConfig,
) -> None:
    spec = WorldSpec(SEED, citizens=1500, days=3, defect_rate=0.02)
    world = World.build(spec)
    drifts = {d.kind: d for d in Injector(spec.seed, spec.defect_rate, spec.defect_kinds).drifts}
    added, renamed = drifts["schema_drift_added_field"], drifts["schema_drift_renamed_field"]
    added_entity = get_entity(*added.entity.split("."))
    renamed_entity = get_entity(*renamed.entity.split("."))
    with serving(world, fresh_db_config) as config:
        for entity in (added_entity, renamed_entity):
            sync_api(config, entity, SMALL)
        world.advance(1)
        entries = sync_api(config, added_entity, SMALL)
        assert any(added.field in e.unknown_fields for e in entries)
        assert any(added.field in fields for _, fields in ledger_of(config, added_entity))
        extras = rows(config, f"SELECT count(*) FROM raw.{added_entity.raw_table} WHERE _extra ? %s",
                      (added.field,))
        assert extras[0][0] > 0
        sync_api(config, renamed_entity, SMALL)
        served_before = frozenset(served_versions(world, renamed_entity))
        before, mark = ledger_of(config, renamed_entity), watermark(config, renamed_entity)
        raw_before = raw_state(config, renamed_entity)
        world.advance(2)
        with pytest.raises(ContractError, match=rf"registry {renamed_entity.registry}.*batch \d+.*{renamed.field}"):
            sync_api(config, renamed_entity, SMALL)
        assert ledger_of(config, renamed_entity) == before and watermark(config, renamed_entity) == mark
        assert raw_state(config, renamed_entity) == raw_before
        world.advance(3)  # the registry is back to its contract: the day-2 changes load on the next sync
        sync_api(config, renamed_entity, SMALL)
    assert_matches_world(config, world, renamed_entity, served_before)


def test_sync_returns_one_ledger_entry_per_checkpoint(fresh_db_config: KhoConfig) -> None:
    world = build(days=0, defect_rate=0.0)
    with serving(world, fresh_db_config) as config:
        entries = sync_api(config, CITIZENS, SMALL)
    assert all(isinstance(e, LedgerEntry) for e in entries)
    assert sum(e.rows_read for e in entries) == world.count(CITIZENS)
    assert len(entries) == -(-world.count(CITIZENS) // (SMALL.page_size * SMALL.pages_per_batch))
    assert [e.cursor_from for e in entries[1:]] == [e.cursor_to for e in entries[:-1]]
