"""The raw table of an entity, derived from its contract: contract columns plus load metadata."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from kho.sources.contract import RAW_META_COLUMNS, Entity

RAW_SCHEMA = "raw"
ROW_HASH = "_row_hash"
_META_TYPES = {
    "_extra": "jsonb",
    ROW_HASH: "bigint NOT NULL GENERATED ALWAYS AS ({row_hash}) STORED",
    "_batch_id": "bigint NOT NULL",
    "_first_batch_id": "bigint NOT NULL",
    "_loaded_at": "timestamptz NOT NULL DEFAULT now()",
}
META_COLUMNS = tuple((name, _META_TYPES[name]) for name in RAW_META_COLUMNS)
"""(name, type) of the load metadata columns; `{row_hash}` in a type stands for `row_hash(entity)`."""


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


def row_hash(entity: Entity, relation: str | None = None) -> sql.Composed:
    """The row hash: PostgreSQL's 64-bit record hash over the contract's typed values and `_extra`.

    It is the raw table's stored generated column, so every path that writes a row (COPY straight into the table
    on a first load, INSERT ... ON CONFLICT in a merge, where `EXCLUDED._row_hash` is the incoming row's) computes
    it from the one definition here; `relation` qualifies the columns, for hashing a staged row in a join. It works
    on typed values (a timestamptz as its instant), so unlike md5(ROW(...)::text) it does not change with the
    session's TimeZone, and it costs a third of md5's time.
    """
    names = [f.name for f in entity.fields] + ["_extra"]
    values = [sql.Identifier(*(relation, name) if relation else (name,)) for name in names]
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(values))


def _meta_column(entity: Entity, name: str, spec: str) -> sql.Composed:
    return sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(spec).format(row_hash=row_hash(entity)))


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
    columns += [_meta_column(entity, name, spec) for name, spec in META_COLUMNS]
    columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, entity.key))))
    table = raw_table(entity)
    return [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, sql.SQL(", ").join(columns)),
        batch_index(entity).create,
        sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(entity.description)),
    ]


def upgrade_raw_table(entity: Entity) -> sql.Composed:
    """Bring a raw table created before the row hash was a generated column up to date (idempotent).

    Older tables carried `_row_hash` as a plain column the loader filled; the value is the same expression, so the
    upgrade recomputes it in place of the old column (one rewrite of the table, once).
    """
    table = raw_table(entity)
    return sql.SQL(
        """
        DO $upgrade$ BEGIN
            IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = {name}::regclass AND attname = {column}
                       AND attgenerated = '') THEN
                ALTER TABLE {table} DROP COLUMN {hash}, ADD COLUMN {definition};
            END IF;
        END $upgrade$
        """
    ).format(name=sql.Literal(table.as_string()), column=sql.Literal(ROW_HASH), table=table,
             hash=sql.Identifier(ROW_HASH), definition=_meta_column(entity, ROW_HASH, _META_TYPES[ROW_HASH]))


def create_stage_table(entity: Entity, name: str) -> sql.Composed:
    """A temporary, transaction-scoped table that COPY fills before the merge."""
    columns: list[sql.Composable] = [
        sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(f.postgres_type)) for f in entity.fields
    ]
    columns.append(sql.SQL("_extra jsonb"))
    return sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        sql.Identifier(name), sql.SQL(", ").join(columns)
    )
