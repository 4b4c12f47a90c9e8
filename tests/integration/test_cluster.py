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
from kho.warehouse import cluster
from kho.warehouse.connection import connect, connect_standby, wait_for_standby
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
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", standby_port))
        squatter.listen()

        with pytest.raises(WarehouseError, match=rf"127\.0\.0\.1:{standby_port}.*KHO_PG_STANDBY_PORT"):
            cluster.up(config)
    cluster.destroy(config)


def test_up_refuses_the_same_port_for_both_nodes(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with pytest.raises(ConfigError, match="port of its own"):
        cluster.up(make_config(tmp_path / "home", port, port))


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
