"""Content checksums of every replicated table, to compare a standby with its primary table by table.

A row count or one column's sum misses a changed value; an md5 over the text of every row does not. Rows are hashed
in the order of their own text (C collation), so the checksum depends on the content only: identical rows are
interchangeable, and no primary key is needed, which matters for tables (quality results, snapshots) that have none.
The text form of timestamps, dates and floats depends on session settings, so both sides fix them.

Built for the small warehouses of the test suite: each table is aggregated into one string on the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql

from kho.config import WarehouseConfig
from kho.warehouse.connection import connect_admin

TEXT_FORM = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}
"""Settings the text form of values depends on: the same on both nodes, whatever their configuration says."""

ROW = "_kho_checksummed_row"
"""The alias the row is read through; unlikely to shadow a column of the same name (a column would win)."""


@dataclass(frozen=True)
class TableChecksum:
    """One table's content: its rows and the md5 of their text, sorted."""

    rows: int
    md5: str


def replicated_tables(conn: psycopg.Connection, schemas: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(schema, table) of every permanent table and populated materialized view outside the system schemas.

    Unlogged and temporary tables are not replicated (a standby cannot even read them) and partitioned parents are
    compared through their partitions, so all three are left out.
    """
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p' AND c.relispopulated
          AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'
          AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY (%(schemas)s::text[]))
        ORDER BY 1, 2
        """,
        {"schemas": None if schemas is None else list(schemas)},
    ).fetchall()
    return [(str(schema), str(table)) for schema, table in rows]


def table_checksums(conn: psycopg.Connection, schemas: Iterable[str] | None = None) -> dict[str, TableChecksum]:
    """`schema.table` → its checksum, for every replicated table (of `schemas`, if given), in one snapshot.

    One REPEATABLE READ transaction, so the tables are read as of the same moment (allowed on a standby too).
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for name, value in TEXT_FORM.items():
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        result: dict[str, TableChecksum] = {}
        for schema, table in replicated_tables(conn, schemas):
            row = conn.execute(sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), '')) "
                "FROM (SELECT ROW({row}.*)::text AS r FROM {table} AS {row}) AS rows"
            ).format(table=sql.Identifier(schema, table), row=sql.Identifier(ROW))).fetchone()
            assert row is not None
            result[f"{schema}.{table}"] = TableChecksum(int(row[0]), str(row[1]))
    return result


def differences(primary: Mapping[str, TableChecksum], standby: Mapping[str, TableChecksum]
                ) -> dict[str, tuple[TableChecksum | None, TableChecksum | None]]:
    """Every table whose checksum differs between the two sides, or that only one side has."""
    return {name: (primary.get(name), standby.get(name)) for name in sorted(set(primary) | set(standby))
            if primary.get(name) != standby.get(name)}


def standby_index(wh: WarehouseConfig) -> int:
    """The listed node that is in recovery now (roles move on failover, so the position is looked up)."""
    for index in range(len(wh.hosts)):
        with connect_admin(wh, node_index=index) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and row[0]:
                return index
    raise AssertionError(f"no node of {list(zip(wh.hosts, wh.ports, strict=True))} is a standby")


def primary_and_standby_checksums(wh: WarehouseConfig, schemas: Iterable[str] | None = None
                                  ) -> tuple[dict[str, TableChecksum], dict[str, TableChecksum]]:
    """The checksums of `wh.dbname` on the primary and on the standby, read as the administrator.

    The administrator is a superuser, so row-level security (forced on published marts) hides no row from either
    side. The caller makes sure the standby has replayed what it wants compared (`wait_for_standby`).
    """
    wanted = None if schemas is None else list(schemas)
    with connect_admin(wh) as primary, connect_admin(wh, node_index=standby_index(wh)) as standby:
        return table_checksums(primary, wanted), table_checksums(standby, wanted)
