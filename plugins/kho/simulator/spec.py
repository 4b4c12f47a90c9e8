"""How the simulator makes a registry's records: one `EntitySimulation` per entity, gathered in a registry's
`RegistrySimulation` beside its daily `Event`s.

A registry's `kho.sources` module names the module holding its simulation (`Registry(simulation=...)`, e.g.
`kho.simulator.population`), which defines `SIMULATION = RegistrySimulation(...)`; `simulations()` reads them for
the catalogue, so a registry added through `KHO_REGISTRY_MODULES` is simulated, served and exported as soon as its
simulation module exists, with no change to the engine. The simulation module must be another module than the
registry's own: the catalogue imports registry modules while `kho.sources` is still being built.

Wire names are the contract's: a renderer returns one column per field of `Entity.field_names`, and the spec
builds the records in the contract's order (a renderer that misses or adds a field is a `ConfigError`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kho.errors import ConfigError
from kho.simulator.anomalies import AnomalyKind
from kho.simulator.rng import B1, I64
from kho.sources.contract import Entity
from kho.sources.registry import Registry

if TYPE_CHECKING:
    import random

    from kho.simulator.base import Base
    from kho.simulator.timeline import Timeline

Record = dict[str, str | None]
Column = Sequence[str | None]
Columns = tuple[I64, Mapping[str, Column]]
"""What a renderer returns: the candidate row ids that exist (in the candidates' order) and, per field, the
column of their values in wire form."""
LINKED_WORLD = "kho.simulator.timeline"
"""The random stream of the events of kho's four registries: one day plan, since their events meet the same
people (a birth writes records of three registries)."""


@dataclass(frozen=True)
class Rendered:
    """The rows of one render call that exist: their ids (ascending when the candidates were) and records."""

    ids: I64
    records: list[Record]


@dataclass(frozen=True)
class Rows:
    """How an entity's day-0 rows are numbered: `fanout` row ids per citizen or per enterprise (row k of owner i
    is `fanout * i + k`; a renderer drops the ids with no row), or one per household number."""

    per: Literal["citizen", "enterprise", "household"]
    fanout: int = 1

    def __post_init__(self) -> None:
        if self.fanout < 1 or (self.per == "household" and self.fanout != 1):
            raise ConfigError(f"rows per {self.per}: fanout {self.fanout} must be 1 or more (1 per household)")


@dataclass(frozen=True)
class FieldCheck:
    """A field a defect garbles and the contract check (`RowCheck.name`) that catches it."""

    field: str
    check: str


@dataclass(frozen=True)
class Defects:
    """Where one entity's records take the row-level defects of `kho.simulator.defects`.

    Every entity may carry a malformed id, an exact duplicate, a late-arriving and a conflicting update; the
    optional fields add the kinds that need one: a CCCD contradicting the birth facts, a wrong tax-code check
    digit, an unknown commune or a stale one (a pre-2025 code written from 2025-07-01), NFD / old tone placement /
    near-duplicate names, a death before birth (a citizen's `date_of_death`), a wife under marriageable age (a
    marriage's `wife_date_of_birth`).
    """

    id_field: str
    """The identity number or code a malformed-id defect garbles."""
    conflict_field: str
    """The field whose value differs between the two versions of a conflicting update (both stay valid)."""
    contradicted_cccd: FieldCheck | None = None
    check_digit_fields: tuple[str, ...] = ()
    commune_field: str | None = None
    name_field: str | None = None
    death_before_birth: str | None = None
    """The contract check a date of death before the date of birth fails."""
    under_age_wife: str | None = None
    """The contract check a wife under marriageable age fails."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds one served version may carry, in the order the injector draws among them (part of a seed's
        world: do not reorder)."""
        kinds = ["malformed_id"]
        if self.contradicted_cccd is not None:
            kinds.append("cccd_contradicts_birth")
        if self.check_digit_fields:
            kinds.append("bad_tax_check_digit")
        if self.commune_field is not None:
            kinds += ["unknown_commune", "stale_commune_code"]
        if self.name_field is not None:
            kinds += ["nfd_name", "old_tone_placement", "near_duplicate"]
        if self.death_before_birth is not None:
            kinds.append("born_after_death")
        if self.under_age_wife is not None:
            kinds.append("married_under_age")
        return (*kinds, "exact_duplicate", "late_arriving_update", "conflicting_update")

    def fields(self, kind: str) -> tuple[str, ...]:
        """The fields a defect of `kind` changes (none for a kind this entity does not carry)."""
        optional = {
            "cccd_contradicts_birth": self.contradicted_cccd.field if self.contradicted_cccd else None,
            "unknown_commune": self.commune_field, "stale_commune_code": self.commune_field,
            "nfd_name": self.name_field,
            "old_tone_placement": self.name_field, "near_duplicate": self.name_field,
        }
        if kind in optional:
            found = optional[kind]
            return () if found is None else (found,)
        return {"malformed_id": (self.id_field,), "conflicting_update": (self.conflict_field,),
                "bad_tax_check_digit": self.check_digit_fields}.get(kind, ())

    def check(self, kind: str) -> str | None:
        """The contract check (`RowCheck.name`) a defect of `kind` fails, for the kinds a row check catches."""
        return {"cccd_contradicts_birth": self.contradicted_cccd.check if self.contradicted_cccd else None,
                "born_after_death": self.death_before_birth, "married_under_age": self.under_age_wife}.get(kind)


@dataclass(frozen=True)
class EntitySimulation:
    """How the simulator renders one entity's day-0 records and which defects and anomalies they may carry."""

    entity: Entity
    rows: Rows
    columns: Callable[[Base, I64], Columns]
    """Day-0 rows among candidate ids (any order): those that exist and their fields, a chunk at a time."""
    defects: Defects
    anomalies: tuple[AnomalyKind, ...] = ()
    """Cross-registry anomalies reported under this entity's records (day 0 and events); with two, even day-0
    rows carry the first and odd rows the second."""
    anomalous: Callable[[Base, I64], B1] | None = None
    """Which existing day-0 rows among ids carry one of `anomalies`."""
    renamed_field: tuple[str, str] | None = None
    """(field, new name): this entity may be the one whose field a renamed-field drift day renames (the seed
    picks among the entities that declare one)."""

    def __post_init__(self) -> None:
        names = set(self.entity.field_names)
        d = self.defects
        wanted = [d.id_field, d.conflict_field, *d.check_digit_fields,
                  *(f for f in (d.commune_field, d.name_field) if f is not None),
                  *([d.contradicted_cccd.field] if d.contradicted_cccd else []),
                  *([self.renamed_field[0]] if self.renamed_field else [])]
        unknown = sorted({f for f in wanted if f not in names})
        if unknown:
            raise ConfigError(f"the simulation of {self.entity.qualified_name} names fields its contract does not "
                              f"have: {', '.join(unknown)}")
        if bool(self.anomalies) != (self.anomalous is not None) or len(self.anomalies) > 2:
            raise ConfigError(f"the simulation of {self.entity.qualified_name}: give `anomalous` exactly when it "
                              "lists anomalies (at most two)")

    def render(self, base: Base, ids: I64) -> Rendered:
        """The records of the rows among `ids` that exist, keyed by the contract's field names in its order."""
        rows, columns = self.columns(base, ids)
        if not len(rows):
            return Rendered(rows, [])
        names = self.entity.field_names
        if columns.keys() != set(names):
            raise ConfigError(f"the simulation of {self.entity.qualified_name} renders "
                              f"{', '.join(sorted(columns))}, not its contract's fields {', '.join(names)}")
        return Rendered(rows, [dict(zip(names, row, strict=True))
                               for row in zip(*(columns[n] for n in names), strict=True)])

    def flags(self, base: Base, ids: I64) -> B1 | None:
        """Which day-0 rows among existing `ids` carry an anomaly; None when this world injects none here."""
        if self.anomalous is None or not any(base.rate(kind) > 0 for kind in self.anomalies):
            return None
        return self.anomalous(base, ids)

    def day0_kind(self, row: int) -> AnomalyKind:
        """The anomaly an anomalous day-0 row carries."""
        return self.anomalies[row % 2] if len(self.anomalies) == 2 else self.anomalies[0]


@dataclass(frozen=True)
class Event:
    """A kind of daily change: how many happen a day (`rate` times `per` of the timeline, drawn), and what one
    does to the world (`happen(timeline, rng, at)`, `at` in seconds since 1970, inside the day)."""

    name: str
    rate: float
    per: Callable[[Timeline], float]
    happen: Callable[[Timeline, random.Random, int], None]
    order: int = 0
    """Where its count is drawn in its stream's day plan; a seed's history depends on it, so it never changes."""


def per_citizen(timeline: Timeline) -> float:
    """What a per-citizen event rate is a share of: every citizen ever known (the dead included)."""
    return timeline.population


@dataclass(frozen=True)
class RegistrySimulation:
    """Everything the simulator knows of one registry: its entities' simulations and its daily events."""

    registry: Registry
    entities: tuple[EntitySimulation, ...]
    added_field: str
    """The field its entities gain on an added-field drift day (what such a registry plausibly adds)."""
    events: tuple[Event, ...] = ()
    stream: str = ""
    """The random stream its events draw from: registries whose events meet the same records share one
    (`LINKED_WORLD`); default: a stream of its own, so adding it changes no other registry's history."""

    def __post_init__(self) -> None:
        declared = tuple(e.qualified_name for e in self.registry.entities)
        simulated = tuple(s.entity.qualified_name for s in self.entities)
        if simulated != declared:
            raise ConfigError(f"the simulation of registry {self.registry.slug} covers {', '.join(simulated)}; "
                              f"it must cover its entities {', '.join(declared)}, in that order")
        if not self.stream:
            object.__setattr__(self, "stream", f"{LINKED_WORLD}.{self.registry.slug}")


def load_simulation(registry: Registry) -> RegistrySimulation | None:
    """The simulation `registry` names (`Registry.simulation`), None when it names none; a module that cannot be
    imported or defines no matching `SIMULATION` is a one-line ConfigError."""
    if not registry.simulation:
        return None
    try:
        module = importlib.import_module(registry.simulation)
    except ImportError as exc:
        raise ConfigError(f"registry {registry.slug}: cannot import its simulation module "
                          f"{registry.simulation!r} ({exc})") from None
    found = getattr(module, "SIMULATION", None)
    if not isinstance(found, RegistrySimulation) or found.registry.slug != registry.slug:
        raise ConfigError(f"registry {registry.slug}: module {registry.simulation!r} defines no SIMULATION = "
                          f"RegistrySimulation(...) of that registry")
    return found


@functools.cache
def simulations() -> tuple[RegistrySimulation, ...]:
    """The simulations of the catalogue's registries that have one, in catalogue order."""
    from kho.sources import REGISTRIES

    return tuple(s for s in (load_simulation(r) for r in REGISTRIES) if s is not None)


def simulated_entities(sims: Sequence[RegistrySimulation] | None = None) -> tuple[EntitySimulation, ...]:
    return tuple(e for s in (simulations() if sims is None else sims) for e in s.entities)


def anomaly_entities(sims: Sequence[RegistrySimulation] | None = None) -> dict[str, str]:
    """Per cross-registry anomaly kind, the entity (`registry.entity`) its findings are reported under."""
    return {kind: e.entity.qualified_name for e in simulated_entities(sims) for kind in e.anomalies}
