"""Sync entry points: drive extract → check → COPY → merge → ledger for one entity in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from kho.config import KhoConfig
from kho.extract.api import ApiSource, iter_pages
from kho.load.batch import BatchLoader, LedgerEntry
from kho.load.state import bootstrap, read_watermark
from kho.sources.contract import Entity
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
    source = ApiSource(base_url=config.simulator_url, page_size=options.page_size)
    with connect(config.warehouse) as conn:
        bootstrap(conn)
        with conn.transaction():
            since = None if options.full_refresh else read_watermark(conn, entity.registry, entity.name)
            loader = BatchLoader(conn, entity, "api", run_id=options.run_id, cursor_from=since)
            for page in iter_pages(source, entity, since):
                loader.add(page)
            return loader.finish()
