"""Statement audit of agency-like roles on a real primary + standby: recorded on the node that ran the statement,
read back over SQL from both, in both modes; the role cannot switch its own audit off."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from kho.config import KhoConfig
from kho.errors import WarehouseError
from kho.warehouse import audit, logins
from kho.warehouse.audit import AuditMode, AuditRecord
from kho.warehouse.binaries import find_binaries
from kho.warehouse.connection import connect_admin, wait_for_standby

pytestmark = pytest.mark.integration
PRIMARY, STANDBY = 0, 1


@dataclasses.dataclass(frozen=True)
class Login:
    role: str
    password: str


def available(mode: AuditMode) -> AuditMode:
    """pgaudit is tested wherever it is installed; skipped only where it is not (it would not be loaded)."""
    if mode == "pgaudit" and not find_binaries().has_pgaudit:
        pytest.skip("pgaudit is not installed for this PostgreSQL (`make setup` installs it as root on Debian)")
    return mode


@pytest.fixture
def agency(kho_config: KhoConfig) -> Iterator[Login]:
    """A NOINHERIT login like an agency's (the access module makes the real ones), dropped at the end."""
    login = Login(f"t_agency_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16))
    with connect_admin(kho_config.warehouse) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOINHERIT").format(sql.Identifier(login.role)))
        # kho access revokes PUBLIC's CONNECT on the warehouse database: an agency is granted its own.
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(kho_config.warehouse.dbname), sql.Identifier(login.role)))
        logins.set_password(conn, login.role, login.password)
    yield login
    with connect_admin(kho_config.warehouse) as conn:
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
            sql.Identifier(kho_config.warehouse.dbname), sql.Identifier(login.role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login.role)))


def enabled(config: KhoConfig, login: Login, mode: AuditMode) -> Login:
    """Audit `login` in `mode` and wait until the standby has the role settings too."""
    with connect_admin(config.warehouse) as conn:
        assert audit.enable(conn, login.role, mode=mode) == mode
    wait_for_standby(config.warehouse)
    return login


def session(config: KhoConfig, login: Login, node: int, **options: str) -> psycopg.Connection:
    wh = config.warehouse
    return psycopg.connect(host=wh.hosts[node], port=wh.ports[node], dbname=wh.dbname, user=login.role,
                           password=login.password, autocommit=True, connect_timeout=5, **options)


def server_now(config: KhoConfig) -> dt.datetime:
    with connect_admin(config.warehouse) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def poll_records(config: KhoConfig, roles: list[str], since: dt.datetime,
                 done: Callable[[list[AuditRecord]], bool], timeout_s: float = 30.0) -> audit.AuditRecords:
    """The logging collector writes asynchronously: read until `done` holds (bounded; no fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = audit.read(config, roles=roles, since=since)
        if done(records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"audit records not complete after {timeout_s:.0f}s: {records}")
        time.sleep(0.1)


def with_text(records: list[AuditRecord], marker: str) -> list[AuditRecord]:
    return [r for r in records if marker in r.statement]


QUERY = ("SELECT '{marker}' AS \"commas, and \"\"quotes\"\"\", 'it''s' AS quote, E'line\\nbreak' AS newline, "
         "'Nguyễn Thị Hương' AS name, %s::text AS looked_up")
"""A statement with what breaks naive log parsing: commas, quotes, a newline, Vietnamese text, a parameter."""


@pytest.mark.parametrize("mode", ["pgaudit", "log_statement"])
def test_statements_on_primary_and_standby_are_read_back_with_role_time_and_text(
        kho_config: KhoConfig, agency: Login, mode: AuditMode) -> None:
    login = enabled(kho_config, agency, available(mode))
    since = server_now(kho_config)
    markers = {node: f"m{uuid.uuid4().hex}" for node in (PRIMARY, STANDBY)}
    for node, marker in markers.items():
        with session(kho_config, login, node) as conn:
            assert conn.execute(QUERY.format(marker=marker), ("074123456789",)).fetchone() is not None

    records = poll_records(kho_config, [login.role], since,
                           lambda found: all(with_text(found, m) for m in markers.values()))

    wh = kho_config.warehouse
    for node, marker in markers.items():
        (record,) = with_text(records, marker)
        assert record.node == f"{wh.hosts[node]}:{wh.ports[node]}"
        assert (record.role, record.database, record.kind) == (login.role, wh.dbname, mode)
        assert record.statement == QUERY.format(marker=marker).replace("%s", "$1")
        assert since <= record.logged_at <= server_now(kho_config)
        assert record.parameters is not None and "074123456789" in record.parameters
        if mode == "pgaudit":
            assert (record.audit_class, record.command) == ("READ", "SELECT")
    assert records == sorted(records, key=lambda r: r.logged_at)
    assert records.skipped == 0


@pytest.mark.parametrize("mode", ["pgaudit", "log_statement"])
def test_a_role_cannot_switch_off_its_own_audit(kho_config: KhoConfig, agency: Login, mode: AuditMode) -> None:
    login = enabled(kho_config, agency, available(mode))
    parameters = ["log_statement"] + (["pgaudit.log"] if find_binaries().has_pgaudit else [])
    for node in (PRIMARY, STANDBY):
        with session(kho_config, login, node) as conn:
            for name in parameters:
                attempts = [sql.SQL("SET {} = 'none'").format(sql.SQL(name)),
                            sql.SQL("SELECT set_config({}, 'none', false)").format(sql.Literal(name))]
                if node == PRIMARY:  # the standby refuses any ALTER ROLE as read-only before asking who asks
                    attempts.append(sql.SQL("ALTER ROLE CURRENT_USER RESET {}").format(sql.SQL(name)))
                for statement in attempts:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(statement)
        for name in parameters:
            with pytest.raises(psycopg.OperationalError, match="permission denied to set parameter"):
                session(kho_config, login, node, options=f"-c {name}=none").close()

    with connect_admin(kho_config.warehouse) as conn:
        assert audit.is_enabled(conn, login.role)


def test_the_refused_attempts_are_themselves_in_the_trail(kho_config: KhoConfig, agency: Login) -> None:
    login = enabled(kho_config, agency, "log_statement")
    since = server_now(kho_config)
    with session(kho_config, login, STANDBY) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SET log_statement = 'none'")

    records = poll_records(kho_config, [login.role], since, lambda found: any(r.kind == "error" for r in found))

    (refused,) = [r for r in records if r.kind == "error"]
    assert refused.statement == "SET log_statement = 'none'"
    assert refused.error is not None and "permission denied" in refused.error


def test_disable_stops_the_trail_and_is_enabled_says_so(kho_config: KhoConfig, agency: Login) -> None:
    witness = Login(f"t_witness_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16))
    with connect_admin(kho_config.warehouse) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(witness.role)))
        logins.set_password(conn, witness.role, witness.password)
    try:
        enabled(kho_config, witness, "log_statement")
        login = enabled(kho_config, agency, "log_statement")
        with connect_admin(kho_config.warehouse) as conn:
            assert audit.is_enabled(conn, login.role)
            audit.disable(conn, login.role)
            assert not audit.is_enabled(conn, login.role)
        since = server_now(kho_config)
        unrecorded, recorded = f"u{uuid.uuid4().hex}", f"r{uuid.uuid4().hex}"
        with session(kho_config, login, PRIMARY) as conn:
            conn.execute(sql.SQL("SELECT {}").format(sql.Literal(unrecorded)))
        with session(kho_config, witness, PRIMARY) as conn:  # logged after the first: once it is there, so is that
            conn.execute(sql.SQL("SELECT {}").format(sql.Literal(recorded)))

        records = poll_records(kho_config, [login.role, witness.role], since,
                               lambda found: bool(with_text(found, recorded)))

        assert not with_text(records, unrecorded)
    finally:
        with connect_admin(kho_config.warehouse) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(witness.role)))


def test_is_enabled_is_false_when_one_database_turns_the_trail_off(kho_config: KhoConfig, agency: Login) -> None:
    login = enabled(kho_config, agency, "log_statement")
    with connect_admin(kho_config.warehouse) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET log_statement = 'none'").format(
            sql.Identifier(login.role), sql.Identifier(kho_config.warehouse.dbname)))

        assert not audit.is_enabled(conn, login.role)


def test_the_server_offers_pgaudit_where_it_is_installed(kho_config: KhoConfig) -> None:
    expected = "pgaudit" if find_binaries().has_pgaudit else "log_statement"
    for node in (PRIMARY, STANDBY):
        with connect_admin(kho_config.warehouse, node_index=node) as conn:
            assert audit.detect_mode(conn) == expected


def test_enable_names_a_role_that_does_not_exist(kho_config: KhoConfig) -> None:
    with connect_admin(kho_config.warehouse) as conn, pytest.raises(WarehouseError, match="no role 't_nobody'"):
        audit.enable(conn, "t_nobody")
