"""Every registry kho reads, described once: `kho.sources.ENTITIES` is the catalogue the other stages read."""

from __future__ import annotations

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

REGISTRIES: tuple[str, ...] = (population.REGISTRY, insurance.REGISTRY, civil_status.REGISTRY, business.REGISTRY)
ENTITIES: tuple[Entity, ...] = (*population.ENTITIES, *insurance.ENTITIES, *civil_status.ENTITIES, *business.ENTITIES)


def entities_of(registry: str) -> tuple[Entity, ...]:
    """The entities one registry serves, in catalogue order; an unknown registry is a configuration error."""
    if registry not in REGISTRIES:
        raise ConfigError(f"unknown registry {registry!r}; known registries: {', '.join(REGISTRIES)}")
    return tuple(e for e in ENTITIES if e.registry == registry)


def get_entity(registry: str, name: str) -> Entity:
    """Look an entity up by registry and name, with a message that lists what exists."""
    for entity in ENTITIES:
        if entity.registry == registry and entity.name == name:
            return entity
    known = ", ".join(e.qualified_name for e in ENTITIES)
    raise ConfigError(f"unknown entity {registry}.{name}; known entities: {known}")


__all__ = [
    "ENTITIES", "EXPORT_DATE_FORMAT", "RAW_META_COLUMNS", "REGISTRIES", "CheckedBatch", "Dialect", "Entity", "Field",
    "RowCheck", "SchemaDrift", "check_table", "entities_of", "get_entity", "parse_field",
]
