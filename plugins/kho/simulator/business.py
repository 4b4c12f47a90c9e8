"""The simulated national business registry: enterprises, their branches and status history, and each day's
openings, suspensions and dissolutions.

Day 0: one enterprise per 40 citizens (row = enterprise number), its legal representative a citizen of 18 or more
(for `legal_rep_unknown`, an identity number no citizen has), 82 % active, 6 % suspended, 12 % dissolved; 20 % have
branches (up to four, row 4 * enterprise + slot), and each has one status change per status it went through (row
4 * enterprise + slot: opened, suspended, dissolved). Codes are valid 10-digit tax codes, a branch's the
enterprise's code and three digits.

Daily (per enterprise; 20-50 times real rates, as every event's): openings 0.5 % (the legal representative a
living adult citizen), suspensions 0.2 % and dissolutions 0.2 % (status, a status-history row, and the branches'
status).

Names: legal form, industry word, then a proper name that is a keyed bijection of the enterprise number
(`names.enterprise_brands`), for day 0 and for enterprises opened later alike, so no two enterprises ever share a
name (Law on Enterprises 59/2020/QH14, art. 41); a branch is named after its enterprise ("Chi nhánh 2 - Công ty
..."). Legal forms follow published shares: the stock of enterprises on day 0 (`text.LEGAL_FORM_CUM`), new
registrations on later days (`text.LEGAL_FORM_NEW_CUM`); partnerships are a fraction of a per cent.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from kho.simulator import calendar as cal
from kho.simulator.base import CITIZENS_PER_ENTERPRISE, Base, between, stamp_after, take
from kho.simulator.names import enterprise_brand, enterprise_brands
from kho.simulator.people import FABRICATED_BASE_RANKS, GEOGRAPHY, HOME_PROVINCE, Citizens, prefix_ids
from kho.simulator.rng import B1, I64, choose_np, cumulative, feistel_np, feistel_py, unit_np
from kho.simulator.spec import LINKED_WORLD, Columns, Defects, EntitySimulation, Event, RegistrySimulation, Rows
from kho.simulator.text import (
    INDUSTRIES,
    INDUSTRY_CUM,
    LEGAL_FORM_CUM,
    LEGAL_FORM_NAMES,
    LEGAL_FORM_NEW_CUM,
    LEGAL_FORMS,
)
from kho.simulator.timeline import Timeline
from kho.sources.business import BRANCHES, ENTERPRISE_STATUS_CHANGES, ENTERPRISES, REGISTRY
from kho.sources.identity import tax_code_check_digit

TAX_PROVINCE = "37"
"""Tax-code province digits of Bình Dương's tax department (not the GSO code 74)."""
ENTERPRISE_CAPACITY = 1_000_000
"""Enterprise codes are 37 + a permutation of six digits + one digit that makes the check digit valid."""
BRANCH_SLOTS = 4
STATUS_SLOTS = 4
_STATUS = ("active", "suspended", "dissolved")
_STATUS_CUM = cumulative([82, 6, 12])
_REASONS = {"active": "Thành lập mới", "suspended": "Tạm ngừng kinh doanh", "dissolved": "Giải thể"}
_BRANCH_CUM = cumulative([80, 12, 5, 3])
OPEN_RATE = 0.005
SUSPEND_RATE = 0.002
DISSOLVE_RATE = 0.002


def tax_codes(values: I64) -> list[str]:
    """Valid 10-digit enterprise codes: 37, six permuted digits, the first digit (from a rotating start) for which
    a check digit exists, and that check digit. Distinct values give distinct codes (the first eight digits differ)."""
    codes = []
    for value in values.tolist():
        base = f"{TAX_PROVINCE}{value:06d}"
        for fix in range(10):
            first9 = f"{base}{(value + fix) % 10}"
            check = tax_code_check_digit(first9)
            if check is not None and first9[2:9] != "0000000":
                codes.append(f"{first9}{check}")
                break
    return codes


def enterprise_name(form: int, industry: int, brand: str) -> str:
    """Legal form, industry word, proper name: "Công ty TNHH May mặc Bách Khải Phát"."""
    return f"{LEGAL_FORM_NAMES[form]} {INDUSTRIES[industry][1]} {brand}"


# --- day-0 facts -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnterpriseFacts:
    ids: I64
    rep: Citizens
    established: I64
    status: I64
    """0 active, 1 suspended, 2 dissolved (as of day 0)."""
    first_change: I64
    second_change: I64
    suspended_first: B1
    unknown_rep: B1
    last_change: I64

    def take(self, mask: B1) -> EnterpriseFacts:
        return EnterpriseFacts(ids=self.ids[mask], rep=take(self.rep, mask), established=self.established[mask],
                               status=self.status[mask], first_change=self.first_change[mask],
                               second_change=self.second_change[mask], suspended_first=self.suspended_first[mask],
                               unknown_rep=self.unknown_rep[mask], last_change=self.last_change[mask])


def enterprise_codes(base: Base, enterprises: I64) -> list[str]:
    return tax_codes(feistel_np(base.key("enterprise.code"), enterprises, 1000))


def enterprise_facts(base: Base, ids: I64) -> EnterpriseFacts:
    """Day-0 facts of enterprises `ids` (all below `base.enterprises`)."""
    key = base.key("enterprises")
    candidate = np.floor(unit_np(key, ids, 0) * max(base.citizens, 1)).astype(np.int64)
    rep = base.people(base.people(candidate).head_index)
    earliest = np.maximum(cal.add_years_np(rep.dob, 18), date(2000, 1, 1).toordinal())
    established = between(key, ids, 1, earliest, np.full(len(ids), cal.DAY0_ORD - 1))
    status = choose_np(_STATUS_CUM, unit_np(key, ids, 2))
    status = np.where(established > cal.DAY0_ORD - 120, 0, status)
    first_change = between(key, ids, 3, established + 30, np.full(len(ids), cal.DAY0_ORD - 60))
    second_change = between(key, ids, 4, first_change + 15, np.full(len(ids), cal.DAY0_ORD - 1))
    suspended_first = (status == 2) & (unit_np(key, ids, 5) < 0.5)
    dissolved_on = np.where(suspended_first, second_change, first_change)
    last_change = np.select([status == 1, status == 2], [first_change, dissolved_on], established)
    return EnterpriseFacts(ids=ids, rep=rep, established=established, status=status,
                           first_change=first_change, second_change=second_change,
                           suspended_first=suspended_first, unknown_rep=_unknown_reps(base, ids),
                           last_change=last_change)


def _unknown_reps(base: Base, ids: I64) -> B1:
    """Enterprises whose legal representative no citizen is: the `legal_rep_unknown` anomaly of day 0."""
    return unit_np(base.key("anomaly"), ids, 0) < base.rate("legal_rep_unknown")


def fabricated_reps(base: Base, ids: I64) -> list[str]:
    """CCCDs no citizen has: a plausible prefix and a rank from the reserved range, unique per enterprise."""
    key = base.key("anomaly")
    lo, hi = FABRICATED_BASE_RANKS
    width = hi - lo
    province = np.array([int(p) for p in GEOGRAPHY.provinces])[
        np.floor(unit_np(key, ids, 1) * len(GEOGRAPHY.provinces)).astype(np.int64)]
    year = 1960 + (ids // width) % 40
    sex = np.floor(unit_np(key, ids, 2) * 2).astype(np.int64)
    prefix = province * 1000 + ((year // 100 - 19) * 2 + sex) * 100 + year % 100
    return [f"{v:012d}" for v in base.index.numbers(prefix, lo + ids % width).tolist()]


def _names(base: Base, ids: I64) -> tuple[I64, list[str]]:
    """(legal form, name) of enterprises."""
    key = base.key("enterprises")
    form = choose_np(LEGAL_FORM_CUM, unit_np(key, ids, 6))
    industry = choose_np(INDUSTRY_CUM, unit_np(key, ids, 7))
    brands = enterprise_brands(base.key("enterprise.name"), ids)
    return form, [enterprise_name(a, b, c) for a, b, c in zip(form.tolist(), industry.tolist(), brands, strict=True)]


def _branch_rows(base: Base, ids: I64) -> I64:
    """The candidate branch rows that exist: an enterprise has 0-3 branches."""
    count = choose_np(_BRANCH_CUM, unit_np(base.key("branches"), ids // BRANCH_SLOTS, 0))
    return ids[ids % BRANCH_SLOTS < count]


# --- day-0 records -----------------------------------------------------------------------------------------------

def enterprises(base: Base, ids: I64) -> Columns:
    f = enterprise_facts(base, ids)
    key = base.key("enterprises")
    form, names = _names(base, ids)
    industry = choose_np(INDUSTRY_CUM, unit_np(key, ids, 7))
    commune = GEOGRAPHY.home_communes[np.floor(len(GEOGRAPHY.home_communes) * unit_np(key, ids, 9))
                                      .astype(np.int64)]
    capital = (np.round(10 ** (8.7 + 2.3 * unit_np(key, ids, 10) ** 2) / 1e7) * 1e7).astype(np.int64)
    updated = stamp_after(key, ids, 11, f.last_change + 1)
    reps = base.cccd(f.rep)
    if f.unknown_rep.any():
        fake = iter(fabricated_reps(base, ids[f.unknown_rep]))
        reps = [next(fake) if u else r for r, u in zip(reps, f.unknown_rep.tolist(), strict=True)]
    return ids, {
        "enterprise_code": enterprise_codes(base, ids),
        "name": names,
        "legal_form": [LEGAL_FORMS[v] for v in form.tolist()],
        "industry_code": [INDUSTRIES[v][0] for v in industry.tolist()],
        "commune_code": base.commune_codes(commune),
        "registered_capital": [str(v) for v in capital.tolist()],
        "legal_rep_cccd": reps,
        "status": [_STATUS[s] for s in f.status.tolist()],
        "established_on": cal.iso_dates(f.established),
        "updated_at": cal.timestamps(updated),
    }


def branches(base: Base, ids: I64) -> Columns:
    ids = _branch_rows(base, ids)
    enterprise, slot = ids // BRANCH_SLOTS, ids % BRANCH_SLOTS
    if not len(ids):
        return ids, {}
    key = base.key("branches")
    f = enterprise_facts(base, enterprise)
    _, names = _names(base, enterprise)
    commune = GEOGRAPHY.home_communes[np.floor(len(GEOGRAPHY.home_communes) * unit_np(key, ids, 1))
                                      .astype(np.int64)]
    opened = between(key, ids, 2, f.established, np.full(len(ids), cal.DAY0_ORD - 1))
    updated = stamp_after(key, ids, 3, np.maximum(opened, f.last_change) + 1)
    codes = enterprise_codes(base, enterprise)
    return ids, {
        "branch_code": [f"{c}{s + 1:03d}" for c, s in zip(codes, slot.tolist(), strict=True)],
        "enterprise_code": codes,
        "name": [f"Chi nhánh {s + 1} - {n}" for s, n in zip(slot.tolist(), names, strict=True)],
        "commune_code": base.commune_codes(commune),
        "status": [_STATUS[s] for s in f.status.tolist()],
        "updated_at": cal.timestamps(updated),
    }


def status_changes(base: Base, ids: I64) -> Columns:
    enterprise, slot = ids // STATUS_SLOTS, ids % STATUS_SLOTS
    f = enterprise_facts(base, enterprise)
    # slot 0: opened (active); slot 1: suspended (a suspended one, or half the dissolved); slot 2: dissolved.
    exists = (slot == 0) | ((slot == 1) & ((f.status == 1) | f.suspended_first)) | ((slot == 2) & (f.status == 2))
    ids, slot = ids[exists], slot[exists]
    f = f.take(exists)
    effective = np.select([slot == 0, slot == 1, f.suspended_first], [f.established, f.first_change,
                                                                       f.second_change], f.first_change)
    status = np.where(slot == 0, 0, np.where(slot == 1, 1, 2))
    updated = stamp_after(base.key("status"), ids, 0, effective)
    return ids, {
        "enterprise_code": enterprise_codes(base, f.ids),
        "status": [_STATUS[s] for s in status.tolist()],
        "effective_on": cal.iso_dates(effective),
        "reason": [_REASONS[_STATUS[s]] for s in status.tolist()],
        "updated_at": cal.timestamps(updated),
    }


# --- daily events ------------------------------------------------------------------------------------------------

@dataclass
class Firm:
    row: int
    code: str
    status: str
    established: int
    branches: list[int]
    status_dates: set[int]


@dataclass
class Firms:
    """The business registry's state in a replay: enterprises opened so far and those the events met."""

    opened: list[int] = field(default_factory=list)
    """Row ids of the enterprises opened on days 1.., in opening order."""
    known: dict[int, Firm] = field(default_factory=dict)

    def firm(self, base: Base, row: int) -> Firm:
        known = self.known.get(row)
        if known is not None:
            return known
        ids = np.array([row], dtype=np.int64)
        f = enterprise_facts(base, ids)
        dates = {int(f.established[0])}
        if int(f.status[0]) == 1 or bool(f.suspended_first[0]):
            dates.add(int(f.first_change[0]))
        if int(f.status[0]) == 2:
            dates.add(int(f.last_change[0]))
        branch_rows = np.arange(row * BRANCH_SLOTS, (row + 1) * BRANCH_SLOTS, dtype=np.int64)
        firm = Firm(row, enterprise_codes(base, ids)[0], _STATUS[int(f.status[0])], int(f.established[0]),
                    _branch_rows(base, branch_rows).tolist(), dates)
        self.known[row] = firm
        return firm


def per_enterprise(t: Timeline) -> float:
    """What a per-enterprise rate is a share of: every enterprise ever registered (at least 40 in a world of
    citizens, so that a small world still opens some)."""
    return max(t.base.enterprises + len(t.state(Firms).opened), CITIZENS_PER_ENTERPRISE if t.population else 0)


def open_enterprise(t: Timeline, rng: random.Random, at: int) -> None:
    """A living adult citizen registers an enterprise: the enterprise and its first status change."""
    rep = next((p for p in t.sample(rng) if p.alive and t.age(p) >= 18), None)
    firms = t.state(Firms)
    number = t.base.enterprises + len(firms.opened)
    if rep is None or number >= ENTERPRISE_CAPACITY:
        return
    code = tax_codes(np.array([feistel_py(t.base.key("enterprise.code"), number, 1000)]))[0]
    stamp = cal.timestamp(at)
    today = t.today()
    form = bisect.bisect_right(LEGAL_FORM_NEW_CUM, rng.random())
    industry = bisect.bisect_right(INDUSTRY_CUM, rng.random())
    rep_cccd = rep.cccd
    anomalous = rng.random() < t.base.rate("legal_rep_unknown")
    if anomalous:
        prefix = int(prefix_ids(np.array([HOME_PROVINCE]), np.array([rep.dob]), np.array([rep.sex]))[0])
        rep_cccd = t.issue_cccd(prefix, known=False)
    home = GEOGRAPHY.home_communes
    row = t.create(ENTERPRISES, {
        "enterprise_code": code,
        "name": enterprise_name(form, industry, enterprise_brand(t.base.key("enterprise.name"), number)),
        "legal_form": LEGAL_FORMS[form], "industry_code": INDUSTRIES[industry][0],
        "commune_code": t.commune_code(int(home[rng.randrange(len(home))]), number),  # new codes from 2025-07-01
        "registered_capital": str(rng.randrange(50, 5000) * 10_000_000), "legal_rep_cccd": rep_cccd,
        "status": "active", "established_on": cal.iso_date(today), "updated_at": stamp,
    })
    firms.opened.append(row)
    firms.known[row] = Firm(row, code, "active", today, [], {today})
    if anomalous:
        t.report(ENTERPRISES, row, "legal_rep_unknown")
    t.create(ENTERPRISE_STATUS_CHANGES, {
        "enterprise_code": code, "status": "active", "effective_on": cal.iso_date(today),
        "reason": _REASONS["active"], "updated_at": stamp,
    })


def _pick_firm(t: Timeline, rng: random.Random, wanted: tuple[str, ...]) -> Firm | None:
    firms = t.state(Firms)
    count = t.base.enterprises + len(firms.opened)
    if not count:
        return None
    for _ in range(12):
        n = rng.randrange(count)
        row = n if n < t.base.enterprises else firms.opened[n - t.base.enterprises]
        firm = firms.firm(t.base, row)
        if firm.status in wanted and t.today() not in firm.status_dates:
            return firm
    return None


def suspend(t: Timeline, rng: random.Random, at: int) -> None:
    """An active enterprise suspends its business."""
    _set_status(t, _pick_firm(t, rng, ("active",)), "suspended", at)


def dissolve(t: Timeline, rng: random.Random, at: int) -> None:
    """An active or suspended enterprise is dissolved."""
    _set_status(t, _pick_firm(t, rng, ("active", "suspended")), "dissolved", at)


def _set_status(t: Timeline, firm: Firm | None, status: str, at: int) -> None:
    if firm is None:
        return
    stamp = cal.timestamp(at)
    today = t.today()
    firm.status = status
    firm.status_dates.add(today)
    t.write(ENTERPRISES, firm.row, {"status": status, "updated_at": stamp})
    t.create(ENTERPRISE_STATUS_CHANGES, {
        "enterprise_code": firm.code, "status": status, "effective_on": cal.iso_date(today),
        "reason": _REASONS[status], "updated_at": stamp,
    })
    for branch in firm.branches:
        t.write(BRANCHES, branch, {"status": status, "updated_at": stamp})


SIMULATION = RegistrySimulation(
    registry=REGISTRY,
    entities=(
        EntitySimulation(
            ENTERPRISES, Rows("enterprise"), enterprises,
            Defects(id_field="enterprise_code", conflict_field="registered_capital",
                    check_digit_fields=("enterprise_code",), commune_field="commune_code", name_field="name"),
            anomalies=("legal_rep_unknown",), anomalous=_unknown_reps,
        ),
        EntitySimulation(
            BRANCHES, Rows("enterprise", BRANCH_SLOTS), branches,
            Defects(id_field="branch_code", conflict_field="commune_code",
                    check_digit_fields=("branch_code", "enterprise_code"), commune_field="commune_code",
                    name_field="name"),
        ),
        EntitySimulation(
            ENTERPRISE_STATUS_CHANGES, Rows("enterprise", STATUS_SLOTS), status_changes,
            Defects(id_field="enterprise_code", conflict_field="reason", check_digit_fields=("enterprise_code",)),
        ),
    ),
    added_field="website",
    events=(Event("open", OPEN_RATE, per_enterprise, open_enterprise, order=6),
            Event("suspend", SUSPEND_RATE, per_enterprise, suspend, order=7),
            Event("dissolve", DISSOLVE_RATE, per_enterprise, dissolve, order=8)),
    stream=LINKED_WORLD,
)
