"""Vectorised building blocks for cross-field row checks (`RowCheck.violates`), shared by the registries.

Each returns a boolean column that is True where the rule is broken and null where an input is null; the contract
check treats null as 'not broken', because a missing or malformed input has already been reported on its own.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from kho.sources.contract import Column, RowCheck


def completed_years(born: Column, on: Column) -> pa.ChunkedArray:
    """Whole years from `born` to `on`, as law counts age: someone born on 29 Feb comes of age on 1 Mar."""
    years = pc.subtract(pc.year(on), pc.year(born))
    day_on = pc.add(pc.multiply(pc.month(on), 100), pc.day(on))
    day_born = pc.add(pc.multiply(pc.month(born), 100), pc.day(born))
    return _chunked(pc.subtract(years, pc.if_else(pc.less(day_on, day_born), 1, 0)))


def younger_than(born: Column, on: Column, years: int) -> pa.ChunkedArray:
    """True where the person born on `born` has not completed `years` years on `on`."""
    return _chunked(pc.less(completed_years(born, on), years))


def before(earlier: Column, later: Column) -> pa.ChunkedArray:
    """True where `later` comes strictly before `earlier`: the two dates are in the wrong order."""
    return _chunked(pc.less(later, earlier))


def date_order_check(first: str, then: str, *, name: str | None = None) -> RowCheck:
    """A RowCheck that `then` is not before `first` (both dates of the same row)."""
    return RowCheck(
        name=name or f"{then}_not_before_{first}",
        code="inconsistent",
        message=f"inconsistent dates: {then} is before {first}",
        violates=lambda t: before(t.column(first), t.column(then)),
        needs=(first, then),
    )


def _chunked(values: Column) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])

