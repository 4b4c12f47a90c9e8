"""Every registry kho reads, described once: `kho.sources.ENTITIES` is the catalogue the other stages read."""

from __future__ import annotations

from kho.errors import ConfigError
from kho.sources import population
from kho.sources.contract import CheckedBatch, Entity, Field, RowCheck, SchemaDrift, check_table

ENTITIES: tuple[Entity, ...] = population.ENTITIES
REGISTRIES: tuple[str, ...] = tuple(dict.fromkeys(e.registry for e in ENTITIES))


def get_entity(registry: str, name: str) -> Entity:
    """Look an entity up by registry and name, with a message that lists what exists."""
    for entity in ENTITIES:
        if entity.registry == registry and entity.name == name:
            return entity
    known = ", ".join(e.qualified_name for e in ENTITIES)
    raise ConfigError(f"unknown entity {registry}.{name}; known entities: {known}")


__all__ = [
    "ENTITIES", "REGISTRIES", "CheckedBatch", "Entity", "Field", "RowCheck", "SchemaDrift", "check_table",
    "get_entity",
]
