"""The raw table of an entity as the loader addresses it. Its DDL (contract columns plus load metadata) lives in
`kho.warehouse.migrations`, which `kho warehouse migrate` applies; the loader only checks that it did."""

from __future__ import annotations

from psycopg import sql

from kho.sources.contract import Entity
from kho.warehouse import migrations
from kho.warehouse.migrations import META_COLUMNS, RAW_SCHEMA, ROW_HASH, Index

__all__ = ["META_COLUMNS", "RAW_SCHEMA", "ROW_HASH", "Index", "batch_index", "create_stage_table", "raw_table",
           "row_hash"]


def raw_table(entity: Entity) -> sql.Identifier:
    return sql.Identifier(RAW_SCHEMA, entity.raw_table)


def batch_index(entity: Entity) -> Index:
    """The raw table's index on `_batch_id`, which a first load drops and builds again (see `BatchLoader`)."""
    return migrations.batch_index(entity.raw_table)


def row_hash(entity: Entity, relation: str | None = None) -> sql.Composed:
    """The raw table's row hash expression (`kho.warehouse.migrations.row_hash`), for hashing a staged row."""
    return migrations.row_hash(entity.field_names, relation)


def create_stage_table(entity: Entity, name: str) -> sql.Composed:
    """A temporary, transaction-scoped table that COPY fills before the merge."""
    columns: list[sql.Composable] = [
        sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(f.postgres_type)) for f in entity.fields
    ]
    columns.append(sql.SQL("_extra jsonb"))
    return sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        sql.Identifier(name), sql.SQL(", ").join(columns)
    )
