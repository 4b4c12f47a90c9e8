"""The simulated world behind the four registries: one seeded, linked, time-varying world, streamed in wire form.

`WorldSpec(seed, citizens, days, defect_rate, defect_kinds)` names a world. Day 0 is the state as of the end of
2025-06-30 in Vietnam (every `updated_at` before 2025-06-30T17:00:00Z); day d adds that day's changes, each stamped
inside UTC day d. The
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
from collections.abc import Collection, Iterable, Iterator
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
    reported_outcome,
)
from kho.simulator.rng import unit_np
from kho.simulator.spec import EntitySimulation, Record, simulated_entities, simulations
from kho.simulator.timeline import CREATED, Anomaly, Timeline, Version
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
class TruthEntry:
    """A defect of the ground truth, and the file that holds its record."""

    defect: Defect
    file_day: int | None
    """The day whose file (0: the snapshot, d: day d's feed) holds the record as it carries the defect: the
    defect's own day, except for an anomaly in a record its day did not change (the last feed that carried it);
    None for a pending defect, withheld from every feed so far."""

    @property
    def pending(self) -> bool:
        return self.file_day is None


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
        return Defect(entity.registry, entity.name, key, kind, day, reported_outcome(kind))  # type: ignore[arg-type]

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

    def truth(self, day: int, entities: Collection[Entity] | None = None) -> Iterator[Defect]:
        """The defects first served on `day` (day 0: in the initial snapshot), of every entity or of `entities`.

        A defect's day is that of the feed that makes it visible (`Defect.day`): a cross-registry anomaly whose
        record's version is withheld as a late arrival is listed on the day that version arrives, not on the day
        of its event.
        """
        return (entry.defect for entry in self.located(day, entities))

    def located(self, day: int, entities: Collection[Entity] | None = None) -> Iterator[TruthEntry]:
        """`truth`, each defect with the day of the file that holds its record (`TruthEntry.file_day`)."""
        self.reach(day)
        chosen = self._chosen(entities)
        for entity in chosen.values():
            found = self._snapshot_defects(entity) if day == 0 else (
                d for s in self.changes(entity, day) for d in s.defects)
            yield from (TruthEntry(d, day) for d in found)
        if day >= 1:
            for anomaly in self._arriving_anomalies(day):
                if anomaly.entity.qualified_name in chosen:
                    # Keyed as served, like a day-0 anomaly: a version that also carries a malformed id is served,
                    # and filed, under that id.
                    with self.lock:
                        served = self.serve_rows(anomaly.entity, [anomaly.row], day).get(anomaly.row)
                        record = served.copies[0] if served else self.timeline.current(anomaly.entity, anomaly.row)
                        file_day = self._last_feed(anomaly.entity.qualified_name, anomaly.row, day)
                    yield TruthEntry(self._anomaly(anomaly.entity, record, anomaly.kind, day), file_day)

    def pending(self, day: int, entities: Collection[Entity] | None = None) -> Iterator[Defect]:
        """The defects withheld from `day`'s feed, listed under day + 1, the first feed that may carry them.

        A version of `day` that arrives late (`late_arriving_update`) is in no feed up to `day`, nor is an anomaly
        whose record's version is withheld; `truth` of days 0..`day` leaves them out, since nothing served so far
        shows them. A world that goes on serves them on day + 1, unless day + 1 changes the row again: then the
        newer version supersedes the late one, which never arrives (and `truth` never lists it).
        """
        self.reach(day)
        chosen = self._chosen(entities)
        if day < 1:
            return
        for entity in chosen.values():
            name = entity.qualified_name
            sim = self.simulation(entity)
            with self.lock:
                found = []
                for row in self.timeline.touched[day].get(name, []):
                    if not self._withheld(name, row, day):
                        continue
                    current, _ = self.timeline.version_at(name, row, day)
                    assert current is not None
                    base = sim.render(self.base, np.array([row], dtype=np.int64)).records[0] if row < CREATED else {}
                    _, defects = self.injector.serve(entity, row, day, {**base, **current.fields}, day,
                                                     "late_arriving_update")
                    found += [d for d in defects if d.kind == "late_arriving_update"]
            yield from found
        with self.lock:
            withheld = [a for a in self._withheld_anomalies(day) if a.entity.qualified_name in chosen]
        for anomaly in withheld:
            with self.lock:
                record = self.timeline.current(anomaly.entity, anomaly.row)
            yield self._anomaly(anomaly.entity, record, anomaly.kind, day + 1)

    def _chosen(self, entities: Collection[Entity] | None) -> dict[str, Entity]:
        """The entities asked for (all when None), by name, in the world's order."""
        if entities is None:
            return {e.qualified_name: e for e in self.entities}
        for entity in entities:
            self.simulation(entity)  # an entity this world does not simulate is a ConfigError
        names = {e.qualified_name for e in entities}
        return {e.qualified_name: e for e in self.entities if e.qualified_name in names}

    def _snapshot_defects(self, entity: Entity) -> Iterator[Defect]:
        """The defects of the day-0 snapshot: only rows that may differ from their clean record are served."""
        sim = self.simulation(entity)
        for ids in self.base.candidate_chunks(sim.rows):
            with self.lock:
                rendered = sim.render(self.base, ids)
                special, anomalous = self._special(entity, rendered.ids, 0)
                found = [d for j in np.flatnonzero(special).tolist()
                         for d in self._serve_one(entity, int(rendered.ids[j]), rendered.records[j], 0, True,
                                                  bool(anomalous[j])).defects]
            yield from found
        with self.lock:
            created = list(self.timeline.created[entity.qualified_name])
        for lo in range(0, len(created), 4096):
            with self.lock:
                served = self.serve_created(entity, created[lo:lo + 4096], 0)
            for s in served:
                yield from s.defects

    def _withheld(self, name: str, row: int, day: int) -> bool:
        """Whether the version `row` got on `day` is withheld from that day's feed (a late arrival)."""
        if not self.injector.is_late(name, row, day):
            return False
        current, _ = self.timeline.version_at(name, row, day)
        return current is not None and current.day == day

    def _last_feed(self, name: str, row: int, day: int) -> int | None:
        """The day of the last file up to `day` that carried `row` (0: the snapshot), None if none did yet.

        An anomaly can sit in a record its day's events did not change (a dead participant's coverage left active,
        a dead member's membership left open): that record is in the file of the day it last changed, or of the
        day after when that version arrived late.
        """
        history = self.timeline.versions[name].get(row) or []
        days = {v.day for v in history if v.day <= day}
        fed = [d for d in days if not self.injector.is_late(name, row, d)]
        fed += [d + 1 for d in days if self.injector.is_late(name, row, d) and d + 1 <= day and d + 1 not in days]
        if fed:
            return max(fed)
        return 0 if row < CREATED else None

    def _withheld_anomalies(self, through: int) -> Iterator[Anomaly]:
        """Anomalies of days up to `through` whose record's version was withheld on every day from theirs to
        `through` (a row changed and late again the next day stays withheld), latest day first."""
        rows = {(name, row) for name, touched in self.timeline.touched[through].items() for row in touched
                if self._withheld(name, row, through)}
        day = through
        while rows and day >= 1:
            yield from (a for a in self.timeline.anomalies[day] if (a.entity.qualified_name, a.row) in rows)
            day -= 1
            rows = {(name, row) for name, row in rows if day >= 1 and self._withheld(name, row, day)}

    def _arriving_anomalies(self, day: int) -> list[Anomaly]:
        """The anomalies whose record's version is first served on `day`: that day's, unless withheld, then earlier
        days' that were withheld until the day before and are not withheld again."""
        with self.lock:
            arriving = [a for a in self.timeline.anomalies[day]
                        if not self._withheld(a.entity.qualified_name, a.row, day)]
            if day >= 2:
                arriving += [a for a in self._withheld_anomalies(day - 1)
                             if not self._withheld(a.entity.qualified_name, a.row, day)]
        return arriving


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


def stream_ground_truth(spec: WorldSpec, *, pending: bool = False) -> Iterator[Defect]:
    """Every defect served in the world, day by day (day 0 scans the whole initial snapshot), each on the day whose
    feed carries it: what a client holding every feed up to `spec.days` can find, and no more.

    With `pending`, then the defects withheld from the last day's feed (`Engine.pending`), listed under
    `spec.days + 1`: a late-arriving version of the last day and any anomaly its record carries are in no feed of
    this world, so kho cannot find them yet; they are left out by default, so that a precision/recall check
    against what was served does not count them as misses. `kho simulate export` lists them, marked pending.
    """
    eng = engine(spec)
    for day in range(spec.days + 1):
        yield from eng.truth(day)
    if pending:
        yield from eng.pending(spec.days)


def stream_truth(spec: WorldSpec, entities: Collection[Entity | str] | None = None,
                 days: Iterable[int] | None = None) -> Iterator[TruthEntry]:
    """The ground truth of an export: the defects of `days` (default 0..spec.days; each day's in the engine's
    order), of `entities` (default all; an anomaly is kept when the record it is reported under is of an entity
    asked for), each with the file day of its record; then, pending (`file_day` None, day = last day + 1), the
    defects withheld from the last day's feed."""
    eng = engine(spec)
    chosen = None if entities is None else [_entity(e) for e in entities]
    wanted = sorted(set(range(spec.days + 1) if days is None else days))
    for day in wanted:
        yield from eng.located(day, chosen)
    if wanted:
        yield from (TruthEntry(d, None) for d in eng.pending(wanted[-1], chosen))


def write_manifest(spec: WorldSpec, path: Path | str, *, pending: bool = False) -> int:
    """Write the ground truth as JSON Lines (registry, entity, key, kind, day, expected); return the line count.

    `pending` adds the defects withheld from the last day's feed (their day is `spec.days + 1`, beyond the world's);
    `kho simulate export` writes the fuller `ground_truth.jsonl`, which also names each defect's file.
    """
    target = Path(path)
    count = 0
    with target.open("w", encoding="utf-8") as out:
        for defect in stream_ground_truth(spec, pending=pending):
            out.write(defect.to_json() + "\n")
            count += 1
    return count


__all__ = [
    "ALL_DEFECT_KINDS", "DEFECT_KINDS", "MAX_CITIZENS", "Defect", "DefectKind", "Engine", "Record", "Served",
    "TruthEntry", "WorldSpec", "engine", "stream_changes", "stream_ground_truth", "stream_snapshot", "stream_truth",
    "write_manifest",
]
