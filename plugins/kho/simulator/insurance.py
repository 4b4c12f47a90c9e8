"""The simulated Vietnam Social Security registry: participants and their coverage periods, and coverage lapses.

Day 0: 92 % of citizens are participants, and every child under 6 (their card is state-funded); each has a
current health coverage, employees a social and an unemployment period too, and one in five an earlier, lapsed
health period (row 4 * citizen + kind). A dead participant's periods end on the day of death, except where the
`deceased_with_active_coverage` anomaly leaves the current one active. Daily: 0.05 % of citizens (20-50 times the
real rate, as every event's) see an active coverage lapse, and then owe contributions. A newborn's participation
and coverage are created by the birth (`civil_status.py`), registered that day under the child's CCCD (from
2025-07-01; at the defect rate a 10-digit code instead, `legacy_social_insurance_code`); a death ends the coverage.
A day-0 participant was registered (`registered_on`) within the year before its first coverage period.
"""

from __future__ import annotations

import random
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from kho.simulator import calendar as cal
from kho.simulator import reform
from kho.simulator.base import Base, between, stamp_after, take
from kho.simulator.people import GEOGRAPHY, Citizens
from kho.simulator.rng import B1, I64, choose_np, cumulative, feistel_np, feistel_py, unit_np
from kho.simulator.spec import (
    LINKED_WORLD,
    Columns,
    Defects,
    EntitySimulation,
    Event,
    RegistrySimulation,
    Rows,
    per_citizen,
)
from kho.sources.insurance import COVERAGE_PERIODS, PARTICIPANTS, REGISTRY

if TYPE_CHECKING:
    from kho.simulator.timeline import Timeline

PERIOD_KINDS = 4
"""Coverage periods per participant: current health, social, unemployment, an earlier lapsed health period."""
_FACILITIES = 30
_PARTICIPANT_TYPES = ("employee", "self_employed", "household", "student", "poor_household", "child_under_6",
                      "pensioner")
_WORKING_TYPE_CUM = cumulative([55, 15, 22, 0, 8, 0, 0])
_CONTRIBUTION = ("paid", "owing", "suspended")
_CONTRIBUTION_CUM = cumulative([85, 10, 5])
LAPSE_RATE = 0.0005


# --- day-0 facts -------------------------------------------------------------------------------------------------

def insured(base: Base, p: Citizens) -> B1:
    """Whether each citizen is a participant: 92 %, every child under 6 (their card is state-funded)."""
    return child_card(p) | (unit_np(base.key("participants"), p.index, 0) < 0.92)


def child_card(p: Citizens) -> B1:
    """Children under 6 at day 0: their state-funded health card covers them from birth to the eve of their 6th
    birthday (Law on Health Insurance 25/2008/QH12 as amended, art. 16), one period with that planned end."""
    return (cal.DAY0_ORD - p.dob) < 6 * 365.2425


def card_end(dob: I64) -> I64:
    """The last day of a child's health card: the day before the 6th birthday."""
    return cal.add_years_np(dob, 6) - 1


def participant_types(base: Base, p: Citizens) -> list[str]:
    key = base.key("participants")
    age = (cal.DAY0_ORD - p.dob) / 365.2425
    working = choose_np(_WORKING_TYPE_CUM, unit_np(key, p.index, 1))
    kind = np.select(
        [age < 6, age < 18, (age < 22) & (p.role == 2) & (unit_np(key, p.index, 2) < 0.5),
         (age >= 60) & (unit_np(key, p.index, 3) < 0.4), age >= 60],
        [5, 3, 3, 6, 2], working)
    return [_PARTICIPANT_TYPES[k] for k in kind.tolist()]


def social_codes(base: Base, p: Citizens) -> list[str]:
    """10-digit social insurance codes: issuing province (where the person is registered) + 8 permuted digits."""
    serial = feistel_np(base.key("social"), p.index, 10_000)
    province = GEOGRAPHY.commune_province[p.commune]
    return [f"{p:02d}{s:08d}" for p, s in zip(province.tolist(), serial.tolist(), strict=True)]


def newborn_social_code(t: Timeline, index: int, province: int, cccd: str, *, legacy: bool = False) -> str:
    """The social insurance code of citizen `index`, registered in `province` today (a day after day 0).

    From 2025-07-01 the Law on Social Insurance 41/2024/QH15 makes a Vietnamese citizen's social insurance code
    their personal identification number (the CCCD); before, a 10-digit code of the issuing province. `legacy`:
    the office issued the old kind of code anyway (the `legacy_social_insurance_code` defect); the serial is the
    citizen's own, so it is unique among every participant's."""
    if t.today() >= reform.REFORM_ORD and not legacy:
        return cccd
    return f"{province:02d}{feistel_py(t.base.key('social'), index, 10_000):08d}"


def registration_dates(base: Base, ids: I64, p: Citizens, updated: I64) -> I64:
    """The day each day-0 participant was registered (its code issued): within the year before its earliest
    coverage period starts (a child's card: at birth), never before birth, nor after its record's last change
    (`updated`, seconds), so that no period predates the code it is filed under."""
    cover_ids = (ids[:, None] * PERIOD_KINDS + np.arange(PERIOD_KINDS)[None, :]).ravel()
    exists, valid_from, _, _ = coverage_facts(base, cover_ids, base.people(cover_ids // PERIOD_KINDS))
    first = np.where(exists, valid_from, np.iinfo(np.int64).max).reshape(-1, PERIOD_KINDS).min(axis=1)
    updated_ord = cal.DAY0_ORD + (updated - cal.day_start(0)) // cal.SECONDS_PER_DAY  # its UTC date
    hi = np.minimum(np.minimum(first, updated_ord), cal.DAY0_ORD)
    lo = np.minimum(np.maximum(p.dob, first - 365), hi)
    return between(base.key("participants"), ids, 7, lo, hi)


def still_active(base: Base, ids: I64, p: Citizens) -> B1:
    """Coverage rows of the dead left active: the deceased_with_active_coverage anomaly of day 0."""
    return p.deceased & (ids % PERIOD_KINDS == 0) & (unit_np(base.key("anomaly"), ids, 3)
                                                     < base.rate("deceased_with_active_coverage"))


def coverage_facts(base: Base, ids: I64, p: Citizens) -> tuple[B1, I64, I64, list[str]]:
    """(exists, valid_from, valid_to (0 = open), status) of candidate coverage rows of citizens `p`."""
    key = base.key("coverage")
    kind = ids % PERIOD_KINDS
    types = participant_types(base, p)
    employee = np.array([t == "employee" for t in types], dtype=bool)
    old_enough = p.dob < date(2022, 1, 1).toordinal()
    # A lapsed year of health cover (2020-2022) is only possible from the 6th birthday: before it the state-funded
    # child card covers the child without a break.
    lapsed_lo = np.maximum(cal.add_years_np(p.dob, 6), cal.HISTORY_FROM_ORD)
    lapsed_hi = np.full(len(ids), date(2022, 12, 31).toordinal() - 364)
    exists = insured(base, p) & ((kind == 0) | (((kind == 1) | (kind == 2)) & employee)
                                 | ((kind == 3) & old_enough & (lapsed_lo <= lapsed_hi)
                                    & (unit_np(key, ids, 0) < 0.2)))
    end_ord = np.where(p.deceased, p.dod, cal.DAY0_ORD - 30)
    child = child_card(p)
    current_from = np.where(child, p.dob, between(key, ids, 1, np.maximum(p.dob, date(2024, 1, 1).toordinal()),
                                                  end_ord))
    job_from = between(key, p.index, 2, np.maximum(cal.add_years_np(p.dob, 18), date(2015, 1, 1).toordinal()),
                       end_ord)
    lapsed_from = between(key, ids, 3, lapsed_lo, lapsed_hi)
    valid_from = np.select([kind == 0, kind == 3], [current_from, lapsed_from], job_from)
    valid_from = np.minimum(valid_from, np.maximum(end_ord, p.dob))  # a child born this month: cover from birth
    # The dead had no lapsed year ending after their death (their last cover, cut at the death, would overlap it).
    exists &= (kind != 3) | ~p.deceased | (p.dod > lapsed_from + 364)
    kept = still_active(base, ids, p)
    ended = p.deceased & ~kept
    planned = np.where(child & (kind == 0), card_end(p.dob), 0)
    valid_to = np.where(kind == 3, lapsed_from + 364, np.where(ended, p.dod, planned))
    status = ["lapsed" if k == 3 else "ended" if d else "active"
              for k, d in zip(kind.tolist(), ended.tolist(), strict=True)]
    return exists, valid_from, valid_to, status


def active_coverages(base: Base, citizens: I64) -> list[list[int]]:
    """Per citizen, the row ids of its coverage periods active at day 0."""
    cover_ids = (citizens[:, None] * PERIOD_KINDS + np.arange(PERIOD_KINDS)[None, :]).ravel()
    exists, _, _, status = coverage_facts(base, cover_ids, base.people(cover_ids // PERIOD_KINDS))
    return [[int(cover_ids[j * PERIOD_KINDS + k]) for k in range(PERIOD_KINDS)
             if exists[j * PERIOD_KINDS + k] and status[j * PERIOD_KINDS + k] == "active"]
            for j in range(len(citizens))]


# --- day-0 records -----------------------------------------------------------------------------------------------

def participants(base: Base, ids: I64) -> Columns:
    p = base.people(ids)
    exists = insured(base, p)
    ids, p = ids[exists], take(p, exists)
    key = base.key("participants")
    types = participant_types(base, p)
    state_paid = np.array([t in ("child_under_6", "student", "poor_household", "pensioner") for t in types],
                          dtype=bool)
    status = np.where(state_paid, 0, choose_np(_CONTRIBUTION_CUM, unit_np(key, ids, 4)))
    status = np.where(p.deceased, 2, status)
    province = GEOGRAPHY.commune_province[p.commune]
    facility = 1 + np.floor(_FACILITIES * unit_np(key, ids, 5)).astype(np.int64)
    updated = stamp_after(key, ids, 6, np.maximum(p.dob, p.dod) + 1)
    registered = registration_dates(base, ids, p, updated)
    return ids, {
        "social_insurance_code": social_codes(base, p),
        "cccd": base.cccd(p),
        "full_name": p.names(),
        "participant_type": types,
        "registered_hospital_code": [f"{a:02d}{b:03d}" for a, b in zip(province.tolist(), facility.tolist(),
                                                                        strict=True)],
        "contribution_status": [_CONTRIBUTION[s] for s in status.tolist()],
        "registered_on": cal.iso_dates(registered),
        "updated_at": cal.timestamps(updated),
    }


def coverage_periods(base: Base, ids: I64) -> Columns:
    p = base.people(ids // PERIOD_KINDS)
    exists, valid_from, valid_to, status = coverage_facts(base, ids, p)
    ids, p = ids[exists], take(p, exists)
    valid_from, valid_to = valid_from[exists], valid_to[exists]
    status = [s for s, e in zip(status, exists.tolist(), strict=True) if e]
    updated = stamp_after(base.key("coverage"), ids, 4, np.maximum(np.maximum(valid_from, valid_to), p.dod) + 1)
    kind = ids % PERIOD_KINDS
    return ids, {
        "coverage_id": [f"CV{i:012d}" for i in ids.tolist()],
        "social_insurance_code": social_codes(base, p),
        "coverage_type": ["social" if k == 1 else "unemployment" if k == 2 else "health" for k in kind.tolist()],
        "valid_from": cal.iso_dates(valid_from),
        "valid_to": cal.optional_dates(valid_to),
        "status": status,
        "updated_at": cal.timestamps(updated),
    }


def _left_active(base: Base, ids: I64) -> B1:
    return still_active(base, ids, base.people(ids // PERIOD_KINDS))


# --- daily events ------------------------------------------------------------------------------------------------

def coverage_start(timeline: Timeline, coverage: int) -> int:
    """The valid_from date (ordinal) of a coverage period as it stands now."""
    return date.fromisoformat(str(timeline.current(COVERAGE_PERIODS, coverage)["valid_from"])).toordinal()


def lapse(t: Timeline, rng: random.Random, at: int) -> None:
    """An active coverage of a living participant of 6 or more lapses; the participant then owes contributions."""
    person = next((p for p in t.sample(rng) if p.alive and p.coverages and t.age(p) >= 6), None)
    if person is None:
        return
    coverage = person.coverages.pop(0)
    stamp = cal.timestamp(at)
    today = max(t.today(), coverage_start(t, coverage))
    t.write(COVERAGE_PERIODS, coverage, {"status": "lapsed", "valid_to": cal.iso_date(today), "updated_at": stamp})
    if person.participant >= 0:
        t.write(PARTICIPANTS, person.participant, {"contribution_status": "owing", "updated_at": stamp})


SIMULATION = RegistrySimulation(
    registry=REGISTRY,
    entities=(
        EntitySimulation(
            PARTICIPANTS, Rows("citizen"), participants,
            Defects(id_field="social_insurance_code", conflict_field="contribution_status", name_field="full_name"),
            renamed_field=("full_name", "ho_ten"),
        ),
        EntitySimulation(
            COVERAGE_PERIODS, Rows("citizen", PERIOD_KINDS), coverage_periods,
            Defects(id_field="social_insurance_code", conflict_field="status"),
            anomalies=("deceased_with_active_coverage",), anomalous=_left_active,
        ),
    ),
    added_field="email",
    events=(Event("lapse", LAPSE_RATE, per_citizen, lapse, order=5),),
    stream=LINKED_WORLD,
)
