"""The embedded warehouse against real PostgreSQL, Patroni and etcd: two nodes, their roles and their life cycle.

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
import yaml

from kho.config import KhoConfig, WarehouseConfig
from kho.errors import ConfigError, WarehouseError
from kho.warehouse import embedded, health, logins, patroni
from kho.warehouse.binaries import find_binaries
from kho.warehouse.connection import connect, connect_admin, connect_node, connect_standby, wait_for_standby
from kho.warehouse.layout import LOG_DIRECTORY, layout
from tests.conftest import free_ports

pytestmark = pytest.mark.integration


def make_config(home: Path, primary_port: int, standby_port: int, **more: str) -> KhoConfig:
    rest1, rest2, etcd, etcd_peer = free_ports(4)
    return KhoConfig.from_env({
        "KHO_HOME": str(home), "KHO_PG_PORT": str(primary_port), "KHO_PG_STANDBY_PORT": str(standby_port),
        "KHO_PATRONI_PORTS": f"{rest1},{rest2}", "KHO_ETCD_PORT": str(etcd), "KHO_ETCD_PEER_PORT": str(etcd_peer),
        **more,
    })


def postmaster_pids(config: KhoConfig) -> dict[str, int | None]:
    return {m.name: embedded.postmaster_pid(m) for m in layout(config).members}


def poll(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting until {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def cluster_config(tmp_path_factory: pytest.TempPathFactory) -> KhoConfig:
    """A KHO_HOME of its own (under pytest's root-only tmp dir, as in CI) and ports nobody uses by default."""
    return make_config(tmp_path_factory.mktemp("kho_cluster"), *free_ports(2))


@pytest.fixture(scope="session")
def warehouse(cluster_config: KhoConfig) -> Iterator[WarehouseConfig]:
    """The running nodes of `cluster_config`, destroyed at the end of the session."""
    try:
        embedded.up(cluster_config)
        yield cluster_config.warehouse
    finally:
        embedded.destroy(cluster_config)


@pytest.fixture
def leader_first(warehouse: WarehouseConfig, cluster_config: KhoConfig) -> KhoConfig:
    """The cluster healthy with dc1 leading (tests before may have restarted nodes and moved the leader)."""
    state = embedded.up(cluster_config)
    if state.primary is None or state.primary.name != "dc1":
        patroni.switchover(cluster_config, "dc1")
    return cluster_config


def test_up_creates_a_leader_and_a_synchronous_streaming_standby(leader_first: KhoConfig) -> None:
    warehouse = leader_first.warehouse
    state = health.status(leader_first)

    assert state.healthy, state.render()
    assert [(n.name, n.role, n.port, n.running) for n in state.nodes] == [
        ("dc1", "primary", warehouse.primary_port, True),
        ("dc2", "standby", warehouse.standby_port, True),
    ]
    assert [(n.patroni_role, n.patroni_state) for n in state.nodes] == [
        ("leader", "running"), ("sync_standby", "streaming")]
    standby = state.node("dc2")
    assert (standby.replication_state, standby.receiver_status) == ("streaming", "streaming")
    assert standby.receive_lsn and standby.replay_lsn and state.node("dc1").current_lsn
    assert standby.lag_bytes is not None and standby.lag_bytes >= 0
    assert standby.slot_retained_bytes is not None, "Patroni keeps a replication slot for each replica"
    assert state.nodes[0].timeline == state.nodes[1].timeline


def test_synchronous_commits_wait_until_the_standby_has_applied_them(leader_first: KhoConfig) -> None:
    with connect_admin(leader_first.warehouse) as conn:
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                     "('synchronous_commit', 'synchronous_standby_names')").fetchall())
    assert settings["synchronous_commit"] == "remote_apply"
    assert "dc2" in settings["synchronous_standby_names"]


def test_up_twice_is_idempotent(leader_first: KhoConfig) -> None:
    before = postmaster_pids(leader_first)
    patronis = {m.name: embedded.patroni_pid(m) for m in layout(leader_first).members}

    again = embedded.up(leader_first)

    assert again.healthy, again.render()
    assert postmaster_pids(leader_first) == before, "a second `up` must not restart running nodes"
    assert {m.name: embedded.patroni_pid(m) for m in layout(leader_first).members} == patronis


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


def test_the_administrator_is_the_bootstrap_superuser(leader_first: KhoConfig) -> None:
    warehouse = leader_first.warehouse
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


def test_both_nodes_load_pgaudit_when_it_is_installed(leader_first: KhoConfig) -> None:
    warehouse = leader_first.warehouse
    if not find_binaries().has_pgaudit:
        pytest.skip("pgaudit is not installed for this PostgreSQL (`make setup` installs it as root on Debian)")
    for index in (0, 1):
        with connect_node(warehouse, index) as conn:
            assert conn.execute("SHOW shared_preload_libraries").fetchone() == ("pgaudit",)
    with connect(warehouse, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgaudit'").fetchone() == (1,)


def test_each_node_writes_json_logs_in_its_data_directory(warehouse: WarehouseConfig, cluster_config: KhoConfig
                                                         ) -> None:
    for member in layout(cluster_config).members:
        logs = member.datadir / LOG_DIRECTORY
        assert list(logs.glob("*.json")), f"{member.name} has no JSON log in {logs}"


def test_patroni_configuration_holds_no_password_and_patroni_runs_as_the_server_user(
        warehouse: WarehouseConfig, cluster_config: KhoConfig) -> None:
    secrets = [warehouse.admin_password(), warehouse.password(), warehouse.ensure_replication_password(),
               cluster_config.ha.rest_password()]
    lay = layout(cluster_config)
    for member in lay.members:
        text = member.patroni_config.read_text(encoding="utf-8")
        assert not [s for s in secrets if s in text], f"a password is written in {member.patroni_config}"
        settings = yaml.safe_load(text)
        assert settings["name"] == member.name
        assert settings["bootstrap"]["dcs"]["postgresql"]["use_pg_rewind"] is True
        pid = embedded.patroni_pid(member)
        assert pid is not None
        uid = int((Path("/proc") / str(pid) / "status").read_text().split("Uid:")[1].split()[0])
        expected = pwd.getpwnam(cluster_config.pg_os_user).pw_uid if os.geteuid() == 0 else os.geteuid()
        assert uid == expected
        assert uid != 0, "Patroni (and the PostgreSQL it starts) never runs as root"


def test_up_refuses_a_warehouse_made_before_patroni(tmp_path: Path) -> None:
    """`kho warehouse up` of earlier versions kept the nodes in pg/primary and pg/standby, outside Patroni."""
    config = make_config(tmp_path / "home", *free_ports(2))
    old = config.home / "pg" / "primary"
    old.mkdir(parents=True)
    (old / "PG_VERSION").write_text("15\n")
    try:
        with pytest.raises(WarehouseError, match=r"without Patroni.*kho warehouse destroy") as raised:
            embedded.up(config)
        assert "\n" not in str(raised.value)
    finally:
        embedded.destroy(config)


def test_destroy_stops_a_running_pre_patroni_node_before_deleting_it(tmp_path: Path) -> None:
    """A warehouse an earlier kho left running (pg/primary, outside Patroni): `up` refuses it, `destroy` stops its
    server, then deletes its data; nothing keeps running on a deleted directory."""
    from kho.warehouse.osuser import owned_dir, server_user

    config = make_config(tmp_path / "home", *free_ports(2))
    user = server_user(config, create=True)
    assert user is not None
    bins = find_binaries()
    old = config.home / "pg" / "primary"
    owned_dir(config.home / "pg", user)
    (port,) = free_ports(1)
    try:
        user.run([bins.program("initdb"), "-D", str(old), "--no-instructions", "-A", "trust"], cwd=config.home / "pg",
                 timeout=180)
        user.run([bins.program("pg_ctl"), "-D", str(old), "start", "-w", "-l", str(old.parent / "primary.log"), "-o",
                  f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"],
                 cwd=config.home / "pg", timeout=120)
        pid = int((old / "postmaster.pid").read_text(encoding="ascii").split()[0])
        with pytest.raises(WarehouseError, match="without Patroni"):
            embedded.up(config)

        embedded.destroy(config)

        assert not (config.home / "pg").exists()
        assert not _lives(pid), "destroy deleted the data of a server it left running"
    finally:
        if "pid" in locals() and _lives(pid):
            os.kill(pid, signal.SIGKILL)
        embedded.destroy(config)


def _lives(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_up_rewrites_a_password_changed_by_hand(warehouse: WarehouseConfig, cluster_config: KhoConfig) -> None:
    with connect_admin(warehouse) as conn:
        logins.set_password(conn, warehouse.user, "changed-by-hand")

    embedded.up(cluster_config)

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


def test_connect_finds_the_primary_when_the_standby_is_listed_first(leader_first: KhoConfig) -> None:
    warehouse = leader_first.warehouse
    standby_first = dataclasses.replace(warehouse, hosts=warehouse.hosts[::-1], ports=warehouse.ports[::-1])

    with connect(standby_first, autocommit=True) as conn:
        assert conn.info.port == warehouse.primary_port
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)


def test_status_renders_an_aligned_table_of_every_node(leader_first: KhoConfig) -> None:
    warehouse = leader_first.warehouse
    lines = health.status(leader_first).render().splitlines()

    assert [line.split()[0] for line in lines[:3]] == ["NODE", "dc1", "dc2"]
    column = lines[0].index("ADDRESS")
    assert lines[1][column:].startswith(f"{warehouse.hosts[0]}:{warehouse.primary_port}")
    assert lines[2][column:].startswith(f"{warehouse.hosts[1]}:{warehouse.standby_port}")
    assert lines[1][lines[0].index("PATRONI"):].startswith("leader/running")
    assert "replication: synchronous (remote_apply)" in lines
    assert lines[-1] == "healthy"


def test_switchover_moves_the_primary_without_losing_a_commit(leader_first: KhoConfig) -> None:
    warehouse = leader_first.warehouse
    marker = uuid.uuid4().hex
    with connect(warehouse, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kho_switchover_probe (marker text)")
        conn.execute("INSERT INTO kho_switchover_probe SELECT %s FROM generate_series(1, 1000)", (marker,))

    change = patroni.switchover(leader_first)

    assert change.after.leader is not None and change.after.leader.name == "dc2"
    assert change.render().startswith("switchover: leader dc1 -> dc2")
    with connect(warehouse, autocommit=True) as conn:
        assert conn.info.port == warehouse.standby_port, "writers follow the new primary with no change of settings"
        assert conn.execute("SELECT count(*) FROM kho_switchover_probe WHERE marker = %s", (marker,)
                            ).fetchone() == (1000,)
    state = health.status(leader_first)
    assert state.healthy, state.render()
    assert state.last_failover is not None and state.last_failover["new_leader"] == "dc2"


def test_switchover_to_the_primary_itself_is_refused(leader_first: KhoConfig) -> None:
    with pytest.raises(WarehouseError, match="dc1 is already the primary"):
        patroni.switchover(leader_first, "dc1")
    with pytest.raises(WarehouseError, match="no warehouse node 'dc9'"):
        patroni.switchover(leader_first, "dc9")


def test_down_leaves_every_node_stopped_and_status_unhealthy(warehouse: WarehouseConfig,
                                                              cluster_config: KhoConfig) -> None:
    try:
        embedded.down(cluster_config)
        embedded.down(cluster_config)  # already stopped: still fine

        state = health.status(cluster_config)
        assert not state.healthy
        assert [(n.running, n.role) for n in state.nodes] == [(False, "down"), (False, "down")]
        assert not state.patroni_answered
        assert "UNHEALTHY" in state.render()
        assert all(embedded.patroni_pid(m) is None for m in layout(cluster_config).members)
        assert not layout(cluster_config).members[0].socket_dir.parent.exists(), "down leaves no socket directory"
    finally:
        embedded.up(cluster_config)


def test_up_after_down_restarts_every_node(warehouse: WarehouseConfig, cluster_config: KhoConfig) -> None:
    embedded.down(cluster_config)

    state = embedded.up(cluster_config)

    assert state.healthy, state.render()


def test_a_primary_postgres_killed_without_shutdown_fails_over_and_comes_back(leader_first: KhoConfig) -> None:
    """Synchronous mode: the synchronous standby has applied every commit, so Patroni promotes it at once
    (primary_start_timeout 0); its old primary's Patroni rewinds it and it follows."""
    pids = postmaster_pids(leader_first)
    pid = pids["dc1"]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    patroni.wait_for(leader_first, lambda v: v.leader is not None and v.leader.name == "dc2", "dc2 promoted", 120)
    state = embedded.up(leader_first)
    assert state.healthy, state.render()
    assert state.node("dc1").role == "standby"


@pytest.mark.skipif(os.geteuid() != 0, reason="the switch to an unprivileged OS user only happens as root")
def test_data_belongs_to_the_os_user_while_secrets_stay_root_only(warehouse: WarehouseConfig,
                                                                   cluster_config: KhoConfig) -> None:
    owner = pwd.getpwnam(cluster_config.pg_os_user).pw_uid
    for member in layout(cluster_config).members:
        for path in (member.datadir, member.patroni_config):
            info = path.stat()
            assert info.st_uid == owner, path
            assert stat.S_IMODE(info.st_mode) in (0o700, 0o600), path
    secrets = warehouse.password_file.parent.stat()
    assert (secrets.st_uid, stat.S_IMODE(secrets.st_mode)) == (0, 0o700)
    pg_root = cluster_config.home / "pg"
    assert all(d.stat().st_mode & stat.S_IXOTH for d in pg_root.parents), "every ancestor must be searchable"


def test_up_moves_every_node_when_the_ports_change(tmp_path: Path) -> None:
    first, second = free_ports(2)
    config = make_config(tmp_path / "home", first, second)
    try:
        embedded.up(config)

        swapped = make_config(tmp_path / "home", second, first)
        state = embedded.up(swapped)

        assert state.healthy, state.render()
        assert sorted((n.name, n.port) for n in state.nodes) == [("dc1", second), ("dc2", first)]
    finally:
        embedded.destroy(swapped if "swapped" in locals() else config)


def test_up_refuses_a_port_taken_by_another_program(tmp_path: Path) -> None:
    primary_port, standby_port = free_ports(2)
    config = make_config(tmp_path / "home", primary_port, standby_port)
    try:
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", standby_port))
            squatter.listen()

            with pytest.raises(WarehouseError, match=rf"127\.0\.0\.1:{standby_port}.*KHO_PG_STANDBY_PORT"):
                embedded.up(config)
    finally:
        embedded.destroy(config)  # had `up` not refused, its servers would outlive the test


@pytest.mark.parametrize("clash", ["pg", "patroni", "etcd"])
def test_up_refuses_one_port_for_two_servers(tmp_path: Path, clash: str) -> None:
    port, other = free_ports(2)
    more = {"pg": {}, "patroni": {"KHO_PATRONI_PORTS": f"{port},{other}"},
            "etcd": {"KHO_ETCD_PORT": str(port)}}[clash]
    config = make_config(tmp_path / "home", port, port if clash == "pg" else other, **more)
    try:
        with pytest.raises(ConfigError, match="port of their own"):
            embedded.up(config)
    finally:
        embedded.destroy(config)


def test_find_binaries_prefers_the_system_postgresql(warehouse: WarehouseConfig) -> None:
    try:
        system = find_binaries("system")
    except WarehouseError:
        pytest.skip("no system PostgreSQL on this machine")

    assert find_binaries() == system
    with connect(warehouse, autocommit=True) as conn:
        assert conn.info.server_version // 10000 == system.major


def test_find_binaries_names_what_it_looked_at_when_no_version_matches() -> None:
    with pytest.raises(WarehouseError, match=r"no PostgreSQL 3 server binaries found.*need 3"):
        find_binaries(major=3)


def test_pgserver_binaries_run_a_patroni_cluster(tmp_path: Path) -> None:
    binaries = find_binaries("pgserver")
    config = make_config(tmp_path / "home", *free_ports(2))
    try:
        state = embedded.up(config, binaries=binaries)

        assert state.healthy, state.render()
        with connect(config.warehouse, autocommit=True) as conn:
            assert conn.info.server_version // 10000 == binaries.major
        if os.geteuid() == 0:
            assert (config.home / "pg" / "dc1").stat().st_uid == pwd.getpwnam(config.pg_os_user).pw_uid
    finally:
        embedded.destroy(config)  # picks the pgserver binaries again from the data directory's PG_VERSION
    assert not (config.home / "pg").exists()
    assert not health.status(config).node("dc1").running


def test_three_nodes_one_leader_one_synchronous_standby_and_a_replica(tmp_path: Path) -> None:
    ports = free_ports(6)
    config = KhoConfig.from_env({
        "KHO_HOME": str(tmp_path / "home"), "KHO_PG_PORTS": ",".join(map(str, ports[:3])),
        "KHO_PATRONI_PORTS": ",".join(map(str, ports[3:])), **dict(zip(
            ("KHO_ETCD_PORT", "KHO_ETCD_PEER_PORT"), map(str, free_ports(2)), strict=True)),
    })
    try:
        state = embedded.up(config)

        assert state.healthy, state.render()
        assert [n.name for n in state.nodes] == ["dc1", "dc2", "dc3"]
        assert sorted(n.patroni_role or "" for n in state.nodes) == ["leader", "replica", "sync_standby"]
        assert [n.replication_state for n in state.standbys] == ["streaming", "streaming"]
        assert config.child_env()["KHO_PG_PORTS"] == ",".join(map(str, ports[:3]))
    finally:
        embedded.destroy(config)
