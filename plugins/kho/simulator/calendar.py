"""The simulated calendar and the wire forms of its dates and instants, formatted by table lookup.

Formatting a date with `isoformat()` costs a microsecond; looking it up in a list of precomputed strings costs a
tenth of that, and the generator formats several dates for each of millions of records.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt

DAY0 = date(2025, 6, 30)
"""Day 0 of every world: the initial state is the registries as of the end of this day."""
DAY0_ORD = DAY0.toordinal()
FIRST_ORD = date(1900, 1, 1).toordinal()
LAST_ORD = date(2100, 12, 31).toordinal()
HISTORY_FROM_ORD = date(2020, 1, 1).toordinal()
"""Day-0 records were last changed between this date and the end of day 0."""
SECONDS_PER_DAY = 86_400
_EPOCH_ORD = date(1970, 1, 1).toordinal()

_DATES: list[str] = [date.fromordinal(o).isoformat() for o in range(FIRST_ORD, LAST_ORD + 1)]
_TIMES: list[str] = [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(SECONDS_PER_DAY)]


def day_ord(day: int) -> int:
    """The date ordinal of simulated day `day` (0 = 2025-06-30)."""
    return DAY0_ORD + day


def day_start(day: int) -> int:
    """Seconds since 1970 at the start (00:00:00Z) of simulated day `day`."""
    return (DAY0_ORD + day - _EPOCH_ORD) * SECONDS_PER_DAY


VIETNAM_UTC_OFFSET = 7 * 3600
"""Vietnam's time is UTC+7 all year (no daylight saving)."""
DAY0_END = day_start(1) - VIETNAM_UTC_OFFSET - 1
"""The last second of day 0 in Vietnam (2025-06-30 23:59:59 +07:00, 16:59:59Z): every day-0 record was last
changed by then, so that its registry's day (in Vietnam, as the contract and the raw gate count it) is before the
2025-07-01 reorganisation whose old commune codes it carries. Day d's events are stamped in UTC day d (from
2025-07-01T00:00Z), all of them on or after 1 July in Vietnam too; the registries changed nothing overnight."""


def ords_to_seconds(ordinals: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Seconds since 1970 at the start of each date ordinal."""
    return (ordinals - _EPOCH_ORD) * SECONDS_PER_DAY


def iso_date(ordinal: int) -> str:
    return _DATES[ordinal - FIRST_ORD]


def iso_dates(ordinals: npt.NDArray[np.int64]) -> list[str]:
    """Wire form of many date ordinals at once."""
    dates = _DATES
    return [dates[o - FIRST_ORD] for o in ordinals.tolist()]


def optional_dates(ordinals: npt.NDArray[np.int64]) -> list[str | None]:
    """Like `iso_dates`, with ordinal 0 meaning 'no date' (None on the wire)."""
    dates = _DATES
    return [dates[o - FIRST_ORD] if o else None for o in ordinals.tolist()]


def timestamp(seconds: int) -> str:
    """Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ`."""
    days, rest = divmod(seconds, SECONDS_PER_DAY)
    return _DATES[days + _EPOCH_ORD - FIRST_ORD] + _TIMES[rest]


def timestamps(seconds: npt.NDArray[np.int64]) -> list[str]:
    dates, times, shift = _DATES, _TIMES, _EPOCH_ORD - FIRST_ORD
    return [dates[s // SECONDS_PER_DAY + shift] + times[s % SECONDS_PER_DAY] for s in seconds.tolist()]


def seconds_of(moment: datetime) -> int:
    """An aware datetime as whole seconds since 1970, rounded up so that '>= moment' keeps its meaning."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; give an aware datetime (UTC or with an offset)")
    whole = moment.replace(microsecond=0)
    extra = 1 if moment.microsecond else 0
    return int((whole - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(seconds=1)) + extra


def add_years(ordinal: int, years: int) -> int:
    """The same calendar day `years` later (29 February becomes 1 March), as the law counts ages."""
    d = date.fromordinal(ordinal)
    try:
        return d.replace(year=d.year + years).toordinal()
    except ValueError:
        return date(d.year + years, 3, 1).toordinal()


def years_np(ordinals: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Calendar year of each ordinal (vectorised through numpy's datetime64)."""
    days = (ordinals - _EPOCH_ORD).astype("datetime64[D]")
    return days.astype("datetime64[Y]").astype(np.int64) + 1970


def year_starts_np(ordinals: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """1 January of each ordinal's year, as an ordinal."""
    days = (ordinals - _EPOCH_ORD).astype("datetime64[D]")
    return days.astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64) + _EPOCH_ORD


def add_years_np(ordinals: npt.NDArray[np.int64], years: int) -> npt.NDArray[np.int64]:
    """Vectorised `add_years` (29 February → 1 March in a non-leap target year)."""
    days = (ordinals - _EPOCH_ORD).astype("datetime64[D]")
    month_start = days.astype("datetime64[M]")
    day_of_month = (days - month_start).astype(np.int64)
    target_month = month_start + np.timedelta64(12 * years, "M")
    target = target_month.astype("datetime64[D]") + day_of_month
    overflow = (target.astype("datetime64[M]") != target_month)  # 29 Feb in a non-leap year rolled to March
    target = np.where(overflow, (target_month + np.timedelta64(1, "M")).astype("datetime64[D]"), target)
    return target.astype(np.int64) + _EPOCH_ORD


def completed_years(born: int, on: int) -> int:
    """Whole years from date ordinal `born` to `on`, as law counts age (born 29 February: of age on 1 March)."""
    b, o = date.fromordinal(born), date.fromordinal(on)
    return o.year - b.year - (1 if (o.month, o.day) < (b.month, b.day) else 0)
