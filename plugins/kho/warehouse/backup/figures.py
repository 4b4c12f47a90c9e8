"""What verify-restore compares: the warehouse's figures at one instant, on the live primary and on a restore.

The ledger's totals per registry and entity, every raw table's row count, and an order-independent hash of every
published mart table's rows (the sum of a 64-bit digest of each row's text, so two copies of a table agree whatever
order their pages hold the rows in). Both sides compute them with the same session settings, so a row's text does
not depend on a server's time zone or date style.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

SESSION: dict[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}
"""Every setting a value's text output depends on, fixed for both sides of the comparison."""
LEDGER = "kho.load_ledger"
PUBLICATIONS = "kho.publications"
LEDGER_COLUMNS = ("batches", "rows_read", "rows_new", "rows_changed", "rows_unchanged", "rows_rejected",
                  "last_batch_id")


@dataclass(frozen=True)
class Figures:
    ledger: dict[str, dict[str, int]] = field(default_factory=dict)
    """registry/entity -> batches, row totals and the last batch id."""
    raw_rows: dict[str, int] = field(default_factory=dict)
    """raw.<table> -> rows."""
    marts: dict[str, dict[str, str]] = field(default_factory=dict)
    """mart_<domain>.<table> -> rows and hash (as text: the hash is a sum beyond 64 bits)."""
    publications: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "raw_rows": self.raw_rows, "marts": self.marts,
                "publications": self.publications}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figures:
        return cls(ledger=data.get("ledger", {}), raw_rows=data.get("raw_rows", {}), marts=data.get("marts", {}),
                   publications=data.get("publications", {}))

    def flat(self) -> dict[str, str]:
        """One comparable value per name, e.g. `ledger population/citizens rows_read` or `mart mart_x.y hash`."""
        out: dict[str, str] = {}
        for key, totals in self.ledger.items():
            out.update({f"ledger {key} {name}": str(value) for name, value in totals.items()})
        out.update({f"raw {table} rows": str(rows) for table, rows in self.raw_rows.items()})
        for table, figures in self.marts.items():
            out.update({f"mart {table} {name}": str(value) for name, value in figures.items()})
        out.update({f"publications {name}": str(value) for name, value in self.publications.items()})
        return out


@dataclass(frozen=True)
class Comparison:
    matched: tuple[str, ...]
    differed: tuple[tuple[str, str | None, str | None], ...]
    """(name, recorded at the backup, found in the restore); None where one side lacks the figure."""

    @property
    def ok(self) -> bool:
        return not self.differed


def compare(recorded: Figures, restored: Figures) -> Comparison:
    left, right = recorded.flat(), restored.flat()
    matched, differed = [], []
    for name in sorted(left.keys() | right.keys()):
        if left.get(name) == right.get(name):
            matched.append(name)
        else:
            differed.append((name, left.get(name), right.get(name)))
    return Comparison(tuple(matched), tuple(differed))


def fix_session(conn: psycopg.Connection[Any]) -> None:
    """Inside the transaction about to compute figures."""
    for name, value in SESSION.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


def existing(conn: psycopg.Connection[Any], *relations: str) -> list[str]:
    return [r for r in relations
            if (row := conn.execute("SELECT to_regclass(%s)", (r,)).fetchone()) and row[0] is not None]


@dataclass(frozen=True)
class Locks:
    """What the figures' transaction locks, found before it starts (a query would take its snapshot)."""

    read: tuple[tuple[str, str], ...]
    """Every raw table and published mart table."""
    bookkeeping: tuple[str, ...]
    """The ledger and the publications, where they exist."""


def locks(conn: psycopg.Connection[Any]) -> Locks:
    return Locks(tuple(_tables(conn, "raw") + _tables(conn, "mart\\_%")),
                 tuple(existing(conn, LEDGER, PUBLICATIONS)))


def lock_writers(conn: psycopg.Connection[Any], plan: Locks) -> None:
    """Lock what the figures read, so no load or publication commits in between and none deadlocks with us.

    First ACCESS SHARE on the tables to be read, holding nothing else yet: a first load (ACCESS EXCLUSIVE on its raw
    table) or a publication recreating a mart (DROP TABLE) under way finishes before we go on, and one starting
    later waits for us. Then SHARE on the ledger and the publications: a load (whose batch commits with its ledger
    row) or a publication already writing is waited for, and none commits until this transaction ends. LOCK takes
    no snapshot, so the REPEATABLE READ snapshot is taken after the waits, by the first query that follows."""
    if plan.read:
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
            sql.SQL(", ").join(sql.Identifier(s, t) for s, t in plan.read)))
    if plan.bookkeeping:
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
            sql.SQL(", ").join(sql.Identifier(*n.split(".")) for n in plan.bookkeeping)))


def compute(conn: psycopg.Connection[Any]) -> Figures:
    """The figures as this transaction's snapshot sees them (call inside a REPEATABLE READ transaction)."""
    fix_session(conn)
    return Figures(ledger=_ledger(conn), raw_rows=_raw_rows(conn), marts=dict(_marts(conn)),
                   publications=_publications(conn))


def _ledger(conn: psycopg.Connection[Any]) -> dict[str, dict[str, int]]:
    if not existing(conn, LEDGER):
        return {}
    rows = conn.execute(
        "SELECT registry || '/' || entity, count(*), sum(rows_read), sum(rows_new), sum(rows_changed), "
        "sum(rows_unchanged), sum(rows_rejected), max(batch_id) FROM kho.load_ledger GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {str(r[0]): dict(zip(LEDGER_COLUMNS, (int(v) for v in r[1:]), strict=True)) for r in rows}


def _publications(conn: psycopg.Connection[Any]) -> dict[str, int]:
    if not existing(conn, PUBLICATIONS):
        return {}
    row = conn.execute("SELECT count(*), coalesce(max(publication_id), 0) FROM kho.publications").fetchone()
    assert row is not None
    return {"count": int(row[0]), "last_id": int(row[1])}


def _tables(conn: psycopg.Connection[Any], schema_pattern: str) -> list[tuple[str, str]]:
    return [(str(s), str(t)) for s, t in conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname LIKE %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1, 2",
        (schema_pattern,)).fetchall()]


def _raw_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    out = {}
    for schema, table in _tables(conn, "raw"):
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()
        out[f"{schema}.{table}"] = int(row[0]) if row else 0
    return out


def _marts(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, dict[str, str]]]:
    for schema, table in _tables(conn, "mart\\_%"):
        row = conn.execute(sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0) "
            "FROM {} AS t").format(sql.Identifier(schema, table))).fetchone()
        assert row is not None
        yield f"{schema}.{table}", {"rows": str(row[0]), "hash": str(row[1])}
