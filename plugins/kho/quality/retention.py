"""Retention of what the gates leave behind: GX's validation results and Data Docs pages under KHO_GX_HOME, and
kho.quality_flags rows, older than `KHO_QUALITY_RETENTION_DAYS`. kho.quality_validations and kho.quality_results
(a few rows per validation) are kept: they are the trends.

GX keeps results at `validations/<layer>/<table>/<run>/<run time>/<batch>.json` and a page per result at
`data_docs/local_site/validations/...html`; a run time older than the cutoff goes, with its page, and the site's
index is rebuilt from what is left.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from kho.config import KhoConfig
from kho.errors import ConfigError

log = logging.getLogger(__name__)
RUN_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
"""How GX names a run-time folder (RunIdentifier.to_tuple), always UTC."""


@dataclass(frozen=True)
class Pruned:
    results: int
    """GX validation results (with their Data Docs pages) removed."""
    flags: int
    """kho.quality_flags rows removed."""
    cutoff: dt.datetime


def prune(config: KhoConfig, conn: psycopg.Connection[Any], *, days: int | None = None,
          now: dt.datetime | None = None, rebuild_docs: bool = True) -> Pruned:
    """Remove results, pages and flags older than `days` (default: the configured retention)."""
    keep = config.quality.retention_days if days is None else days
    if keep < 1:
        raise ConfigError(f"quality retention must keep at least one day, not {keep}")
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=keep)
    removed = 0
    for base in (config.gx_home / "validations", config.gx_home / "data_docs" / "local_site" / "validations"):
        removed += _prune_run_times(base, cutoff)
    with conn.transaction():
        cur = conn.execute(
            "DELETE FROM kho.quality_flags AS f USING kho.quality_validations AS v "
            "WHERE v.validation_id = f.validation_id AND v.finished_at < %s", (cutoff,))
        flags = cur.rowcount
    if removed and rebuild_docs:
        from kho.quality.runner import gx_context

        gx_context(config).build_data_docs()
    log.info("quality retention (%d days): %d GX result file(s) or page(s) and %d flagged row(s) removed", keep,
             removed, flags)
    return Pruned(removed, flags, cutoff)


def _prune_run_times(base: Path, cutoff: dt.datetime) -> int:
    """Remove every `<run time>` folder under `base` older than `cutoff`; return the files removed."""
    if not base.is_dir():
        return 0
    removed = 0
    for folder in sorted(p for p in base.glob("*/*/*/*") if p.is_dir()):
        try:
            when = dt.datetime.strptime(folder.name, RUN_TIME_FORMAT).replace(tzinfo=dt.UTC)
        except ValueError:
            continue  # not a run-time folder GX wrote
        if when < cutoff:
            removed += sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
            _remove_empty_parents(folder.parent, base)
    return removed


def _remove_empty_parents(folder: Path, base: Path) -> None:
    while folder != base and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
