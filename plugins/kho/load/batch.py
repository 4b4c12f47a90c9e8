"""One load batch: check → quarantine rejects → COPY accepted rows → merge by key and row hash → ledger row.

A batch is one database transaction. The merge, the ledger row, the quarantined rows and the watermark commit
together or not at all, so a worker killed mid-load leaves nothing behind and the retry starts clean.

Two ways in. The general one COPYs into a temporary stage and merges the stage into the raw table. A first load
into an empty raw table (the initial bulk load of an entity) COPYs straight into the raw table instead, with
FREEZE and without its indexes, and builds the key afterwards: the same work `psql \\copy` into a typed table does.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from kho.config import RejectLimit
from kho.errors import BatchRefused, ContractError, LedgerMismatch
from kho.extract.block import Block, Defect
from kho.load.ddl import RAW_SCHEMA, batch_index, create_stage_table, raw_table, row_hash
from kho.sources.contract import CheckedBatch, Dialect, Entity, SchemaDrift, check_table, parse_field
from kho.warehouse.migrations import require_migrated

Source = Literal["api", "file"]
STAGE = "_kho_stage"
COPY_CHUNK_ROWS = 65_536
INDEX_BUILD_MEMORY = "256MB"
"""maintenance_work_mem for building the key after a first load: the sort of 10M keys fits."""


@dataclass(frozen=True)
class LedgerEntry:
    """What one batch did. Each count is measured on its own (see `BatchLoader.finish`), so the ledger's CHECK
    `read = new + changed + unchanged + rejected` can refuse a batch whose rows went missing or were counted twice."""

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
    source_name: str | None = None
    blank_lines: int = 0
    """Empty lines of a file: no record, so not read (reported by `kho load`, not in the ledger)."""

    @property
    def rows_loaded(self) -> int:
        return self.rows_new + self.rows_changed

    def summary(self) -> str:
        blank = f" ({self.blank_lines} blank line(s) skipped)" if self.blank_lines else ""
        return (
            f"batch {self.batch_id} {self.registry}.{self.entity}: read {self.rows_read} = new {self.rows_new}"
            f" + changed {self.rows_changed} + unchanged {self.rows_unchanged} + rejected {self.rows_rejected}"
            f"{blank}"
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
    """Into an empty raw table, COPY straight into it and build its key afterwards (see `_claim_empty_target`)."""
    rows_staged: int = 0
    """Accepted rows COPYed so far, as the server counted them."""
    source_name: str | None = None
    """The file a file batch reads (for the ledger and messages)."""
    reject_limit: RejectLimit | None = None
    """Refuse the batch when its rejects pass this limit (None: never)."""
    blank_lines: int = 0
    _reasons: Counter[str] = field(default_factory=Counter, repr=False)
    _first_lines: dict[str, int] = field(default_factory=dict, repr=False)
    _direct_key: sql.Identifier | None = field(default=None, repr=False)
    """The raw table's primary key constraint, dropped while a first load COPYs into the table itself."""
    _checker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "kho-check"), repr=False)
    _pending: Future[_Prepared] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.conn.autocommit:
            raise ValueError("BatchLoader needs a connection in a transaction (autocommit=False)")
        require_migrated(self.conn, self.entity)  # once per connection; DDL is `kho warehouse migrate`'s
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"kho.load:{self.entity.qualified_name}",))
        row = self.conn.execute("SELECT nextval('kho.batch_id_seq')").fetchone()
        assert row is not None
        self.batch_id = int(row[0])
        if not (self.fast_first_load and self._claim_empty_target()):
            self.conn.execute(create_stage_table(self.entity, STAGE))

    @property
    def direct(self) -> bool:
        """True when this batch COPYs straight into the (empty) raw table instead of a stage."""
        return self._direct_key is not None

    def add(self, block: Block | pa.Table) -> None:
        """Check one block (or Arrow table) of wire text and stage it; its structural defects and the records the
        contract rejects go to quarantine, each with its line number and bytes when it came from a file.

        Checking and CSV encoding run on a worker thread (Arrow releases the GIL) while this thread COPYs the
        previous table, so the Python and PostgreSQL sides overlap; only this thread ever touches the connection.
        """
        if isinstance(block, pa.Table):
            block = Block.of(block)
        self.blank_lines += block.blank_lines
        if block.defects:
            self._quarantine_defects(block.defects)
        self.rows_read += block.records
        if block.table.num_rows == 0:
            return
        self._check_shape(block.table)
        submitted = self._checker.submit(_prepare, self.entity, block, self.dialect)
        self._drain()
        self._pending = submitted

    def finish(self) -> LedgerEntry:
        """Merge the staged rows into the raw table and write the ledger row (and watermark) in this transaction.

        No count is derived from the others: `read` is what `add` was given, `rejected` what the quarantine COPY
        wrote, and new, changed and unchanged are the database's own answers about the merge (or the first load).
        The ledger's CHECK then proves they add up, and a batch that does not is rolled back (`LedgerMismatch`).
        """
        self._drain()
        self._checker.shutdown()
        self._check_reject_limit()
        if self.direct:
            new, changed, unchanged = self._finish_direct()
        elif self.rows_staged:
            new, changed, unchanged = self._merge()
        else:
            new = changed = unchanged = 0  # COPY wrote nothing into the stage: there is nothing to merge
        entry = LedgerEntry(
            batch_id=self.batch_id, registry=self.entity.registry, entity=self.entity.name, source=self.source,
            rows_read=self.rows_read, rows_new=new, rows_changed=changed, rows_unchanged=unchanged,
            rows_rejected=self.rows_rejected, cursor_from=self.cursor_from, cursor_to=self.cursor_to,
            unknown_fields=tuple(self.unknown_fields), source_name=self.source_name, blank_lines=self.blank_lines,
        )
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
            self._quarantine(checked.rejected, prepared.rejected_lines, prepared.rejected_raw)
        if prepared.csv_chunks:
            target = raw_table(self.entity) if self.direct else sql.Identifier(STAGE)
            self.rows_staged += _copy_csv(self.conn, target, checked.accepted.column_names, prepared.csv_chunks,
                                          freeze=self.direct)

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
        """The newest cursor value read, rejected rows included (accepted rows are already typed, no re-parse),
        but never past the moment this batch started: a record stamped later (a registry clock running ahead, or
        a bogus date that was quarantined) must not move the watermark past changes not yet written. Records past
        it are read again next time and count as unchanged; nothing is skipped."""
        name = self.entity.cursor
        tops = [pc.max(checked.accepted.column(name)).as_py()] if name in checked.accepted.column_names else []
        if name in checked.rejected.column_names and checked.rejected.num_rows:
            tops.append(pc.max(parse_field(self.entity.field(name), checked.rejected.column(name))).as_py())
        for top in tops:
            if top is not None:
                top = min(top, self.started_at)
                if self.cursor_to is None or top > self.cursor_to:
                    self.cursor_to = top

    def _quarantine(self, rejected: pa.Table, lines: list[int | None], raws: list[bytes | None]) -> None:
        """Rejected rows keep their payload, reason, batch id, line number and exact bytes. Rejects are few:
        per-row JSON is fine here.

        The rejected count is the rows COPY wrote into kho.quarantine, not the rows the check set aside.
        """
        key = self.entity.key
        payload_cols = [c for c in rejected.column_names if not c.startswith("_reason")]
        rows = rejected.to_pylist()
        cursor = self.conn.cursor()
        with cursor.copy(sql.SQL("COPY kho.quarantine ({}) FROM STDIN").format(_QUARANTINE_COLUMNS)) as copy:
            for r, line, raw in zip(rows, lines, raws, strict=True):
                record_key = _readable("|".join("" if r.get(k) is None else str(r[k]) for k in key))
                record = {c: r[c] for c in payload_cols}
                if raw is None:  # an API record: its JSON, exactly (a NUL stays an escape)
                    raw = json.dumps(record, ensure_ascii=False).encode("utf-8")
                payload = json.dumps({c: _readable(v) for c, v in record.items()}, ensure_ascii=False)
                copy.write_row((self.batch_id, self.entity.registry, self.entity.name, record_key or None,
                                r["_reason_code"], r["_reason"], payload, line, raw))
                self._count_reason(r["_reason_code"], line)
        self.rows_rejected += cursor.rowcount

    def _quarantine_defects(self, defects: tuple[Defect, ...]) -> None:
        """Lines that are not records: their bytes as read, their line number, why; the payload is a readable
        rendering of the line (undecodable bytes as \\xNN escapes, cut at `READABLE_CHARS`)."""
        cursor = self.conn.cursor()
        with cursor.copy(sql.SQL("COPY kho.quarantine ({}) FROM STDIN").format(_QUARANTINE_COLUMNS)) as copy:
            for d in defects:
                text = _readable(d.raw.decode("utf-8", "backslashreplace"))
                payload = json.dumps({"line": text}, ensure_ascii=False)
                copy.write_row((self.batch_id, self.entity.registry, self.entity.name, None, d.code, d.reason,
                                payload, d.line, d.raw))
                self._count_reason(d.code, d.line)
        self.rows_rejected += cursor.rowcount

    def _count_reason(self, code: str, line: int | None) -> None:
        self._reasons[code] += 1
        if line is not None:
            self._first_lines.setdefault(code, line)

    def _check_reject_limit(self) -> None:
        """Refuse the whole batch (raise, so its transaction rolls back) when its rejects pass the limit."""
        limit, read, rejected = self.reject_limit, self.rows_read, self.rows_rejected
        if limit is None or not limit.exceeded(read, rejected):
            return
        where = f" from {self.source_name}" if self.source_name else ""
        common = ", ".join(
            f"{code} x{count:,}" + (f" (first at line {self._first_lines[code]})" if code in self._first_lines else "")
            for code, count in self._reasons.most_common(3))
        raise BatchRefused(
            f"registry {self.entity.registry}, entity {self.entity.name}, batch {self.batch_id}{where}: {rejected:,} "
            f"of {read:,} records rejected ({100 * rejected / read:.1f}%), more than the limit of {limit.percent:g}% "
            f"({limit.setting}); the batch was refused and nothing was loaded or quarantined. Most common: {common}. "
            "Ask the registry to fix the data, or raise the limit for this registry "
            f"(KHO_REJECT_LIMIT_PERCENT_{self.entity.registry.upper()}) to load it anyway."
        )

    def _target_is_empty(self) -> bool:
        row = self.conn.execute(
            sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(raw_table(self.entity))).fetchone()
        return bool(row and row[0])

    def _claim_empty_target(self) -> bool:
        """If the raw table is empty, make this batch COPY straight into it; True when it does.

        The table is locked (ACCESS EXCLUSIVE until commit: readers of the still-empty table wait for the load
        rather than see part of it), truncated (a new file in this transaction, so COPY can write the rows
        already frozen and nobody pays for setting hint bits later), stripped of its key and batch index (built
        once at the end, several times cheaper than maintaining them row by row), and its lineage columns default
        to this batch. All of it is transactional: a killed load leaves the empty table as it was.
        """
        if not self._target_is_empty():
            return False
        target = raw_table(self.entity)
        self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(target))
        if not self._target_is_empty():  # written between the look and the lock (not by kho: it holds the lock)
            return False
        row = self.conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (target.as_string(self.conn),),
        ).fetchone()
        assert row is not None, f"{self.entity.raw_table} has no primary key"
        key = sql.Identifier(str(row[0]))
        self.conn.execute(sql.SQL("TRUNCATE {}").format(target))
        self.conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(target, key))
        self.conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(
            sql.Identifier(RAW_SCHEMA, batch_index(self.entity).name)))
        self.conn.execute(sql.SQL(
            "ALTER TABLE {} ALTER COLUMN _batch_id SET DEFAULT {batch},"
            " ALTER COLUMN _first_batch_id SET DEFAULT {batch}"
        ).format(target, batch=sql.Literal(self.batch_id)))
        self._direct_key = key
        return True

    def _finish_direct(self) -> tuple[int, int, int]:
        """Restore what `_claim_empty_target` took away; returns (new, changed, unchanged) of the first load.

        Into the table this transaction emptied, COPY's row count is the rows added, all new, as the key then
        built over them proves. Building the key fails if the batch repeats a key. Then, as the general merge
        does, each key keeps its newest version (the later one in the batch on a tie): the versions kept are new
        and the older ones deleted count as unchanged, each counted by the statement that sorts them apart.
        """
        entity, target, key = self.entity, raw_table(self.entity), self._direct_key
        assert key is not None
        self.conn.execute(sql.SQL(
            "ALTER TABLE {} ALTER COLUMN _batch_id DROP DEFAULT, ALTER COLUMN _first_batch_id DROP DEFAULT"
        ).format(target))
        self.conn.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        add_key = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            target, key, sql.SQL(", ").join(map(sql.Identifier, entity.key)))
        try:
            with self.conn.transaction():  # a savepoint: only the failed key build is undone
                self.conn.execute(add_key)
            kept, dropped = self.rows_staged, 0
        except psycopg.errors.UniqueViolation:
            kept, dropped = self._drop_older_versions()
            self.conn.execute(add_key)
        self.conn.execute(batch_index(entity).create)
        return kept, 0, dropped

    def _drop_older_versions(self) -> tuple[int, int]:
        """Delete every row of the first load but its key's newest; returns (newest versions kept, rows deleted),
        the first counted from the ranking, the second from the DELETE itself."""
        entity = self.entity
        key_list = sql.SQL(", ").join(map(sql.Identifier, entity.key))
        row = self.conn.execute(sql.SQL(
            """
            WITH v AS (
                SELECT ctid AS row_id, row_number() OVER (
                    PARTITION BY {key_list} ORDER BY {cursor} DESC NULLS LAST, ctid DESC) AS version
                FROM {target}
            ), gone AS (
                DELETE FROM {target} AS t USING v WHERE t.ctid = v.row_id AND v.version > 1 RETURNING 1
            )
            SELECT (SELECT count(*) FROM v WHERE version = 1), (SELECT count(*) FROM gone)
            """
        ).format(target=raw_table(entity), key_list=key_list, cursor=sql.Identifier(entity.cursor))).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def _merge(self) -> tuple[int, int, int]:
        """Upsert the newest staged version of each key (the later one in the batch on a tie) where it is new, or
        its row hash changed and it is not older than the stored version. Returns (new, changed, unchanged).

        Each staged row is judged once against the raw table as the statement found it (one key lookup), and
        only the rows to write go on to the INSERT, so an unchanged row is neither locked nor rewritten. new and
        changed are what the INSERT returned, told apart by `_first_batch_id` (only an insert gives a row this
        batch's); unchanged is counted from the judgement: versions a newer one in the batch superseded, versions
        whose row hash the raw table already holds, versions older than the stored one. The INSERT keeps its own
        condition (`EXCLUDED._row_hash` is the generated hash of the incoming row), so a row judged to be written
        that it refuses, or a row both written and counted unchanged, leaves a ledger that does not add up.
        """
        entity = self.entity
        cols = [sql.Identifier(f.name) for f in entity.fields]
        col_list = sql.SQL(", ").join(cols)
        key_list = sql.SQL(", ").join(map(sql.Identifier, entity.key))
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
            for name in (*entity.field_names, "_extra", "_batch_id", "_loaded_at")
            if name not in entity.key
        )
        same_key = sql.SQL(" AND ").join(sql.SQL("t.{0} = r.{0}").format(sql.Identifier(name)) for name in entity.key)
        query = sql.SQL(
            """
            WITH judged AS (
                SELECT r.*, t._row_hash AS _stored_hash, t.{cursor} AS _stored_cursor,
                       CASE WHEN t._row_hash IS NOT NULL THEN {incoming_hash} END AS _incoming_hash
                FROM (
                    SELECT s.*, row_number() OVER (
                        PARTITION BY {key_list} ORDER BY s.{cursor} DESC NULLS LAST, s.ctid DESC) AS _version
                    FROM {stage} AS s
                ) AS r
                LEFT JOIN {target} AS t ON r._version = 1 AND {same_key}
            ), merged AS (
                INSERT INTO {target} AS t ({col_list}, _extra, _batch_id, _first_batch_id, _loaded_at)
                SELECT {col_list}, _extra, %(batch)s, %(batch)s, now() FROM judged
                WHERE _version = 1 AND (_stored_hash IS NULL OR (_stored_hash <> _incoming_hash
                      AND (_stored_cursor IS NULL OR _stored_cursor <= {cursor})))
                ON CONFLICT ({key_list}) DO UPDATE SET {assignments}
                WHERE t._row_hash IS DISTINCT FROM EXCLUDED._row_hash
                  AND (t.{cursor} IS NULL OR t.{cursor} <= EXCLUDED.{cursor})
                RETURNING t._first_batch_id = %(batch)s AS inserted
            )
            SELECT
                (SELECT count(*) FROM merged WHERE inserted),
                (SELECT count(*) FROM merged WHERE NOT inserted),
                (SELECT count(*) FILTER (WHERE _version > 1)
                        + count(*) FILTER (WHERE _version = 1 AND _stored_hash = _incoming_hash)
                        + count(*) FILTER (WHERE _version = 1 AND _stored_hash <> _incoming_hash
                                           AND _stored_cursor IS NOT NULL
                                           AND ({cursor} IS NULL OR {cursor} < _stored_cursor))
                 FROM judged)
            """
        ).format(
            key_list=key_list, stage=sql.Identifier(STAGE), cursor=sql.Identifier(entity.cursor),
            target=raw_table(entity), col_list=col_list, assignments=assignments, same_key=same_key,
            incoming_hash=row_hash(entity, "r"),
        )
        row = self.conn.execute(query, {"batch": self.batch_id}).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def _write_ledger(self, entry: LedgerEntry) -> None:
        """Insert the ledger row; its CHECKs, not Python, decide whether the counts add up."""
        try:
            self.conn.execute(
                """
                INSERT INTO kho.load_ledger (batch_id, registry, entity, source, run_id, started_at, cursor_from,
                    cursor_to, rows_read, rows_new, rows_changed, rows_unchanged, rows_rejected, unknown_fields,
                    source_name)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (entry.batch_id, entry.registry, entry.entity, entry.source, self.run_id, self.started_at,
                 entry.cursor_from, entry.cursor_to, entry.rows_read, entry.rows_new, entry.rows_changed,
                 entry.rows_unchanged, entry.rows_rejected, list(entry.unknown_fields), entry.source_name),
            )
        except psycopg.errors.CheckViolation as exc:
            raise LedgerMismatch(
                f"registry {entry.registry}, entity {entry.entity}, batch {entry.batch_id}: the ledger refused the"
                f" batch's counts (read {entry.rows_read} vs new {entry.rows_new} + changed {entry.rows_changed}"
                f" + unchanged {entry.rows_unchanged} + rejected {entry.rows_rejected}; constraint"
                f" {exc.diag.constraint_name}). Rows went missing or were counted twice on their way into the raw"
                " table; the batch was rolled back and nothing was loaded. Look for a trigger or rule on"
                f" raw.{self.entity.raw_table}, else report this line as a kho bug."
            ) from None
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
    """A checked block: its accepted rows already encoded as CSV for COPY, where its rejects came from."""

    checked: CheckedBatch
    csv_chunks: list[memoryview]
    rejected_lines: list[int | None]
    rejected_raw: list[bytes | None]


def _prepare(entity: Entity, block: Block, dialect: Dialect) -> _Prepared:
    """Check and CSV-encode one block: pure Arrow work, run off the connection's thread."""
    checked = check_table(entity, block.table, dialect=dialect)
    ready = _copy_ready(checked.accepted)
    chunks = [_csv(batch) for batch in ready.to_batches(max_chunksize=COPY_CHUNK_ROWS)]
    rows = checked.rejected_rows.to_pylist()
    return _Prepared(checked, chunks, block.line_numbers(rows), block.raw_records(rows))


READABLE_CHARS = 4096
"""A quarantined value's readable form (the payload) is cut here; the exact bytes are in `raw_record`."""
_QUARANTINE_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, (
    "batch_id", "registry", "entity", "record_key", "reason_code", "reason", "payload", "line_number", "raw_record")))


def _readable(value: object) -> object:
    """A value as jsonb can hold it: a NUL shown as \\x00 (jsonb refuses U+0000), a long text cut short."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    return value if len(value) <= READABLE_CHARS else value[:READABLE_CHARS] + "…"


_UNQUOTED = pacsv.WriteOptions(include_header=False, quoting_style="none")
_QUOTED = pacsv.WriteOptions(include_header=False)


def _csv(batch: pa.RecordBatch) -> memoryview:
    """CSV for COPY: unquoted when no value needs quotes (a tenth less for the server to parse), else quoted.

    Unquoted, an empty string would read as NULL; the contract check turns blank text into null, and any
    empty string left is caught here and takes the quoted form.
    """
    buffer = io.BytesIO()
    empty = any(pc.any(pc.equal(pc.binary_length(column), 0)).as_py() for column in batch.columns
                if pa.types.is_string(column.type) and column.null_count < len(column))
    if not empty:
        try:
            pacsv.write_csv(batch, buffer, _UNQUOTED)
            return buffer.getbuffer()
        except pa.ArrowInvalid:  # a comma, quote or line break somewhere in the batch
            buffer = io.BytesIO()
    pacsv.write_csv(batch, buffer, _QUOTED)
    return buffer.getbuffer()


def _copy_ready(table: pa.Table) -> pa.Table:
    """`table` with its UTC timestamps as text PostgreSQL reads exactly (`2025-07-01 09:00:00.000000+00`).

    Arrow's CSV writer formats a zoned timestamp through the time zone database, a third of a second per 100,000
    values; formatting the same instant as a naive timestamp and appending the offset costs a twentieth of that.
    """
    for at, column in enumerate(table.columns):
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            if column.type.tz not in ("UTC", "+00:00"):
                raise ValueError(f"column {table.column_names[at]} is in time zone {column.type.tz}, not UTC")
            wall = pc.cast(column.cast(pa.timestamp(column.type.unit)), pa.string())
            table = table.set_column(at, table.field(at).with_type(pa.string()),
                                     pc.binary_join_element_wise(wall, "+00", ""))
    return table


def _copy_csv(conn: psycopg.Connection, table: sql.Identifier, columns: list[str], chunks: list[memoryview], *,
              freeze: bool = False) -> int:
    """COPY CSV produced by Arrow's C++ writer (no per-row Python on the hot path); returns the rows COPYed."""
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    options = sql.SQL("FORMAT csv, FREEZE true" if freeze else "FORMAT csv")
    cursor = conn.cursor()
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN ({})").format(table, names, options)) as copy:
        for chunk in chunks:
            copy.write(chunk)
    return cursor.rowcount
