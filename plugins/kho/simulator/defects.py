"""Defects the registries inject into what they serve, and the ground truth that names each one.

A defect belongs to one served *version* of a row: whether version (entity, row, day) is defective, and how, is a
pure function of the seed and those three numbers, so a snapshot, a change feed and a page of the HTTP API agree
on it without keeping a list. Expected outcomes use the shared vocabulary:

- ``quarantine:<reason_code>``: `kho.sources.check_table` rejects the row with exactly that reason code;
- ``unchanged_duplicate``: a second copy identical to the first once the contract's normalisation (trim, NFC)
  is applied (exact duplicates; near duplicates that differ only by NFD or surrounding spaces);
- ``normalised``: accepted, the text normalised (NFD names to NFC; old tone placement flagged for matching);
- ``anomaly:<kind>``: accepted by the loader, for a downstream rule to flag: cross-registry anomalies, and near
  duplicates that stay different after normalisation (letter case, doubled inner spaces), late-arriving and
  conflicting updates;
- ``flag:<rule>``: accepted by the loader, and listed in `kho.quality_flags` by the raw quality gate under that
  rule (the expectation's `meta.rule`), keyed as the raw table stores the row (`FLAG_RULES`);
- ``batch_rejected`` / ``drift_reported``: schema drift (a renamed field always rejects the batch; an added field
  rejects it under `SchemaDrift.FREEZE`, else is reported).

Schema drift is a day on which one entity's registry serialises differently: on day 1 every record of one entity
served that day (feed, snapshot, API page) carries an added field, on day 2 another entity's `full_name` arrives as
`ho_ten`; the next day the registry is back to its contract. The ground truth lists the drifted records of that
day's feed, which is what an incremental client receives. The seed picks the entity of each drift among those
whose simulation declares a `renamed_field` (citizens and insurance participants, both `KEEP_EXTRA`); the added
field is its registry's (`RegistrySimulation.added_field`). A world may instead name the entities that get an
added field (`WorldSpec.drift_entities`), so each drift policy can meet one. Where each row-level defect lands in
an entity's records (its id, commune, name, conflicting field) is the entity's `spec.Defects`.

Two defects pass the contract and break a domain rule of the raw gate (`FLAG_RULES`):

- `stale_commune_code` (row level): a version written on a day from 2025-07-01 (day >= 1) carries, in the entity's
  commune field (`spec.Defects.commune_field`), a pre-2025 code that is no post-2025 unit's code: one of the old
  communes merged into the record's new unit where one is, else another abolished commune. The contract accepts
  both eras' codes. The record's date is its `updated_at` in Vietnam: every day-0 record was last changed before
  1 July there (`calendar.DAY0_END`), every record of day d >= 1 on or after it.
- `legacy_social_insurance_code` (world level, like an anomaly): a participant registered from 2025-07-01 (a
  newborn's, `civil_status.birth`) is issued a 10-digit code instead of its CCCD. The code is the participants'
  key and the coverage periods refer to it, so it cannot be garbled in one served version: the birth decides it
  (at the defect rate, a draw of (seed, kind, citizen, day)), and the participant and its coverage carry that one
  code in every version. It is listed once, on the day the participant is first served. A record that carries it
  takes no malformed id (the only row defect that would quarantine a participant), so kho loads and flags it.

Conflicting updates of a commune field (day >= 1) choose among post-2025 codes, so they break no date rule.

Cross-registry anomalies (`ANOMALY_KINDS`) are the seven rules of `mart_audit.cross_registry_contradictions`
(docs/datasets.md), each listed once, on the day it is first served, under the record the rule reports
(`ANOMALY_ENTITY`): `deceased_with_active_coverage` (a coverage period), `legal_rep_unknown` (an enterprise),
`birth_without_citizen` and `cccd_contradicts_birth_record` (a birth registration), `marriage_under_legal_age`
(a marriage registration), `household_without_one_head` (a household) and `member_after_death` (a membership).
Every record involved passes its own contract; the world's later days never undo an anomaly, and an anomaly of
one kind never makes a finding of another (each registry's simulation injects them into its day-0 records and
its events; `spec.EntitySimulation.anomalies` says which entity reports which).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal, get_args

from kho.simulator.anomalies import AnomalyKind, FlaggedKind
from kho.simulator.rng import hash_py, stream_key, unit_py
from kho.simulator.spec import Defects, RegistrySimulation, anomaly_entities, simulated_entities, simulations
from kho.simulator.text import differs_in_nfd, move_tone, nfd
from kho.sources.contract import Entity, ReasonCode, SchemaDrift
from kho.sources.reference import (
    REORGANISATION_DATE,
    commune_codes,
    commune_codes_2025,
    commune_predecessors_2025,
    known_commune_codes,
)

Record = dict[str, str | None]

DefectKind = Literal[
    "malformed_id", "cccd_contradicts_birth", "bad_tax_check_digit", "exact_duplicate", "near_duplicate",
    "nfd_name", "old_tone_placement", "born_after_death", "married_under_age", "unknown_commune",
    "late_arriving_update", "conflicting_update", "schema_drift_added_field", "schema_drift_renamed_field",
    "deceased_with_active_coverage", "legal_rep_unknown", "birth_without_citizen", "cccd_contradicts_birth_record",
    "marriage_under_legal_age", "household_without_one_head", "member_after_death", "stale_commune_code",
    "legacy_social_insurance_code",
]
DEFECT_KINDS: tuple[DefectKind, ...] = get_args(DefectKind)
ALL_DEFECT_KINDS: frozenset[str] = frozenset(DEFECT_KINDS)
ANOMALY_KINDS: frozenset[str] = frozenset(get_args(AnomalyKind))
"""Cross-registry anomalies, the kinds of `mart_audit.cross_registry_contradictions` (docs/datasets.md): injected
into the world (day-0 records and daily events), not into one served version, so they persist."""
ANOMALY_ENTITY: dict[str, str] = anomaly_entities()
"""The record each anomaly is reported under in the ground truth ("one finding per" of the audit table), as the
entities' simulations declare it."""
DRIFT_KINDS: frozenset[str] = frozenset({"schema_drift_added_field", "schema_drift_renamed_field"})
FLAGGED_KINDS: frozenset[str] = frozenset(get_args(FlaggedKind))
"""Defects injected into the world by an event, like anomalies, but flagged by a raw-table rule."""
FLAG_RULES: dict[str, str] = {
    "stale_commune_code": "commune_code_valid_for_date",
    "legacy_social_insurance_code": "social_insurance_code_is_cccd_for_new_participants",
}
"""Per defect kind that passes the contract and breaks a domain rule: the rule (`meta.rule` of the raw gate's
expectation) that flags it."""

NEAR_VARIANTS = ("nfd", "padded", "upper", "double_space")
"""How the second copy of a near duplicate differs: only the first two vanish under trim + NFC."""
_SAME_AFTER_NORMALISATION = frozenset({"nfd", "padded"})

_COMMUNES_IN_FORCE: tuple[str, ...] = tuple(sorted(commune_codes_2025()))

DRIFT_ADDED_DAY = 1
DRIFT_RENAMED_DAY = 2
ADDED_FIELD: dict[str, str] = {s.registry.slug: s.added_field for s in simulations()}
"""Per simulated registry, the field its entities gain on an added-field drift day."""


@dataclass(frozen=True)
class Defect:
    """One injected defect: which served record carries it, what kind, on which day, and what kho should do."""

    registry: str
    entity: str
    key: tuple[str, ...]
    """The record's key as served (a malformed id is the malformed text itself), one value per key field."""
    kind: DefectKind
    day: int
    """The day whose feed (or day-0 snapshot) carries the defect; for a pending one (`generate.Engine.pending`,
    withheld from the last day's feed), the day after, whose feed may carry it."""
    expected: str

    @property
    def qualified_entity(self) -> str:
        return f"{self.registry}.{self.entity}"

    @property
    def expected_reason_code(self) -> ReasonCode | None:
        """The reason code of a `quarantine:` outcome, None for every other outcome."""
        if not self.expected.startswith("quarantine:"):
            return None
        code = self.expected.split(":", 1)[1]
        return code  # type: ignore[return-value]

    def to_json(self) -> str:
        return json.dumps({"registry": self.registry, "entity": self.entity, "key": list(self.key),
                           "kind": self.kind, "day": self.day, "expected": self.expected},
                          ensure_ascii=False, separators=(",", ":"))


def _reason(entity: Entity, check_name: str) -> ReasonCode:
    return next(c.code for c in entity.checks if c.name == check_name)


def reported_outcome(kind: str) -> str:
    """The outcome owed a defect an event reported (`Timeline.report`): a flag, or a cross-registry anomaly."""
    return f"flag:{FLAG_RULES[kind]}" if kind in FLAG_RULES else f"anomaly:{kind}"


def _expected(entity: Entity, targets: Defects, kind: str, variant: str = "") -> str:
    """The outcome the pipeline owes a defect of `kind` in `entity` (see the module docstring)."""
    if kind in FLAG_RULES:
        return reported_outcome(kind)
    fixed = {
        "malformed_id": "quarantine:malformed", "bad_tax_check_digit": "quarantine:malformed",
        "unknown_commune": "quarantine:unknown_reference", "exact_duplicate": "unchanged_duplicate",
        "nfd_name": "normalised", "old_tone_placement": "normalised",
        "schema_drift_renamed_field": "batch_rejected",
    }
    if kind in fixed:
        return fixed[kind]
    check = targets.check(kind)
    if check is not None:
        return f"quarantine:{_reason(entity, check)}"
    if kind == "near_duplicate":
        return "unchanged_duplicate" if variant in _SAME_AFTER_NORMALISATION else "anomaly:near_duplicate"
    if kind == "schema_drift_added_field":
        return "batch_rejected" if entity.drift is SchemaDrift.FREEZE else "drift_reported"
    return f"anomaly:{kind}"


@dataclass(frozen=True)
class Drift:
    day: int
    entity: str
    kind: DefectKind
    field: str
    new_name: str


class Injector:
    """Decides and applies the defects of served versions for one world (seed, rate, kinds).

    `added_to` names the entities (`registry.entity`) whose records gain a field on `DRIFT_ADDED_DAY`; None
    leaves the choice to the seed: one of the entities whose simulation declares a `renamed_field` gains its
    registry's added field, another has that field renamed on `DRIFT_RENAMED_DAY`.
    """

    def __init__(self, seed: int, rate: float, kinds: frozenset[str], added_to: Collection[str] | None = None,
                 sims: Sequence[RegistrySimulation] | None = None) -> None:
        self.seed = seed
        self.rate = rate
        self.kinds = kinds
        registries = simulations() if sims is None else tuple(sims)
        self._entities = {e.entity.qualified_name: e for e in simulated_entities(registries)}
        self._added = {s.registry.slug: s.added_field for s in registries}
        self._keys = {name: stream_key(seed, f"defect.{name}") for name in self._entities}
        self._kinds = {name: tuple(k for k in e.defects.kinds if k in kinds) for name, e in self._entities.items()}
        self._known = known_commune_codes()
        in_force = commune_codes_2025()
        self._abolished = tuple(sorted(commune_codes() - in_force))
        abolished = frozenset(self._abolished)
        self._stale = {new: tuple(sorted(p.old_commune_code for p in parts if p.old_commune_code in abolished))
                       for new, parts in commune_predecessors_2025().items()}
        self.drifts: tuple[Drift, ...] = self._drifts(added_to) if rate > 0 else ()

    def _drifts(self, added_to: Collection[str] | None) -> tuple[Drift, ...]:
        candidates = [e for e in self._entities.values() if e.renamed_field is not None]
        if not candidates:
            return ()
        pick = hash_py(stream_key(self.seed, "drift"), 0) % len(candidates)
        chosen = [candidates[pick].entity] if added_to is None else [
            self._entities[name].entity for name in sorted(added_to)]
        renamed = candidates[(pick + 1) % len(candidates)]
        drifts = []
        if "schema_drift_added_field" in self.kinds:
            drifts += [Drift(DRIFT_ADDED_DAY, e.qualified_name, "schema_drift_added_field", self._added[e.registry],
                             self._added[e.registry]) for e in chosen]
        if "schema_drift_renamed_field" in self.kinds and renamed.renamed_field is not None:
            field, new_name = renamed.renamed_field
            drifts.append(Drift(DRIFT_RENAMED_DAY, renamed.entity.qualified_name, "schema_drift_renamed_field",
                                field, new_name))
        return tuple(drifts)

    def key(self, entity: str) -> int:
        """The key of the draws that decide the defects of `entity`'s versions (`registry.entity`)."""
        return self._keys[entity]

    def anomaly_rates(self) -> dict[str, float]:
        """The rates of the defects the world's events inject (`Base.rate`): anomalies and flagged ones."""
        return {kind: self.rate for kind in ANOMALY_KINDS | FLAGGED_KINDS if kind in self.kinds}

    def drift_on(self, entity: str, day: int) -> Drift | None:
        return next((d for d in self.drifts if d.entity == entity and d.day == day), None)

    def kind(self, entity: str, row: int, version_day: int) -> str | None:
        """The defect kind of version (entity, row, version_day), before checking it fits the record."""
        kinds = self._kinds[entity]
        if not kinds or self.rate <= 0:
            return None
        key = self._keys[entity]
        if unit_py(key, row, 2 * version_day) >= self.rate:
            return None
        kind = kinds[int(unit_py(key, row, 2 * version_day + 1) * len(kinds))]
        if version_day == 0 and kind in ("late_arriving_update", "conflicting_update", "stale_commune_code"):
            return None
        return kind

    def is_late(self, entity: str, row: int, version_day: int) -> bool:
        return version_day > 0 and self.kind(entity, row, version_day) == "late_arriving_update"

    def serve(self, entity: Entity, row: int, version_day: int, record: Record, view_day: int,
              kind: str | None) -> tuple[list[Record], list[Defect]]:
        """The copies a registry serves of one clean record version, and the defects they carry."""
        name = entity.qualified_name
        copies = [record]
        defects: list[tuple[str, str, int]] = []
        if kind is not None:
            copies, applied = self._apply(name, row, version_day, record, kind)
            if applied is not None:
                day = version_day + 1 if kind == "late_arriving_update" else version_day
                defects.append((kind, applied, day))
        drift = self.drift_on(name, view_day)
        if drift is not None:
            copies = [_drifted(c, drift, row) for c in copies]
            defects.append((drift.kind, "", view_day))
        out = []
        for kind_, variant, day in defects:
            key = tuple(str(copies[0].get(k)) for k in entity.key)
            out.append(Defect(entity.registry, entity.name, key, kind_,  # type: ignore[arg-type]
                              day, _expected(entity, self._entities[name].defects, kind_, variant)))
        return copies, out

    def _apply(self, name: str, row: int, day: int, record: Record, kind: str) -> tuple[list[Record], str | None]:
        """Apply `kind` to a copy of `record`: (served copies, variant) or (unchanged, None) when it cannot fit."""
        draw = hash_py(self._keys[name], row, 2 * day + 1)
        served = dict(record)
        if kind in ("exact_duplicate", "late_arriving_update"):
            return ([served, dict(served)] if kind == "exact_duplicate" else [served]), ""
        targets = self._entities[name].defects
        if kind == "conflicting_update":
            other = dict(served)
            field = targets.conflict_field
            other[field] = _conflicting_value(field, served.get(field), draw)
            return [served, other], ""
        if kind == "near_duplicate":
            field = targets.fields(kind)[0]
            value = str(served[field])
            variant = NEAR_VARIANTS[(draw >> 8) % len(NEAR_VARIANTS)]
            if variant == "nfd" and not differs_in_nfd(value):
                variant = "padded"
            other = dict(served)
            other[field] = {"nfd": nfd(value), "padded": f" {value}  ", "upper": value.upper(),
                            "double_space": value.replace(" ", "  ", 1)}[variant]
            return [served, other], variant
        if kind == "malformed_id" and _legacy_code(record):
            return [record], None  # a flagged participant must load to be flagged
        changed = self._mutate(targets.fields(kind), served, kind, draw)
        return ([served], "") if changed else ([record], None)

    def _mutate(self, fields: tuple[str, ...], served: Record, kind: str,  # noqa: C901 - one case per kind
                draw: int) -> bool:
        """Change `fields` of `served` in place to carry a row-level defect; False when the record has nothing to
        garble."""
        field = fields[0] if fields else ""
        if kind == "malformed_id":
            value = str(served[field])
            served[field] = value[1:] if (draw >> 8) % 2 == 0 else f"{value}{(draw >> 16) % 10}"
        elif kind == "cccd_contradicts_birth":
            value = str(served[field])
            served[field] = f"{value[:3]}{int(value[3]) ^ 2}{value[4:]}"  # the other century: nobody born then
        elif kind == "bad_tax_check_digit":
            for name in fields:
                value = str(served[name])
                wrong = (int(value[9]) + 1 + (draw >> 8) % 9) % 10
                served[name] = f"{value[:9]}{wrong}{value[10:]}"
        elif kind == "unknown_commune":
            code = str(33000 + (draw >> 8) % 60000)
            while code in self._known:
                code = str(int(code) + 1)
            served[field] = code
        elif kind == "stale_commune_code":
            current = served.get(field)
            if current is None:
                return False
            stale = self._stale.get(current) or self._abolished
            served[field] = stale[(draw >> 8) % len(stale)]
        elif kind == "nfd_name":
            if not differs_in_nfd(str(served[field])):
                return False
            served[field] = nfd(str(served[field]))
        elif kind == "old_tone_placement":
            moved = move_tone(str(served[field]))
            if moved is None:
                return False
            served[field] = moved
        elif kind == "born_after_death":
            if served.get("status") != "deceased" or not served.get("date_of_death"):
                return False
            born = str(served["date_of_birth"])
            served["date_of_death"] = _days_before(born, 1 + (draw >> 8) % 3000)
        elif kind == "married_under_age":
            registered = str(served["registered_on"])
            served["wife_date_of_birth"] = _days_before(registered, 16 * 366 + (draw >> 8) % 600)
        else:
            return False
        return True


def _days_before(iso: str, days: int) -> str:
    return (date.fromisoformat(iso) - timedelta(days=days)).isoformat()


def _legacy_code(record: Record) -> bool:
    """Whether a participant record carries `legacy_social_insurance_code`: registered from 2025-07-01 under a
    code that is not its CCCD."""
    registered, code, cccd = (record.get(f) for f in ("registered_on", "social_insurance_code", "cccd"))
    return (registered is not None and code is not None and cccd is not None
            and registered >= REORGANISATION_DATE.isoformat() and code != cccd)


def _conflicting_value(field: str, value: str | None, draw: int) -> str | None:
    """A different value that is still valid for `field`, so that both versions pass the contract (and, as every
    conflicting update is of a day from 2025-07-01, a commune is one in force then)."""
    if field.endswith("commune_code"):
        communes = _COMMUNES_IN_FORCE
        pick = communes[(draw >> 8) % len(communes)]
        return pick if pick != value else communes[((draw >> 8) + 1) % len(communes)]
    options = {
        "contribution_status": ("paid", "owing", "suspended"), "status": ("active", "lapsed", "ended"),
        "relation_to_head": ("child", "grandchild", "other", "sibling"),
    }
    if field in options:
        choices = [o for o in options[field] if o != value]
        return choices[(draw >> 8) % len(choices)]
    if field == "registered_capital":
        return str(int(str(value)) * 2)
    if field == "address_line":
        return f"Số {1 + (draw >> 8) % 500} đường Cách Mạng Tháng Tám" if value != "" else "Tổ 1"
    return "Theo quyết định của cơ quan đăng ký" if value != "Theo quyết định của cơ quan đăng ký" else "Khác"


def _drifted(record: Record, drift: Drift, row: int) -> Record:
    """The record as the registry sent it on its drift day: one field added, or one renamed."""
    if drift.kind == "schema_drift_added_field":
        return {**record, drift.field: _added_value(drift.field, row)}
    return {(drift.new_name if k == drift.field else k): v for k, v in record.items()}


def _added_value(field: str, row: int) -> str:
    """A plausible value of an added field: a mobile number, an e-mail address or a website."""
    if "phone" in field:
        return f"09{row % 100_000_000:08d}"
    if field == "website":
        return f"https://dn{row}.example.vn"
    return f"lienhe{row}@example.vn"
