"""The warehouse's own logins, kept in shape by `kho warehouse up` on the primary, as the administrator.

Least privilege: the application login (`KHO_PG_USER`, used by the loader, dbt, GX, the DAGs and `kho build`) is
no superuser; it owns the warehouse database so it can create its schemas, and holds only the predefined roles it
needs. The administrator (`KHO_PG_ADMIN_USER`, the cluster's bootstrap superuser) is for `kho warehouse up` and
administrative commands; the replication role is what the standby streams with. Agency roles live elsewhere
(kho.warehouse.access).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import LiteralString

import psycopg
from psycopg import sql

from kho.config import WarehouseConfig

APP_ROLE_ATTRIBUTES: LiteralString = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
"""The application login: it owns the warehouse database and nothing more."""
APP_PREDEFINED_ROLES = ("pg_monitor", "pg_checkpoint")
"""pg_monitor: replication status (pg_stat_replication's LSNs, the standby's WAL receiver, COPY progress);
pg_checkpoint: the benchmarks' CHECKPOINT between timed steps (bench/)."""
REPLICATION_ROLE_ATTRIBUTES: LiteralString = "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
"""The standby's login: it may stream WAL and take base backups, nothing else."""
BOOTSTRAP_ROLE_OID = 10
"""The role initdb creates: it owns the system catalogs, so it must stay the superuser (PostgreSQL 16 refuses to
demote it; 15 allows it but the role keeps owning pg_catalog, where it could plant functions a superuser runs)."""


def set_password(conn: psycopg.Connection, role: str, password: str) -> None:
    """Give `role` this password as a SCRAM verifier computed here: the clear password never reaches the server,
    so statement logging and pgaudit cannot write it down."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier accepts this password (RFC 5802 StoredKey), so `up` does not
    rewrite an unchanged password on every run."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier or "")
    if match is None:
        return False
    salt, stored_key = base64.b64decode(match[2]), base64.b64decode(match[3])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(match[1]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


def ensure_login(conn: psycopg.Connection, role: str, attributes: LiteralString, password: str) -> None:
    """Create `role` if missing, then (re)state its attributes and its password; safe to run at every `up`."""
    found = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    if found is None:
        conn.execute(sql.SQL("CREATE ROLE {} " + attributes).format(sql.Identifier(role)))
    else:
        conn.execute(sql.SQL("ALTER ROLE {} " + attributes).format(sql.Identifier(role)))
    if found is None or not scram_matches(found[0], password):
        set_password(conn, role, password)


def ensure_roles(conn: psycopg.Connection, wh: WarehouseConfig, *, app_password: str, replication_password: str
                 ) -> None:
    """The application login and the replication role, as the administrator on the primary."""
    ensure_login(conn, wh.user, APP_ROLE_ATTRIBUTES, app_password)
    for predefined in APP_PREDEFINED_ROLES:
        if not _member_of(conn, wh.user, predefined):
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(predefined), sql.Identifier(wh.user)))
    ensure_login(conn, wh.replication_user, REPLICATION_ROLE_ATTRIBUTES, replication_password)


def ensure_database(conn: psycopg.Connection, wh: WarehouseConfig) -> None:
    """The warehouse database, owned by the application login (so it may create its schemas there)."""
    row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (wh.dbname,)).fetchone()
    if row is None:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(wh.dbname), sql.Identifier(wh.user)))
    elif row[0] != wh.user:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(wh.dbname),
                                                                    sql.Identifier(wh.user)))


def _member_of(conn: psycopg.Connection, role: str, group: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
        "WHERE r.rolname = %s AND u.rolname = %s", (group, role)).fetchone()
    return row is not None
