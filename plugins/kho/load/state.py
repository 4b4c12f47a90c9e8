"""kho's own state in the warehouse (`kho` schema): reading and moving the watermarks.

State lives beside the data so it fails over with it; Airflow Variables and XCom carry nothing that matters. The
tables (ledger, quarantine, watermarks) are made by `kho warehouse migrate` (kho.warehouse.migrations).
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql


def read_watermark(conn: psycopg.Connection, registry: str, entity: str) -> dt.datetime | None:
    """The largest `updated_at` committed for this entity (None before the first API load): the next sync's
    inclusive `updated_since`.

    Only the timestamp is kept, not the last (updated_at, *key): the registry contract promises completeness for
    an inclusive `updated_since`, not for a resumed cursor, and a record written later within the same second
    may sort before the last key read. Re-reading that second costs a few unchanged rows and loses nothing. The
    value only moves forward (GREATEST), in the same transaction as the batch that reached it (see
    `BatchLoader.finish`), so a backfill of an old interval never rewinds it.
    """
    row = conn.execute(
        sql.SQL("SELECT cursor_value FROM kho.watermarks WHERE registry = %s AND entity = %s"),
        (registry, entity),
    ).fetchone()
    return row[0] if row else None


def restore_watermark(conn: psycopg.Connection, registry: str, entity: str,
                      previous: tuple[dt.datetime, int] | None) -> None:
    """Put back the watermark a batch would have moved across a gap (call in that batch's transaction).

    A backfill of an interval that starts after the watermark commits its rows but must not claim the records
    before the interval as loaded; the next scheduled run still starts from `previous`.
    """
    if previous is None:
        conn.execute("DELETE FROM kho.watermarks WHERE registry = %s AND entity = %s", (registry, entity))
        return
    conn.execute("UPDATE kho.watermarks SET cursor_value = %s, batch_id = %s WHERE registry = %s AND entity = %s",
                 (previous[0], previous[1], registry, entity))


def read_watermark_row(conn: psycopg.Connection, registry: str, entity: str) -> tuple[dt.datetime, int] | None:
    """(cursor_value, batch_id) of the entity's watermark, or None before the first API load."""
    row = conn.execute("SELECT cursor_value, batch_id FROM kho.watermarks WHERE registry = %s AND entity = %s",
                       (registry, entity)).fetchone()
    return (row[0], int(row[1])) if row else None
