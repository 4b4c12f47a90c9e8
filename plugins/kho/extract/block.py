"""What an extractor hands the loader: a block of records read as text, and the lines it could not read as records.

A registry's export file or API page may hold lines or records that are not records at all: a line with too few
or too many fields, bytes that are not UTF-8, a NUL byte, a line that is not JSON, a quote never closed, a line
longer than any record can be. Each is a *structural defect*: it cannot be typed or checked against the contract,
so it goes to quarantine as it arrived (its bytes, its line number, a reason code), and the records around it load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa

StructuralCode = Literal[
    "ragged_line", "invalid_encoding", "nul_byte", "invalid_json", "not_an_object", "unterminated_quote",
    "malformed_line", "line_too_long", "too_many_fields", "bad_field_name",
]
"""Reason codes of structural defects, beside the contract's (`kho.sources.contract.ReasonCode`)."""

STRUCTURAL_CODES: tuple[StructuralCode, ...] = get_args(StructuralCode)
MAX_FIELD_NAME_CHARS = 128
"""A field name outside the contract longer than this, or holding a NUL, is no registry's field."""
MAX_UNKNOWN_FIELDS = 64
"""Fields outside the contract one block (or API page) may bring, all its records together. A registry's drift
adds a field or two; thousands of names are not a registry's records, and each distinct name costs a column."""

_NO_ROWS: npt.NDArray[np.int64] = np.zeros(0, np.int64)


class UnknownFields:
    """The fields outside the contract a block's records have brought so far, up to `MAX_UNKNOWN_FIELDS`."""

    def __init__(self, known: tuple[str, ...]) -> None:
        self.known = frozenset(known)
        self.seen: set[str] = set()

    def admit(self, names: Iterable[str]) -> tuple[StructuralCode, str] | None:
        """None if a record with these field names fits; else its reason code and why not: a name no registry
        would use, or new names that would take the block past the cap."""
        new = [n for n in names if n not in self.known and n not in self.seen]
        for name in new:
            if "\x00" in name or len(name) > MAX_FIELD_NAME_CHARS:
                what = "holds a NUL" if "\x00" in name else f"is longer than {MAX_FIELD_NAME_CHARS} characters"
                return "bad_field_name", f"a field name {what} ({repr(name)[:40]}…)"
        if len(self.seen) + len(new) > MAX_UNKNOWN_FIELDS:
            shown = ", ".join(repr(n)[:40] for n in new[:3])
            return "too_many_fields", (f"brings field(s) {shown}{', …' if len(new) > 3 else ''} beyond the "
                                       f"{MAX_UNKNOWN_FIELDS} fields outside the contract a block may hold")
        self.seen.update(new)
        return None


@dataclass(frozen=True)
class Defect:
    """One line (or API record) that is not a record: quarantined as received, with where and why."""

    code: StructuralCode
    reason: str
    """One line for the operator: what is wrong, and where in the line."""
    raw: bytes
    """The line's bytes exactly as read (line break excluded; a too-long line's first bytes only), or an API
    record's JSON."""
    line: int | None = None
    """1-based line number in the file (the header is line 1 of a CSV file); None for API records."""


@dataclass(frozen=True)
class Block:
    """A block of an export file or a page of an API: all-text records, plus the lines that were not records.

    For a file, `data` is the block's bytes and `row_starts`/`row_ends` where each record's line lies in them, so
    a record the contract rejects is quarantined with its exact bytes and line number.
    """

    table: pa.Table
    defects: tuple[Defect, ...] = ()
    first_line: int | None = None
    """Line number of the block's first line (None for API pages)."""
    row_lines: npt.NDArray[np.int64] = field(default_factory=lambda: _NO_ROWS)
    """Per record, its line's index within the block (its line number is `first_line` + index)."""
    data: bytes = b""
    row_starts: npt.NDArray[np.int64] = field(default_factory=lambda: _NO_ROWS)
    row_ends: npt.NDArray[np.int64] = field(default_factory=lambda: _NO_ROWS)
    blank_lines: int = 0
    """Empty or blank lines skipped: they hold no record and are not counted as read."""
    position: int = 0
    """Bytes of the file on disk consumed when this block was cut (the progress bar's numerator)."""

    @classmethod
    def of(cls, table: pa.Table, defects: Sequence[Defect] = ()) -> Block:
        """A block with no file lines behind it (an API page, or records built in memory)."""
        return cls(table, tuple(defects))

    @property
    def records(self) -> int:
        """What the ledger counts as read: every record, and every line that should have been one."""
        return self.table.num_rows + len(self.defects)

    def line_numbers(self, rows: Sequence[int]) -> list[int | None]:
        """The file line number of each of `rows` (None when the block has no lines behind it)."""
        if self.first_line is None or not len(self.row_lines):
            return [None] * len(rows)
        return [self.first_line + int(self.row_lines[r]) for r in rows]

    def raw_records(self, rows: Sequence[int]) -> list[bytes | None]:
        """The exact bytes of each of `rows`' lines (None when the block has no lines behind it)."""
        if not len(self.row_starts):
            return [None] * len(rows)
        return [self.data[int(self.row_starts[r]):int(self.row_ends[r])] for r in rows]


def nul_field(record: dict[str, object]) -> str | None:
    """The first field (as repr) whose value holds a NUL character, at any depth; None if none does."""
    for name, value in record.items():
        if "\x00" in (value if isinstance(value, str) else json.dumps(value) if value is not None else ""):
            return repr(name)
    return None


def with_rows(table: pa.Table, rows: int) -> pa.Table:
    """`table`, or, when it has no columns (records that held no field at all), a table that still counts its
    `rows`: a record with no field is a record, to be judged (and refused) like any other, never dropped."""
    if table.num_columns or not rows:
        return table
    return pa.table({"_": pa.nulls(rows)}).drop_columns(["_"])
