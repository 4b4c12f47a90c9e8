"""Days 1..D: the daily changes of a world, replayed in order into a sparse overlay of record versions.

A day's events depend only on the seed, the day and the state the earlier days left, so the same spec replays the
same history; a world with 10 days is the first 10 days of one with 30. Only changed rows are held (one small
dict of changed fields per row version, full records for rows created on a day), never the day-0 records, which
`registries.Base` rebuilds on demand: memory grows with the number of changes, not of records.

Change model, per day (rates are shares of the living population, or of enterprises, per day; they are about
20-50 times real Vietnamese rates so that a 10-day feed shows what a year would, documented in `generate.py`):

- births 0.05 %: a mother aged 18-45 has a child; a birth registration, a new citizen in her household, a new
  insurance participant (child under 6) with a health coverage period;
- deaths 0.05 % (weighted to the old): a death registration; the citizen becomes deceased, leaves the household on
  the date of death, never before joining it (whose head passes to the spouse or the eldest member), and every
  active coverage period ends on the death date;
- household moves 0.1 % of citizens: a whole household moves to another commune: household address and every
  living member's permanent commune change, one residence change per member;
- temporary registrations 0.05 %: an adult registers a temporary residence elsewhere;
- marriages 0.05 %: an unmarried man of 20-45 and woman of 18-40 marry; she joins his household;
- coverage lapses 0.05 %: an active health coverage lapses and the participant owes contributions;
- enterprises: openings 0.5 % of enterprises (legal representative: a living adult citizen), suspensions and
  dissolutions 0.2 % each (status, a status-history row, and the branches' status).

With anomaly rates, an event may inject a cross-registry anomaly (each decided by a draw of (seed, kind, row, day)
apart from the day's event generator): a birth without a citizen, or with another date of birth on its
registration; a marriage of an under-age party; a death that leaves coverage active, the membership open, or the
household without a head. No later event undoes one: the dead are never touched again, registrations never
change, and in a household that names no one head (`headship_fixed`) nobody dies or marries (a birth there adds a
child, which changes no count of heads).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from kho.simulator import anomalies
from kho.simulator import calendar as cal
from kho.simulator.people import FABRICATED_BASE_RANKS, FEMALE, GEOGRAPHY, HOME_PROVINCE, MALE, full_name, prefix_ids
from kho.simulator.registries import (
    CITIZENS_PER_ENTERPRISE,
    ENTERPRISE_CAPACITY,
    Base,
    Record,
    enterprise_name,
    tax_codes,
)
from kho.simulator.rng import feistel_py, hash_py, stream_key, unit_py
from kho.simulator.text import BRAND_WORDS, GIVEN, HAMLETS, INDUSTRIES, LEGAL_FORMS, MIDDLE, STREETS
from kho.sources.civil_status import MIN_MARRIAGE_AGE

CREATED = 1 << 50
"""Row ids of rows created on days 1.. start here, above every day-0 row id, in creation order."""

RATES = {"birth": 0.0005, "death": 0.0005, "move": 0.001 / 3.1, "temporary": 0.0005, "marriage": 0.0005,
         "lapse": 0.0005}
"""Events per living citizen per day (household moves per household: 0.1 % of citizens move)."""
ENTERPRISE_RATES = {"open": 0.005, "suspend": 0.002, "dissolve": 0.002}


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
    social_code: str | None
    coverages: list[int] = field(default_factory=list)
    """Row ids of active coverage periods."""


@dataclass
class Household:
    number: int
    code: str
    members: list[int]
    """Living members' citizen indices, the head first."""
    commune: int


@dataclass
class Firm:
    row: int
    code: str
    status: str
    established: int
    branches: list[int]
    status_dates: set[int]


@dataclass
class Anomaly:
    """A cross-registry anomaly injected by an event, for the ground truth."""

    entity: str
    row: int
    kind: str
    day: int


class Timeline:
    """The overlay of days 1..`day` over day 0, extended one day at a time by `run_to`."""

    def __init__(self, base: Base, *, anomaly_rates: dict[str, float]) -> None:
        self.base = base
        self.day = 0
        self.anomaly_rates = anomaly_rates
        self.versions: dict[str, dict[int, list[Version]]] = {name: {} for name in base.renderers}
        self.created: dict[str, list[int]] = {name: [] for name in base.renderers}
        self.touched: list[dict[str, list[int]]] = [{}]
        """Per day, per entity: rows written that day, in the order they were first written."""
        self.anomalies: list[list[Anomaly]] = [[]]
        self._seen: dict[str, set[int]] = {}
        self._people: dict[int, Person] = {}
        self._households: dict[int, Household] = {}
        self._firms: dict[int, Firm] = {}
        self._newborns = 0
        self._next_created: dict[str, int] = {name: CREATED for name in base.renderers}
        self._prefix_births: dict[int, int] = {}
        self._fabricated: dict[int, int] = {}
        self._serial: dict[str, int] = {}
        self._new_firms = 0
        self._k_social = stream_key(base.seed, "base.social")
        self._k_anomaly = stream_key(base.seed, "timeline.anomaly")
        self._fixed: dict[int, bool] = {}
        """Households whose memberships name no one head (an anomaly), by number: nobody there dies or marries."""

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

    # --- writing versions ----------------------------------------------------------------------------------------

    def _write(self, entity: str, row: int, fields: Record, *, full: bool = False) -> None:
        history = self.versions[entity].setdefault(row, [])
        if history and history[-1].day == self.day:
            history[-1].fields.update(fields)
        else:
            merged = {**history[-1].fields, **fields} if history else dict(fields)
            history.append(Version(self.day, merged, full or bool(history and history[-1].full)))
        seen = self._seen.setdefault(entity, set())
        if row not in seen:
            seen.add(row)
            self.touched[self.day].setdefault(entity, []).append(row)

    def _create(self, entity: str, record: Record) -> int:
        row = self._next_created[entity]
        self._next_created[entity] = row + 1
        self.created[entity].append(row)
        self._write(entity, row, record, full=True)
        return row

    def _serial_id(self, prefix: str) -> str:
        """Registration numbers of day-d rows: prefix, 9, the day (4 digits), a 7-digit serial."""
        n = self._serial.get(prefix, 0)
        self._serial[prefix] = n + 1
        return f"{prefix}9{self.day:04d}{n:07d}"

    # --- state ---------------------------------------------------------------------------------------------------

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
            codes = base.social_codes(p)
            insured = base.insured(p).tolist()
            ethnic = GEOGRAPHY.ethnicities
            cover_ids = (arr[:, None] * 4 + np.arange(4)[None, :]).ravel()
            cover_people = base.people(cover_ids // 4)
            exists, _, _, status = base.coverage_facts(cover_ids, cover_people)
            for j, i in enumerate(arr.tolist()):
                active = [int(cover_ids[j * 4 + k]) for k in range(4)
                          if exists[j * 4 + k] and status[j * 4 + k] == "active"]
                self._people[i] = Person(
                    index=i, cccd=cccds[j], name=names[j], sex=int(p.sex[j]), dob=int(p.dob[j]),
                    alive=not bool(p.deceased[j]), household=int(p.household[j]), member_row=i, citizen_row=i,
                    commune=int(p.commune[j]), temporary=int(p.temporary[j]),
                    married=bool(p.married_on[j] > 0), head=int(p.role[j]) == 0, hometown=int(p.hometown[j]),
                    ethnicity=ethnic[int(p.ethnicity[j])], surname=int(p.surname[j]),
                    participant=i if insured[j] else -1, social_code=codes[j] if insured[j] else None,
                    coverages=active if insured[j] else [])
        return [self._people[i] for i in indices]

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

    def firm(self, row: int) -> Firm:
        known = self._firms.get(row)
        if known is not None:
            return known
        base = self.base
        ids = np.array([row], dtype=np.int64)
        f = base.enterprise_facts(ids)
        record = base.render_enterprises(ids).records[0]
        branch_rows = np.arange(row * 4, row * 4 + 4, dtype=np.int64)
        branches = base.render_branches(branch_rows).ids.tolist()
        dates = {int(f.established[0])}
        if int(f.status[0]) == 1 or bool(f.suspended_first[0]):
            dates.add(int(f.first_change[0]))
        if int(f.status[0]) == 2:
            dates.add(int(f.last_change[0]))
        firm = Firm(row, str(record["enterprise_code"]), str(record["status"]), int(f.established[0]), branches,
                    dates)
        self._firms[row] = firm
        return firm

    # --- days ----------------------------------------------------------------------------------------------------

    def run_to(self, day: int) -> None:
        while self.day < day:
            self.day += 1
            self.touched.append({})
            self.anomalies.append([])
            self._seen = {}
            self._run_day()

    def _run_day(self) -> None:
        rng = random.Random(f"kho.simulator.timeline:{self.base.seed}:{self.day}")
        population = self.base.citizens + self._newborns
        firms = self.base.enterprises + self._new_firms
        plan: list[str] = []
        for kind, rate in RATES.items():
            plan += [kind] * _count(rng, rate * population)
        for kind, rate in ENTERPRISE_RATES.items():
            plan += [kind] * _count(rng, rate * max(firms, CITIZENS_PER_ENTERPRISE if population else 0))
        rng.shuffle(plan)
        start = cal.day_start(self.day)
        moments = sorted(rng.randrange(cal.SECONDS_PER_DAY) for _ in plan)
        handlers = {"birth": self._birth, "death": self._death, "move": self._move, "temporary": self._temporary,
                    "marriage": self._marriage, "lapse": self._lapse, "open": self._open,
                    "suspend": self._suspend, "dissolve": self._dissolve}
        for kind, moment in zip(plan, moments, strict=True):
            handlers[kind](rng, start + moment)

    def _sample(self, rng: random.Random, tries: int = 24) -> list[Person]:
        population = self.base.citizens + self._newborns
        if not population:
            return []
        return self.people([rng.randrange(population) for _ in range(tries)])

    def _today(self) -> int:
        return cal.day_ord(self.day)

    def _age(self, person: Person) -> float:
        return (self._today() - person.dob) / 365.2425

    def _chance(self, kind: str, index: int) -> bool:
        """Whether today's event on row (or citizen) `index` injects anomaly `kind`: a draw of (seed, kind, index,
        day), apart from the day's event generator, so that a clean world's events do not depend on the rates."""
        rate = self.anomaly_rates.get(kind, 0.0)
        return rate > 0 and unit_py(stream_key(self._k_anomaly, kind), index, self.day) < rate

    def headship_fixed(self, household: int) -> bool:
        """Whether a household names no one living head (day 0's or an event's anomaly): its members then neither
        die nor marry, the events that would change who lives there as head."""
        known = self._fixed.get(household)
        if known is None:
            flags = self.base.anomalous("population.households", np.array([household], dtype=np.int64))
            known = self._fixed[household] = flags is not None and bool(flags[0])
        return known

    # --- population events ---------------------------------------------------------------------------------------

    def _birth(self, rng: random.Random, at: int) -> None:
        mother = next((p for p in self._sample(rng) if p.alive and p.sex == FEMALE and 18 <= self._age(p) <= 45
                       and p.household >= 0), None)
        if mother is None:
            return
        house = self.household(mother.household)
        father = self._spouse_of(mother, house)
        today = self._today()
        dob = max(today - rng.randrange(31), mother.dob + 18 * 365)
        sex = MALE if rng.random() < 0.51 else FEMALE
        parent = father or mother
        surname = parent.surname
        middle = -1 if rng.random() < 0.25 else rng.randrange(len(MIDDLE[sex]))
        name = full_name(surname, middle, -1, rng.randrange(len(GIVEN[sex])), sex)
        province = int(GEOGRAPHY.commune_province[house.commune])
        prefix = int(prefix_ids(np.array([province]), np.array([dob]), np.array([sex]))[0])
        stamp = cal.timestamp(at)
        anomalous = rng.random() < self.anomaly_rates.get("birth_without_citizen", 0.0)
        if anomalous:
            rank = FABRICATED_BASE_RANKS[1] + self._fabricated.get(prefix, 0)
            self._fabricated[prefix] = self._fabricated.get(prefix, 0) + 1
        else:
            rank = int(self.base.index.totals[prefix]) + self._prefix_births.get(prefix, 0)
            self._prefix_births[prefix] = self._prefix_births.get(prefix, 0) + 1
        cccd = f"{int(self.base.index.numbers(np.array([prefix]), np.array([rank]))[0]):012d}"
        commune_code = GEOGRAPHY.communes[house.commune]
        registered_dob = dob if anomalous else self._registered_birth_date(dob, today)
        row = self._create("civil_status.births", {
            "registration_id": self._serial_id("KS"), "child_cccd": cccd, "child_full_name": name,
            "child_sex": "M" if sex == MALE else "F", "date_of_birth": cal.iso_date(registered_dob),
            "place_commune_code": commune_code, "father_cccd": father.cccd if father else None,
            "mother_cccd": mother.cccd, "registered_on": cal.iso_date(today), "updated_at": stamp,
        })
        if anomalous:
            self.anomalies[self.day].append(Anomaly("civil_status.births", row, "birth_without_citizen", self.day))
            return
        if registered_dob != dob:
            self.anomalies[self.day].append(
                Anomaly("civil_status.births", row, "cccd_contradicts_birth_record", self.day))
        index = self.base.citizens + self._newborns
        self._newborns += 1
        child = Person(index=index, cccd=cccd, name=name, sex=sex, dob=dob, alive=True, household=house.number,
                       member_row=-1, citizen_row=-1, commune=house.commune, temporary=-1, married=False, head=False,
                       hometown=parent.hometown, ethnicity=parent.ethnicity, surname=surname, participant=-1,
                       social_code=None)
        self._people[index] = child
        child.citizen_row = self._create("population.citizens", {
            "cccd": cccd, "full_name": name, "date_of_birth": cal.iso_date(dob), "sex": "M" if sex == MALE else "F",
            "ethnicity": child.ethnicity, "birth_province_code": f"{province:02d}",
            "hometown_province_code": f"{parent.hometown:02d}",
            "permanent_commune_code": commune_code, "temporary_commune_code": None, "household_id": house.code,
            "status": "alive", "date_of_death": None, "updated_at": stamp,
        })
        relation = "child" if mother.head or (father is not None and father.head) else "grandchild"
        child.member_row = self._create("population.household_members", {
            "household_id": house.code, "cccd": cccd, "relation_to_head": relation, "joined_on": cal.iso_date(dob),
            "left_on": None, "updated_at": stamp,
        })
        house.members.append(index)
        self._write("population.households", house.number, {"member_count": str(len(house.members)),
                                                            "updated_at": stamp})
        serial = feistel_py(self._k_social, index, 10_000)
        code = f"{province:02d}{serial:08d}"
        child.social_code = code
        child.participant = self._create("insurance.participants", {
            "social_insurance_code": code, "cccd": cccd, "full_name": name, "participant_type": "child_under_6",
            "registered_hospital_code": f"{province:02d}{1 + rng.randrange(30):03d}", "contribution_status": "paid",
            "updated_at": stamp,
        })
        child.coverages.append(self._create("insurance.coverage_periods", {
            "coverage_id": self._serial_id("CV"), "social_insurance_code": code, "coverage_type": "health",
            "valid_from": cal.iso_date(dob), "valid_to": None, "status": "active", "updated_at": stamp,
        }))

    def _registered_birth_date(self, dob: int, today: int) -> int:
        """The date of birth the registration states: the true one, or for `cccd_contradicts_birth_record` another
        day of the same year, not after today (so the child's CCCD and the row's date order still agree)."""
        row = np.array([self._next_created["civil_status.births"]], dtype=np.int64)
        hit, registered = anomalies.birth_dates(
            stream_key(self._k_anomaly, "cccd_contradicts_birth_record"), row, np.array([dob]),
            np.array([today]), self.anomaly_rates.get("cccd_contradicts_birth_record", 0.0))
        return int(registered[0]) if bool(hit[0]) else dob

    def _spouse_of(self, person: Person, house: Household) -> Person | None:
        """The living spouse of `person` in the same household: the head's partner, or the partner's head."""
        if not person.married:
            return None
        for other in self.people(house.members[:3]):
            if other is not person and other.married and other.sex != person.sex and other.alive \
                    and (other.head or person.head):
                return other
        return None

    def _death(self, rng: random.Random, at: int) -> None:
        def dies(p: Person) -> bool:
            if not p.alive:
                return False
            house = self.household(p.household) if p.household >= 0 else None
            if house is not None and len(house.members) <= 1:
                return False  # the registry cannot close a household, so its last member stays (documented)
            if house is not None and self.headship_fixed(house.number):
                return False
            age = self._age(p)
            return rng.random() < (0.03 if age < 40 else 0.15 if age < 60 else 0.5 if age < 75 else 1.0)

        person = next((p for p in self._sample(rng, 40) if dies(p)), None)
        if person is None:
            return
        today = self._today()
        # Nobody dies before the latest membership began (a bride's wedding day), which would leave it open after.
        dod = max(today - rng.randrange(8), person.dob, self._joined(person) if person.household >= 0 else 0)
        stamp = cal.timestamp(at)
        commune_code = GEOGRAPHY.communes[person.commune]
        self._create("civil_status.deaths", {
            "registration_id": self._serial_id("KT"), "cccd": person.cccd, "date_of_death": cal.iso_date(dod),
            "place_commune_code": commune_code, "registered_on": cal.iso_date(today), "updated_at": stamp,
        })
        person.alive = False
        self._write("population.citizens", person.citizen_row, {
            "status": "deceased", "date_of_death": cal.iso_date(dod), "household_id": None, "updated_at": stamp})
        if person.household >= 0:
            self._leave_by_death(person, dod, stamp)
        keep_active = rng.random() < self.anomaly_rates.get("deceased_with_active_coverage", 0.0)
        for coverage in person.coverages:
            if keep_active:
                self.anomalies[self.day].append(
                    Anomaly("insurance.coverage_periods", coverage, "deceased_with_active_coverage", self.day))
            else:
                self._write("insurance.coverage_periods", coverage,
                            {"valid_to": cal.iso_date(max(dod, self._coverage_start(coverage))), "status": "ended",
                             "updated_at": stamp})
        person.coverages = []

    def _leave_by_death(self, person: Person, dod: int, stamp: str) -> None:
        """The dead leave their household on the day of death, and a head's spouse or eldest member succeeds them.

        Anomalies: `member_after_death` leaves the membership open; `household_without_one_head` names no
        successor, and the household then keeps its members (`headship_fixed`). The dead never count as living
        members, so each anomaly leaves the other rule alone.
        """
        house = self.household(person.household)
        if self._chance("member_after_death", person.index):
            self.anomalies[self.day].append(
                Anomaly("population.household_members", person.member_row, "member_after_death", self.day))
        else:
            self._write("population.household_members", person.member_row,
                        {"left_on": cal.iso_date(dod), "updated_at": stamp})
        was_head = house.members and house.members[0] == person.index
        house.members.remove(person.index)
        changes: Record = {"member_count": str(len(house.members)), "updated_at": stamp}
        if was_head and self._chance("household_without_one_head", person.index):
            self._fixed[house.number] = True
            self.anomalies[self.day].append(
                Anomaly("population.households", house.number, "household_without_one_head", self.day))
        elif was_head:
            successor = self._successor(house, person)
            house.members.remove(successor.index)
            house.members.insert(0, successor.index)
            successor.head = True
            changes["head_cccd"] = successor.cccd
            self._write("population.household_members", successor.member_row,
                        {"relation_to_head": "head", "updated_at": stamp})
        self._write("population.households", house.number, changes)

    def _joined(self, person: Person) -> int:
        """The joined_on date of a person's current membership row."""
        record = self.current("population.household_members", person.member_row)
        return date.fromisoformat(str(record["joined_on"])).toordinal()

    def _coverage_start(self, coverage: int) -> int:
        record = self.current("insurance.coverage_periods", coverage)
        return date.fromisoformat(str(record["valid_from"])).toordinal()

    def current(self, entity: str, row: int) -> Record:
        """The clean record of a row as it stands now (base record merged with its latest version)."""
        history = self.versions[entity].get(row)
        if history and history[-1].full:
            return history[-1].fields
        record = self.base.renderers[entity](np.array([row], dtype=np.int64)).records[0]
        if history:
            record.update(history[-1].fields)
        return record

    def _successor(self, house: Household, gone: Person) -> Person:
        living = self.people(house.members)
        spouse = next((p for p in living if p.married and p.sex != gone.sex and gone.married), None)
        adults = sorted(living, key=lambda p: p.dob)
        return spouse or adults[0]

    def _move(self, rng: random.Random, at: int) -> None:
        person = next((p for p in self._sample(rng) if p.alive and p.household >= 0), None)
        if person is None:
            return
        house = self.household(person.household)
        home = GEOGRAPHY.home_communes
        target = int(home[rng.randrange(len(home))])
        if target == house.commune:
            target = int(home[(int(np.searchsorted(home, target)) + 1) % len(home)])
        if target == house.commune:
            return
        stamp = cal.timestamp(at)
        effective = cal.iso_date(self._today() - rng.randrange(6))
        old = house.commune
        house.commune = target
        self._write("population.households", house.number, {
            "commune_code": GEOGRAPHY.communes[target], "address_line": _address(rng), "updated_at": stamp})
        for member in self.people(list(house.members)):
            member.commune = target
            changes: Record = {"permanent_commune_code": GEOGRAPHY.communes[target], "updated_at": stamp}
            if member.temporary == target:
                member.temporary = -1
                changes["temporary_commune_code"] = None
            self._write("population.citizens", member.citizen_row, changes)
            self._create("population.residence_changes", {
                "change_id": self._serial_id("RC"), "cccd": member.cccd, "kind": "permanent",
                "from_commune_code": GEOGRAPHY.communes[old], "to_commune_code": GEOGRAPHY.communes[target],
                "effective_on": effective, "registered_at": stamp, "updated_at": stamp,
            })

    def _temporary(self, rng: random.Random, at: int) -> None:
        person = next((p for p in self._sample(rng) if p.alive and self._age(p) >= 18), None)
        if person is None:
            return
        home = GEOGRAPHY.home_communes
        target = int(home[rng.randrange(len(home))])
        if target in (person.commune, person.temporary):
            return
        stamp = cal.timestamp(at)
        old = person.temporary
        person.temporary = target
        self._write("population.citizens", person.citizen_row,
                    {"temporary_commune_code": GEOGRAPHY.communes[target], "updated_at": stamp})
        self._create("population.residence_changes", {
            "change_id": self._serial_id("RC"), "cccd": person.cccd, "kind": "temporary",
            "from_commune_code": GEOGRAPHY.communes[old] if old >= 0 else None,
            "to_commune_code": GEOGRAPHY.communes[target], "effective_on": cal.iso_date(self._today()),
            "registered_at": stamp, "updated_at": stamp,
        })

    def _couple(self, candidates: list[Person], young: bool) -> tuple[Person | None, Person | None, str | None]:
        """An unmarried man of 20-45 and woman of 18-40 among `candidates`; when `young`, if the sample allows, a
        bride of 16-17 or a groom of 18-19 (completed years, as law counts them), whose role is the third value."""
        today = self._today()

        def free(p: Person, sex: int) -> bool:
            return p.alive and not p.married and p.sex == sex and p.household >= 0 \
                and not self.headship_fixed(p.household)

        def groom(p: Person) -> bool:
            return free(p, MALE) and 20 <= self._age(p) <= 45

        def bride(p: Person) -> bool:
            return free(p, FEMALE) and not p.head and 18 <= self._age(p) <= 40

        def young_groom(p: Person) -> bool:
            return free(p, MALE) and 18 <= cal.completed_years(p.dob, today) < 20

        def young_bride(p: Person) -> bool:
            return free(p, FEMALE) and not p.head and 16 <= cal.completed_years(p.dob, today) < 18

        if young:
            for man, woman, who in ((groom, young_bride, "wife"), (young_groom, bride, "husband")):
                husband, wife = next(filter(man, candidates), None), next(filter(woman, candidates), None)
                if husband is not None and wife is not None and husband.household != wife.household:
                    return husband, wife, who
        return next(filter(groom, candidates), None), next(filter(bride, candidates), None), None

    def _marriage(self, rng: random.Random, at: int) -> None:
        candidates = self._sample(rng, 60)
        row = self._next_created["civil_status.marriages"]
        husband, wife, young = self._couple(candidates, self._chance("marriage_under_legal_age", row))
        if husband is None or wife is None or husband.household == wife.household:
            return
        stamp = cal.timestamp(at)
        today = cal.iso_date(self._today())
        his = self.household(husband.household)
        hers = self.household(wife.household)
        # `marriage_under_legal_age`: the registration states a date of birth that makes the young party of age.
        stated = {"husband": husband.dob, "wife": wife.dob}
        if young is not None:
            older = 1 + hash_py(stream_key(self._k_anomaly, "stated_date_of_birth"), row) % 700
            stated[young] = cal.add_years(self._today(), -MIN_MARRIAGE_AGE[young]) - older
        self._create("civil_status.marriages", {
            "registration_id": self._serial_id("KH"), "husband_cccd": husband.cccd, "wife_cccd": wife.cccd,
            "husband_date_of_birth": cal.iso_date(stated["husband"]),
            "wife_date_of_birth": cal.iso_date(stated["wife"]),
            "registered_on": today, "place_commune_code": GEOGRAPHY.communes[his.commune], "updated_at": stamp,
        })
        if young is not None:
            self.anomalies[self.day].append(
                Anomaly("civil_status.marriages", row, "marriage_under_legal_age", self.day))
        husband.married = wife.married = True
        self._write("population.household_members", wife.member_row, {"left_on": today, "updated_at": stamp})
        hers.members.remove(wife.index)
        self._write("population.households", hers.number,
                    {"member_count": str(len(hers.members)), "updated_at": stamp})
        wife.member_row = self._create("population.household_members", {
            "household_id": his.code, "cccd": wife.cccd, "relation_to_head": "spouse" if husband.head else "other",
            "joined_on": today, "left_on": None, "updated_at": stamp,
        })
        his.members.append(wife.index)
        wife.household = his.number
        self._write("population.households", his.number,
                    {"member_count": str(len(his.members)), "updated_at": stamp})
        changes: Record = {"household_id": his.code, "updated_at": stamp}
        if wife.commune != his.commune:
            self._create("population.residence_changes", {
                "change_id": self._serial_id("RC"), "cccd": wife.cccd, "kind": "permanent",
                "from_commune_code": GEOGRAPHY.communes[wife.commune],
                "to_commune_code": GEOGRAPHY.communes[his.commune], "effective_on": today, "registered_at": stamp,
                "updated_at": stamp,
            })
            wife.commune = his.commune
            changes["permanent_commune_code"] = GEOGRAPHY.communes[his.commune]
        self._write("population.citizens", wife.citizen_row, changes)

    def _lapse(self, rng: random.Random, at: int) -> None:
        person = next((p for p in self._sample(rng) if p.alive and p.coverages and self._age(p) >= 6), None)
        if person is None:
            return
        coverage = person.coverages.pop(0)
        stamp = cal.timestamp(at)
        today = max(self._today(), self._coverage_start(coverage))
        self._write("insurance.coverage_periods", coverage,
                    {"status": "lapsed", "valid_to": cal.iso_date(today), "updated_at": stamp})
        if person.participant >= 0:
            self._write("insurance.participants", person.participant,
                        {"contribution_status": "owing", "updated_at": stamp})

    # --- business events -----------------------------------------------------------------------------------------

    def _open(self, rng: random.Random, at: int) -> None:
        rep = next((p for p in self._sample(rng) if p.alive and self._age(p) >= 18), None)
        number = self.base.enterprises + self._new_firms
        if rep is None or number >= ENTERPRISE_CAPACITY:
            return
        self._new_firms += 1
        code = tax_codes(np.array([feistel_py(stream_key(self.base.seed, "base.enterprise.code"), number, 1000)]))[0]
        stamp = cal.timestamp(at)
        today = self._today()
        form = rng.randrange(len(LEGAL_FORMS))
        industry = rng.randrange(len(INDUSTRIES))
        rep_cccd = rep.cccd
        anomalous = rng.random() < self.anomaly_rates.get("legal_rep_unknown", 0.0)
        if anomalous:
            prefix = int(prefix_ids(np.array([HOME_PROVINCE]), np.array([rep.dob]), np.array([rep.sex]))[0])
            rank = FABRICATED_BASE_RANKS[1] + self._fabricated.get(prefix, 0)
            self._fabricated[prefix] = self._fabricated.get(prefix, 0) + 1
            rep_cccd = f"{int(self.base.index.numbers(np.array([prefix]), np.array([rank]))[0]):012d}"
        home = GEOGRAPHY.home_communes
        row = self._create("business.enterprises", {
            "enterprise_code": code,
            "name": enterprise_name(form, industry, rng.randrange(len(BRAND_WORDS))),
            "legal_form": LEGAL_FORMS[form], "industry_code": INDUSTRIES[industry][0],
            "commune_code": GEOGRAPHY.communes[int(home[rng.randrange(len(home))])],
            "registered_capital": str(rng.randrange(50, 5000) * 10_000_000), "legal_rep_cccd": rep_cccd,
            "status": "active", "established_on": cal.iso_date(today), "updated_at": stamp,
        })
        self._firms[row] = Firm(row, code, "active", today, [], {today})
        if anomalous:
            self.anomalies[self.day].append(Anomaly("business.enterprises", row, "legal_rep_unknown", self.day))
        self._create("business.enterprise_status_changes", {
            "enterprise_code": code, "status": "active", "effective_on": cal.iso_date(today),
            "reason": "Thành lập mới", "updated_at": stamp,
        })

    def _pick_firm(self, rng: random.Random, wanted: tuple[str, ...]) -> Firm | None:
        count = self.base.enterprises + self._new_firms
        if not count:
            return None
        for _ in range(12):
            n = rng.randrange(count)
            row = n if n < self.base.enterprises else self.created["business.enterprises"][n - self.base.enterprises]
            firm = self.firm(row)
            if firm.status in wanted and self._today() not in firm.status_dates:
                return firm
        return None

    def _suspend(self, rng: random.Random, at: int) -> None:
        self._set_status(self._pick_firm(rng, ("active",)), "suspended", at)

    def _dissolve(self, rng: random.Random, at: int) -> None:
        self._set_status(self._pick_firm(rng, ("active", "suspended")), "dissolved", at)

    def _set_status(self, firm: Firm | None, status: str, at: int) -> None:
        if firm is None:
            return
        stamp = cal.timestamp(at)
        today = self._today()
        firm.status = status
        firm.status_dates.add(today)
        self._write("business.enterprises", firm.row, {"status": status, "updated_at": stamp})
        self._create("business.enterprise_status_changes", {
            "enterprise_code": firm.code, "status": status, "effective_on": cal.iso_date(today),
            "reason": "Tạm ngừng kinh doanh" if status == "suspended" else "Giải thể", "updated_at": stamp,
        })
        for branch in firm.branches:
            self._write("business.branches", branch, {"status": status, "updated_at": stamp})


def _count(rng: random.Random, expected: float) -> int:
    """A whole number of events with mean `expected` (its fraction decided by one draw)."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _address(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return f"Số {1 + rng.randrange(400)} đường {STREETS[rng.randrange(len(STREETS))]}"
    return f"Tổ {1 + rng.randrange(12)}, {HAMLETS[rng.randrange(len(HAMLETS))]}"


