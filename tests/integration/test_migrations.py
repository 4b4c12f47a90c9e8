"""Versioned migrations on real PostgreSQL: the schema they make, adoption of a warehouse made before them, raw
tables that follow their contracts, and loads that refuse a warehouse that is behind.

The "old" schema below is the bootstrap SQL kho ran on every load before migrations existed (kho.load.state's
STATE_DDL, kho.quality's QUALITY_RESULTS_DDL, kho.build.publish's PUBLICATIONS_DDL and kho.load.ddl's
create_raw_table, as of commit e4a26a2), copied here so that the comparison does not depend on the code under test.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from psycopg import sql

from kho.cli import main
from kho.config import KhoConfig
from kho.errors import WarehouseError
from kho.load.batch import BatchLoader, LedgerEntry
from kho.load.pipeline import load_file
from kho.sources import ENTITIES, Field
from kho.sources.contract import Entity
from kho.sources.population import CITIZENS
from kho.warehouse import migrations
from kho.warehouse.connection import connect
from kho.warehouse.migrations import LATEST, MIGRATIONS, MigrationReport, migrate
from tests.integration.test_load import citizen, write_export_csv

pytestmark = pytest.mark.integration

# --- the schema as kho made it before migrations (copied, see the module docstring) ------------------------------

OLD_STATE_DDL = (
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
)
OLD_QUALITY_RESULTS_DDL = """
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
"""
OLD_PUBLICATIONS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS kho",
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
)
OLD_META_TYPES = (
    ("_extra", "jsonb"),
    ("_row_hash", "bigint NOT NULL GENERATED ALWAYS AS ({row_hash}) STORED"),
    ("_batch_id", "bigint NOT NULL"),
    ("_first_batch_id", "bigint NOT NULL"),
    ("_loaded_at", "timestamptz NOT NULL DEFAULT now()"),
)


def old_raw_table(entity: Entity) -> list[sql.Composed]:
    """kho.load.ddl.create_raw_table as it was: what every batch ran before migrations."""
    table = sql.Identifier("raw", entity.raw_table)
    row_hash = sql.SQL("hash_record_extended(ROW({}), 0)").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in (*[f.name for f in entity.fields], "_extra")))
    columns = [sql.SQL("{} {}{}").format(sql.Identifier(f.name), sql.SQL(f.postgres_type),
                                         sql.SQL(" NOT NULL" if f.required or f.name in entity.key else ""))
               for f in entity.fields]
    columns += [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(spec).format(row_hash=row_hash))
                for name, spec in OLD_META_TYPES]
    columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, entity.key))))
    index = f"{entity.raw_table}__batch_idx"
    return [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, sql.SQL(", ").join(columns)),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (_batch_id)").format(sql.Identifier(index), table),
        sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(entity.description)),
    ]


def make_old_warehouse(config: KhoConfig, entities: Sequence[Entity] = ENTITIES, *, lazy_tables: bool = True
                       ) -> None:
    """What kho made before migrations: the state tables, the raw tables of `entities` (those loaded), and, when
    a validation and a publication had run (`lazy_tables`), their tables."""
    with connect(config.warehouse, autocommit=True) as conn:
        for statement in OLD_STATE_DDL:
            conn.execute(statement)  # type: ignore[arg-type]
        if lazy_tables:
            conn.execute(OLD_QUALITY_RESULTS_DDL)  # type: ignore[arg-type]
            for statement in OLD_PUBLICATIONS_DDL:
                conn.execute(statement)  # type: ignore[arg-type]
        for entity in entities:
            for composed in old_raw_table(entity):
                conn.execute(composed)


# --- reading the database back --------------------------------------------------------------------------------

SCHEMA_SNAPSHOT = """
WITH rel AS (
    SELECT c.oid, n.nspname, c.relname, c.relkind, c.relowner FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname IN ('kho', 'raw') AND c.relname !~ %(exclude)s
)
SELECT jsonb_build_object(
    'schemas', (SELECT jsonb_agg(jsonb_build_array(nspname, pg_get_userbyid(nspowner)) ORDER BY nspname)
                FROM pg_namespace WHERE nspname IN ('kho', 'raw')),
    'relations', (SELECT jsonb_agg(jsonb_build_array(nspname, relname, relkind, pg_get_userbyid(relowner),
                                                     obj_description(oid, 'pg_class')) ORDER BY nspname, relname)
                  FROM rel),
    'columns', (SELECT jsonb_agg(jsonb_build_array(r.nspname, r.relname, CASE WHEN %(ordered)s THEN a.attnum END,
                                                   a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                                   a.attgenerated, a.attidentity, pg_get_expr(d.adbin, d.adrelid),
                                                   col_description(r.oid, a.attnum))
                                 ORDER BY r.nspname, r.relname, CASE WHEN %(ordered)s THEN a.attnum END, a.attname)
                FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum),
    'constraints', (SELECT jsonb_agg(jsonb_build_array(r.relname, c.conname, pg_get_constraintdef(c.oid))
                                     ORDER BY r.relname, c.conname)
                    FROM rel r JOIN pg_constraint c ON c.conrelid = r.oid),
    'indexes', (SELECT jsonb_agg(jsonb_build_array(schemaname, indexname, indexdef) ORDER BY schemaname, indexname)
                FROM pg_indexes WHERE schemaname IN ('kho', 'raw')
                AND indexname !~ %(exclude)s)
)
"""
"""Everything about the kho and raw schemas a migration could change, but the migrations' own record."""
MIGRATION_RECORDS = "^(schema_migrations|raw_table_migrations)"
SINCE_BASELINE = "^(schema_migrations|raw_table_migrations|quality_)"
"""What numbered migrations after the baseline made or reshaped: their record (2) and the quality gates' tables (3)."""


def schema(config: KhoConfig, *, ordered: bool = True, exclude: str = MIGRATION_RECORDS) -> dict[str, Any]:
    with connect(config.warehouse, autocommit=True) as conn:
        row = conn.execute(SCHEMA_SNAPSHOT, {"ordered": ordered,  # type: ignore[arg-type]
                                             "exclude": exclude}).fetchone()
    assert row is not None
    return dict(row[0])


def fetch(config: KhoConfig, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with connect(config.warehouse, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def data(config: KhoConfig, tables: Sequence[str]) -> dict[str, list[Any]]:
    """Every row of each table as JSON, in a stable order."""
    return {t: fetch(config, f"SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY to_jsonb(r)::text), '[]') FROM {t} r")
            for t in tables}


def migrated(config: KhoConfig, entities: Sequence[Entity] = ENTITIES) -> MigrationReport:
    with connect(config.warehouse, autocommit=True) as conn:
        return migrate(conn, entities)


def load(config: KhoConfig, records: list[dict[str, str | None]], entity: Entity = CITIZENS) -> LedgerEntry:
    with connect(config.warehouse) as conn, conn.transaction():
        loader = BatchLoader(conn, entity, "api")
        loader.add(pa.Table.from_pylist(records))
        return loader.finish()


def counts(entry: LedgerEntry) -> tuple[int, int, int, int, int]:
    return entry.rows_read, entry.rows_new, entry.rows_changed, entry.rows_unchanged, entry.rows_rejected


# --- an empty database ------------------------------------------------------------------------------------------

def test_migrate_on_an_empty_database_makes_the_schema_kho_made_before_migrations(
    empty_db_config: KhoConfig, fresh_db_config: KhoConfig
) -> None:
    """`fresh_db_config` is a migrated database; `empty_db_config` (another one) gets the old bootstrap SQL."""
    assert empty_db_config.warehouse.dbname != fresh_db_config.warehouse.dbname
    make_old_warehouse(empty_db_config)
    old, new = schema(empty_db_config, exclude=SINCE_BASELINE), schema(fresh_db_config, exclude=SINCE_BASELINE)
    assert new["relations"], "migrate made nothing"
    assert {r[1] for r in new["relations"] if r[0] == "raw"} >= {e.raw_table for e in ENTITIES}
    assert new == old


def test_migrate_records_each_migration_once_with_its_checksum_and_the_application_login(
    fresh_db_config: KhoConfig
) -> None:
    rows = fetch(fresh_db_config, "SELECT version, name, checksum, applied_by FROM kho.schema_migrations "
                                  "ORDER BY version")
    assert rows == [(m.version, m.name, m.checksum, fresh_db_config.warehouse.user) for m in MIGRATIONS]
    recorded = fetch(fresh_db_config, "SELECT table_name, shape_hash, cardinality(statements) FROM "
                                      "kho.raw_table_migrations ORDER BY table_name")
    assert recorded == sorted((e.raw_table, migrations.RawTable.of(e).shape_hash, 4) for e in ENTITIES)


def test_migrating_again_changes_nothing(fresh_db_config: KhoConfig) -> None:
    records = "SELECT (SELECT jsonb_agg(to_jsonb(m) ORDER BY version) FROM kho.schema_migrations m), " \
              "(SELECT jsonb_agg(to_jsonb(r) ORDER BY migration_id) FROM kho.raw_table_migrations r)"
    before = schema(fresh_db_config), fetch(fresh_db_config, records)
    report = migrated(fresh_db_config)
    assert (report.changed, report.adopted, report.version) == (False, False, LATEST)
    assert report.lines() == [f"nothing to migrate: {fresh_db_config.warehouse.dbname!r} is at migration {LATEST} "
                              "and every raw table matches its contract"]
    assert (schema(fresh_db_config), fetch(fresh_db_config, records)) == before


def test_two_migrators_at_once_one_waits_and_the_other_then_finds_nothing_to_do(empty_db_config: KhoConfig) -> None:
    reports: list[MigrationReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(migrated(empty_db_config))
        except BaseException as exc:  # handed over to the test's thread
            errors.append(exc)

    waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
               " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    with connect(empty_db_config.warehouse, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (migrations.LOCK,))
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while holder.execute(waiting).fetchone() != (2,):  # both queued behind the holder, then let go at once
            assert time.monotonic() < deadline, "the migrators never waited for the lock"
            time.sleep(0.01)
        holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (migrations.LOCK,))
        for thread in threads:
            thread.join(timeout=120)
    assert not errors
    assert sorted(r.changed for r in reports) == [False, True]
    first = next(r for r in reports if r.changed)
    assert [m.version for m in first.applied] == [m.version for m in MIGRATIONS]
    assert len(first.raw_tables) == len(ENTITIES)
    assert fetch(empty_db_config, "SELECT count(*) FROM kho.schema_migrations") == [(len(MIGRATIONS),)]


# --- refusals -----------------------------------------------------------------------------------------------------

def test_an_edited_migration_is_refused_in_one_line(fresh_db_config: KhoConfig,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    second = MIGRATIONS[1]
    edited = dataclasses.replace(second, statements=(*second.statements[:-1], "COMMENT ON TABLE "
                                                     "kho.raw_table_migrations IS 'said otherwise'"))
    monkeypatch.setattr(migrations, "MIGRATIONS", (MIGRATIONS[0], edited, *MIGRATIONS[2:]))
    before = schema(fresh_db_config)
    with pytest.raises(WarehouseError, match=rf"^migration {second.version} was edited after it was applied") as err:
        migrated(fresh_db_config)
    assert "\n" not in str(err.value)
    assert schema(fresh_db_config) == before


def test_reindenting_a_migration_is_not_an_edit() -> None:
    for migration in MIGRATIONS:
        reindented = dataclasses.replace(migration, statements=tuple("\n\t" + "  ".join(s.split(" ")) + " \n"
                                                                     for s in migration.statements))
        assert reindented.checksum == migration.checksum
        changed = dataclasses.replace(migration, statements=(*migration.statements, "SELECT 1"))
        assert changed.checksum != migration.checksum


def test_a_warehouse_migrated_by_a_newer_kho_is_refused_by_migrate_and_by_loads(fresh_db_config: KhoConfig) -> None:
    newer = LATEST + 1
    with connect(fresh_db_config.warehouse, autocommit=True) as conn:
        conn.execute("INSERT INTO kho.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                     (newer, "from a later kho", "0" * 64))
    with pytest.raises(WarehouseError, match=rf"has migration {newer} \(from a later kho\) applied, which this kho "
                                             rf"does not know") as err:
        migrated(fresh_db_config)
    assert "\n" not in str(err.value)
    with pytest.raises(WarehouseError, match=rf"at migration {newer}, newer than this kho knows \({LATEST}\)"):
        load(fresh_db_config, [citizen(1)])
    assert fetch(fresh_db_config, "SELECT count(*) FROM kho.load_ledger") == [(0,)]


# --- a warehouse made before migrations -------------------------------------------------------------------------

STATE_TABLES = ("kho.load_ledger", "kho.quarantine", "kho.watermarks", "kho.publications",
                "raw.population__citizens")
CITIZEN_COLUMNS = tuple(citizen(0))


def fill_old_warehouse(config: KhoConfig, people: Sequence[dict[str, str | None]]) -> None:
    """Rows as an old kho would have left them: a batch of citizens, a quarantined record, a watermark, a
    validation and a publication."""
    insert = sql.SQL("INSERT INTO raw.population__citizens ({}, _batch_id, _first_batch_id) VALUES ({}, 1, 1)").format(
        sql.SQL(", ").join(map(sql.Identifier, CITIZEN_COLUMNS)), sql.SQL(", ").join(sql.Placeholder() * len(
            CITIZEN_COLUMNS)))
    with connect(config.warehouse) as conn, conn.transaction():
        conn.execute("INSERT INTO kho.load_ledger (batch_id, registry, entity, source, started_at, rows_read, "
                     "rows_new, rows_changed, rows_unchanged, rows_rejected, unknown_fields, source_name) VALUES "
                     "(nextval('kho.batch_id_seq'), 'population', 'citizens', 'file', now(), %s, %s, 0, 0, 1, "
                     "'{ghi_chu}', 'day000.csv')", (len(people) + 1, len(people)))
        conn.cursor().executemany(insert, [tuple(p[c] for c in CITIZEN_COLUMNS) for p in people])
        conn.execute("INSERT INTO kho.quarantine (batch_id, registry, entity, record_key, reason_code, reason, "
                     "payload, line_number, raw_record) VALUES (1, 'population', 'citizens', '7', 'malformed', "
                     "'cccd: not 12 digits', '{\"cccd\": \"7\"}', 3, '7,Lê Văn Bảy'::bytea)")
        conn.execute("INSERT INTO kho.watermarks (registry, entity, cursor_value, batch_id) VALUES "
                     "('population', 'citizens', '2025-01-01T00:00:00Z', 1)")
        conn.execute("INSERT INTO kho.quality_results (suite_name, table_name, batch_id, success, evaluated, failed, "
                     "blocking_failed, results) VALUES ('raw.population__citizens', 'raw.population__citizens', 1, "
                     "true, 3, 0, 0, '[]')")
        conn.execute("INSERT INTO kho.publications (run_id, as_of, batch_seq, tables) VALUES ('day-0', "
                     "'2025-01-01', 1, '{}')")


def test_a_warehouse_made_before_migrations_is_adopted_with_its_data(
    empty_db_config: KhoConfig, fresh_db_config: KhoConfig
) -> None:
    people = [citizen(i) for i in range(6)]
    make_old_warehouse(empty_db_config, [CITIZENS])  # only the entity it had loaded has a raw table
    fill_old_warehouse(empty_db_config, people)
    rows_before = data(empty_db_config, STATE_TABLES)

    report = migrated(empty_db_config)

    assert report.adopted and report.lines()[0].startswith("adopted the kho schema")
    assert [m.version for m in report.applied] == [m.version for m in MIGRATIONS]
    adopted = {c.table: c.steps for c in report.raw_tables}
    assert adopted.pop(CITIZENS.raw_table) == ("gate view created",), "the existing raw table was changed"
    assert set(adopted) == {e.raw_table for e in ENTITIES} - {CITIZENS.raw_table}
    assert data(empty_db_config, STATE_TABLES) == rows_before
    assert fetch(empty_db_config, "SELECT suite_name, first_batch_id, last_batch_id, state, evaluated "
                                  "FROM kho.quality_validations") == [("raw.population__citizens", 1, 1, "passed", 3)]
    assert schema(empty_db_config) == schema(fresh_db_config)
    assert counts(load(empty_db_config, people)) == (6, 0, 0, 6, 0), "the stored row hashes no longer match"
    assert counts(load(empty_db_config, [citizen(6)])) == (1, 1, 0, 0, 0)
    assert fetch(empty_db_config, "SELECT max(batch_id) FROM kho.load_ledger") == [(3,)], "the batch ids restarted"


def test_a_warehouse_that_never_validated_or_published_gets_those_tables(
    empty_db_config: KhoConfig, fresh_db_config: KhoConfig
) -> None:
    make_old_warehouse(empty_db_config, ENTITIES, lazy_tables=False)
    assert fetch(empty_db_config, "SELECT to_regclass('kho.publications')") == [(None,)]
    assert migrated(empty_db_config).adopted
    assert schema(empty_db_config) == schema(fresh_db_config)


def plain_row_hash(config: KhoConfig, view: str | None = None) -> None:
    """Give the raw citizens the shape of an older kho still: `_row_hash` a plain column the loader filled."""
    with connect(config.warehouse, autocommit=True) as conn:
        conn.execute("ALTER TABLE raw.population__citizens DROP COLUMN _row_hash")
        conn.execute("ALTER TABLE raw.population__citizens ADD COLUMN _row_hash bigint")
        conn.execute("UPDATE raw.population__citizens SET _row_hash = 42")
        if view:
            conn.execute(sql.SQL("CREATE VIEW {} AS SELECT * FROM raw.population__citizens").format(
                sql.Identifier("public", view)))


def test_a_raw_table_from_before_the_generated_row_hash_is_upgraded_once(
    empty_db_config: KhoConfig, fresh_db_config: KhoConfig
) -> None:
    people = [citizen(i) for i in range(4)]
    make_old_warehouse(empty_db_config, [CITIZENS])
    fill_old_warehouse(empty_db_config, people)
    plain_row_hash(empty_db_config)

    first = migrated(empty_db_config)

    upgraded = next(c for c in first.raw_tables if c.table == CITIZENS.raw_table)
    assert upgraded.steps == ("row hash (re)generated over the contract's fields", "gate view created")
    assert fetch(empty_db_config, "SELECT count(*) FILTER (WHERE _row_hash = 42), count(*) "
                                  "FROM raw.population__citizens") == [(0, len(people))]
    assert schema(empty_db_config, ordered=False) == schema(fresh_db_config, ordered=False)
    assert not migrated(empty_db_config).changed
    entry = load(empty_db_config, [*people, citizen(1, full_name="Trần Văn Đổi")])
    assert counts(entry) == (5, 0, 1, 4, 0)


def test_an_old_raw_table_that_views_depend_on_says_what_to_drop(empty_db_config: KhoConfig) -> None:
    make_old_warehouse(empty_db_config, [CITIZENS])
    fill_old_warehouse(empty_db_config, [citizen(i) for i in range(2)])
    plain_row_hash(empty_db_config, view="stg_citizens")
    with pytest.raises(WarehouseError, match=r"view stg_citizens depends on column _row_hash.*Drop them.*"
                                             r"`kho warehouse migrate` again") as err:
        migrated(empty_db_config)
    assert "\n" not in str(err.value)
    assert fetch(empty_db_config, "SELECT count(*), min(_row_hash) FROM raw.population__citizens") == [(2, 42)]
    with pytest.raises(WarehouseError, match=r"raw.population__citizens was never migrated.*kho warehouse migrate"):
        load(empty_db_config, [citizen(3)])
    with connect(empty_db_config.warehouse, autocommit=True) as conn:
        conn.execute("DROP VIEW public.stg_citizens")
    changes = {c.table: c.steps for c in migrated(empty_db_config).raw_tables}
    assert changes[CITIZENS.raw_table] == ("row hash (re)generated over the contract's fields", "gate view created")


# --- contracts that change ----------------------------------------------------------------------------------------

PROBE = dataclasses.replace(CITIZENS, name="migration_probes", description="Citizens under a contract that changes.")
NICKNAME = Field("nickname", "text", max_length=50, description="What friends call them.")
PROBE_WITH_NICKNAME = dataclasses.replace(PROBE, fields=(*PROBE.fields, NICKNAME))


def test_a_field_added_to_a_contract_reaches_the_raw_table_through_migrate(empty_db_config: KhoConfig) -> None:
    migrated(empty_db_config, [PROBE])
    people = [citizen(i) for i in range(5)]
    assert counts(load(empty_db_config, people, PROBE)) == (5, 5, 0, 0, 0)

    with pytest.raises(WarehouseError, match=r"raw.population__migration_probes was migrated for another version "
                                             r"of its contract.*run `kho warehouse migrate`"):
        load(empty_db_config, people, PROBE_WITH_NICKNAME)
    report = migrated(empty_db_config, [PROBE_WITH_NICKNAME])

    assert [(c.table, c.steps) for c in report.raw_tables] == [(PROBE.raw_table, (
        "added column nickname text", "row hash (re)generated over the contract's fields", "gate view created"))]
    assert fetch(empty_db_config, "SELECT count(*), count(nickname) FROM raw.population__migration_probes") == [(5, 0)]
    assert counts(load(empty_db_config, people, PROBE_WITH_NICKNAME)) == (5, 0, 0, 5, 0)
    entry = load(empty_db_config, [citizen(1, nickname="Bé Ba")], PROBE_WITH_NICKNAME)
    assert counts(entry) == (1, 0, 1, 0, 0)
    assert fetch(empty_db_config, "SELECT nickname FROM raw.population__migration_probes WHERE nickname IS NOT NULL"
                 ) == [("Bé Ba",)]
    assert not migrated(empty_db_config, [PROBE_WITH_NICKNAME]).changed


def test_a_column_whose_type_differs_from_the_contract_is_refused(empty_db_config: KhoConfig) -> None:
    migrated(empty_db_config, [PROBE])
    retyped = dataclasses.replace(PROBE, fields=tuple(
        Field("ethnicity", "integer", minimum=0, maximum=100) if f.name == "ethnicity" else f for f in PROBE.fields))
    before = schema(empty_db_config)
    with pytest.raises(WarehouseError, match=r"raw.population__migration_probes.ethnicity is text but its contract "
                                             r"says bigint; kho does not convert a column") as err:
        migrated(empty_db_config, [retyped])
    assert "\n" not in str(err.value)
    assert schema(empty_db_config) == before


# --- loads and the command ----------------------------------------------------------------------------------------

def test_a_load_into_an_unmigrated_database_says_what_to_run_and_writes_nothing(
    empty_db_config: KhoConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_export_csv(tmp_path / "citizens.csv", [citizen(i) for i in range(3)])
    with pytest.raises(WarehouseError, match=r"has not been migrated: run `kho warehouse migrate`"):
        load_file(empty_db_config, CITIZENS, path)
    for key, value in empty_db_config.child_env().items():
        monkeypatch.setenv(key, value)
    assert main(["load", "population", "citizens", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("kho: error: ") and "`kho warehouse migrate`" in err[0]
    assert fetch(empty_db_config, "SELECT nspname FROM pg_namespace WHERE nspname IN ('kho', 'raw')") == []


def test_a_load_whose_raw_table_was_dropped_says_what_to_run(fresh_db_config: KhoConfig) -> None:
    with connect(fresh_db_config.warehouse, autocommit=True) as conn:
        conn.execute("DROP TABLE raw.population__citizens CASCADE")  # and its gate view
    with pytest.raises(WarehouseError, match=r"raw.population__citizens does not exist.*`kho warehouse migrate`"):
        load(fresh_db_config, [citizen(1)])
    assert [(c.table, c.steps[0]) for c in migrated(fresh_db_config).raw_tables] == [(CITIZENS.raw_table, "created")]
    assert counts(load(fresh_db_config, [citizen(1)])) == (1, 1, 0, 0, 0)


def test_kho_warehouse_migrate_prints_what_it_applied(
    empty_db_config: KhoConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in empty_db_config.child_env().items():
        monkeypatch.setenv(key, value)
    assert main(["warehouse", "migrate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ([f"applied migration {m.version}: {m.name}" for m in MIGRATIONS]
                   + [f"raw.{e.raw_table}: created; batch index created; comment set; gate view created"
                      for e in ENTITIES])
    assert main(["warehouse", "migrate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"nothing to migrate: {empty_db_config.warehouse.dbname!r} is at migration {LATEST} and every raw table "
        "matches its contract"]


def test_up_leaves_the_warehouse_database_migrated_and_owned_by_the_application(kho_config: KhoConfig) -> None:
    """The session's warehouse was made by `kho warehouse up`, as a user's is."""
    assert fetch(kho_config, "SELECT max(version) FROM kho.schema_migrations") == [(LATEST,)]
    assert {r[0] for r in fetch(kho_config, "SELECT DISTINCT table_name FROM kho.raw_table_migrations")} == {
        e.raw_table for e in ENTITIES}
    owners = fetch(kho_config, "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
                               "ON n.oid = c.relnamespace WHERE n.nspname IN ('kho', 'raw')")
    assert owners == [(kho_config.warehouse.user,)]


def test_a_migration_that_fails_is_rolled_back_whole_and_named(fresh_db_config: KhoConfig,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    broken = migrations.Migration(LATEST + 1, "a step that cannot run",
                                  ("CREATE TABLE kho.half_done (id int)", "ALTER TABLE kho.nowhere ADD COLUMN x int"))
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(WarehouseError, match=rf"^migration {LATEST + 1} \(a step that cannot run\) failed on .*"
                                             r"kho.nowhere.*rolled back") as err:
        migrated(fresh_db_config)
    assert "\n" not in str(err.value)
    assert fetch(fresh_db_config, "SELECT to_regclass('kho.half_done'), max(version) FROM kho.schema_migrations"
                 ) == [(None, LATEST)]


def test_a_connection_already_in_a_transaction_is_not_migrated(fresh_db_config: KhoConfig) -> None:
    with connect(fresh_db_config.warehouse) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(ValueError, match="outside a transaction"):
            migrate(conn)
