"""Plain-text output for the operator's commands (`kho status`, `kho runs`, `kho ledger`): aligned columns, times
in the province's zone, durations people read, and colour only on a terminal (never in a pipe, a log or a file).
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TextIO

LOCAL_TZ = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
"""The province's clock: a day of the ledger is a day in Vietnam, whatever zone the server runs in."""

Align = Literal["<", ">"]
Tone = Literal["good", "bad", "warn", "plain"]
_ANSI: dict[Tone, str] = {"good": "\033[32m", "bad": "\033[31m", "warn": "\033[33m", "plain": ""}
_RESET = "\033[0m"
STATE_TONES: dict[str, Tone] = {
    "success": "good", "passed": "good", "failed": "bad", "upstream_failed": "bad", "warned": "warn",
    "running": "warn", "queued": "warn", "abandoned": "warn",
}


def wants_colour(stream: TextIO) -> bool:
    """Colour only for a person at a terminal: not in a pipe or a file, and never with NO_COLOR set (no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, and how it may be coloured on a terminal."""

    text: str
    tone: Tone = "plain"


def state_cell(state: str | None) -> Cell:
    text = state or "-"
    return Cell(text, STATE_TONES.get(text, "plain"))


def table(header: Sequence[str], rows: Sequence[Sequence[str | Cell]], *, align: Sequence[Align] | None = None,
          colour: bool = False, indent: str = "  ") -> list[str]:
    """Rows under a header, each column as wide as its widest cell; padding is measured before any colour."""
    cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows]
    widths = [len(h) for h in header]
    for row in cells:
        widths = [max(w, len(c.text)) for w, c in zip(widths, row, strict=True)]
    sides: Sequence[Align] = align or ["<"] * len(header)

    def line(row: Sequence[Cell]) -> str:
        parts = []
        for cell, width, side in zip(row, widths, sides, strict=True):
            padded = cell.text.ljust(width) if side == "<" else cell.text.rjust(width)
            parts.append(f"{_ANSI[cell.tone]}{padded}{_RESET}" if colour and cell.tone != "plain" else padded)
        return (indent + "  ".join(parts)).rstrip()

    return [line([Cell(h) for h in header]), *(line(row) for row in cells)]


def paint(text: str, tone: Tone, colour: bool) -> str:
    return f"{_ANSI[tone]}{text}{_RESET}" if colour and tone != "plain" else text


def local(moment: dt.datetime | None) -> str:
    """A moment on the province's clock, to the second; '-' for none."""
    if moment is None:
        return "-"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float | None) -> str:
    """A duration or an age a person reads at a glance: 3.6 s, 4 min 05 s, 2 h 03 min, 3.5 days."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    if seconds < 48 * 3600:
        hours, rest = divmod(int(seconds) // 60, 60)
        return f"{hours} h {rest:02d} min"
    return f"{seconds / 86400:.1f} days"


def count(value: int | None) -> str:
    """Row counts with thousands separated, as the ledger's figures run into millions."""
    return "-" if value is None else f"{value:,}"


def local_day(now: dt.datetime) -> tuple[dt.date, dt.datetime, dt.datetime]:
    """The province's day holding `now`, and its bounds as aware moments (midnight to midnight, Vietnam time)."""
    day = now.astimezone(LOCAL_TZ).date()
    start = dt.datetime.combine(day, dt.time(), LOCAL_TZ)
    return day, start, start + dt.timedelta(days=1)
