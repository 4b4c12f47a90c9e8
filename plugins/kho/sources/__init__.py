"""Every registry kho reads, described once: `kho.sources.REGISTRIES` is the catalogue the other stages read.

Adding a registry is one module beside these (entities and `REGISTRY = Registry(...)`) and one line below. A
registry defined outside kho joins through `KHO_REGISTRY_MODULES` (comma-separated importable modules, each
defining `REGISTRY`), read once, when this package is first imported.
"""

from __future__ import annotations

import os

from kho.errors import ConfigError
from kho.sources import business, civil_status, insurance, population
from kho.sources.contract import (
    EXPORT_DATE_FORMAT,
    RAW_META_COLUMNS,
    CheckedBatch,
    Dialect,
    Entity,
    Field,
    RowCheck,
    SchemaDrift,
    check_table,
    parse_field,
)
from kho.sources.registry import MODULES_SETTING, Freshness, Paging, Registry, catalogue, load_registry_modules

BUILT_IN: tuple[Registry, ...] = (
    population.REGISTRY,
    insurance.REGISTRY,
    civil_status.REGISTRY,
    business.REGISTRY,
)
"""The registries kho ships with, in catalogue order."""
REGISTRIES: tuple[Registry, ...] = catalogue(
    BUILT_IN + load_registry_modules(os.environ.get(MODULES_SETTING, "")))
ENTITIES: tuple[Entity, ...] = tuple(e for r in REGISTRIES for e in r.entities)


def registry(slug: str) -> Registry:
    """The registry with this slug; an unknown one is a configuration error that lists the known slugs.

    This function takes the name `kho.sources.registry` from the module of that name: import from the module with
    `from kho.sources.registry import ...` (`import kho.sources.registry as m` would bind this function)."""
    for candidate in REGISTRIES:
        if candidate.slug == slug:
            return candidate
    raise ConfigError(f"unknown registry {slug!r}; known registries: {', '.join(r.slug for r in REGISTRIES)}")


def entities_of(slug: str) -> tuple[Entity, ...]:
    """The entities one registry serves, in catalogue order; an unknown registry is a configuration error."""
    return registry(slug).entities


def get_entity(registry_slug: str, name: str) -> Entity:
    """Look an entity up by registry and name, with a message that lists what exists."""
    for entity in ENTITIES:
        if entity.registry == registry_slug and entity.name == name:
            return entity
    known = ", ".join(e.qualified_name for e in ENTITIES)
    raise ConfigError(f"unknown entity {registry_slug}.{name}; known entities: {known}")


__all__ = [
    "BUILT_IN", "ENTITIES", "EXPORT_DATE_FORMAT", "RAW_META_COLUMNS", "REGISTRIES", "CheckedBatch", "Dialect",
    "Entity", "Field", "Freshness", "Paging", "Registry", "RowCheck", "SchemaDrift", "check_table", "entities_of",
    "get_entity", "parse_field", "registry",
]
