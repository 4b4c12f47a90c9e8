"""The embedded warehouse against real PostgreSQL: a primary, a streaming standby, and their life cycle.

These tests stop, crash and restart nodes, so they run on a cluster of their own (not the shared `kho_config` one):
another test file never sees a node these tests took down.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import signal
import socket
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from kho.config import KhoConfig, WarehouseConfig
from kho.errors import ConfigError, WarehouseError
from kho.warehouse import cluster, logins
from kho.warehouse.connection import connect, connect_admin, connect_node, connect_standby, wait_for_standby
from tests.conftest import free_ports

pytestmark = pytest.mark.integration


def make_config(home: Path, primary_port: int, standby_port: int) -> KhoConfig:
    return KhoConfig.from_env({
        "KHO_HOME": str(home), "KHO_PG_PORT": str(primary_port), "KHO_PG_STANDBY_PORT": str(standby_port),
    })


def postmaster_pids(config: KhoConfig) -> dict[str, int]:
    return {
        name: int((config.home / "pg" / name / "postmaster.pid").read_text(encoding="ascii").split()[0])
        for name in cluster.NODE_NAMES
    }


def poll(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting until {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def cluster_config(tmp_path_factory: pytest.TempPathFactory) -> KhoConfig:
    """A KHO_HOME of its own (under pytest's root-only tmp dir, as in CI) and ports nobody uses by default."""
    return make_config(tmp_path_factory.mktemp("kho_cluster"), *free_ports(2))


@pytest.fixture(scope="session")
def warehouse(cluster_config: KhoConfig) -> Iterator[WarehouseConfig]:
    """The running primary + standby of `cluster_config`, destroyed at the end of the session."""
    try:
        cluster.up(cluster_config)
        yield cluster_config.warehouse
    finally:
        cluster.destroy(cluster_config)


def test_up_creates_a_primary_and_a_streaming_standby(warehouse: WarehouseConfig, cluster_config: KhoConfig
                                                       ) -> None:
    state = cluster.status(cluster_config)

    assert state.healthy, state.render()
    assert [(n.name, n.role, n.port, n.running) for n in state.nodes] == [
        ("primary", "primary", warehouse.primary_port, True),
        ("standby", "standby", warehouse.standby_port, True),
    ]
    standby = state.node("standby")
    assert (standby.replication_state, standby.receiver_status) == ("streaming", "streaming")
    assert standby.receive_lsn and standby.replay_lsn and state.node("primary").current_lsn
    assert standby.lag_bytes is not None and standby.lag_bytes >= 0


def test_up_twice_is_idempotent(warehouse: WarehouseConfig, cluster_config: KhoConfig) -> None:
    before = postmaster_pids(cluster_config)

    again = cluster.up(cluster_config)

    assert again.healthy, again.render()
    assert postmaster_pids(cluster_config) == before, "a second `up` must not restart running nodes"


def test_the_application_login_holds_no_superuser_power(warehouse: WarehouseConfig) -> None:
    with connect(warehouse, autocommit=True) as conn:
        row = conn.execute(
            "SELECT oid, rolsuper, rolreplication, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin "
            "FROM pg_roles WHERE rolname = current_user").fetchone()
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                             ).fetchone()
        memberships = {r[0] for r in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = current_user").fetchall()}

    assert row is not None
    oid, *powers, can_login = row
    assert oid != logins.BOOTSTRAP_ROLE_OID, "the application login must not be the cluster's bootstrap superuser"
    assert powers == [False] * 5, "no SUPERUSER, REPLICATION, BYPASSRLS, CREATEROLE or CREATEDB"
    assert can_login
    assert owner == (warehouse.user,)
    assert memberships == set(logins.APP_PREDEFINED_ROLES)


def test_the_application_login_cannot_do_what_needs_a_superuser(warehouse: WarehouseConfig) -> None:
    with connect(warehouse, autocommit=True) as conn:
        for statement in ("CREATE DATABASE kho_not_allowed", "CREATE ROLE kho_not_allowed",
                          "ALTER SYSTEM SET work_mem = '1GB'", "SELECT pg_read_file('postgresql.conf')",
                          "SET log_statement = 'none'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_application_login_may_checkpoint_and_see_replication_lsns(warehouse: WarehouseConfig) -> None:
    with connect(warehouse, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the benchmarks' clean slate (pg_checkpoint)
        row = conn.execute("SELECT state, replay_lsn IS NOT NULL FROM pg_stat_replication").fetchone()
    assert row == ("streaming", True)


def test_the_administrator_is_the_bootstrap_superuser(warehouse: WarehouseConfig) -> None:
    with connect_admin(warehouse) as conn:
        row = conn.execute("SELECT oid, rolsuper, pg_is_in_recovery() FROM pg_roles WHERE rolname = current_user"
                           ).fetchone()
    assert row == (logins.BOOTSTRAP_ROLE_OID, True, False)

    with connect_admin(warehouse, node_index=1) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_connect_admin_fails_in_one_line_with_a_wrong_password(warehouse: WarehouseConfig) -> None:
    wrong = dataclasses.replace(warehouse, admin_password_env="not-the-password")

    with pytest.raises(WarehouseError, match=f"as {warehouse.admin_user} among") as raised:
        connect_admin(wrong)
    assert "\n" not in str(raised.value)


def test_the_standby_streams_as_the_replication_role(warehouse: WarehouseConfig) -> None:
    with connect(warehouse, autocommit=True) as conn:
        rows = conn.execute("SELECT usename, state FROM pg_stat_replication").fetchall()
        replicator = conn.execute("SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = %s",
                                  (warehouse.replication_user,)).fetchone()

    assert rows == [(warehouse.replication_user, "streaming")]
    assert replicator == (True, False)


def test_the_application_login_cannot_open_a_replication_connection(warehouse: WarehouseConfig) -> None:
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf"):
        psycopg.connect(host=warehouse.hosts[0], port=warehouse.primary_port, user=warehouse.user,
                        password=warehouse.password(), replication="true", dbname="replication").close()


def test_both_nodes_load_pgaudit_when_it_is_installed(warehouse: WarehouseConfig) -> None:
    if not cluster.find_binaries().has_pgaudit:
        pytest.skip("pgaudit is not installed for this PostgreSQL (`make setup` installs it as root on Debian)")
    for index in (0, 1):
        with connect_node(warehouse, index) as conn:
            assert conn.execute("SHOW shared_preload_libraries").fetchone() == ("pgaudit",)
    with connect(warehouse, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgaudit'").fetchone() == (1,)


def test_each_node_writes_json_logs_in_its_data_directory(warehouse: WarehouseConfig, cluster_config: KhoConfig
                                                         ) -> None:
    for name in cluster.NODE_NAMES:
        logs = cluster_config.home / "pg" / name / cluster.LOG_DIRECTORY
        assert list(logs.glob("*.json")), f"{name} has no JSON log in {logs}"


def test_up_refuses_a_cluster_whose_application_login_is_its_bootstrap_superuser(tmp_path: Path) -> None:
    """What `kho warehouse up` made before the administrator existed: initdb -U kho."""
    config = make_config(tmp_path / "home", *free_ports(2))
    layout = cluster._layout(config)
    user = cluster._pg_user(config, create=True)
    assert user is not None
    try:
        cluster._prepare_root(layout, user)
        cluster._initdb(cluster.find_binaries(), user, layout.root, layout.primary.datadir, config.warehouse.user,
                        config.warehouse.ensure_password())

        with pytest.raises(WarehouseError, match=r"bootstrap superuser.*kho warehouse destroy") as raised:
            cluster.up(config)
        assert "\n" not in str(raised.value)
    finally:
        cluster.destroy(config)


def test_up_rewrites_a_password_changed_by_hand(warehouse: WarehouseConfig, cluster_config: KhoConfig) -> None:
    with connect_admin(warehouse) as conn:
        logins.set_password(conn, warehouse.user, "changed-by-hand")

    cluster.up(cluster_config)

    with connect(warehouse, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (warehouse.user,)


def test_standby_rejects_writes(warehouse: WarehouseConfig) -> None:
    with connect_standby(warehouse) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("CREATE TABLE kho_written_on_standby (id int)")


def test_rows_written_on_the_primary_appear_on_the_standby(warehouse: WarehouseConfig) -> None:
    marker = uuid.uuid4().hex
    with connect(warehouse, autocommit=True) as primary:
        primary.execute("CREATE TABLE IF NOT EXISTS kho_replication_probe (marker text)")
        primary.execute("INSERT INTO kho_replication_probe VALUES (%s)", (marker,))

    assert wait_for_standby(warehouse) == 0

    with connect_standby(warehouse) as standby:
        row = standby.execute("SELECT count(*) FROM kho_replication_probe WHERE marker = %s", (marker,)).fetchone()
    assert row == (1,)


def test_connect_finds_the_primary_when_the_standby_is_listed_first(warehouse: WarehouseConfig) -> None:
    standby_first = dataclasses.replace(warehouse, hosts=warehouse.hosts[::-1], ports=warehouse.ports[::-1])

    with connect(standby_first, autocommit=True) as conn:
        assert conn.info.port == warehouse.primary_port
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)


def test_status_renders_an_aligned_table_of_both_nodes(warehouse: WarehouseConfig, cluster_config: KhoConfig
                                                       ) -> None:
    lines = cluster.status(cluster_config).render().splitlines()

    assert [line.split()[0] for line in lines[:3]] == ["NODE", "primary", "standby"]
    column = lines[0].index("ADDRESS")
    assert lines[1][column:].startswith(f"{warehouse.hosts[0]}:{warehouse.primary_port}")
    assert lines[2][column:].startswith(f"{warehouse.hosts[1]}:{warehouse.standby_port}")
    assert lines[-1] == "healthy"


def test_down_leaves_both_nodes_stopped_and_status_unhealthy(warehouse: WarehouseConfig, cluster_config: KhoConfig
                                                              ) -> None:
    try:
        cluster.down(cluster_config)
        cluster.down(cluster_config)  # already stopped: still fine

        state = cluster.status(cluster_config)
        assert not state.healthy
        assert [(n.running, n.role) for n in state.nodes] == [(False, "down"), (False, "down")]
        assert "UNHEALTHY" in state.render()
    finally:
        cluster.up(cluster_config)


def test_up_after_down_restarts_both_nodes(warehouse: WarehouseConfig, cluster_config: KhoConfig) -> None:
    cluster.down(cluster_config)

    state = cluster.up(cluster_config)

    assert state.healthy, state.render()


def test_up_recovers_a_primary_killed_without_shutdown(warehouse: WarehouseConfig, cluster_config: KhoConfig
                                                       ) -> None:
    pidfile = cluster_config.home / "pg" / "primary" / "postmaster.pid"
    os.kill(postmaster_pids(cluster_config)["primary"], signal.SIGKILL)
    poll(lambda: not cluster.status(cluster_config).node("primary").running, "the killed primary stops answering")
    assert pidfile.exists(), "a crash leaves its postmaster.pid behind"

    state = cluster.up(cluster_config)

    assert state.healthy, state.render()


@pytest.mark.skipif(os.geteuid() != 0, reason="the switch to an unprivileged OS user only happens as root")
def test_data_belongs_to_the_os_user_while_secrets_stay_root_only(warehouse: WarehouseConfig,
                                                                   cluster_config: KhoConfig) -> None:
    owner = pwd.getpwnam(cluster_config.pg_os_user).pw_uid
    pg_root = cluster_config.home / "pg"
    for datadir in (pg_root / "primary", pg_root / "standby"):
        info = datadir.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (owner, 0o700), datadir
    secrets = warehouse.password_file.parent.stat()
    assert (secrets.st_uid, stat.S_IMODE(secrets.st_mode)) == (0, 0o700)
    assert not list(pg_root.glob(".pwfile-*")), "initdb's password file must be deleted once used"
    assert all(d.stat().st_mode & stat.S_IXOTH for d in pg_root.parents), "every ancestor must be searchable"


def test_up_moves_both_nodes_when_the_ports_change(tmp_path: Path) -> None:
    first, second = free_ports(2)
    config = make_config(tmp_path / "home", first, second)
    try:
        cluster.up(config)

        swapped = make_config(tmp_path / "home", second, first)
        state = cluster.up(swapped)

        assert state.healthy, state.render()
        assert [(n.role, n.port) for n in state.nodes] == [("primary", second), ("standby", first)]
    finally:
        cluster.destroy(config)


def test_up_refuses_a_port_taken_by_another_program(tmp_path: Path) -> None:
    primary_port, standby_port = free_ports(2)
    config = make_config(tmp_path / "home", primary_port, standby_port)
    try:
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", standby_port))
            squatter.listen()

            with pytest.raises(WarehouseError, match=rf"127\.0\.0\.1:{standby_port}.*KHO_PG_STANDBY_PORT"):
                cluster.up(config)
    finally:
        cluster.destroy(config)  # had `up` not refused, its servers would outlive the test


def test_up_refuses_the_same_port_for_both_nodes(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = make_config(tmp_path / "home", port, port)
    try:
        with pytest.raises(ConfigError, match="port of its own"):
            cluster.up(config)
    finally:
        cluster.destroy(config)


def test_find_binaries_prefers_the_system_postgresql(warehouse: WarehouseConfig) -> None:
    try:
        system = cluster.find_binaries("system")
    except WarehouseError:
        pytest.skip("no system PostgreSQL on this machine")

    assert cluster.find_binaries() == system
    with connect(warehouse, autocommit=True) as conn:
        assert conn.info.server_version // 10000 == system.major


def test_find_binaries_names_what_it_looked_at_when_no_version_matches() -> None:
    with pytest.raises(WarehouseError, match=r"no PostgreSQL 3 server binaries found.*need 3"):
        cluster.find_binaries(major=3)


def test_pgserver_binaries_run_a_streaming_cluster(tmp_path: Path) -> None:
    binaries = cluster.find_binaries("pgserver")
    config = make_config(tmp_path / "home", *free_ports(2))
    try:
        state = cluster.up(config, binaries=binaries)

        assert state.healthy, state.render()
        with connect(config.warehouse, autocommit=True) as conn:
            assert conn.info.server_version // 10000 == binaries.major
        if os.geteuid() == 0:
            assert (config.home / "pg" / "primary").stat().st_uid == pwd.getpwnam(config.pg_os_user).pw_uid
    finally:
        cluster.destroy(config)  # picks the pgserver binaries again from the data directory's PG_VERSION
    assert not (config.home / "pg").exists()
    assert not cluster.status(config).node("primary").running
