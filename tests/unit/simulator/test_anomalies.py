"""Cross-registry anomalies: the ground truth lists exactly what the seven audit rules find in the served world."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from kho.simulator import World, WorldSpec
from kho.simulator.defects import ANOMALY_ENTITY, ANOMALY_KINDS, Defect
from kho.simulator.generate import stream_changes, stream_snapshot
from kho.sources import ENTITIES, check_table
from tests.support.audit_oracle import KINDS, Finding, audit_findings
from tests.unit.simulator.test_generate import death_after_joining

SEEDS = (1, 4, 5)
CITIZENS, DAYS, RATE = 3000, 5, 0.1
BY_NAME = {e.qualified_name: e for e in ENTITIES}

Findings = dict[int, tuple[set[Finding], set[Finding]]]
"""Per day: (what the rules find in the served world, what the ground truth lists up to that day)."""


def served(world: World) -> dict[str, list[dict[str, str | None]]]:
    return {e.qualified_name: world.snapshot(e) for e in ENTITIES}


def listed(truth: list[Defect]) -> set[Finding]:
    return {(d.kind, d.registry, d.entity, d.key) for d in truth if d.kind in ANOMALY_KINDS}


def day_by_day(spec: WorldSpec) -> tuple[Findings, list[Defect]]:
    """What the rules find and the ground truth lists at the end of each day, and the whole ground truth."""
    world = World.build(spec)
    out: Findings = {}
    for day in range(spec.days + 1):
        world.advance(day)
        out[day] = audit_findings(served(world)), listed(world.ground_truth)
    return out, world.ground_truth


def assert_same(found: set[Finding], truth: set[Finding], label: str) -> None:
    missing, extra = sorted(truth - found), sorted(found - truth)
    assert not missing and not extra, f"{label}: listed but not found {missing[:10]}, found but not listed {extra[:10]}"


def kinds(findings: set[Finding]) -> Counter[str]:
    return Counter(kind for kind, *_ in findings)


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def world_days(request: pytest.FixtureRequest) -> tuple[Findings, list[Defect]]:
    return day_by_day(WorldSpec(request.param, CITIZENS, DAYS, RATE, ANOMALY_KINDS))


@pytest.fixture
def anomalous(world_days: tuple[Findings, list[Defect]]) -> Findings:
    return world_days[0]


def test_the_checker_knows_the_seven_kinds_the_simulator_injects() -> None:
    assert set(KINDS) == ANOMALY_KINDS and len(KINDS) == 7


def test_the_rules_find_exactly_the_ground_truth_at_the_end_of_every_day(anomalous: Findings) -> None:
    for day, (found, truth) in anomalous.items():
        assert_same(found, truth, f"day {day}")


def test_every_kind_is_found_at_day_0_and_at_the_last_day(anomalous: Findings) -> None:
    for day in (0, DAYS):
        found = kinds(anomalous[day][0])
        assert set(found) == ANOMALY_KINDS, (day, found)


def test_anomalies_persist_once_injected(anomalous: Findings) -> None:
    for day in range(1, DAYS + 1):
        assert anomalous[day - 1][0] <= anomalous[day][0], day


def test_each_anomaly_is_listed_once_under_the_record_its_rule_reports(
        world_days: tuple[Findings, list[Defect]]) -> None:
    truth = world_days[1]
    assert {d.kind for d in truth} == ANOMALY_KINDS
    assert len({(d.kind, d.qualified_entity, d.key) for d in truth}) == len(truth)
    for defect in truth:
        assert defect.qualified_entity == ANOMALY_ENTITY[defect.kind]
        assert defect.expected == f"anomaly:{defect.kind}"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_clean_world_breaks_none_of_the_seven_rules(seed: int) -> None:
    world = World.build(WorldSpec(seed, CITIZENS, DAYS))
    assert audit_findings(served(world)) == set()
    world.advance(DAYS)
    assert audit_findings(served(world)) == set()
    assert world.ground_truth == []


def test_a_bride_who_dies_days_after_her_wedding_leaves_no_membership_open_after_death() -> None:
    """A world where people die within 30 days of joining a household: a death dated before the wedding used to
    close both a bride's memberships after the death."""
    spec = death_after_joining()[0]
    assert audit_findings({e.qualified_name: list(stream_snapshot(spec, e, 30)) for e in ENTITIES}) == set()


@pytest.mark.parametrize("kind", sorted(ANOMALY_KINDS))
def test_an_anomaly_of_one_kind_makes_no_finding_of_another(kind: str) -> None:
    findings, _ = day_by_day(WorldSpec(9, 1500, 3, 0.3, frozenset({kind})))
    for day, (found, truth) in findings.items():
        assert_same(found, truth, f"{kind}, day {day}")
    assert set(kinds(findings[3][0])) == {kind}


def test_daily_events_inject_every_kind_too() -> None:
    spec = WorldSpec(1, 3000, 20, 0.5, ANOMALY_KINDS)
    world = World.build(spec)
    world.advance(spec.days)
    later = Counter(d.kind for d in world.ground_truth if d.day >= 1)
    assert set(later) == ANOMALY_KINDS, later
    assert_same(audit_findings(served(world)), listed(world.ground_truth), "day 20")


def test_anomalous_records_pass_their_own_contract() -> None:
    spec = WorldSpec(SEEDS[0], CITIZENS, DAYS, 0.5, ANOMALY_KINDS)
    for entity in ENTITIES:
        batches = [list(stream_snapshot(spec, entity, 0))]
        batches += [list(stream_changes(spec, entity, day)) for day in range(1, DAYS + 1)]
        for day, records in enumerate(batches):
            if records:
                rejected = check_table(BY_NAME[entity.qualified_name], pa.Table.from_pylist(records)).rejected
                assert rejected.num_rows == 0, (day, entity.qualified_name, rejected.slice(0, 2).to_pylist())
