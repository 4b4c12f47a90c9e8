"""The data contract: what a registry entity is, written once and read by every stage.

`sources` knows nothing of databases or HTTP. It describes fields, keys and checks, and can check an Arrow
table against them (vectorised, with pyarrow.compute), so the loader, the simulator, the GX suite generator and
the dbt sources checks all read the same definition.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

FieldType = Literal["text", "date", "timestamptz", "integer", "numeric", "boolean"]
PiiLevel = Literal["none", "quasi", "direct"]
ReasonCode = Literal["missing_required", "malformed", "invalid_value", "unknown_reference", "inconsistent"]

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
    violates: Callable[[pa.Table], pa.ChunkedArray | pa.Array]
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
    endpoint: str
    description: str = ""
    checks: tuple[RowCheck, ...] = ()
    drift: SchemaDrift = SchemaDrift.KEEP_EXTRA
    references: dict[str, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def raw_table(self) -> str:
        """`<registry>__<entity>` in the `raw` schema."""
        return f"{self.registry}__{self.name}"

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


@dataclass(frozen=True)
class CheckedBatch:
    """The outcome of checking one Arrow table against its entity's contract."""

    accepted: pa.Table
    """Typed rows (the entity's arrow schema) plus `_extra` (JSON text of unknown fields, or null)."""
    rejected: pa.Table
    """The rejected rows as received (all text), plus `_reason_code` and `_reason`."""
    unknown_fields: tuple[str, ...]


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name in table.column_names:
        col = table.column(name)
        return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
    return pa.chunked_array([pa.nulls(table.num_rows, pa.string())])


def _blank(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(col), ""))


def parse_field(field_: Field, col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Convert wire text to the field's type; values that do not parse become null."""
    col = pc.utf8_trim_whitespace(col)
    if field_.type == "text":
        return pc.utf8_normalize(col, form="NFC") if field_.normalise_nfc else col
    if field_.type == "date":
        fmt = field_.format or "%Y-%m-%d"
        ts = pc.strptime(col, format=fmt, unit="s", error_is_null=True)
        ts = _reject_rolled_over(ts, col, fmt)
        return pc.cast(ts, pa.date32())
    if field_.type == "timestamptz":
        parsed = _parse_timestamp(col)
        day = pc.utf8_slice_codeunits(col, 0, 10)
        calendar_ok = pc.is_valid(_reject_rolled_over(pc.strptime(day, format="%Y-%m-%d", unit="s",
                                                                  error_is_null=True), day, "%Y-%m-%d"))
        return pc.if_else(calendar_ok, parsed, pa.scalar(None, parsed.type))
    if field_.type == "boolean":
        lowered = pc.utf8_lower(col)
        truthy = pc.is_in(lowered, value_set=pa.array(["true", "1", "t", "yes"]))
        falsy = pc.is_in(lowered, value_set=pa.array(["false", "0", "f", "no"]))
        return pc.if_else(truthy, True, pc.if_else(falsy, False, pa.scalar(None, pa.bool_())))
    target = field_.arrow_type
    valid = pc.match_substring_regex(col, r"^[+-]?\d+$" if field_.type == "integer" else r"^[+-]?\d+(\.\d+)?$")
    cleaned = pc.if_else(valid, col, pa.scalar(None, pa.string()))
    return pc.cast(cleaned, target)


def _reject_rolled_over(ts: pa.ChunkedArray, text: pa.ChunkedArray, fmt: str) -> pa.ChunkedArray:
    """Arrow's strptime rolls 2001-02-30 over to 2001-03-02; a value that does not round-trip is invalid."""
    same = pc.equal(pc.strftime(ts, format=fmt), text)
    return pc.if_else(pc.fill_null(same, False), ts, pa.scalar(None, ts.type))


def _parse_timestamp(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO-8601 with a UTC offset (`Z` or `+07:00`) or a naive time taken as UTC."""
    unit = "us"
    with_offset = pc.strptime(col, format="%Y-%m-%dT%H:%M:%S%z", unit=unit, error_is_null=True)
    naive = pc.strptime(col, format="%Y-%m-%dT%H:%M:%S", unit=unit, error_is_null=True)
    naive = pc.assume_timezone(naive, timezone="UTC")
    trimmed = pc.replace_substring_regex(col, pattern=r"\.\d+", replacement="")
    fractional = pc.strptime(trimmed, format="%Y-%m-%dT%H:%M:%S%z", unit=unit, error_is_null=True)
    return pc.coalesce(with_offset, pc.cast(naive, with_offset.type), fractional)


def check_table(entity: Entity, table: pa.Table) -> CheckedBatch:
    """Check every row against `entity`'s contract; the first broken rule names the row's reason.

    Fully vectorised: no Python loop over rows, so it runs on the hot path of every load.
    """
    n = table.num_rows
    reason: pa.ChunkedArray = pa.chunked_array([pa.nulls(n, pa.string())])
    code: pa.ChunkedArray = pa.chunked_array([pa.nulls(n, pa.string())])

    def flag(bad: pa.ChunkedArray | pa.Array, reason_code: str, message: str) -> None:
        nonlocal reason, code
        bad = pc.fill_null(bad, False)
        fresh = pc.and_(bad, pc.is_null(reason))
        reason = pc.if_else(fresh, pa.scalar(message), reason)
        code = pc.if_else(fresh, pa.scalar(reason_code), code)

    typed: dict[str, pa.ChunkedArray] = {}
    for f in entity.fields:
        raw = _text(table, f.name)
        blank = _blank(raw)
        if f.required:
            flag(blank, "missing_required", f"missing required field {f.name}")
        present = pc.invert(blank)
        if f.pattern is not None:
            ok = pc.match_substring_regex(raw, f"^(?:{f.pattern})$")
            flag(pc.and_(present, pc.invert(ok)), "malformed", f"malformed {f.name}: does not match {f.pattern}")
        value = parse_field(f, raw)
        flag(pc.and_(present, pc.is_null(value)), "malformed", f"malformed {f.name}: not a valid {f.type}")
        if f.allowed is not None:
            ok = pc.is_in(value, value_set=pa.array(sorted(f.allowed)))
            allowed = ", ".join(sorted(f.allowed))
            flag(pc.and_(present, pc.invert(ok)), "invalid_value", f"invalid {f.name}: not one of {allowed}")
        if f.reference is not None:
            ref = entity.references.get(f.reference)
            if ref is None:
                raise KeyError(f"{entity.qualified_name}.{f.name} names unknown reference set {f.reference!r}")
            ok = pc.is_in(value, value_set=pa.array(sorted(ref)))
            flag(pc.and_(present, pc.invert(ok)), "unknown_reference", f"unknown {f.name}: not in {f.reference}")
        typed[f.name] = pc.if_else(blank, pa.scalar(None, f.arrow_type), value)

    typed_table = pa.table(typed, schema=_nullable(entity.arrow_schema()))
    for check in entity.checks:
        flag(check.violates(typed_table), check.code, check.message)

    known = set(entity.field_names)
    unknown = tuple(c for c in table.column_names if c not in known and not c.startswith("_"))
    rejected_mask = pc.is_valid(reason)
    accepted = typed_table.filter(pc.invert(rejected_mask))
    extra = _extra_json(table.filter(pc.invert(rejected_mask)), unknown, entity.drift)
    accepted = accepted.append_column("_extra", extra)
    rejected = table.filter(rejected_mask)
    rejected = rejected.append_column("_reason_code", pc.filter(code, rejected_mask))
    rejected = rejected.append_column("_reason", pc.filter(reason, rejected_mask))
    return CheckedBatch(accepted=accepted, rejected=rejected, unknown_fields=unknown)


def _nullable(schema: pa.Schema) -> pa.Schema:
    """Checking works on possibly-null columns; required-ness was enforced by the checks themselves."""
    return pa.schema([pa.field(f.name, f.type, nullable=True) for f in schema])


def _extra_json(table: pa.Table, unknown: Sequence[str], drift: SchemaDrift) -> pa.ChunkedArray:
    """Unknown fields as a JSON object per row, kept in `_extra` under SchemaDrift.KEEP_EXTRA."""
    n = table.num_rows
    if not unknown or drift is not SchemaDrift.KEEP_EXTRA or n == 0:
        return pa.chunked_array([pa.nulls(n, pa.string())])
    # Unknown fields are rare (a drift day) and small; build JSON per row only on that cold path.
    columns = {name: _text(table, name).to_pylist() for name in unknown}
    rows = [json.dumps({k: columns[k][i] for k in unknown}, ensure_ascii=False) for i in range(n)]
    return pa.chunked_array([pa.array(rows, pa.string())])
