"""Sync entry points: drive extract → check → COPY → merge → ledger for one entity, checkpoint by checkpoint.

An API sync commits every `pages_per_batch` pages as one batch: its rows, its quarantine, its ledger row and the
watermark it reached commit in one transaction. A crash loses at most the batch in flight, and the next run
resumes from the last committed watermark. Resume semantics (docs/registries.md): the watermark is the largest
`updated_at` committed and `updated_since` is inclusive, so a resumed or repeated run re-reads the records that
share that second; they merge as unchanged (a rejected one is quarantined again, in the new batch). Re-reading
a second is the price of never losing a record the registry wrote in that same second after the last read.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from kho.config import KhoConfig, RejectLimit
from kho.errors import ConfigError
from kho.extract.api import ApiSource, RetryPolicy, iter_pages
from kho.extract.block import Block
from kho.extract.files import ExportFile, FileFormat, iter_blocks, prefetch, read_header
from kho.load.batch import BatchLoader, LedgerEntry
from kho.load.state import read_watermark, read_watermark_row, restore_watermark
from kho.sources import registry
from kho.sources.contract import Dialect, Entity, parse_field
from kho.warehouse.connection import connect
from kho.warehouse.migrations import require_migrated


@dataclass(frozen=True)
class SyncOptions:
    """What a manual, scheduled or backfill run asks for (Airflow params and data intervals map onto this)."""

    full_refresh: bool = False
    """Read from the beginning instead of the watermark."""
    since: dt.datetime | None = None
    """Read from this instant (inclusive) instead of the watermark: a manual re-read or a backfill's start."""
    until: dt.datetime | None = None
    """Exclusive end of a data interval: records with updated_at >= until are left for a later run."""
    lookback: dt.timedelta = dt.timedelta(0)
    """Start this long before the watermark: re-reads (as unchanged) what a registry publishes late with an older
    `updated_at` (a late-arriving update), which an exact watermark would miss. Not applied to `since`."""
    page_size: int | None = None
    """Records per page; None: the registry's (`Registry.paging`)."""
    pages_per_batch: int | None = None
    """Pages per committed checkpoint (one batch, one ledger row, one watermark step); None: the registry's."""
    run_id: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_page: Callable[[int, int], None] | None = None
    """Called as `on_page(pages_read, rows_read)` after each page is staged, inside its batch's transaction
    (progress for the CLI; an exception raised here aborts that batch like a crashed worker)."""

    def __post_init__(self) -> None:
        if self.pages_per_batch is not None and self.pages_per_batch < 1:
            raise ConfigError(f"pages_per_batch must be at least 1, not {self.pages_per_batch}")
        for name, value in (("since", self.since), ("until", self.until)):
            if value is not None and value.tzinfo is None:
                raise ConfigError(f"{name}={value.isoformat()} has no time zone; give an aware instant")
        if self.full_refresh and self.since is not None:
            raise ConfigError("full_refresh reads from the beginning and since from an instant; give one of them")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError(f"the interval [{self.since.isoformat()}, {self.until.isoformat()}) is empty")


def sync_api(config: KhoConfig, entity: Entity, options: SyncOptions = SyncOptions()) -> list[LedgerEntry]:
    """Pull everything changed since the start point and load it in checkpointed batches; returns their ledger
    rows in order (always at least one, so a run that found nothing still leaves its zero row in the ledger).

    The start point is `since`, else the beginning (`full_refresh`), else the committed watermark. Batches end
    at page boundaries, and the API never splits records sharing (updated_at, *key) across pages, so no such
    group is split across batches either.

    Where the registry is, as whom kho reads it and how it pages come from its settings
    (`KhoConfig.registry_connection`) and its `Registry`; missing credentials fail here, before any connection.
    """
    paging = registry(entity.registry).paging
    source = ApiSource.of(config.registry_connection(entity.registry), page_size=options.page_size or paging.page_size,
                          retry=options.retry)
    per_batch = options.pages_per_batch or paging.pages_per_batch
    reject_limit = config.reject_limit(entity.registry)
    with connect(config.warehouse) as conn:
        require_migrated(conn, entity)
        start = _start_point(conn, entity, options)
        hold = _watermark_to_hold(conn, entity, options)
        pages = _pages_before(iter_pages(source, entity, start), entity, options.until)
        try:
            return _load_batches(conn, entity, options, pages, per_batch, start, hold, reject_limit)
        finally:
            pages.close()


def _start_point(conn: psycopg.Connection, entity: Entity, options: SyncOptions) -> dt.datetime | None:
    if options.since is not None:
        return options.since
    if options.full_refresh:
        return None
    with conn.transaction():
        watermark = read_watermark(conn, entity.registry, entity.name)
    return None if watermark is None else watermark - options.lookback


def _watermark_to_hold(conn: psycopg.Connection, entity: Entity,
                       options: SyncOptions) -> tuple[tuple[dt.datetime, int] | None] | None:
    """For a backfill ([since, until)) that starts after the watermark, the watermark to keep: moving it to the
    interval's end would mark the gap before `since` as loaded. None when the watermark may move (GREATEST)."""
    if options.until is None or options.since is None:
        return None
    with conn.transaction():
        current = read_watermark_row(conn, entity.registry, entity.name)
    if current is not None and current[0] >= options.since:
        return None
    return (current,)


def _load_batches(conn: psycopg.Connection, entity: Entity, options: SyncOptions, pages: Iterator[Block],
                  per_batch: int, start: dt.datetime | None, hold: tuple[tuple[dt.datetime, int] | None] | None,
                  reject_limit: RejectLimit) -> list[LedgerEntry]:
    """One transaction per `per_batch` pages; pages are fetched before the transaction opens, so a slow or
    retried registry never holds a transaction (or the entity's load lock) open. `hold` (a backfill past a gap)
    keeps the watermark where it was."""
    entries: list[LedgerEntry] = []
    cursor_from = start
    pages_read = rows_read = 0
    while True:
        chunk = list(itertools.islice(pages, per_batch))
        if not chunk and entries:
            return entries
        with conn.transaction():
            loader = BatchLoader(conn, entity, "api", run_id=options.run_id, cursor_from=cursor_from,
                                 reject_limit=reject_limit)
            for page in chunk:
                loader.add(page)
                pages_read += 1
                rows_read += page.records
                if options.on_page is not None:
                    options.on_page(pages_read, rows_read)
            entry = loader.finish()
            if hold is not None:
                restore_watermark(conn, entity.registry, entity.name, hold[0])
        entries.append(entry)
        cursor_from = entry.cursor_to or cursor_from
        if len(chunk) < per_batch:
            return entries


def _pages_before(pages: Iterator[Block], entity: Entity,
                  until: dt.datetime | None) -> Generator[Block, None, None]:
    """The pages, cut at the first record with updated_at >= until (pages come in updated_at order, so paging
    stops there: a backfill of [since, until) neither reads nor counts what lies beyond its interval)."""
    try:
        for page in pages:
            table = page.table
            if until is None or entity.cursor not in table.column_names:
                yield page
                continue
            stamps = parse_field(entity.field(entity.cursor), table.column(entity.cursor))
            before = pc.fill_null(pc.less(stamps, pa.scalar(until, stamps.type)), True)
            kept = table.filter(before)
            if kept.num_rows or page.defects:  # a record that is not one has no cursor: read with its page
                yield Block.of(kept, page.defects)
            if kept.num_rows < table.num_rows:
                return
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()


def load_file(config: KhoConfig, entity: Entity, path: Path | str, *, fmt: FileFormat | None = None,
              run_id: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> LedgerEntry:
    """Load one registry export file (CSV or JSON Lines, optionally gzipped) as one batch.

    The whole file commits or nothing does. A file whose compression, encoding, header or separator is wrong is
    refused before anything is written; a line that is not a record is quarantined with its line number and the
    rest loads, unless the file's rejects pass the registry's limit (`KhoConfig.reject_limit`), which refuses the
    file. CSV exports write dates as dd/mm/yyyy; JSON Lines keep the API's wire form. `on_progress(rows_read,
    bytes_done)` is called after each block (the CLI draws a progress bar).
    """
    export = ExportFile.of(path, fmt)
    if export.format == "csv":
        read_header(export, entity)  # refused here, before a connection or a transaction is opened
    dialect = Dialect.EXPORT if export.format == "csv" else Dialect.API
    limit = config.reject_limit(entity.registry)
    with connect(config.warehouse) as conn:
        require_migrated(conn, entity)
        with conn.transaction():
            loader = BatchLoader(conn, entity, "file", run_id=run_id, dialect=dialect, source_name=str(export.path),
                                 reject_limit=limit)
            for block in prefetch(iter_blocks(export, entity)):
                loader.add(block)
                if on_progress is not None:
                    on_progress(loader.rows_read, block.position)
            return loader.finish()
