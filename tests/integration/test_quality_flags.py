"""The raw gate against the simulator's ground truth: the injected defects that pass the contract but break a domain
rule are flagged by exactly the expected expectation, row by row and day by day, and a clean world flags nothing.

A world with every defect kind but schema drift (drift rejects whole batches, flagged records among them) is exported
as files; each day's file of each entity is loaded as one batch (the loader quarantines what the contract refuses)
and that batch goes through its raw gate, as a sync run's batches do. What `kho.quality_flags` lists per rule and
day is compared with the ground truth's `flag:<rule>` defects:

- `stale_commune_code` (flag:commune_code_valid_for_date) is one served version: listed per day whose file holds it;
- `legacy_social_insurance_code` (flag:social_insurance_code_is_cccd_for_new_participants) belongs to the
  participant: listed once, on the first day it is served; later versions of the participant are flagged again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kho.config import KhoConfig
from kho.load.pipeline import load_file
from kho.quality import validate_raw
from kho.simulator.defects import ALL_DEFECT_KINDS, DRIFT_KINDS
from kho.simulator.export import GROUND_TRUTH_NAME, export
from kho.simulator.generate import WorldSpec
from kho.sources import ENTITIES
from kho.warehouse.connection import connect
from kho.warehouse.migrations import migrate
from tests.conftest import new_database

pytestmark = pytest.mark.integration

DAYS = 3
WORLDS = {
    "every kind": WorldSpec(seed=15, citizens=4000, days=DAYS, defect_rate=0.08,
                            defect_kinds=ALL_DEFECT_KINDS - DRIFT_KINDS),
    "flagged kinds": WorldSpec(seed=15, citizens=6000, days=DAYS, defect_rate=0.5, defect_kinds=frozenset({
        "stale_commune_code", "legacy_social_insurance_code", "nfd_name", "exact_duplicate"})),
}
"""Every defect kind beside one another (the others must flag nothing), and the two flagged kinds at a rate that
gives dozens (with two kinds the loader accepts beside them)."""
CLEAN = WorldSpec(seed=16, citizens=2000, days=DAYS)
LEGACY = "social_insurance_code_is_cccd_for_new_participants"
STALE = "commune_code_valid_for_date"
Flag = tuple[str, tuple[str, ...], str, int]
"""(registry.entity, the row's key, rule, day)."""


def gate_every_day(config: KhoConfig, spec: WorldSpec, out: Path) -> tuple[set[Flag], list[dict[str, Any]], set[str]]:
    """Export `spec`, then day by day and entity by entity load its file and run the raw gate on that batch: the
    flags (keyed as the ground truth keys records), the ground truth, and the states the validations ended in."""
    manifest = export(spec, out, day=range(DAYS + 1), formats=("csv",))
    by_entity = {(e.registry, e.name): e for e in ENTITIES}
    validations: dict[int, tuple[str, int]] = {}
    for day in range(DAYS + 1):
        for f in (f for f in manifest.files if f.day == day):
            entity = by_entity[f.registry, f.entity]
            entry = load_file(config, entity, out / f.path)
            result = validate_raw(config, entity.raw_table, [entry.batch_id], run_id=f"day-{day}")
            validations[result.validation_id] = (entity.qualified_name, day)
    keys = {e.qualified_name: e.key for e in ENTITIES}
    with connect(config.warehouse, autocommit=True) as conn:
        found = conn.execute("SELECT validation_id, row_key, rule FROM kho.quality_flags").fetchall()
        states = {r[0] for r in conn.execute("SELECT DISTINCT state FROM kho.quality_validations")}
    flags = set()
    for validation_id, row_key, rule in found:
        entity, day = validations[validation_id]
        flags.add((entity, tuple(str(row_key[k]) for k in keys[entity]), rule, day))
    truth = [json.loads(line) for line in (out / GROUND_TRUTH_NAME).read_text(encoding="utf-8").splitlines()]
    return flags, truth, states


def expected(truth: list[dict[str, Any]]) -> set[Flag]:
    return {(f"{d['registry']}.{d['entity']}", tuple(d["key"]), d["expected"].removeprefix("flag:"), d["file_day"])
            for d in truth if d["expected"].startswith("flag:") and d["file_day"] is not None}


@pytest.fixture(scope="module", params=sorted(WORLDS))
def defective(request: pytest.FixtureRequest, kho_config: KhoConfig, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[set[Flag], list[dict[str, Any]], set[str]]]:
    with new_database(kho_config) as config:
        with connect(config.warehouse, autocommit=True) as conn:
            migrate(conn)
        yield gate_every_day(config, WORLDS[request.param], tmp_path_factory.mktemp("defective-export"))


def test_the_flagged_kinds_world_has_dozens_of_both(kho_config: KhoConfig, tmp_path: Path) -> None:
    """The comparisons below are only worth what the ground truth holds."""
    export(WORLDS["flagged kinds"], tmp_path, day=range(DAYS + 1), formats=("csv",))
    truth = [json.loads(line) for line in (tmp_path / GROUND_TRUTH_NAME).read_text(encoding="utf-8").splitlines()]
    rules = Counter(d["expected"] for d in truth if d["expected"].startswith("flag:"))
    assert rules[f"flag:{STALE}"] >= 20 and rules[f"flag:{LEGACY}"] >= 2, rules
    days = {d["file_day"] for d in truth if d["expected"] == f"flag:{STALE}"}
    assert days == set(range(1, DAYS + 1)), "stale codes every day after the reorganisation, none on day 0"


def test_every_stale_commune_code_is_flagged_on_its_day_and_nothing_else_is(
        defective: tuple[set[Flag], list, set[str]]) -> None:
    flags, truth, _ = defective
    wanted = {f for f in expected(truth) if f[2] == STALE}
    got = {f for f in flags if f[2] == STALE}
    assert got == wanted
    assert Counter(f[3] for f in got) == Counter(f[3] for f in wanted), "per day, as many flags as defects"


def test_every_participant_registered_after_the_reform_without_their_cccd_is_flagged(
        defective: tuple[set[Flag], list, set[str]]) -> None:
    flags, truth, _ = defective
    wanted = {f for f in expected(truth) if f[2] == LEGACY}
    got = {f for f in flags if f[2] == LEGACY}
    assert wanted <= got, "flagged on the day the ground truth lists it"
    assert {f[1] for f in got} == {f[1] for f in wanted}, "and no other participant, on any day"


def test_only_the_two_domain_rules_flag_and_no_gate_fails(defective: tuple[set[Flag], list, set[str]]) -> None:
    flags, truth, states = defective
    assert {f[2] for f in flags} == {f[2] for f in expected(truth)} <= {STALE, LEGACY}
    assert STALE in {f[2] for f in flags}
    assert "failed" not in states and "warned" in states


def test_a_clean_world_flags_nothing_on_any_day(kho_config: KhoConfig, tmp_path: Path) -> None:
    with new_database(kho_config) as config:
        with connect(config.warehouse, autocommit=True) as conn:
            migrate(conn)
        flags, truth, states = gate_every_day(config, CLEAN, tmp_path)
    assert truth == [] and flags == set()
    assert states == {"passed"}
