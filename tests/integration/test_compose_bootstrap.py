"""deploy/warehouse/bootstrap.sql as docker-compose.yml's warehouse-init runs it (psql with the service's own
arguments, pointed at the session's real primary): it makes the application login and database that
kho.warehouse.logins makes for the embedded nodes, and running it again is safe."""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from kho.config import PROJECT_ROOT, KhoConfig
from kho.warehouse import logins
from kho.warehouse.connection import connect_admin
from tests.unit.test_compose import argv, compose_file, mounts

pytestmark = pytest.mark.integration

ATTRIBUTES = "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls " \
             "FROM pg_roles WHERE rolname = %s"
MEMBERSHIPS = "SELECT array_agg(r.rolname ORDER BY r.rolname) FROM pg_auth_members m " \
              "JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s"


@pytest.fixture
def login(kho_config: KhoConfig) -> Iterator[str]:
    """A login and database name of this test's own, dropped afterwards (the session's `kho` login stays as is)."""
    name = f"kho_compose_{uuid.uuid4().hex[:8]}"
    yield name
    with connect_admin(kho_config.warehouse, dbname="postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def warehouse_init(config: KhoConfig, name: str, password: str | None) -> subprocess.CompletedProcess[str]:
    """warehouse-init's command line, with its login and database named `name`, the script read from the
    repository and the conninfo's hosts and ports those of the session's nodes (user, database and
    target_session_attrs as the compose file gives them)."""
    service = compose_file()["services"]["warehouse-init"]
    files = {target: source for source, target in mounts(service)}
    words = []
    for word in argv(service):
        if word.startswith(("--set=app_user=", "--set=database=")):
            word = word.rsplit("=", 1)[0] + "=" + name
        elif word.startswith("--file="):
            word = "--file=" + str(PROJECT_ROOT / files[word.removeprefix("--file=")])
        elif word.startswith("host="):
            given = dict(pair.split("=", 1) for pair in word.split())
            wh = config.warehouse
            given.update(host=",".join(wh.hosts), port=",".join(map(str, wh.ports)))
            word = " ".join(f"{k}={v}" for k, v in given.items())
        words.append(word)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = config.warehouse.admin_password()
    env.pop("KHO_PG_PASSWORD", None)
    if password is not None:
        env["KHO_PG_PASSWORD"] = password
    return subprocess.run(words, env=env, capture_output=True, text=True, check=False)


def can_log_in(config: KhoConfig, name: str, password: str) -> bool:
    wh = config.warehouse
    try:
        with psycopg.connect(host=wh.hosts[0], port=wh.primary_port, dbname=name, user=name, password=password,
                             connect_timeout=5) as conn:
            return conn.execute("SELECT current_user").fetchone() == (name,)
    except psycopg.OperationalError:
        return False


def test_warehouse_init_makes_the_login_and_database_kho_makes_and_reruns_safely(
        kho_config: KhoConfig, login: str) -> None:
    first, second = secrets.token_hex(16), secrets.token_hex(16)
    ran = warehouse_init(kho_config, login, first)
    assert ran.returncode == 0, ran.stderr
    assert can_log_in(kho_config, login, first)

    rerun = warehouse_init(kho_config, login, second)  # a changed KHO_PG_PASSWORD is taken on the next `up`
    assert rerun.returncode == 0, rerun.stderr
    assert can_log_in(kho_config, login, second) and not can_log_in(kho_config, login, first)

    wh = kho_config.warehouse
    with connect_admin(wh, dbname="postgres") as conn:
        assert conn.execute(ATTRIBUTES, (login,)).fetchone() == conn.execute(ATTRIBUTES, (wh.user,)).fetchone()
        assert conn.execute(MEMBERSHIPS, (login,)).fetchone() == (sorted(logins.APP_PREDEFINED_ROLES),)
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (login,))
        assert owner.fetchone() == (login,)
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (login,)).fetchone()
        assert stored is not None and str(stored[0]).startswith("SCRAM-SHA-256$")


def test_warehouse_init_without_the_application_password_fails_saying_which_setting(
        kho_config: KhoConfig, login: str) -> None:
    ran = warehouse_init(kho_config, login, None)
    assert ran.returncode != 0
    assert "KHO_PG_PASSWORD is not set: set it in .env" in ran.stderr
    with connect_admin(kho_config.warehouse, dbname="postgres") as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone() is None
