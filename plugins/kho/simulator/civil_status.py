"""The simulated electronic civil status database: births, marriages and deaths, and the life events of each day.

Day 0: a birth registration for every citizen born since 2008 (when registrations went electronic) whose mother
lives with them (row 2i), registered where the birth happened (a migrant family's child born before the move, in
its origin commune), and for `birth_without_citizen` a twin the population registry never recorded (row 2i+1); a
marriage registration, where the couple lived then, numbered by one partner (row i): every couple heading a
household, a widowed single parent's marriage to the late spouse, a remarried head's first marriage (ended by the
first spouse's death), the marriage of the head's two parents; a death registration for every dead citizen.

Daily (per citizen; 20-50 times real rates, as every event's):

- births 0.05 %: a mother aged 18-45 has a child; a birth registration, a new citizen in her household, a new
  insurance participant (child under 6) with a health coverage period;
- deaths 0.05 % (weighted to the old): a death registration; the citizen becomes deceased, leaves the household on
  the date of death, never before joining it (whose head passes to the spouse or the eldest member), and every
  active coverage period ends on the death date;
- marriages 0.05 %: an unmarried man of 20-45 and woman of 18-40 marry (the divorced and widowed too: remarriages);
  she joins his household;
- divorces, in the published proportion to marriages (`DIVORCE_RATE`): a couple married a year or more divorces,
  the divorce is noted on their marriage registration (`divorced_on`) and the partner who does not head the
  household moves to relatives'.

Anomalies these events may inject: a birth without a citizen, or with another date of birth on its registration;
a marriage of an under-age party; a death that leaves coverage active, the membership open, or the household
without a head.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date

import numpy as np

from kho.simulator import anomalies, demography, insurance, names, population, reform
from kho.simulator import calendar as cal
from kho.simulator.base import Base, stamp_after, take
from kho.simulator.people import (
    CHILD,
    COUPLE,
    FABRICATED_BASE_RANKS,
    FEMALE,
    HEAD,
    LATE,
    MALE,
    PARENT,
    Citizens,
    prefix_ids,
)
from kho.simulator.rng import B1, I64, hash_py, stream_key, unit_np
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
from kho.simulator.timeline import Household, Person, Timeline
from kho.sources.civil_status import BIRTHS, DEATHS, MARRIAGES, MIN_MARRIAGE_AGE, REGISTRY
from kho.sources.insurance import COVERAGE_PERIODS, PARTICIPANTS
from kho.sources.population import CITIZENS, HOUSEHOLD_MEMBERS, HOUSEHOLDS, RESIDENCE_CHANGES

_BOY = demography.SEX_RATIO_AT_BIRTH / (1 + demography.SEX_RATIO_AT_BIRTH)
_UNMARRIED_FERTILITY = 0.05
"""Births to unmarried women, relative to married ones of the same age: few in Viet Nam (ESTIMATE)."""
_ASFR_PEAK = max(demography.ASFR)


def _fertility(age: float) -> float:
    """A woman's chance, relative to the peak age group, of the birth a sampled event gives (demography.ASFR)."""
    for (lo, hi), rate in zip(demography.ASFR_GROUPS, demography.ASFR, strict=True):
        if lo <= age < hi + 1:
            return rate / _ASFR_PEAK
    return 0.0


DIGITISED_BIRTHS_FROM = date(2008, 1, 1).toordinal()
"""Birth registrations before this date are not in the electronic civil status database we simulate."""
BIRTH_RATE = 0.0005
DEATH_RATE = 0.0005
MARRIAGE_RATE = 0.0005
_COUPLES_PER_RESIDENT = 0.25
"""About a quarter of residents' worth of couples: demography.MARITAL_STATUS's 62 % married among the 15+, who are
about four in five residents, two to a couple."""
DIVORCE_RATE = MARRIAGE_RATE * (demography.DIVORCES_PER_1000_COUPLES * _COUPLES_PER_RESIDENT
                                / demography.CRUDE_MARRIAGE_RATE)
"""Divorces per citizen per day, in the published proportion to marriages (demography: divorces per 1,000 couples
against marriages per 1,000 residents: about one divorce to nine marriages; the courts' ~60,000 a year to 688,000
marriages is one to eleven), sped up as every event's rate."""


# --- day-0 records -----------------------------------------------------------------------------------------------

def birth_exists(base: Base, ids: I64, p: Citizens) -> B1:
    """Which candidate birth rows of children `p` exist: row 2i, a child born in the digitised era whose mother
    lives with it; row 2i+1, that child's twin unknown to the population registry (`birth_without_citizen`)."""
    twin = anomalies.unregistered_twins(base.key("anomaly"), ids, base.rate("birth_without_citizen"))
    return ((ids % 2 == 0) | twin) & (p.dob >= DIGITISED_BIRTHS_FROM) & (p.mother_index >= 0)


def birth_dates(base: Base, ids: I64, p: Citizens) -> tuple[I64, I64, B1]:
    """(registered_on, date_of_birth as registered, contradicted) of existing birth rows of children `p`; twins
    are registered with their sibling."""
    own = ids - ids % 2
    registered = np.minimum(p.dob + np.floor(61 * unit_np(base.key("births"), own, 0)).astype(np.int64),
                            cal.DAY0_ORD)
    hit, dob = anomalies.birth_dates(base.key("anomaly"), ids, p.dob, registered,
                                     base.rate("cccd_contradicts_birth_record"))
    hit &= ids % 2 == 0
    return registered, np.where(hit, dob, p.dob), hit


def registered_children(base: Base, ids: I64, p: Citizens) -> tuple[Citizens, list[str]]:
    """The children existing birth rows name, and their CCCDs: child i itself, or on row 2i+1 its twin, with a
    sex and given name of its own and an identity number from the range no citizen has."""
    twin = ids % 2 == 1
    cccds = base.cccd(p)
    if not twin.any():
        return p, cccds
    sex, u_given, u_middle, u_middle2 = anomalies.twins(base.key("anomaly"), ids, p.sex)
    year = cal.years_np(p.dob)
    given = names.given(u_given, sex, year)
    middle, middle2 = names.middle(u_middle, u_middle2, sex, year, given)
    child = replace(p, sex=np.where(twin, sex, p.sex), given=np.where(twin, given, p.given),
                    middle=np.where(twin, middle, p.middle), middle2=np.where(twin, middle2, p.middle2))
    lo, hi = FABRICATED_BASE_RANKS
    prefixes = prefix_ids(child.birth_province[twin], child.dob[twin], child.sex[twin])
    numbers = base.index.numbers(prefixes, lo + (ids[twin] // 2) % (hi - lo))
    for pos, number in zip(np.flatnonzero(twin).tolist(), numbers.tolist(), strict=True):
        cccds[pos] = f"{number:012d}"
    return child, cccds


def births(base: Base, ids: I64) -> Columns:
    """Row 2i: citizen i's own birth registration; row 2i+1, its twin unknown to the population registry."""
    p = base.people(ids // 2)
    exists = birth_exists(base, ids, p)
    ids, p = ids[exists], take(p, exists)
    registered, dob, _ = birth_dates(base, ids, p)
    updated = stamp_after(base.key("births"), ids, 1, registered)
    child, cccds = registered_children(base, ids, p)
    return ids, {
        "registration_id": [f"KS{i:012d}" for i in ids.tolist()],
        "child_cccd": cccds,
        "child_full_name": child.names(),
        "child_sex": ["M" if s == MALE else "F" for s in child.sex.tolist()],
        "date_of_birth": cal.iso_dates(dob),
        "place_commune_code": base.commune_codes(p.birth_commune),
        "father_cccd": base.cccd_of(p.father_index),
        "mother_cccd": base.cccd_of(p.mother_index),
        "registered_on": cal.iso_dates(registered),
        "updated_at": cal.timestamps(updated),
    }


def _contradicted_births(base: Base, ids: I64) -> B1:
    p = base.people(ids // 2)
    return birth_exists(base, ids, p) & (birth_dates(base, ids, p)[2] | (ids % 2 == 1))


def couples(base: Base, ids: I64) -> tuple[B1, Citizens, Citizens]:
    """(anchors a marriage, anchor, partner) of candidate citizen indices: the marriage rows that exist.

    A marriage is numbered by one of its partners (its anchor): the head of a couple (married to the spouse), a
    widowed single parent (to the late spouse), a remarried head's late first spouse (to the head), the first of
    the head's two parents (to the other), a married eldest child (to the spouse living with them)."""
    p = base.people(ids)
    couple_head = (p.role == HEAD) & (p.kind == COUPLE)
    widowed_head = (p.role == HEAD) & (p.kind != COUPLE) & (p.late_slot >= 0)
    first_late = (p.role == LATE) & (p.kind == COUPLE)
    elders = (p.role == PARENT) & (p.parents == 2) & (p.slot == p.size - 2)
    young = (p.role == CHILD) & p.married_now  # a married eldest child, whose spouse is the next member
    exists = couple_head | widowed_head | first_late | elders | young
    partner = np.select([couple_head, widowed_head, first_late], [p.index + 1, p.index + p.late_slot, p.head_index],
                        p.index + 1)
    anchors = take(p, exists)
    return exists, anchors, base.people(partner[exists])


def marriage_dates(base: Base, ids: I64, p: Citizens, partner: Citizens) -> tuple[B1, I64, I64, I64]:
    """(under age, registered_on, husband's and wife's date of birth as registered) of marriages by anchor; only a
    couple heading its household may carry `marriage_under_legal_age`."""
    male = p.sex == MALE
    husband_dob = np.where(male, p.dob, partner.dob)
    wife_dob = np.where(male, partner.dob, p.dob)
    hit, registered, husband, wife = anomalies.marriage_dates(
        base.key("anomaly"), p.household, husband_dob, wife_dob, p.married_on, base.rate("marriage_under_legal_age"))
    hit &= (p.role == HEAD) & (p.kind == COUPLE)
    return (hit, np.where(hit, registered, p.married_on), np.where(hit, husband, husband_dob),
            np.where(hit, wife, wife_dob))


def marriages(base: Base, ids: I64) -> Columns:
    exists, p, partner = couples(base, ids)
    ids = ids[exists]
    anchor_cccd, partner_cccd = base.cccd(p), base.cccd(partner)
    _, registered, husband_dob, wife_dob = marriage_dates(base, ids, p, partner)
    updated = stamp_after(base.key("marriages"), ids, 0, np.maximum(p.married_on, registered) + 1)
    males = (p.sex == MALE).tolist()
    return ids, {
        "registration_id": [f"KH{i:012d}" for i in ids.tolist()],
        "husband_cccd": [a if m else b for a, b, m in zip(anchor_cccd, partner_cccd, males, strict=True)],
        "wife_cccd": [b if m else a for a, b, m in zip(anchor_cccd, partner_cccd, males, strict=True)],
        "husband_date_of_birth": cal.iso_dates(husband_dob),
        "wife_date_of_birth": cal.iso_dates(wife_dob),
        "registered_on": cal.iso_dates(registered),
        "place_commune_code": base.commune_codes(p.married_commune),
        "divorced_on": [None] * len(ids),
        "updated_at": cal.timestamps(updated),
    }


def _under_age_marriages(base: Base, ids: I64) -> B1:
    exists, p, partner = couples(base, ids)
    hit = np.zeros(len(ids), dtype=bool)
    hit[exists] = marriage_dates(base, ids[exists], p, partner)[0]
    return hit


def deaths(base: Base, ids: I64) -> Columns:
    p = base.people(ids)
    ids, p = ids[p.deceased], take(p, p.deceased)
    key = base.key("deaths")
    registered = np.minimum(p.dod + np.floor(16 * unit_np(key, ids, 0)).astype(np.int64), cal.DAY0_ORD)
    updated = stamp_after(key, ids, 1, registered)
    return ids, {
        "registration_id": [f"KT{i:012d}" for i in ids.tolist()],
        "cccd": base.cccd(p),
        "date_of_death": cal.iso_dates(p.dod),
        "place_commune_code": base.commune_codes(p.commune),
        "registered_on": cal.iso_dates(registered),
        "updated_at": cal.timestamps(updated),
    }


# --- births ------------------------------------------------------------------------------------------------------

def birth(t: Timeline, rng: random.Random, at: int) -> None:
    """A woman has a child, as likely as the fertility schedule says for her age (demography.ASFR) and far more
    often when married: its registration, citizen, membership, participation and health coverage. No child of
    her household was born in the nine months before (siblings are at least that far apart)."""
    def may_give_birth(p: Person) -> bool:
        if not (p.alive and p.sex == FEMALE and p.household >= 0 and 18 <= t.age(p) < 50):
            return False
        chance = _fertility(t.age(p)) * (1.0 if p.married else _UNMARRIED_FERTILITY)
        return rng.random() < chance

    mother = next((p for p in t.sample(rng, 48) if may_give_birth(p)), None)
    if mother is None:
        return
    house = t.household(mother.household)
    today = t.today()
    # registered within 30 days of the birth, which happened where she lives now: not before she joined it
    dob = max(today - rng.randrange(31), mother.dob + 18 * 365, population.joined(t, mother))
    if dob - mother.last_birth < demography.MIN_BIRTH_INTERVAL_DAYS or any(
            p.dob > dob - demography.MIN_BIRTH_INTERVAL_DAYS for p in t.people(house.members)):
        return
    father = _spouse_of(t, mother, house)
    sex = MALE if rng.random() < _BOY else FEMALE
    parent = father or mother
    surname = parent.surname
    year = date.fromordinal(dob).year
    given = names.given_py(rng.random(), sex, year)
    middle, middle2 = names.middle_py(rng.random(), rng.random(), sex, year, given)
    name = names.full_name(surname, middle, middle2, given, sex)
    province = t.province_code(house.commune)  # from 2025-07-01 a birth in former Bình Dương is numbered 079
    prefix = int(prefix_ids(np.array([province]), np.array([dob]), np.array([sex]))[0])
    stamp = cal.timestamp(at)
    anomalous = rng.random() < t.base.rate("birth_without_citizen")
    cccd = t.issue_cccd(prefix, known=not anomalous)
    commune_code = t.commune_code(house.commune, house.number)
    registered_dob = dob if anomalous else _registered_birth_date(t, dob, today)
    row = t.create(BIRTHS, {
        "registration_id": t.serial_id("KS"), "child_cccd": cccd, "child_full_name": name,
        "child_sex": "M" if sex == MALE else "F", "date_of_birth": cal.iso_date(registered_dob),
        "place_commune_code": commune_code, "father_cccd": father.cccd if father else None,
        "mother_cccd": mother.cccd, "registered_on": cal.iso_date(today), "updated_at": stamp,
    })
    if anomalous:
        t.report(BIRTHS, row, "birth_without_citizen")
        return
    if registered_dob != dob:
        t.report(BIRTHS, row, "cccd_contradicts_birth_record")
    mother.last_birth = dob
    child = _newborn(t, parent, house, cccd=cccd, name=name, sex=sex, dob=dob, surname=surname)
    child.citizen_row = t.create(CITIZENS, {
        "cccd": cccd, "full_name": name, "date_of_birth": cal.iso_date(dob), "sex": "M" if sex == MALE else "F",
        "ethnicity": child.ethnicity, "birth_province_code": f"{province:02d}",
        "hometown_province_code": f"{reform.province_on(parent.hometown, today):02d}",  # the units in force
        "permanent_commune_code": commune_code, "temporary_commune_code": None, "household_id": house.code,
        "status": "alive", "date_of_death": None, "updated_at": stamp,
    })
    relation = "child" if mother.head or (father is not None and father.head) else "grandchild"
    child.member_row = t.create(HOUSEHOLD_MEMBERS, {
        "household_id": house.code, "cccd": cccd, "relation_to_head": relation, "joined_on": cal.iso_date(dob),
        "left_on": None, "updated_at": stamp,
    })
    house.members.append(child.index)
    t.write(HOUSEHOLDS, house.number, {"member_count": str(len(house.members)), "updated_at": stamp})
    legacy = t.chance("legacy_social_insurance_code", child.index)
    code = insurance.newborn_social_code(t, child.index, province, cccd, legacy=legacy)
    child.participant = t.create(PARTICIPANTS, {
        "social_insurance_code": code, "cccd": cccd, "full_name": name, "participant_type": "child_under_6",
        "registered_hospital_code": f"{province:02d}{1 + rng.randrange(30):03d}", "contribution_status": "paid",
        "registered_on": cal.iso_date(today), "updated_at": stamp,
    })
    if legacy:  # one code for the participant and its coverage: the defect is in the world, not in one version
        t.report(PARTICIPANTS, child.participant, "legacy_social_insurance_code")
    child.coverages.append(t.create(COVERAGE_PERIODS, {
        "coverage_id": t.serial_id("CV"), "social_insurance_code": code, "coverage_type": "health",
        "valid_from": cal.iso_date(dob), "valid_to": cal.iso_date(cal.add_years(dob, 6) - 1), "status": "active",
        "updated_at": stamp,
    }))


def _newborn(t: Timeline, parent: Person, house: Household, *, cccd: str, name: str, sex: int, dob: int,
             surname: int) -> Person:
    """The citizen a registered birth adds, living in its mother's household, not yet insured."""
    child = Person(index=t.population, cccd=cccd, name=name, sex=sex, dob=dob, alive=True, household=house.number,
                   member_row=-1, citizen_row=-1, commune=house.commune, temporary=-1, married=False, head=False,
                   hometown=parent.hometown, ethnicity=parent.ethnicity, surname=surname, participant=-1)
    t.add_newborn(child)
    return child


def _registered_birth_date(t: Timeline, dob: int, today: int) -> int:
    """The date of birth the registration states: the true one, or for `cccd_contradicts_birth_record` another
    day of the same year, not after today (so the child's CCCD and the row's date order still agree)."""
    row = np.array([t.next_row(BIRTHS)], dtype=np.int64)
    hit, registered = anomalies.birth_dates(
        stream_key(t.anomaly_key, "cccd_contradicts_birth_record"), row, np.array([dob]),
        np.array([today]), t.base.rate("cccd_contradicts_birth_record"))
    return int(registered[0]) if bool(hit[0]) else dob


def _spouse_of(t: Timeline, person: Person, house: Household) -> Person | None:
    """The living spouse of `person` in the same household: the head's partner, or the partner's head."""
    if not person.married:
        return None
    for other in t.people(house.members[:3]):
        if other is not person and other.married and other.sex != person.sex and other.alive \
                and (other.head or person.head):
            return other
    return None


# --- deaths ------------------------------------------------------------------------------------------------------

def death(t: Timeline, rng: random.Random, at: int) -> None:
    """A citizen dies (the old most likely): the registration, the citizen's status, the household and coverage."""
    def dies(p: Person) -> bool:
        if not p.alive:
            return False
        house = t.household(p.household) if p.household >= 0 else None
        if house is not None and len(house.members) <= 1:
            return False  # the registry cannot close a household, so its last member stays (documented)
        if house is not None and t.headship_fixed(house.number):
            return False
        age = t.age(p)
        return rng.random() < (0.03 if age < 40 else 0.15 if age < 60 else 0.5 if age < 75 else 1.0)

    person = next((p for p in t.sample(rng, 40) if dies(p)), None)
    if person is None:
        return
    _widow(t, person)
    today = t.today()
    # Nobody dies before the latest membership began (a bride's wedding day), which would leave it open after.
    dod = max(today - rng.randrange(8), person.dob, population.joined(t, person) if person.household >= 0 else 0)
    stamp = cal.timestamp(at)
    t.create(DEATHS, {
        "registration_id": t.serial_id("KT"), "cccd": person.cccd, "date_of_death": cal.iso_date(dod),
        "place_commune_code": t.commune_code(person.commune, person.household if person.household >= 0
                                             else person.index),
        "registered_on": cal.iso_date(today),
        "updated_at": stamp,
    })
    person.alive = False
    t.write(CITIZENS, person.citizen_row, {
        "status": "deceased", "date_of_death": cal.iso_date(dod), "household_id": None, "updated_at": stamp})
    if person.household >= 0:
        _leave_by_death(t, person, dod, stamp)
    keep_active = rng.random() < t.base.rate("deceased_with_active_coverage")
    for coverage in person.coverages:
        if keep_active:
            t.report(COVERAGE_PERIODS, coverage, "deceased_with_active_coverage")
        else:
            t.write(COVERAGE_PERIODS, coverage, {
                "valid_to": cal.iso_date(max(dod, insurance.coverage_start(t, coverage))), "status": "ended",
                "updated_at": stamp})
    person.coverages = []


def _widow(t: Timeline, person: Person) -> None:
    """A death ends the marriage: the widow(er) may marry again."""
    if person.household >= 0:
        widowed = _spouse_of(t, person, t.household(person.household))
        if widowed is not None:
            widowed.married, widowed.marriage = False, -1
    person.married, person.marriage = False, -1


def _leave_by_death(t: Timeline, person: Person, dod: int, stamp: str) -> None:
    """The dead leave their household on the day of death, and a head's spouse or eldest member succeeds them.

    Anomalies: `member_after_death` leaves the membership open; `household_without_one_head` names no
    successor, and the household then keeps its members (`headship_fixed`). The dead never count as living
    members, so each anomaly leaves the other rule alone.
    """
    house = t.household(person.household)
    if t.chance("member_after_death", person.index):
        t.report(HOUSEHOLD_MEMBERS, person.member_row, "member_after_death")
    else:
        t.write(HOUSEHOLD_MEMBERS, person.member_row, {"left_on": cal.iso_date(dod), "updated_at": stamp})
    was_head = house.members and house.members[0] == person.index
    house.members.remove(person.index)
    changes: Record = {"member_count": str(len(house.members)), "updated_at": stamp}
    if was_head and t.chance("household_without_one_head", person.index):
        t.fix_headship(house.number)
        t.report(HOUSEHOLDS, house.number, "household_without_one_head")
    elif was_head:
        successor = _successor(t, house, person)
        house.members.remove(successor.index)
        house.members.insert(0, successor.index)
        successor.head = True
        changes["head_cccd"] = successor.cccd
        t.write(HOUSEHOLD_MEMBERS, successor.member_row, {"relation_to_head": "head", "updated_at": stamp})
    t.write(HOUSEHOLDS, house.number, changes)


def _successor(t: Timeline, house: Household, gone: Person) -> Person:
    living = t.people(house.members)
    spouse = next((p for p in living if p.married and p.sex != gone.sex and gone.married), None)
    adults = sorted(living, key=lambda p: p.dob)
    return spouse or adults[0]


# --- marriages ---------------------------------------------------------------------------------------------------

def _couple(t: Timeline, candidates: list[Person], young: bool) -> tuple[Person | None, Person | None, str | None]:
    """An unmarried man of 20-45 and woman of 18-40 among `candidates`; when `young`, if the sample allows, a
    bride of 16-17 or a groom of 18-19 (completed years, as law counts them), whose role is the third value."""
    today = t.today()

    def free(p: Person, sex: int) -> bool:
        return p.alive and not p.married and p.sex == sex and p.household >= 0 \
            and not t.headship_fixed(p.household)

    def groom(p: Person) -> bool:
        return free(p, MALE) and 20 <= t.age(p) <= 45

    def bride(p: Person) -> bool:
        return free(p, FEMALE) and not p.head and 18 <= t.age(p) <= 40

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


def marriage(t: Timeline, rng: random.Random, at: int) -> None:
    """An unmarried man and woman of different households marry; she joins his household."""
    candidates = t.sample(rng, 60)
    row = t.next_row(MARRIAGES)
    husband, wife, young = _couple(t, candidates, t.chance("marriage_under_legal_age", row))
    if husband is None or wife is None or husband.household == wife.household:
        return
    stamp = cal.timestamp(at)
    today = cal.iso_date(t.today())
    his = t.household(husband.household)
    hers = t.household(wife.household)
    # `marriage_under_legal_age`: the registration states a date of birth that makes the young party of age.
    stated = {"husband": husband.dob, "wife": wife.dob}
    if young is not None:
        older = 1 + hash_py(stream_key(t.anomaly_key, "stated_date_of_birth"), row) % 700
        stated[young] = cal.add_years(t.today(), -MIN_MARRIAGE_AGE[young]) - older
    t.create(MARRIAGES, {
        "registration_id": t.serial_id("KH"), "husband_cccd": husband.cccd, "wife_cccd": wife.cccd,
        "husband_date_of_birth": cal.iso_date(stated["husband"]),
        "wife_date_of_birth": cal.iso_date(stated["wife"]),
        "registered_on": today, "place_commune_code": t.commune_code(his.commune, his.number), "divorced_on": None,
        "updated_at": stamp,
    })
    if young is not None:
        t.report(MARRIAGES, row, "marriage_under_legal_age")
    husband.married = wife.married = True
    husband.marriage = wife.marriage = row
    _rehouse(t, wife, hers, his, "spouse" if husband.head else "other", stamp)


def _rehouse(t: Timeline, person: Person, frm: Household, to: Household, relation: str, stamp: str) -> None:
    """A living member moves from household `frm` to `to` today (a bride to her husband's, a divorced partner to
    relatives'): memberships, counts, the citizen's household and commune, a residence change when it differs."""
    today = cal.iso_date(t.today())
    t.write(HOUSEHOLD_MEMBERS, person.member_row, {"left_on": today, "updated_at": stamp})
    frm.members.remove(person.index)
    t.write(HOUSEHOLDS, frm.number, {"member_count": str(len(frm.members)), "updated_at": stamp})
    person.member_row = t.create(HOUSEHOLD_MEMBERS, {
        "household_id": to.code, "cccd": person.cccd, "relation_to_head": relation,
        "joined_on": today, "left_on": None, "updated_at": stamp,
    })
    to.members.append(person.index)
    person.household = to.number
    person.head = False
    t.write(HOUSEHOLDS, to.number, {"member_count": str(len(to.members)), "updated_at": stamp})
    changes: Record = {"household_id": to.code, "updated_at": stamp}
    before, after = t.commune_code(person.commune, frm.number), t.commune_code(to.commune, to.number)
    if before != after:
        t.create(RESIDENCE_CHANGES, {
            "change_id": t.serial_id("RC"), "cccd": person.cccd, "kind": "permanent",
            "from_commune_code": before, "to_commune_code": after, "effective_on": today, "registered_at": stamp,
            "updated_at": stamp,
        })
    person.commune = to.commune
    changes["permanent_commune_code"] = after
    t.write(CITIZENS, person.citizen_row, changes)


# --- divorces ----------------------------------------------------------------------------------------------------

def divorce(t: Timeline, rng: random.Random, at: int) -> None:
    """A couple married for a year or more divorces: the court's decision is noted on their marriage registration,
    and the partner who does not head the household moves to relatives' (another household, as `other`). Both may
    marry again."""
    def married_here(p: Person) -> bool:
        return (p.alive and p.married and p.marriage >= 0 and p.household >= 0
                and not t.headship_fixed(p.household))

    person = next((p for p in t.sample(rng, 40) if married_here(p)), None)
    if person is None:
        return
    house = t.household(person.household)
    partner = _spouse_of(t, person, house)
    if partner is None or partner.marriage != person.marriage:
        return
    record = t.current(MARRIAGES, person.marriage)
    registered = date.fromisoformat(str(record["registered_on"])).toordinal()
    if t.today() - registered < 365:
        return
    leaver = partner if person.head else person
    destination = next((t.household(p.household) for p in t.sample(rng, 12)
                        if p.alive and p.household >= 0 and p.household != house.number
                        and not t.headship_fixed(p.household) and t.household(p.household).members), None)
    if destination is None:
        return
    stamp = cal.timestamp(at)
    t.write(MARRIAGES, person.marriage, {
        "divorced_on": cal.iso_date(max(registered + 1, t.today() - rng.randrange(30))), "updated_at": stamp})
    person.married = partner.married = False
    person.marriage = partner.marriage = -1
    _rehouse(t, leaver, house, destination, "other", stamp)


SIMULATION = RegistrySimulation(
    registry=REGISTRY,
    entities=(
        EntitySimulation(
            BIRTHS, Rows("citizen", 2), births,
            Defects(id_field="child_cccd", conflict_field="place_commune_code",
                    contradicted_cccd=FieldCheck("child_cccd", "child_cccd_matches_sex_and_year"),
                    commune_field="place_commune_code", name_field="child_full_name"),
            anomalies=("cccd_contradicts_birth_record", "birth_without_citizen"), anomalous=_contradicted_births,
        ),
        EntitySimulation(
            MARRIAGES, Rows("citizen"), marriages,
            Defects(id_field="husband_cccd", conflict_field="place_commune_code",
                    commune_field="place_commune_code", under_age_wife="wife_of_marriageable_age"),
            anomalies=("marriage_under_legal_age",), anomalous=_under_age_marriages,
        ),
        EntitySimulation(
            DEATHS, Rows("citizen"), deaths,
            Defects(id_field="cccd", conflict_field="place_commune_code", commune_field="place_commune_code"),
        ),
    ),
    added_field="declarant_phone",
    events=(Event("birth", BIRTH_RATE, per_citizen, birth, order=0),
            Event("death", DEATH_RATE, per_citizen, death, order=1),
            Event("marriage", MARRIAGE_RATE, per_citizen, marriage, order=4),
            Event("divorce", DIVORCE_RATE, per_citizen, divorce, order=9)),
    stream=LINKED_WORLD,
)
