"""Schema drift policies on both ways in: the registry API (the simulator over HTTP) and export files (`load_file`).

The world is clean except for one drift: on day 1 every civil-status and business record carries a field the
contract does not know (`WorldSpec.drift_entities`), and on day 2 the registries are back to their contracts.
Civil status freezes (a registration form that changed must be looked at before anything loads); business discards
the field (contact data nothing downstream reads) and reports it. KEEP_EXTRA is tested in test_sync.py.

Expected states come from the world's served records and the export files themselves, never from the loader.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kho.config import KhoConfig
from kho.errors import ContractError
from kho.extract.api import RetryPolicy
from kho.load.pipeline import SyncOptions, load_file, sync_api
from kho.simulator import World, WorldSpec
from kho.simulator.defects import ADDED_FIELD, DRIFT_ADDED_DAY
from kho.simulator.export import ExportFormat, export, file_name
from kho.simulator.server import ServerOptions, serve_in_thread
from kho.sources import entities_of, get_entity
from kho.sources.contract import Entity, SchemaDrift
from kho.warehouse.connection import connect

pytestmark = pytest.mark.integration

FROZEN, DISCARDING = entities_of("civil_status"), entities_of("business")
SPEC = WorldSpec(20250701, citizens=5000, days=2, defect_rate=0.01,
                 defect_kinds=frozenset({"schema_drift_added_field"}),
                 drift_entities=frozenset(e.qualified_name for e in (*FROZEN, *DISCARDING)))
"""Only the added-field drift: no row defect, so every record served is accepted and its key is unique."""
FAST_RETRY = RetryPolicy(max_attempts=12, base_delay_s=0.01, max_delay_s=0.05, max_wait_s=0.05, deadline_s=60)
"""Real sleeps, but short: a 429's one-second Retry-After is cut to 50 ms, as in test_sync.py."""
SMALL = SyncOptions(page_size=100, pages_per_batch=3, lookback=dt.timedelta(days=1), retry=FAST_RETRY)
"""Small pages and checkpoints, so a refused sync would have several batches to get wrong."""
FULL = dataclasses.replace(SMALL, full_refresh=True, lookback=dt.timedelta(0))
"""On the drift day a full re-read meets the added field in every record, however few changed that day."""
FILE_ENTITIES = {SchemaDrift.FREEZE: get_entity("civil_status", "marriages"),
                 SchemaDrift.DISCARD_EXTRA: get_entity("business", "enterprises")}
"""The entity of each policy whose day-1 export (a change feed) is not empty in SPEC's world."""


def added_field(entity: Entity) -> str:
    return ADDED_FIELD[entity.registry]


@contextmanager
def serving(world: World, config: KhoConfig) -> Iterator[KhoConfig]:
    """The world behind OAuth2 on a free port, and `config` pointed at it."""
    options = ServerOptions(credentials=config.ensure_registry_credentials())
    with serve_in_thread(world, options=options) as simulator:
        yield dataclasses.replace(config, simulator_port=simulator.port)


def rows(config: KhoConfig, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def state(config: KhoConfig, entity: Entity) -> dict[str, Any]:
    """Everything a batch of `entity` can leave behind: ledger rows, raw content (lineage included), quarantine,
    watermark. Equal before and after means the refused batch left no trace."""
    where = (entity.registry, entity.name)
    raw = f"raw.{entity.raw_table}"
    exists = rows(config, "SELECT to_regclass(%s) IS NOT NULL", (raw,))[0][0]
    return {
        "ledger": rows(config, "SELECT batch_id, rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected, "
                               "unknown_fields FROM kho.load_ledger WHERE registry = %s AND entity = %s "
                               "ORDER BY batch_id", where),
        "raw": rows(config, f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {raw} AS t")
        if exists else None,
        "quarantine": rows(config, "SELECT count(*) FROM kho.quarantine WHERE registry = %s AND entity = %s", where),
        "watermark": rows(config, "SELECT cursor_value, batch_id FROM kho.watermarks WHERE registry = %s "
                                  "AND entity = %s", where),
    }


def key_of(entity: Entity, record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(record[k]) for k in entity.key)


def raw_versions(config: KhoConfig, entity: Entity) -> dict[tuple[str, ...], str]:
    """Key → updated_at (the wire's `YYYY-MM-DDTHH:MM:SSZ`) of every raw row."""
    keys = ", ".join(f'"{k}"::text' for k in entity.key)
    found = rows(config, f"SELECT {keys}, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                         f"FROM raw.{entity.raw_table}")
    return {tuple(r[:-1]): r[-1] for r in found}


def served_versions(world: World, entity: Entity) -> dict[tuple[str, ...], str]:
    """Key → updated_at of every record the registry serves now (keys are unique in SPEC's world)."""
    served = world.snapshot(entity)
    versions = {key_of(entity, r): str(r["updated_at"]) for r in served}
    assert len(versions) == len(served), f"{entity.qualified_name}: SPEC's world should serve each key once"
    return versions


def extras(config: KhoConfig, entity: Entity) -> int:
    return int(rows(config, f"SELECT count(*) FROM raw.{entity.raw_table} WHERE _extra IS NOT NULL")[0][0])


def assert_refused(error: pytest.ExceptionInfo[ContractError], entity: Entity) -> None:
    """One line that names the registry, the entity and the unknown field, and says it was the FREEZE policy."""
    message = str(error.value)
    assert "\n" not in message, message
    expected = rf"registry {entity.registry}, entity {entity.name}, batch \d+: unknown field\(s\) {added_field(entity)}"
    assert re.search(expected, message), message
    assert "FREEZE" in message and "rejected" in message, message


# --- the API ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entity", FROZEN, ids=lambda e: e.name)
def test_freeze_refuses_a_drifted_api_sync_whole_and_loads_the_day_once_the_registry_is_back(
    fresh_db_config: KhoConfig, entity: Entity
) -> None:
    assert entity.drift is SchemaDrift.FREEZE
    world = World.build(SPEC)
    with serving(world, fresh_db_config) as config:
        sync_api(config, entity, SMALL)
        before = state(config, entity)
        world.advance(DRIFT_ADDED_DAY)
        assert all(added_field(entity) in r for r in world.snapshot(entity))
        for options in (SMALL, FULL):  # the scheduled incremental read, and a full re-read of the drifted day
            with pytest.raises(ContractError) as refused:
                sync_api(config, entity, options)
            assert_refused(refused, entity)
            assert state(config, entity) == before
        world.advance(DRIFT_ADDED_DAY + 1)  # back to the contract: the watermark held, so nothing of day 1 is lost
        sync_api(config, entity, SMALL)
    assert raw_versions(config, entity) == served_versions(world, entity)
    assert extras(config, entity) == 0


@pytest.mark.parametrize("entity", DISCARDING, ids=lambda e: e.name)
def test_discard_extra_loads_a_drifted_api_sync_without_the_field_and_reports_it_in_the_ledger(
    fresh_db_config: KhoConfig, entity: Entity
) -> None:
    assert entity.drift is SchemaDrift.DISCARD_EXTRA
    field = added_field(entity)
    world = World.build(SPEC)
    with serving(world, fresh_db_config) as config:
        sync_api(config, entity, SMALL)
        first = len(state(config, entity)["ledger"])
        world.advance(DRIFT_ADDED_DAY)
        entries = sync_api(config, entity, FULL)
        again = sync_api(config, entity, FULL)
    assert entries and all(e.unknown_fields == (field,) for e in entries)
    ledger = state(config, entity)["ledger"][first:]
    assert [r[-1] for r in ledger] == [[field]] * (len(entries) + len(again))
    assert raw_versions(config, entity) == served_versions(world, entity)
    assert extras(config, entity) == 0
    columns = rows(config, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' "
                           "AND table_name = %s", (entity.raw_table,))
    assert (field,) not in columns
    # Discarded means gone from the row hash too: re-reading the drifted day changes no row.
    assert sum(e.rows_new + e.rows_changed for e in again) == 0
    served = len(served_versions(world, entity))
    assert sum(e.rows_read for e in again) == sum(e.rows_unchanged for e in again) == served


# --- export files -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Day 0 (snapshot) and day 1 (the drifted change feed) of each file entity, as CSV and JSON Lines."""
    out = tmp_path_factory.mktemp("drift-exports")
    export(SPEC, out, entities=list(FILE_ENTITIES.values()), day=(0, DRIFT_ADDED_DAY), formats=("csv", "jsonl"))
    return out


def feed_records(exports: Path, entity: Entity) -> list[dict[str, Any]]:
    """The day-1 feed's records as the JSON Lines export holds them (the CSV carries the same records)."""
    path = exports / file_name(entity, DRIFT_ADDED_DAY, "jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records and all(added_field(entity) in r for r in records), f"{path.name} should carry the drift"
    return records


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_freeze_refuses_a_drifted_export_file_and_loads_nothing_of_it(
    fresh_db_config: KhoConfig, exports: Path, fmt: ExportFormat
) -> None:
    entity = FILE_ENTITIES[SchemaDrift.FREEZE]
    feed_records(exports, entity)
    drifted = exports / file_name(entity, DRIFT_ADDED_DAY, fmt)
    with pytest.raises(ContractError) as refused:  # into an empty warehouse: the first-load path
        load_file(fresh_db_config, entity, drifted)
    assert_refused(refused, entity)
    empty = {"ledger": [], "raw": [(0, None)], "quarantine": [(0,)], "watermark": []}  # the raw table as migrated
    assert state(fresh_db_config, entity) == empty
    load_file(fresh_db_config, entity, exports / file_name(entity, 0, fmt))
    before = state(fresh_db_config, entity)
    with pytest.raises(ContractError) as refused:  # onto loaded data: the merge path
        load_file(fresh_db_config, entity, drifted)
    assert_refused(refused, entity)
    assert state(fresh_db_config, entity) == before


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_discard_extra_loads_a_drifted_export_file_without_the_field_and_reports_it_in_the_ledger(
    fresh_db_config: KhoConfig, exports: Path, fmt: ExportFormat
) -> None:
    entity = FILE_ENTITIES[SchemaDrift.DISCARD_EXTRA]
    field = added_field(entity)
    feed = feed_records(exports, entity)
    snapshot = load_file(fresh_db_config, entity, exports / file_name(entity, 0, fmt))
    assert snapshot.unknown_fields == ()
    entry = load_file(fresh_db_config, entity, exports / file_name(entity, DRIFT_ADDED_DAY, fmt))
    assert entry.unknown_fields == (field,)
    assert (entry.rows_read, entry.rows_rejected) == (len(feed), 0)
    assert state(fresh_db_config, entity)["ledger"][-1][-1] == [field]
    loaded = raw_versions(fresh_db_config, entity)
    assert {key_of(entity, r): r["updated_at"] for r in feed}.items() <= loaded.items()
    assert len(loaded) == snapshot.rows_new + entry.rows_new
    assert extras(fresh_db_config, entity) == 0
