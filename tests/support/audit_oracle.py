"""The seven rules of `mart_audit.cross_registry_contradictions` (docs/datasets.md), applied to served records.

An independent re-computation for tests: it reads only the records a client receives (wire form: ISO dates,
`updated_at` timestamps), never the simulator's own flags, and returns one finding per record the table names.
When a key is served more than once (duplicates, conflicting updates), the copy with the greatest `updated_at`
counts, the later one on a tie, as a merge by key would keep it.

`finding_provinces` places each finding in its 2025 province by the per-kind rule of docs/datasets.md, reading
commune codes through the marts oracle's units (tests/support/marts_oracle.py: the reference CSVs, not kho's SQL).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from tests.support.marts_oracle import commune_units, local_date

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


def earliest_death_registrations(deaths: Iterable[Record]) -> dict[str, Record]:
    """CCCD → its death registration with the smallest (date_of_death, registration_id)."""
    earliest: dict[str, Record] = {}
    for death in deaths:
        cccd, when = str(death["cccd"]), (str(death["date_of_death"]), str(death["registration_id"]))
        held = earliest.get(cccd)
        if held is None or when < (str(held["date_of_death"]), str(held["registration_id"])):
            earliest[cccd] = death
    return earliest


def citizen_deaths(citizens: Iterable[Record], deaths: Iterable[Record]) -> dict[str, str | None]:
    """`int_citizen_deaths`: CCCD → date of death, from the earliest death registration, else the population
    registry's date_of_death when its status is deceased."""
    out: dict[str, str | None] = {
        cccd: str(death["date_of_death"]) for cccd, death in earliest_death_registrations(deaths).items()}
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


def _updated_on(record: Record) -> date:
    """The Asia/Ho_Chi_Minh date of a state record's updated_at (a naive timestamp counts as UTC)."""
    moment = datetime.fromisoformat(str(record["updated_at"]))
    return local_date(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def _province(code: str | None, on: date) -> str | None:
    return commune_units(code, on)["province_code_2025"] if code is not None else None


def finding_provinces(served: Mapping[str, Iterable[Record]]) -> dict[Finding, str | None]:
    """Every finding of `audit_findings` → the 2025 province it belongs to (docs/datasets.md, the audit mart):
    a deceased citizen's permanent residence (era by the citizen's updated_at), else the commune of their earliest
    death registration (era by its registered_on); an enterprise's or household's commune (era by its updated_at);
    a birth's or marriage's commune of registration (era by registered_on)."""
    tables = {name: latest(served.get(name, ()), key) for name, key in KEYS.items()}
    citizens = {k[0]: r for k, r in tables["population.citizens"].items()}
    registrations = earliest_death_registrations(tables["civil_status.deaths"].values())
    participants = {str(p["social_insurance_code"]): str(p["cccd"])
                    for p in tables["insurance.participants"].values()}

    def deceased(cccd: str) -> str | None:
        if cccd in citizens:
            return _province(str(citizens[cccd]["permanent_commune_code"]), _updated_on(citizens[cccd]))
        death = registrations.get(cccd)
        return _province(str(death["place_commune_code"]), date.fromisoformat(str(death["registered_on"]))) \
            if death is not None else None

    def place(entity: str, key: Key) -> str | None:
        record = tables[entity][key]
        if entity == "insurance.coverage_periods":
            return deceased(participants[str(record["social_insurance_code"])])
        if entity == "population.household_members":
            return deceased(str(record["cccd"]))
        if entity in ("business.enterprises", "population.households"):
            code = record["commune_code"]
            return _province(str(code) if code is not None else None, _updated_on(record))
        return _province(str(record["place_commune_code"]), date.fromisoformat(str(record["registered_on"])))

    return {finding: place(f"{finding[1]}.{finding[2]}", finding[3]) for finding in audit_findings(served)}
