"""Defects that pass the contract and break a domain rule of the raw quality gate (`flag:<rule>`): a pre-2025
commune code written from 2025-07-01 (`stale_commune_code`), a participant registered from 2025-07-01 under a
10-digit code (`legacy_social_insurance_code`).

The rules are restated here from kho.sources.reference and the contract, independently of the gate's own
expectations: a world's accepted records break them exactly where its ground truth says, and a clean world's
never do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from kho.simulator import calendar as cal
from kho.simulator.defects import ALL_DEFECT_KINDS, DRIFT_KINDS, Defect, Injector
from kho.simulator.generate import Engine, WorldSpec, stream_ground_truth, stream_snapshot
from kho.sources import ENTITIES, check_table
from kho.sources.bounds import CLOCK_SKEW
from kho.sources.contract import Entity
from kho.sources.insurance import COVERAGE_PERIODS, PARTICIPANTS
from kho.sources.population import CITIZENS
from kho.sources.reference import REORGANISATION_DATE, commune_codes, commune_codes_2025

Record = dict[str, str | None]
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
CODES_BEFORE, CODES_FROM = commune_codes(), commune_codes_2025()
STALE = "flag:commune_code_valid_for_date"
LEGACY = "flag:social_insurance_code_is_cccd_for_new_participants"
FLAGGED = {"stale_commune_code": STALE, "legacy_social_insurance_code": LEGACY}

MIXED = WorldSpec(8, 4000, 4, 0.3, ALL_DEFECT_KINDS - DRIFT_KINDS)
"""Every defect but schema drift (which rejects whole batches, flagged records with them)."""
CLEAN = WorldSpec(8, 4000, 4)


# --- the rules, restated -----------------------------------------------------------------------------------------

def local_day(stamp: str) -> date:
    """The registry's day of an `updated_at`: its date in Vietnam."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(VIETNAM).date()


def commune_fields(entity: Entity) -> list[str]:
    return [f.name for f in entity.fields if f.reference == "commune_codes"]


def stale_fields(entity: Entity, record: Record) -> list[str]:
    """Commune fields whose code was not in force on the record's day: before 2025-07-01 the old communes, from it
    the new units."""
    in_force = CODES_BEFORE if local_day(str(record["updated_at"])) < REORGANISATION_DATE else CODES_FROM
    return [f for f in commune_fields(entity) if record.get(f) is not None and record[f] not in in_force]


def breaks_cccd_code(record: Record) -> bool:
    """A social insurance code that is neither 10 nor 12 digits, a 12-digit one not the participant's CCCD, or one
    issued from 2025-07-01 that is not the CCCD (Law 41/2024/QH15)."""
    code, cccd, registered = (record.get(f) for f in ("social_insurance_code", "cccd", "registered_on"))
    if code is None or not re.fullmatch(r"\d{10}|\d{12}", code):
        return True
    if len(code) == 12 and code != cccd:
        return True
    return registered is not None and date.fromisoformat(registered) >= REORGANISATION_DATE and code != cccd


def flags(entity: Entity, record: Record) -> list[str]:
    found = [STALE] if stale_fields(entity, record) else []
    if entity == PARTICIPANTS and breaks_cccd_code(record):
        found.append(LEGACY)
    return found


# --- worlds ------------------------------------------------------------------------------------------------------

def clock_at_end_of(day: int) -> datetime:
    """A check's clock for which the day that serves a record is not in its future."""
    return datetime.fromtimestamp(cal.day_start(day + 1), UTC) - CLOCK_SKEW


def accepted(entity: Entity, records: list[Record], day: int) -> list[Record]:
    """The records the contract accepts, as served."""
    if not records:
        return []
    rejected = set(check_table(entity, pa.Table.from_pylist(records), now=clock_at_end_of(day))
                   .rejected_rows.to_pylist())
    return [r for i, r in enumerate(records) if i not in rejected]


def batches(eng: Engine) -> Iterator[tuple[int, Entity, list[Record]]]:
    """(day, entity, accepted records) of the day-0 snapshot and of every feed."""
    for entity in ENTITIES:
        for day in range(eng.spec.days + 1):
            served = eng.snapshot(entity, 0) if day == 0 else eng.changes(entity, day)
            yield day, entity, accepted(entity, [c for s in served for c in s.copies], day)


def key_of(entity: Entity, record: Record) -> tuple[str, ...]:
    return tuple(str(record.get(k)) for k in entity.key)


@pytest.fixture(scope="module")
def mixed_truth() -> list[Defect]:
    return list(stream_ground_truth(MIXED))


# --- tests -------------------------------------------------------------------------------------------------------

def test_accepted_records_break_the_rules_exactly_where_the_ground_truth_says(mixed_truth: list[Defect]) -> None:
    """Precision and recall 1 against the served records: a stale code in every version that carries one, a legacy
    participant from the day it is first served (later versions keep their one code)."""
    expected = {(d.expected, d.qualified_entity, d.key, d.day) for d in mixed_truth if d.kind in FLAGGED}
    assert {e for e, *_ in expected} == {STALE, LEGACY}
    assert all(d.expected == FLAGGED[d.kind] for d in mixed_truth if d.kind in FLAGGED)
    found: set[tuple[str, str, tuple[str, ...], int]] = set()
    first_legacy: dict[tuple[str, ...], int] = {}
    for day, entity, records in batches(Engine(MIXED)):
        for record in records:
            for rule in flags(entity, record):
                if rule == LEGACY:
                    key = key_of(entity, record)
                    first_legacy[key] = min(first_legacy.get(key, day), day)
                else:
                    found.add((rule, entity.qualified_name, key_of(entity, record), day))
    found |= {(LEGACY, PARTICIPANTS.qualified_name, key, day) for key, day in first_legacy.items()}
    assert found == expected


def test_a_clean_world_breaks_neither_rule_on_any_day() -> None:
    eng = Engine(CLEAN)
    assert not list(stream_ground_truth(CLEAN))
    checked = 0
    for _, entity, records in batches(eng):
        assert [r for r in records if flags(entity, r)] == [], entity.qualified_name
        checked += len(records)
    assert checked > 20_000
    # every day-0 record was last changed before 1 July in Vietnam (their codes are the old ones)
    assert all(local_day(str(r["updated_at"])) < REORGANISATION_DATE for r in stream_snapshot(CLEAN, CITIZENS, 0))


def test_stale_codes_are_drawn_at_the_rate_on_days_from_the_reform_only() -> None:
    spec = WorldSpec(9, 6000, 5, 0.4, frozenset({"stale_commune_code"}))
    eng = Engine(spec)
    truth = list(stream_ground_truth(spec))
    assert truth and all(d.day >= 1 and d.kind == "stale_commune_code" and d.expected == STALE for d in truth)
    listed = {(d.qualified_entity, d.key, d.day) for d in truth}
    versions = drawn = 0
    for entity in ENTITIES:
        name = entity.qualified_name
        if not commune_fields(entity):
            assert not any(d.qualified_entity == name for d in truth)
            continue
        targeted = eng.simulation(entity).defects.commune_field
        for day in range(1, spec.days + 1):
            for served in eng.changes(entity, day):
                versions += 1
                record = served.copies[0]
                hit = eng.injector.kind(name, served.row, day) == "stale_commune_code"
                drawn += hit
                carries = (name, key_of(entity, record), day) in listed
                assert carries == (hit and record[str(targeted)] is not None), (name, served.row, day)
                if carries:
                    assert len(served.copies) == 1
                    assert accepted(entity, [record], day) == [record]
                    assert stale_fields(entity, record) == [targeted]
                    assert record[str(targeted)] in CODES_BEFORE - CODES_FROM
    assert versions > 120
    assert 0.25 < drawn / versions < 0.55
    assert all(eng.injector.kind(e.qualified_name, row, 0) != "stale_commune_code"
               for e in ENTITIES if commune_fields(e) for row in range(2000))


def test_every_new_participant_of_a_world_at_rate_one_has_a_legacy_code_its_coverage_shares() -> None:
    spec = WorldSpec(15, 4000, 4, 1.0, frozenset({"legacy_social_insurance_code"}))
    eng = Engine(spec)
    truth = [d for day in range(1, spec.days + 1) for d in eng.truth(day)]
    assert all(d.kind == "legacy_social_insurance_code" and d.expected == LEGACY for d in truth)
    pending = list(eng.pending(spec.days))
    assert len(truth) + len(pending) == len(eng.timeline.created[PARTICIPANTS.qualified_name]) >= 5
    participants = {r["social_insurance_code"]: r for r in stream_snapshot(spec, PARTICIPANTS, spec.days)}
    by_cccd = {r["cccd"]: r for r in participants.values()}
    covered = {r["social_insurance_code"] for r in stream_snapshot(spec, COVERAGE_PERIODS, spec.days)}
    for defect in truth:
        (code,) = defect.key
        served = [r for r in (c for s in eng.changes(PARTICIPANTS, defect.day) for c in s.copies)
                  if r["social_insurance_code"] == code]
        assert served, defect
        record = served[0]
        assert accepted(PARTICIPANTS, served, defect.day) == served
        assert re.fullmatch(r"\d{10}", code) and code != record["cccd"] and breaks_cccd_code(record)
        assert record["registered_on"] == str(record["updated_at"])[:10] >= REORGANISATION_DATE.isoformat()
        # one participant, one code: the last day's snapshot keeps it, no record holds the CCCD as code, and the
        # newborn's health coverage is filed under it
        assert participants[code]["cccd"] == record["cccd"] and by_cccd[str(record["cccd"])] is participants[code]
        assert record["cccd"] not in participants and code in covered


def test_legacy_codes_follow_the_rate_and_a_world_without_defects_has_none() -> None:
    def legacy(rate: float) -> tuple[int, int]:
        """(legacy codes listed, participants registered from 2025-07-01) of the world's feeds."""
        spec = WorldSpec(15, 10_000, 4, rate, frozenset({"legacy_social_insurance_code"}))
        eng = Engine(spec)
        listed = sum(1 for day in range(1, spec.days + 1) for d in eng.truth(day, [PARTICIPANTS]))
        fed = [r for day in range(1, spec.days + 1) for s in eng.changes(PARTICIPANTS, day) for r in s.copies]
        assert sum(breaks_cccd_code(r) for r in fed) == listed
        return listed, sum(str(r["registered_on"]) >= REORGANISATION_DATE.isoformat() for r in fed)

    half, new = legacy(0.5)
    assert new >= 10 and 0 < half < new
    assert legacy(0.0) == (0, new)


def test_a_participant_carrying_a_legacy_code_takes_no_malformed_id() -> None:
    """A malformed id would quarantine it, and kho could not flag it; its other row defects keep it loadable."""
    injector = Injector(1, 1.0, frozenset({"malformed_id"}))
    record: Record = {"social_insurance_code": "7912345678", "cccd": "079225000123", "full_name": "Lê Minh Anh",
                      "participant_type": "child_under_6", "registered_hospital_code": "79001",
                      "contribution_status": "paid", "registered_on": "2025-07-02",
                      "updated_at": "2025-07-02T03:00:00Z"}
    copies, defects = injector.serve(PARTICIPANTS, 5, 2, record, 2, "malformed_id")
    assert (copies, defects) == ([record], [])
    issued = {**record, "social_insurance_code": record["cccd"]}
    copies, defects = injector.serve(PARTICIPANTS, 5, 2, issued, 2, "malformed_id")
    assert [d.expected for d in defects] == ["quarantine:malformed"] and copies[0] != issued


def test_registration_dates_precede_every_coverage_and_new_participants_are_registered_the_day_they_appear() -> None:
    spec = WorldSpec(8, 2000, 3)
    births = {r["cccd"]: str(r["date_of_birth"]) for r in stream_snapshot(spec, CITIZENS, spec.days)}
    first_cover: dict[str, str] = {}
    for r in stream_snapshot(spec, COVERAGE_PERIODS, 0):
        code = str(r["social_insurance_code"])
        first_cover[code] = min(first_cover.get(code, "9999"), str(r["valid_from"]))
    day0 = list(stream_snapshot(spec, PARTICIPANTS, 0))
    assert day0
    for r in day0:
        registered = str(r["registered_on"])
        assert births[r["cccd"]] <= registered <= min(first_cover[str(r["social_insurance_code"])],
                                                       str(r["updated_at"])[:10]) < "2025-07-01", r
    assert len({r["registered_on"] for r in day0}) > len(day0) // 4  # spread over the years, not one day
    new = list(stream_snapshot(spec, PARTICIPANTS, spec.days))[len(day0):]
    assert new and all(r["registered_on"] == str(r["updated_at"])[:10] and r["social_insurance_code"] == r["cccd"]
                       for r in new)
