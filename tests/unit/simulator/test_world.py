"""The served world: cursor order, paging, and deterministic changes that keep the ground truth true."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from kho.simulator import World, generate_citizens
from kho.sources import check_table
from kho.sources.population import CITIZENS
from kho.sources.reference import commune_codes


def test_records_are_kept_in_updated_at_then_cccd_order() -> None:
    world = World.generate(3, 1000, defect_rate=0.1)
    keys = [(r["updated_at"], r["cccd"]) for r in world.snapshot()]
    assert keys == sorted(keys)
    assert len(world) == len(set(keys)) == 1000


def test_pages_follow_each_other_without_gaps_or_overlap() -> None:
    world = World.generate(3, 1000)
    seen, after = [], None
    while True:
        page = world.page(after=after, limit=137)
        seen += page.records
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == world.snapshot()


def test_updated_since_is_inclusive_and_accepts_offsets() -> None:
    world = World.generate(3, 1000)
    pivot = world.snapshot()[400]["updated_at"]
    instant = datetime.strptime(str(pivot), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    in_hanoi = instant.astimezone(timezone(timedelta(hours=7)))
    page = world.page(updated_since=in_hanoi, limit=1000)
    assert page.records[0]["updated_at"] == pivot
    assert page.records == [r for r in world.snapshot() if str(r["updated_at"]) >= str(pivot)]


def test_touch_is_deterministic() -> None:
    first, second = World.generate(5, 500), World.generate(5, 500)
    assert first.touch(20) == second.touch(20)
    assert first.touch(7) == second.touch(7)
    assert first.snapshot() == second.snapshot()


def test_touch_moves_or_buries_citizens_after_every_earlier_change() -> None:
    world = World.generate(5, 500)
    latest = world.latest_updated_at
    before = {r["cccd"]: r for r in world.snapshot()}
    changed = world.touch(50)
    assert len({r["cccd"] for r in changed}) == 50
    for record in changed:
        old = before[record["cccd"]]
        assert str(record["updated_at"]) > str(latest)
        diff = {k for k in record if record[k] != old[k]} - {"updated_at"}
        assert diff in ({"permanent_commune_code"}, {"status"})
        assert record["permanent_commune_code"] in commune_codes()
    assert world.snapshot()[-50:] == sorted(changed, key=lambda r: (str(r["updated_at"]), str(r["cccd"])))


def test_touch_leaves_defective_records_alone() -> None:
    world = World.generate(5, 2000, defect_rate=0.2)
    world.touch(500)
    checked = check_table(CITIZENS, pa.Table.from_pylist(world.snapshot()))
    assert sorted(checked.rejected.column("cccd").to_pylist()) == sorted(d.key for d in world.defects)


def test_touch_refuses_to_turn_the_clock_back() -> None:
    world = World.generate(5, 100)
    with pytest.raises(ValueError, match="clock"):
        world.touch(1, at=datetime(2024, 1, 1, tzinfo=UTC))


def test_a_world_refuses_repeated_cccds() -> None:
    record = next(generate_citizens(5, 1))
    with pytest.raises(ValueError, match="unique cccd"):
        World([record, dict(record)])
