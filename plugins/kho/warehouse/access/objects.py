"""What agencies read, as database objects: row-level security, masked views, and the privileges that reach them.

Everything here is computed from three inputs the database itself holds — the applied declaration
(`kho_access.agencies`, written by `kho access apply`), the published tables (`mart_<domain>.*`) and their personal
columns (`kho_access.personal_columns`, written by each publication from dbt's `meta`) — so that `kho access apply`
and every publication reach the same state, and `kho access check` can compare it with the catalog.

The design (docs/access.md):
- every published table has RLS enabled and forced, with exactly two policies: the owner's (publishing merges into
  it) and `kho_agency_scope`, which keeps rows whose `province_code_2025` is in the querying role's scope; the scope
  comes from `kho_access.provinces(current_user)` (SECURITY DEFINER, evaluated once per query as an InitPlan);
- agencies with `pii: full` read `mart_<domain>.<table>`; agencies with `pii: none` read only
  `masked_<domain>.<table>`, security-barrier views owned by the NOLOGIN role kho_masking (not the table owner and
  not a superuser, so the table's RLS applies through the view, to the agency that queries it);
- every privilege an agency, kho_masking or PUBLIC holds in the warehouse database is one of the declared ones;
  anything else is drift, and applying revokes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

from kho.warehouse.access.declaration import AccessError

MaskKind = Literal["identifier", "initials", "year", "hide"]
MASKS: tuple[MaskKind, ...] = ("identifier", "initials", "year", "hide")
PiiLevel = Literal["direct", "quasi"]

ACCESS_SCHEMA = "kho_access"
MASKING_ROLE = "kho_masking"
MART_PREFIX = "mart_"
MASKED_PREFIX = "masked_"
SCOPE_COLUMN = "province_code_2025"
OWNER_POLICY = "kho_owner_all"
SCOPE_POLICY = "kho_agency_scope"
MANAGED_COMMENT = "kho agency: "
"""Agency roles carry this comment prefix: roles named agency_* without it are not kho's to drop."""

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
PRIVILEGE_WORDS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE",
                             "CREATE", "CONNECT", "TEMPORARY", "EXECUTE", "SET", "ALTER SYSTEM"})

BOOTSTRAP_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {ACCESS_SCHEMA}",
    f"""
    CREATE TABLE IF NOT EXISTS {ACCESS_SCHEMA}.agencies (
        role              name PRIMARY KEY,
        slug              text NOT NULL UNIQUE,
        name              text NOT NULL,
        datasets          text[] NOT NULL,
        provinces         text[] NOT NULL,
        pii               text NOT NULL CHECK (pii IN ('none', 'full')),
        connection_limit  integer NOT NULL,
        statement_timeout_ms bigint NOT NULL,
        applied_at        timestamptz NOT NULL DEFAULT now()
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {ACCESS_SCHEMA}.personal_columns (
        schema_name  name NOT NULL,
        table_name   name NOT NULL,
        column_name  name NOT NULL,
        pii          text NOT NULL CHECK (pii IN ('direct', 'quasi')),
        mask         text NOT NULL CHECK (mask IN ('identifier', 'initials', 'year', 'hide')),
        PRIMARY KEY (schema_name, table_name, column_name)
    )
    """,
    f"COMMENT ON TABLE {ACCESS_SCHEMA}.agencies IS 'The access declaration as last applied by `kho access apply` "
    "(access/agencies.yml): what each agency role may read.'",
    f"COMMENT ON TABLE {ACCESS_SCHEMA}.personal_columns IS 'Personal columns of the published marts and how they "
    "are masked, from dbt meta (pii, mask); rewritten by every publication.'",
    f"""
    CREATE OR REPLACE FUNCTION {ACCESS_SCHEMA}.provinces(role_name name) RETURNS text[]
        LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL SAFE
    AS $body$
    BEGIN
        RETURN (SELECT a.provinces FROM {ACCESS_SCHEMA}.agencies AS a
                WHERE a.role OPERATOR(pg_catalog.=) role_name);
    END
    $body$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {ACCESS_SCHEMA}.mask_identifier(value text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        SET search_path = pg_catalog, pg_temp
    AS $body$ SELECT CASE WHEN length(value) > 5
                          THEN left(value, 3) || repeat('*', length(value) - 5) || right(value, 2)
                          ELSE repeat('*', length(value)) END $body$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {ACCESS_SCHEMA}.mask_initials(value text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        SET search_path = pg_catalog, pg_temp
    AS $body$ SELECT string_agg(left(word, 1) || '.', ' ' ORDER BY n)
              FROM regexp_split_to_table(btrim(value), '\\s+') WITH ORDINALITY AS w(word, n)
              WHERE word <> '' $body$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {ACCESS_SCHEMA}.mask_year(value date) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        SET search_path = pg_catalog, pg_temp
    AS $body$ SELECT extract(year FROM value)::integer $body$
    """,
    f"COMMENT ON FUNCTION {ACCESS_SCHEMA}.provinces(name) IS 'The 2025 province codes a role may see (* = all); "
    "row-level security policies of the published marts call it with current_user, once per query. PL/pgSQL (its "
    "plan is cached per session, a SQL function is planned on every call) and SECURITY DEFINER without a "
    "search_path setting (which costs every call a settings save and restore): every name in it is "
    "schema-qualified, operators included, and agencies can create nothing.'",
    f"COMMENT ON FUNCTION {ACCESS_SCHEMA}.mask_identifier(text) IS 'CCCD / social insurance code masking: first 3 "
    "and last 2 characters kept (074*******34).'",
    f"COMMENT ON FUNCTION {ACCESS_SCHEMA}.mask_initials(text) IS 'Name masking: initials only (Nguyễn Văn An → "
    "N. V. A.).'",
    f"COMMENT ON FUNCTION {ACCESS_SCHEMA}.mask_year(date) IS 'Date masking: the year only.'",
)
ACCESS_FUNCTIONS = ("provinces(name)", "mask_identifier(text)", "mask_initials(text)", "mask_year(date)")
MASK_DESCRIPTIONS: dict[MaskKind, str] = {
    "identifier": "first 3 and last 2 characters kept",
    "initials": "initials only",
    "year": "year only",
    "hide": "withheld (null)",
}


# ------------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class AppliedAgency:
    """An agency as the database holds it (kho_access.agencies)."""

    role: str
    slug: str
    name: str
    datasets: tuple[str, ...]
    provinces: tuple[str, ...]
    pii: Literal["none", "full"]
    connection_limit: int
    statement_timeout_ms: int

    def reads(self, schema: str, table: str) -> bool:
        return schema in self.datasets or f"{schema}.{table}" in self.datasets


@dataclass(frozen=True)
class Column:
    name: str
    type_sql: str
    comment: str | None


@dataclass(frozen=True)
class PublishedTable:
    schema: str
    table: str
    owner: str
    columns: tuple[Column, ...]
    masks: dict[str, MaskKind] = field(default_factory=dict, compare=False, hash=False)

    @property
    def domain(self) -> str:
        return self.schema[len(MART_PREFIX):]

    @property
    def masked_schema(self) -> str:
        return MASKED_PREFIX + self.domain

    @property
    def has_scope(self) -> bool:
        return any(c.name == SCOPE_COLUMN for c in self.columns)

    @property
    def qualified(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def masked_view(self) -> sql.Identifier:
        return sql.Identifier(self.masked_schema, self.table)


@dataclass(frozen=True, order=True)
class Privilege:
    """One privilege one grantee holds on one object; `grantee` None is PUBLIC."""

    kind: Literal["database", "schema", "table", "column", "function", "parameter", "default", "member"]
    target: tuple[str, ...]
    privilege: str
    grantee: str | None

    def describe(self) -> str:
        who = self.grantee or "PUBLIC"
        if self.kind == "member":
            return f"{who} is a member of role {self.target[0]}"
        if self.kind == "default":
            owner, schema, _ = self.target
            return f"default privilege {self.privilege} on future tables of {owner} in {schema or 'any schema'} " \
                   f"to {who}"
        return f"{self.privilege} on {self.kind} {'.'.join(self.target)} to {who}"

    def _object(self) -> sql.Composable:
        if self.kind == "database":
            return sql.SQL("DATABASE {}").format(sql.Identifier(self.target[0]))
        if self.kind == "schema":
            return sql.SQL("SCHEMA {}").format(sql.Identifier(self.target[0]))
        if self.kind in ("table", "column"):
            return sql.SQL("TABLE {}").format(sql.Identifier(*self.target[:2]))
        if self.kind == "function":
            return sql.SQL("FUNCTION {}").format(sql.SQL(self.target[0]))  # regprocedure text from the catalog
        if self.kind == "parameter":
            return sql.SQL("PARAMETER {}").format(sql.Identifier(self.target[0]))
        raise AssertionError(self.kind)

    def _words(self) -> sql.Composable:
        if self.privilege not in PRIVILEGE_WORDS:
            raise AccessError(f"unexpected privilege {self.privilege!r} in the catalog")
        words = sql.SQL(self.privilege)
        if self.kind == "column":
            return sql.SQL("{} ({})").format(words, sql.Identifier(self.target[2]))
        return words

    def _grantee(self) -> sql.Composable:
        return sql.SQL("PUBLIC") if self.grantee is None else sql.Identifier(self.grantee)

    def grant(self) -> sql.Composed:
        if self.kind == "member":
            return sql.SQL("GRANT {} TO {}").format(sql.Identifier(self.target[0]), self._grantee())
        if self.kind == "default":
            return sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON TABLES TO {}").format(
                sql.Identifier(self.target[0]), sql.Identifier(self.target[1]), self._words(), self._grantee())
        return sql.SQL("GRANT {} ON {} TO {}").format(self._words(), self._object(), self._grantee())

    def revoke(self) -> sql.Composed:
        if self.kind == "member":
            return sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(self.target[0]), self._grantee())
        if self.kind == "default":
            owner, schema, objtype = self.target
            objects = sql.SQL({"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES",
                               "n": "SCHEMAS"}.get(objtype, "TABLES"))
            in_schema = sql.SQL(" IN SCHEMA {}").format(sql.Identifier(schema)) if schema else sql.SQL("")
            return sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {}{} REVOKE {} ON {} FROM {}").format(
                sql.Identifier(owner), in_schema, self._words(), objects, self._grantee())
        return sql.SQL("REVOKE {} ON {} FROM {}").format(self._words(), self._object(), self._grantee())


@dataclass(frozen=True)
class Change:
    """One difference between the declaration and the database, and the statements that remove it."""

    action: Literal["add", "remove", "fix"]
    what: str
    statements: tuple[sql.Composed, ...]

    def line(self) -> str:
        return {"add": "+", "remove": "-", "fix": "~"}[self.action] + " " + self.what


# ------------------------------------------------------------------------------------------------- bootstrap


def bootstrap(conn: psycopg.Connection[Any], owner: str) -> None:
    """The kho_access schema, its tables and functions, owned by the warehouse's owner role (idempotent; runs in
    the caller's transaction)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('kho.access.bootstrap'))")
    for statement in BOOTSTRAP_DDL:  # every time: a new kho version's functions replace the old ones
        conn.execute(statement)
    schema = sql.Identifier(ACCESS_SCHEMA)
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
    if _current_user(conn) != owner:
        conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, sql.Identifier(owner)))
        for table in ("agencies", "personal_columns"):
            conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(ACCESS_SCHEMA, table),
                                                                    sql.Identifier(owner)))
        for function in ACCESS_FUNCTIONS:
            conn.execute(sql.SQL("ALTER FUNCTION {}.{} OWNER TO {}").format(
                schema, sql.SQL(function), sql.Identifier(owner)))


def _current_user(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def applied(conn: psycopg.Connection[Any]) -> list[AppliedAgency] | None:
    """The declaration last applied, or None when `kho access apply` never ran on this database."""
    if conn.execute("SELECT to_regclass(%s)", (f"{ACCESS_SCHEMA}.agencies",)).fetchone() == (None,):
        return None
    rows = conn.execute(
        sql.SQL("SELECT role, slug, name, datasets, provinces, pii, connection_limit, statement_timeout_ms "
                "FROM {} ORDER BY role").format(sql.Identifier(ACCESS_SCHEMA, "agencies"))).fetchall()
    return [AppliedAgency(r[0], r[1], r[2], tuple(r[3]), tuple(r[4]), r[5], int(r[6]), int(r[7])) for r in rows]


def record_personal_columns(conn: psycopg.Connection[Any], markings: Iterable[tuple[str, str, str, str, str]]
                            ) -> None:
    """Replace the personal-column markings (schema, table, column, pii, mask) with the publication's."""
    rows = sorted(set(markings))
    for *_, pii, mask in rows:
        if pii not in ("direct", "quasi") or mask not in MASKS:
            raise AccessError(f"personal column marking pii={pii!r} mask={mask!r} is not one of pii direct|quasi, "
                              f"mask {'|'.join(MASKS)}; fix the column's dbt meta")
    table = sql.Identifier(ACCESS_SCHEMA, "personal_columns")
    conn.execute(sql.SQL("DELETE FROM {}").format(table))
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(table), rows)


# ------------------------------------------------------------------------------------------------- the catalog


def published_tables(conn: psycopg.Connection[Any]) -> list[PublishedTable]:
    """Every table in a mart_<domain> schema, with its columns and masks (in name order)."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner), a.attname, format_type(a.atttypid, a.atttypmod), "
        "       col_description(c.oid, a.attnum) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname LIKE 'mart\\_%' AND c.relkind IN ('r', 'p') ORDER BY 1, 2, a.attnum"
    ).fetchall()
    masks = _masks(conn)
    tables: dict[tuple[str, str], tuple[str, list[Column]]] = {}
    for schema, table, owner, column, type_sql, comment in rows:
        tables.setdefault((schema, table), (owner, []))[1].append(Column(column, type_sql, comment))
    return [PublishedTable(schema, table, owner, tuple(columns), masks.get((schema, table), {}))
            for (schema, table), (owner, columns) in tables.items()]


def _masks(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], dict[str, MaskKind]]:
    if conn.execute("SELECT to_regclass(%s)", (f"{ACCESS_SCHEMA}.personal_columns",)).fetchone() == (None,):
        return {}
    masks: dict[tuple[str, str], dict[str, MaskKind]] = {}
    for schema, table, column, mask in conn.execute(
            sql.SQL("SELECT schema_name, table_name, column_name, mask FROM {}").format(
                sql.Identifier(ACCESS_SCHEMA, "personal_columns"))):
        masks.setdefault((schema, table), {})[column] = mask
    return masks


def actual_privileges(conn: psycopg.Connection[Any], grantees: Sequence[str]) -> set[Privilege]:
    """Every privilege `grantees` (and PUBLIC, where it is not PostgreSQL's harmless default) hold in this database:
    on the database, schemas, relations, columns, functions, parameters; default privileges; role memberships.
    An owner's own privileges are implicit in owning, not grants, and are left out."""
    rows = conn.execute(_ACL_QUERY, {"grantees": list(grantees)}).fetchall()
    found = set()
    for kind, target, privilege, grantee in rows:
        found.add(Privilege(kind, tuple(target), privilege, grantee))
    return found


_ACL_QUERY = """
WITH who AS (
    SELECT oid, rolname FROM pg_roles WHERE rolname = ANY (%(grantees)s)
    UNION ALL SELECT 0, NULL
), user_schemas AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%%'
), acl AS (
    SELECT 'database' AS kind, ARRAY[d.datname::text] AS target, a.privilege_type, a.grantee
    FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
    WHERE d.datname = current_database() AND a.grantee <> d.datdba
  UNION ALL
    SELECT 'schema', ARRAY[n.nspname::text], a.privilege_type, a.grantee
    FROM pg_namespace n JOIN user_schemas u ON u.oid = n.oid,
         aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
    WHERE a.grantee <> n.nspowner
  UNION ALL
    SELECT 'table', ARRAY[u.nspname::text, c.relname::text], a.privilege_type, a.grantee
    FROM pg_class c JOIN user_schemas u ON u.oid = c.relnamespace,
         aclexplode(coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char",
                                                 c.relowner))) a
    WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S') AND a.grantee <> c.relowner
  UNION ALL
    SELECT 'column', ARRAY[u.nspname::text, c.relname::text, att.attname::text], a.privilege_type, a.grantee
    FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN user_schemas u ON u.oid = c.relnamespace,
         aclexplode(att.attacl) a
    WHERE att.attacl IS NOT NULL AND att.attnum > 0 AND NOT att.attisdropped
  UNION ALL
    SELECT 'function', ARRAY[p.oid::regprocedure::text], a.privilege_type, a.grantee
    FROM pg_proc p JOIN user_schemas u ON u.oid = p.pronamespace, aclexplode(p.proacl) a
    WHERE a.grantee <> 0 AND a.grantee <> p.proowner
  UNION ALL
    SELECT 'parameter', ARRAY[pa.parname::text], a.privilege_type, a.grantee
    FROM pg_parameter_acl pa, aclexplode(pa.paracl) a
  UNION ALL
    SELECT 'default', ARRAY[pg_get_userbyid(d.defaclrole)::text, coalesce(n.nspname, '')::text, d.defaclobjtype::text],
           a.privilege_type, a.grantee
    FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a
  UNION ALL
    SELECT 'member', ARRAY[pg_get_userbyid(m.roleid)::text], 'MEMBER', m.member
    FROM pg_auth_members m
)
SELECT acl.kind, acl.target, acl.privilege_type, who.rolname
FROM acl JOIN who ON who.oid = acl.grantee
ORDER BY 1, 2, 3, 4
"""


# ------------------------------------------------------------------------------------------------- desired state


def scope_expression(table: PublishedTable) -> sql.Composable:
    """The scope policy: rows of the querying role's provinces; `*` (all provinces) also sees rows with none."""
    scope = sql.SQL("(SELECT {}.provinces(CURRENT_USER))::text[]").format(sql.Identifier(ACCESS_SCHEMA))
    everything = sql.SQL("'*'::text = ANY ({})").format(scope)
    if not table.has_scope:
        return sql.SQL("({})").format(everything)
    return sql.SQL("({} OR {} = ANY ({}))").format(everything, sql.Identifier(SCOPE_COLUMN), scope)


def masked_select(table: PublishedTable) -> sql.Composable:
    """The masked view's query: every column, personal ones through their mask, same names."""
    access = sql.Identifier(ACCESS_SCHEMA)
    items: list[sql.Composable] = []
    for column in table.columns:
        name = sql.Identifier(column.name)
        mask = table.masks.get(column.name)
        if mask is None:
            items.append(name)
        elif mask == "identifier":
            items.append(sql.SQL("{}.mask_identifier({}::text) AS {}").format(access, name, name))
        elif mask == "initials":
            items.append(sql.SQL("{}.mask_initials({}::text) AS {}").format(access, name, name))
        elif mask == "year":
            items.append(sql.SQL("{}.mask_year({}::date) AS {}").format(access, name, name))
        else:  # hide; the type text comes from format_type() in the catalog
            items.append(sql.SQL("NULL::{} AS {}").format(sql.SQL(column.type_sql), name))
    return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(items), table.qualified)


def desired_privileges(database: str, owner: str, agencies: Sequence[AppliedAgency],
                       tables: Sequence[PublishedTable]) -> set[Privilege]:
    wanted: set[Privilege] = set()
    domains = sorted({t.schema for t in tables} | {d.split(".")[0] for a in agencies for d in a.datasets})
    for agency in agencies:
        wanted.add(Privilege("database", (database,), "CONNECT", agency.role))
        wanted.add(Privilege("schema", (ACCESS_SCHEMA,), "USAGE", agency.role))
        for dataset in agency.datasets:
            schema = dataset.split(".")[0]
            read_schema = schema if agency.pii == "full" else MASKED_PREFIX + schema[len(MART_PREFIX):]
            wanted.add(Privilege("schema", (read_schema,), "USAGE", agency.role))
            if "." not in dataset:
                for_role = owner if agency.pii == "full" else MASKING_ROLE
                wanted.add(Privilege("default", (for_role, read_schema, "r"), "SELECT", agency.role))
        for table in tables:
            if agency.reads(table.schema, table.table):
                target = (table.schema, table.table) if agency.pii == "full" else (table.masked_schema, table.table)
                wanted.add(Privilege("table", target, "SELECT", agency.role))
    if agencies:
        wanted.add(Privilege("schema", (ACCESS_SCHEMA,), "USAGE", MASKING_ROLE))
        for schema in domains:
            wanted.add(Privilege("schema", (schema,), "USAGE", MASKING_ROLE))
            wanted.add(Privilege("default", (owner, schema, "r"), "SELECT", MASKING_ROLE))
        for table in tables:
            wanted.add(Privilege("table", (table.schema, table.table), "SELECT", MASKING_ROLE))
    return wanted


def plan_privileges(actual: set[Privilege], wanted: set[Privilege]) -> list[Change]:
    """Grants missing, and privileges nobody declared (granted by hand, or left from an earlier declaration)."""
    changes = [Change("add", p.describe(), (p.grant(),)) for p in sorted(wanted - actual)]
    changes += [Change("remove", p.describe() + " (not declared)", (p.revoke(),)) for p in sorted(actual - wanted)]
    return changes


# ------------------------------------------------------------------------------------------------- tables


def plan_tables(conn: psycopg.Connection[Any], tables: Sequence[PublishedTable], *, masked: bool) -> list[Change]:
    """RLS and the two policies of every published table; with `masked` (agencies are declared) its masked schema
    and view too."""
    changes: list[Change] = []
    rls = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(
        "SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE 'mart\\_%' AND c.relkind IN ('r', 'p')")}
    policies = _policies(conn)
    for table in tables:
        enabled, forced = rls.get((table.schema, table.table), (False, False))
        if not (enabled and forced):
            changes.append(Change("fix", f"row-level security enabled and forced on {table.schema}.{table.table}", (
                sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table.qualified),
                sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(table.qualified))))
        changes.extend(_plan_policies(conn, table, policies.get((table.schema, table.table), {})))
    if masked:
        changes.extend(_plan_masked(conn, tables))
    return changes


def _policies(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], dict[str, tuple[str, str, bool, list[str],
                                                                                 str | None, str | None]]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for schema, table, name, cmd, permissive, roles, qual, check in conn.execute(
            "SELECT n.nspname, c.relname, p.polname, p.polcmd::text, p.polpermissive, "
            "       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END FROM unnest(p.polroles) r "
            "             ORDER BY 1), "
            "       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) "
            "FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname LIKE 'mart\\_%'"):
        found.setdefault((schema, table), {})[name] = (table, cmd, permissive, list(roles), qual, check)
    return found


def _plan_policies(conn: psycopg.Connection[Any], table: PublishedTable, existing: dict[str, Any]) -> list[Change]:
    name = f"{table.schema}.{table.table}"
    owner_policy = sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR ALL TO {} USING (true) WITH CHECK (true)"
                           ).format(sql.Identifier(OWNER_POLICY), table.qualified, sql.Identifier(table.owner))
    scope_policy = sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR SELECT TO PUBLIC USING {}").format(
        sql.Identifier(SCOPE_POLICY), table.qualified, scope_expression(table))
    expected = {
        OWNER_POLICY: ("*", True, [table.owner], "true", "true"),
        SCOPE_POLICY: ("r", True, ["public"], _deparsed_scope(conn, table), None),
    }
    create = {OWNER_POLICY: owner_policy, SCOPE_POLICY: scope_policy}
    changes = []
    for policy, (cmd, permissive, roles, qual, check) in expected.items():
        have = existing.get(policy)
        if have is None:
            changes.append(Change("add", f"policy {policy} on {name}", (create[policy],)))
        elif (have[1], have[2], have[3], have[4], have[5]) != (cmd, permissive, roles, qual, check):
            changes.append(Change("fix", f"policy {policy} on {name} differs from the declared one", (
                sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(policy), table.qualified), create[policy])))
    for policy in sorted(set(existing) - set(expected)):
        changes.append(Change("remove", f"policy {policy} on {name} (not declared)", (
            sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(policy), table.qualified),)))
    return changes


def _deparsed_scope(conn: psycopg.Connection[Any], table: PublishedTable) -> str:
    """How PostgreSQL prints the scope policy's expression: made on a throwaway temporary table, rolled back."""
    with conn.transaction(force_rollback=True):
        conn.execute("CREATE TEMPORARY TABLE kho_policy_probe (province_code_2025 text) ON COMMIT DROP")
        probe = PublishedTable("pg_temp", "kho_policy_probe", table.owner, table.columns)
        conn.execute(sql.SQL("CREATE POLICY probe ON pg_temp.kho_policy_probe USING {}").format(
            scope_expression(probe)))
        row = conn.execute("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy "
                           "WHERE polrelid = 'pg_temp.kho_policy_probe'::regclass").fetchone()
    assert row is not None
    return str(row[0])


def _plan_masked(conn: psycopg.Connection[Any], tables: Sequence[PublishedTable]) -> list[Change]:
    changes: list[Change] = []
    masking = sql.Identifier(MASKING_ROLE)
    schemas = {r[0]: r[1] for r in conn.execute(
        "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname LIKE 'masked\\_%'")}
    wanted_schemas = sorted({t.masked_schema for t in tables})
    for schema in wanted_schemas:
        if schema not in schemas:
            changes.append(Change("add", f"schema {schema} (masked views) owned by {MASKING_ROLE}", (
                sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(schema), masking),
                sql.SQL("COMMENT ON SCHEMA {} IS {}").format(sql.Identifier(schema), sql.Literal(
                    f"Masked views of {MART_PREFIX}{schema[len(MASKED_PREFIX):]} for agencies without access "
                    "to personal data (kho access).")))))
        elif schemas[schema] != MASKING_ROLE:
            changes.append(Change("fix", f"schema {schema} owned by {MASKING_ROLE}", (
                sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), masking),)))
    views = {(r[0], r[1]): (r[2], r[3], r[4]) for r in conn.execute(
        "SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner), pg_get_viewdef(c.oid), "
        "       coalesce('security_barrier=true' = ANY (c.reloptions), false) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname LIKE 'masked\\_%' AND c.relkind = 'v'")}
    for table in tables:
        key = (table.masked_schema, table.table)
        have = views.get(key)
        label = f"masked view {table.masked_schema}.{table.table}"
        create = _create_view(table)
        if have is None:
            changes.append(Change("add", label, create))
        elif have[0] != MASKING_ROLE or not have[2] or have[1] != _deparsed_view(conn, table):
            changes.append(Change("fix", f"{label} differs from the declared one", (
                sql.SQL("DROP VIEW {}").format(table.masked_view), *create)))
    published = {(t.masked_schema, t.table) for t in tables}
    for schema, view in sorted(set(views) - published):
        changes.append(Change("remove", f"masked view {schema}.{view} (its mart is not published)", (
            sql.SQL("DROP VIEW {}").format(sql.Identifier(schema, view)),)))
    return changes


def _create_view(table: PublishedTable) -> tuple[sql.Composed, ...]:
    statements: list[sql.Composed] = [
        sql.SQL("CREATE VIEW {} WITH (security_barrier = true) AS {}").format(table.masked_view, masked_select(table)),
        sql.SQL("ALTER VIEW {} OWNER TO {}").format(table.masked_view, sql.Identifier(MASKING_ROLE)),
        sql.SQL("COMMENT ON VIEW {} IS {}").format(table.masked_view, sql.Literal(
            f"{table.schema}.{table.table} with personal data masked, limited to the agency's provinces.")),
    ]
    for column in table.columns:
        mask = table.masks.get(column.name)
        text = (column.comment or "").strip()
        if mask is not None:
            text = f"{text} Masked: {MASK_DESCRIPTIONS[mask]}.".strip()
        if text:
            statements.append(sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                sql.Identifier(table.masked_schema, table.table, column.name), sql.Literal(text)))
    return tuple(statements)


def _deparsed_view(conn: psycopg.Connection[Any], table: PublishedTable) -> str:
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("CREATE TEMPORARY VIEW kho_view_probe AS {}").format(masked_select(table)))
        row = conn.execute("SELECT pg_get_viewdef('pg_temp.kho_view_probe'::regclass)").fetchone()
    assert row is not None
    return str(row[0])
