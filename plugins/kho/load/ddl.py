"""The raw table of an entity, derived from its contract: contract columns plus load metadata."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from kho.sources.contract import RAW_META_COLUMNS, Entity

RAW_SCHEMA = "raw"
_META_TYPES = {
    "_extra": "jsonb",
    "_row_hash": "bigint NOT NULL",
    "_batch_id": "bigint NOT NULL",
    "_first_batch_id": "bigint NOT NULL",
    "_loaded_at": "timestamptz NOT NULL DEFAULT now()",
}
META_COLUMNS = tuple((name, _META_TYPES[name]) for name in RAW_META_COLUMNS)


def raw_table(entity: Entity) -> sql.Identifier:
    return sql.Identifier(RAW_SCHEMA, entity.raw_table)


@dataclass(frozen=True)
class Index:
    name: str
    create: sql.Composed


def batch_index(entity: Entity) -> Index:
    """The raw table's index on `_batch_id` (GX validates one batch at a time)."""
    name = f"{entity.raw_table}__batch_idx"
    return Index(name, sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (_batch_id)").format(
        sql.Identifier(name), raw_table(entity)))


def create_raw_table(entity: Entity) -> list[sql.Composed]:
    """CREATE statements for `raw.<registry>__<entity>` (idempotent)."""
    columns = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(f.name),
            sql.SQL(f.postgres_type),
            sql.SQL(" NOT NULL" if f.required or f.name in entity.key else ""),
        )
        for f in entity.fields
    ]
    columns += [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(spec)) for name, spec in META_COLUMNS]
    columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, entity.key))))
    table = raw_table(entity)
    return [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, sql.SQL(", ").join(columns)),
        batch_index(entity).create,
        sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(entity.description)),
    ]


def create_stage_table(entity: Entity, name: str) -> sql.Composed:
    """A temporary, transaction-scoped table that COPY fills before the merge."""
    columns: list[sql.Composable] = [
        sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(f.postgres_type)) for f in entity.fields
    ]
    columns.append(sql.SQL("_extra jsonb"))
    return sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        sql.Identifier(name), sql.SQL(", ").join(columns)
    )
