"""Session-wide real infrastructure: one embedded primary + standby for every test that needs a warehouse.

Starting PostgreSQL twice, migrating Airflow and importing GX are the expensive steps; each happens once per
session. Tests that write isolate themselves in a database of their own (`fresh_db_config`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kho.config import KhoConfig


def free_ports(n: int) -> list[int]:
    """n distinct free ports: every socket stays open until all are chosen, so none repeats."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="session")
def kho_home() -> Iterator[Path]:
    """Outside pytest's basetemp: pytest resets that tree to 0700 when another session starts, which would cut
    the servers (running as an unprivileged user) off from their own files mid-run."""
    home = Path(tempfile.mkdtemp(prefix="kho-test-home-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def kho_config(kho_home: Path) -> Iterator[KhoConfig]:
    """A running embedded warehouse (primary + streaming standby) on free ports, torn down at the end."""
    from kho.warehouse import cluster

    primary, standby, simulator = free_ports(3)
    config = KhoConfig.from_env({
        "KHO_HOME": str(kho_home),
        "KHO_PG_PORT": str(primary),
        "KHO_PG_STANDBY_PORT": str(standby),
        "KHO_SIM_PORT": str(simulator),
        "KHO_SIM_CITIZENS": "3000",
        "KHO_SIM_SEED": "7",
    })
    cluster.up(config)
    try:
        yield config
    finally:
        cluster.down(config)


@pytest.fixture
def fresh_db_config(kho_config: KhoConfig) -> Iterator[KhoConfig]:
    """The session warehouse, pointed at a new empty database for this test (replicated like any other).

    The administrator creates it, owned by the application login (which may not create databases itself).
    """
    from kho.warehouse.connection import connect_admin

    name = f"t_{uuid.uuid4().hex[:12]}"
    wh = kho_config.warehouse
    with connect_admin(wh, dbname="postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(wh.user)))
    yield dataclasses.replace(kho_config, warehouse=dataclasses.replace(wh, dbname=name))
    with connect_admin(wh, dbname="postgres") as conn, \
            contextlib.suppress(psycopg.Error):  # a leftover database only costs disk in a temp home
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
