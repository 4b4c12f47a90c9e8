"""A registry as one value: who owns it, when it publishes, how its entities are paged and what drift it allows.

Each registry module (`kho.sources.population`, …) declares `REGISTRY = Registry(...)` beside its entities; the
sync DAGs, the loader, the dbt sources and the docs read it from `kho.sources.REGISTRIES`. How kho *reaches* a
registry (URLs, credentials, timeouts) is a deployment's business, not the contract's: that lives in
`kho.config.RegistrySettings`, read from `KHO_REGISTRY_<SLUG>_*`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib
import re
import zoneinfo
from dataclasses import dataclass

from croniter import croniter  # type: ignore[import-untyped]

from kho.errors import ConfigError
from kho.sources.contract import Entity, SchemaDrift

SLUG_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,29}")
"""Registry slugs name raw tables (`<slug>__<entity>`), DAGs (`sync_<slug>`) and settings (`KHO_REGISTRY_<SLUG>_…`)."""
API_SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
MODULE_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
POSTGRES_NAME_MAX = 63
"""PostgreSQL truncates longer identifiers, so two raw tables could silently become one."""
TIMEZONE = "Asia/Ho_Chi_Minh"
OWNER = "kho-data-engineering"
"""Who answers when a sync fails: the team running kho (the registry's agency is `Registry.agency`)."""
MODULES_SETTING = "KHO_REGISTRY_MODULES"


@dataclass(frozen=True)
class Paging:
    """How an API sync reads a registry: records per page, and pages per committed batch (one transaction, one
    ledger row, one watermark step)."""

    page_size: int = 500
    pages_per_batch: int = 20

    def __post_init__(self) -> None:
        if self.page_size < 1 or self.pages_per_batch < 1:
            raise ConfigError(f"paging {self.page_size} records x {self.pages_per_batch} pages: both must be >= 1")


@dataclass(frozen=True)
class Freshness:
    """How old a registry's newest load may get: a warning after `warn_after`, an error after `error_after`
    (dbt source freshness on `_loaded_at`)."""

    warn_after: dt.timedelta
    error_after: dt.timedelta

    def __post_init__(self) -> None:
        if not dt.timedelta(0) < self.warn_after < self.error_after:
            raise ConfigError(f"freshness: warn after {self.warn_after} must be positive and before the error "
                              f"after {self.error_after}")

    def dbt(self) -> dict[str, dict[str, int | str]]:
        """As a dbt `freshness:` block, each in the largest whole unit (day, hour or minute)."""
        return {"warn_after": _dbt_period(self.warn_after), "error_after": _dbt_period(self.error_after)}


def _dbt_period(span: dt.timedelta) -> dict[str, int | str]:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            return {"count": seconds // size, "period": unit}
    return {"count": -(-seconds // 60), "period": "minute"}


FRESHNESS_WARN_RUNS = 2
"""Derived freshness: two missed runs in a row are worth a warning…"""
FRESHNESS_ERROR_RUNS = 7
"""…and seven (a week of a nightly registry) are an outage."""


@dataclass(frozen=True)
class Registry:
    """One national registry kho reads: identity, ownership, schedule, defaults for its entities, and the entities.

    Entities inherit `drift` unless they set their own, and are served under `/<api_slug>/v1/<entity>`; the
    registry fills both in (`entities` holds the completed entities, so a module re-binds its names to them).
    """

    slug: str
    """`population`: names raw tables, the DAG `sync_<slug>`, dbt sources and settings."""
    name: str
    """Display name, in English."""
    agency: str
    """The agency that owns the registry and answers for its data."""
    schedule: str
    """Cron expression (five fields) of the sync, in `timezone`: when the registry has published its changes."""
    entities: tuple[Entity, ...]
    local_name: str = ""
    """The registry's own (Vietnamese) name."""
    timezone: str = TIMEZONE
    drift: SchemaDrift = SchemaDrift.KEEP_EXTRA
    """Default drift policy of its entities."""
    paging: Paging = Paging()
    freshness: Freshness | None = None
    """None: derived from the schedule (`source_freshness`)."""
    api_slug: str = ""
    """Path segment on the registry API; default: the slug hyphenated (`civil_status` → `civil-status`)."""
    owner: str = OWNER
    """Airflow owner of the registry's sync DAG."""
    description: str = ""
    simulation: str = ""
    """Importable module defining `SIMULATION`, how `kho simulate` generates this registry's records
    (`kho.simulator.spec.RegistrySimulation`; e.g. `kho.simulator.population`); empty: not simulated. Named, not
    imported, here: the contract knows nothing of the simulator."""

    def __post_init__(self) -> None:
        if not isinstance(self.slug, str) or not SLUG_PATTERN.fullmatch(self.slug):
            raise ConfigError(f"registry slug {self.slug!r}: give 1-30 lower-case letters, digits or _, starting "
                              "with a letter")
        if not self.api_slug:
            object.__setattr__(self, "api_slug", self.slug.replace("_", "-"))
        problems = self._problems()
        if problems:
            raise ConfigError(f"registry {self.slug} is inconsistent: {'; '.join(problems)}")
        object.__setattr__(self, "entities", tuple(self._complete(e) for e in self.entities))

    def _problems(self) -> list[str]:
        problems = [] if API_SLUG_PATTERN.fullmatch(self.api_slug) else [f"api_slug {self.api_slug!r} is not a "
                                                                           "lower-case path segment"]
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"unknown timezone {self.timezone!r}")
        if self.simulation and not MODULE_PATTERN.fullmatch(self.simulation):
            problems.append(f"simulation {self.simulation!r} is not a module name")
        if not _valid_cron(self.schedule):
            problems.append(f"schedule {self.schedule!r} is not a five-field cron expression")
        if not self.entities:
            problems.append("no entities")
        names = [e.name for e in self.entities]
        problems += [f"entity {n!r} declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
        problems += [f"entity {e.name!r} says it belongs to registry {e.registry!r}" for e in self.entities
                     if e.registry != self.slug]
        problems += [f"raw table {e.raw_table} is longer than PostgreSQL's {POSTGRES_NAME_MAX} characters"
                     for e in self.entities if len(e.raw_table.encode()) > POSTGRES_NAME_MAX]
        return problems

    def _complete(self, entity: Entity) -> Entity:
        """The entity with the registry's defaults filled in where it sets none."""
        if entity.drift is not None and entity.api_slug == self.api_slug:
            return entity
        return dataclasses.replace(entity, drift=entity.drift or self.drift, api_slug=self.api_slug)

    @property
    def title(self) -> str:
        """Display name with the registry's own name: `National population registry (Cơ sở dữ liệu …)`."""
        return f"{self.name} ({self.local_name})" if self.local_name else self.name

    @property
    def dag_id(self) -> str:
        return f"sync_{self.slug}"

    @property
    def settings_prefix(self) -> str:
        """Prefix of this registry's connection settings: `KHO_REGISTRY_POPULATION_`."""
        return f"KHO_REGISTRY_{self.slug.upper()}_"

    def entity(self, name: str) -> Entity:
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise ConfigError(f"registry {self.slug} has no entity {name!r}; its entities: "
                          f"{', '.join(e.name for e in self.entities)}")

    @property
    def source_freshness(self) -> Freshness:
        """`freshness` if given, else derived from the schedule: a warning after two missed runs, an error after
        seven (`FRESHNESS_WARN_RUNS`, `FRESHNESS_ERROR_RUNS`)."""
        if self.freshness is not None:
            return self.freshness
        gap = schedule_gap(self.schedule, self.timezone)
        return Freshness(gap * FRESHNESS_WARN_RUNS, gap * FRESHNESS_ERROR_RUNS)


def _valid_cron(expression: str) -> bool:
    return isinstance(expression, str) and len(expression.split()) == 5 and croniter.is_valid(expression)


@functools.lru_cache(maxsize=64)
def schedule_gap(expression: str, timezone: str = TIMEZONE) -> dt.timedelta:
    """The longest time between two consecutive runs of a cron schedule, over its next 1000 runs or 400 days from
    a fixed day (so the answer does not depend on when it is asked): 1 day for a nightly schedule, 3 for one
    that skips the weekend."""
    start = dt.datetime(2025, 1, 1, tzinfo=zoneinfo.ZoneInfo(timezone))
    runs = croniter(expression, start)
    previous = runs.get_next(dt.datetime)
    end, longest = previous + dt.timedelta(days=400), dt.timedelta(0)
    for _ in range(1000):
        current = runs.get_next(dt.datetime)
        longest = max(longest, current - previous)
        if current > end:
            break
        previous = current
    return longest


def load_registry_modules(setting: str) -> tuple[Registry, ...]:
    """The registries of `KHO_REGISTRY_MODULES`: comma-separated importable modules, each with a `REGISTRY`.

    How a registry defined outside kho (an agency's own package, or a test suite) joins the catalogue without
    editing kho; a bad name is a one-line ConfigError.
    """
    found: list[Registry] = []
    for name in (part.strip() for part in setting.split(",")):
        if not name:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"{MODULES_SETTING}: cannot import {name!r} ({exc}); give importable module names, "
                              "comma-separated, each defining REGISTRY") from None
        except ConfigError as exc:
            raise ConfigError(f"{MODULES_SETTING}: {name}: {exc}") from None
        registry = getattr(module, "REGISTRY", None)
        if not isinstance(registry, Registry):
            raise ConfigError(f"{MODULES_SETTING}: module {name!r} defines no REGISTRY = Registry(...) "
                              f"(found {type(registry).__name__})")
        found.append(registry)
    return tuple(found)


def catalogue(registries: tuple[Registry, ...]) -> tuple[Registry, ...]:
    """The registries as one catalogue; two with one slug, or one raw table twice, is a configuration error."""
    seen: dict[str, Registry] = {}
    for registry in registries:
        if registry.slug in seen:
            raise ConfigError(f"registry {registry.slug} is declared twice ({MODULES_SETTING} may name a registry "
                              "kho already has)")
        seen[registry.slug] = registry
    tables = [e.raw_table for r in registries for e in r.entities]
    clashes = sorted({t for t in tables if tables.count(t) > 1})
    if clashes:
        raise ConfigError(f"raw tables {', '.join(clashes)} would be written by two registries; rename a slug")
    return registries
