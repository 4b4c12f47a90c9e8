"""One load batch: check → quarantine rejects → COPY accepted rows → merge by key and row hash → ledger row.

A batch is one database transaction. The merge, the ledger row, the quarantined rows and the watermark commit
together or not at all, so a worker killed mid-load leaves nothing behind and the retry starts clean.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from kho.errors import ContractError, LedgerMismatch
from kho.load.ddl import RAW_SCHEMA, batch_index, create_raw_table, create_stage_table, raw_table
from kho.sources.contract import CheckedBatch, Dialect, Entity, SchemaDrift, check_table, parse_field

Source = Literal["api", "file"]
STAGE = "_kho_stage"
COPY_CHUNK_ROWS = 65_536
INDEX_BUILD_MEMORY = "256MB"
"""maintenance_work_mem for building the key after a first load: the sort of 10M keys fits."""


@dataclass(frozen=True)
class LedgerEntry:
    """What one batch did; `read == new + changed + unchanged + rejected` always holds."""

    batch_id: int
    registry: str
    entity: str
    source: Source
    rows_read: int
    rows_new: int
    rows_changed: int
    rows_unchanged: int
    rows_rejected: int
    cursor_from: dt.datetime | None
    cursor_to: dt.datetime | None
    unknown_fields: tuple[str, ...]

    @property
    def rows_loaded(self) -> int:
        return self.rows_new + self.rows_changed

    def summary(self) -> str:
        return (
            f"batch {self.batch_id} {self.registry}.{self.entity}: read {self.rows_read} = new {self.rows_new}"
            f" + changed {self.rows_changed} + unchanged {self.rows_unchanged} + rejected {self.rows_rejected}"
        )


@dataclass
class BatchLoader:
    """Accumulates Arrow tables into one transaction-scoped batch; `finish()` merges and writes the ledger."""

    conn: psycopg.Connection
    entity: Entity
    source: Source
    run_id: str | None = None
    cursor_from: dt.datetime | None = None
    dialect: Dialect = Dialect.API
    batch_id: int = 0
    rows_read: int = 0
    rows_rejected: int = 0
    cursor_to: dt.datetime | None = None
    unknown_fields: dict[str, None] = field(default_factory=dict)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    fast_first_load: bool = True
    """Into an empty raw table, insert without the key's index and build it afterwards (see `_load_into_empty`)."""
    _checker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "kho-check"), repr=False)
    _pending: Future[_Prepared] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.conn.autocommit:
            raise ValueError("BatchLoader needs a connection in a transaction (autocommit=False)")
        for statement in create_raw_table(self.entity):
            self.conn.execute(statement)
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"kho.load:{self.entity.qualified_name}",))
        row = self.conn.execute("SELECT nextval('kho.batch_id_seq')").fetchone()
        assert row is not None
        self.batch_id = int(row[0])
        self.conn.execute(create_stage_table(self.entity, STAGE))

    def add(self, table: pa.Table) -> None:
        """Check one Arrow table (wire text) and stage it; rejects go to quarantine.

        Checking and CSV encoding run on a worker thread (Arrow releases the GIL) while this thread COPYs the
        previous table, so the Python and PostgreSQL sides overlap; only this thread ever touches the connection.
        """
        if table.num_rows == 0:
            return
        self._check_shape(table)
        self.rows_read += table.num_rows
        submitted = self._checker.submit(_prepare, self.entity, table, self.dialect)
        self._drain()
        self._pending = submitted

    def finish(self) -> LedgerEntry:
        """Merge the staged rows into the raw table and write the ledger row (and watermark) in this transaction."""
        self._drain()
        self._checker.shutdown()
        staged_row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(STAGE))).fetchone()
        assert staged_row is not None
        staged = int(staged_row[0])
        new, changed = self._merge_staged() if staged else (0, 0)
        entry = LedgerEntry(
            batch_id=self.batch_id, registry=self.entity.registry, entity=self.entity.name, source=self.source,
            rows_read=self.rows_read, rows_new=new, rows_changed=changed,
            rows_unchanged=staged - new - changed, rows_rejected=self.rows_rejected,
            cursor_from=self.cursor_from, cursor_to=self.cursor_to, unknown_fields=tuple(self.unknown_fields),
        )
        if entry.rows_read != entry.rows_new + entry.rows_changed + entry.rows_unchanged + entry.rows_rejected:
            raise LedgerMismatch(f"{entry.summary()} does not add up; the batch was rolled back")
        self._write_ledger(entry)
        return entry

    def _drain(self) -> None:
        """Stage the table the worker finished: quarantine its rejects, COPY its accepted rows."""
        if self._pending is None:
            return
        prepared, self._pending = self._pending.result(), None
        checked = prepared.checked
        self.unknown_fields.update(dict.fromkeys(checked.unknown_fields))
        self._advance_cursor(checked)
        if checked.rejected.num_rows:
            self._quarantine(checked.rejected)
        if prepared.csv_chunks:
            _copy_csv(self.conn, sql.Identifier(STAGE), checked.accepted.column_names, prepared.csv_chunks)

    def _check_shape(self, table: pa.Table) -> None:
        """Batch-level contract rules: a required column missing entirely, or drift the policy forbids."""
        missing = [name for name in self.entity.required_fields if name not in table.column_names]
        if missing:
            raise ContractError(
                f"registry {self.entity.registry}, entity {self.entity.name}, batch {self.batch_id}: required "
                f"field(s) {', '.join(missing)} absent from the data (schema drift?). The batch was rejected and "
                "nothing was loaded; update the contract in kho.sources or ask the registry to restore the field."
            )
        unknown = [c for c in table.column_names if c not in self.entity.field_names]
        if unknown and self.entity.drift is SchemaDrift.FREEZE:
            raise ContractError(
                f"registry {self.entity.registry}, entity {self.entity.name}, batch {self.batch_id}: unknown "
                f"field(s) {', '.join(unknown)} and the drift policy is FREEZE. The batch was rejected; add the "
                "field(s) to the contract in kho.sources or relax the policy."
            )

    def _advance_cursor(self, checked: CheckedBatch) -> None:
        """The newest cursor value read, rejected rows included; accepted rows are already typed (no re-parse)."""
        name = self.entity.cursor
        tops = [pc.max(checked.accepted.column(name)).as_py()] if name in checked.accepted.column_names else []
        if name in checked.rejected.column_names and checked.rejected.num_rows:
            tops.append(pc.max(parse_field(self.entity.field(name), checked.rejected.column(name))).as_py())
        for top in tops:
            if top is not None and (self.cursor_to is None or top > self.cursor_to):
                self.cursor_to = top

    def _quarantine(self, rejected: pa.Table) -> None:
        """Rejected rows keep their raw payload, reason and batch id. Rejects are few: per-row JSON is fine here."""
        self.rows_rejected += rejected.num_rows
        key = self.entity.key
        payload_cols = [c for c in rejected.column_names if not c.startswith("_reason")]
        rows = rejected.to_pylist()
        with self.conn.cursor().copy(
            "COPY kho.quarantine (batch_id, registry, entity, record_key, reason_code, reason, payload) FROM STDIN"
        ) as copy:
            for r in rows:
                record_key = "|".join("" if r.get(k) is None else str(r[k]) for k in key)
                payload = json.dumps({c: r[c] for c in payload_cols}, ensure_ascii=False, default=str)
                copy.write_row((self.batch_id, self.entity.registry, self.entity.name, record_key or None,
                                r["_reason_code"], r["_reason"], payload))

    def _merge_staged(self) -> tuple[int, int]:
        """(new, changed): the fast first load when the raw table is empty, else the general merge."""
        if self.fast_first_load and self._target_is_empty():
            try:
                with self.conn.transaction():  # a savepoint: duplicate keys undo only this attempt
                    return self._load_into_empty(), 0
            except psycopg.errors.UniqueViolation:
                pass  # the batch repeats a key: the merge keeps each key's newest version and counts the rest
        return self._merge()

    def _target_is_empty(self) -> bool:
        row = self.conn.execute(
            sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(raw_table(self.entity))).fetchone()
        return bool(row and row[0])

    def _load_into_empty(self) -> int:
        """Insert every staged row into the empty raw table, then build its primary key and batch index.

        Bulk-building an index after the data is several times cheaper than maintaining it row by row through
        INSERT ... ON CONFLICT. Building the key fails on a repeated key, which sends the batch to `_merge`.
        The DDL holds the raw table's ACCESS EXCLUSIVE lock until commit (it is empty, so readers lose nothing).
        """
        entity, target = self.entity, raw_table(self.entity)
        row = self.conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (f"{target.as_string(self.conn)}",),
        ).fetchone()
        assert row is not None, f"{entity.raw_table} has no primary key"
        pkey = sql.Identifier(str(row[0]))
        index = batch_index(entity)
        self.conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(target, pkey))
        self.conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(RAW_SCHEMA, index.name)))
        cols = sql.SQL(", ").join(sql.Identifier(f.name) for f in entity.fields)
        inserted = self.conn.execute(sql.SQL(
            """
            INSERT INTO {target} ({cols}, _extra, _row_hash, _batch_id, _first_batch_id, _loaded_at)
            SELECT {cols}, s._extra, {row_hash}, %(batch)s, %(batch)s, now() FROM {stage} AS s
            """
        ).format(target=target, cols=cols, row_hash=_row_hash(entity), stage=sql.Identifier(STAGE)),
            {"batch": self.batch_id}).rowcount
        self.conn.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        self.conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            target, pkey, sql.SQL(", ").join(map(sql.Identifier, entity.key))))
        self.conn.execute(index.create)
        return inserted

    def _merge(self) -> tuple[int, int]:
        """Upsert the newest staged version of each key; only rows whose hash changed are written."""
        entity = self.entity
        cols = [sql.Identifier(f.name) for f in entity.fields]
        col_list = sql.SQL(", ").join(cols)
        key_list = sql.SQL(", ").join(map(sql.Identifier, entity.key))
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
            for name in (*entity.field_names, "_extra", "_row_hash", "_batch_id", "_loaded_at")
            if name not in entity.key
        )
        query = sql.SQL(
            """
            WITH src AS (
                SELECT DISTINCT ON ({key_list}) s.*, {row_hash} AS _row_hash
                FROM {stage} AS s
                ORDER BY {key_list}, s.{cursor} DESC NULLS LAST
            ), merged AS (
                INSERT INTO {target} AS t ({col_list}, _extra, _row_hash, _batch_id, _first_batch_id, _loaded_at)
                SELECT {col_list}, _extra, _row_hash, %(batch)s, %(batch)s, now() FROM src
                ON CONFLICT ({key_list}) DO UPDATE SET {assignments}
                WHERE t._row_hash IS DISTINCT FROM EXCLUDED._row_hash
                  AND (t.{cursor} IS NULL OR t.{cursor} <= EXCLUDED.{cursor})
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged
            """
        ).format(
            key_list=key_list, row_hash=_row_hash(entity), stage=sql.Identifier(STAGE),
            cursor=sql.Identifier(entity.cursor),
            target=raw_table(entity), col_list=col_list, assignments=assignments,
        )
        row = self.conn.execute(query, {"batch": self.batch_id}).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def _write_ledger(self, entry: LedgerEntry) -> None:
        self.conn.execute(
            """
            INSERT INTO kho.load_ledger (batch_id, registry, entity, source, run_id, started_at, cursor_from,
                cursor_to, rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected, unknown_fields)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (entry.batch_id, entry.registry, entry.entity, entry.source, self.run_id, self.started_at,
             entry.cursor_from, entry.cursor_to, entry.rows_read, entry.rows_new, entry.rows_changed,
             entry.rows_unchanged, entry.rows_rejected, list(entry.unknown_fields)),
        )
        if entry.cursor_to is not None and self.source == "api":
            self.conn.execute(
                """
                INSERT INTO kho.watermarks (registry, entity, cursor_value, batch_id) VALUES (%s, %s, %s, %s)
                ON CONFLICT (registry, entity) DO UPDATE
                SET cursor_value = GREATEST(kho.watermarks.cursor_value, EXCLUDED.cursor_value),
                    batch_id = EXCLUDED.batch_id, updated_at = now()
                """,
                (entry.registry, entry.entity, entry.cursor_to, entry.batch_id),
            )


@dataclass(frozen=True)
class _Prepared:
    """A checked table and its accepted rows already encoded as CSV for COPY."""

    checked: CheckedBatch
    csv_chunks: list[memoryview]


def _prepare(entity: Entity, table: pa.Table, dialect: Dialect) -> _Prepared:
    """Check and CSV-encode one table: pure Arrow work, run off the connection's thread."""
    checked = check_table(entity, table, dialect=dialect)
    options = pacsv.WriteOptions(include_header=False)
    chunks = []
    for batch in checked.accepted.to_batches(max_chunksize=COPY_CHUNK_ROWS):
        buffer = io.BytesIO()
        pacsv.write_csv(batch, buffer, options)
        chunks.append(buffer.getbuffer())
    return _Prepared(checked, chunks)


def _row_hash(entity: Entity) -> sql.Composed:
    """The row hash over the stage row `s`: one definition for the merge and the first load.

    PostgreSQL's 64-bit record hash works on the typed values (timestamptz as its instant), so unlike
    md5(ROW(...)::text) it does not change with the session's TimeZone, and it costs a third of the time.
    """
    values = [sql.SQL("s.{}").format(sql.Identifier(f.name)) for f in entity.fields] + [sql.SQL("s._extra")]
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(values))


def _copy_csv(conn: psycopg.Connection, table: sql.Identifier, columns: list[str], chunks: list[memoryview]) -> None:
    """COPY CSV produced by Arrow's C++ writer: no per-row Python on the hot path."""
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, names)) as copy:
        for chunk in chunks:
            copy.write(chunk)
