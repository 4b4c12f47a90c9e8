"""Days 1..D: the daily changes of a world, replayed in order into a sparse overlay of record versions.

A day's events depend only on the seed, the day and the state the earlier days left, so the same spec replays the
same history; a world with 10 days is the first 10 days of one with 30. Only changed rows are held (one small
dict of changed fields per row version, full records for rows created on a day), never the day-0 records, which
each entity's simulation rebuilds on demand: memory grows with the number of changes, not of records.

This module is the machinery the registries' events share: versions, created rows, the people and households the
events meet, identity numbers and registration serials, and the day plan. The events themselves are declared by
each registry's simulation (`Event`s in `population.py`, `insurance.py`, `civil_status.py`, `business.py`; rates
and rules are documented there). Each day, the events of one random stream (`RegistrySimulation.stream`; kho's
four registries share `LINKED_WORLD`) are counted in their fixed order, shuffled, and given sorted moments of the
day, all from one generator seeded by (stream, seed, day).

With anomaly rates, an event may inject a cross-registry anomaly (each decided by a draw of (seed, kind, row, day)
apart from the day's event generator, `chance`). No later event undoes one: the dead are never touched again,
registrations never change, and in a household that names no one head (`headship_fixed`) nobody dies or marries
(a birth there adds a child, which changes no count of heads).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from kho.simulator import calendar as cal
from kho.simulator import insurance, reform
from kho.simulator.anomalies import ReportedKind
from kho.simulator.base import Base
from kho.simulator.people import FABRICATED_BASE_RANKS, GEOGRAPHY
from kho.simulator.rng import stream_key, unit_py
from kho.simulator.spec import EntitySimulation, Event, Record, RegistrySimulation
from kho.sources.contract import Entity

CREATED = 1 << 50
"""Row ids of rows created on days 1.. start here, above every day-0 row id, in creation order."""

S = TypeVar("S")


@dataclass
class Version:
    """One version of a row: the day it was written and its fields (changed ones, or all for a created row)."""

    day: int
    fields: Record
    full: bool


@dataclass
class Person:
    """What the events need to know of a citizen now; built from day-0 facts on first touch."""

    index: int
    cccd: str
    name: str
    sex: int
    dob: int
    alive: bool
    household: int
    member_row: int
    citizen_row: int
    """Row id of the population.citizens record: the index for day-0 citizens, a created row for the newborn."""
    commune: int
    temporary: int
    married: bool
    head: bool
    hometown: int
    ethnicity: str
    surname: int
    participant: int
    """Row id of the participant record, -1 when uninsured."""
    coverages: list[int] = field(default_factory=list)
    """Row ids of active coverage periods."""
    marriage: int = -1
    """Row id of the current marriage registration, -1 when not married (a day-0 couple's is its head's index)."""
    last_birth: int = 0
    """Date (ordinal) of the last child she bore during the feeds, 0 when none: the next is nine months later."""


@dataclass
class Household:
    number: int
    code: str
    members: list[int]
    """Living members' citizen indices, the head first."""
    commune: int


@dataclass(frozen=True)
class Anomaly:
    """A cross-registry anomaly (or a flagged defect, `anomalies.FlaggedKind`) injected by an event, for the ground
    truth."""

    entity: Entity
    row: int
    kind: ReportedKind
    day: int


def _day_plans(simulations: Sequence[RegistrySimulation]) -> list[tuple[str, list[Event]]]:
    """Per random stream (in catalogue order), its events in drawing order."""
    streams: dict[str, list[Event]] = {}
    for sim in simulations:
        streams.setdefault(sim.stream, []).extend(sim.events)
    return [(name, sorted(events, key=lambda e: e.order)) for name, events in streams.items() if events]


class Timeline:
    """The overlay of days 1..`day` over day 0, extended one day at a time by `run_to`."""

    def __init__(self, base: Base, simulations: Sequence[RegistrySimulation]) -> None:
        self.base = base
        self.day = 0
        self._entities: dict[str, EntitySimulation] = {
            e.entity.qualified_name: e for sim in simulations for e in sim.entities}
        self.versions: dict[str, dict[int, list[Version]]] = {name: {} for name in self._entities}
        self.created: dict[str, list[int]] = {name: [] for name in self._entities}
        self.touched: list[dict[str, list[int]]] = [{}]
        """Per day, per entity: rows written that day, in the order they were first written."""
        self.anomalies: list[list[Anomaly]] = [[]]
        self.newborns = 0
        """Citizens born on days 1..: their indices follow the day-0 citizens'."""
        self.anomaly_key = stream_key(base.seed, "timeline.anomaly")
        self._plans = _day_plans(simulations)
        self._seen: dict[str, set[int]] = {}
        self._people: dict[int, Person] = {}
        self._households: dict[int, Household] = {}
        self._next_created: dict[str, int] = dict.fromkeys(self._entities, CREATED)
        self._issued: dict[int, int] = {}
        self._fabricated: dict[int, int] = {}
        self._serial: dict[str, int] = {}
        self._fixed: dict[int, bool] = {}
        """Households whose memberships name no one head (an anomaly), by number: nobody there dies or marries."""
        self._states: dict[type, object] = {}

    @property
    def population(self) -> int:
        """Citizens ever known: day 0's and the newborns (the dead included)."""
        return self.base.citizens + self.newborns

    def state(self, kind: type[S]) -> S:
        """A registry's own state of the replay (e.g. the enterprises its events met), made on first use."""
        found = self._states.get(kind)
        if found is None:
            found = self._states[kind] = kind()
        assert isinstance(found, kind)
        return found

    # --- reading versions ----------------------------------------------------------------------------------------

    def version_at(self, entity: str, row: int, day: int) -> tuple[Version | None, Version | None]:
        """(version current at the end of `day`, the one before it) of a row; None for day 0's base record."""
        history = self.versions[entity].get(row)
        if not history:
            return None, None
        current = previous = None
        for version in history:
            if version.day > day:
                break
            previous, current = current, version
        return current, previous

    def current(self, entity: Entity, row: int) -> Record:
        """The clean record of a row as it stands now (base record merged with its latest version)."""
        name = entity.qualified_name
        history = self.versions[name].get(row)
        if history and history[-1].full:
            return history[-1].fields
        record = self._entities[name].render(self.base, np.array([row], dtype=np.int64)).records[0]
        if history:
            record.update(history[-1].fields)
        return record

    # --- writing versions ----------------------------------------------------------------------------------------

    def write(self, entity: Entity, row: int, fields: Record, *, full: bool = False) -> None:
        """Change fields of a row today (merged into today's version when the row already changed today)."""
        name = entity.qualified_name
        history = self.versions[name].setdefault(row, [])
        if not history and not full and row < CREATED:
            # A day-0 record rewritten after the reform carries the new commune codes in every commune field.
            fields = {**reform.converted(self.current(entity, row), entity, self.today()), **fields}
        if history and history[-1].day == self.day:
            history[-1].fields.update(fields)
        else:
            merged = {**history[-1].fields, **fields} if history else dict(fields)
            history.append(Version(self.day, merged, full or bool(history and history[-1].full)))
        seen = self._seen.setdefault(name, set())
        if row not in seen:
            seen.add(row)
            self.touched[self.day].setdefault(name, []).append(row)

    def create(self, entity: Entity, record: Record) -> int:
        """A new row of `entity`, written today in full; returns its row id."""
        name = entity.qualified_name
        row = self._next_created[name]
        self._next_created[name] = row + 1
        self.created[name].append(row)
        self.write(entity, row, record, full=True)
        return row

    def next_row(self, entity: Entity) -> int:
        """The row id the next `create` of `entity` will return."""
        return self._next_created[entity.qualified_name]

    def report(self, entity: Entity, row: int, kind: ReportedKind) -> None:
        """Record that today's event left anomaly (or flagged defect) `kind` in a row, for the ground truth."""
        self.anomalies[self.day].append(Anomaly(entity, row, kind, self.day))

    def serial_id(self, prefix: str) -> str:
        """Registration numbers of day-d rows: prefix, 9, the day (4 digits), a 7-digit serial."""
        n = self._serial.get(prefix, 0)
        self._serial[prefix] = n + 1
        return f"{prefix}9{self.day:04d}{n:07d}"

    def issue_cccd(self, prefix: int, *, known: bool = True) -> str:
        """A new identity number of CCCD prefix `prefix`: the next rank after the day-0 citizens', or, when the
        population registry must not know it (`known=False`), the next of the ranks kept for such numbers."""
        counter = self._issued if known else self._fabricated
        start = int(self.base.index.totals[prefix]) if known else FABRICATED_BASE_RANKS[1]
        rank = start + counter.get(prefix, 0)
        counter[prefix] = counter.get(prefix, 0) + 1
        return f"{int(self.base.index.numbers(np.array([prefix]), np.array([rank]))[0]):012d}"

    # --- people and households -----------------------------------------------------------------------------------

    def person(self, index: int) -> Person:
        known = self._people.get(index)
        if known is not None:
            return known
        return self.people([index])[0]

    def people(self, indices: list[int]) -> list[Person]:
        """State of citizens (day-0 facts for those not yet touched), batched for numpy."""
        missing = [i for i in indices if i not in self._people]
        if missing:
            base = self.base
            arr = np.array(sorted(set(missing)), dtype=np.int64)
            p = base.people(arr)
            cccds = base.cccd(p)
            names = p.names()
            insured = insurance.insured(base, p).tolist()
            active = insurance.active_coverages(base, arr)
            ethnic = GEOGRAPHY.ethnicities
            for j, i in enumerate(arr.tolist()):
                self._people[i] = Person(
                    index=i, cccd=cccds[j], name=names[j], sex=int(p.sex[j]), dob=int(p.dob[j]),
                    alive=not bool(p.deceased[j]), household=int(p.household[j]), member_row=i, citizen_row=i,
                    commune=int(p.commune[j]), temporary=int(p.temporary[j]),
                    married=bool(p.married_now[j]), head=int(p.role[j]) == 0, hometown=int(p.hometown[j]),
                    ethnicity=ethnic[int(p.ethnicity[j])], surname=int(p.surname[j]),
                    participant=i if insured[j] else -1, coverages=active[j] if insured[j] else [],
                    marriage=int(p.marriage_row[j]))
        return [self._people[i] for i in indices]

    def add_newborn(self, child: Person) -> None:
        """A citizen born today, whose index is the next one (`population`)."""
        if child.index != self.population:
            raise ValueError(f"a newborn takes index {self.population}, not {child.index}")
        self._people[child.index] = child
        self.newborns += 1

    def household(self, number: int) -> Household:
        known = self._households.get(number)
        if known is not None:
            return known
        households, first, size = self.base.households_of(np.array([number], dtype=np.int64))
        start, count = int(first[0]), int(size[0])
        members = [m.index for m in self.people(list(range(start, start + count))) if m.alive]
        head = self.person(start)
        house = Household(number, self.base.household_codes(households)[0], members, head.commune)
        self._households[number] = house
        return house

    def headship_fixed(self, household: int) -> bool:
        """Whether a household names no one living head (day 0's or an event's anomaly): its members then neither
        die nor marry, the events that would change who lives there as head."""
        known = self._fixed.get(household)
        if known is None:
            known = False
            if self.base.rate("household_without_one_head") > 0:
                number = np.array([household], dtype=np.int64)
                known = bool(self.base.odd_heads(number, self.base.household_slots(number)[1])[0][0])
            self._fixed[household] = known
        return known

    def fix_headship(self, household: int) -> None:
        """Today's event left a household with no one head: from now on `headship_fixed`."""
        self._fixed[household] = True

    # --- days ----------------------------------------------------------------------------------------------------

    def run_to(self, day: int) -> None:
        while self.day < day:
            self.day += 1
            self.touched.append({})
            self.anomalies.append([])
            self._seen = {}
            self._run_day()

    def _run_day(self) -> None:
        for stream, events in self._plans:
            rng = random.Random(f"{stream}:{self.base.seed}:{self.day}")
            plan: list[Event] = []
            for event in events:
                plan += [event] * _count(rng, event.rate * event.per(self))
            rng.shuffle(plan)
            start = cal.day_start(self.day)
            moments = sorted(rng.randrange(cal.SECONDS_PER_DAY) for _ in plan)
            for event, moment in zip(plan, moments, strict=True):
                event.happen(self, rng, start + moment)

    def sample(self, rng: random.Random, tries: int = 24) -> list[Person]:
        """`tries` citizens drawn at random (dead or alive), for an event to pick from."""
        population = self.population
        if not population:
            return []
        return self.people([rng.randrange(population) for _ in range(tries)])

    def commune_code(self, commune: int, salt: int) -> str:
        """The code a record written today gives commune `commune` (an index into GEOGRAPHY.communes) of household
        (or enterprise) `salt`: its new code from 2025-07-01 (`reform`)."""
        return reform.code_on(GEOGRAPHY.communes[commune], self.today(), salt)

    def province_code(self, commune: int) -> int:
        """The province code in force today for a place in commune `commune` (Bình Dương's communes: 79 from
        2025-07-01), as a birth registered there today is numbered."""
        return reform.province_on(int(GEOGRAPHY.commune_province[commune]), self.today())

    def today(self) -> int:
        """Today's date ordinal."""
        return cal.day_ord(self.day)

    def age(self, person: Person) -> float:
        return (self.today() - person.dob) / 365.2425

    def chance(self, kind: ReportedKind, index: int) -> bool:
        """Whether today's event on row (or citizen) `index` injects anomaly (or flagged defect) `kind`: a draw of
        (seed, kind, index, day), apart from the day's event generator, so that a clean world's events do not depend
        on the rates."""
        rate = self.base.rate(kind)
        return rate > 0 and unit_py(stream_key(self.anomaly_key, kind), index, self.day) < rate


def _count(rng: random.Random, expected: float) -> int:
    """A whole number of events with mean `expected` (its fraction decided by one draw)."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)
