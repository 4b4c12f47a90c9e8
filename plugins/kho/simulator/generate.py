"""The simulated world behind the four registries: one seeded, linked, time-varying world, streamed in wire form.

`WorldSpec(seed, citizens, days, defect_rate, defect_kinds)` names a world. Day 0 is the state as of the end of
2025-06-30 (every `updated_at` before 2025-07-01); day d adds that day's changes, each stamped inside day d. The
same spec gives byte-identical records on every run and machine: every draw is a hash of (seed, entity, row, day),
never `hash()` or a shared generator (see `rng.py`).

Who is linked to whom: every household member, insured participant, parent in a birth registration, spouse in a
marriage and legal representative of an enterprise is a citizen of the population registry; a birth creates the
citizen (and its membership and child insurance); a death ends the citizen's active coverage and household
membership on the day of death, and a head's spouse or eldest member becomes head. A clean world (defect_rate 0)
therefore breaks none of the seven rules of `mart_audit.cross_registry_contradictions` (docs/datasets.md), on any
day; with a rate, each rule's anomaly is injected into day 0 and into the daily events, and lasts:

- `deceased_with_active_coverage`: a dead participant's current coverage is never ended;
- `legal_rep_unknown`: an enterprise's legal representative has an identity number no citizen has;
- `birth_without_citizen`: a birth registration (a day-0 twin, a day-d newborn) whose child never became a citizen;
- `cccd_contradicts_birth_record`: the registration states another date of birth in the child's year;
- `marriage_under_legal_age`: a bride of 16-17 or a groom of 18-19, the registration stating them of age;
- `household_without_one_head`: a second member recorded as head, the head recorded as `other`, or a dead
  head's successor never named; nobody in such a household dies or marries afterwards;
- `member_after_death`: a dead member's membership left open, or closed after the death.

Each registry's simulation (`population.py`, `insurance.py`, `civil_status.py`, `business.py`; `spec.py` says
what one declares) documents its day-0 shares and its daily change rates (per citizen, or per enterprise, per
day; about 20-50 times real rates, so that ten days show what a year would, with enough changes for tests at a
few thousand citizens). The engine here knows no registry: it serves whatever the catalogue's simulations
declare, a registry added through `KHO_REGISTRY_MODULES` with a simulation module included.

Streams hold one chunk of 4,096 rows at a time plus a CCCD rank per citizen (4 MB per million citizens) and the
overlay of changed rows (`timeline.py`), never a list of all records.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from kho.errors import ConfigError
from kho.simulator.base import Base
from kho.simulator.defects import (
    ALL_DEFECT_KINDS,
    DEFECT_KINDS,
    Defect,
    DefectKind,
    Injector,
)
from kho.simulator.rng import unit_np
from kho.simulator.spec import EntitySimulation, Record, simulated_entities, simulations
from kho.simulator.timeline import CREATED, Timeline, Version
from kho.sources.contract import Entity

MAX_CITIZENS = 50_000_000
"""Beyond this the largest CCCD prefix (Bình Dương-born men of one year) nears its six-digit room."""
MAX_DAYS = 3650


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a world: the same spec gives byte-identical records."""

    seed: int
    citizens: int
    days: int = 0
    defect_rate: float = 0.0
    defect_kinds: frozenset[str] = field(default=ALL_DEFECT_KINDS)
    drift_entities: frozenset[str] | None = None
    """Entities (`registry.entity`) whose records gain a field on the added-field drift day; None: the one the
    seed picks. Lets a test meet every drift policy (FREEZE, DISCARD_EXTRA), not only the seed's KEEP_EXTRA."""

    def __post_init__(self) -> None:
        if not 0 <= self.citizens <= MAX_CITIZENS:
            raise ConfigError(f"a world has 0..{MAX_CITIZENS} citizens, not {self.citizens}; "
                              "lower --citizens / KHO_SIM_CITIZENS")
        if not 0 <= self.days <= MAX_DAYS:
            raise ConfigError(f"a world has 0..{MAX_DAYS} days of changes, not {self.days}; lower --days")
        if not 0.0 <= self.defect_rate <= 1.0:
            raise ConfigError(f"defect_rate={self.defect_rate} is not a share: choose a number from 0.0 to 1.0")
        kinds = frozenset(self.defect_kinds)
        unknown = sorted(kinds - ALL_DEFECT_KINDS)
        if unknown or not kinds:
            raise ConfigError(f"defect kinds {unknown or '(none)'} are not known; "
                              f"choose from {', '.join(DEFECT_KINDS)}")
        object.__setattr__(self, "defect_kinds", kinds)
        if self.drift_entities is not None:
            object.__setattr__(self, "drift_entities", self._checked_drift_entities(frozenset(self.drift_entities)))

    def _checked_drift_entities(self, drifting: frozenset[str]) -> frozenset[str]:
        """Named drift entities must exist and the world must inject the drift: a drift asked for and silently
        not served would let a test pass without meeting it."""
        known = {e.entity.qualified_name for e in simulated_entities()}
        if not drifting or drifting - known:
            what = f"names unknown entities {sorted(drifting - known)}" if drifting else "is empty"
            raise ConfigError(f"drift_entities {what}: choose among {', '.join(sorted(known))}, or leave it None "
                              "for the seed's choice")
        if self.defect_rate <= 0 or "schema_drift_added_field" not in self.defect_kinds:
            raise ConfigError("drift_entities needs a defect_rate above 0 and schema_drift_added_field among the "
                              "defect kinds; without them no field is added")
        return drifting


@dataclass(frozen=True)
class Served:
    """One row as served on a day: its id in the world, the copies sent (duplicates send two) and their defects."""

    row: int
    copies: list[Record]
    defects: list[Defect]


class Engine:
    """The machinery behind one spec: the registries' simulations, the replayed days and the defect injector."""

    def __init__(self, spec: WorldSpec) -> None:
        self.spec = spec
        sims = simulations()
        self.entities: tuple[Entity, ...] = tuple(e.entity for e in simulated_entities(sims))
        """Every entity this world serves: those of the catalogue's registries that declare a simulation."""
        self._sims: dict[str, EntitySimulation] = {e.entity.qualified_name: e for e in simulated_entities(sims)}
        self.injector = Injector(spec.seed, spec.defect_rate, spec.defect_kinds, spec.drift_entities, sims)
        self.base = Base(spec.seed, spec.citizens, self.injector.anomaly_rates())
        self.timeline = Timeline(self.base, sims)
        self.lock = threading.RLock()

    def simulation(self, entity: Entity) -> EntitySimulation:
        """How this world renders `entity`; an entity whose registry declares no simulation is a ConfigError."""
        found = self._sims.get(entity.qualified_name)
        if found is None:
            raise ConfigError(f"{entity.qualified_name} is not simulated: its registry names no simulation module "
                              f"(Registry.simulation); simulated entities: {', '.join(self._sims)}")
        return found

    def reach(self, day: int) -> None:
        """Replay the days up to `day` (no-op when already there)."""
        if not 0 <= day <= self.spec.days:
            raise ConfigError(f"day {day} is outside this world's days 0..{self.spec.days}; build the world with "
                              f"days >= {day}")
        with self.lock:
            self.timeline.run_to(day)

    # --- serving rows --------------------------------------------------------------------------------------------

    def _pick(self, name: str, row: int, view_day: int) -> Version | bool | None:
        """The version served at `view_day`: a Version, None for the day-0 record, False when not served yet."""
        current, previous = self.timeline.version_at(name, row, view_day)
        if current is not None and current.day == view_day and self.injector.is_late(name, row, view_day):
            current = previous
        if current is None:
            return False if row >= CREATED else None
        return current

    def serve_base(self, entity: Entity, ids: np.ndarray, view_day: int) -> list[Served]:
        """Served form of day-0 rows among candidate ids (ascending), as of the end of `view_day`."""
        rendered = self.simulation(entity).render(self.base, ids)
        special, anomalous = self._special(entity, rendered.ids, view_day)
        return [self._serve_one(entity, row, record, view_day, bool(special[j]), bool(anomalous[j]))
                for j, (row, record) in enumerate(zip(rendered.ids.tolist(), rendered.records, strict=True))]

    def _special(self, entity: Entity, ids: np.ndarray, view_day: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows that may differ from their clean day-0 record: changed later, flagged, anomalous, or drifted;
        rows whose day-0 record carries a cross-registry anomaly)."""
        name = entity.qualified_name
        special = np.full(len(ids), self.injector.drift_on(name, view_day) is not None)
        if self.injector.rate > 0:
            special |= unit_np(self.injector.key(name), ids, 0) < self.injector.rate
        flags = self.simulation(entity).flags(self.base, ids)
        anomalous = np.zeros(len(ids), dtype=bool) if flags is None else flags
        special |= anomalous
        versions = self.timeline.versions[name]
        if versions and len(ids):
            lo, hi = int(ids[0]), int(ids[-1])
            changed = [r for r in versions if lo <= r <= hi] if len(versions) < 4 * len(ids) else None
            special |= np.isin(ids, np.array(changed if changed is not None else list(versions), dtype=np.int64))
        return special, anomalous

    def _serve_one(self, entity: Entity, row: int, record: Record, view_day: int, special: bool,
                   anomalous: bool) -> Served:
        if not special:
            return Served(row, [record], [])
        name = entity.qualified_name
        day = 0
        if row in self.timeline.versions[name]:
            picked = self._pick(name, row, view_day)
            if isinstance(picked, Version):
                record = {**record, **picked.fields}
                day = picked.day
        kind = self.injector.kind(name, row, day)
        copies, defects = self.injector.serve(entity, row, day, record, view_day, kind)
        if day == 0 and anomalous:
            defects.append(self._anomaly(entity, copies[0], self.simulation(entity).day0_kind(row), 0))
        return Served(row, copies, defects)

    def snapshot_records(self, entity: Entity, day: int) -> Iterator[Record]:
        """The records of `snapshot`, without per-row bookkeeping for the (many) rows that are plain day-0 rows."""
        self.reach(day)
        name = entity.qualified_name
        sim = self.simulation(entity)
        for ids in self.base.candidate_chunks(sim.rows):
            with self.lock:
                rendered = sim.render(self.base, ids)
                special, anomalous = self._special(entity, rendered.ids, day)
                if not special.any():
                    chunk = rendered.records
                else:
                    chunk = []
                    for j, (row, record) in enumerate(zip(rendered.ids.tolist(), rendered.records, strict=True)):
                        if special[j]:
                            chunk += self._serve_one(entity, row, record, day, True, bool(anomalous[j])).copies
                        else:
                            chunk.append(record)
            yield from chunk
        with self.lock:
            created = list(self.timeline.created[name])
        for lo in range(0, len(created), 4096):
            with self.lock:
                served = self.serve_created(entity, created[lo:lo + 4096], day)
            for s in served:
                yield from s.copies

    def serve_created(self, entity: Entity, rows: list[int], view_day: int) -> list[Served]:
        name = entity.qualified_name
        out = []
        for row in rows:
            picked = self._pick(name, row, view_day)
            if not isinstance(picked, Version):
                continue
            kind = self.injector.kind(name, row, picked.day)
            copies, defects = self.injector.serve(entity, row, picked.day, dict(picked.fields), view_day, kind)
            out.append(Served(row, copies, defects))
        return out

    def serve_rows(self, entity: Entity, rows: list[int], view_day: int) -> dict[int, Served]:
        """Served form of any existing rows (day-0 or created), keyed by row id."""
        base = sorted(r for r in rows if r < CREATED)
        out = {s.row: s for s in self.serve_base(entity, np.array(base, dtype=np.int64), view_day)} if base else {}
        out.update((s.row, s) for s in self.serve_created(entity, [r for r in rows if r >= CREATED], view_day))
        return out

    @staticmethod
    def _anomaly(entity: Entity, record: Record, kind: str, day: int) -> Defect:
        key = tuple(str(record.get(k)) for k in entity.key)
        return Defect(entity.registry, entity.name, key, kind, day, f"anomaly:{kind}")  # type: ignore[arg-type]

    # --- snapshots and feeds -------------------------------------------------------------------------------------

    def snapshot(self, entity: Entity, day: int) -> Iterator[Served]:
        """Every row served at the end of `day`: day-0 rows in id order, then rows created later, in creation order."""
        self.reach(day)
        name = entity.qualified_name
        for ids in self.base.candidate_chunks(self.simulation(entity).rows):
            with self.lock:
                chunk = self.serve_base(entity, ids, day)
            yield from chunk
        with self.lock:
            created = list(self.timeline.created[name])
        for lo in range(0, len(created), 4096):
            with self.lock:
                chunk = self.serve_created(entity, created[lo:lo + 4096], day)
            yield from chunk

    def change_rows(self, entity: Entity, day: int) -> list[int]:
        """Rows the feed of `day` carries: late arrivals from the day before, then the rows written today."""
        name = entity.qualified_name
        timeline, injector = self.timeline, self.injector
        today = timeline.touched[day].get(name, []) if day >= 1 else []
        late = []
        if day >= 2:
            for row in timeline.touched[day - 1].get(name, []):
                current, _ = timeline.version_at(name, row, day)
                if current is not None and current.day == day - 1 and injector.is_late(name, row, day - 1):
                    late.append(row)
        return late + [r for r in today if not injector.is_late(name, r, day)]

    def changes(self, entity: Entity, day: int) -> list[Served]:
        """The feed of `day` (≥ 1): full current records of the rows changed that day, as the registry sends them."""
        if day < 1:
            raise ConfigError(f"change feeds start on day 1, not {day}; day 0 is the initial snapshot")
        self.reach(day)
        with self.lock:
            rows = self.change_rows(entity, day)
            served = self.serve_rows(entity, rows, day)
        return [served[r] for r in rows if r in served]

    def truth(self, day: int) -> Iterator[Defect]:
        """The defects first served on `day` (day 0: in the initial snapshot), every entity."""
        self.reach(day)
        for entity in self.entities:
            served = self.snapshot(entity, 0) if day == 0 else iter(self.changes(entity, day))
            for s in served:
                yield from s.defects
        if day >= 1:
            for anomaly in self.timeline.anomalies[day]:
                with self.lock:
                    record = self.timeline.current(anomaly.entity, anomaly.row)
                yield self._anomaly(anomaly.entity, record, anomaly.kind, day)


@lru_cache(maxsize=2)
def engine(spec: WorldSpec) -> Engine:
    """The shared engine of a spec: streams of one spec reuse its replayed days."""
    return Engine(spec)


def _entity(entity: Entity | str) -> Entity:
    if isinstance(entity, Entity):
        return entity
    known = [e.entity for e in simulated_entities()]
    for candidate in known:
        if entity in (candidate.qualified_name, candidate.name):
            return candidate
    raise ConfigError(f"unknown entity {entity!r}; known: {', '.join(e.qualified_name for e in known)}")


def stream_snapshot(spec: WorldSpec, entity: Entity | str, day: int = 0) -> Iterator[Record]:
    """Every record of `entity` served at the end of `day`, in a stable order (row id, then creation order).

    Duplicated records appear twice in a row; a late-arriving version is absent until the next day.
    """
    yield from engine(spec).snapshot_records(_entity(entity), day)


def stream_changes(spec: WorldSpec, entity: Entity | str, day: int) -> Iterator[Record]:
    """The feed of `day` (1..spec.days): each record changed that day, in full, with its new updated_at."""
    for served in engine(spec).changes(_entity(entity), day):
        yield from served.copies


def stream_ground_truth(spec: WorldSpec) -> Iterator[Defect]:
    """Every defect injected in the world, day by day (day 0 scans the whole initial snapshot)."""
    eng = engine(spec)
    for day in range(spec.days + 1):
        yield from eng.truth(day)


def write_manifest(spec: WorldSpec, path: Path | str) -> int:
    """Write the ground truth as JSON Lines (registry, entity, key, kind, day, expected); return the line count."""
    target = Path(path)
    count = 0
    with target.open("w", encoding="utf-8") as out:
        for defect in stream_ground_truth(spec):
            out.write(defect.to_json() + "\n")
            count += 1
    return count


__all__ = [
    "ALL_DEFECT_KINDS", "DEFECT_KINDS", "MAX_CITIZENS", "Defect", "DefectKind", "Engine", "Record", "Served",
    "WorldSpec", "engine", "stream_changes", "stream_ground_truth", "stream_snapshot", "write_manifest",
]
