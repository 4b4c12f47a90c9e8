"""Day-0 records of every registry entity, rendered in wire form from the people model, many rows at a time.

Each entity has an integer row-id space derived from the citizen (or enterprise) it belongs to, so that a row's
record is a pure function of (seed, row id): a citizen's k-th coverage period is row 4 * index + k, a household is
numbered block * 16 + position. A renderer takes candidate ids (any order), drops those that do not exist and
returns the records of the rest, so the same code streams a snapshot in id order and rebuilds one page of
records in cursor order for the HTTP API.

Shares used here (insured 92 %, one enterprise per 40 residents, 20 % of enterprises with branches, ...) are
illustrative; `generate.py` documents the daily change rates. Day-0 cross-registry anomalies are rendered into the
records themselves (`anomalies.py` decides which rows carry one), so a later version merges over the anomalous
record and `Base.anomalous` flags the same rows for the ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date

import numpy as np

from kho.simulator import anomalies
from kho.simulator import calendar as cal
from kho.simulator.people import (
    BLOCK,
    COUPLE,
    FABRICATED_BASE_RANKS,
    FEMALE,
    GEOGRAPHY,
    HEAD,
    HOME_PROVINCE,
    MALE,
    RELATION_NAMES,
    CccdIndex,
    Citizens,
    Model,
    prefix_ids,
)
from kho.simulator.rng import I64, choose_np, cumulative, feistel_np, stream_key, unit_np
from kho.simulator.text import (
    BRAND_WORDS,
    GIVEN,
    HAMLETS,
    INDUSTRIES,
    INDUSTRY_CUM,
    LEGAL_FORM_CUM,
    LEGAL_FORM_NAMES,
    LEGAL_FORMS,
    STREETS,
)
from kho.sources.identity import tax_code_check_digit

Record = dict[str, str | None]
Column = Sequence[str | None]
CHUNK = 4096
"""Citizens (or enterprises) rendered per step of a stream: large enough for numpy, small enough for memory."""
CITIZENS_PER_ENTERPRISE = 40
"""Bình Dương has roughly one registered enterprise per 45 residents."""
TAX_PROVINCE = "37"
"""Tax-code province digits of Bình Dương's tax department (not the GSO code 74)."""
ENTERPRISE_CAPACITY = 1_000_000
"""Enterprise codes are 37 + a permutation of six digits + one digit that makes the check digit valid."""
SOCIAL_CODE_CAPACITY = 100_000_000
DIGITISED_BIRTHS_FROM = date(2008, 1, 1).toordinal()
"""Birth registrations before this date are not in the electronic civil status database we simulate."""
DAY0_END = cal.day_start(1) - 1

_PERIOD_KINDS = 4
"""Coverage periods per participant: current health, social, unemployment, an earlier lapsed health period."""
_BRANCH_SLOTS = 4
_STATUS_SLOTS = 4
_FACILITIES = 30
_PARTICIPANT_TYPES = ("employee", "self_employed", "household", "student", "poor_household", "child_under_6",
                      "pensioner")
_WORKING_TYPE_CUM = cumulative([55, 15, 22, 0, 8, 0, 0])
_CONTRIBUTION = ("paid", "owing", "suspended")
_CONTRIBUTION_CUM = cumulative([85, 10, 5])
_STATUS = ("active", "suspended", "dissolved")
_STATUS_CUM = cumulative([82, 6, 12])
_REASONS = {"active": "Thành lập mới", "suspended": "Tạm ngừng kinh doanh", "dissolved": "Giải thể",
            "resumed": "Tiếp tục kinh doanh"}
_BRANCH_CUM = cumulative([80, 12, 5, 3])


def _stamp(key: int, ids: I64, slot: int, after_ord: I64) -> I64:
    """Seconds of a last change, uniform from the start of `after_ord` (at least 2020-01-01) to the end of day 0."""
    start = cal.ords_to_seconds(np.clip(after_ord, cal.HISTORY_FROM_ORD, cal.DAY0_ORD))
    return start + np.floor((DAY0_END + 1 - start) * unit_np(key, ids, slot)).astype(np.int64)


def _between(key: int, ids: I64, slot: int, lo: I64, hi: I64) -> I64:
    """A date ordinal uniform in [lo, hi] (hi below lo gives lo)."""
    span = np.maximum(hi - lo, 0) + 1
    return lo + np.floor(span * unit_np(key, ids, slot)).astype(np.int64)


def records(names: tuple[str, ...], columns: Sequence[Column]) -> list[Record]:
    """Row dicts from columns in field order: the one per-row step of rendering."""
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


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


@dataclass(frozen=True)
class Rendered:
    """The rows of one render call that exist: their ids (ascending when the candidates were) and records."""

    ids: I64
    records: list[Record]


class Base:
    """Day-0 records of every entity of world (seed, citizens)."""

    def __init__(self, seed: int, citizens: int) -> None:
        self.seed = seed
        self.citizens = citizens
        self.enterprises = citizens // CITIZENS_PER_ENTERPRISE
        self.model = Model(seed, citizens)
        self._index: CccdIndex | None = None
        self._k = {name: stream_key(seed, f"base.{name}") for name in (
            "citizens", "households", "members", "residence", "participants", "coverage", "births", "marriages",
            "deaths", "enterprises", "branches", "status", "social", "enterprise.code", "anomaly")}
        self.renderers: dict[str, Callable[[I64], Rendered]] = {
            "population.citizens": self.render_citizens,
            "population.households": self.render_households,
            "population.household_members": self.render_members,
            "population.residence_changes": self.render_residence_changes,
            "insurance.participants": self.render_participants,
            "insurance.coverage_periods": self.render_coverage,
            "civil_status.births": self.render_births,
            "civil_status.marriages": self.render_marriages,
            "civil_status.deaths": self.render_deaths,
            "business.enterprises": self.render_enterprises,
            "business.branches": self.render_branches,
            "business.enterprise_status_changes": self.render_status_changes,
        }
        self.fanout: dict[str, int] = {
            "population.citizens": 1, "population.household_members": 1, "population.residence_changes": 2,
            "insurance.participants": 1, "insurance.coverage_periods": _PERIOD_KINDS, "civil_status.births": 2,
            "civil_status.deaths": 1, "business.enterprises": 1, "business.branches": _BRANCH_SLOTS,
            "business.enterprise_status_changes": _STATUS_SLOTS,
        }
        """Row ids per citizen (or enterprise); households and marriages are numbered by household instead."""
        self.anomaly_rates: dict[str, float] = {}
        """Per cross-registry anomaly kind, the share of eligible day-0 rows that carry it (`anomalies.py`)."""

    # --- shared facts -------------------------------------------------------------------------------------------

    @property
    def index(self) -> CccdIndex:
        """The CCCD rank index, built on first use (one vectorised pass over every citizen)."""
        if self._index is None:
            self._index = CccdIndex(self.model, self.citizens)
        return self._index

    def people(self, index: I64) -> Citizens:
        return self.model.citizens(index)

    def cccd(self, people: Citizens) -> list[str]:
        return [f"{v:012d}" for v in self.index.cccd_numbers(people).tolist()]

    def cccd_of(self, index: I64) -> list[str]:
        """CCCDs of citizens by index; -1 gives None (no such person)."""
        present = index >= 0
        out: list[str | None] = [None] * len(index)
        if present.any():
            where = np.flatnonzero(present)
            for pos, text in zip(where.tolist(), self.cccd(self.people(index[present])), strict=True):
                out[pos] = text
        return out  # type: ignore[return-value]

    def household_codes(self, households: I64) -> list[str]:
        return [f"HK{HOME_PROVINCE}{h:08d}" for h in households.tolist()]

    def commune_codes(self, communes: I64) -> list[str | None]:
        codes = GEOGRAPHY.communes
        return [codes[c] if c >= 0 else None for c in communes.tolist()]

    def social_codes(self, people: Citizens) -> list[str]:
        """10-digit social insurance codes: issuing province (where the person is registered) + 8 permuted digits."""
        key = self._k["social"]
        serial = feistel_np(key, people.index, 10_000)
        province = GEOGRAPHY.commune_province[people.commune]
        return [f"{p:02d}{s:08d}" for p, s in zip(province.tolist(), serial.tolist(), strict=True)]

    # --- population ---------------------------------------------------------------------------------------------

    def render_citizens(self, ids: I64) -> Rendered:
        p = self.people(ids)
        geo = GEOGRAPHY
        ethnic = geo.ethnicities
        deceased = p.deceased.tolist()
        columns: list[Column] = [
            self.cccd(p),
            p.names(),
            cal.iso_dates(p.dob),
            ["M" if s == MALE else "F" for s in p.sex.tolist()],
            [ethnic[e] for e in p.ethnicity.tolist()],
            [f"{v:02d}" for v in p.birth_province.tolist()],
            [f"{v:02d}" for v in p.hometown.tolist()],
            self.commune_codes(p.commune),
            self.commune_codes(p.temporary),
            [None if d else h for h, d in zip(self.household_codes(p.household), deceased, strict=True)],
            ["deceased" if d else "alive" for d in deceased],
            cal.optional_dates(p.dod),
            cal.timestamps(p.updated_at),
        ]
        return Rendered(ids, records(CITIZEN_FIELDS, columns))

    def household_slots(self, households: I64) -> tuple[I64, I64]:
        """(first citizen, size) of each candidate household number; size 0 where no such household exists."""
        blocks = households // BLOCK
        unique, inverse = np.unique(blocks, return_inverse=True)
        sizes, starts = self.model.partition(unique)
        local = households % BLOCK
        return blocks * BLOCK + starts[inverse, local], sizes[inverse, local]

    def households_of(self, households: I64) -> tuple[I64, I64, I64]:
        """(existing households, their first citizen, their size) among candidate household numbers."""
        first, size = self.household_slots(households)
        exists = size > 0
        return households[exists], first[exists], size[exists]

    def render_households(self, ids: I64) -> Rendered:
        households, first, size = self.households_of(ids)
        if not len(households):
            return Rendered(households, [])
        members = np.repeat(first, size) + (np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size))
        p = self.people(members)
        bounds = np.r_[0, np.cumsum(size)[:-1]]
        living = np.add.reduceat((~p.deceased).astype(np.int64), bounds)
        last = np.maximum.reduceat(np.maximum(p.joined_on, p.dod), bounds)
        heads = p.index[bounds]
        head_people = self.people(heads)
        key = self._k["households"]
        commune = head_people.commune
        updated = _stamp(key, households, 0, last + 1)
        columns: list[Column] = [
            self.household_codes(households),
            self.cccd(head_people),
            self.commune_codes(commune),
            self._addresses(key, households, commune),
            [str(v) for v in living.tolist()],
            cal.timestamps(updated),
        ]
        return Rendered(households, records(HOUSEHOLD_FIELDS, columns))

    def _addresses(self, key: int, households: I64, communes: I64) -> list[str | None]:
        number = 1 + np.floor(400 * unit_np(key, households, 1)).astype(np.int64)
        street = np.floor(len(STREETS) * unit_np(key, households, 2)).astype(np.int64)
        hamlet = np.floor(len(HAMLETS) * unit_np(key, households, 3)).astype(np.int64)
        on_street = (unit_np(key, households, 4) < 0.6) & (GEOGRAPHY.commune_province[communes] == HOME_PROVINCE)
        return [f"Số {n} đường {STREETS[s]}" if st else f"Tổ {n % 12 + 1}, {HAMLETS[h]}"
                for n, s, h, st in zip(number.tolist(), street.tolist(), hamlet.tolist(), on_street.tolist(),
                                       strict=True)]

    def render_members(self, ids: I64) -> Rendered:
        p = self.people(ids)
        key = self._k["members"]
        _, left = self.membership_ends(ids, p)
        updated = _stamp(key, ids, 0, np.maximum(p.joined_on, np.maximum(p.dod, left)) + 1)
        columns: list[Column] = [
            self.household_codes(p.household),
            self.cccd(p),
            [RELATION_NAMES[r] for r in self.relations(p).tolist()],
            cal.iso_dates(p.joined_on),
            cal.optional_dates(left),
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(MEMBER_FIELDS, columns))

    def render_residence_changes(self, ids: I64) -> Rendered:
        citizen, kind = ids // 2, ids % 2
        p = self.people(citizen)
        moved_in = (kind == 0) & (p.migrated_on > 0) & p.registered_here & (p.dob < p.migrated_on)
        temporary = (kind == 1) & (p.temporary >= 0)
        exists = moved_in | temporary
        ids, p, kind = ids[exists], _take(p, exists), kind[exists]
        key = self._k["residence"]
        geo = GEOGRAPHY
        origin_province = p.birth_province
        origin_commune = np.full(len(ids), -1)
        for prov, members in geo.communes_by_province.items():
            if prov != HOME_PROVINCE:
                here = origin_province == prov
                origin_commune[here] = members[np.floor(unit_np(key, ids[here], 0) * len(members)).astype(np.int64)]
        adult = cal.add_years_np(p.dob, 15)
        temp_from = _between(key, ids, 1, np.maximum(adult, cal.HISTORY_FROM_ORD - 3 * 365), np.full(len(ids),
                                                                                                   cal.DAY0_ORD - 2))
        temp_from = np.maximum(temp_from, p.dob + 1)
        effective = np.where(kind == 0, p.migrated_on, temp_from)
        effective = np.minimum(effective, cal.DAY0_ORD - 1)
        registered = cal.ords_to_seconds(effective) + np.floor(
            np.minimum(30 * cal.SECONDS_PER_DAY, DAY0_END - cal.ords_to_seconds(effective))
            * unit_np(key, ids, 2)).astype(np.int64)
        updated = registered + np.floor(np.minimum(3 * cal.SECONDS_PER_DAY, DAY0_END - registered)
                                        * unit_np(key, ids, 3)).astype(np.int64)
        columns: list[Column] = [
            [f"RC{i:012d}" for i in ids.tolist()],
            self.cccd(p),
            ["permanent" if k == 0 else "temporary" for k in kind.tolist()],
            self.commune_codes(np.where(kind == 0, origin_commune, p.commune)),
            self.commune_codes(np.where(kind == 0, p.commune, p.temporary)),
            cal.iso_dates(effective),
            cal.timestamps(registered),
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(RESIDENCE_FIELDS, columns))

    # --- insurance ----------------------------------------------------------------------------------------------

    def insured(self, p: Citizens) -> np.ndarray:
        """Whether each citizen is a participant: 92 %, every child under 6 (their card is state-funded)."""
        young = (cal.DAY0_ORD - p.dob) < 6 * 365.2425
        return young | (unit_np(self._k["participants"], p.index, 0) < 0.92)

    def participant_types(self, p: Citizens) -> list[str]:
        key = self._k["participants"]
        age = (cal.DAY0_ORD - p.dob) / 365.2425
        working = choose_np(_WORKING_TYPE_CUM, unit_np(key, p.index, 1))
        kind = np.select(
            [age < 6, age < 18, (age < 22) & (p.role == 2) & (unit_np(key, p.index, 2) < 0.5),
             (age >= 60) & (unit_np(key, p.index, 3) < 0.4), age >= 60],
            [5, 3, 3, 6, 2], working)
        return [_PARTICIPANT_TYPES[k] for k in kind.tolist()]

    def render_participants(self, ids: I64) -> Rendered:
        p = self.people(ids)
        exists = self.insured(p)
        ids, p = ids[exists], _take(p, exists)
        key = self._k["participants"]
        types = self.participant_types(p)
        state_paid = np.array([t in ("child_under_6", "student", "poor_household", "pensioner") for t in types],
                              dtype=bool)
        status = np.where(state_paid, 0, choose_np(_CONTRIBUTION_CUM, unit_np(key, ids, 4)))
        status = np.where(p.deceased, 2, status)
        province = GEOGRAPHY.commune_province[p.commune]
        facility = 1 + np.floor(_FACILITIES * unit_np(key, ids, 5)).astype(np.int64)
        updated = _stamp(key, ids, 6, np.maximum(p.dob, p.dod) + 1)
        columns: list[Column] = [
            self.social_codes(p),
            self.cccd(p),
            p.names(),
            types,
            [f"{a:02d}{b:03d}" for a, b in zip(province.tolist(), facility.tolist(), strict=True)],
            [_CONTRIBUTION[s] for s in status.tolist()],
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(PARTICIPANT_FIELDS, columns))

    def coverage_facts(self, ids: I64, p: Citizens) -> tuple[np.ndarray, I64, I64, list[str]]:
        """(exists, valid_from, valid_to (0 = open), status) of candidate coverage rows of citizens `p`."""
        key = self._k["coverage"]
        kind = ids % _PERIOD_KINDS
        types = self.participant_types(p)
        employee = np.array([t == "employee" for t in types], dtype=bool)
        old_enough = p.dob < date(2022, 1, 1).toordinal()
        exists = self.insured(p) & ((kind == 0) | (((kind == 1) | (kind == 2)) & employee)
                                    | ((kind == 3) & old_enough & (unit_np(key, ids, 0) < 0.2)))
        end_ord = np.where(p.deceased, p.dod, cal.DAY0_ORD - 30)
        current_from = _between(key, ids, 1, np.maximum(p.dob, date(2024, 1, 1).toordinal()), end_ord)
        job_from = _between(key, p.index, 2, np.maximum(cal.add_years_np(p.dob, 18), date(2015, 1, 1).toordinal()),
                            end_ord)
        lapsed_until = np.full(len(ids), date(2022, 12, 31).toordinal())
        lapsed_from = _between(key, ids, 3, np.maximum(p.dob, cal.HISTORY_FROM_ORD), lapsed_until)
        valid_from = np.select([kind == 0, kind == 3], [current_from, lapsed_from], job_from)
        valid_from = np.minimum(valid_from, end_ord)
        kept = self.still_active(ids, p)
        ended = p.deceased & ~kept
        valid_to = np.where(kind == 3, lapsed_from + 364, np.where(ended, p.dod, 0))
        status = ["lapsed" if k == 3 else "ended" if d else "active"
                  for k, d in zip(kind.tolist(), ended.tolist(), strict=True)]
        return exists, valid_from, valid_to, status

    def still_active(self, ids: I64, p: Citizens) -> np.ndarray:
        """Coverage rows of the dead left active: the deceased_with_active_coverage anomaly of day 0."""
        return p.deceased & (ids % _PERIOD_KINDS == 0) & (unit_np(self._k["anomaly"], ids, 3)
                                                          < self._rate("deceased_with_active_coverage"))

    def anomalous(self, entity: str, ids: I64) -> np.ndarray | None:
        """Which existing day-0 rows carry a cross-registry anomaly, for entities that can; None otherwise."""
        kinds = anomalies.DAY0_KINDS.get(entity, ())
        if not any(self._rate(kind) > 0 for kind in kinds):
            return None
        if entity == "business.enterprises":
            return unit_np(self._k["anomaly"], ids, 0) < self._rate("legal_rep_unknown")
        if entity == "insurance.coverage_periods":
            return self.still_active(ids, self.people(ids // _PERIOD_KINDS))
        if entity == "civil_status.births":
            p = self.people(ids // 2)
            return self.birth_exists(ids, p) & (self.birth_dates(ids, p)[2] | (ids % 2 == 1))
        if entity == "civil_status.marriages":
            exists, p, partner = self.couples(ids)
            hit = np.zeros(len(ids), dtype=bool)
            hit[exists] = self.marriage_dates(ids[exists], p, partner)[0]
            return hit
        if entity == "population.households":
            _, size = self.household_slots(ids)
            return self.odd_heads(ids, size)[0]
        return self.membership_ends(ids, self.people(ids))[0]

    def _rate(self, kind: str) -> float:
        return self.anomaly_rates.get(kind, 0.0)

    def odd_heads(self, households: I64, size: I64) -> tuple[np.ndarray, np.ndarray]:
        """(anomalous, two heads) of households: the `household_without_one_head` anomaly of day 0."""
        return anomalies.odd_heads(self._k["anomaly"], households, size, self._rate("household_without_one_head"))

    def relations(self, p: Citizens) -> I64:
        """Relation codes of citizens' day-0 memberships: their role, unless their household names no one head."""
        hit, two = self.odd_heads(p.household, p.size)
        return anomalies.relations(p.role, p.slot, hit, two, HEAD, RELATION_NAMES.index("other"))

    def membership_ends(self, ids: I64, p: Citizens) -> tuple[np.ndarray, I64]:
        """(anomalous, left_on, 0 = open) of day-0 memberships: the dead leave on their day of death, except where
        `member_after_death` keeps them longer."""
        return anomalies.left_on(self._k["anomaly"], ids, p.deceased, p.dod, self._rate("member_after_death"))

    def render_coverage(self, ids: I64) -> Rendered:
        p = self.people(ids // _PERIOD_KINDS)
        exists, valid_from, valid_to, status = self.coverage_facts(ids, p)
        ids, p = ids[exists], _take(p, exists)
        valid_from, valid_to = valid_from[exists], valid_to[exists]
        status = [s for s, e in zip(status, exists.tolist(), strict=True) if e]
        key = self._k["coverage"]
        updated = _stamp(key, ids, 4, np.maximum(np.maximum(valid_from, valid_to), p.dod) + 1)
        kind = ids % _PERIOD_KINDS
        columns: list[Column] = [
            [f"CV{i:012d}" for i in ids.tolist()],
            self.social_codes(p),
            ["social" if k == 1 else "unemployment" if k == 2 else "health" for k in kind.tolist()],
            cal.iso_dates(valid_from),
            cal.optional_dates(valid_to),
            status,
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(COVERAGE_FIELDS, columns))

    # --- civil status -------------------------------------------------------------------------------------------

    def render_births(self, ids: I64) -> Rendered:
        """Row 2i: citizen i's own birth registration; row 2i+1, its twin unknown to the population registry."""
        citizen = ids // 2
        p = self.people(citizen)
        exists = self.birth_exists(ids, p)
        ids, p = ids[exists], _take(p, exists)
        registered, dob, _ = self.birth_dates(ids, p)
        updated = _stamp(self._k["births"], ids, 1, registered)
        child, cccds = self.registered_children(ids, p)
        columns: list[Column] = [
            [f"KS{i:012d}" for i in ids.tolist()],
            cccds,
            child.names(),
            ["M" if s == MALE else "F" for s in child.sex.tolist()],
            cal.iso_dates(dob),
            self.commune_codes(p.commune),
            self.cccd_of(p.father_index),
            self.cccd_of(p.mother_index),
            cal.iso_dates(registered),
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(BIRTH_FIELDS, columns))

    def birth_exists(self, ids: I64, p: Citizens) -> np.ndarray:
        """Which candidate birth rows of children `p` exist: row 2i, a child born in the digitised era whose mother
        lives with it; row 2i+1, that child's twin unknown to the population registry (`birth_without_citizen`)."""
        twin = anomalies.unregistered_twins(self._k["anomaly"], ids, self._rate("birth_without_citizen"))
        return ((ids % 2 == 0) | twin) & (p.dob >= DIGITISED_BIRTHS_FROM) & (p.mother_index >= 0)

    def birth_dates(self, ids: I64, p: Citizens) -> tuple[I64, I64, np.ndarray]:
        """(registered_on, date_of_birth as registered, contradicted) of existing birth rows of children `p`; twins
        are registered with their sibling."""
        own = ids - ids % 2
        registered = np.minimum(p.dob + np.floor(61 * unit_np(self._k["births"], own, 0)).astype(np.int64),
                                cal.DAY0_ORD)
        hit, dob = anomalies.birth_dates(self._k["anomaly"], ids, p.dob, registered,
                                         self._rate("cccd_contradicts_birth_record"))
        hit &= ids % 2 == 0
        return registered, np.where(hit, dob, p.dob), hit

    def registered_children(self, ids: I64, p: Citizens) -> tuple[Citizens, list[str]]:
        """The children existing birth rows name, and their CCCDs: child i itself, or on row 2i+1 its twin, with a
        sex and given name of its own and an identity number from the range no citizen has."""
        twin = ids % 2 == 1
        cccds = self.cccd(p)
        if not twin.any():
            return p, cccds
        sex, given = anomalies.twin_names(self._k["anomaly"], ids, p.sex, (len(GIVEN[MALE]), len(GIVEN[FEMALE])))
        child = replace(p, sex=np.where(twin, sex, p.sex), given=np.where(twin, given, p.given))
        lo, hi = FABRICATED_BASE_RANKS
        prefixes = prefix_ids(child.birth_province[twin], child.dob[twin], child.sex[twin])
        numbers = self.index.numbers(prefixes, lo + (ids[twin] // 2) % (hi - lo))
        for pos, number in zip(np.flatnonzero(twin).tolist(), numbers.tolist(), strict=True):
            cccds[pos] = f"{number:012d}"
        return child, cccds

    def couples(self, households: I64) -> tuple[np.ndarray, Citizens, Citizens]:
        """(holds a married couple, head, partner) of candidate household numbers: the marriage rows that exist."""
        first, size = self.household_slots(households)
        exists = size > 0
        heads = self.people(first[exists])
        couple = np.zeros(len(households), dtype=bool)
        couple[exists] = heads.kind == COUPLE
        p = _take(heads, heads.kind == COUPLE)
        return couple, p, self.people(p.index + 1)

    def marriage_dates(self, households: I64, p: Citizens, partner: Citizens) -> tuple[np.ndarray, I64, I64, I64]:
        """(under age, registered_on, husband's and wife's date of birth as registered) of couples' marriages."""
        head_male = p.sex == MALE
        husband_dob = np.where(head_male, p.dob, partner.dob)
        wife_dob = np.where(head_male, partner.dob, p.dob)
        return anomalies.marriage_dates(self._k["anomaly"], households, husband_dob, wife_dob, p.married_on,
                                        self._rate("marriage_under_legal_age"))

    def render_marriages(self, ids: I64) -> Rendered:
        couple, p, partner = self.couples(ids)
        households = ids[couple]
        head_male = p.sex == MALE
        head_cccd, partner_cccd = self.cccd(p), self.cccd(partner)
        _, registered, husband_dob, wife_dob = self.marriage_dates(households, p, partner)
        updated = _stamp(self._k["marriages"], households, 0, np.maximum(p.married_on, registered) + 1)
        males = head_male.tolist()
        columns: list[Column] = [
            [f"KH{h:012d}" for h in households.tolist()],
            [a if m else b for a, b, m in zip(head_cccd, partner_cccd, males, strict=True)],
            [b if m else a for a, b, m in zip(head_cccd, partner_cccd, males, strict=True)],
            cal.iso_dates(husband_dob),
            cal.iso_dates(wife_dob),
            cal.iso_dates(registered),
            self.commune_codes(p.commune),
            cal.timestamps(updated),
        ]
        return Rendered(households, records(MARRIAGE_FIELDS, columns))

    def render_deaths(self, ids: I64) -> Rendered:
        p = self.people(ids)
        ids, p = ids[p.deceased], _take(p, p.deceased)
        key = self._k["deaths"]
        registered = np.minimum(p.dod + np.floor(16 * unit_np(key, ids, 0)).astype(np.int64), cal.DAY0_ORD)
        updated = _stamp(key, ids, 1, registered)
        columns: list[Column] = [
            [f"KT{i:012d}" for i in ids.tolist()],
            self.cccd(p),
            cal.iso_dates(p.dod),
            self.commune_codes(p.commune),
            cal.iso_dates(registered),
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(DEATH_FIELDS, columns))

    # --- business -----------------------------------------------------------------------------------------------

    def enterprise_codes(self, enterprises: I64) -> list[str]:
        return tax_codes(feistel_np(self._k["enterprise.code"], enterprises, 1000))

    def enterprise_facts(self, ids: I64) -> EnterpriseFacts:
        """Day-0 facts of enterprises `ids` (all below `self.enterprises`)."""
        key = self._k["enterprises"]
        candidate = np.floor(unit_np(key, ids, 0) * max(self.citizens, 1)).astype(np.int64)
        rep = self.people(self.people(candidate).head_index)
        earliest = np.maximum(cal.add_years_np(rep.dob, 18), date(2000, 1, 1).toordinal())
        established = _between(key, ids, 1, earliest, np.full(len(ids), cal.DAY0_ORD - 1))
        status = choose_np(_STATUS_CUM, unit_np(key, ids, 2))
        status = np.where(established > cal.DAY0_ORD - 120, 0, status)
        first_change = _between(key, ids, 3, established + 30, np.full(len(ids), cal.DAY0_ORD - 60))
        second_change = _between(key, ids, 4, first_change + 15, np.full(len(ids), cal.DAY0_ORD - 1))
        suspended_first = (status == 2) & (unit_np(key, ids, 5) < 0.5)
        unknown_rep = unit_np(self._k["anomaly"], ids, 0) < self._rate("legal_rep_unknown")
        dissolved_on = np.where(suspended_first, second_change, first_change)
        last_change = np.select([status == 1, status == 2], [first_change, dissolved_on], established)
        return EnterpriseFacts(ids=ids, rep=rep, established=established, status=status,
                               first_change=first_change, second_change=second_change,
                               suspended_first=suspended_first, unknown_rep=unknown_rep, last_change=last_change)

    def fabricated_reps(self, ids: I64) -> list[str]:
        """CCCDs no citizen has: a plausible prefix and a rank from the reserved range, unique per enterprise."""
        key = self._k["anomaly"]
        lo, hi = FABRICATED_BASE_RANKS
        width = hi - lo
        province = np.array([int(p) for p in GEOGRAPHY.provinces])[
            np.floor(unit_np(key, ids, 1) * len(GEOGRAPHY.provinces)).astype(np.int64)]
        year = 1960 + (ids // width) % 40
        sex = np.floor(unit_np(key, ids, 2) * 2).astype(np.int64)
        prefix = province * 1000 + ((year // 100 - 19) * 2 + sex) * 100 + year % 100
        return [f"{v:012d}" for v in self.index.numbers(prefix, lo + ids % width).tolist()]

    def render_enterprises(self, ids: I64) -> Rendered:
        f = self.enterprise_facts(ids)
        key = self._k["enterprises"]
        form = choose_np(LEGAL_FORM_CUM, unit_np(key, ids, 6))
        industry = choose_np(INDUSTRY_CUM, unit_np(key, ids, 7))
        brand = np.floor(len(BRAND_WORDS) * unit_np(key, ids, 8)).astype(np.int64)
        commune = GEOGRAPHY.home_communes[np.floor(len(GEOGRAPHY.home_communes) * unit_np(key, ids, 9))
                                          .astype(np.int64)]
        capital = (np.round(10 ** (8.7 + 2.3 * unit_np(key, ids, 10) ** 2) / 1e7) * 1e7).astype(np.int64)
        updated = _stamp(key, ids, 11, f.last_change + 1)
        reps = self.cccd(f.rep)
        if f.unknown_rep.any():
            fake = iter(self.fabricated_reps(ids[f.unknown_rep]))
            reps = [next(fake) if u else r for r, u in zip(reps, f.unknown_rep.tolist(), strict=True)]
        columns: list[Column] = [
            self.enterprise_codes(ids),
            [enterprise_name(a, b, c) for a, b, c in zip(form.tolist(), industry.tolist(), brand.tolist(),
                                                         strict=True)],
            [LEGAL_FORMS[v] for v in form.tolist()],
            [INDUSTRIES[v][0] for v in industry.tolist()],
            self.commune_codes(commune),
            [str(v) for v in capital.tolist()],
            reps,
            [_STATUS[s] for s in f.status.tolist()],
            cal.iso_dates(f.established),
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(ENTERPRISE_FIELDS, columns))

    def render_branches(self, ids: I64) -> Rendered:
        enterprise, slot = ids // _BRANCH_SLOTS, ids % _BRANCH_SLOTS
        key = self._k["branches"]
        count = choose_np(_BRANCH_CUM, unit_np(key, enterprise, 0))
        exists = slot < count
        ids, enterprise, slot = ids[exists], enterprise[exists], slot[exists]
        if not len(ids):
            return Rendered(ids, [])
        f = self.enterprise_facts(enterprise)
        names = self.render_enterprises(enterprise).records
        commune = GEOGRAPHY.home_communes[np.floor(len(GEOGRAPHY.home_communes) * unit_np(key, ids, 1))
                                          .astype(np.int64)]
        opened = _between(key, ids, 2, f.established, np.full(len(ids), cal.DAY0_ORD - 1))
        updated = _stamp(key, ids, 3, np.maximum(opened, f.last_change) + 1)
        codes = self.enterprise_codes(enterprise)
        columns: list[Column] = [
            [f"{c}{s + 1:03d}" for c, s in zip(codes, slot.tolist(), strict=True)],
            codes,
            [f"Chi nhánh {s + 1} - {r['name']}" for s, r in zip(slot.tolist(), names, strict=True)],
            self.commune_codes(commune),
            [_STATUS[s] for s in f.status.tolist()],
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(BRANCH_FIELDS, columns))

    def render_status_changes(self, ids: I64) -> Rendered:
        enterprise, slot = ids // _STATUS_SLOTS, ids % _STATUS_SLOTS
        f = self.enterprise_facts(enterprise)
        # slot 0: opened (active); slot 1: suspended (a suspended one, or half the dissolved); slot 2: dissolved.
        exists = (slot == 0) | ((slot == 1) & ((f.status == 1) | f.suspended_first)) | ((slot == 2) & (f.status == 2))
        ids, slot = ids[exists], slot[exists]
        f = f.take(exists)
        effective = np.select([slot == 0, slot == 1, f.suspended_first], [f.established, f.first_change,
                                                                           f.second_change], f.first_change)
        status = np.where(slot == 0, 0, np.where(slot == 1, 1, 2))
        key = self._k["status"]
        updated = _stamp(key, ids, 0, effective)
        columns: list[Column] = [
            self.enterprise_codes(f.ids),
            [_STATUS[s] for s in status.tolist()],
            cal.iso_dates(effective),
            [_REASONS[_STATUS[s]] for s in status.tolist()],
            cal.timestamps(updated),
        ]
        return Rendered(ids, records(STATUS_CHANGE_FIELDS, columns))

    # --- streaming ----------------------------------------------------------------------------------------------

    def candidate_chunks(self, entity: str) -> Iterator[I64]:
        """Candidate row ids of `entity`'s day-0 rows, ascending, a chunk at a time."""
        if entity in ("population.households", "civil_status.marriages"):
            blocks_per_chunk = CHUNK // BLOCK
            blocks = -(-self.citizens // BLOCK)
            for lo in range(0, blocks, blocks_per_chunk):
                hi = min(lo + blocks_per_chunk, blocks)
                yield self.model.households_of_blocks(np.arange(lo, hi, dtype=np.int64))[0]
            return
        fan = self.fanout[entity]
        total = self.enterprises if entity.startswith("business.") else self.citizens
        for lo in range(0, total, CHUNK):
            hi = min(lo + CHUNK, total)
            yield np.arange(lo * fan, hi * fan, dtype=np.int64)

    def owner(self, entity: str, ids: I64) -> I64:
        """The citizen (or enterprise) each row belongs to: a household's or marriage's is its head."""
        if entity in ("population.households", "civil_status.marriages"):
            return self.households_of(ids)[1]
        return ids // self.fanout[entity]


@dataclass(frozen=True)
class EnterpriseFacts:
    ids: I64
    rep: Citizens
    established: I64
    status: I64
    """0 active, 1 suspended, 2 dissolved (as of day 0)."""
    first_change: I64
    second_change: I64
    suspended_first: np.ndarray
    unknown_rep: np.ndarray
    last_change: I64

    def take(self, mask: np.ndarray) -> EnterpriseFacts:
        return EnterpriseFacts(ids=self.ids[mask], rep=_take(self.rep, mask), established=self.established[mask],
                               status=self.status[mask], first_change=self.first_change[mask],
                               second_change=self.second_change[mask], suspended_first=self.suspended_first[mask],
                               unknown_rep=self.unknown_rep[mask], last_change=self.last_change[mask])


def enterprise_name(form: int, industry: int, brand: int) -> str:
    return f"{LEGAL_FORM_NAMES[form]} {INDUSTRIES[industry][1]} {BRAND_WORDS[brand]}"


def _take(p: Citizens, mask: np.ndarray) -> Citizens:
    return Citizens(**{name: getattr(p, name)[mask] for name in p.__dataclass_fields__})


CITIZEN_FIELDS = ("cccd", "full_name", "date_of_birth", "sex", "ethnicity", "birth_province_code",
                  "hometown_province_code", "permanent_commune_code", "temporary_commune_code", "household_id",
                  "status", "date_of_death", "updated_at")
HOUSEHOLD_FIELDS = ("household_id", "head_cccd", "commune_code", "address_line", "member_count", "updated_at")
MEMBER_FIELDS = ("household_id", "cccd", "relation_to_head", "joined_on", "left_on", "updated_at")
RESIDENCE_FIELDS = ("change_id", "cccd", "kind", "from_commune_code", "to_commune_code", "effective_on",
                    "registered_at", "updated_at")
PARTICIPANT_FIELDS = ("social_insurance_code", "cccd", "full_name", "participant_type", "registered_hospital_code",
                      "contribution_status", "updated_at")
COVERAGE_FIELDS = ("coverage_id", "social_insurance_code", "coverage_type", "valid_from", "valid_to", "status",
                   "updated_at")
BIRTH_FIELDS = ("registration_id", "child_cccd", "child_full_name", "child_sex", "date_of_birth",
                "place_commune_code", "father_cccd", "mother_cccd", "registered_on", "updated_at")
MARRIAGE_FIELDS = ("registration_id", "husband_cccd", "wife_cccd", "husband_date_of_birth", "wife_date_of_birth",
                   "registered_on", "place_commune_code", "updated_at")
DEATH_FIELDS = ("registration_id", "cccd", "date_of_death", "place_commune_code", "registered_on", "updated_at")
ENTERPRISE_FIELDS = ("enterprise_code", "name", "legal_form", "industry_code", "commune_code", "registered_capital",
                     "legal_rep_cccd", "status", "established_on", "updated_at")
BRANCH_FIELDS = ("branch_code", "enterprise_code", "name", "commune_code", "status", "updated_at")
STATUS_CHANGE_FIELDS = ("enterprise_code", "status", "effective_on", "reason", "updated_at")
FIELDS: dict[str, tuple[str, ...]] = {
    "population.citizens": CITIZEN_FIELDS, "population.households": HOUSEHOLD_FIELDS,
    "population.household_members": MEMBER_FIELDS, "population.residence_changes": RESIDENCE_FIELDS,
    "insurance.participants": PARTICIPANT_FIELDS, "insurance.coverage_periods": COVERAGE_FIELDS,
    "civil_status.births": BIRTH_FIELDS, "civil_status.marriages": MARRIAGE_FIELDS,
    "civil_status.deaths": DEATH_FIELDS, "business.enterprises": ENTERPRISE_FIELDS,
    "business.branches": BRANCH_FIELDS, "business.enterprise_status_changes": STATUS_CHANGE_FIELDS,
}
"""Wire field order of each entity; `test_registries` checks it equals the contract's `field_names`."""

