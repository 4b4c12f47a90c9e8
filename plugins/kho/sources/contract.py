"""The data contract: what a registry entity is, written once and read by every stage.

`sources` knows nothing of databases or HTTP. It describes fields, keys and checks, and can check an Arrow
table against them (vectorised, with pyarrow.compute), so the loader, the simulator, the GX suite generator and
the dbt sources checks all read the same definition.
"""

from __future__ import annotations

import enum
import functools
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from kho.errors import ConfigError
from kho.sources.bounds import (
    CLOCK_SKEW,
    EARLIEST_DATE,
    EXTRA_MAX_LENGTH,
    above,
    below,
    days_after,
    longer_than,
    nul_rows,
    pattern_max_length,
    registry_day_numbers,
)
from kho.sources.nfc import normalize_nfc

Column: TypeAlias = pa.Array | pa.ChunkedArray
"""A column as pyarrow.compute takes and returns it."""
FieldType = Literal["text", "date", "timestamptz", "integer", "numeric", "boolean"]
PiiLevel = Literal["none", "quasi", "direct"]
ReasonCode = Literal[
    "missing_required", "malformed", "invalid_value", "unknown_reference", "inconsistent", "out_of_bounds",
]
"""Why the contract rejected a row; `out_of_bounds` is a well-formed value beyond a field's bound (too long, too
large, too early, or later than the record's own updated_at or the check's clock allow)."""

ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "date": pa.date32(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "integer": pa.int64(),
    "numeric": pa.float64(),
    "boolean": pa.bool_(),
}
POSTGRES_TYPES: dict[str, str] = {
    "text": "text",
    "date": "date",
    "timestamptz": "timestamptz",
    "integer": "bigint",
    "numeric": "numeric",
    "boolean": "boolean",
}
RAW_META_COLUMNS: tuple[str, ...] = ("_extra", "_row_hash", "_batch_id", "_first_batch_id", "_loaded_at")
"""Columns every raw table carries after the contract's fields: unknown fields, row hash, lineage to the ledger."""

API_DATE_FORMAT = "%Y-%m-%d"
"""Dates on the registries' HTTP APIs: ISO 8601."""
EXPORT_DATE_FORMAT = "%d/%m/%Y"
"""Dates in the registries' CSV export files: dd/mm/yyyy, as Vietnamese registries write them."""
_MAX_INTEGER_DIGITS = 18
"""Longer digit strings would overflow int64 in Arrow's cast (an error, not a null): reject them as malformed."""
_UPDATED = "updated_at"
"""The field `Field.days_after_update` counts from: when the registry last changed the record."""


class Dialect(enum.Enum):
    """Which wire form a table arrived in; only dates differ (timestamps stay ISO 8601 in both)."""

    API = "api"
    """The HTTP API: each date field's own `format` (ISO by default)."""
    EXPORT = "export"
    """A CSV export file: the entity's `export_date_format` for every date field (JSON Lines exports are API-like)."""


def endpoint_path(registry: str, name: str) -> str:
    """`/<registry>/v1/<entity>`, the registry slug hyphenated (civil_status is served as /civil-status/...)."""
    return f"/{registry.replace('_', '-')}/v1/{name}"


class SchemaDrift(enum.Enum):
    """What to do when a registry sends fields the contract does not know (the dlt-style evolution mode)."""

    KEEP_EXTRA = "keep_extra"
    """Keep unknown fields in the raw table's `_extra` jsonb column and report them."""
    DISCARD_EXTRA = "discard_extra"
    """Drop unknown fields, but still report them in the ledger."""
    FREEZE = "freeze"
    """Reject the whole batch when an unknown field appears."""


@dataclass(frozen=True)
class RowCheck:
    """A vectorised rule over several columns: `violates(table)` is True where a row breaks it."""

    name: str
    code: ReasonCode
    message: str
    violates: Callable[[pa.Table], Column]
    needs: tuple[str, ...]


@dataclass(frozen=True)
class Field:
    """One field of an entity as the registry sends it (text on the wire) and as the warehouse stores it."""

    name: str
    type: FieldType = "text"
    required: bool = False
    pattern: str | None = None
    """A full-match regular expression the text form must satisfy."""
    allowed: frozenset[str] | None = None
    reference: str | None = None
    """Name of a reference set (see `kho.sources.reference`) the value must belong to."""
    normalise_nfc: bool = False
    format: str | None = None
    """strptime format of the wire text for dates and timestamps."""
    pii: PiiLevel = "none"
    description: str = ""
    minimum: float | None = None
    """Smallest allowed value of an integer or numeric field (inclusive unless `minimum_exclusive`)."""
    minimum_exclusive: bool = False
    maximum: float | None = None
    """Largest allowed value of an integer or numeric field (inclusive)."""
    max_length: int | None = None
    """Most characters (code points) a text value may have, counted after trim and NFC, as stored. Every text field
    is bounded, by this or by a pattern, an allowed set or a reference set (`Entity` refuses one that is not)."""
    earliest: date | None = None
    """Earliest allowed date of a date field, or day (from midnight UTC) of a timestamptz field; None means the
    contract's floor, `EARLIEST_DATE` (1900-01-01)."""
    days_after_update: int | None = None
    """How many calendar days (in Vietnam) after the record's own `updated_at` this date or instant may lie: 0 for
    an event the registry can only record once it has happened; None where the field is not bounded by it."""

    @property
    def floor(self) -> date:
        """The earliest allowed date of a date or timestamptz field."""
        return self.earliest or EARLIEST_DATE

    @property
    def unbounded(self) -> bool:
        """A text field that nothing bounds: no max_length, allowed set or reference set, and no pattern whose
        matches have a longest length (`\\d{12}` bounds, `.*` does not)."""
        if self.type != "text" or self.max_length is not None or self.allowed is not None:
            return False
        if self.reference is not None:
            return False
        return self.pattern is None or pattern_max_length(self.pattern) is None

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    @property
    def postgres_type(self) -> str:
        return POSTGRES_TYPES[self.type]


@dataclass(frozen=True)
class Entity:
    """A registry entity: the unit the extractor pages, the loader merges and the warehouse stores."""

    registry: str
    name: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    cursor: str
    description: str = ""
    checks: tuple[RowCheck, ...] = ()
    drift: SchemaDrift | None = None
    """What to do with fields the contract does not know; None: its registry's default, which `Registry` fills in
    when it is declared (an entity outside any registry keeps them, as `KEEP_EXTRA`)."""
    references: dict[str, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)
    export_date_format: str = EXPORT_DATE_FORMAT
    """strptime format of dates in this entity's CSV export files (see `Dialect.EXPORT`)."""
    api_slug: str | None = None
    """The registry's path segment on its API (`Registry.api_slug`, filled in by the registry); None: the
    registry's slug hyphenated."""

    def __post_init__(self) -> None:
        """A contract that cannot be right fails at import, naming the entity, not at the first load."""
        names = [f.name for f in self.fields]
        problems = [f"duplicate field {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
        known = set(names)
        problems += [f"key field {k!r} is not a field" for k in self.key if k not in known]
        problems += [f"key field {f.name!r} is not required" for f in self.fields if f.name in self.key
                     and not f.required]
        if self.cursor not in known:
            problems.append(f"cursor {self.cursor!r} is not a field")
        problems += [f"field {f.name!r} names reference set {f.reference!r}, which `references` lacks"
                     for f in self.fields if f.reference is not None and f.reference not in self.references]
        for f in self.fields:
            problems += _bound_problems(f, has_updated_at=_UPDATED in known)
        if not self.key:
            problems.append("no key")
        if problems:
            raise ConfigError(f"contract {self.registry}.{self.name} is inconsistent: {'; '.join(problems)}")

    @property
    def raw_table(self) -> str:
        """`<registry>__<entity>` in the `raw` schema."""
        return f"{self.registry}__{self.name}"

    @property
    def endpoint(self) -> str:
        """The registry API path that serves this entity (`endpoint_path`)."""
        return f"/{self.api_slug}/v1/{self.name}" if self.api_slug else endpoint_path(self.registry, self.name)

    @property
    def qualified_name(self) -> str:
        return f"{self.registry}.{self.name}"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.qualified_name} has no field {name!r}")

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def arrow_schema(self) -> pa.Schema:
        """The typed schema of accepted rows, in contract order."""
        return pa.schema([pa.field(f.name, f.arrow_type, nullable=not f.required) for f in self.fields])


def _bound_problems(f: Field, *, has_updated_at: bool) -> list[str]:
    """What is wrong with one field's bounds: a bound its type cannot have, or a text field with none."""
    numeric, temporal = f.type in ("integer", "numeric"), f.type in ("date", "timestamptz")
    problems = [f"field {f.name!r} has a {bound} but is {f.type}" for bound, value, fits in (
        ("minimum", f.minimum, numeric), ("maximum", f.maximum, numeric),
        ("max_length", f.max_length, f.type == "text"), ("date floor", f.earliest, temporal),
        ("days_after_update bound", f.days_after_update, temporal),
    ) if value is not None and not fits]
    if f.unbounded:
        problems.append(f"text field {f.name!r} has no bound: give it a max_length (or a pattern, allowed set or "
                        "reference set that bounds its length)")
    if f.max_length is not None and f.max_length < 1:
        problems.append(f"field {f.name!r} has max_length {f.max_length}; it must be at least 1")
    if f.minimum is not None and f.maximum is not None and f.maximum < f.minimum:
        problems.append(f"field {f.name!r} has a maximum below its minimum")
    if f.days_after_update is not None and (f.days_after_update < 0 or not has_updated_at):
        problems.append(f"field {f.name!r} is bounded by updated_at, which needs days_after_update >= 0 and an "
                        "updated_at field")
    return problems


UPDATED_AT = Field(
    "updated_at", "timestamptz", required=True,
    description="When the registry last changed this record: the incremental cursor. At most one day (clock skew) "
                "after the moment of the check: a later one would carry the extraction's watermark into the future",
)
"""Every registry entity carries this cursor: extraction pages by it with `updated_since`."""


@dataclass(frozen=True)
class CheckedBatch:
    """The outcome of checking one Arrow table against its entity's contract."""

    accepted: pa.Table
    """Typed rows (the entity's arrow schema) plus `_extra` (JSON text of unknown fields, or null)."""
    rejected: pa.Table
    """The rejected rows as received (all text), plus `_reason_code` and `_reason`."""
    unknown_fields: tuple[str, ...]
    rejected_rows: pa.Array = field(default_factory=lambda: pa.array([], pa.int64()))
    """Where each rejected row was in the checked table (ascending row indices, aligned with `rejected`): the
    loader maps them to the file lines they came from."""


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name in table.column_names:
        col = table.column(name)
        return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
    return pa.chunked_array([pa.nulls(table.num_rows, pa.string())])


def _blank_trimmed(trimmed: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.or_kleene(pc.is_null(trimmed), pc.equal(pc.binary_length(trimmed), pa.scalar(0, pa.int32())))


def parse_field(field_: Field, col: pa.ChunkedArray, *, date_format: str | None = None) -> pa.ChunkedArray:
    """Convert wire text to the field's type; values that do not parse become null.

    `date_format`, when given, replaces the field's own format for dates (export files write dd/mm/yyyy).
    """
    return _parse_trimmed(field_, pc.utf8_trim_whitespace(col), date_format=date_format)


def _parse_trimmed(field_: Field, col: pa.ChunkedArray, *, date_format: str | None = None) -> pa.ChunkedArray:
    if field_.type == "text":
        return normalize_nfc(col) if field_.normalise_nfc else col
    if field_.type == "date":
        fmt = date_format or field_.format or API_DATE_FORMAT
        ts = pc.strptime(col, format=fmt, unit="s", error_is_null=True)
        ts = _reject_rolled_over(ts, col, fmt)
        ts = pc.if_else(pc.greater_equal(pc.year(ts), 1), ts, pa.scalar(None, ts.type))  # no year 0 in PostgreSQL
        return pc.cast(ts, pa.date32())
    if field_.type == "timestamptz":
        return _parse_timestamp(col)
    if field_.type == "boolean":
        lowered = pc.utf8_lower(col)
        truthy = pc.is_in(lowered, value_set=pa.array(["true", "1", "t", "yes"]))
        falsy = pc.is_in(lowered, value_set=pa.array(["false", "0", "f", "no"]))
        return pc.if_else(truthy, True, pc.if_else(falsy, False, pa.scalar(None, pa.bool_())))
    target = field_.arrow_type
    integer = rf"^[+-]?\d{{1,{_MAX_INTEGER_DIGITS}}}$"
    valid = pc.match_substring_regex(col, integer if field_.type == "integer" else r"^[+-]?\d+(\.\d+)?$")
    unsigned = pc.replace_substring_regex(col, pattern=r"^\+", replacement="")  # Arrow's cast refuses a leading +
    cleaned = pc.if_else(valid, unsigned, pa.scalar(None, pa.string()))
    number = pc.cast(cleaned, target)
    if field_.type == "numeric":  # hundreds of digits overflow float64 to inf: not a usable amount
        number = pc.if_else(pc.is_finite(number), number, pa.scalar(None, target))
    return number


def _reject_rolled_over(ts: pa.ChunkedArray, text: pa.ChunkedArray, fmt: str) -> pa.ChunkedArray:
    """Arrow's strptime rolls 2001-02-30 over to 2001-03-02; a value that does not round-trip is invalid.

    For fixed-width numeric formats (%d, %m, %Y and literals, e.g. dd/mm/yyyy) the round trip is the text having
    the exact shape and its day and month digits equal to the parsed value's: several times cheaper than strftime.
    """
    layout = _fixed_date_layout(fmt)
    if layout is None:
        same = pc.equal(pc.strftime(ts, format=fmt), text)
    else:
        pattern, day_at, month_at = layout
        shaped = pc.and_(pc.match_substring_regex(text, pattern), pc.is_valid(ts))
        digits = pc.if_else(shaped, text, pa.scalar(None, pa.string()))
        day = pc.cast(pc.utf8_slice_codeunits(digits, day_at, day_at + 2), pa.int64())
        month = pc.cast(pc.utf8_slice_codeunits(digits, month_at, month_at + 2), pa.int64())
        same = pc.and_(pc.equal(pc.day(ts), day), pc.equal(pc.month(ts), month))
    return pc.if_else(pc.fill_null(same, False), ts, pa.scalar(None, ts.type))


_DATE_DIRECTIVE_WIDTHS = {"%d": 2, "%m": 2, "%Y": 4}


@functools.cache
def _fixed_date_layout(fmt: str) -> tuple[str, int, int] | None:
    """(full-match regex, offset of the day digits, offset of the month digits) when `fmt` is a fixed-width date
    of exactly %d, %m and %Y between literal characters; None for any other format (then strftime decides)."""
    pattern, at, offsets = "^", 0, {}
    for part in re.split(r"(%.)", fmt):
        if part in _DATE_DIRECTIVE_WIDTHS and part not in offsets:
            offsets[part] = at
            pattern += rf"\d{{{_DATE_DIRECTIVE_WIDTHS[part]}}}"
            at += _DATE_DIRECTIVE_WIDTHS[part]
        elif "%" in part:
            return None
        else:
            pattern += re.escape(part)
            at += len(part)
    if len(offsets) != len(_DATE_DIRECTIVE_WIDTHS):
        return None
    return pattern + "$", offsets["%d"], offsets["%m"]


_TIMESTAMP_SHAPE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)?$"
_ZONE_SUFFIX = r"(Z|[+-]\d{2}(:?\d{2})?)$"
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
"""A tuple, made an Arrow array only on the slow path: any pa.array() at import makes pyarrow import pandas
(~0.5 s in every process that imports kho.sources, DAG parsing included)."""


def _parse_timestamp(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO 8601 / RFC 3339 instants: `YYYY-MM-DDTHH:MM:SS`, an optional fraction (to the microsecond), and a UTC
    offset (`Z`, `+07:00`, `+0700`, `+07`) or none (taken as UTC). Any other shape, and impossible dates or times
    (2001-02-30, 24:00:00, minute 60, year 0), become null.

    Arrow's ISO 8601 cast does the parsing in one pass, but it fails a whole array on one impossible value; only
    then are the date and time fields checked one by one to null the impossible values (the slow path, taken by
    blocks that hold such a defect).
    """
    shaped = pc.and_(pc.fill_null(pc.match_substring_regex(col, _TIMESTAMP_SHAPE), False),
                     pc.invert(pc.fill_null(pc.starts_with(col, "0000"), False)))  # Arrow takes year 0; PostgreSQL not
    text = pc.if_else(shaped, col, pa.scalar(None, pa.string()))
    naive = pc.and_(shaped, pc.invert(pc.fill_null(pc.match_substring_regex(col, _ZONE_SUFFIX), False)))
    if pc.any(naive).as_py():
        text = pc.if_else(naive, pc.binary_join_element_wise(text, "Z", ""), text)
    try:
        return pc.cast(text, _TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pc.if_else(_possible_instant(text), text, pa.scalar(None, pa.string()))
    try:
        return pc.cast(text, _TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a case the field checks missed: value by value
        return pa.chunked_array([pa.array([_cast_one(v) for v in text.to_pylist()], _TIMESTAMP)])


def _cast_one(value: str | None) -> object:
    if value is None:
        return None
    try:
        return pc.cast(pa.array([value]), _TIMESTAMP)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _possible_instant(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a well-shaped timestamp names a real calendar day, a real time and a real UTC offset."""
    def number(start: int, stop: int, of: pa.ChunkedArray = text) -> pa.ChunkedArray:
        return pc.cast(pc.utf8_slice_codeunits(of, start, stop), pa.int64())

    year, month, day = number(0, 4), number(5, 7), number(8, 10)

    def divisible(by: int) -> pa.ChunkedArray:
        return pc.equal(pc.subtract(year, pc.multiply(pc.divide(year, by), by)), 0)  # integer division

    leap = pc.and_(divisible(4), pc.or_(pc.invert(divisible(100)), divisible(400)))
    month_ok = pc.and_(pc.greater_equal(month, 1), pc.less_equal(month, 12))
    days = pc.add(pc.take(pa.array(_DAYS_IN_MONTH, pa.int64()), pc.if_else(month_ok, month, 0)),
                  pc.if_else(pc.and_(pc.equal(month, 2), leap), 1, 0))
    ok = pc.and_(pc.and_(pc.greater_equal(year, 1), month_ok),
                 pc.and_(pc.greater_equal(day, 1), pc.less_equal(day, days)))
    ok = pc.and_(ok, pc.and_(pc.less_equal(number(11, 13), 23),
                             pc.and_(pc.less_equal(number(14, 16), 59), pc.less_equal(number(17, 19), 59))))
    zone = pc.extract_regex(text, r"(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>\d{2})?$")
    hours = pc.cast(pc.struct_field(zone, "hours"), pa.int64())
    minutes = pc.cast(pc.if_else(pc.equal(pc.struct_field(zone, "minutes"), ""), "0",
                                 pc.struct_field(zone, "minutes")), pa.int64())
    zone_ok = pc.fill_null(pc.and_(pc.less_equal(hours, 23), pc.less_equal(minutes, 59)), True)
    return pc.fill_null(pc.and_(ok, zone_ok), False)


def check_table(entity: Entity, table: pa.Table, *, dialect: Dialect = Dialect.API,
                now: datetime | None = None) -> CheckedBatch:
    """Check every row against `entity`'s contract; the first broken rule names the row's reason.

    Fully vectorised: no Python loop over rows, so it runs on the hot path of every load. `dialect` says which wire
    form the table is in: `Dialect.EXPORT` reads dates as the entity's `export_date_format` (dd/mm/yyyy). `now`
    (aware; the wall clock by default) is the moment an `updated_at` may not lie more than `CLOCK_SKEW` after.

    Rules run in this order: each field's own rules (field order), the unknown fields kept in `_extra`, bounds
    relative to the record's `updated_at`, then the entity's row checks.
    """
    latest = _latest_update(now)
    n = table.num_rows
    broken: pa.ChunkedArray = pa.chunked_array([pa.nulls(n, pa.int16())])
    """Per row, the index in `rules` of the first rule it breaks (null while it breaks none)."""
    rules: list[tuple[str, str]] = []

    def flag(bad: Column | None, reason_code: str, message: str) -> None:
        nonlocal broken
        rules.append((reason_code, message))
        if bad is None:  # the bound's own scan found nobody beyond it
            return
        bad = pc.fill_null(bad, False)
        if not pc.any(bad).as_py():  # the common case: a clean column costs one scan, not a rewrite
            return
        broken = pc.if_else(pc.and_(bad, pc.is_null(broken)), pa.scalar(len(rules) - 1, pa.int16()), broken)

    date_format = entity.export_date_format if dialect is Dialect.EXPORT else None
    typed: dict[str, pa.ChunkedArray] = {}
    for f in entity.fields:
        raw = _text(table, f.name)
        trimmed = pc.utf8_trim_whitespace(raw)
        blank = _blank_trimmed(trimmed)
        value = _parse_trimmed(f, trimmed, date_format=date_format)
        for violation in _field_rules(entity, f, raw, value, blank, latest):
            flag(*violation)
        typed[f.name] = pc.if_else(blank, pa.scalar(None, f.arrow_type), value)

    known = set(entity.field_names)
    unknown = [i for i, c in enumerate(table.column_names) if c not in known]  # "_note" too: never dropped silently
    drift = entity.drift or SchemaDrift.KEEP_EXTRA
    for violation in itertools.chain(_extra_rules(table, unknown, drift), _update_rules(entity, typed)):
        flag(*violation)
    # Table.from_arrays, not pa.table(dict): pa.table asks whether its input is a pandas DataFrame, which
    # imports pandas (~1 s, once per process) on the hot path of every load.
    typed_table = pa.Table.from_arrays(list(typed.values()), schema=_nullable(entity.arrow_schema()))
    for check in entity.checks:
        flag(check.violates(typed_table), check.code, check.message)

    rejected_mask = pc.is_valid(broken)
    if broken.null_count == n:  # nothing rejected: no filtering copies
        accepted, clean = typed_table, table
    else:
        accepted, clean = typed_table.filter(pc.invert(rejected_mask)), table.filter(pc.invert(rejected_mask))
    accepted = accepted.append_column("_extra", _extra_json(clean, unknown, drift))
    which = pc.filter(broken, rejected_mask)
    rejected = table.filter(rejected_mask)
    rejected = rejected.append_column("_reason_code", pc.take(pa.array([c for c, _ in rules], pa.string()), which))
    rejected = rejected.append_column("_reason", pc.take(pa.array([m for _, m in rules], pa.string()), which))
    rows = pc.indices_nonzero(rejected_mask) if rejected.num_rows else pa.array([], pa.uint64())
    names = tuple(dict.fromkeys(_storable(table.column_names[i]) for i in unknown))
    return CheckedBatch(accepted=accepted, rejected=rejected, unknown_fields=names,
                        rejected_rows=pc.cast(rows, pa.int64()))


def _latest_update(now: datetime | None) -> datetime:
    """The latest `updated_at` a check at `now` (the wall clock when None) accepts."""
    if now is not None and now.tzinfo is None:
        raise ValueError(f"now={now.isoformat()} has no time zone; give an aware datetime (UTC or with an offset)")
    return (now or datetime.now(UTC)) + CLOCK_SKEW


Violation = tuple[pa.ChunkedArray | None, ReasonCode, str]
"""Where a rule is broken (True; None when nowhere), the reason code and the message the quarantine records."""
NUL = "contains a NUL character (U+0000)"
"""PostgreSQL text and jsonb cannot hold U+0000: such a value would fail the whole batch's COPY."""


def _field_rules(
    entity: Entity, f: Field, raw: pa.ChunkedArray, value: pa.ChunkedArray, blank: pa.ChunkedArray,
    latest: datetime,
) -> Iterator[Violation]:
    """One field's rules, in the order a row's first broken rule is reported."""
    present = pc.invert(blank)
    if f.required:
        yield blank, "missing_required", f"missing required field {f.name}"
    yield nul_rows(raw), "malformed", f"malformed {f.name}: {NUL}"
    if f.pattern is not None:
        ok = pc.match_substring_regex(raw, f"^(?:{f.pattern})$")
        yield pc.and_(present, pc.invert(ok)), "malformed", f"malformed {f.name}: does not match {f.pattern}"
    yield pc.and_(present, pc.is_null(value)), "malformed", f"malformed {f.name}: not a valid {f.type}"
    if f.max_length is not None:
        yield (longer_than(value, f.max_length), "out_of_bounds",
               f"out of bounds {f.name}: longer than {f.max_length} characters")
    if f.allowed is not None:
        ok = pc.is_in(value, value_set=pa.array(sorted(f.allowed)))
        allowed = ", ".join(sorted(f.allowed))
        yield pc.and_(present, pc.invert(ok)), "invalid_value", f"invalid {f.name}: not one of {allowed}"
    yield from _range_rules(entity, f, value, latest)
    if f.reference is not None:
        ok = pc.is_in(value, value_set=pa.array(sorted(entity.references[f.reference])))
        yield pc.and_(present, pc.invert(ok)), "unknown_reference", f"unknown {f.name}: not in {f.reference}"


def _range_rules(entity: Entity, f: Field, value: pa.ChunkedArray, latest: datetime) -> Iterator[Violation]:
    """A number's minimum and maximum; a date's or instant's floor, and the cursor's ceiling (the check's clock)."""
    if f.minimum is not None:
        bound = f"> {f.minimum:g}" if f.minimum_exclusive else f">= {f.minimum:g}"
        yield (below(value, f.minimum, inclusive=not f.minimum_exclusive), "invalid_value",
               f"invalid {f.name}: must be {bound}")
    if f.maximum is not None:
        yield above(value, f.maximum), "out_of_bounds", f"out of bounds {f.name}: greater than {f.maximum:g}"
    if f.type in ("date", "timestamptz"):
        yield below(value, f.floor), "out_of_bounds", f"out of bounds {f.name}: before {f.floor.isoformat()}"
    if f.name == entity.cursor and f.type == "timestamptz":
        yield (above(value, latest), "out_of_bounds",
               f"out of bounds {f.name}: more than {_days(CLOCK_SKEW.days)} after the check's clock")


def _update_rules(entity: Entity, typed: dict[str, pa.ChunkedArray]) -> Iterator[Violation]:
    """Dates and instants no later than their `days_after_update` bound: events happened before they were recorded."""
    bounded = [f for f in entity.fields if f.days_after_update is not None]
    if not bounded:
        return
    update_days = registry_day_numbers(typed[_UPDATED])
    for f in bounded:
        days = f.days_after_update or 0
        bound = "after updated_at" if days == 0 else f"more than {_days(days)} after updated_at"
        yield days_after(typed[f.name], update_days, days), "out_of_bounds", f"out of bounds {f.name}: {bound}"


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


def _extra_rules(table: pa.Table, unknown: Sequence[int], drift: SchemaDrift) -> Iterator[Violation]:
    """Unknown fields kept in `_extra` obey bounds too: no NUL, at most `EXTRA_MAX_LENGTH` characters. Values that
    are dropped (`DISCARD_EXTRA`) or whose batch is refused (`FREEZE`) are never stored, so cost no row."""
    if drift is not SchemaDrift.KEEP_EXTRA:
        return
    for i in unknown:
        col, name = _extra_text(table, i), _storable(table.column_names[i])
        yield nul_rows(col), "malformed", f"malformed {name}: {NUL}"
        yield (longer_than(col, EXTRA_MAX_LENGTH), "out_of_bounds",
               f"out of bounds {name}: longer than {EXTRA_MAX_LENGTH} characters")


def _storable(name: str) -> str:
    """A field name PostgreSQL can store (in the ledger, a reason, an `_extra` key): NUL replaced by U+FFFD."""
    return name.replace("\x00", "\ufffd")


def _extra_text(table: pa.Table, i: int) -> pa.ChunkedArray:
    """Column `i` as text; nested values (structs, lists) as JSON, which Arrow's cast to string refuses."""
    col = table.column(i)
    if pa.types.is_string(col.type):
        return col
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in col.to_pylist()]
        return pa.chunked_array([pa.array(values, pa.string())])


def _nullable(schema: pa.Schema) -> pa.Schema:
    """Checking works on possibly-null columns; required-ness was enforced by the checks themselves."""
    return pa.schema([pa.field(f.name, f.type, nullable=True) for f in schema])


def _extra_json(table: pa.Table, unknown: Sequence[int], drift: SchemaDrift) -> pa.ChunkedArray:
    """Unknown fields as a JSON object per row, kept in `_extra` under SchemaDrift.KEEP_EXTRA.

    It cannot fail on what reaches it: values are text (nested ones as JSON), rows with a NUL or an over-long
    value were rejected, and names are made storable.
    """
    n = table.num_rows
    if not unknown or drift is not SchemaDrift.KEEP_EXTRA or n == 0:
        return pa.chunked_array([pa.nulls(n, pa.string())])
    # Unknown fields are rare (a drift day) and small; build JSON per row only on that cold path.
    columns = {_storable(table.column_names[i]): _extra_text(table, i).to_pylist() for i in unknown}
    rows = [json.dumps({k: v[row] for k, v in columns.items()}, ensure_ascii=False) for row in range(n)]
    return pa.chunked_array([pa.array(rows, pa.string())])
