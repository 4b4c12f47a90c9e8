"""Write → audit → publish: make the audited marts of the build schemas visible to agencies in one transaction.

dbt builds each mart into a private `build_mart_<domain>` schema; dbt's tests and the marts' GX suites audit it
there. Publishing then brings every published table, `mart_<domain>.<table>`, to the build table's content in ONE
transaction: rows that disappeared are deleted, new rows inserted, changed rows updated (a MERGE on the primary
key), and `kho.publications` records the run, its as-of date and the batch watermark the next build starts from.

Why a transactional delta rather than a schema swap or views over versioned tables: the published tables are
persistent objects, so the grants, row-level security policies and comments set on them survive every night;
no ACCESS EXCLUSIVE lock is taken on what agencies read (a swap or a view replacement takes one, and on the standby,
where agencies query, replaying it cancels or waits for their queries); and the WAL written is proportional to what
changed, not to the size of the marts. An agency's query sees the old publication or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql
from psycopg.types.json import Jsonb

from kho.errors import KhoError
from kho.warehouse import access
from kho.warehouse.migrations import require_schema

BUILD_PREFIX = "build_"
"""dbt builds mart_<domain> into build_mart_<domain> (dbt_project.yml); publishing drops the prefix."""
MART_SCHEMA_PATTERN = "mart\\_%"
BATCHES_TABLE = ("intermediate", "int_load_batches")
"""The build's batch numbering (dbt_project/models/intermediate/batches): its watermark is recorded per publication."""


class PublishError(KhoError):
    """The marts could not be published; the previous publication stays as it was."""


@dataclass(frozen=True)
class Mart:
    """A mart as built (`build_schema.table`) and as published (`schema.table`)."""

    schema: str
    table: str

    @property
    def build_schema(self) -> str:
        return BUILD_PREFIX + self.schema

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def published(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def built(self) -> sql.Identifier:
        return sql.Identifier(self.build_schema, self.table)


PersonalColumn = tuple[str, str, str, str, str]
"""(published schema, table, column, pii, mask): a personal column of a mart, from its dbt meta."""


def personal_columns(marts_dir: Path) -> list[PersonalColumn]:
    """The personal columns of the marts as dbt `meta` declares them (models/marts/<domain>/*.yml: `meta: {pii:
    direct|quasi, mask: identifier|initials|year|hide}` on a column): the one list masking follows."""
    found: list[PersonalColumn] = []
    for path in sorted(marts_dir.glob("*/*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        schema = "mart_" + path.parent.name
        for model in document.get("models") or []:
            for column in model.get("columns") or []:
                meta = {**(column.get("meta") or {}), **((column.get("config") or {}).get("meta") or {})}
                if "pii" not in meta and "mask" not in meta:
                    continue
                pii, mask = meta.get("pii"), meta.get("mask")
                if pii not in ("direct", "quasi") or mask not in access.objects.MASKS:
                    raise PublishError(f"{path}: {model['name']}.{column['name']}: meta pii={pii!r}, mask={mask!r}; "
                                       f"personal columns need pii: direct|quasi and mask: "
                                       f"{'|'.join(access.objects.MASKS)}")
                found.append((schema, model["name"], column["name"], pii, mask))
    return found


@dataclass(frozen=True)
class TableChange:
    mart: str
    rows: int
    inserted: int
    updated: int
    deleted: int
    recreated: bool


@dataclass(frozen=True)
class Publication:
    publication_id: int
    run_id: str
    as_of: dt.date
    batch_seq: int
    published_at: dt.datetime
    changes: tuple[TableChange, ...]


def built_marts(conn: psycopg.Connection[Any]) -> list[Mart]:
    """Every table dbt built into a build_mart_<domain> schema, in name order."""
    rows = conn.execute(
        "SELECT substr(table_schema, %s), table_name FROM information_schema.tables "
        "WHERE table_schema LIKE %s AND table_type = 'BASE TABLE' ORDER BY 1, 2",
        (len(BUILD_PREFIX) + 1, BUILD_PREFIX.replace("_", "\\_") + MART_SCHEMA_PATTERN),
    ).fetchall()
    return [Mart(schema, table) for schema, table in rows]


def publish(conn: psycopg.Connection[Any], marts: Sequence[Mart], *, run_id: str, as_of: dt.date,
            personal_columns: Sequence[PersonalColumn] = ()) -> Publication:
    """Publish every mart in one transaction; on any error nothing is published and the error says which mart.

    In the same transaction the agencies' access follows the marts (kho.warehouse.access.secure_publication):
    row-level security and masked views for new or recreated marts, with the personal columns given, so no agency
    ever reads a published table before its policies exist."""
    if not marts:
        raise PublishError("no marts to publish: dbt built nothing into a build_mart_* schema")
    require_schema(conn)  # kho.publications is made by `kho warehouse migrate`
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('kho.publish'))")
        changes = []
        for mart in marts:
            try:
                changes.append(_publish_table(conn, mart))
            except psycopg.Error as exc:
                raise PublishError(f"publishing {mart.name} from {mart.build_schema}.{mart.table} failed: "
                                   f"{str(exc).strip()}; nothing was published") from exc
        owner = conn.info.user
        try:
            access.secure_publication(conn, owner, personal_columns)
        except psycopg.Error as exc:
            raise PublishError(f"securing the published marts for agencies failed: {str(exc).strip()}; nothing was "
                               "published (run `kho access check`)") from exc
        seq, oid = _batch_watermark(conn)
        row = conn.execute(
            "INSERT INTO kho.publications (run_id, as_of, batch_seq, batches_oid, tables) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING publication_id, published_at",
            (run_id, as_of, seq, oid, Jsonb({c.mart: {"rows": c.rows, "inserted": c.inserted, "updated": c.updated,
                                                       "deleted": c.deleted, "recreated": c.recreated}
                                             for c in changes})),
        ).fetchone()
        assert row is not None
        publication_id, published_at = int(row[0]), row[1]
        for mart in marts:
            _stamp(conn, mart, run_id, as_of, published_at)
    return Publication(publication_id, run_id, as_of, seq, published_at, tuple(changes))


def _batch_watermark(conn: psycopg.Connection[Any]) -> tuple[int, int | None]:
    """The largest batch number the build saw, and which int_load_batches table it counts in."""
    table = sql.Identifier(*BATCHES_TABLE)
    oid = conn.execute("SELECT to_regclass(%s)::oid", (".".join(BATCHES_TABLE),)).fetchone()
    if oid is None or oid[0] is None:
        return 0, None
    seq = conn.execute(sql.SQL("SELECT coalesce(max(discovered_seq), 0) FROM {}").format(table)).fetchone()
    return int(seq[0]) if seq else 0, int(oid[0])


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, str]]:
    """Each column's name and type, its collation included (a mart's names sort in Vietnamese order: a changed
    collation recreates the published table like a changed type)."""
    return [(str(name), str(kind)) for name, kind in conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
        "       || coalesce(' COLLATE ' || nullif(a.attcollation, 0)::regcollation::text, '') "
        "FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchall()]


def _primary_key(conn: psycopg.Connection[Any], mart: Mart) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (mart.built.as_string(conn),),
    ).fetchall()
    if not rows:
        raise PublishError(f"{mart.build_schema}.{mart.table} has no primary key: give the mart a primary_key "
                           "constraint in its dbt contract, publishing merges on it")
    return [str(r[0]) for r in rows]


def _publish_table(conn: psycopg.Connection[Any], mart: Mart) -> TableChange:
    key = _primary_key(conn, mart)
    built_columns = _columns(conn, mart.build_schema, mart.table)
    published_columns = _columns(conn, mart.schema, mart.table)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(mart.schema)))
    if published_columns != built_columns:
        return _recreate(conn, mart, [c for c, _ in built_columns], existed=bool(published_columns))
    columns = [c for c, _ in built_columns]
    deleted = _delete_gone(conn, mart, key)
    inserted, updated = _merge(conn, mart, key, columns)
    rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(mart.published)).fetchone()
    return TableChange(mart.name, int(rows[0]) if rows else 0, inserted, updated, deleted, False)


def _key_match(key: list[str], left: str, right: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(left, k), sql.Identifier(right, k)) for k in key)


def _delete_gone(conn: psycopg.Connection[Any], mart: Mart, key: list[str]) -> int:
    cur = conn.execute(sql.SQL(
        "DELETE FROM {published} AS p WHERE NOT EXISTS (SELECT FROM {built} AS b WHERE {match})"
    ).format(published=mart.published, built=mart.built, match=_key_match(key, "b", "p")))
    return cur.rowcount


def _merge(conn: psycopg.Connection[Any], mart: Mart, key: list[str], columns: list[str]) -> tuple[int, int]:
    """Insert new rows and update changed ones (whole-row comparison, NULL-safe); return (inserted, updated)."""
    before = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(mart.published)).fetchone()
    others = [c for c in columns if c not in key] or key[:1]
    statement = sql.SQL(
        "MERGE INTO {published} AS p USING {built} AS b ON {match} "
        "WHEN MATCHED AND ROW({p_others}) IS DISTINCT FROM ROW({b_others}) THEN UPDATE SET {update} "
        "WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({b_cols})"
    ).format(
        published=mart.published, built=mart.built, match=_key_match(key, "p", "b"),
        p_others=sql.SQL(", ").join(sql.Identifier("p", c) for c in others),
        b_others=sql.SQL(", ").join(sql.Identifier("b", c) for c in others),
        update=sql.SQL(", ").join(sql.SQL("{} = b.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in others),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        b_cols=sql.SQL(", ").join(sql.Identifier("b", c) for c in columns),
    )
    touched = conn.execute(statement).rowcount
    after = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(mart.published)).fetchone()
    inserted = int(after[0]) - int(before[0]) if after and before else 0
    return inserted, touched - inserted


def _recreate(conn: psycopg.Connection[Any], mart: Mart, columns: list[str], *, existed: bool) -> TableChange:
    """First publication of a mart, or its columns changed: a new table shaped like the built one (constraints,
    indexes and column comments included), filled whole; grants on the old table carry over to the new one, and the
    publication's access step gives it row-level security, policies and its masked view again."""
    grants = _grants(conn, mart) if existed else []
    deleted = 0
    if existed:
        old = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(mart.published)).fetchone()
        deleted = int(old[0]) if old else 0
        # Its masked view (kho access) depends on it; the publication recreates the view in this transaction.
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(
            sql.Identifier(access.objects.MASKED_PREFIX + mart.schema.removeprefix("mart_"), mart.table)))
        conn.execute(sql.SQL("DROP TABLE {}").format(mart.published))
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(mart.published, mart.built))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    rows = conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
        mart.published, cols, cols, mart.built)).rowcount
    for statement in grants:
        conn.execute(statement)
    conn.execute(sql.SQL("ANALYZE {}").format(mart.published))  # agencies' first queries plan on real statistics
    return TableChange(mart.name, rows, rows, 0, deleted, True)


PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})


def _grants(conn: psycopg.Connection[Any], mart: Mart) -> list[sql.Composed]:
    """GRANT statements repeating every privilege granted on the published table (the owner's own are implicit)."""
    rows = conn.execute(
        "SELECT acl.privilege_type, CASE WHEN acl.grantee = 0 THEN NULL ELSE pg_get_userbyid(acl.grantee) END, "
        "acl.is_grantable FROM pg_class c, aclexplode(c.relacl) AS acl "
        "WHERE c.oid = to_regclass(%s) AND acl.grantee <> c.relowner",
        (mart.published.as_string(conn),),
    ).fetchall()
    statements = []
    for privilege, grantee, grantable in rows:
        if privilege not in PRIVILEGES:
            raise PublishError(f"{mart.name} carries privilege {privilege!r}, which publishing cannot repeat")
        statements.append(sql.SQL("GRANT {} ON {} TO {}{}").format(
            sql.SQL(privilege), mart.published, sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
            sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")))
    return statements


def _stamp(conn: psycopg.Connection[Any], mart: Mart, run_id: str, as_of: dt.date, at: dt.datetime) -> None:
    """The table comment: dbt's description of the mart, then which publication the agency is reading."""
    description = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')",
                               (mart.built.as_string(conn),)).fetchone()
    text = (description[0] if description and description[0] else mart.name).strip()
    stamp = f"{text}\n\nPublished {at.isoformat(timespec='seconds')} by run {run_id}, as of {as_of.isoformat()}."
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(mart.published, sql.Literal(stamp)))
    for column, comment in conn.execute(  # a description edited in dbt reaches tables published before the edit
            "SELECT b.attname, col_description(b.attrelid, b.attnum) FROM pg_attribute b "
            "JOIN pg_attribute p ON p.attrelid = to_regclass(%s) AND p.attname = b.attname "
            "WHERE b.attrelid = to_regclass(%s) AND b.attnum > 0 AND NOT b.attisdropped "
            "AND col_description(b.attrelid, b.attnum) IS DISTINCT FROM col_description(p.attrelid, p.attnum)",
            (mart.published.as_string(conn), mart.built.as_string(conn))).fetchall():
        conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(
            sql.Identifier(mart.schema, mart.table, column), sql.Literal(comment)))
