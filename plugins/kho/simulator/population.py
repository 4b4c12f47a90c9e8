"""The simulated national population registry: citizens, households, memberships and residence changes, and the
moves and temporary registrations of each day.

Day 0 is the people model (`people.py`): every citizen, their household (the head's commune and an address), each
membership (the dead leave on their day of death, except where `member_after_death` keeps them longer), a residence
change for each member of a household that migrated here, or spouse from another province who married into one
that always lived here (row 2i), and each temporary registration (row 2i+1; a migrant household registered here
only temporarily since it arrived). The
`household_without_one_head` anomaly records a second member as a second head, or the head as `other`.

Daily (per citizen; 20-50 times real rates, as every event's): household moves 0.1 % of citizens (a whole
household moves to another commune of the province: its address and every living member's permanent commune
change, one residence change per member), temporary registrations 0.05 % (an adult registers a temporary residence
elsewhere). Births, deaths and marriages, which change households too, are the civil status registry's events.
"""

from __future__ import annotations

import random
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from kho.simulator import anomalies
from kho.simulator import calendar as cal
from kho.simulator.base import DAY0_END, Base, between, stamp_after, take
from kho.simulator.people import (
    GEOGRAPHY,
    HEAD,
    HOME_PROVINCE,
    IN_LAW,
    LATE,
    MALE,
    RELATION_NAMES,
    SPOUSE,
    Citizens,
)
from kho.simulator.rng import B1, I64, unit_np
from kho.simulator.spec import (
    LINKED_WORLD,
    Columns,
    Defects,
    EntitySimulation,
    Event,
    FieldCheck,
    Record,
    RegistrySimulation,
    Rows,
    per_citizen,
)
from kho.simulator.text import HAMLETS, STREETS
from kho.sources.population import CITIZENS, HOUSEHOLD_MEMBERS, HOUSEHOLDS, REGISTRY, RESIDENCE_CHANGES

if TYPE_CHECKING:
    from kho.simulator.timeline import Person, Timeline

MOVE_RATE = 0.001 / 3.1
"""Household moves per citizen per day: 0.1 % of citizens move (households hold 3.1 people on average)."""
TEMPORARY_RATE = 0.0005


# --- day-0 records -----------------------------------------------------------------------------------------------

def citizens(base: Base, ids: I64) -> Columns:
    p = base.people(ids)
    ethnic = GEOGRAPHY.ethnicities
    deceased = p.deceased.tolist()
    return ids, {
        "cccd": base.cccd(p),
        "full_name": p.names(),
        "date_of_birth": cal.iso_dates(p.dob),
        "sex": ["M" if s == MALE else "F" for s in p.sex.tolist()],
        "ethnicity": [ethnic[e] for e in p.ethnicity.tolist()],
        "birth_province_code": [f"{v:02d}" for v in p.birth_province.tolist()],
        "hometown_province_code": [f"{v:02d}" for v in p.hometown.tolist()],
        "permanent_commune_code": base.commune_codes(p.commune),
        "temporary_commune_code": base.commune_codes(p.temporary),
        "household_id": [None if d else h for h, d in zip(base.household_codes(p.household), deceased, strict=True)],
        "status": ["deceased" if d else "alive" for d in deceased],
        "date_of_death": cal.optional_dates(p.dod),
        "updated_at": cal.timestamps(p.updated_at),
    }


def households(base: Base, ids: I64) -> Columns:
    numbers, first, size = base.households_of(ids)
    if not len(numbers):
        return numbers, {}
    members = np.repeat(first, size) + (np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size))
    p = base.people(members)
    bounds = np.r_[0, np.cumsum(size)[:-1]]
    living = np.add.reduceat((~p.deceased).astype(np.int64), bounds)
    last = np.maximum.reduceat(np.maximum(p.joined_on, p.dod), bounds)
    head_people = base.people(p.index[bounds])
    key = base.key("households")
    commune = head_people.commune
    updated = stamp_after(key, numbers, 0, last + 1)
    return numbers, {
        "household_id": base.household_codes(numbers),
        "head_cccd": base.cccd(head_people),
        "commune_code": base.commune_codes(commune),
        "address_line": _addresses(key, numbers, commune),
        "member_count": [str(v) for v in living.tolist()],
        "updated_at": cal.timestamps(updated),
    }


def _addresses(key: int, households: I64, communes: I64) -> list[str | None]:
    number = 1 + np.floor(400 * unit_np(key, households, 1)).astype(np.int64)
    street = np.floor(len(STREETS) * unit_np(key, households, 2)).astype(np.int64)
    hamlet = np.floor(len(HAMLETS) * unit_np(key, households, 3)).astype(np.int64)
    on_street = (unit_np(key, households, 4) < 0.6) & (GEOGRAPHY.commune_province[communes] == HOME_PROVINCE)
    return [f"Số {n} đường {STREETS[s]}" if st else f"Tổ {n % 12 + 1}, {HAMLETS[h]}"
            for n, s, h, st in zip(number.tolist(), street.tolist(), hamlet.tolist(), on_street.tolist(),
                                   strict=True)]


def relations(base: Base, p: Citizens) -> I64:
    """Relation codes of citizens' day-0 memberships: their role, unless their household names no one head."""
    hit, two = base.odd_heads(p.household, p.size)
    # a late spouse was the head's spouse; a married child's spouse is recorded as `other`
    role = np.select([p.role == LATE, p.role == IN_LAW], [SPOUSE, RELATION_NAMES.index("other")], p.role)
    return anomalies.relations(role, p.slot, hit, two, HEAD, RELATION_NAMES.index("other"))


def membership_ends(base: Base, ids: I64, p: Citizens) -> tuple[B1, I64]:
    """(anomalous, left_on, 0 = open) of day-0 memberships: the dead leave on their day of death, except where
    `member_after_death` keeps them longer."""
    return anomalies.left_on(base.key("anomaly"), ids, p.deceased, p.dod, base.rate("member_after_death"))


def household_members(base: Base, ids: I64) -> Columns:
    p = base.people(ids)
    _, left = membership_ends(base, ids, p)
    updated = stamp_after(base.key("members"), ids, 0, np.maximum(p.joined_on, np.maximum(p.dod, left)) + 1)
    return ids, {
        "household_id": base.household_codes(p.household),
        "cccd": base.cccd(p),
        "relation_to_head": [RELATION_NAMES[r] for r in relations(base, p).tolist()],
        "joined_on": cal.iso_dates(p.joined_on),
        "left_on": cal.optional_dates(left),
        "updated_at": cal.timestamps(updated),
    }


def residence_changes(base: Base, ids: I64) -> Columns:
    """Row 2i: citizen i's household moved here from another province; row 2i+1: its temporary registration."""
    citizen, kind = ids // 2, ids % 2
    p = base.people(citizen)
    household_moved = (p.migrated_on > 0) & p.registered_here & (p.dob < p.migrated_on)
    # A spouse from another province married into a household that always lived here moved in at the wedding.
    married_in = (((p.role == SPOUSE) & (p.migrated_on == 0)) | (p.role == IN_LAW)) & (
        p.birth_province != HOME_PROVINCE) & (p.married_on > 0)
    moved_in = (kind == 0) & (household_moved | married_in)
    temporary = (kind == 1) & (p.temporary >= 0)
    exists = moved_in | temporary
    ids, p, kind = ids[exists], take(p, exists), kind[exists]
    key = base.key("residence")
    origin_commune = p.origin_commune
    adult = cal.add_years_np(p.dob, 15)
    temp_from = between(key, ids, 1, np.maximum(adult, cal.HISTORY_FROM_ORD - 3 * 365),
                        np.full(len(ids), cal.DAY0_ORD - 2))
    # A migrant household registered here only temporarily has been since it arrived (its children since birth).
    temp_from = np.where(p.registered_here, temp_from, np.maximum(p.migrated_on, cal.HISTORY_FROM_ORD - 25 * 365))
    temp_from = np.maximum(temp_from, p.dob + 1)
    effective = np.where(kind == 0, np.where(p.spouse_arrived > 0, p.spouse_arrived, p.migrated_on), temp_from)
    effective = np.minimum(effective, cal.DAY0_ORD - 1)
    registered = cal.ords_to_seconds(effective) + np.floor(
        np.minimum(30 * cal.SECONDS_PER_DAY, DAY0_END - cal.ords_to_seconds(effective))
        * unit_np(key, ids, 2)).astype(np.int64)
    updated = registered + np.floor(np.minimum(3 * cal.SECONDS_PER_DAY, DAY0_END - registered)
                                    * unit_np(key, ids, 3)).astype(np.int64)
    return ids, {
        "change_id": [f"RC{i:012d}" for i in ids.tolist()],
        "cccd": base.cccd(p),
        "kind": ["permanent" if k == 0 else "temporary" for k in kind.tolist()],
        "from_commune_code": base.commune_codes(np.where(kind == 0, np.where(p.spouse_arrived > 0, p.birth_commune,
                                                                            origin_commune), p.commune)),
        "to_commune_code": base.commune_codes(np.where(kind == 0, p.commune, p.temporary)),
        "effective_on": cal.iso_dates(effective),
        "registered_at": cal.timestamps(registered),
        "updated_at": cal.timestamps(updated),
    }


def _odd_households(base: Base, ids: I64) -> B1:
    return base.odd_heads(ids, base.household_slots(ids)[1])[0]


def _open_after_death(base: Base, ids: I64) -> B1:
    return membership_ends(base, ids, base.people(ids))[0]


# --- daily events ------------------------------------------------------------------------------------------------

def joined(t: Timeline, person: Person) -> int:
    """The joined_on date (ordinal) of a person's current membership row."""
    return date.fromisoformat(str(t.current(HOUSEHOLD_MEMBERS, person.member_row)["joined_on"])).toordinal()


def move(t: Timeline, rng: random.Random, at: int) -> None:
    """A whole household moves to another commune of the province."""
    person = next((p for p in t.sample(rng) if p.alive and p.household >= 0), None)
    if person is None:
        return
    house = t.household(person.household)
    home = GEOGRAPHY.home_communes
    salt = house.number
    old = house.commune
    target = int(home[rng.randrange(len(home))])
    for _ in range(len(home)):  # after the reform two old communes may be one new commune: move to another one
        if t.commune_code(target, salt) != t.commune_code(old, salt):
            break
        target = int(home[(int(np.searchsorted(home, target)) + 1) % len(home)])
    else:
        return
    stamp = cal.timestamp(at)
    effective = cal.iso_date(t.today() - rng.randrange(6))
    house.commune = target
    old_code, new_code = t.commune_code(old, salt), t.commune_code(target, salt)
    t.write(HOUSEHOLDS, house.number, {"commune_code": new_code, "address_line": _address(rng), "updated_at": stamp})
    for member in t.people(list(house.members)):
        member.commune = target
        changes: Record = {"permanent_commune_code": new_code, "updated_at": stamp}
        if member.temporary >= 0 and t.commune_code(member.temporary, salt) == new_code:
            member.temporary = -1
            changes["temporary_commune_code"] = None
        t.write(CITIZENS, member.citizen_row, changes)
        t.create(RESIDENCE_CHANGES, {
            "change_id": t.serial_id("RC"), "cccd": member.cccd, "kind": "permanent",
            "from_commune_code": old_code, "to_commune_code": new_code,
            "effective_on": effective, "registered_at": stamp, "updated_at": stamp,
        })


def temporary(t: Timeline, rng: random.Random, at: int) -> None:
    """An adult registers a temporary residence in another commune."""
    person = next((p for p in t.sample(rng) if p.alive and t.age(p) >= 18 and p.household >= 0), None)
    if person is None:
        return
    home = GEOGRAPHY.home_communes
    target = int(home[rng.randrange(len(home))])
    salt = person.household
    code = t.commune_code(target, salt)
    if code == t.commune_code(person.commune, salt) or (
            person.temporary >= 0 and code == t.commune_code(person.temporary, salt)):
        return
    stamp = cal.timestamp(at)
    old = person.temporary
    person.temporary = target
    t.write(CITIZENS, person.citizen_row, {"temporary_commune_code": code, "updated_at": stamp})
    t.create(RESIDENCE_CHANGES, {
        "change_id": t.serial_id("RC"), "cccd": person.cccd, "kind": "temporary",
        "from_commune_code": t.commune_code(old, salt) if old >= 0 else None,
        "to_commune_code": code, "effective_on": cal.iso_date(t.today()),
        "registered_at": stamp, "updated_at": stamp,
    })


def _address(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return f"Số {1 + rng.randrange(400)} đường {STREETS[rng.randrange(len(STREETS))]}"
    return f"Tổ {1 + rng.randrange(12)}, {HAMLETS[rng.randrange(len(HAMLETS))]}"


SIMULATION = RegistrySimulation(
    registry=REGISTRY,
    entities=(
        EntitySimulation(
            CITIZENS, Rows("citizen"), citizens,
            Defects(id_field="cccd", conflict_field="temporary_commune_code",
                    contradicted_cccd=FieldCheck("cccd", "cccd_matches_birth"),
                    commune_field="permanent_commune_code", name_field="full_name",
                    death_before_birth="death_not_before_birth"),
            renamed_field=("full_name", "ho_ten"),
        ),
        EntitySimulation(
            HOUSEHOLDS, Rows("household"), households,
            Defects(id_field="head_cccd", conflict_field="address_line", commune_field="commune_code"),
            anomalies=("household_without_one_head",), anomalous=_odd_households,
        ),
        EntitySimulation(
            HOUSEHOLD_MEMBERS, Rows("citizen"), household_members,
            Defects(id_field="cccd", conflict_field="relation_to_head"),
            anomalies=("member_after_death",), anomalous=_open_after_death,
        ),
        EntitySimulation(
            RESIDENCE_CHANGES, Rows("citizen", 2), residence_changes,
            Defects(id_field="cccd", conflict_field="from_commune_code", commune_field="to_commune_code"),
        ),
    ),
    added_field="phone_number",
    events=(Event("move", MOVE_RATE, per_citizen, move, order=2),
            Event("temporary", TEMPORARY_RATE, per_citizen, temporary, order=3)),
    stream=LINKED_WORLD,
)
