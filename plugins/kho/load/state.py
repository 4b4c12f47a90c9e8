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
        quarantined_at  timestamptz NOT NULL DEFAULT now()
    )
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
    """The cursor value up to which this entity has been committed, or None before the first load."""
    row = conn.execute(
        sql.SQL("SELECT cursor_value FROM kho.watermarks WHERE registry = %s AND entity = %s"),
        (registry, entity),
    ).fetchone()
    return row[0] if row else None
