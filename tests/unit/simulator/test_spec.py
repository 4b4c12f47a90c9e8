"""A registry's simulation is one declared value (`kho.simulator.spec`): each entity's renderer, row space, defect
targets and anomalies, and the registry's daily events. Kho's four registries are simulated from theirs, a badly
declared one is refused in one line, and a registry defined outside kho brings its own and is simulated, served
over HTTP and exported like kho's, without changing kho's world."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kho.config import PROJECT_ROOT
from kho.errors import ConfigError
from kho.simulator import WorldSpec, insurance, population
from kho.simulator.base import Base
from kho.simulator.generate import stream_changes, stream_ground_truth, stream_snapshot
from kho.simulator.spec import (
    Defects,
    EntitySimulation,
    RegistrySimulation,
    Rows,
    load_simulation,
    simulated_entities,
    simulations,
)
from kho.sources import ENTITIES, REGISTRIES
from kho.sources.population import CITIZENS
from tests.unit.simulator import land_registry

SPEC = WorldSpec(5, 800, 3, 0.2)
"""A world with defects and anomalies of every kind, small enough to build twice."""


def builtin_digest(spec: WorldSpec) -> str:
    """SHA-256 of every record and defect of kho's own four registries: day-0 snapshots, each day's feed, the
    ground truth. The same function runs in a process that knows an added registry."""
    digest = hashlib.sha256()
    for entity in ENTITIES:
        if entity.registry == land_registry.SLUG:
            continue
        batches = [list(stream_snapshot(spec, entity, 0))]
        batches += [list(stream_changes(spec, entity, day)) for day in range(1, spec.days + 1)]
        digest.update(json.dumps([entity.qualified_name, batches], ensure_ascii=False).encode())
    for defect in stream_ground_truth(spec):
        if defect.registry != land_registry.SLUG:
            digest.update(defect.to_json().encode())
    return digest.hexdigest()


# --- kho's registries ------------------------------------------------------------------------------------------

def test_every_registry_of_kho_is_simulated_in_catalogue_order() -> None:
    assert [s.registry.slug for s in simulations()] == [r.slug for r in REGISTRIES]
    assert [e.entity for e in simulated_entities()] == list(ENTITIES)


def test_each_entity_simulation_renders_its_contract_fields_in_contract_order() -> None:
    base = Base(7, 3000)
    for sim in simulated_entities():
        rendered = sim.render(base, next(base.candidate_chunks(sim.rows)))
        assert rendered.records, sim.entity.qualified_name
        assert {tuple(r) for r in rendered.records} == {sim.entity.field_names}
        assert len(rendered.ids) == len(rendered.records)


def test_a_renderer_that_misses_a_contract_field_is_refused_naming_what_it_rendered() -> None:
    def without_sex(base: Base, ids: np.ndarray) -> tuple[np.ndarray, dict[str, list[str | None]]]:
        rows, columns = population.citizens(base, ids)
        return rows, {k: list(v) for k, v in columns.items() if k != "sex"}

    sim = EntitySimulation(CITIZENS, Rows("citizen"), without_sex, Defects(id_field="cccd", conflict_field="status"))
    with pytest.raises(ConfigError) as refused:
        sim.render(Base(1, 50), np.arange(50, dtype=np.int64))
    message = str(refused.value)
    assert "population.citizens renders" in message and "\n" not in message
    assert "sex" in message.split("not its contract's fields")[1]


def test_a_simulation_naming_a_field_its_contract_lacks_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"population\.citizens names fields its contract does not have: ho_ten"):
        EntitySimulation(CITIZENS, Rows("citizen"), population.citizens,
                         Defects(id_field="cccd", conflict_field="status"), renamed_field=("ho_ten", "full_name"))


def test_a_registry_simulation_must_cover_each_entity_of_its_registry_in_order() -> None:
    entities = population.SIMULATION.entities
    with pytest.raises(ConfigError, match="must cover its entities"):
        RegistrySimulation(population.REGISTRY, entities[:2], added_field="phone_number")
    with pytest.raises(ConfigError, match="must cover its entities"):
        RegistrySimulation(population.REGISTRY, entities[::-1], added_field="phone_number")


@pytest.mark.parametrize(("module", "message"), [
    ("kho_test_nowhere", "registry population: cannot import its simulation module 'kho_test_nowhere'"),
    ("kho.simulator.rng", "registry population: module 'kho.simulator.rng' defines no SIMULATION"),
    ("kho.simulator.insurance", "registry population: module 'kho.simulator.insurance' defines no SIMULATION"),
])
def test_a_simulation_module_that_cannot_serve_its_registry_fails_in_one_line(module: str, message: str) -> None:
    registry = dataclasses.replace(population.REGISTRY, simulation=module)
    with pytest.raises(ConfigError) as refused:
        load_simulation(registry)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_a_registry_refuses_a_simulation_that_is_not_a_module_name() -> None:
    with pytest.raises(ConfigError, match="simulation 'kho/simulator' is not a module name"):
        dataclasses.replace(insurance.REGISTRY, simulation="kho/simulator")
    assert load_simulation(dataclasses.replace(insurance.REGISTRY, simulation="")) is None


# --- a registry defined outside kho ------------------------------------------------------------------------------

ADDED_REGISTRY_REPORT = """
import json, sys
from collections import Counter
from pathlib import Path

import httpx
import pyarrow as pa

from kho.simulator import World
from kho.simulator.export import Manifest, export
from kho.simulator.generate import stream_changes, stream_ground_truth, stream_snapshot
from kho.simulator.server import serve_in_thread
from kho.sources import check_table, get_entity
from tests.unit.simulator.test_spec import SPEC, builtin_digest

parcels = get_entity("land", "parcels")
world = World.build(SPEC)
world.advance(SPEC.days)
with serve_in_thread(world) as sim:
    served = httpx.get(sim.url + parcels.endpoint, params={"page_size": "1000"}, timeout=30).json()["data"]
batches = [list(stream_snapshot(SPEC, parcels, 0))]
batches += [list(stream_changes(SPEC, parcels, day)) for day in range(1, SPEC.days + 1)]
rejected = Counter()
for day, records in enumerate(batches):
    for r in check_table(parcels, pa.Table.from_pylist(records)).rejected.to_pylist():
        rejected[f"{day} {r['parcel_id']} {r['_reason_code']}"] += 1
truth = [d for d in stream_ground_truth(SPEC) if d.registry == "land"]
export(SPEC, sys.argv[1], entities=[parcels], day=range(SPEC.days + 1), formats=("csv",))
print(json.dumps({
    "entities": [e.qualified_name for e in world.entities],
    "served": served,
    "world": world.snapshot(parcels),
    "final": list(stream_snapshot(SPEC, parcels, SPEC.days)),
    "batches": batches,
    "rejected": dict(rejected),
    "quarantined": dict(Counter(f"{d.day} {d.key[0]} {d.expected_reason_code}" for d in truth
                                if d.expected_reason_code)),
    "kinds": sorted({d.kind for d in truth}),
    "exported": {f.path: f.rows for f in Manifest.read(sys.argv[1]).files},
    "builtin": builtin_digest(SPEC),
}, ensure_ascii=False))
"""


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What a process with KHO_REGISTRY_MODULES naming the land registry makes of SPEC's world."""
    out = tmp_path_factory.mktemp("land-export")
    env = {**os.environ, "KHO_REGISTRY_MODULES": land_registry.MODULE,
           "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", ADDED_REGISTRY_REPORT, str(out)], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_a_registry_defined_outside_kho_is_simulated_and_served_over_http(added: dict[str, object]) -> None:
    assert added["entities"] == [e.qualified_name for e in ENTITIES] + ["land.parcels"]
    served, final = added["served"], added["final"]
    assert isinstance(served, list) and isinstance(final, list) and len(served) > 100
    assert served == added["world"]
    assert Counter(json.dumps(r, sort_keys=True) for r in served) == Counter(json.dumps(r, sort_keys=True)
                                                                             for r in final)


def test_its_daily_events_change_records_inside_their_day(added: dict[str, object]) -> None:
    batches = added["batches"]
    assert isinstance(batches, list)
    for day, feed in enumerate(batches[1:], start=1):
        assert feed, f"day {day} re-surveyed no parcel"
        assert {r["updated_at"][:10] for r in feed} == {f"2025-07-{day:02d}"}


def test_its_rejected_records_are_exactly_the_ground_truth_its_defect_targets_make(added: dict[str, object]) -> None:
    kinds = added["kinds"]
    assert isinstance(kinds, list)
    assert added["rejected"] == added["quarantined"] and added["rejected"]
    assert {"malformed_id", "unknown_commune", "exact_duplicate", "conflicting_update"} <= set(kinds)


def test_it_is_exported_with_a_manifest_like_kho_s_registries(added: dict[str, object]) -> None:
    batches = added["batches"]
    assert isinstance(batches, list)
    assert added["exported"] == {f"land__parcels__day{day:03d}.csv": len(records)
                                 for day, records in enumerate(batches)}


def test_adding_a_registry_leaves_kho_s_own_world_byte_for_byte_as_it_was(added: dict[str, object]) -> None:
    assert added["builtin"] == builtin_digest(SPEC)


def kho_simulate_export(tmp_path: Path, modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kho simulate export` as its own process in a deployment whose KHO_REGISTRY_MODULES is `modules`."""
    env = {**os.environ, "KHO_REGISTRY_MODULES": modules, "KHO_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "kho.cli", "simulate", "export", "--out", str(tmp_path / "out"),
                           "--citizens", "300", "--days", "1", "--format", "csv", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)


def test_kho_simulate_export_writes_an_added_registry_that_brings_its_simulation(tmp_path: Path) -> None:
    done = kho_simulate_export(tmp_path, land_registry.MODULE, "--registry", "land")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "ground_truth.jsonl", "land__parcels__day000.csv", "land__parcels__day001.csv", "manifest.json"]


def test_kho_simulate_export_refuses_an_added_registry_without_a_simulation_in_one_line(tmp_path: Path) -> None:
    done = kho_simulate_export(tmp_path, "tests.support.digital_address", "--registry", "digital_address")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "kho: error: no simulated entity matches --registry digital_address --entity None; simulated: "
        "population.citizens, ")
    assert not (tmp_path / "out").exists()
