"""The generated world: deterministic, valid except where defects were injected, linked across registries."""

from __future__ import annotations

import functools
import json
import tracemalloc
import unicodedata
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kho.errors import ConfigError
from kho.simulator import ALL_DEFECT_KINDS, WorldSpec
from kho.simulator import calendar as cal
from kho.simulator.defects import ANOMALY_KINDS, Defect
from kho.simulator.generate import engine, stream_changes, stream_ground_truth, stream_snapshot, write_manifest
from kho.simulator.people import Model
from kho.sources import ENTITIES, check_table
from kho.sources.bounds import CLOCK_SKEW
from kho.sources.identity import cccd_prefix, is_valid_tax_code
from kho.sources.population import CITIZENS

Record = dict[str, str | None]
SEED = 20250701
DAYS = 10
DEFECTIVE = WorldSpec(SEED, 3000, DAYS, 0.2)
CLEAN = WorldSpec(SEED, 3000, DAYS)
BY_NAME = {e.qualified_name: e for e in ENTITIES}


def batches(spec: WorldSpec) -> Iterator[tuple[int, str, list[Record]]]:
    """(day, entity, records) of the day-0 snapshot and every feed."""
    for entity in ENTITIES:
        yield 0, entity.qualified_name, list(stream_snapshot(spec, entity, 0))
        for day in range(1, spec.days + 1):
            yield day, entity.qualified_name, list(stream_changes(spec, entity, day))


def dump(spec: WorldSpec) -> bytes:
    return json.dumps([[d, n, r] for d, n, r in batches(spec)], ensure_ascii=False).encode()


def key_of(entity: str, record: Record) -> tuple[str, ...]:
    return tuple(str(record.get(k)) for k in BY_NAME[entity].key)


@pytest.fixture(scope="module")
def truth() -> list[Defect]:
    return list(stream_ground_truth(DEFECTIVE))


@pytest.fixture(scope="module")
def clean_day10() -> dict[str, list[Record]]:
    return {e.qualified_name: list(stream_snapshot(CLEAN, e, DAYS)) for e in ENTITIES}


def test_same_spec_gives_byte_identical_snapshots_and_feeds() -> None:
    spec = WorldSpec(7, 800, 4, 0.2)
    first = dump(spec)
    engine.cache_clear()
    assert dump(spec) == first


def test_a_different_seed_gives_a_different_world() -> None:
    one = list(stream_snapshot(WorldSpec(1, 300), CITIZENS))
    two = list(stream_snapshot(WorldSpec(2, 300), CITIZENS))
    assert [r["full_name"] for r in one] != [r["full_name"] for r in two]


def test_a_longer_world_starts_with_the_shorter_one() -> None:
    short, long = WorldSpec(3, 1500, 3, 0.2), WorldSpec(3, 1500, 6, 0.2)
    for entity in ENTITIES:
        for day in range(1, 4):
            assert list(stream_changes(short, entity, day)) == list(stream_changes(long, entity, day))


def test_records_carry_the_contract_fields_as_text() -> None:
    for entity in ENTITIES:
        for record in list(stream_snapshot(CLEAN, entity, 0))[:200]:
            assert tuple(record) == entity.field_names
            assert all(v is None or isinstance(v, str) for v in record.values())


def clock_at_end_of(day: int) -> datetime:
    """A check's clock such that `updated_at` may be at most the end of simulated `day` (the contract allows a
    day of skew): a record stamped after the day that serves it would be rejected."""
    return datetime.fromtimestamp(cal.day_start(day + 1), UTC) - CLOCK_SKEW


def test_a_clean_world_passes_every_contract_on_every_day() -> None:
    """Every bound included: names, addresses, dates within their floors and no later than their own updated_at,
    and every updated_at no later than the end of the day that serves it."""
    for day, name, records in batches(CLEAN):
        if records:
            checked = check_table(BY_NAME[name], pa.Table.from_pylist(records), now=clock_at_end_of(day))
            assert checked.rejected.num_rows == 0, (day, name, checked.rejected.slice(0, 2).to_pylist())


def test_check_table_rejects_exactly_the_ground_truth_row_defects(truth: list[Defect]) -> None:
    """The key test: for every entity's snapshot and feeds, rejected rows == injected row-level defects, reason too."""
    by_batch: dict[tuple[int, str], list[Defect]] = {}
    for defect in truth:
        by_batch.setdefault((defect.day, defect.qualified_entity), []).append(defect)
    for day, name, records in batches(DEFECTIVE):
        if not records:
            continue
        entity = BY_NAME[name]
        checked = check_table(entity, pa.Table.from_pylist(records), now=clock_at_end_of(day))
        defects = by_batch.get((day, name), [])
        renamed = {d.key for d in defects if d.kind == "schema_drift_renamed_field"}
        rejected = Counter((tuple(str(r[k]) for k in entity.key), r["_reason_code"])
                           for r in checked.rejected.to_pylist())
        expected = Counter((d.key, d.expected_reason_code) for d in defects
                           if d.expected_reason_code and d.key not in renamed)
        assert Counter({k: n for k, n in rejected.items() if k[0] not in renamed}) == expected, (day, name)
        assert {k for k, _ in rejected} >= renamed


def test_every_defect_kind_is_injected(truth: list[Defect]) -> None:
    spec = WorldSpec(SEED, 3000, DAYS, 0.2, frozenset({"born_after_death", "old_tone_placement"}))
    kinds = {d.kind for d in truth} | {d.kind for d in stream_ground_truth(spec)}
    assert kinds == ALL_DEFECT_KINDS


def test_the_manifest_is_json_lines_of_the_ground_truth(tmp_path: Path, truth: list[Defect]) -> None:
    lines = (tmp_path / "truth.jsonl")
    assert write_manifest(DEFECTIVE, lines) == len(truth)
    rows = [json.loads(line) for line in lines.read_text(encoding="utf-8").splitlines()]
    assert rows[0].keys() == {"registry", "entity", "key", "kind", "day", "expected"}
    assert [(r["kind"], tuple(r["key"]), r["day"]) for r in rows] == [(d.kind, d.key, d.day) for d in truth]


def _copies(defect: Defect) -> list[Record]:
    spec, entity = DEFECTIVE, BY_NAME[defect.qualified_entity]
    records = stream_snapshot(spec, entity, 0) if defect.day == 0 else stream_changes(spec, entity, defect.day)
    return [r for r in records if key_of(defect.qualified_entity, r) == defect.key]


def test_exact_duplicates_are_served_twice_in_a_row(truth: list[Defect]) -> None:
    duplicates = [d for d in truth if d.kind == "exact_duplicate"][:40]
    assert duplicates
    for defect in duplicates:
        copies = _copies(defect)
        assert len(copies) == 2 and copies[0] == copies[1]
        assert defect.expected == "unchanged_duplicate"


def test_near_duplicates_count_as_unchanged_only_when_normalisation_makes_them_equal(truth: list[Defect]) -> None:
    """trim + NFC is the contract's normalisation: NFD or padded names vanish under it, case and inner spaces do not."""
    near = [d for d in truth if d.kind == "near_duplicate"]
    assert {d.expected for d in near} == {"unchanged_duplicate", "anomaly:near_duplicate"}
    for defect in near[:60]:
        entity = BY_NAME[defect.qualified_entity]
        copies = _copies(defect)
        assert len(copies) == 2 and copies[0] != copies[1]
        accepted = check_table(entity, pa.Table.from_pylist(copies)).accepted.drop(["_extra"]).to_pylist()
        assert len(accepted) == 2
        assert (accepted[0] == accepted[1]) == (defect.expected == "unchanged_duplicate")


def test_nfd_names_and_old_tone_placement_are_accepted_and_flagged(truth: list[Defect]) -> None:
    spec = WorldSpec(SEED, 3000, 0, 0.5, frozenset({"nfd_name", "old_tone_placement"}))
    names = {"population.citizens": "full_name", "insurance.participants": "full_name"}
    served = {(e, key_of(e, r)): r for e in names for r in stream_snapshot(spec, e, 0)}
    truth = list(stream_ground_truth(spec))
    assert {d.kind for d in truth} == {"nfd_name", "old_tone_placement"}
    for defect in truth:
        assert defect.expected == "normalised"
        if defect.qualified_entity not in names:
            continue
        name = str(served[defect.qualified_entity, defect.key][names[defect.qualified_entity]])
        if defect.kind == "nfd_name":
            assert name == unicodedata.normalize("NFD", name) != unicodedata.normalize("NFC", name)
        else:
            assert name == unicodedata.normalize("NFC", name)
            # the tone moved onto the second vowel of an open oa/oe/uy syllable (Hoà, Thoả, Thuý, Luỹ)
            assert any(f"{a}{b}" in name for a, seconds in (("o", "àáảãạèéẻẽẹ"), ("u", "ỳýỷỹỵ")) for b in seconds)


def test_a_late_update_arrives_the_next_day_with_its_earlier_timestamp(truth: list[Defect]) -> None:
    late = [d for d in truth if d.kind == "late_arriving_update"]
    assert late
    for defect in late:
        entity = defect.qualified_entity
        today = [r for r in stream_changes(DEFECTIVE, entity, defect.day) if key_of(entity, r) == defect.key]
        yesterday = [r for r in stream_changes(DEFECTIVE, entity, defect.day - 1) if key_of(entity, r) == defect.key]
        assert today and not yesterday
        day_before = date.fromordinal(date(2025, 6, 30).toordinal() + defect.day - 1).isoformat()
        assert str(today[0]["updated_at"])[:10] == day_before


def test_conflicting_updates_are_two_versions_with_one_timestamp_in_one_feed(truth: list[Defect]) -> None:
    conflicts = [d for d in truth if d.kind == "conflicting_update"]
    assert conflicts
    for defect in conflicts:
        first, second = _copies(defect)
        assert first["updated_at"] == second["updated_at"] and first != second


def test_schema_drift_adds_a_field_on_day_1_and_renames_one_on_day_2(truth: list[Defect]) -> None:
    drift = {(d.kind, d.day, d.qualified_entity) for d in truth if d.kind.startswith("schema_drift")}
    assert {(kind, day) for kind, day, _ in drift} == {("schema_drift_added_field", 1),
                                                      ("schema_drift_renamed_field", 2)}
    for kind, day, name in drift:
        fields = set().union(*(r.keys() for r in stream_changes(DEFECTIVE, name, day)))
        if kind == "schema_drift_added_field":
            assert fields > set(BY_NAME[name].field_names)
        else:
            assert "ho_ten" in fields and "full_name" not in fields
        assert all(set(r) == set(BY_NAME[name].field_names) for r in stream_changes(DEFECTIVE, name, day + 2))


def _citizens(records: dict[str, list[Record]]) -> set[str]:
    return {str(r["cccd"]) for r in records["population.citizens"]}


def test_links_resolve_to_citizens_in_a_world_without_anomalies(clean_day10: dict[str, list[Record]]) -> None:
    citizens = _citizens(clean_day10)
    links = {
        "population.households": ("head_cccd",), "population.household_members": ("cccd",),
        "population.residence_changes": ("cccd",), "insurance.participants": ("cccd",),
        "civil_status.births": ("child_cccd", "mother_cccd", "father_cccd"),
        "civil_status.marriages": ("husband_cccd", "wife_cccd"), "civil_status.deaths": ("cccd",),
        "business.enterprises": ("legal_rep_cccd",),
    }
    for name, fields in links.items():
        for record in clean_day10[name]:
            for f in fields:
                assert record[f] is None or record[f] in citizens, (name, f, record)
    codes = {r["social_insurance_code"] for r in clean_day10["insurance.participants"]}
    assert all(r["social_insurance_code"] in codes for r in clean_day10["insurance.coverage_periods"])


def test_deceased_citizens_have_no_active_coverage(clean_day10: dict[str, list[Record]]) -> None:
    dead = {r["cccd"] for r in clean_day10["population.citizens"] if r["status"] == "deceased"}
    dead_codes = {r["social_insurance_code"] for r in clean_day10["insurance.participants"] if r["cccd"] in dead}
    assert len(dead) > 20
    assert not [r for r in clean_day10["insurance.coverage_periods"]
                if r["social_insurance_code"] in dead_codes and r["status"] == "active"]


def test_every_birth_of_a_day_creates_its_citizen_and_membership_that_day() -> None:
    births = 0
    for day in range(1, DAYS + 1):
        citizens = {r["cccd"]: r for r in stream_changes(CLEAN, CITIZENS, day)}
        members = {r["cccd"] for r in stream_changes(CLEAN, "population.household_members", day)}
        for birth in stream_changes(CLEAN, "civil_status.births", day):
            births += 1
            child = citizens[birth["child_cccd"]]
            assert child["date_of_birth"] == birth["date_of_birth"] and child["status"] == "alive"
            assert birth["child_cccd"] in members
    assert births >= 5


def test_unresolved_links_are_exactly_the_injected_anomalies() -> None:
    spec = WorldSpec(SEED, 3000, DAYS, 0.3, ANOMALY_KINDS)
    world = {e.qualified_name: list(stream_snapshot(spec, e, DAYS)) for e in ENTITIES}
    links = {"legal_rep_unknown", "birth_without_citizen", "deceased_with_active_coverage"}
    truth = Counter((d.kind, d.key) for d in stream_ground_truth(spec) if d.kind in links)
    citizens = {r["cccd"]: r for r in world["population.citizens"]}
    unknown_reps = {("legal_rep_unknown", (r["enterprise_code"],)) for r in world["business.enterprises"]
                    if r["legal_rep_cccd"] not in citizens}
    orphans = {("birth_without_citizen", (r["registration_id"],)) for r in world["civil_status.births"]
               if r["child_cccd"] not in citizens}
    dead_codes = {r["social_insurance_code"] for r in world["insurance.participants"]
                  if citizens[r["cccd"]]["status"] == "deceased"}
    active_dead = {("deceased_with_active_coverage", (r["coverage_id"],)) for r in world["insurance.coverage_periods"]
                   if r["social_insurance_code"] in dead_codes and r["status"] == "active"}
    assert unknown_reps and orphans and active_dead
    assert unknown_reps | orphans | active_dead == set(truth)
    assert all(n == 1 for n in truth.values())


def test_each_days_feed_brings_the_snapshot_of_the_day_before_to_that_days_snapshot() -> None:
    """Seed 37 has a newborn whose household moves on day 4: its change must reach its own citizen record."""
    spec = WorldSpec(37, 3000, 4)
    for entity in ENTITIES:
        state = {key_of(entity.qualified_name, r): r for r in stream_snapshot(spec, entity, 0)}
        for day in range(1, spec.days + 1):
            state.update((key_of(entity.qualified_name, r), r) for r in stream_changes(spec, entity, day))
            assert state == {key_of(entity.qualified_name, r): r for r in stream_snapshot(spec, entity, day)}, day


@functools.cache
def death_after_joining() -> tuple[WorldSpec, list[Record], dict[str, str]]:
    """The first small world (of ten seeds) where someone dies after joining a household during the feeds (a bride
    days after her wedding, a newborn): its spec, memberships and dates of death at the last day."""
    for seed in range(120, 130):
        spec = WorldSpec(seed, 3000, 30)
        members = list(stream_snapshot(spec, "population.household_members", 30))
        deaths = {str(r["cccd"]): str(r["date_of_death"]) for r in stream_snapshot(spec, "civil_status.deaths", 30)}
        if any(m["cccd"] in deaths and str(m["joined_on"]) > "2025-06-30" for m in members):
            return spec, members, deaths
    raise AssertionError("no world of seeds 120-129 has a death after joining a household: the test needs one")


def test_nobody_dies_before_joining_their_household() -> None:
    """Who joined a household during the feeds and then died left it on the day of death, not before joining."""
    _, members, deaths = death_after_joining()
    dead_members = [m for m in members if m["cccd"] in deaths]
    assert any(m["joined_on"] > "2025-06-30" for m in dead_members)
    for member in dead_members:
        assert member["left_on"] is not None and member["joined_on"] <= member["left_on"] <= deaths[member["cccd"]]


def test_feed_records_are_stamped_inside_their_day_and_day_0_before_july() -> None:
    for day, _, records in batches(CLEAN):
        prefix = date.fromordinal(date(2025, 6, 30).toordinal() + day).isoformat()
        for record in records:
            stamp = str(record["updated_at"])
            assert len(stamp) == 20 and stamp.endswith("Z")
            assert stamp[:10] == prefix if day else stamp < "2025-07-01T00:00:00Z"


def test_cccds_are_unique_and_agree_with_birth_province_sex_and_year() -> None:
    records = list(stream_snapshot(WorldSpec(SEED, 20_000), CITIZENS, 0))
    assert len({r["cccd"] for r in records}) == 20_000
    for r in records[:3000]:
        year = int(str(r["date_of_birth"])[:4])
        assert str(r["cccd"])[:6] == cccd_prefix(str(r["birth_province_code"]), year, str(r["sex"]))


def test_cccd_digits_7_to_12_are_a_permutation_per_prefix() -> None:
    """Uniqueness for 10M+ worlds rests on this: distinct ranks of one prefix get distinct numbers."""
    index = engine(WorldSpec(SEED, 100)).base.index
    ranks = np.arange(1_000_000, dtype=np.int64)
    for prefix in (74_095, 79_301):
        numbers = index.numbers(np.full(len(ranks), prefix, dtype=np.int64), ranks)
        assert len(np.unique(numbers)) == 1_000_000 and (numbers // 1_000_000 == prefix).all()


def test_enterprise_codes_have_valid_check_digits_and_branches_extend_them() -> None:
    spec = WorldSpec(SEED, 40_000)
    codes = [r["enterprise_code"] for r in stream_snapshot(spec, "business.enterprises", 0)]
    assert len(codes) == len(set(codes)) == 1000 and all(is_valid_tax_code(str(c)) for c in codes)
    branches = list(stream_snapshot(spec, "business.branches", 0))
    assert branches and all(str(b["branch_code"]).startswith(str(b["enterprise_code"])) for b in branches)


def test_households_hold_plausible_families() -> None:
    model = Model(SEED, 20_000)
    people = model.citizens(np.arange(20_000, dtype=np.int64))
    ages = (date(2025, 6, 30).toordinal() - people.dob) / 365.25
    assert (ages[people.role == 0] >= 18).all()
    mothers = people.mother_index[people.mother_index >= 0]
    children = people.role == 2
    gap = (people.dob[people.mother_index >= 0] - model.citizens(mothers).dob) / 365.25
    assert children.sum() > 5000 and (gap >= 17.9).all() and (gap < 50).all()  # demography.ASFR: births to 49
    # Siblings are nine months apart or more, except twins (born the same day), who are rare.
    order = np.lexsort((people.dob, people.mother_index))
    mother, dob = people.mother_index[order], people.dob[order]
    same = (mother[1:] == mother[:-1]) & (mother[1:] >= 0)
    spacing = (dob[1:] - dob[:-1])[same]
    assert len(spacing) > 1000 and ((spacing == 0) | (spacing >= 270)).all()
    assert 0 < (spacing == 0).mean() < 0.03


def test_streaming_200k_citizens_keeps_memory_bounded() -> None:
    spec = WorldSpec(SEED, 200_000)
    engine(spec).base.index  # noqa: B018 - the CCCD index (4 bytes a citizen) is built before measuring
    tracemalloc.start()
    count = sum(1 for _ in stream_snapshot(spec, CITIZENS, 0))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 200_000
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB; a list of the records would take ~250 MiB"


@pytest.mark.parametrize("kwargs", [
    {"citizens": -1}, {"citizens": 10, "days": -1}, {"citizens": 10, "defect_rate": 1.5},
    {"citizens": 10, "defect_kinds": frozenset({"swapped_names"})}, {"citizens": 10, "defect_kinds": frozenset()},
])
def test_impossible_specs_raise_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        WorldSpec(seed=1, **kwargs)  # type: ignore[arg-type]


def test_the_day_0_citizens_rejected_are_exactly_those_the_ground_truth_names() -> None:
    spec = WorldSpec(SEED, 2000, 0, 0.2)
    records = list(stream_snapshot(spec, CITIZENS, 0))
    rejected = check_table(CITIZENS, pa.Table.from_pylist(records)).rejected
    expected = Counter((d.key[0], d.expected_reason_code) for d in stream_ground_truth(spec)
                       if d.qualified_entity == CITIZENS.qualified_name and d.expected_reason_code)
    assert Counter(zip(rejected.column("cccd").to_pylist(), rejected.column("_reason_code").to_pylist(),
                       strict=True)) == expected
