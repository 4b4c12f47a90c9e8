"""The warehouse's schema, changed once per change: kho's own tables as numbered migrations, the raw tables from
the contracts.

`migrate(conn)` (`kho warehouse migrate`, and every `kho warehouse up`) brings one warehouse database to what this
kho expects, under an advisory lock, each step in its own transaction and recorded; loads only check, once per
connection (`require_migrated`), and name the command when the warehouse is behind. The DDL of every table in the
`kho` schema is here and nowhere else.

This is the one module of `kho.warehouse` that reads `kho.sources`: a raw table is its contract's shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from kho.errors import WarehouseError
from kho.sources import ENTITIES
from kho.sources.contract import RAW_META_COLUMNS, Entity

log = logging.getLogger(__name__)

KHO_SCHEMA = "kho"
RAW_SCHEMA = "raw"
GATE_SCHEMA = "gate"
GATE_COLUMN = "_validation_id"
"""The gate views' column naming the validation a row is read for (GX's batch parameter)."""
GATE_VIEW_VERSION = 2
"""Part of every raw table's shape: bumping it makes `migrate` re-create each gate view."""
COMMAND = "kho warehouse migrate"
LOCK = "kho.migrate"
"""Advisory lock (hashtext) held for a whole `migrate`: a second migrator waits, then finds nothing to do."""


@dataclass(frozen=True)
class Migration:
    """One numbered change of kho's own tables. Once applied it is never edited: add the next one instead."""

    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        """sha256 of the statements, runs of whitespace folded (re-indenting is not an edit)."""
        text = "\n;\n".join(" ".join(s.split()) for s in self.statements)
        return hashlib.sha256(text.encode()).hexdigest()


LEDGER_DDL = (
    "CREATE SCHEMA IF NOT EXISTS kho",
    """
    CREATE TABLE IF NOT EXISTS kho.schema_migrations (
        version     integer     PRIMARY KEY CHECK (version > 0),
        name        text        NOT NULL,
        checksum    text        NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now(),
        applied_by  text        NOT NULL DEFAULT current_user
    )
    """,
    "COMMENT ON TABLE kho.schema_migrations IS 'The numbered migrations of the kho schema applied to this database "
    "(kho.warehouse.migrations): checksum of their statements as applied, when and by whom.'",
)
"""The migrations' own record, made before the first migration runs."""

BASELINE = Migration(1, "kho schema before versioned migrations: ledger, quarantine, watermarks, quality results, "
                        "publications", (
    # The statements kho ran on every load (and every validation, every publication) until migrations existed,
    # unchanged: on an empty database they make that schema, on a warehouse made by that code they change nothing
    # (adoption) and fill in what it made lazily, and the DO block brings a warehouse older still up to it.
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
    """
    CREATE TABLE IF NOT EXISTS kho.quality_results (
        result_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        suite_name       text        NOT NULL,
        table_name       text        NOT NULL,
        batch_id         bigint,
        success          boolean     NOT NULL,
        evaluated        integer     NOT NULL CHECK (evaluated >= 0),
        failed           integer     NOT NULL CHECK (failed BETWEEN 0 AND evaluated),
        blocking_failed  integer     NOT NULL CHECK (blocking_failed BETWEEN 0 AND failed),
        results          jsonb       NOT NULL,
        data_docs_path   text,
        validated_at     timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS kho.publications (
        publication_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id          text        NOT NULL,
        as_of           date        NOT NULL,
        batch_seq       bigint      NOT NULL CHECK (batch_seq >= 0),
        batches_oid     oid,
        published_at    timestamptz NOT NULL DEFAULT now(),
        tables          jsonb       NOT NULL
    )
    """,
    "COMMENT ON TABLE kho.publications IS 'One row per publication of the marts: the run, the as-of date the marts "
    "describe, when they became visible, and per table the rows inserted, updated and deleted.'",
))

MIGRATIONS: tuple[Migration, ...] = (
    BASELINE,
    Migration(2, "raw tables' migrations recorded with their contract's shape", (
        """
        CREATE TABLE kho.raw_table_migrations (
            migration_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            table_name    text        NOT NULL,
            shape_hash    text        NOT NULL,
            statements    text[]      NOT NULL,
            applied_at    timestamptz NOT NULL DEFAULT now(),
            applied_by    text        NOT NULL DEFAULT current_user
        )
        """,
        "CREATE INDEX raw_table_migrations_table_idx ON kho.raw_table_migrations (table_name, migration_id)",
        "COMMENT ON TABLE kho.raw_table_migrations IS 'Each change kho warehouse migrate made to a raw table to match "
        "its contract: the contract''s shape hash (loads refuse a table whose latest row has another) and the "
        "statements run (none: a table found as the contract describes it, adopted).'",
    )),
    Migration(3, "quality gates: a validation per run and table, a result per expectation, every flagged row", (
        "CREATE SCHEMA gate",
        "COMMENT ON SCHEMA gate IS 'One view per raw table: the rows of the validations running on it, which Great "
        "Expectations validates through it (a run''s batches at once)'",
        """
        CREATE TABLE kho.quality_validations (
            validation_id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id           text,
            suite_name       text        NOT NULL,
            table_name       text        NOT NULL,
            first_batch_id   bigint,
            last_batch_id    bigint,
            state            text        NOT NULL DEFAULT 'running'
                                         CHECK (state IN ('running', 'passed', 'warned', 'failed', 'abandoned')),
            rows_validated   bigint      CHECK (rows_validated >= 0),
            evaluated        integer     CHECK (evaluated >= 0),
            failed           integer     CHECK (failed BETWEEN 0 AND evaluated),
            blocking_failed  integer     CHECK (blocking_failed BETWEEN 0 AND failed),
            data_docs_path   text,
            started_at       timestamptz NOT NULL DEFAULT now(),
            finished_at      timestamptz,
            CHECK ((first_batch_id IS NULL) = (last_batch_id IS NULL)),
            CHECK (first_batch_id <= last_batch_id),
            CHECK ((state = 'running') = (finished_at IS NULL))
        )
        """,
        "CREATE INDEX quality_validations_running_idx ON kho.quality_validations (table_name) WHERE state = 'running'",
        "COMMENT ON TABLE kho.quality_validations IS 'One Great Expectations validation: a suite over a run''s batch "
        "range of a raw table (first..last batch id) or over a whole mart build table (no range); running while GX "
        "reads it through the gate view, then passed, warned (a warning failed) or failed (a blocking one did)'",
        "ALTER TABLE kho.quality_results RENAME TO quality_results_v2",
        """
        CREATE TABLE kho.quality_results (
            validation_id      bigint      NOT NULL REFERENCES kho.quality_validations ON DELETE CASCADE,
            expectation_index  integer     NOT NULL CHECK (expectation_index >= 0),
            run_id             text,
            suite_name         text        NOT NULL,
            table_name         text        NOT NULL,
            expectation_type   text        NOT NULL,
            column_name        text,
            rule               text,
            severity           text        NOT NULL CHECK (severity IN ('blocking', 'warning')),
            success            boolean     NOT NULL,
            unexpected_count   bigint      CHECK (unexpected_count >= 0),
            element_count      bigint      CHECK (element_count >= 0),
            first_batch_id     bigint,
            last_batch_id      bigint,
            validated_at       timestamptz NOT NULL,
            PRIMARY KEY (validation_id, expectation_index)
        )
        """,
        """
        INSERT INTO kho.quality_validations (validation_id, suite_name, table_name, first_batch_id, last_batch_id,
                                             state, evaluated, failed, blocking_failed, data_docs_path, started_at,
                                             finished_at)
        OVERRIDING SYSTEM VALUE
        SELECT result_id, suite_name, table_name, batch_id, batch_id,
               CASE WHEN blocking_failed > 0 THEN 'failed' WHEN failed > 0 THEN 'warned' ELSE 'passed' END,
               evaluated, failed, blocking_failed, data_docs_path, validated_at, validated_at
        FROM kho.quality_results_v2
        """,
        "SELECT setval(pg_get_serial_sequence('kho.quality_validations', 'validation_id'), "
        "coalesce(max(validation_id), 0) + 1, false) FROM kho.quality_validations",
        """
        INSERT INTO kho.quality_results (validation_id, expectation_index, suite_name, table_name, expectation_type,
                                         column_name, severity, success, unexpected_count, first_batch_id,
                                         last_batch_id, validated_at)
        SELECT v.result_id, e.n - 1, v.suite_name, v.table_name, e.r ->> 'type', e.r ->> 'column',
               coalesce(e.r ->> 'severity', 'blocking'), (e.r ->> 'success')::boolean,
               (e.r ->> 'unexpected_count')::bigint, v.batch_id, v.batch_id, v.validated_at
        FROM kho.quality_results_v2 AS v, jsonb_array_elements(v.results) WITH ORDINALITY AS e (r, n)
        """,
        "DROP TABLE kho.quality_results_v2",
        "CREATE INDEX quality_results_trend_idx ON kho.quality_results (suite_name, validated_at)",
        "COMMENT ON TABLE kho.quality_results IS 'Every expectation outcome of every validation: run, suite, "
        "expectation, severity, success, unexpected count and the batch range validated, for trends over time'",
        """
        CREATE TABLE kho.quality_flags (
            validation_id      bigint  NOT NULL,
            expectation_index  integer NOT NULL,
            table_name         text    NOT NULL,
            rule               text,
            row_key            jsonb   NOT NULL,
            batch_id           bigint,
            observed           jsonb   NOT NULL,
            FOREIGN KEY (validation_id, expectation_index) REFERENCES kho.quality_results ON DELETE CASCADE
        )
        """,
        "CREATE INDEX quality_flags_validation_idx ON kho.quality_flags (validation_id, expectation_index)",
        "CREATE INDEX quality_flags_row_idx ON kho.quality_flags (table_name, batch_id)",
        "COMMENT ON TABLE kho.quality_flags IS 'Every row that failed a warning expectation, found with SQL (GX "
        "reports a sample only): the row''s key and load batch, and the values the rule read'",
    )),
)
"""In order; the last one's version is what this kho needs."""
LATEST = MIGRATIONS[-1].version


# ------------------------------------------------------------------------------------------------- raw tables

ROW_HASH = "_row_hash"
_META_TYPES = {
    "_extra": "jsonb",
    ROW_HASH: "bigint NOT NULL GENERATED ALWAYS AS ({row_hash}) STORED",
    "_batch_id": "bigint NOT NULL",
    "_first_batch_id": "bigint NOT NULL",
    "_loaded_at": "timestamptz NOT NULL DEFAULT now()",
}
META_COLUMNS = tuple((name, _META_TYPES[name]) for name in RAW_META_COLUMNS)
"""(name, type) of the load metadata columns; `{row_hash}` in a type stands for the row hash expression."""


def row_hash(columns: Sequence[str], relation: str | None = None) -> sql.Composed:
    """The row hash: PostgreSQL's 64-bit record hash over the contract's typed values and `_extra`.

    It is the raw table's stored generated column, so every path that writes a row (COPY straight into the table
    on a first load, INSERT ... ON CONFLICT in a merge, where `EXCLUDED._row_hash` is the incoming row's) computes
    it from the one definition here; `relation` qualifies the columns, for hashing a staged row in a join. It works
    on typed values (a timestamptz as its instant), so unlike md5(ROW(...)::text) it does not change with the
    session's TimeZone, and it costs a third of md5's time.
    """
    values = [sql.Identifier(*(relation, name) if relation else (name,)) for name in (*columns, "_extra")]
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(values))


@dataclass(frozen=True)
class Index:
    name: str
    create: sql.Composed


def batch_index(table: str) -> Index:
    """A raw table's index on `_batch_id` (GX validates one batch at a time)."""
    name = f"{table}__batch_idx"
    return Index(name, sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (_batch_id)").format(
        sql.Identifier(name), sql.Identifier(RAW_SCHEMA, table)))


@dataclass(frozen=True)
class RawColumn:
    name: str
    type: str
    not_null: bool


@dataclass(frozen=True)
class RawTable:
    """`raw.<registry>__<entity>` as its contract describes it: the contract's fields, then the load metadata."""

    name: str
    columns: tuple[RawColumn, ...]
    key: tuple[str, ...]
    comment: str

    @classmethod
    def of(cls, entity: Entity) -> RawTable:
        columns = tuple(RawColumn(f.name, f.postgres_type, f.required or f.name in entity.key) for f in entity.fields)
        return cls(entity.raw_table, columns, entity.key, entity.description)

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(RAW_SCHEMA, self.name)

    @property
    def qualified(self) -> str:
        return f"{RAW_SCHEMA}.{self.name}"

    @property
    def row_hash(self) -> sql.Composed:
        return row_hash([c.name for c in self.columns])

    @property
    def shape_hash(self) -> str:
        """What the table's DDL depends on (not its comment): loads refuse a table migrated for another shape."""
        shape = {"columns": [[c.name, c.type, c.not_null] for c in self.columns], "key": list(self.key),
                 "meta": [list(m) for m in META_COLUMNS], "row_hash": self.row_hash.as_string(),
                 "index": batch_index(self.name).name, "gate": GATE_VIEW_VERSION}
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()

    def meta_column(self, name: str) -> sql.Composed:
        return sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_META_TYPES[name]).format(row_hash=self.row_hash))

    def create(self) -> list[sql.Composed]:
        columns = [sql.SQL("{} {}{}").format(sql.Identifier(c.name), sql.SQL(c.type),
                                             sql.SQL(" NOT NULL" if c.not_null else "")) for c in self.columns]
        columns += [self.meta_column(name) for name, _ in META_COLUMNS]
        columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, self.key))))
        return [
            sql.SQL("CREATE TABLE {} ({})").format(self.identifier, sql.SQL(", ").join(columns)),
            batch_index(self.name).create,
            self.set_comment(),
        ]

    def set_comment(self) -> sql.Composed:
        return sql.SQL("COMMENT ON TABLE {} IS {}").format(self.identifier, sql.Literal(self.comment))

    @property
    def gate(self) -> sql.Identifier:
        return sql.Identifier(GATE_SCHEMA, self.name)

    def drop_gate(self) -> sql.Composed:
        return sql.SQL("DROP VIEW IF EXISTS {}").format(self.gate)

    def create_gate(self) -> sql.Composed:
        """The gate view as `migrate` leaves it: no validation running, no row."""
        return gate_view(self.name)


def gate_view(raw_table: str, validation_id: int | None = None, batch_range: tuple[int, int] | None = None
              ) -> sql.Composed:
    """`gate.<table>`: the raw table's rows in the batch range of the validation running on it, tagged with the
    validation's id; none when `validation_id` is None. GX validates a run through it (kho.quality.runner replaces
    it, under a per-table lock, when a validation opens). The range is written in as constants so PostgreSQL plans it
    as it plans the table itself — a parallel scan of a run's million rows — where a view joining the running
    validations gave it a parameterised, serial index scan at 1.8x the time (measured)."""
    where = sql.SQL("false") if validation_id is None or batch_range is None else sql.SQL(
        "r._batch_id BETWEEN {} AND {}").format(sql.Literal(int(batch_range[0])), sql.Literal(int(batch_range[1])))
    tag = sql.SQL("NULL") if validation_id is None else sql.Literal(int(validation_id))
    return sql.SQL("CREATE OR REPLACE VIEW {gate} AS SELECT r.*, {tag}::bigint AS {column} FROM {table} AS r "
                   "WHERE {where}").format(gate=sql.Identifier(GATE_SCHEMA, raw_table), tag=tag,
                                           column=sql.Identifier(GATE_COLUMN),
                                           table=sql.Identifier(RAW_SCHEMA, raw_table), where=where)


@dataclass(frozen=True)
class _Found:
    """A raw table as the catalog has it."""

    columns: dict[str, tuple[str, bool, str, str | None]]
    """name → (type as format_type prints it, NOT NULL, attgenerated, default or generation expression)"""
    key: tuple[str, ...]
    has_batch_index: bool
    comment: str | None


@dataclass(frozen=True)
class Step:
    """One statement of a raw table's migration and what it does, in words."""

    what: str
    """In words; empty for a step that only makes room for another (dropping the gate view it re-creates)."""
    statement: sql.Composed


@dataclass(frozen=True)
class RawTableChange:
    table: str
    steps: tuple[str, ...]
    """What was done, in words; empty when an existing table matched its contract and was only recorded."""


@dataclass(frozen=True)
class MigrationReport:
    """What one `migrate` did."""

    database: str
    version: int
    adopted: bool
    """The kho tables existed without a migration record (made by kho before migrations): the baseline was recorded
    over them; its statements, all of them conditional, changed nothing that existed."""
    applied: tuple[Migration, ...]
    raw_tables: tuple[RawTableChange, ...]

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.raw_tables)

    def lines(self) -> list[str]:
        out = [f"adopted the kho schema of {self.database!r}, made before versioned migrations, as migration "
               f"{BASELINE.version}"] if self.adopted else []
        out += [f"applied migration {m.version}: {m.name}" for m in self.applied
                if not (self.adopted and m.version == BASELINE.version)]
        out += [f"raw.{c.table}: {'; '.join(c.steps) or 'matches its contract, recorded'}" for c in self.raw_tables]
        return out or [f"nothing to migrate: {self.database!r} is at migration {self.version} and every raw table "
                       "matches its contract"]


# ------------------------------------------------------------------------------------------------- migrate


def migrate(conn: psycopg.Connection[Any], entities: Sequence[Entity] = ENTITIES) -> MigrationReport:
    """Apply the migrations this database lacks, in order, then bring every entity's raw table to its contract.

    Each migration, and each raw table's change, is one transaction recorded with what it ran; the whole run holds
    an advisory lock. Refuses, in one line, a database migrated by a newer kho or a migration edited after it was
    applied. Needs a connection outside a transaction (it commits as it goes).
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("migrate commits each step: give it a connection outside a transaction")
    with _locked(conn):
        with conn.transaction():
            legacy = _exists(conn, "kho.load_ledger") and not _exists(conn, "kho.schema_migrations")
            if not _exists(conn, "kho.schema_migrations"):
                for statement in LEDGER_DDL:
                    conn.execute(statement)
            applied = _applied(conn)
        _check_applied(conn, applied)
        done = tuple(_apply(conn, m) for m in MIGRATIONS if m.version not in applied)
        raw = tuple(c for e in entities if (c := _migrate_raw_table(conn, RawTable.of(e))) is not None)
    _forget(conn)
    report = MigrationReport(conn.info.dbname, LATEST, legacy, done, raw)
    if legacy:
        log.info("%s: adopted the existing kho schema as migration %d", conn.info.dbname, BASELINE.version)
    return report


@contextmanager
def _locked(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A session advisory lock around several transactions (a transaction-scoped one would end with the first)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (LOCK,))
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (LOCK,))


def _exists(conn: psycopg.Connection[Any], relation: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return bool(row and row[0])


def _applied(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str]]:
    rows = conn.execute("SELECT version, name, checksum FROM kho.schema_migrations").fetchall()
    return {int(v): (str(n), str(c)) for v, n, c in rows}


def _check_applied(conn: psycopg.Connection[Any], applied: dict[int, tuple[str, str]]) -> None:
    known = {m.version: m for m in MIGRATIONS}
    newer = sorted(v for v in applied if v not in known)
    if newer:
        raise WarehouseError(
            f"the warehouse database {conn.info.dbname!r} has migration {newer[-1]} ({applied[newer[-1]][0]}) "
            f"applied, which this kho does not know (it knows 1 to {LATEST}): a newer kho migrated it; run that "
            "version of kho against it"
        )
    for version, (_, checksum) in sorted(applied.items()):
        if checksum != known[version].checksum:
            raise WarehouseError(
                f"migration {version} was edited after it was applied to {conn.info.dbname!r} (checksum "
                f"{checksum[:12]} recorded, {known[version].checksum[:12]} in this kho): put its statements back "
                "as they were and make the change a new migration"
            )


def _apply(conn: psycopg.Connection[Any], migration: Migration) -> Migration:
    try:
        with conn.transaction():
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO kho.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (migration.version, migration.name, migration.checksum))
    except psycopg.Error as exc:
        raise WarehouseError(
            f"migration {migration.version} ({migration.name}) failed on {conn.info.dbname!r}: {_first_line(exc)}; "
            "it was rolled back, the migrations before it stay applied"
        ) from exc
    log.info("%s: applied migration %d (%s)", conn.info.dbname, migration.version, migration.name)
    return migration


def _first_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip()) or type(exc).__name__


# ------------------------------------------------------------------------------------------------- raw tables


def _recorded_shape(conn: psycopg.Connection[Any], table: str) -> str | None:
    row = conn.execute("SELECT shape_hash FROM kho.raw_table_migrations WHERE table_name = %s "
                       "ORDER BY migration_id DESC LIMIT 1", (table,)).fetchone()
    return None if row is None else str(row[0])


def _migrate_raw_table(conn: psycopg.Connection[Any], table: RawTable) -> RawTableChange | None:
    """Create the table, or bring it to its contract from the differences the catalog shows; recorded."""
    with conn.transaction():
        recorded = _recorded_shape(conn, table.name)
        found = _found(conn, table)
        if recorded == table.shape_hash and found is not None and found.comment == table.comment:
            return None
        expected_hash = None if found is None else _deparsed_row_hash(conn, table)
    steps = (_create_steps(table) if found is None
             else _with_gate(table, _upgrade_steps(table, found, expected_hash, _types(conn)), recorded))
    if not steps and recorded == table.shape_hash:
        return None
    try:
        with conn.transaction():
            for step in steps:
                conn.execute(step.statement)
            conn.execute("INSERT INTO kho.raw_table_migrations (table_name, shape_hash, statements) "
                         "VALUES (%s, %s, %s)",
                         (table.name, table.shape_hash, [s.statement.as_string(conn) for s in steps]))
    except psycopg.errors.DependentObjectsStillExist as exc:
        detail = (exc.diag.message_detail or "").replace("\n", "; ")
        raise WarehouseError(
            f"{table.qualified} must be migrated (its row hash must cover its contract's fields) but other objects "
            f"depend on its {ROW_HASH} column: {detail}. Drop them (dbt's staging views are rebuilt by the next dbt "
            f"build) and run `{COMMAND}` again"
        ) from exc
    except psycopg.Error as exc:
        raise WarehouseError(f"migrating {table.qualified} to its contract failed: {_first_line(exc)}; it was "
                             "rolled back and stays as it was") from exc
    change = RawTableChange(table.name, tuple(s.what for s in steps if s.what))
    log.info("%s: %s", table.qualified, "; ".join(change.steps) or "matches its contract, recorded")
    return change


def _found(conn: psycopg.Connection[Any], table: RawTable) -> _Found | None:
    regclass = table.identifier.as_string(conn)
    if not _exists(conn, regclass):
        return None
    columns = {
        str(name): (str(typ), bool(not_null), str(generated), expr)
        for name, typ, not_null, generated, expr in conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated,"
            " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (regclass,)).fetchall()
    }
    key = conn.execute(
        "SELECT array_agg(a.attname::text ORDER BY k.n) FROM pg_index i"
        " CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary", (regclass,)).fetchone()
    index = sql.Identifier(RAW_SCHEMA, batch_index(table.name).name).as_string(conn)
    comment = conn.execute("SELECT obj_description(%s::regclass, 'pg_class')", (regclass,)).fetchone()
    return _Found(columns, tuple(key[0] or ()) if key else (), _exists(conn, index), comment[0] if comment else None)


def _types(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """The contract's PostgreSQL types as the catalog prints them (timestamptz → timestamp with time zone)."""
    with conn.transaction():
        rows = conn.execute("SELECT t, format_type(t::regtype, NULL) FROM unnest(%s::text[]) AS t",
                            (["text", "date", "timestamptz", "bigint", "numeric", "boolean", "jsonb"],)).fetchall()
    return {str(t): str(printed) for t, printed in rows}


def _deparsed_row_hash(conn: psycopg.Connection[Any], table: RawTable) -> str:
    """The contract's row hash expression as PostgreSQL prints a generated column's, so it compares with the
    catalog's exactly, whatever the server version prints (made in a temporary table, rolled back)."""
    columns: list[sql.Composable] = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type))
                                     for c in table.columns]
    columns += [sql.SQL("_extra jsonb"), table.meta_column(ROW_HASH)]
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("CREATE TEMP TABLE _kho_row_hash ({})").format(sql.SQL(", ").join(columns)))
        row = conn.execute("SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d"
                           " WHERE d.adrelid = 'pg_temp._kho_row_hash'::regclass").fetchone()
    assert row is not None
    return str(row[0])


def _create_steps(table: RawTable) -> list[Step]:
    create, index, comment = table.create()
    return [Step("created", create), Step("batch index created", index), Step("comment set", comment),
            Step("gate view created", table.create_gate())]


def _with_gate(table: RawTable, steps: list[Step], recorded: str | None) -> list[Step]:
    """An existing table's steps between dropping and re-creating its gate view (the view reads every column, so
    a column cannot change under it); the view alone when only the shape recorded before the view differs."""
    if not steps and recorded == table.shape_hash:
        return steps
    return [Step("", table.drop_gate()), *steps, Step("gate view created", table.create_gate())]


def _upgrade_steps(table: RawTable, found: _Found, expected_hash: str | None, types: dict[str, str]) -> list[Step]:
    """The statements that bring an existing table to its contract. Columns are added, never dropped or
    converted: a field the contract no longer has keeps its column (made nullable), and a column whose type
    differs from the contract's is refused, for a numbered migration to convert."""
    target, steps = table.identifier, []
    wanted = {c.name: c for c in table.columns}
    for column in table.columns:
        if column.name not in found.columns:  # nullable: the rows already loaded predate the field
            steps.append(Step(f"added column {column.name} {column.type}", sql.SQL("ALTER TABLE {} ADD COLUMN {} {}")
                              .format(target, sql.Identifier(column.name), sql.SQL(column.type))))
        elif found.columns[column.name][0] != types[column.type]:
            raise WarehouseError(
                f"{table.qualified}.{column.name} is {found.columns[column.name][0]} but its contract says "
                f"{column.type}; kho does not convert a column: add a numbered migration that does "
                "(kho.warehouse.migrations), then run `kho warehouse migrate`")
    loose = [name for name, (_, not_null, _, _) in found.columns.items()
             if not_null and name not in dict(META_COLUMNS) and not (name in wanted and wanted[name].not_null)]
    steps += [Step(f"{name} may be null (the contract does not require it)", sql.SQL(
        "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(target, sql.Identifier(name))) for name in loose]
    steps += _meta_steps(table, found, expected_hash)
    return steps + _key_and_index_steps(table, found)


def _meta_steps(table: RawTable, found: _Found, expected_hash: str | None) -> list[Step]:
    target, steps = table.identifier, []
    for name, _ in META_COLUMNS:
        if name != ROW_HASH and name not in found.columns:
            steps.append(Step(f"added column {name}", sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(
                target, table.meta_column(name))))
    stored = found.columns.get(ROW_HASH)
    if stored is None or stored[2] != "s" or stored[3] != expected_hash:
        drop = sql.SQL("DROP COLUMN {}, ").format(sql.Identifier(ROW_HASH)) if stored is not None else sql.SQL("")
        steps.append(Step("row hash (re)generated over the contract's fields", sql.SQL("ALTER TABLE {} {}ADD COLUMN {}")
                          .format(target, drop, table.meta_column(ROW_HASH))))
    return steps


def _key_and_index_steps(table: RawTable, found: _Found) -> list[Step]:
    target, steps = table.identifier, []
    if found.key and found.key != table.key:
        raise WarehouseError(
            f"{table.qualified} is keyed on ({', '.join(found.key)}) but its contract on ({', '.join(table.key)}); "
            "kho does not re-key a table that holds rows: add a numbered migration that does, then run "
            "`kho warehouse migrate`")
    if not found.key:
        steps.append(Step("primary key added", sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
            target, sql.SQL(", ").join(map(sql.Identifier, table.key)))))
    if not found.has_batch_index:
        steps.append(Step("batch index created", batch_index(table.name).create))
    if found.comment != table.comment:
        steps.append(Step("comment set", table.set_comment()))
    return steps


# ------------------------------------------------------------------------------------------------- checks

_checked: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[str]] = weakref.WeakKeyDictionary()
"""What `require_*` found migrated, per connection: the check runs once per connection, not per batch."""
_SCHEMA = ""


def _forget(conn: psycopg.Connection[Any]) -> None:
    _checked.pop(conn, None)


def require_schema(conn: psycopg.Connection[Any]) -> None:
    """Refuse, in one line naming `kho warehouse migrate`, a database whose kho schema is not this kho's."""
    seen = _checked.setdefault(conn, set())
    if _SCHEMA in seen:
        return
    with conn.transaction():
        version = _version(conn)
    database = conn.info.dbname
    if version is None:
        raise WarehouseError(f"the warehouse database {database!r} has not been migrated: run `{COMMAND}` (or "
                             "`kho warehouse up`) first")
    if version < LATEST:
        raise WarehouseError(f"the warehouse database {database!r} is at migration {version} and this kho needs "
                             f"{LATEST}: run `{COMMAND}`")
    if version > LATEST:
        raise WarehouseError(f"the warehouse database {database!r} is at migration {version}, newer than this kho "
                             f"knows ({LATEST}): a newer kho migrated it; run that version of kho against it")
    seen.add(_SCHEMA)


def _version(conn: psycopg.Connection[Any]) -> int | None:
    if not _exists(conn, "kho.schema_migrations"):
        return None
    row = conn.execute("SELECT coalesce(max(version), 0) FROM kho.schema_migrations").fetchone()
    return int(row[0]) if row else 0


def require_migrated(conn: psycopg.Connection[Any], entity: Entity) -> None:
    """Refuse, in one line naming `kho warehouse migrate`, to load `entity` into a database not migrated for it:
    the kho schema at this kho's version, and the raw table there and recorded with its contract's shape."""
    require_schema(conn)
    seen = _checked[conn]
    if entity.raw_table in seen:
        return
    table = RawTable.of(entity)
    with conn.transaction():
        recorded = _recorded_shape(conn, table.name)
        exists = _exists(conn, table.identifier.as_string(conn))
    if not exists or recorded != table.shape_hash:
        why = ("does not exist" if not exists else "was never migrated" if recorded is None
               else "was migrated for another version of its contract")
        raise WarehouseError(f"{table.qualified} {why}; loading {entity.qualified_name} needs it as this kho's "
                             f"contract describes it: run `{COMMAND}`")
    seen.add(entity.raw_table)
