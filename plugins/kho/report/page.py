"""The run report page: every plot inline as SVG with its title, caption and the numbers behind it, in one HTML
file that needs no network and no script, written whole or not at all (temp file, then rename)."""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kho.config import KhoConfig
from kho.report import default_dir
from kho.report.data import EVENT_MONTHS, HISTORY_DAYS, PlotData, ReportData, gather
from kho.report.plots import PLOTS, render
from kho.screen import LOCAL_TZ

log = logging.getLogger(__name__)

SECTIONS = (
    ("Loads", ("ledger", "quarantine")),
    ("Quality", ("quality_days", "quality_suites")),
    ("Health-insurance coverage", ("coverage_new", "coverage_old", "coverage_communes")),
    ("Civil status", ("vital_events",)),
)
CSS = """
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 1.5rem auto; max-width: 62rem; color: #1d2430;
       padding: 0 1rem; }
header p { color: #4a5566; margin: .2rem 0; }
figure.plot { margin: 1.2rem 0 2rem; padding: 1rem; border: 1px solid #d8dde6; border-radius: 6px; }
figure.plot h3 { margin: 0 0 .6rem; font-size: 1.05rem; }
figure.plot svg { width: 100%; height: auto; display: block; }
figcaption { margin-top: .5rem; color: #33404f; font-size: .92rem; }
p.empty { padding: 2rem 1rem; background: #f4f6f9; color: #4a5566; text-align: center; border-radius: 4px; }
details { margin-top: .5rem; font-size: .85rem; }
table { border-collapse: collapse; margin-top: .4rem; }
th, td { padding: .15rem .6rem; border-bottom: 1px solid #e4e8ee; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
"""


@dataclass(frozen=True)
class Written:
    path: Path
    data: ReportData
    drawn: list[str]
    empty: list[str]


def _cell(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="n">{value:,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _numbers(data: PlotData) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in data.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in data.rows)
    return (f"<details><summary>The numbers ({len(data.rows)} rows from {html.escape(data.source)})</summary>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>")


def figure(key: str, data: PlotData) -> tuple[str, bool]:
    """One plot's `<figure>`, and whether it drew (False: it says why there is nothing to draw)."""
    plot = PLOTS[key]
    caption = plot.caption.format(days=HISTORY_DAYS, months=EVENT_MONTHS) + data.note
    if data.empty:
        why = data.missing or f"{data.source} has no rows yet"
        body = f'<p class="empty">No data yet: {html.escape(why)}.</p>'
    else:
        body = render(key, data) + _numbers(data)
    state = "empty" if data.empty else "drawn"
    return (f'<figure class="plot" id="{key}" data-state="{state}"><h3>{html.escape(plot.title)}</h3>{body}'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>", not data.empty)


def page(data: ReportData, generated: dt.datetime) -> tuple[str, list[str], list[str]]:
    drawn: list[str] = []
    empty: list[str] = []
    parts: list[str] = []
    for title, keys in SECTIONS:
        parts.append(f"<section><h2>{html.escape(title)}</h2>")
        for key in keys:
            text, did = figure(key, data.plots[key])
            (drawn if did else empty).append(key)
            parts.append(text)
        parts.append("</section>")
    if data.publication is None:
        published = "Nothing has been published yet."
    else:
        number, as_of, at = data.publication
        published = (f"Newest publication: #{number}, as of {as_of.isoformat()}, published "
                     f"{at.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M} (Asia/Ho_Chi_Minh).")
    stamp = f"{generated.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M:%S}"
    text = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>kho — run report {stamp}</title><style>{CSS}</style></head><body>"
            f"<header><h1>kho — run report</h1><p>Made {stamp} (Asia/Ho_Chi_Minh) from the warehouse's primary. "
            f"{html.escape(published)}</p></header><main>{''.join(parts)}</main></body></html>\n")
    return text, drawn, empty


def write_atomically(path: Path, text: str) -> None:
    """A reader sees the old page or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_report(config: KhoConfig, out: Path | None = None, *, now: dt.datetime | None = None) -> Written:
    """Read the warehouse's primary, draw every plot and write `<out>/index.html` (default KHO_HOME/report)."""
    from kho.warehouse.connection import connect

    with connect(config.warehouse, autocommit=True) as conn:
        data = gather(conn)
    text, drawn, empty = page(data, now or dt.datetime.now(dt.UTC))
    path = (out or default_dir(config)) / "index.html"
    write_atomically(path, text)
    log.info("report: %d plots drawn, %d without data yet (%s) → %s", len(drawn), len(empty),
             ", ".join(empty) or "none", path)
    return Written(path, data, drawn, empty)
