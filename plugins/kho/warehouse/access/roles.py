"""Agency logins: roles with nothing but LOGIN, their settings, passwords and connection URIs.

An agency role is NOINHERIT, not a superuser, cannot create roles or databases, replicate or bypass RLS, and is a
member of no role: whatever it reads comes from the grants kho.warehouse.access.objects declares. Its password is
generated into KHO_HOME/secrets/agencies/<slug> (never in the repository) and sent to the server as a SCRAM verifier,
so the clear text appears neither in the statement nor in any server log.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from kho.config import KhoConfig, generate_secret
from kho.warehouse.access.declaration import ROLE_PREFIX, AccessError, Agency
from kho.warehouse.access.objects import (
    ACCESS_SCHEMA,
    MANAGED_COMMENT,
    MART_PREFIX,
    MASKED_PREFIX,
    MASKING_ROLE,
    Change,
)

AUDIT_PARAMETERS = ("pgaudit.", "log_statement", "log_connections", "log_disconnections")
"""Role settings the audit owns (kho.warehouse.audit): not drift, and never reset by access."""


@dataclass(frozen=True)
class RoleState:
    name: str
    login: bool
    inherit: bool
    superuser: bool
    createdb: bool
    createrole: bool
    replication: bool
    bypassrls: bool
    connection_limit: int
    comment: str | None
    settings: dict[str, str]


def secret_file(config: KhoConfig, agency_slug: str) -> Path:
    return config.home / "secrets" / "agencies" / agency_slug


def read_password(config: KhoConfig, agency_slug: str) -> str | None:
    path = secret_file(config, agency_slug)
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def new_password(config: KhoConfig, agency_slug: str) -> str:
    """A fresh password in the agency's secret file (0600, in a 0700 folder outside the repository); an empty
    file left behind is replaced."""
    return generate_secret(secret_file(config, agency_slug), replace=True)


def password_statement(conn: psycopg.Connection[Any], role: str, password: str) -> sql.Composed:
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    return sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier.decode()))


def role_states(conn: psycopg.Connection[Any]) -> dict[str, RoleState]:
    """kho_masking and every role named agency_* (managed or not), with their role-wide settings."""
    rows = conn.execute(
        "SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolsuper, r.rolcreatedb, r.rolcreaterole, "
        "       r.rolreplication, r.rolbypassrls, r.rolconnlimit, shobj_description(r.oid, 'pg_authid'), "
        "       coalesce((SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid "
        "                 AND s.setdatabase = 0), '{}') "
        "FROM pg_roles r WHERE r.rolname LIKE %s OR r.rolname = %s",
        (ROLE_PREFIX.replace("_", "\\_") + "%", MASKING_ROLE),
    ).fetchall()
    return {r[0]: RoleState(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                            dict(item.split("=", 1) for item in r[10])) for r in rows}


def desired_settings(agency: Agency) -> dict[str, str]:
    """Session defaults of the agency's logins: its timeout, read-only sessions, its schemas first."""
    schemas = [s if agency.pii == "full" else MASKED_PREFIX + s[len(MART_PREFIX):] for s in agency.schemas()]
    return {
        "statement_timeout": str(agency.statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(max(agency.statement_timeout_ms, 60_000)),
        "default_transaction_read_only": "on",
        "search_path": ", ".join(schemas),
    }


def _attributes(connection_limit: int, *, login: bool) -> sql.Composable:
    return sql.SQL("{} NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {}"
                   ).format(sql.SQL("LOGIN" if login else "NOLOGIN"), sql.Literal(connection_limit))


def _attributes_match(state: RoleState, connection_limit: int, *, login: bool) -> bool:
    return (state.login == login and not state.inherit and not state.superuser and not state.createdb
            and not state.createrole and not state.replication and not state.bypassrls
            and state.connection_limit == connection_limit)


def plan_masking_role(conn: psycopg.Connection[Any], owner: str, states: dict[str, RoleState]) -> list[Change]:
    """kho_masking: NOLOGIN owner of the masked views; the warehouse owner is its member (publishing makes views)."""
    role = sql.Identifier(MASKING_ROLE)
    changes = []
    state = states.get(MASKING_ROLE)
    if state is None:
        changes.append(Change("add", f"role {MASKING_ROLE} (owner of the masked views, cannot log in)", (
            sql.SQL("CREATE ROLE {} {}").format(role, _attributes(-1, login=False)),
            sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(
                "Owns the masked views agencies without personal-data access read (kho access).")))))
    elif not _attributes_match(state, -1, login=False):
        changes.append(Change("fix", f"role {MASKING_ROLE} attributes", (
            sql.SQL("ALTER ROLE {} {}").format(role, _attributes(-1, login=False)),)))
    member = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (owner, MASKING_ROLE)).fetchone() \
        if state is not None else (False,)
    if not (member and member[0]):
        changes.append(Change("add", f"{owner} is a member of {MASKING_ROLE}", (
            sql.SQL("GRANT {} TO {}").format(role, sql.Identifier(owner)),)))
    return changes


def plan_agency_roles(conn: psycopg.Connection[Any], config: KhoConfig, agencies: Sequence[Agency],
                      states: dict[str, RoleState], owner: str, *, dry_run: bool) -> list[Change]:
    changes: list[Change] = []
    for agency in agencies:
        changes.extend(_plan_agency(conn, config, agency, states.get(agency.role), dry_run=dry_run))
    declared = {a.role for a in agencies}
    for name, state in sorted(states.items()):
        if name in declared or name == MASKING_ROLE:
            continue
        if not (state.comment or "").startswith(MANAGED_COMMENT):
            continue  # an agency_* role kho did not create: not kho's to drop
        role = sql.Identifier(name)
        changes.append(Change("remove", f"role {name} (agency no longer declared)", (
            sql.SQL("REASSIGN OWNED BY {} TO {}").format(role, sql.Identifier(owner)),
            sql.SQL("DROP OWNED BY {}").format(role),
            sql.SQL("DROP ROLE {}").format(role))))
    return changes


def _plan_agency(conn: psycopg.Connection[Any], config: KhoConfig, agency: Agency, state: RoleState | None, *,
                 dry_run: bool) -> list[Change]:
    role = sql.Identifier(agency.role)
    comment = MANAGED_COMMENT + agency.name
    settings = desired_settings(agency)
    changes: list[Change] = []
    if state is None:
        changes.append(Change("add", f"login role {agency.role} ({agency.name})", (
            sql.SQL("CREATE ROLE {} {}").format(role, _attributes(agency.connection_limit, login=True)),)))
        current: dict[str, str] = {}
    else:
        if not _attributes_match(state, agency.connection_limit, login=True):
            changes.append(Change("fix", f"role {agency.role}: LOGIN NOINHERIT, no superuser/createdb/createrole/"
                                  f"replication/bypassrls, connection limit {agency.connection_limit}", (
                sql.SQL("ALTER ROLE {} {}").format(role, _attributes(agency.connection_limit, login=True)),)))
        current = state.settings
    if state is None or state.comment != comment:
        changes.append(Change("fix" if state else "add", f"comment on role {agency.role}", (
            sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(comment)),)))
    for key, value in settings.items():
        if current.get(key) != value:
            changes.append(Change("fix" if key in current else "add", f"{agency.role}: {key} = {value}", (
                _set_statement(role, key, value),)))
    for key in sorted(set(current) - set(settings)):
        if not key.startswith(AUDIT_PARAMETERS):
            changes.append(Change("remove", f"{agency.role}: setting {key}={current[key]} (not declared)", (
                sql.SQL("ALTER ROLE {} RESET {}").format(role, sql.Identifier(*key.split("."))),)))
    password = read_password(config, agency.slug)
    if state is None or password is None or not can_log_in(config, agency.role, password):
        if dry_run:
            changes.append(Change("fix", f"{agency.role}: set its password ({secret_file(config, agency.slug)})", ()))
        else:
            password = password or new_password(config, agency.slug)
            changes.append(Change("fix", f"{agency.role}: password from {secret_file(config, agency.slug)}", (
                password_statement(conn, agency.role, password),)))
    return changes


def _set_statement(role: sql.Identifier, key: str, value: str) -> sql.Composed:
    if key == "search_path":
        value_sql: sql.Composable = sql.SQL(", ").join(sql.Identifier(s.strip()) for s in value.split(","))
    else:
        value_sql = sql.Literal(value)
    return sql.SQL("ALTER ROLE {} SET {} = {}").format(role, sql.Identifier(key), value_sql)


def can_log_in(config: KhoConfig, role: str, password: str) -> bool:
    """Whether the role logs in to the primary with this password (a wrong or missing one, or no role: False)."""
    wh = config.warehouse
    try:
        with psycopg.connect(host=wh.hosts[0], port=wh.ports[0], dbname=wh.dbname, user=role, password=password,
                             connect_timeout=5, application_name="kho access check",
                             target_session_attrs="any") as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def connection_uri(config: KhoConfig, agency: Agency, password: str) -> str:
    """A libpq URI listing the standby(s) first: `target_session_attrs=prefer-standby` lands agency queries in the
    standby data centre and falls back to the primary when no standby answers."""
    wh = config.warehouse
    order = [*range(1, len(wh.hosts)), 0]
    hosts = ",".join(f"{_host(wh.hosts[i])}:{wh.ports[i]}" for i in order)
    user = urllib.parse.quote(agency.role, safe="")
    secret = urllib.parse.quote(password, safe="")
    query = urllib.parse.urlencode({"target_session_attrs": "prefer-standby", "application_name": agency.role,
                                    "connect_timeout": "10"})
    return f"postgresql://{user}:{secret}@{hosts}/{urllib.parse.quote(wh.dbname, safe='')}?{query}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def require_declared(agencies: Sequence[Agency], slug: str) -> Agency:
    for agency in agencies:
        if slug in (agency.slug, agency.role):
            return agency
    raise AccessError(f"no agency {slug!r} in the access file; declared: {', '.join(a.slug for a in agencies)}")


__all__ = ["ACCESS_SCHEMA", "connection_uri", "plan_agency_roles", "plan_masking_role", "read_password",
           "require_declared", "role_states", "secret_file"]
