"""kho's own state in the warehouse (`kho` schema): batch ledger, quarantine and watermarks.

State lives beside the data so it fails over with it; Airflow Variables and XCom carry nothing that matters.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql

from kho.quality import QUALITY_RESULTS_DDL

STATE_DDL = (
    "CREATE SCHEMA IF NOT EXISTS kho",
    "CREATE SCHEMA IF NOT EXISTS raw",
    "CREATE SEQUENCE IF NOT EXISTS kho.batch_id_seq",
    """
    CREATE TABLE IF NOT EXISTS kho.load_ledger (
        batch_id        bigint PRIMARY KEY,
        registry        text NOT NULL,
        entity          text NOT NULL,
        source          text NOT NULL CHECK (source IN ('api', 'file')),
        run_id          text,
        started_at      timestamptz NOT NULL,
        finished_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
        cursor_from     timestamptz,
        cursor_to       timestamptz,
        rows_read       bigint NOT NULL CHECK (rows_read >= 0),
        rows_new        bigint NOT NULL CHECK (rows_new >= 0),
        rows_changed    bigint NOT NULL CHECK (rows_changed >= 0),
        rows_unchanged  bigint NOT NULL CHECK (rows_unchanged >= 0),
        rows_rejected   bigint NOT NULL CHECK (rows_rejected >= 0),
        rows_loaded     bigint GENERATED ALWAYS AS (rows_new + rows_changed) STORED,
        unknown_fields  text[] NOT NULL DEFAULT '{}',
        source_name     text,
        CONSTRAINT load_ledger_adds_up
            CHECK (rows_read = rows_new + rows_changed + rows_unchanged + rows_rejected)
    )
    """,
    "CREATE INDEX IF NOT EXISTS load_ledger_entity_idx ON kho.load_ledger (registry, entity, batch_id)",
    """
    CREATE TABLE IF NOT EXISTS kho.quarantine (
        quarantine_id   bigserial PRIMARY KEY,
        batch_id        bigint NOT NULL REFERENCES kho.load_ledger (batch_id) DEFERRABLE INITIALLY DEFERRED,
        registry        text NOT NULL,
        entity          text NOT NULL,
        record_key      text,
        reason_code     text NOT NULL,
        reason          text NOT NULL,
        payload         jsonb NOT NULL,
        quarantined_at  timestamptz NOT NULL DEFAULT now(),
        line_number     bigint,
        raw_record      bytea
    )
    """,
    # Columns added after the first release, added in place to a warehouse that lacks them, and described once.
    # Looked up first, so the usual case takes no lock and writes nothing (an ALTER would queue behind readers).
    """
    DO $$
    BEGIN
        IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'kho.load_ledger'::regclass
                       AND attname = 'source_name' AND NOT attisdropped) THEN
            ALTER TABLE kho.load_ledger ADD COLUMN source_name text;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'kho.quarantine'::regclass
                       AND attname = 'raw_record' AND NOT attisdropped) THEN
            ALTER TABLE kho.quarantine ADD COLUMN line_number bigint, ADD COLUMN raw_record bytea;
        END IF;
        IF col_description('kho.quarantine'::regclass, (SELECT attnum FROM pg_attribute
                           WHERE attrelid = 'kho.quarantine'::regclass AND attname = 'raw_record')) IS NULL THEN
            COMMENT ON COLUMN kho.load_ledger.source_name IS 'The export file a file batch read (null for API)';
            COMMENT ON COLUMN kho.quarantine.line_number IS
                'Line of the export file the record was on (a CSV header is line 1); null for API records';
            COMMENT ON COLUMN kho.quarantine.raw_record IS
                'The record as received: the file line''s bytes (line break excluded; a too-long line''s first '
                '4096 bytes), or an API record''s JSON';
        END IF;
    END
    $$
    """,
    "CREATE INDEX IF NOT EXISTS quarantine_batch_idx ON kho.quarantine (batch_id)",
    """
    CREATE TABLE IF NOT EXISTS kho.watermarks (
        registry      text NOT NULL,
        entity        text NOT NULL,
        cursor_value  timestamptz NOT NULL,
        batch_id      bigint NOT NULL REFERENCES kho.load_ledger (batch_id) DEFERRABLE INITIALLY DEFERRED,
        updated_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (registry, entity)
    )
    """,
)


def bootstrap(conn: psycopg.Connection) -> None:
    """Create kho's schemas and state tables if missing (idempotent, safe to run on every load)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('kho.bootstrap'))")
        for statement in (*STATE_DDL, QUALITY_RESULTS_DDL):
            conn.execute(statement)


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
