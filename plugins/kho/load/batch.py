"""One load batch: check → quarantine rejects → COPY accepted rows → merge by key and row hash → ledger row.

A batch is one database transaction. The merge, the ledger row, the quarantined rows and the watermark commit
together or not at all, so a worker killed mid-load leaves nothing behind and the retry starts clean.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from kho.errors import ContractError, LedgerMismatch
from kho.load.ddl import create_raw_table, create_stage_table, raw_table
from kho.sources.contract import Dialect, Entity, SchemaDrift, check_table, parse_field

Source = Literal["api", "file"]
STAGE = "_kho_stage"
COPY_CHUNK_ROWS = 65_536


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
        """Check one Arrow table (wire text) and stage it; rejects go straight to quarantine."""
        if table.num_rows == 0:
            return
        self._check_shape(table)
        self.rows_read += table.num_rows
        self._advance_cursor(table)
        checked = check_table(self.entity, table, dialect=self.dialect)
        self.unknown_fields.update(dict.fromkeys(checked.unknown_fields))
        if checked.rejected.num_rows:
            self._quarantine(checked.rejected)
        if checked.accepted.num_rows:
            _copy_arrow(self.conn, sql.Identifier(STAGE), checked.accepted)

    def finish(self) -> LedgerEntry:
        """Merge the staged rows into the raw table and write the ledger row (and watermark) in this transaction."""
        staged_row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(STAGE))).fetchone()
        assert staged_row is not None
        staged = int(staged_row[0])
        new, changed = self._merge() if staged else (0, 0)
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

    def _advance_cursor(self, table: pa.Table) -> None:
        if self.entity.cursor not in table.column_names:
            return
        cursor_field = self.entity.field(self.entity.cursor)
        values = parse_field(cursor_field, table.column(self.entity.cursor))
        top = pc.max(values).as_py()
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

    def _merge(self) -> tuple[int, int]:
        """Upsert the newest staged version of each key; only rows whose hash changed are written."""
        entity = self.entity
        cols = [sql.Identifier(f.name) for f in entity.fields]
        col_list = sql.SQL(", ").join(cols)
        key_list = sql.SQL(", ").join(map(sql.Identifier, entity.key))
        row_expr = sql.SQL(", ").join([sql.SQL("s.{}").format(c) for c in cols] + [sql.SQL("s._extra")])
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
            for name in (*entity.field_names, "_extra", "_row_hash", "_batch_id", "_loaded_at")
            if name not in entity.key
        )
        query = sql.SQL(
            """
            WITH src AS (
                SELECT DISTINCT ON ({key_list}) s.*, md5(ROW({row_expr})::text) AS _row_hash
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
            key_list=key_list, row_expr=row_expr, stage=sql.Identifier(STAGE), cursor=sql.Identifier(entity.cursor),
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


def _copy_arrow(conn: psycopg.Connection, table: sql.Identifier, data: pa.Table) -> None:
    """COPY an Arrow table through Arrow's C++ CSV writer: no per-row Python on the hot path."""
    columns = sql.SQL(", ").join(map(sql.Identifier, data.column_names))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, columns)
    options = pacsv.WriteOptions(include_header=False)
    with conn.cursor().copy(statement) as copy:
        for batch in data.to_batches(max_chunksize=COPY_CHUNK_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, options)
            copy.write(buffer.getbuffer())
