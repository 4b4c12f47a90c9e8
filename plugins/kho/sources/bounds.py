"""The contract's bounds, column by column: NUL characters, text lengths, ranges of numbers, dates and instants.

Each function answers "which rows break it?" and returns None when no row does, found with a scan or two that
allocate nothing per row (a byte scan, a max of lengths, a min/max): clean columns, the common case on the hot
path of every load, cost no more than that; the row-by-row mask is computed only for a column that breaks it.
"""

from __future__ import annotations

import re._parser  # private, but the parser `re` itself uses (sre_parse, its deprecated alias, warns on import)
from datetime import UTC, date, datetime, timedelta
from re._constants import MAXREPEAT

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EARLIEST_DATE = date(1900, 1, 1)
"""No date or instant in any registry lies before it unless a field says later: a birth before 1900 would make
its owner over 125, an enterprise or a registration older than the registries that record it; before it lie typos
(0199, 1099) and sentinels (0001-01-01). CCCD century digits also start at 1900."""
EXTRA_MAX_LENGTH = 4096
"""Longest value of a field the contract does not know (kept in `_extra`): eight times the longest known field's
bound (500), short enough that a drifted field cannot carry a document into every row."""
CLOCK_SKEW = timedelta(days=1)
"""How far in the future (by the checking machine's clock) a registry's `updated_at` may lie: clocks and time
zones of registries disagree by hours, never by more than a day."""
REGISTRY_UTC_OFFSET = timedelta(hours=7)
"""Vietnam's time (UTC+07:00, no daylight saving): the calendar day on which a registry recorded something."""
_UNBOUNDED = int(MAXREPEAT)


def pattern_max_length(pattern: str) -> int | None:
    """The longest text the full-match `pattern` accepts, or None when it is unbounded (`.*`, `\\d+`) or is RE2
    syntax Python's parser does not read (then the field needs an explicit max_length)."""
    try:
        longest = int(re._parser.parse(pattern).getwidth()[1])
    except (re.error, ValueError, OverflowError, RecursionError):
        return None
    return longest if longest < _UNBOUNDED else None


def nul_rows(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """True where a value contains U+0000 (PostgreSQL text cannot store it); None when none does.

    A numpy scan of each chunk's UTF-8 bytes finds out whether any NUL is there at all (a NUL byte is only ever
    U+0000 in UTF-8); only then does the per-value search run.
    """
    for chunk in col.chunks:
        if len(chunk) == chunk.null_count:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
        data = chunk.buffers()[2]
        if data is None:
            continue
        text = np.frombuffer(data, np.uint8)[offsets[0]:offsets[-1]]
        if np.count_nonzero(text) != text.size:
            return pc.fill_null(pc.match_substring(col, "\x00"), False)
    return None


def longer_than(col: pa.ChunkedArray, limit: int) -> pa.ChunkedArray | None:
    """True where a value has more than `limit` characters (code points); None when none has.

    A character takes at least one byte, so a column whose longest value has at most `limit` bytes is within the
    bound without counting characters.
    """
    if len(col) == col.null_count or pc.max(pc.binary_length(col)).as_py() <= limit:
        return None
    return pc.fill_null(pc.greater(pc.utf8_length(col), limit), False)


def below(value: pa.ChunkedArray, low: float | date, *, inclusive: bool = True) -> pa.ChunkedArray | None:
    """True where `value` < `low` (<= when not `inclusive`); None when no value is, judged by the column's minimum."""
    low = _like(low, value.type)
    least = pc.min(value).as_py()
    if least is None or (least >= low if inclusive else least > low):
        return None
    bound = _scalar(low, value.type)
    return pc.fill_null(pc.less(value, bound) if inclusive else pc.less_equal(value, bound), False)


def above(value: pa.ChunkedArray, high: float | date) -> pa.ChunkedArray | None:
    """True where `value` > `high`; None when no value is, judged by the column's maximum."""
    high = _like(high, value.type)
    most = pc.max(value).as_py()
    if most is None or most <= high:
        return None
    return pc.fill_null(pc.greater(value, _scalar(high, value.type)), False)


def _like(bound: float | date, type_: pa.DataType) -> float | date:
    """A date bound of an instant column as midnight UTC of that day."""
    if pa.types.is_timestamp(type_) and isinstance(bound, date) and not isinstance(bound, datetime):
        return datetime(bound.year, bound.month, bound.day, tzinfo=UTC)
    return bound


def _scalar(bound: float | date, type_: pa.DataType) -> pa.Scalar | float:
    """Dates and instants typed like the column (Arrow compares zoned timestamps only within one zone)."""
    return pa.scalar(bound, type_) if isinstance(bound, date) else bound


def registry_day_numbers(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Days since 1970-01-01 of each date, or of each UTC instant's calendar day in Vietnam (int64).

    Integer arithmetic on the microseconds: Arrow's cast of a zoned timestamp to a date goes through time-zone
    machinery several times slower. The bias keeps the division's operands positive, so it floors.
    """
    if not pa.types.is_timestamp(values.type):
        return pc.cast(pc.cast(values, pa.int32()), pa.int64())
    micros = pc.add(pc.cast(values, pa.int64()), _BIASED_OFFSET_US)
    return pc.subtract(pc.divide(micros, _DAY_US), _BIAS_DAYS)


_DAY_US = 86_400_000_000
_BIAS_DAYS = 800_000
"""More days than from year 1 (the earliest instant Arrow parses here) to 1970."""
_BIASED_OFFSET_US = _BIAS_DAYS * _DAY_US + int(REGISTRY_UTC_OFFSET.total_seconds()) * 1_000_000


def days_after(value: pa.ChunkedArray, update_days: pa.ChunkedArray, days: int) -> pa.ChunkedArray | None:
    """True where date or instant `value` falls on a later calendar day (in Vietnam) than `days` after the row's
    `update_days` (`registry_day_numbers` of updated_at); None when no row does.

    A batch whose latest value lies within `days` of its earliest update needs no comparison row by row.
    """
    day = registry_day_numbers(value)
    latest, earliest = pc.max(day).as_py(), pc.min(update_days).as_py()
    if latest is None or earliest is None or latest <= earliest + days:
        return None
    limit = pc.add(update_days, days) if days else update_days
    return pc.fill_null(pc.greater(day, limit), False)
