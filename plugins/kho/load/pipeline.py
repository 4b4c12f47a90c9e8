"""Sync entry points: drive extract → check → COPY → merge → ledger for one entity in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kho.config import KhoConfig
from kho.extract.api import ApiSource, iter_pages
from kho.extract.files import ExportFile, FileFormat, iter_file_progress
from kho.load.batch import BatchLoader, LedgerEntry
from kho.load.state import bootstrap, read_watermark
from kho.sources.contract import Dialect, Entity
from kho.warehouse.connection import connect


@dataclass(frozen=True)
class SyncOptions:
    """What a manual or scheduled run asks for (Airflow params map onto this)."""

    full_refresh: bool = False
    page_size: int = 500
    run_id: str | None = None


def sync_api(config: KhoConfig, entity: Entity, options: SyncOptions = SyncOptions()) -> LedgerEntry:
    """Pull everything changed since the entity's watermark and load it as one batch.

    The watermark is read and advanced in the same transaction as the data, so a crash anywhere before
    commit leaves the previous state intact and the retry re-reads the same records.
    """
    source = ApiSource(config.simulator_url, options.page_size, credentials=config.ensure_registry_credentials())
    with connect(config.warehouse) as conn:
        bootstrap(conn)
        with conn.transaction():
            since = None if options.full_refresh else read_watermark(conn, entity.registry, entity.name)
            loader = BatchLoader(conn, entity, "api", run_id=options.run_id, cursor_from=since)
            for page in iter_pages(source, entity, since):
                loader.add(page)
            return loader.finish()


def load_file(config: KhoConfig, entity: Entity, path: Path | str, *, fmt: FileFormat | None = None,
              run_id: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> LedgerEntry:
    """Load one registry export file (CSV or JSON Lines, optionally gzipped) as one batch.

    The whole file commits or nothing does. CSV exports write dates as dd/mm/yyyy; JSON Lines keep the API's
    wire form. `on_progress(rows_read, bytes_done)` is called after each block (the CLI draws a progress bar).
    """
    export = ExportFile.of(path, fmt)
    dialect = Dialect.EXPORT if export.format == "csv" else Dialect.API
    with connect(config.warehouse) as conn:
        bootstrap(conn)
        with conn.transaction():
            loader = BatchLoader(conn, entity, "file", run_id=run_id, dialect=dialect)
            for table, bytes_done in iter_file_progress(export):
                loader.add(table)
                if on_progress is not None:
                    on_progress(loader.rows_read, bytes_done)
            return loader.finish()
