"""The world's statistics measured against published figures, read only from the records the registries serve.

`measure(spec)` reads what an outside reviewer of the exports would: the day-0 snapshot of each entity and the change
feeds of days 1..D (`generate.stream_snapshot`, `stream_changes`), never the model's arrays, so a measure cannot
agree with the model for the model's own reasons. Each `Measure` states its target (from `demography`, or 0 for
what must never happen), its tolerance, the source of the target and the value found.

Tolerances: a share measured on n people cannot be closer to its target than sampling allows, so a share's
tolerance is the larger of a stated margin and three standard errors (`_share_tolerance`); counts of what must never
happen have tolerance 0. A value that cannot be computed (no record carries it) is None and fails.
"""

from __future__ import annotations

import itertools
import math
import statistics as stats
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache, cached_property
from typing import Literal

from kho.simulator import demography as demo
from kho.simulator import names
from kho.simulator.generate import WorldSpec, stream_changes, stream_snapshot
from kho.simulator.spec import Record, simulated_entities
from kho.sources.contract import Entity
from kho.sources.reference import (
    REORGANISATION_DATE,
    commune_codes,
    commune_codes_2025,
    commune_mapping_2025,
    communes,
)

Rule = Literal["near", "at_least", "at_most"]
DAY0 = date(2025, 6, 30)
YEAR_BEFORE = date(2024, 7, 1)
"""First day of the 12 months before day 0, the window of the crude rates."""
HOME = "74"
"""Bình Dương's old province code; from 2025-07-01 its communes are Ho Chi Minh City's (79)."""
HOME_NEW = "79"
MEKONG = ("80", "82", "83", "84", "86", "87", "89", "91", "92", "93", "94", "95", "96")
NORTH_CENTRAL = ("38", "40", "42", "44", "45", "46")
SIGNATURE_GROUPS = {"74": "Kinh", "94": "Khmer", "84": "Khmer", "91": "Khmer", "89": "Khmer", "38": "Mường",
                    "40": "Thái", "79": "Hoa"}
"""Per birth province, the group whose share tells whether ethnicity follows birthplace."""
GENERATION = {"parent": -1, "head": 0, "spouse": 0, "sibling": 0, "child": 1, "grandchild": 2}
SOCIAL_INSURANCE_LAW = "Law 41/2024/QH15 art. 11(2)"
"""The Law on Social Insurance 2024 (in force 2025-07-01), article 11 clause 2: a Vietnamese citizen's social
insurance code is their personal identification number (a foreign employee's is issued by the insurer). Quoted from
the published text as we remember it; verify the clause number against the gazette before citing it elsewhere."""
_C2019 = "GSO 2019 Census"
_PCS2024 = "GSO PCS 2024"
_PYRAMID = "demography (ESTIMATE on BD figures)"


@dataclass(frozen=True)
class Measure:
    """One statistic of the world against its target: ok when the value is within tolerance by `rule`."""

    name: str
    target: float
    tolerance: float
    source: str
    value: float | None
    ok: bool
    rule: Rule = "near"
    unit: str = ""
    detail: str = ""
    """What the value was computed over (e.g. "12 of 546 births"), for the reader of the table."""


def judge(name: str, target: float, tolerance: float, source: str, value: float | None, *, rule: Rule = "near",
          unit: str = "", detail: str = "") -> Measure:
    """A Measure with `ok` decided: near |value - target| <= tolerance, at_least value >= target - tolerance,
    at_most value <= target + tolerance; a missing value fails."""
    if value is None or math.isnan(value):
        ok = False
    elif rule == "near":
        ok = abs(value - target) <= tolerance + 1e-9
    elif rule == "at_least":
        ok = value >= target - tolerance - 1e-9
    else:
        ok = value <= target + tolerance + 1e-9
    return Measure(name, target, tolerance, source, value, ok, rule, unit, detail)


def _share_tolerance(margin: float, share: float, n: int) -> float:
    """Percent points: the stated margin, or three standard errors of a share measured on n when that is larger."""
    if n <= 0:
        return margin
    p = min(max(share / 100, 0.0), 1.0)
    return max(margin, 300 * math.sqrt(p * (1 - p) / n))


def _pct(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def _day(text: object) -> date | None:
    """A served date, or None when absent or unreadable (a defect a reviewer would skip, not a crash)."""
    if not isinstance(text, str):
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _group(age: int, groups: tuple[tuple[int, int], ...]) -> int | None:
    for i, (lo, hi) in enumerate(groups):
        if lo <= age <= hi:
            return i
    return None


# --- the records ------------------------------------------------------------------------------------------------


class Exports:
    """The world as exported: each entity's day-0 records and the feeds of days 1..D, read once, lazily.

    `Exports.of(spec)` reads a simulated world's streams; `Exports.from_records` takes records made by hand (the
    unit tests of each measure), the same path the measures read.
    """

    def __init__(self, snapshot: Callable[[str], Iterable[Record]], changes: Callable[[str, int], Iterable[Record]],
                 days: int) -> None:
        self._snapshot = snapshot
        self._changes = changes
        self.days = days
        self._entities: dict[str, Entity] = {s.entity.name: s.entity for s in simulated_entities()}
        self._day0: dict[str, dict[tuple[object, ...], Record]] = {}
        self._feeds: dict[str, list[tuple[int, Record]]] = {}

    @classmethod
    def of(cls, spec: WorldSpec) -> Exports:
        """The served records of world `spec`: its day-0 snapshot and the feeds of days 1..spec.days."""
        return cls(lambda name: stream_snapshot(spec, name, 0), lambda name, day: stream_changes(spec, name, day),
                   spec.days)

    @classmethod
    def from_records(cls, day0: Mapping[str, list[Record]],
                     feeds: Mapping[int, Mapping[str, list[Record]]] | None = None) -> Exports:
        """Records given by hand: day-0 records per entity name, and per day 1..D the feed records per entity."""
        by_day = feeds or {}
        return cls(lambda name: day0.get(name, []), lambda name, day: by_day.get(day, {}).get(name, []),
                   max(by_day, default=0))

    def has(self, name: str) -> bool:
        return name in self._entities

    def entities(self) -> Mapping[str, Entity]:
        """The simulated entities by name."""
        return self._entities

    def entity(self, name: str) -> Entity:
        return self._entities[name]

    def _key(self, name: str, record: Record) -> tuple[object, ...]:
        return tuple(record.get(k) for k in self._entities[name].key)

    def day0(self, name: str) -> dict[tuple[object, ...], Record]:
        """Day-0 records by key (a duplicated record counted once)."""
        if name not in self._day0:
            self._day0[name] = {self._key(name, r): r for r in self._snapshot(name)} if self.has(name) else {}
        return self._day0[name]

    def feeds(self, name: str) -> list[tuple[int, Record]]:
        """(day, record) of every record the feeds of days 1..D carry, in feed order."""
        if name not in self._feeds:
            days = range(1, self.days + 1) if self.has(name) else range(0)
            self._feeds[name] = [(d, r) for d in days for r in self._changes(name, d)]
        return self._feeds[name]

    def latest(self, name: str) -> dict[tuple[object, ...], Record]:
        """Every record as last served: day 0 overlaid with the feeds, day by day."""
        merged = dict(self.day0(name))
        for _, record in self.feeds(name):
            merged[self._key(name, record)] = record
        return merged

    def new_keys(self, name: str) -> set[tuple[object, ...]]:
        """Keys first seen in a feed: records created after day 0."""
        known = self.day0(name)
        return {self._key(name, r) for _, r in self.feeds(name)} - set(known)

    @cached_property
    def citizens(self) -> dict[str, Record]:
        """Every citizen ever served, by CCCD, as last served."""
        return {str(k[0]): r for k, r in self.latest("citizens").items()}

    @cached_property
    def alive0(self) -> list[Record]:
        """Citizens alive at the end of day 0."""
        return [r for r in self.day0("citizens").values() if r.get("status") == "alive"]

    @cached_property
    def births(self) -> list[Record]:
        return list(self.latest("births").values())

    @cached_property
    def marriages(self) -> list[Record]:
        return list(self.latest("marriages").values())

    @cached_property
    def arrivals(self) -> dict[str, date]:
        """Migrants' arrival in Bình Dương (effective_on), from residence_changes, by CCCD: their first permanent
        move from another province, or their first temporary registration there (a migrant who keeps a permanent
        residence at home lives here from then); a move between Bình Dương's communes is no arrival."""
        first: dict[str, date] = {}
        for r in self.latest("residence_changes").values():
            when = _day(r.get("effective_on"))
            cccd = str(r.get("cccd"))
            source = r.get("from_commune_code")
            arrival = r.get("kind") == "temporary" or (source is not None and not in_home(source))
            if when and arrival and in_home(r.get("to_commune_code")) and (cccd not in first or when < first[cccd]):
                first[cccd] = when
        return first


# --- reference: where a commune code lies ------------------------------------------------------------------------


@cache
def _home_codes() -> frozenset[str]:
    """Old and new codes of former Bình Dương's communes."""
    old = frozenset(c for c, row in communes().items() if row["province_code"] == HOME)
    return old | frozenset(s.new_commune_code for c in old for s in commune_mapping_2025().get(c, ()))


@cache
def _provinces_by_code() -> Mapping[str, frozenset[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for code, row in communes().items():
        found[code].add(row["province_code"])
    for parts in commune_mapping_2025().values():
        for part in parts:
            found[part.new_commune_code].add(part.new_province_code)
    return {code: frozenset(provinces) for code, provinces in found.items()}


def in_home(code: object) -> bool:
    """Whether a commune code (old or new) lies in former Bình Dương."""
    return isinstance(code, str) and code in _home_codes()


def provinces_of_commune(code: object) -> frozenset[str]:
    """The provinces a commune code may name: its old province (old code) and its new one (new code)."""
    return _provinces_by_code().get(code, frozenset()) if isinstance(code, str) else frozenset()


# --- the measures ---------------------------------------------------------------------------------------------------


def pyramid(ex: Exports) -> list[Measure]:
    """Share of living residents per 5-year group and sex, their total variation distance, the sex ratio at 15-29."""
    counts = Counter[tuple[int, str]]()
    for r in ex.alive0:
        born = _day(r.get("date_of_birth"))
        g = _group(_age(born, DAY0), demo.AGE_GROUPS) if born else None
        if g is not None:
            counts[g, str(r.get("sex"))] += 1
    total = sum(counts.values())
    out = []
    distance = 0.0
    for sex, targets in (("M", demo.PYRAMID_MALE), ("F", demo.PYRAMID_FEMALE)):
        for g, (lo, hi) in enumerate(demo.AGE_GROUPS):
            value = _pct(counts[g, sex], total)
            target = targets[g]
            distance += abs((value or 0) - target) / 2
            span = f"{lo}+" if hi >= 99 else f"{lo}-{hi}"
            out.append(judge(f"pyramid {sex} {span}", target, max(0.25, 0.15 * target), _PYRAMID,
                             value, unit="%"))
    out.append(judge("pyramid: total variation distance", 0.0, 5.0, "demography.PYRAMID_*", distance, unit="pts"))
    young = range(3, 6)
    men, women = sum(counts[g, "M"] for g in young), sum(counts[g, "F"] for g in young)
    target = sum(demo.PYRAMID_MALE[g] for g in young) / sum(demo.PYRAMID_FEMALE[g] for g in young)
    out.append(judge("sex ratio at 15-29 (men per woman)", round(target, 3), 0.05, "demography.PYRAMID_*",
                     men / women if women else None, detail=f"{men} men, {women} women"))
    return out


def _sex_ratio(boys: int, girls: int, name: str, source: str) -> Measure:
    ratio = boys / girls if girls else None
    spread = 3 * ratio * math.sqrt(1 / boys + 1 / girls) if ratio and boys else 0.0
    return judge(name, demo.SEX_RATIO_AT_BIRTH, max(0.03, spread), source, ratio, detail=f"{boys} boys, {girls} girls")


def vital_rates(ex: Exports) -> list[Measure]:
    """Sex ratio at birth (children 0-4 at day 0; births of the feeds), crude birth and death rates of the year
    before day 0, and whether births hold steady over the last five years."""
    out = []
    young = Counter[str]()
    born_in_year = 0
    by_year = Counter[int]()
    for r in ex.day0("citizens").values():
        born = _day(r.get("date_of_birth"))
        if born is None:
            continue
        if _age(born, DAY0) <= 4:
            young[str(r.get("sex"))] += 1
        if YEAR_BEFORE <= born <= DAY0:
            born_in_year += 1
        by_year[born.year] += 1
    out.append(_sex_ratio(young["M"], young["F"], "sex ratio at birth (aged 0-4 at day 0)", f"{_C2019}: 111.5/100"))
    feed_sex = Counter(str(r.get("child_sex")) for r in ex.births
                       if (_day(r.get("date_of_birth")) or DAY0) > DAY0)
    out.append(_sex_ratio(feed_sex["M"], feed_sex["F"], "sex ratio at birth (births of the feeds)",
                          f"{_C2019}: 111.5/100"))
    population = len(ex.alive0)
    cbr = 1000 * born_in_year / population if population else None
    out.append(judge("crude birth rate (born in the 12 months to day 0)", demo.CRUDE_BIRTH_RATE,
                     max(1.5, 3000 * math.sqrt(born_in_year) / population if population else 0),
                     "Bình Dương 11.5 (2015); demography", cbr, unit="‰",
                     detail=f"{born_in_year} of {population}"))
    deaths = sum(1 for r in ex.day0("deaths").values()
                 if YEAR_BEFORE <= (_day(r.get("date_of_death")) or DAY0.replace(year=1900)) <= DAY0)
    cdr = 1000 * deaths / (population + deaths / 2) if population else None
    out.append(judge("crude death rate (deaths in the 12 months to day 0)", demo.CRUDE_DEATH_RATE,
                     max(1.0, 3000 * math.sqrt(deaths) / population if population else 0),
                     "life table on the pyramid (demography)", cdr, unit="‰", detail=f"{deaths} deaths"))
    first, last = by_year[2020], by_year[2024]
    out.append(judge("births 2024 / births 2020 (citizens by birth year)", 0.9, 0.25,
                     "CBR 16.3 (2019) -> 13.5 (2024), GSO; ESTIMATE", last / first if first else None,
                     detail=f"{first} -> {last}"))
    return out


def _deliveries(births: Iterable[Record]) -> dict[str, list[date]]:
    """Children's dates of birth per mother (CCCD), sorted."""
    per_mother: dict[str, list[date]] = defaultdict(list)
    for r in births:
        born = _day(r.get("date_of_birth"))
        mother = r.get("mother_cccd")
        if born and isinstance(mother, str):
            per_mother[mother].append(born)
    return {m: sorted(d) for m, d in per_mother.items()}


def fertility(ex: Exports) -> list[Measure]:
    """Mother's age at the births of the five years to the end of the feeds (against the ASFR-implied shares),
    siblings under 270 days apart who are not twins, the twin share and the median birth interval."""
    out = []
    recent_from = date(2020, 7, 1)
    ages = Counter[int | None]()
    for r in ex.births:
        born = _day(r.get("date_of_birth"))
        mother = ex.citizens.get(str(r.get("mother_cccd")))
        mother_born = _day(mother.get("date_of_birth")) if mother else None
        if born and born >= recent_from and mother_born:
            ages[_group(_age(mother_born, born), demo.ASFR_GROUPS)] += 1
    total = sum(ages.values())
    distance = 0.0
    for g, ((lo, hi), share) in enumerate(zip(demo.ASFR_GROUPS, demo.mother_age_shares(), strict=True)):
        value = _pct(ages[g], total)
        distance += abs((value or 0) - 100 * share) / 2
        out.append(judge(f"mother's age {lo}-{hi} at birth", round(100 * share, 2),
                         _share_tolerance(2.5, 100 * share, total), "ASFR x women on the pyramid (demography)", value,
                         unit="%"))
    distance += (_pct(ages[None], total) or 0) / 2
    out.append(judge("mother's age: total variation distance", 0.0, 6.0, "demography.ASFR", distance, unit="pts",
                     detail=f"{total} births since {recent_from}"))
    out.append(judge("mothers under 15 or over 49 at birth", 0.0, 0.5, "ASFR groups 15-49",
                     _pct(ages[None], total), unit="%"))

    short = deliveries = multiple = 0
    gaps: list[int] = []
    for days in _deliveries(ex.births).values():
        distinct = sorted(set(days))
        deliveries += len(distinct)
        multiple += sum(1 for d in distinct if days.count(d) > 1)
        for a, b in itertools.pairwise(distinct):
            gap = (b - a).days
            if gap <= 1:  # twins born either side of midnight
                continue
            gaps.append(gap)
            short += gap < demo.MIN_BIRTH_INTERVAL_DAYS
    out.append(judge("siblings born under 270 days apart, not twins", 0, 0, "gestation (~38 weeks)", short,
                     unit="pairs", detail=f"{len(gaps)} intervals"))
    twin = _pct(multiple, deliveries)
    out.append(judge("twin deliveries", 100 * demo.TWIN_SHARE, _share_tolerance(0.4, 100 * demo.TWIN_SHARE, deliveries),
                     "Smits & Monden 2011 (DHS); ESTIMATE", twin, unit="%", detail=f"{deliveries} deliveries"))
    median = stats.median(gaps) / 30.4375 if gaps else None
    out.append(judge("median birth interval", demo.BIRTH_INTERVAL_MEDIAN_MONTHS, 12, "VN DHS 2002; ESTIMATE", median,
                     unit="months"))
    return out


def _name_target(n: int) -> tuple[float, float, str]:
    """(target %, tolerance, source) for exact full-name collisions among n people: the real name list's
    (`names.full_name_collision_target`)."""
    return (names.full_name_collision_target(n), 100 * names.FULL_NAME_COLLISION_TOLERANCE,
            "UIT-ViNames real list, extended to N (kho.simulator.names)")


def naming(ex: Exports) -> list[Measure]:
    """Exact full-name collisions among living citizens, and surname shares (Huỳnh with Hoàng, Võ with Vũ)."""
    people = ex.alive0
    full = Counter(str(r.get("full_name")) for r in people)
    shared = sum(c for c in full.values() if c > 1)
    target, tolerance, source = _name_target(len(people))
    out = [judge("citizens sharing their exact full name", target, tolerance, source, _pct(shared, len(people)),
                 unit="%", detail=f"{shared} of {len(people)}")]
    merged = {"Hoàng": "Hoàng/Huỳnh", "Huỳnh": "Hoàng/Huỳnh", "Vũ": "Vũ/Võ", "Võ": "Vũ/Võ"}
    surnames = Counter(merged.get(s, s) for s in (str(r.get("full_name")).split(" ")[0] for r in people))
    n = len(people)
    listed = 0
    for surname, share in list(demo.SURNAME_SHARES.items())[:7]:
        listed += surnames[surname]
        out.append(judge(f"surname {surname}", 100 * share, _share_tolerance(2.0, 100 * share, n),
                         "Lê Trung Hoa 2005 (Wikipedia)", _pct(surnames[surname], n), unit="%"))
    other = n - sum(surnames[s] for s in demo.SURNAME_SHARES)
    out.append(judge("surnames outside the 14 commonest", 100 * demo.SURNAME_OTHER,
                     _share_tolerance(3.0, 100 * demo.SURNAME_OTHER, n), "Lê Trung Hoa 2005 (Wikipedia)",
                     _pct(other, n), unit="%"))
    return out


def households(ex: Exports) -> list[Measure]:
    """Household sizes (open memberships of day-0 households) and the share with three or more generations."""
    members: dict[str, list[str]] = defaultdict(list)
    for r in ex.day0("household_members").values():
        if r.get("left_on") is None:
            members[str(r.get("household_id"))].append(str(r.get("relation_to_head")))
    homes = [members.get(str(k[0]), []) for k in ex.day0("households")]
    homes = [m for m in homes if m]
    n = len(homes)
    sizes = Counter(min(len(m), 7) for m in homes)
    out = []
    for size, share in enumerate(demo.HOUSEHOLD_SIZE_SHARES, start=1):
        label = f"{size}+" if size == 7 else str(size)
        out.append(judge(f"households of {label} members", 100 * share, _share_tolerance(2.5, 100 * share, n),
                         "demography.HOUSEHOLD_SIZE_SHARES (ESTIMATE)", _pct(sizes[size], n), unit="%"))
    mean_target = sum(s * share for s, share in zip((1, 2, 3, 4, 5, 6, 7.5), demo.HOUSEHOLD_SIZE_SHARES, strict=True))
    out.append(judge("mean household size", round(mean_target, 2), 0.3, "Bình Dương ~3.0 (C2019)",
                     sum(len(m) for m in homes) / n if n else None, detail=f"{n} households"))
    three = sum(1 for m in homes if len({GENERATION[r] for r in m if r in GENERATION}) >= 3)
    out.append(judge("households of three or more generations", 100 * demo.THREE_GENERATION_SHARE,
                     _share_tolerance(4.0, 100 * demo.THREE_GENERATION_SHARE, n), "demography (ESTIMATE)",
                     _pct(three, n), unit="%"))
    return out


def migration(ex: Exports) -> list[Measure]:
    """Share born in another province, the main origins' shares among them, and ethnicity by birth province."""
    people = ex.alive0
    n = len(people)
    born = Counter(str(r.get("birth_province_code")) for r in people)
    migrants = n - born[HOME]
    out = [judge("residents born in another province", 100 * demo.MIGRANT_SHARE,
                 _share_tolerance(3.0, 100 * demo.MIGRANT_SHARE, n), "GSO 2019 migration (217‰ in 5 years); ESTIMATE",
                 _pct(migrants, n), unit="%")]
    top = sorted(demo.MIGRANT_ORIGINS.items(), key=lambda kv: -kv[1])[:6]
    for code, share in top:
        out.append(judge(f"migrants born in province {code}", 100 * share, _share_tolerance(1.5, 100 * share, migrants),
                         "demography.MIGRANT_ORIGINS (ESTIMATE)", _pct(born[code], migrants), unit="%"))
    for label, codes in (("the Mekong delta", MEKONG), ("the North Central coast", NORTH_CENTRAL)):
        share = sum(demo.MIGRANT_ORIGINS.get(c, 0.0) for c in codes)
        out.append(judge(f"migrants born in {label}", 100 * share, _share_tolerance(4.0, 100 * share, migrants),
                         "demography.MIGRANT_ORIGINS (ESTIMATE)", _pct(sum(born[c] for c in codes), migrants),
                         unit="%"))
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    families: dict[str, Counter[str]] = defaultdict(Counter)
    for r in people:
        groups[str(r.get("birth_province_code"))][str(r.get("ethnicity"))] += 1
        families[str(r.get("birth_province_code"))][str(r.get("household_id") or r.get("cccd"))] += 1
    for code, group in SIGNATURE_GROUPS.items():
        share = demo.ethnicity_shares(code).get(group, 0.0)
        count = sum(groups[code].values())
        value = _pct(groups[code][group], count) if count >= 50 else None
        # A family shares its ethnicity, so its members are one draw, not several: the standard error is that of
        # count / design effect independent people (design effect = mean family size, weighted by people).
        effect = sum(m * m for m in families[code].values()) / count if count else 1.0
        tolerance = _share_tolerance(3.0, 100 * share, round(count / effect))
        out.append(judge(f"{group} among those born in {code}", 100 * share, tolerance,
                         f"{_C2019} ethnic composition", value, unit="%", detail=f"{count} born there"))
    return out


def places(ex: Exports) -> list[Measure]:
    """Events registered where they happened: births and marriages before a family's move to Bình Dương are not
    registered in its communes; a birth's CCCD province is the province of its place of registration."""
    arrivals = ex.arrivals
    before = wrong = 0
    for r in ex.births:
        born = _day(r.get("date_of_birth"))
        arrived = arrivals.get(str(r.get("mother_cccd")))
        mother = ex.citizens.get(str(r.get("mother_cccd")))
        migrant = mother is not None and mother.get("birth_province_code") not in (HOME, HOME_NEW)
        if born and arrived and migrant and born < arrived:
            before += 1
            wrong += in_home(r.get("place_commune_code"))
    out = [judge("births before the mother's move, registered in Bình Dương", 0, 0, "Law on Civil Status 60/2014",
                 wrong, unit="births", detail=f"of {before} births before a move")]
    before = wrong = 0
    for r in ex.marriages:
        on = _day(r.get("registered_on"))
        moved = [arrivals.get(str(r.get(k))) for k in ("husband_cccd", "wife_cccd")]
        natives = [ex.citizens.get(str(r.get(k)), {}).get("birth_province_code") == HOME
                   for k in ("husband_cccd", "wife_cccd")]
        if on and not any(natives) and all(moved) and all(on < m for m in moved if m):
            before += 1
            wrong += in_home(r.get("place_commune_code"))
    out.append(judge("marriages before both partners moved, registered in Bình Dương", 0, 0,
                     "Law on Civil Status 60/2014", wrong, unit="marriages", detail=f"of {before} such marriages"))
    mismatched = 0
    for r in ex.births:
        cccd = r.get("child_cccd")
        provinces = provinces_of_commune(r.get("place_commune_code"))
        if isinstance(cccd, str) and provinces and f"{int(cccd[:3]):02d}" not in provinces:
            mismatched += 1
    out.append(judge("births whose CCCD province is not the place's", 0, 0, "Circular 59/2021/TT-BCA (CCCD digits 1-3)",
                     mismatched, unit="births", detail=f"of {len(ex.births)} births"))
    return out


def _divorce_dates(ex: Exports) -> list[date] | None:
    """Dates of the divorces noted on marriage registrations (`divorced_on`); None without marriages."""
    if not ex.has("marriages"):
        return None
    return [d for r in ex.marriages if (d := _day(r.get("divorced_on")))]


def marriages(ex: Exports) -> list[Measure]:
    """Day-0 registration dates not clamped, remarriages, divorces at the published rate, marital status of 15+."""
    day0 = list(ex.day0("marriages").values())
    dates = Counter(r.get("registered_on") for r in day0)
    peak = dates.most_common(1)[0][1] if dates else 0
    out = [judge("largest share of day-0 marriages on one date", 0.0, 0.2, "no clamping (issue 14)",
                 _pct(peak, len(day0)), unit="%", detail=f"{len(day0)} marriages")]
    weddings: dict[str, list[date]] = defaultdict(list)
    for r in ex.marriages:
        on = _day(r.get("registered_on"))
        for k in ("husband_cccd", "wife_cccd"):
            if on and isinstance(r.get(k), str):
                weddings[str(r.get(k))].append(on)
    again = sum(1 for r in ex.marriages
                if any(min(weddings[str(r.get(k))], default=DAY0) < (_day(r.get("registered_on")) or DAY0)
                       for k in ("husband_cccd", "wife_cccd")))
    out.append(judge("marriages where a partner married before", 100 * demo.REMARRIAGE_SHARE, 6.0,
                     "GSO 2023: 83% first marriages", _pct(again, len(ex.marriages)), unit="%"))
    out += _first_marriage_ages(ex, weddings)
    divorces = _divorce_dates(ex)
    out.append(judge("marriages ended by divorce", 1, 0, "divorces exist (issue 14)",
                     None if divorces is None else len(divorces), rule="at_least", unit="divorces",
                     detail="no divorce field or entity" if divorces is None else ""))
    # The feeds run faster than life, so their divorces are compared with their marriages: the published ratio is
    # about 60,000 divorces a year (courts) to 688,000 marriages (GSO 2023). The registries' day-0 state holds no
    # divorce yet (a gap the day-0 model leaves: docs/registries.md).
    feed_divorces = (len(divorces) if divorces is not None else 0) - sum(1 for r in day0 if r.get("divorced_on"))
    feed_marriages = sum(1 for r in ex.marriages if (_day(r.get("registered_on")) or DAY0) > DAY0)
    target = 100 * demo.DIVORCES_PER_YEAR / demo.MARRIAGES_PER_YEAR
    out.append(judge("divorces per 100 marriages in the feeds", target,
                     _share_tolerance(3.0, target, feed_marriages), "Supreme People's Court ~60,000/yr; GSO 2023 "
                     "688,000 marriages", _pct(feed_divorces, feed_marriages), unit="%",
                     detail=f"{feed_divorces} divorces, {feed_marriages} marriages"))
    out += _marital_status(ex, weddings)
    return out


def _first_marriage_ages(ex: Exports, weddings: Mapping[str, list[date]]) -> list[Measure]:
    """Mean age at first marriage of the marriages registered in the five years to day 0 (a partner's first
    registered marriage), against the singulate mean age at marriage."""
    since = date(2020, 7, 1)
    ages: dict[str, list[float]] = {"husband": [], "wife": []}
    for r in ex.marriages:
        on = _day(r.get("registered_on"))
        if on is None or not since <= on <= DAY0:
            continue
        for party in ages:
            born = _day(r.get(f"{party}_date_of_birth"))
            if born and min(weddings.get(str(r.get(f"{party}_cccd")), [on])) >= on:
                ages[party].append((on - born).days / 365.2425)
    out = []
    targets = {"husband": demo.MEAN_AGE_FIRST_MARRIAGE_MALE, "wife": demo.MEAN_AGE_FIRST_MARRIAGE_FEMALE}
    for party, target in targets.items():
        found = ages[party]
        out.append(judge(f"{party}'s mean age at first marriage (2020-07 to day 0)", target, 1.5,
                         f"{_PCS2024} SMAM", stats.fmean(found) if found else None, unit="years",
                         detail=f"{len(found)} first marriages"))
    return out


def _marital_status(ex: Exports, weddings: Mapping[str, list[date]]) -> list[Measure]:
    """Never-married, married and widowed shares of living residents aged 15+ at day 0, from marriages and deaths."""
    spouse_of: dict[str, tuple[date, str]] = {}
    for r in ex.day0("marriages").values():
        on = _day(r.get("registered_on"))
        h, w = str(r.get("husband_cccd")), str(r.get("wife_cccd"))
        for me, other in ((h, w), (w, h)):
            if on and (me not in spouse_of or spouse_of[me][0] < on):
                spouse_of[me] = (on, other)
    adults = [r for r in ex.alive0 if (b := _day(r.get("date_of_birth"))) and _age(b, DAY0) >= 15]
    n = len(adults)
    never = widowed = 0
    for r in adults:
        latest = spouse_of.get(str(r.get("cccd")))
        if latest is None:
            never += 1
        elif ex.citizens.get(latest[1], {}).get("status") == "deceased":
            widowed += 1
    out = []
    for label, count, key in (("never married", never, "never_married"), ("widowed", widowed, "widowed")):
        share = 100 * demo.MARITAL_STATUS[key]
        out.append(judge(f"{label}, of residents 15+", share, _share_tolerance(4.0 if key == "never_married" else 2.0,
                                                                               share, n),
                         "GSO PCS 2020, Southeast", _pct(count, n), unit="%"))
    return out


def enterprises(ex: Exports) -> list[Measure]:
    """Enterprise names unique (Law on Enterprises 59/2020 art. 41) and legal-form shares."""
    rows = list(ex.latest("enterprises").values())
    titles = Counter(str(r.get("name")) for r in rows)
    repeated = sum(c for c in titles.values() if c > 1)
    out = [judge("enterprises sharing a name", 0, 0, "Law on Enterprises 59/2020/QH14 art. 41", repeated,
                 unit="enterprises", detail=f"of {len(rows)}")]
    forms = Counter(str(r.get("legal_form")) for r in rows)
    for form, share in demo.LEGAL_FORM_SHARES.items():
        margin = 0.5 if share < 0.01 else 3.0
        out.append(judge(f"legal form {form}", 100 * share, _share_tolerance(margin, 100 * share, len(rows)),
                         "Hưng Yên statistical yearbook 2022, table 90", _pct(forms[form], len(rows)),
                         unit="%"))
    return out


def _commune_fields(ex: Exports) -> dict[str, tuple[str, ...]]:
    return {name: fields for name, entity in ex.entities().items()
            if (fields := tuple(f.name for f in entity.fields if f.reference == "commune_codes"))}


def reform(ex: Exports) -> list[Measure]:
    """The 2025-07-01 reorganisation in the feeds of days 1..D: new commune codes only, the new CCCD prefix for
    newborns of former Bình Dương, identification numbers as social insurance codes."""
    abolished = commune_codes() - commune_codes_2025()
    current = commune_codes_2025()
    old_used = new_used = records = 0
    for name, fields in _commune_fields(ex).items():
        for _, r in ex.feeds(name):
            codes = [r.get(f) for f in fields if isinstance(r.get(f), str)]
            records += bool(codes)
            old_used += any(c in abolished for c in codes)
            new_used += bool(codes) and all(c in current for c in codes)
    out = [judge("feed records using an abolished commune code", 0, 0, "NQ 202/2025/QH15, in force 2025-07-01",
                 old_used, unit="records", detail=f"of {records}"),
           judge("feed records using the new commune codes", 1, 0, "NQ 202/2025/QH15", new_used, rule="at_least",
                 unit="records", detail=f"of {records}")]
    newborns = [r for r in ex.births if (_day(r.get("date_of_birth")) or DAY0) >= REORGANISATION_DATE
                and in_home(r.get("place_commune_code"))]
    prefixed = sum(1 for r in newborns if str(r.get("child_cccd")).startswith("079"))
    out.append(judge("newborns of former Bình Dương with CCCD prefix 079", 100, 0, "NQ 202/2025/QH15; Circular 59/2021",
                     _pct(prefixed, len(newborns)), unit="%", detail=f"{prefixed} of {len(newborns)}"))
    new_people = [ex.citizens[str(k[0])] for k in ex.new_keys("citizens") if str(k[0]) in ex.citizens]
    stale = sum(1 for r in new_people if (_day(r.get("date_of_birth")) or DAY0) >= REORGANISATION_DATE
                and r.get("birth_province_code") == HOME)
    out.append(judge("citizens born from 2025-07-01 with birth province 74", 0, 0, "NQ 202/2025/QH15", stale,
                     unit="citizens", detail=f"of {len(new_people)} new citizens"))
    latest = ex.latest("participants")
    joined = [latest[k] for k in ex.new_keys("participants")]
    own = sum(1 for r in joined if r.get("social_insurance_code") == r.get("cccd"))
    out.append(judge("new participants whose code is their CCCD", 100, 0, SOCIAL_INSURANCE_LAW,
                     _pct(own, len(joined)), unit="%", detail=f"{own} of {len(joined)}"))
    return out


def insurance(ex: Exports) -> list[Measure]:
    """Cover never before birth, children's health cover from near birth, no overlapping periods of one kind."""
    participants = {str(k[0]): r for k, r in ex.latest("participants").items()}
    periods: dict[tuple[str, str], list[tuple[date, date | None]]] = defaultdict(list)
    before_birth = 0
    first_health: dict[str, date] = {}
    for r in ex.latest("coverage_periods").values():
        code = str(r.get("social_insurance_code"))
        start = _day(r.get("valid_from"))
        person = participants.get(code)
        cccd = str(person.get("cccd")) if person else None
        citizen = ex.citizens.get(cccd) if cccd else None
        born = _day(citizen.get("date_of_birth")) if citizen else None
        if start is None:
            continue
        periods[code, str(r.get("coverage_type"))].append((start, _day(r.get("valid_to"))))
        if born and start < born:
            before_birth += 1
        if cccd and r.get("coverage_type") == "health" and (cccd not in first_health or start < first_health[cccd]):
            first_health[cccd] = start
    out = [judge("coverage starting before the participant's birth", 0, 0, "cover insures the living", before_birth,
                 unit="periods")]
    children = [(cccd, born) for cccd, r in ex.citizens.items()
                if (born := _day(r.get("date_of_birth"))) and born > date(2019, 6, 30) and cccd in first_health]
    timely = sum(1 for cccd, born in children if 0 <= (first_health[cccd] - born).days <= 60)
    out.append(judge("children's health cover starting within 60 days of birth", 100, 5,
                     "Decree 146/2018; Law 25/2008 amended 2014",
                     _pct(timely, len(children)), unit="%", detail=f"{timely} of {len(children)} under 6"))
    overlapping = sum(overlaps(spans) for spans in periods.values())
    out.append(judge("participants with overlapping periods of one kind", 0, 0, "one card per kind at a time",
                     overlapping, unit="participants"))
    return out


def overlaps(spans: list[tuple[date, date | None]]) -> bool:
    """Whether any two periods share a day (an open end runs forever)."""
    ordered = sorted(spans, key=lambda span: span[0])
    reach = ordered[0][1] if ordered else None
    for start, end in ordered[1:]:
        if reach is None or start <= reach:
            return True
        reach = end if end is None else max(end, reach)
    return False


MEASURES: tuple[Callable[[Exports], list[Measure]], ...] = (
    pyramid, vital_rates, fertility, naming, households, migration, places, marriages, enterprises, reform, insurance,
)


def measure(spec: WorldSpec) -> list[Measure]:
    """Every measure of the world `spec`, computed from its served records only."""
    return measure_exports(Exports.of(spec))


def measure_exports(ex: Exports) -> list[Measure]:
    """Every measure of a set of served records."""
    return [m for family in MEASURES for m in family(ex)]


def timed(spec: WorldSpec) -> tuple[list[Measure], float]:
    """`measure` and the seconds it took (the world's replay included)."""
    started = time.perf_counter()
    found = measure(spec)
    return found, time.perf_counter() - started


# --- the table ------------------------------------------------------------------------------------------------------


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("records", "births", "marriages", "pairs", "enterprises", "citizens", "participants", "periods",
                "divorces"):
        return f"{value:,.0f}"
    text = f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"
    return f"{text} {unit}".rstrip() if unit not in ("%", "‰") else f"{text}{unit}"


def _target(m: Measure) -> str:
    sign = {"near": "", "at_least": "≥ ", "at_most": "≤ "}[m.rule]
    return f"{sign}{_number(m.target, m.unit)}"


def format_table(measures: Iterable[Measure]) -> str:
    """A markdown table: measure, target, tolerance, source, kho (value, and what it was computed over), ok."""
    lines = ["| measure | target | tolerance | source | kho | ok |", "|---|---|---|---|---|---|"]
    for m in measures:
        tolerance = "0" if m.tolerance == 0 else f"±{m.tolerance:.2f}"
        kho = _number(m.value, m.unit) + (f" ({m.detail})" if m.detail else "")
        lines.append(f"| {m.name} | {_target(m)} | {tolerance} | {m.source} | {kho} | {'ok' if m.ok else 'FAIL'} |")
    return "\n".join(lines)


def summary(measures: list[Measure]) -> str:
    failed = [m for m in measures if not m.ok]
    return f"{len(measures) - len(failed)} of {len(measures)} measures within tolerance"


def iter_failures(measures: Iterable[Measure]) -> Iterator[Measure]:
    return (m for m in measures if not m.ok)


__all__ = ["Exports", "Measure", "format_table", "judge", "measure", "summary", "timed"]
