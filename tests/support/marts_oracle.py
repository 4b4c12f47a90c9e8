"""Independent re-computation of the shared datasets in docs/datasets.md: the oracle the dbt marts are tested against.

Plain Python over the records the simulator serves (wire-form dicts of text), typed and merged by key as the loader
would, then modelled by reading docs/datasets.md literally. It reads the reference CSVs through
`kho.sources.reference` and keys and field types from the entity contracts, and nothing of kho's SQL or dbt models,
so that a mistake on one side is not copied into the other. Where the contract is ambiguous, the docstring of the
function concerned says which reading was chosen.

Every dataset function takes `(records, as_of)`; `records` is either the served records (`RawRecords`) or a
`Warehouse` already loaded from them (cheaper when several datasets are computed; `compute_all` does that).
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache, cached_property
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from kho.sources import ENTITIES
from kho.sources import reference as ref
from kho.sources.contract import Entity, Field

RawRecords = Mapping[str, Sequence[Mapping[str, str | None]]]
"""Served records per entity, keyed by qualified name ('population.citizens'), as `World.snapshot` returns them;
a missing entity counts as empty."""
Row = dict[str, Any]

LOCAL_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
PRE_2025, ERA_2025 = "pre_2025", "2025"
TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")
QUALITY_RANK = {"conflicting": 0, "normalised": 1, "exact": 2}
"""Worst first: the order `name_match_quality` takes the minimum in."""
NAMED_ROLES = frozenset({"participant", "child"})
REGISTRY_NAMES = ("business", "civil_status", "insurance", "population")

CITIZENS, HOUSEHOLDS, MEMBERS = "population.citizens", "population.households", "population.household_members"
PARTICIPANTS, COVERAGE = "insurance.participants", "insurance.coverage_periods"
BIRTHS, DEATHS, MARRIAGES = "civil_status.births", "civil_status.deaths", "civil_status.marriages"
ENTERPRISES, BRANCHES = "business.enterprises", "business.branches"
_ENTITIES: dict[str, Entity] = {e.qualified_name: e for e in ENTITIES}

UNIT_COLUMNS = (
    "commune_era", "commune_code_pre_2025", "commune_name_pre_2025", "district_name_pre_2025",
    "province_code_pre_2025", "commune_code_2025", "commune_name_2025", "province_code_2025", "commune_is_split",
)
COLUMNS: dict[str, tuple[str, ...]] = {
    "golden_citizens": (
        "cccd", "full_name", "date_of_birth", "sex", "ethnicity", "birth_province_code", "hometown_province_code",
        "is_alive", "date_of_death", "death_source", "permanent_commune_code", *UNIT_COLUMNS, "household_id",
        "relation_to_head", "has_active_health_cover", "known_to_registries", "name_match_quality", "updated_at",
    ),
    "households": ("household_id", "head_cccd", "member_count", "commune_code", *UNIT_COLUMNS, "address_line",
                   "current_living_members", "current_heads", "updated_at"),
    "citizens_per_commune": ("permanent_commune_code", "commune_name", "district_name", "province_code",
                             "province_code_2025", "citizens_total", "citizens_alive", "citizens_male",
                             "citizens_female"),
    "vital_events_by_commune_month": ("event_month", "event_type", "place_commune_code", *UNIT_COLUMNS, "events"),
    "insurance_coverage_by_commune": ("as_of_date", "permanent_commune_code", *UNIT_COLUMNS, "living_population",
                                      "insured", "coverage_rate"),
    "insurance_coverage_by_province": ("as_of_date", "province_code_2025", "province_name_2025",
                                       "living_population", "insured", "coverage_rate"),
    "enterprises": ("enterprise_code", "name", "legal_form", "industry_code", "commune_code", *UNIT_COLUMNS,
                    "registered_capital", "status", "established_on", "legal_rep_cccd", "legal_rep_known",
                    "legal_rep_full_name", "legal_rep_is_alive", "active_branches", "updated_at"),
    "active_enterprises_by_industry_province": ("province_code_2025", "province_name_2025", "industry_code",
                                                "active_enterprises", "residents", "enterprises_per_1000_residents"),
    "citizen_identity": ("cccd", "registry", "entity", "record_key", "role", "match_quality"),
}
"""Every dataset's columns, in the order docs/datasets.md lists them."""
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "golden_citizens": ("cccd",),
    "households": ("household_id",),
    "citizens_per_commune": ("permanent_commune_code",),
    "vital_events_by_commune_month": ("event_month", "event_type", "place_commune_code", "commune_era"),
    "insurance_coverage_by_commune": ("as_of_date", "permanent_commune_code", "commune_era"),
    "insurance_coverage_by_province": ("as_of_date", "province_code_2025"),
    "enterprises": ("enterprise_code",),
    "active_enterprises_by_industry_province": ("province_code_2025", "industry_code"),
    "citizen_identity": ("cccd", "registry", "entity", "record_key", "role"),
}


def primary_key(dataset: str) -> tuple[str, ...]:
    """The primary-key columns of a dataset (a mart, or `citizen_identity`)."""
    if dataset not in PRIMARY_KEYS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(PRIMARY_KEYS)}")
    return PRIMARY_KEYS[dataset]


def by_primary_key(dataset: str, rows: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """`{pk: row}` for comparing two computations of a dataset; a repeated key is an error, not a silent overwrite."""
    columns = primary_key(dataset)
    keyed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        pk = tuple(row[c] for c in columns)
        if pk in keyed:
            raise ValueError(f"{dataset}: primary key {dict(zip(columns, pk, strict=True))} appears twice")
        keyed[pk] = dict(row)
    return keyed


# --- loading: what the raw schema holds -------------------------------------------------------------------------

@dataclass(frozen=True)
class Warehouse:
    """Per entity, the latest typed version of each key: what the raw tables hold after loading the records."""

    tables: Mapping[str, tuple[Row, ...]]

    def rows(self, qualified_name: str) -> tuple[Row, ...]:
        return self.tables.get(qualified_name, ())


def load(records: RawRecords) -> Warehouse:
    """Type every record by its contract and keep, per key, the greatest `updated_at` (the later record on a tie).

    Text is trimmed (blank becomes null) and NFC-normalised where the contract says so, as the loader stores it.
    Records are assumed to pass the contract: the oracle does not re-implement quarantine, so feed it worlds
    without defects (the simulator's default).
    """
    unknown = sorted(set(records) - set(_ENTITIES))
    if unknown:
        raise KeyError(f"unknown entities {unknown}; known: {', '.join(_ENTITIES)}")
    return Warehouse({name: _latest(entity, records.get(name, ())) for name, entity in _ENTITIES.items()})


def _latest(entity: Entity, records: Iterable[Mapping[str, str | None]]) -> tuple[Row, ...]:
    latest: dict[tuple[Any, ...], Row] = {}
    for record in records:
        row = {f.name: _typed(f, record.get(f.name)) for f in entity.fields}
        key = tuple(row[k] for k in entity.key)
        held = latest.get(key)
        if held is None or row["updated_at"] >= held["updated_at"]:
            latest[key] = row
    return tuple(latest.values())


def _timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "date": date.fromisoformat,
    "timestamptz": _timestamp,
    "integer": int,
    "numeric": Decimal,
    "boolean": lambda text: text.lower() in ("true", "1", "t", "yes"),
}


def _typed(field: Field, value: str | None) -> Any:
    text = value.strip() if value is not None else ""
    if not text:
        return None
    if field.type in _CONVERTERS:
        return _CONVERTERS[field.type](text)
    return unicodedata.normalize("NFC", text) if field.normalise_nfc else text


def _warehouse(records: RawRecords | Warehouse) -> Warehouse:
    return records if isinstance(records, Warehouse) else load(records)


# --- small rules ------------------------------------------------------------------------------------------------

def local_date(moment: datetime) -> date:
    """The Asia/Ho_Chi_Minh calendar date of an instant: the date a state record's `updated_at` stands for."""
    return moment.astimezone(LOCAL_ZONE).date()


def completed_years(born: date, on: date) -> int:
    """Age in completed years as law counts it: someone born on 29 February comes of age on 1 March."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def round_half_away(numerator: int, denominator: int, places: int) -> Decimal:
    """numerator / denominator rounded to `places` decimals, ties away from zero (PostgreSQL's round(numeric))."""
    negative = (numerator < 0) != (denominator < 0)
    quotient, remainder = divmod(abs(numerator) * 10**places, abs(denominator))
    if 2 * remainder >= abs(denominator):
        quotient += 1
    return Decimal(-quotient if negative else quotient).scaleb(-places)


def _rate(numerator: int, denominator: int, places: int) -> Decimal | None:
    return round_half_away(numerator, denominator, places) if denominator else None


_D = str.maketrans({"đ": "d", "Đ": "d", "Ð": "d", "ð": "d"})


def normalise_name(name: str | None) -> str | None:
    """The `normalise_name` match key: NFD; lower case; đ/Đ/Ð → d; each word's tone mark moved to its end; white
    space collapsed and trimmed; NFC. Vowel marks stay, so Hương ≠ Hướng and Đặng ≠ Dang.

    Ambiguity: lower-casing first turns Ð (U+00D0) into ð (U+00F0), which the doc's list does not name; ð is mapped
    to d too, so Ð becomes d whatever the order. White space is Python's (`str.split()`, Unicode-aware). A word
    with several tone marks (not valid Vietnamese) keeps them all, in order, at its end.
    """
    if name is None:
        return None
    text = unicodedata.normalize("NFD", name).lower().translate(_D)
    words = ("".join(c for c in w if c not in TONE_MARKS) + "".join(c for c in w if c in TONE_MARKS)
             for w in text.split())
    return unicodedata.normalize("NFC", " ".join(words))


def match_quality(population: Mapping[str, Any] | None, *, name: str | None = None,
                  date_of_birth: date | None = None, sex: str | None = None) -> str:
    """The quality of one link: unmatched (no population record), conflicting, normalised or exact.

    A given date of birth or sex that differs makes the link conflicting whatever the name says. Names compare as
    stored, i.e. after the loader's trim and NFC, so a name sent in NFD is `exact`, not `normalised`.
    """
    if population is None:
        return "unmatched"
    if (date_of_birth is not None and date_of_birth != population["date_of_birth"]) or (
            sex is not None and sex != population["sex"]):
        return "conflicting"
    if name is None or name == population["full_name"]:
        return "exact"
    return "normalised" if normalise_name(name) == normalise_name(population["full_name"]) else "conflicting"


# --- administrative units ---------------------------------------------------------------------------------------

@cache
def _codes(era: str) -> frozenset[str]:
    return ref.commune_codes() if era == PRE_2025 else ref.commune_codes_2025()


def commune_era(code: str | None, on: date) -> str | None:
    """The era a commune code is read in: that of `on` if the code exists in it, else the other one, else None."""
    first, other = (PRE_2025, ERA_2025) if on < ref.REORGANISATION_DATE else (ERA_2025, PRE_2025)
    return next((era for era in (first, other) if code in _codes(era)), None)


def commune_units(code: str | None, on: date) -> Row:
    """The nine unit columns of a commune code on a record dated `on`."""
    return units_in_era(code, commune_era(code, on))


def province_2025_of_code(code: str | None) -> str | None:
    """The 2025 province a commune code lies in whatever its era: read as a pre-2025 code if it is one, else as a
    2025 code; None for a code of neither era. (The reference never puts a reused code in two 2025 provinces, so the
    preference only matters for a hypothetical code that would.)"""
    era = PRE_2025 if code in _codes(PRE_2025) else ERA_2025 if code in _codes(ERA_2025) else None
    return units_in_era(code, era)["province_code_2025"]


def units_in_era(code: str | None, era: str | None) -> Row:
    """The nine unit columns of a code read in `era` (era `unknown` and the rest null for era None).

    Ambiguity: `commune_is_split` is false for a code read as 2025 (it is not a pre-2025 code that was split),
    null only for a code of neither era. A pre-2025 code has a 2025 commune only when it has exactly one successor
    with share `whole`; it is split when it has several distinct successors.
    """
    if era is None or code is None:
        return {**dict.fromkeys(UNIT_COLUMNS), "commune_era": "unknown"}
    return dict(zip(UNIT_COLUMNS, _units_pre_2025(code) if era == PRE_2025 else _units_2025(code), strict=True))


@cache
def _units_pre_2025(code: str) -> tuple[Any, ...]:
    old = ref.communes()[code]
    successors = {s.new_commune_code: s for s in ref.commune_mapping_2025().get(code, ())}
    whole = [s for s in successors.values() if s.share == "whole"] if len(successors) == 1 else []
    new = whole[0] if whole else None
    return (PRE_2025, code, old["commune_name"], old["district_name"], old["province_code"],
            new and new.new_commune_code, new and new.new_commune_name,
            ref.province_mapping_2025()[old["province_code"]], len(successors) > 1)


@cache
def _units_2025(code: str) -> tuple[Any, ...]:
    parts = [s for ss in ref.commune_mapping_2025().values() for s in ss if s.new_commune_code == code]
    olds = sorted({s.old_commune_code for s in parts})
    only = ref.communes().get(olds[0]) if len(olds) == 1 else None
    old_provinces = {ref.communes()[o]["province_code"] for o in olds if o in ref.communes()}
    return (ERA_2025, only and olds[0], only and only["commune_name"], only and only["district_name"],
            next(iter(old_provinces)) if len(old_provinces) == 1 else None,
            code, parts[0].new_commune_name, parts[0].new_province_code, False)


# --- links between registries -----------------------------------------------------------------------------------

class LinkSpec(NamedTuple):
    """Where another registry mentions a CCCD, and which identity fields it gives with it."""

    entity: str
    role: str
    cccd: str
    name: str | None = None
    date_of_birth: str | None = None
    sex: str | None = None


LINKS: tuple[LinkSpec, ...] = (
    LinkSpec(PARTICIPANTS, "participant", "cccd", name="full_name"),
    LinkSpec(BIRTHS, "child", "child_cccd", name="child_full_name", date_of_birth="date_of_birth", sex="child_sex"),
    LinkSpec(BIRTHS, "mother", "mother_cccd"),
    LinkSpec(BIRTHS, "father", "father_cccd"),
    LinkSpec(DEATHS, "deceased", "cccd"),
    LinkSpec(MARRIAGES, "husband", "husband_cccd", date_of_birth="husband_date_of_birth"),
    LinkSpec(MARRIAGES, "wife", "wife_cccd", date_of_birth="wife_date_of_birth"),
    LinkSpec(ENTERPRISES, "legal_representative", "legal_rep_cccd"),
)


def _given(record: Row, field: str | None) -> Any:
    return record[field] if field is not None else None


def _links(wh: Warehouse, spec: LinkSpec, population: Mapping[str, Row]) -> Iterator[Row]:
    entity = _ENTITIES[spec.entity]
    for record in wh.rows(spec.entity):
        cccd = record[spec.cccd]
        if cccd is None:
            continue
        yield {
            "cccd": cccd, "registry": entity.registry, "entity": entity.name,
            "record_key": "|".join(str(record[k]) for k in entity.key), "role": spec.role,
            "match_quality": match_quality(population.get(cccd), name=_given(record, spec.name),
                                           date_of_birth=_given(record, spec.date_of_birth),
                                           sex=_given(record, spec.sex)),
        }


# --- the model --------------------------------------------------------------------------------------------------

def _sorted(dataset: str, rows: Iterable[Row]) -> list[Row]:
    columns = PRIMARY_KEYS[dataset]
    return sorted(rows, key=lambda r: tuple("" if r[c] is None else r[c] for c in columns))


class _Model:
    """The intermediate models of one warehouse on one as-of date, each computed once."""

    def __init__(self, wh: Warehouse, as_of: date) -> None:
        self.wh = wh
        self.as_of = as_of

    @cached_property
    def population(self) -> dict[str, Row]:
        return {c["cccd"]: c for c in self.wh.rows(CITIZENS)}

    @cached_property
    def deaths(self) -> dict[str, Row]:
        deaths: dict[str, Row] = {}
        for d in sorted(self.wh.rows(DEATHS), key=lambda r: (r["date_of_death"], r["registration_id"])):
            deaths.setdefault(d["cccd"], {"cccd": d["cccd"], "date_of_death": d["date_of_death"],
                                          "death_registration_id": d["registration_id"],
                                          "death_source": "civil_status"})
        for c in self.wh.rows(CITIZENS):
            if c["cccd"] not in deaths and c["status"] == "deceased" and c["date_of_death"] is not None:
                deaths[c["cccd"]] = {"cccd": c["cccd"], "date_of_death": c["date_of_death"],
                                     "death_registration_id": None, "death_source": "population"}
        return deaths

    def alive(self, cccd: str) -> bool:
        death = self.deaths.get(cccd)
        return death is None or death["date_of_death"] > self.as_of

    @cached_property
    def current_memberships(self) -> dict[str, Row]:
        best: dict[str, Row] = {}
        for m in self.wh.rows(MEMBERS):
            held = best.get(m["cccd"])
            if m["left_on"] is None and (held is None or (m["joined_on"], m["household_id"]) > (
                    held["joined_on"], held["household_id"])):
                best[m["cccd"]] = m
        return best

    @cached_property
    def health_covered(self) -> frozenset[str]:
        cccd_of = {p["social_insurance_code"]: p["cccd"] for p in self.wh.rows(PARTICIPANTS)}
        return frozenset(
            cccd_of[cp["social_insurance_code"]] for cp in self.wh.rows(COVERAGE)
            if cp["social_insurance_code"] in cccd_of and cp["coverage_type"] == "health"
            and cp["status"] == "active" and cp["valid_from"] <= self.as_of
            and (cp["valid_to"] is None or cp["valid_to"] >= self.as_of)
        )

    @cached_property
    def identity(self) -> list[Row]:
        return [row for spec in LINKS for row in _links(self.wh, spec, self.population)]

    @cached_property
    def registries_and_quality(self) -> tuple[dict[str, set[str]], dict[str, str]]:
        known: dict[str, set[str]] = defaultdict(set)
        worst: dict[str, str] = {}
        for link in self.identity:
            known[link["cccd"]].add(link["registry"])
            quality, cccd = link["match_quality"], link["cccd"]
            if link["role"] in NAMED_ROLES and quality in QUALITY_RANK and (
                    cccd not in worst or QUALITY_RANK[quality] < QUALITY_RANK[worst[cccd]]):
                worst[cccd] = quality
        return known, worst

    @cached_property
    def golden(self) -> list[Row]:
        return [self._golden_row(c) for c in self.wh.rows(CITIZENS)]

    def _golden_row(self, c: Row) -> Row:
        known, worst = self.registries_and_quality
        death = self.deaths.get(c["cccd"]) or {}
        membership = self.current_memberships.get(c["cccd"]) or {}
        return {
            **{k: c[k] for k in ("cccd", "full_name", "date_of_birth", "sex", "ethnicity", "birth_province_code",
                                 "hometown_province_code")},
            "is_alive": self.alive(c["cccd"]),
            "date_of_death": death.get("date_of_death"), "death_source": death.get("death_source"),
            "permanent_commune_code": c["permanent_commune_code"],
            **commune_units(c["permanent_commune_code"], local_date(c["updated_at"])),
            "household_id": membership.get("household_id"), "relation_to_head": membership.get("relation_to_head"),
            "has_active_health_cover": c["cccd"] in self.health_covered,
            "known_to_registries": sorted(known[c["cccd"]] | {"population"}),
            "name_match_quality": worst.get(c["cccd"]),
            "updated_at": c["updated_at"],
        }

    @cached_property
    def golden_by_cccd(self) -> dict[str, Row]:
        return {g["cccd"]: g for g in self.golden}

    def households(self) -> list[Row]:
        living: Counter[str] = Counter()
        heads: Counter[str] = Counter()
        for m in self.wh.rows(MEMBERS):
            if m["left_on"] is None and self.alive(m["cccd"]):
                living[m["household_id"]] += 1
                heads[m["household_id"]] += m["relation_to_head"] == "head"
        return _sorted("households", ({
            **{k: h[k] for k in ("household_id", "head_cccd", "member_count", "commune_code")},
            **commune_units(h["commune_code"], local_date(h["updated_at"])),
            "address_line": h["address_line"],
            "current_living_members": living[h["household_id"]], "current_heads": heads[h["household_id"]],
            "updated_at": h["updated_at"],
        } for h in self.wh.rows(HOUSEHOLDS)))

    def citizens_per_commune(self) -> list[Row]:
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for g in self.golden:
            tally = counts[g["permanent_commune_code"]]
            tally.update(total=1, alive=g["is_alive"], male=g["sex"] == "M", female=g["sex"] == "F")
        rows = []
        for code, tally in counts.items():
            old = ref.communes().get(code, {})
            rows.append({"permanent_commune_code": code, "commune_name": old.get("commune_name"),
                         "district_name": old.get("district_name"), "province_code": old.get("province_code"),
                         "province_code_2025": province_2025_of_code(code), "citizens_total": tally["total"],
                         "citizens_alive": tally["alive"], "citizens_male": tally["male"],
                         "citizens_female": tally["female"]})
        return _sorted("citizens_per_commune", rows)

    def vital_events(self) -> list[Row]:
        counts: Counter[tuple[date, str, str, str | None]] = Counter()
        for entity, kind, dated_by in ((BIRTHS, "birth", "date_of_birth"), (DEATHS, "death", "date_of_death"),
                                       (MARRIAGES, "marriage", "registered_on")):
            for r in self.wh.rows(entity):
                code = r["place_commune_code"]
                counts[(r[dated_by].replace(day=1), kind, code, commune_era(code, r["registered_on"]))] += 1
        return _sorted("vital_events_by_commune_month", (
            {"event_month": month, "event_type": kind, "place_commune_code": code, **units_in_era(code, era),
             "events": n}
            for (month, kind, code, era), n in counts.items()))

    def coverage_by_commune(self) -> list[Row]:
        groups: dict[tuple[str, str | None], Counter[str]] = defaultdict(Counter)
        for g in self.golden:
            if g["is_alive"]:
                groups[(g["permanent_commune_code"], g["commune_era"])].update(
                    living=1, insured=g["has_active_health_cover"])
        return _sorted("insurance_coverage_by_commune", (
            {"as_of_date": self.as_of, "permanent_commune_code": code, **units_in_era(code, era),
             "living_population": n["living"], "insured": n["insured"],
             "coverage_rate": _rate(n["insured"], n["living"], 4)}
            for (code, era), n in groups.items()))

    def coverage_by_province(self, every_province: bool) -> list[Row]:
        groups: dict[str, Counter[str]] = defaultdict(Counter)
        for row in self.coverage_by_commune():
            groups[row["province_code_2025"]].update(living=row["living_population"], insured=row["insured"])
        codes = set(groups) | (set(ref.provinces_2025()) if every_province else set())
        return _sorted("insurance_coverage_by_province", (
            {"as_of_date": self.as_of, "province_code_2025": code, "province_name_2025": _province_name(code),
             "living_population": groups[code]["living"], "insured": groups[code]["insured"],
             "coverage_rate": _rate(groups[code]["insured"], groups[code]["living"], 4)}
            for code in codes))

    @cached_property
    def enterprises(self) -> list[Row]:
        branches = Counter(b["enterprise_code"] for b in self.wh.rows(BRANCHES) if b["status"] == "active")
        return _sorted("enterprises", (
            self._enterprise_row(e, branches[e["enterprise_code"]]) for e in self.wh.rows(ENTERPRISES)))

    def _enterprise_row(self, e: Row, active_branches: int) -> Row:
        rep = self.golden_by_cccd.get(e["legal_rep_cccd"]) if e["legal_rep_cccd"] is not None else None
        return {
            **{k: e[k] for k in ("enterprise_code", "name", "legal_form", "industry_code", "commune_code")},
            **commune_units(e["commune_code"], local_date(e["updated_at"])),
            **{k: e[k] for k in ("registered_capital", "status", "established_on", "legal_rep_cccd")},
            "legal_rep_known": rep is not None,
            "legal_rep_full_name": rep["full_name"] if rep else None,
            "legal_rep_is_alive": rep["is_alive"] if rep else None,
            "active_branches": active_branches,
            "updated_at": e["updated_at"],
        }

    def active_enterprises(self) -> list[Row]:
        active = Counter((e["province_code_2025"], e["industry_code"]) for e in self.enterprises
                         if e["status"] == "active" and e["province_code_2025"] is not None)
        residents = Counter(g["province_code_2025"] for g in self.golden if g["is_alive"])
        return _sorted("active_enterprises_by_industry_province", (
            {"province_code_2025": province, "province_name_2025": _province_name(province),
             "industry_code": industry, "active_enterprises": n, "residents": residents[province],
             "enterprises_per_1000_residents": _rate(n * 1000, residents[province], 2)}
            for (province, industry), n in active.items()))


def _province_name(code: str | None) -> str | None:
    unit = ref.provinces_2025().get(code) if code is not None else None
    return unit.name if unit is not None else None


# --- the datasets -----------------------------------------------------------------------------------------------

def citizen_deaths(records: RawRecords | Warehouse) -> dict[str, Row]:
    """`int_citizen_deaths` by CCCD: {cccd, date_of_death, death_registration_id, death_source}.

    Ambiguities: every CCCD with a civil-status death registration is included, whether or not the population
    registry knows it (it matters for household members unknown to the population registry); all registrations
    count whatever their `registered_on` relative to `as_of`. A population record `deceased` without a date cannot
    be loaded (the contract rejects it) and is skipped.
    """
    return _Model(_warehouse(records), date.max).deaths


def household_members_current(records: RawRecords | Warehouse) -> dict[str, Row]:
    """`int_household_members_current` by CCCD: the membership row with `left_on` null, latest `joined_on`, then
    largest `household_id`."""
    return _Model(_warehouse(records), date.max).current_memberships


def citizen_identity(records: RawRecords | Warehouse, as_of: date | None = None) -> list[Row]:
    """`int_citizen_identity`: one row per CCCD mentioned by a link of another registry (`LINKS`), with its quality.

    `as_of` is accepted for a uniform signature and unused. `record_key` joins the linked record's key fields with
    '|' (every linked entity has a one-field key, so it is that key). A null CCCD (a birth without father) is no
    link. Names and dates compare with the values as loaded (trimmed, NFC).
    """
    return _sorted("citizen_identity", _Model(_warehouse(records), as_of or date.max).identity)


def golden_citizens(records: RawRecords | Warehouse, as_of: date) -> list[Row]:
    """mart_population.golden_citizens: one row per CCCD of the population registry.

    Readings: `date_of_death`/`death_source` come from `int_citizen_deaths` unfiltered, so a death after `as_of`
    shows its date while `is_alive` is still true. `household_id`/`relation_to_head` come from the current
    membership, null without one (not from the citizen record's own `household_id`). `has_active_health_cover`
    considers every participant record carrying the CCCD. `name_match_quality` is the worst whole-link quality
    (a child link with a different date of birth is `conflicting` even if the name is equal) over the links with
    role participant or child. The era of `permanent_commune_code` is by the Asia/Ho_Chi_Minh date of `updated_at`.
    """
    return _sorted("golden_citizens", _Model(_warehouse(records), as_of).golden)


def households(records: RawRecords | Warehouse, as_of: date) -> list[Row]:
    """mart_population.households: one row per household record.

    Readings: living members count membership rows (not `int_household_members_current`) with `left_on` null whose
    CCCD has no death on or before `as_of`; a CCCD unknown to the population registry counts as alive unless a
    civil-status death says otherwise. A citizen with two open memberships counts in both households.
    """
    return _Model(_warehouse(records), as_of).households()


def citizens_per_commune(records: RawRecords | Warehouse, as_of: date) -> list[Row]:
    """mart_population.citizens_per_commune: one row per permanent commune code held by a citizen (no zero rows);
    names and the pre-2025 province from communes.csv whatever the code's era (null for a 2025-only code); the 2025
    province by `province_2025_of_code`."""
    return _Model(_warehouse(records), as_of).citizens_per_commune()


def vital_events_by_commune_month(records: RawRecords | Warehouse, as_of: date | None = None) -> list[Row]:
    """mart_civil_status.vital_events_by_commune_month; `as_of` is accepted for a uniform signature and unused
    (every loaded registration counts, whatever its date)."""
    return _Model(_warehouse(records), as_of or date.max).vital_events()


def insurance_coverage_by_commune(records: RawRecords | Warehouse, as_of: date) -> list[Row]:
    """mart_health.insurance_coverage_by_commune: one row per (permanent commune code, era of the citizen's
    `updated_at`) with at least one living citizen, so `living_population` is never 0 here."""
    return _Model(_warehouse(records), as_of).coverage_by_commune()


def insurance_coverage_by_province(records: RawRecords | Warehouse, as_of: date, *,
                                   every_province: bool = False) -> list[Row]:
    """mart_health.insurance_coverage_by_province: the commune rows summed by `province_code_2025`.

    Ambiguity: "(34 units)" is read as naming the 2025 units, not as promising 34 rows: by default only provinces
    with at least one living citizen have a row. `every_province=True` gives all 34 (zeros, null rate) instead.
    """
    return _Model(_warehouse(records), as_of).coverage_by_province(every_province)


def enterprises(records: RawRecords | Warehouse, as_of: date) -> list[Row]:
    """mart_business.enterprises: one row per enterprise record.

    Readings: `legal_rep_known` is false and `legal_rep_full_name`/`legal_rep_is_alive` null when the CCCD is not
    a golden citizen; `legal_rep_is_alive` is the golden `is_alive` on `as_of`. `active_branches` counts branch
    records with that `enterprise_code` and status active (0 without any), whatever the branch's commune.
    """
    return _Model(_warehouse(records), as_of).enterprises


def active_enterprises_by_industry_province(records: RawRecords | Warehouse, as_of: date) -> list[Row]:
    """mart_business.active_enterprises_by_industry_province.

    Readings: an enterprise's 2025 province is its commune units' `province_code_2025` (era by `updated_at`); a
    resident's is the golden citizen's `province_code_2025`. `enterprises_per_1000_residents` is rounded half away
    from zero, null when `residents` is 0.
    """
    return _Model(_warehouse(records), as_of).active_enterprises()


DATASETS: dict[str, Callable[[RawRecords | Warehouse, date], list[Row]]] = {
    "golden_citizens": golden_citizens,
    "households": households,
    "citizens_per_commune": citizens_per_commune,
    "vital_events_by_commune_month": vital_events_by_commune_month,
    "insurance_coverage_by_commune": insurance_coverage_by_commune,
    "insurance_coverage_by_province": insurance_coverage_by_province,
    "enterprises": enterprises,
    "active_enterprises_by_industry_province": active_enterprises_by_industry_province,
    "citizen_identity": citizen_identity,
}
"""Every dataset the oracle computes, by name (the names of PRIMARY_KEYS and COLUMNS)."""


def compute_all(records: RawRecords | Warehouse, as_of: date) -> dict[str, list[Row]]:
    """Every dataset at once, loading the records and computing the intermediate models only once."""
    model = _Model(_warehouse(records), as_of)
    return {
        "golden_citizens": _sorted("golden_citizens", model.golden),
        "households": model.households(),
        "citizens_per_commune": model.citizens_per_commune(),
        "vital_events_by_commune_month": model.vital_events(),
        "insurance_coverage_by_commune": model.coverage_by_commune(),
        "insurance_coverage_by_province": model.coverage_by_province(every_province=False),
        "enterprises": model.enterprises,
        "active_enterprises_by_industry_province": model.active_enterprises(),
        "citizen_identity": _sorted("citizen_identity", model.identity),
    }
