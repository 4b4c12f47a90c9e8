"""The seven rules of `mart_audit.cross_registry_contradictions` (docs/datasets.md), applied to served records.

An independent re-computation for tests: it reads only the records a client receives (wire form: ISO dates,
`updated_at` timestamps), never the simulator's own flags, and returns one finding per record the table names.
When a key is served more than once (duplicates, conflicting updates), the copy with the greatest `updated_at`
counts, the later one on a tie, as a merge by key would keep it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date

Record = Mapping[str, str | None]
Key = tuple[str, ...]
Finding = tuple[str, str, str, Key]
"""(kind, registry, entity, key of the reported record)."""

KEYS: dict[str, tuple[str, ...]] = {
    "population.citizens": ("cccd",),
    "population.households": ("household_id",),
    "population.household_members": ("household_id", "cccd"),
    "insurance.participants": ("social_insurance_code",),
    "insurance.coverage_periods": ("coverage_id",),
    "civil_status.births": ("registration_id",),
    "civil_status.marriages": ("registration_id",),
    "civil_status.deaths": ("registration_id",),
    "business.enterprises": ("enterprise_code",),
}
"""The entities the rules read, with their keys."""
MARRIAGE_AGE = {"husband": 20, "wife": 18}
KINDS = ("deceased_with_active_coverage", "legal_rep_unknown", "birth_without_citizen",
         "cccd_contradicts_birth_record", "marriage_under_legal_age", "household_without_one_head",
         "member_after_death")


def latest(records: Iterable[Record], key: tuple[str, ...]) -> dict[Key, Record]:
    """One record per key: the greatest updated_at, the later one in serving order on a tie."""
    out: dict[Key, Record] = {}
    for record in records:
        k = tuple(str(record.get(f)) for f in key)
        kept = out.get(k)
        if kept is None or str(record.get("updated_at")) >= str(kept.get("updated_at")):
            out[k] = record
    return out


def completed_years(born: str, on: str) -> int:
    """Age in whole years as law counts it (born 29 February: of age on 1 March)."""
    b, o = date.fromisoformat(born), date.fromisoformat(on)
    return o.year - b.year - (1 if (o.month, o.day) < (b.month, b.day) else 0)


def citizen_deaths(citizens: Iterable[Record], deaths: Iterable[Record]) -> dict[str, str | None]:
    """`int_citizen_deaths`: CCCD → date of death, from the earliest death registration, else the population
    registry's date_of_death when its status is deceased."""
    earliest: dict[str, tuple[str, str]] = {}
    for death in deaths:
        cccd, when = str(death["cccd"]), (str(death["date_of_death"]), str(death["registration_id"]))
        if cccd not in earliest or when < earliest[cccd]:
            earliest[cccd] = when
    out: dict[str, str | None] = {cccd: when[0] for cccd, when in earliest.items()}
    for citizen in citizens:
        cccd = str(citizen["cccd"])
        if cccd not in out and citizen.get("status") == "deceased":
            out[cccd] = citizen.get("date_of_death")
    return out


def _after(value: str | None, limit: str | None) -> bool:
    """SQL's `value > limit`: false when either is null."""
    return value is not None and limit is not None and value > limit


def _coverage(tables: Mapping[str, dict[Key, Record]], dead: Mapping[str, str | None]) -> set[Finding]:
    participants = {str(p["social_insurance_code"]): str(p["cccd"])
                    for p in tables["insurance.participants"].values()}
    out = set()
    for key, period in tables["insurance.coverage_periods"].items():
        cccd = participants.get(str(period["social_insurance_code"]))
        if cccd is None or cccd not in dead or period.get("status") != "active":
            continue
        if period.get("valid_to") is None or _after(period.get("valid_to"), dead[cccd]):
            out.add(("deceased_with_active_coverage", "insurance", "coverage_periods", key))
    return out


def _links(tables: Mapping[str, dict[Key, Record]], citizens: Mapping[str, Record]) -> set[Finding]:
    out: set[Finding] = set()
    for key, firm in tables["business.enterprises"].items():
        if str(firm.get("legal_rep_cccd")) not in citizens:
            out.add(("legal_rep_unknown", "business", "enterprises", key))
    for key, birth in tables["civil_status.births"].items():
        citizen = citizens.get(str(birth.get("child_cccd")))
        if citizen is None:
            out.add(("birth_without_citizen", "civil_status", "births", key))
        elif (citizen.get("date_of_birth") != birth.get("date_of_birth")
              or citizen.get("sex") != birth.get("child_sex")):
            out.add(("cccd_contradicts_birth_record", "civil_status", "births", key))
    for key, marriage in tables["civil_status.marriages"].items():
        for party, years in MARRIAGE_AGE.items():
            citizen = citizens.get(str(marriage.get(f"{party}_cccd")))
            if citizen is not None and completed_years(str(citizen["date_of_birth"]),
                                                       str(marriage["registered_on"])) < years:
                out.add(("marriage_under_legal_age", "civil_status", "marriages", key))
    return out


def _households(tables: Mapping[str, dict[Key, Record]], dead: Mapping[str, str | None]) -> set[Finding]:
    living: dict[str, int] = defaultdict(int)
    heads: dict[str, int] = defaultdict(int)
    out: set[Finding] = set()
    for key, member in tables["population.household_members"].items():
        cccd = str(member["cccd"])
        if cccd in dead:
            if member.get("left_on") is None or _after(member.get("left_on"), dead[cccd]):
                out.add(("member_after_death", "population", "household_members", key))
            continue
        if member.get("left_on") is None:
            living[str(member["household_id"])] += 1
            heads[str(member["household_id"])] += member.get("relation_to_head") == "head"
    for (household,) in tables["population.households"]:
        if living[household] >= 1 and heads[household] != 1:
            out.add(("household_without_one_head", "population", "households", (household,)))
    return out


def audit_findings(served: Mapping[str, Iterable[Record]]) -> set[Finding]:
    """Every finding of the seven rules over the served records of each entity (qualified name → records)."""
    tables = {name: latest(served.get(name, ()), key) for name, key in KEYS.items()}
    citizens = {k[0]: r for k, r in tables["population.citizens"].items()}
    dead = citizen_deaths(citizens.values(), tables["civil_status.deaths"].values())
    return _coverage(tables, dead) | _links(tables, citizens) | _households(tables, dead)
