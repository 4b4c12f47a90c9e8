"""Every row that failed a warning expectation, found with SQL: GX counts them (a raw gate asks for no sample), and
an agency or a data engineer needs the full list, keyed to the raw row and its load batch (kho.quality_flags).

The condition of a row failing is the expectation's own: kho's domain expectations give GX's metric and this query
the same SQLAlchemy condition (`kho.quality.domain.DOMAIN_EXPECTATIONS`); the few GX built-ins that warn here are
translated once below, with GX's semantics (a null value is not evaluated by a map expectation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from kho.quality.project import Target

@dataclass(frozen=True)
class FlagQuery:
    """`SELECT row_key, batch_id, observed FROM ... WHERE <failing>` compiled for psycopg, with its parameters."""

    sql: str
    params: Mapping[str, Any]


def flag_query(target: Target, type_: str, kwargs: Mapping[str, Any], *,
               batch_range: tuple[int | None, int | None] | None) -> FlagQuery | None:
    """The query listing the rows of `target` (in the batch range, for a raw table) that fail expectation `type_`
    with `kwargs` (parameters resolved); None when the expectation is not row-level (a row count, a column set)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    condition = _condition(type_, kwargs)
    if condition is None:
        return None
    table, key = _relation(target)
    read = [str(kwargs["column"]), *(str(v) for k, v in sorted(kwargs.items())
                                     if k.endswith("_column") and isinstance(v, str))]
    observed = sa.func.jsonb_build_object(*_pairs(dict.fromkeys(read)))
    batch: Any
    if key:
        row_key = sa.func.jsonb_build_object(*_pairs(key))
        batch = sa.column("_batch_id")
    else:
        row_key = sa.func.to_jsonb(sa.literal_column("flagged_row"))
        batch = sa.cast(sa.null(), sa.BigInteger())  # a mart row has no load batch
    query = sa.select(row_key.label("row_key"), batch.label("batch_id"), observed.label("observed"))
    query = query.select_from(table).where(condition)
    if batch_range is not None and key:
        first, last = batch_range
        query = query.where(sa.column("_batch_id").between(first, last))
    compiled = query.compile(dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True})
    return FlagQuery(str(compiled), dict(compiled.params))


def _pairs(names: Iterable[str]) -> list[Any]:
    """name, value, name, value, ... for jsonb_build_object."""
    import sqlalchemy as sa

    out: list[Any] = []
    for name in names:
        out += [sa.literal(name), sa.column(name)]
    return out


def _relation(target: Target) -> tuple[Any, tuple[str, ...]]:
    """What to read and the row key: a raw table (not its gate view, which shows only running validations) keyed
    by its contract's key; a mart's build table, whose row is its own key."""
    import sqlalchemy as sa

    from kho.quality.project import RAW_LAYER

    if target.layer == RAW_LAYER:
        from kho.sources import ENTITIES

        entity = next((e for e in ENTITIES if e.raw_table == target.table), None)
        if entity is None:
            raise LookupError(f"no entity has raw table {target.table!r}")
        return sa.table(target.table, schema=RAW_LAYER), tuple(entity.key)
    return sa.table(target.table, schema=target.schema).alias("flagged_row"), ()


def _condition(type_: str, kwargs: Mapping[str, Any]) -> ColumnElement[bool] | None:
    from kho.quality.domain import DOMAIN_EXPECTATIONS

    rule = DOMAIN_EXPECTATIONS.get(type_)
    if rule is not None:
        return rule.unexpected(kwargs)
    builtin = _BUILTINS.get(type_)
    return None if builtin is None else builtin(kwargs)


def _in_set(kwargs: Mapping[str, Any]) -> ColumnElement[bool]:
    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import ARRAY

    column: Any = sa.column(str(kwargs["column"]))
    values = sa.bindparam("value_set", value=[str(v) for v in kwargs["value_set"]], type_=ARRAY(sa.Text), unique=True)
    return sa.and_(column.is_not(None), sa.not_(sa.cast(column, sa.Text) == sa.func.any(values)))


def _regex(kwargs: Mapping[str, Any]) -> ColumnElement[bool]:
    import sqlalchemy as sa

    column: Any = sa.column(str(kwargs["column"]))
    return sa.and_(column.is_not(None), sa.not_(column.regexp_match(str(kwargs["regex"]))))


def _not_null(kwargs: Mapping[str, Any]) -> ColumnElement[bool]:
    import sqlalchemy as sa

    return sa.column(str(kwargs["column"])).is_(None)


def _between(kwargs: Mapping[str, Any], value: Any) -> ColumnElement[bool]:
    import sqlalchemy as sa

    outside = []
    untyped = sa.types.NullType()  # a bound left for PostgreSQL to type: an ISO date against a date, a number ...
    if kwargs.get("min_value") is not None:
        low = sa.literal(kwargs["min_value"], untyped)
        outside.append(value <= low if kwargs.get("strict_min") else value < low)
    if kwargs.get("max_value") is not None:
        high = sa.literal(kwargs["max_value"], untyped)
        outside.append(value >= high if kwargs.get("strict_max") else value > high)
    column: Any = sa.column(str(kwargs["column"]))
    return sa.and_(column.is_not(None), sa.or_(*outside)) if outside else sa.false()


def _lengths(kwargs: Mapping[str, Any]) -> ColumnElement[bool]:
    import sqlalchemy as sa

    return _between(kwargs, sa.func.char_length(sa.column(str(kwargs["column"]))))


def _values_between(kwargs: Mapping[str, Any]) -> ColumnElement[bool]:
    import sqlalchemy as sa

    return _between(kwargs, sa.column(str(kwargs["column"])))


_BUILTINS: dict[str, Callable[[Mapping[str, Any]], ColumnElement[bool]]] = {
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_match_regex": _regex,
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_value_lengths_to_be_between": _lengths,
    "expect_column_values_to_be_between": _values_between,
}
"""The GX built-ins a warning may use whose failing rows kho lists, with GX's semantics."""
