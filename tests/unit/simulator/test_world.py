"""The served world: cursor order, paging exactly once, advancing days, and agreement with the streams."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from kho.errors import ConfigError
from kho.simulator import World, WorldSpec
from kho.simulator.generate import stream_changes, stream_ground_truth, stream_snapshot
from kho.sources import ENTITIES, check_table
from kho.sources.contract import Entity
from kho.sources.population import CITIZENS

SPEC = WorldSpec(11, 1500, 4, 0.2)


def page_all(world: World, entity: Entity, limit: int, **kwargs: object) -> list[dict[str, str | None]]:
    records: list[dict[str, str | None]] = []
    after = None
    while True:
        page = world.page(entity, after=after, limit=limit, **kwargs)  # type: ignore[arg-type]
        records += page.records
        if not page.has_more:
            return records
        after = page.last


def sort_key(entity: Entity, record: dict[str, str | None]) -> tuple[str, ...]:
    return (str(record["updated_at"]), *(str(record[k]) for k in entity.key))


def frozen(records: list[dict[str, str | None]]) -> Counter[str]:
    return Counter(repr(sorted(r.items(), key=lambda kv: kv[0])) for r in records)


@pytest.fixture(scope="module")
def world() -> World:
    built = World.build(SPEC)
    built.advance(3)
    return built


def test_paging_returns_every_record_exactly_once_in_cursor_order(world: World) -> None:
    for entity in ENTITIES:
        records = page_all(world, entity, 7)
        assert len(records) == world.count(entity)
        keys = [sort_key(entity, r) for r in records]
        assert keys == sorted(keys)
        assert frozen(records) == frozen(list(stream_snapshot(SPEC, entity, 3)))


def test_a_page_never_splits_copies_that_share_a_sort_key(world: World) -> None:
    entity = CITIZENS
    after = None
    while True:
        page = world.page(entity, after=after, limit=5)
        if not page.has_more:
            break
        following = world.page(entity, after=page.last, limit=1).records
        assert sort_key(entity, following[0]) > sort_key(entity, page.records[-1])
        after = page.last


def test_advancing_publishes_each_days_changes_stamped_inside_the_day() -> None:
    spec = WorldSpec(12, 2000, 3)
    world = World.build(spec)
    before = page_all(world, CITIZENS, 500)
    world.advance(2)
    since = datetime(2025, 7, 1, tzinfo=UTC)
    fresh = page_all(world, CITIZENS, 50, updated_since=since)
    feeds = [r for day in (1, 2) for r in stream_changes(spec, CITIZENS, day)]
    latest = {r["cccd"]: r for r in feeds}
    assert world.day == 2 and fresh
    assert {r["cccd"]: r for r in fresh} == latest
    assert all("2025-07-01" <= str(r["updated_at"])[:10] <= "2025-07-02" for r in fresh)
    assert len(page_all(world, CITIZENS, 500)) > len(before)


def test_the_ground_truth_grows_with_the_published_days() -> None:
    world = World.build(SPEC)
    at_zero = world.ground_truth
    assert at_zero and {d.day for d in at_zero} == {0}
    world.advance(SPEC.days)
    assert Counter(world.ground_truth) == Counter(stream_ground_truth(SPEC))


def test_updated_since_is_inclusive_and_accepts_offsets(world: World) -> None:
    records = page_all(world, CITIZENS, 1000)
    pivot = str(records[700]["updated_at"])
    instant = datetime.strptime(pivot, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    in_hanoi = instant.astimezone(timezone(timedelta(hours=7)))
    page = world.page(CITIZENS, updated_since=in_hanoi, limit=5000)
    assert page.records[0]["updated_at"] == pivot
    assert page.records == [r for r in records if str(r["updated_at"]) >= pivot]


def test_paging_through_an_advance_sees_every_record_in_its_final_state() -> None:
    spec = WorldSpec(13, 1500, 3)
    world = World.build(spec)
    seen: list[dict[str, str | None]] = []
    after, pages = None, 0
    while True:
        page = world.page(CITIZENS, after=after, limit=97)
        seen += page.records
        pages += 1
        if pages in (3, 6, 9):
            world.advance(pages // 3)
        if not page.has_more:
            break
        after = page.last
    latest = {r["cccd"]: r for r in seen}  # later pages hold later versions
    assert latest == {r["cccd"]: r for r in stream_snapshot(spec, CITIZENS, 3)}


def test_the_world_refuses_to_go_back_or_past_its_last_day() -> None:
    world = World.build(WorldSpec(14, 100, 1))
    world.advance(1)
    with pytest.raises(ValueError, match="back"):
        world.advance(0)
    with pytest.raises(ConfigError, match="days"):
        world.advance(2)


def test_the_defects_name_exactly_the_served_records_the_contract_rejects_and_each_exact_duplicate() -> None:
    """Judged from what the world serves, not from its own bookkeeping: the contract check over every served
    record, and identical copies counted in the pages."""
    world = World.build(WorldSpec(5, 300, 0, 0.1))
    truth = world.ground_truth
    assert Counter(truth) == Counter(stream_ground_truth(WorldSpec(5, 300, 0, 0.1)))
    for entity in ENTITIES:
        served = world.snapshot(entity)
        checked = check_table(entity, pa.Table.from_pylist(served))
        rejected = Counter((tuple(str(r[k]) for k in entity.key), r["_reason_code"])
                           for r in checked.rejected.to_pylist())
        second_copies = sum(n - 1 for n in frozen(served).values())
        named = [d for d in truth if d.qualified_entity == entity.qualified_name]
        assert rejected == Counter((d.key, d.expected_reason_code) for d in named if d.expected_reason_code)
        assert second_copies == sum(d.kind == "exact_duplicate" for d in named), entity.qualified_name
    assert any(d.expected_reason_code for d in truth) and any(d.kind == "exact_duplicate" for d in truth)
