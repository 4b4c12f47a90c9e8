"""Cross-registry anomalies of day 0: which rows carry one, and what those rows then say, many rows at a time.

Each function is a pure function of (seed's anomaly key, row ids, day-0 facts, rate), so a registry's renderer
renders the anomalous values into its records and its `EntitySimulation.anomalous` flags the same rows for the
ground truth without keeping a list. Every anomalous record still passes its own contract: the contradiction is
only visible against another registry (the rules of `mart_audit.cross_registry_contradictions`, docs/datasets.md).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from kho.simulator import calendar as cal
from kho.simulator.rng import B1, F64, I64, unit_np

AnomalyKind = Literal[
    "deceased_with_active_coverage", "legal_rep_unknown", "birth_without_citizen", "cccd_contradicts_birth_record",
    "marriage_under_legal_age", "household_without_one_head", "member_after_death",
]
"""The seven rules of `mart_audit.cross_registry_contradictions` (docs/datasets.md); each entity's simulation says
which of them its records may carry (`EntitySimulation.anomalies`)."""
FlaggedKind = Literal["legacy_social_insurance_code"]
"""Defects an event injects into the world (not into one served version) for a raw-table rule to flag: a
participant registered from 2025-07-01 given a 10-digit code, which its coverage periods then carry too."""
ReportedKind = AnomalyKind | FlaggedKind
"""What an event may report for the ground truth (`Timeline.report`)."""

_BIRTH, _MARRIAGE, _HEADS, _MEMBER, _TWIN = 4, 6, 11, 13, 16
"""First draw slot of each kind in the anomaly stream (0-3 are the legal representative's and coverage's)."""
_MAX_BIRTH_SHIFT = 60


def year_bounds(ordinals: I64) -> tuple[I64, I64]:
    """(1 January, 31 December) of each date's year, as ordinals."""
    first = cal.year_starts_np(ordinals)
    return first, cal.add_years_np(first, 1) - 1


def birth_dates(key: int, ids: I64, dob: I64, registered: I64, rate: float) -> tuple[B1, I64]:
    """(contradicted, date_of_birth as registered) of birth rows: `cccd_contradicts_birth_record`.

    The registration's date moves a few days within the child's year of birth and never after registered_on, so
    the child's CCCD (sex and year digits) and the record's own date order still agree.
    """
    first, last = year_bounds(dob)
    before = np.minimum(dob - first, _MAX_BIRTH_SHIFT)
    after = np.minimum(np.minimum(registered, last) - dob, _MAX_BIRTH_SHIFT)
    hit = (unit_np(key, ids, _BIRTH) < rate) & (before + after > 0)
    step = 1 + np.floor(unit_np(key, ids, _BIRTH + 1) * (before + after)).astype(np.int64)
    shifted = np.where(step <= before, dob - step, dob + (step - before))
    return hit, np.where(hit, shifted, dob)


def unregistered_twins(key: int, ids: I64, rate: float) -> B1:
    """Which odd birth rows 2i+1 exist: child i's twin, registered at birth but never recorded by the population
    registry (`birth_without_citizen`)."""
    return (ids % 2 == 1) & (unit_np(key, ids, _TWIN) < rate)


def twins(key: int, ids: I64, sex: I64) -> tuple[I64, F64, F64, F64]:
    """(sex, and three uniform draws for the given and middle names) of twins: either sex, names of their own."""
    twin_sex = np.where(unit_np(key, ids, _TWIN + 1) < 0.5, sex, 1 - sex)
    return twin_sex, unit_np(key, ids, _TWIN + 2), unit_np(key, ids, _TWIN + 3), unit_np(key, ids, _TWIN + 4)


def marriage_dates(key: int, households: I64, husband_dob: I64, wife_dob: I64, married_on: I64,
                   rate: float) -> tuple[B1, I64, I64, I64]:
    """(under age, registered_on, husband's and wife's date of birth as registered): `marriage_under_legal_age`.

    The marriage was registered in the wife's 18th year (or, when she is at most three years younger, in the
    husband's 20th), and the registration states dates of birth that make both of age, so the row passes the
    contract while the population registry's true dates show the under-age party.
    """
    hit = unit_np(key, households, _MARRIAGE) < rate
    husband_young = (unit_np(key, households, _MARRIAGE + 1) < 0.5) & (wife_dob <= cal.add_years_np(husband_dob, 3))
    early = np.floor(unit_np(key, households, _MARRIAGE + 2) * 300).astype(np.int64)
    young = np.where(husband_young, cal.add_years_np(husband_dob, 19), cal.add_years_np(wife_dob, 17)) + early
    registered = np.where(hit, young, married_on)
    older = np.floor(unit_np(key, households, _MARRIAGE + 3) * 700).astype(np.int64)
    husband = np.where(hit, np.minimum(husband_dob, cal.add_years_np(registered, -20) - 1 - older), husband_dob)
    wife = np.where(hit, np.minimum(wife_dob, cal.add_years_np(registered, -18) - 1 - older), wife_dob)
    return hit, registered, husband, wife


def odd_heads(key: int, households: I64, size: I64, rate: float) -> tuple[B1, B1]:
    """(anomalous, two heads) of households: `household_without_one_head`.

    The second member of a household of two or more is recorded as a second head, or the head as `other` (then
    no head). Both are alive at day 0 (only a head's parent, the last member, can have died).
    """
    hit = (size > 0) & (unit_np(key, households, _HEADS) < rate)
    two = hit & (size >= 2) & (unit_np(key, households, _HEADS + 1) < 0.5)
    return hit, two


def relations(role: I64, slot: I64, hit: B1, two: B1, head: int, other: int) -> I64:
    """Relation codes of members once `odd_heads` has decided their households."""
    return np.where(two & (slot == 1), head, np.where(hit & ~two & (slot == 0), other, role))


def left_on(key: int, ids: I64, deceased: B1, dod: I64, rate: float) -> tuple[B1, I64]:
    """(anomalous, left_on, 0 = open) of memberships: `member_after_death` leaves a dead member's membership open,
    or closes it some days after the death; every other membership of the dead closes on the day of death."""
    hit = deceased & (unit_np(key, ids, _MEMBER) < rate)
    later = dod + 1 + np.floor(unit_np(key, ids, _MEMBER + 1) * 90).astype(np.int64)
    closed_late = (unit_np(key, ids, _MEMBER + 2) < 0.5) & (later <= cal.DAY0_ORD)
    return hit, np.where(hit, np.where(closed_late, later, 0), dod)
