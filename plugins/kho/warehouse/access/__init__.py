"""Agency access: the database made to match access/agencies.yml (roles, grants, RLS, masked views, audit).

- `apply` computes every difference between the declaration and the database and removes it, in one transaction on
  the primary as the administrator (roles are cluster-wide, so the standby follows by replaying it);
- `check` computes the same differences in a transaction it rolls back, and reports them: drift;
- `secure_publication` is what each publication runs in its own transaction (as the warehouse owner): the declaration
  last applied, brought to the marts just published, so new and recreated marts need no re-apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from kho.config import KhoConfig
from kho.warehouse import audit
from kho.warehouse.access import objects, roles
from kho.warehouse.access.declaration import AccessError, AccessFile, Agency, load, parse
from kho.warehouse.access.objects import Change

PUBLISH_LOCK = "kho.publish"
"""Applying access and publishing marts take the same lock: neither sees the other half done."""


@dataclass(frozen=True)
class AccessReport:
    changes: tuple[Change, ...]
    applied: bool

    @property
    def clean(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        return [c.line() for c in self.changes]


def apply(conn: psycopg.Connection[Any], config: KhoConfig, declared: AccessFile) -> AccessReport:
    """Make the database match the declaration; `conn` is the administrator's (connect_admin): roles, role
    settings and the statement audit are a superuser's to change."""
    return AccessReport(tuple(_reconcile(conn, config, declared, dry_run=False)), applied=True)


def check(conn: psycopg.Connection[Any], config: KhoConfig, declared: AccessFile) -> AccessReport:
    """Every difference apply would remove, without changing anything (the work is rolled back)."""
    return AccessReport(tuple(_reconcile(conn, config, declared, dry_run=True)), applied=False)


def _reconcile(conn: psycopg.Connection[Any], config: KhoConfig, declared: AccessFile, *, dry_run: bool
               ) -> list[Change]:
    owner = config.warehouse.user
    changes: list[Change] = []
    with conn.transaction(force_rollback=dry_run):
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (PUBLISH_LOCK,))
        objects.bootstrap(conn, owner)
        states = roles.role_states(conn)
        changes += _run(conn, roles.plan_masking_role(conn, owner, states))
        changes += _run(conn, roles.plan_agency_roles(conn, config, declared.agencies, states, owner,
                                                      dry_run=dry_run))
        changes += _plan_audit(conn, [a.role for a in declared.agencies])
        changes += _run(conn, _plan_declaration(conn, declared.agencies))
        for schema, schema_owner in _declared_schemas(declared.agencies, owner):  # grants need them to exist
            changes += _run(conn, _plan_schema(conn, schema, schema_owner))
        changes += _secure(conn, owner, objects.applied(conn) or [], include_roles=True)
    return changes


def secure_publication(conn: psycopg.Connection[Any], owner: str,
                       markings: Iterable[tuple[str, str, str, str, str]]) -> list[Change]:
    """Inside a publication's transaction, as the owner: record the marts' personal columns, then bring RLS,
    policies, masked views and grants to the declaration last applied (nothing but RLS without one)."""
    objects.bootstrap(conn, owner)
    objects.record_personal_columns(conn, markings)
    return _secure(conn, owner, objects.applied(conn) or [], include_roles=False)


def _secure(conn: psycopg.Connection[Any], owner: str, agencies: Sequence[objects.AppliedAgency], *,
            include_roles: bool) -> list[Change]:
    tables = objects.published_tables(conn)
    changes = _run(conn, objects.plan_tables(conn, tables, masked=bool(agencies)))
    if not agencies:  # nothing declared yet: kho does not decide who reads what
        return changes
    database = conn.info.dbname
    grantees = [a.role for a in agencies] + [objects.MASKING_ROLE]
    actual = objects.actual_privileges(conn, grantees)
    wanted = objects.desired_privileges(database, owner, agencies, tables)
    if not include_roles:  # the owner may not touch memberships or parameter privileges: `kho access apply` does
        actual = {p for p in actual if p.kind not in ("member", "parameter")}
    return changes + _run(conn, objects.plan_privileges(actual, wanted))


def _run(conn: psycopg.Connection[Any], changes: list[Change]) -> list[Change]:
    for change in changes:
        for statement in change.statements:
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                raise AccessError(f"could not {change.line()[2:]}: {str(exc).strip().splitlines()[0]}; nothing was "
                                  "changed") from exc
    return changes


def _declared_schemas(agencies: Sequence[Agency], owner: str) -> list[tuple[str, str]]:
    """Every schema a declared dataset lives in (the owner's) and, for masked agencies, its masked twin."""
    schemas: dict[str, str] = {}
    for agency in agencies:
        for schema in agency.schemas():
            schemas[schema] = owner
            if agency.pii == "none":
                schemas[objects.MASKED_PREFIX + schema[len(objects.MART_PREFIX):]] = objects.MASKING_ROLE
    return sorted(schemas.items())


def _plan_audit(conn: psycopg.Connection[Any], agency_roles: Sequence[str]) -> list[Change]:
    """Every agency's statements recorded (pgaudit where loaded, else log_statement), on every node."""
    changes = []
    for role in agency_roles:
        if not audit.is_enabled(conn, role):
            mode = audit.enable(conn, role)  # inside the transaction: rolled back with it by `check`
            changes.append(Change("fix", f"{role}: every statement recorded ({mode})", ()))
    return changes


def _plan_declaration(conn: psycopg.Connection[Any], agencies: Sequence[Agency]) -> list[Change]:
    """kho_access.agencies holds the file as applied (row-level security reads the provinces from it)."""
    table = sql.Identifier(objects.ACCESS_SCHEMA, "agencies")
    have = {a.role: a for a in objects.applied(conn) or []}
    changes = []
    for agency in agencies:
        row = objects.AppliedAgency(agency.role, agency.slug, agency.name, agency.datasets, agency.province_list,
                                    agency.pii, agency.connection_limit, agency.statement_timeout_ms)
        if have.get(agency.role) == row:
            continue
        changes.append(Change("fix" if agency.role in have else "add",
                              f"{agency.role} reads {', '.join(agency.datasets)} for provinces "
                              f"{', '.join(agency.province_list)}, personal data: {agency.pii}", (
            sql.SQL("DELETE FROM {} WHERE role = {}").format(table, sql.Literal(agency.role)),
            sql.SQL("INSERT INTO {} (role, slug, name, datasets, provinces, pii, connection_limit, "
                    "statement_timeout_ms) VALUES ({}, {}, {}, {}, {}, {}, {}, {})").format(
                table, *(sql.Literal(v) for v in (row.role, row.slug, row.name, list(row.datasets),
                                                  list(row.provinces), row.pii, row.connection_limit,
                                                  row.statement_timeout_ms))))))
    declared = {a.role for a in agencies}
    for role in sorted(set(have) - declared):
        changes.append(Change("remove", f"declaration of {role}", (
            sql.SQL("DELETE FROM {} WHERE role = {}").format(table, sql.Literal(role)),)))
    return changes


def _plan_schema(conn: psycopg.Connection[Any], schema: str, owner: str) -> list[Change]:
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
        return []
    return [Change("add", f"schema {schema} owned by {owner} (declared, nothing published in it yet)", (
        sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(schema), sql.Identifier(owner)),))]


__all__ = ["AccessError", "AccessFile", "AccessReport", "Agency", "apply", "check", "load", "parse",
           "secure_publication"]
