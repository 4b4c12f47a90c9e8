"""The one way to reach the warehouse: libpq multi-host connection strings, routed by session attributes.

No code in kho hard-codes a host: the primary is whichever listed node accepts writes
(`target_session_attrs=read-write`), so a promoted standby is found without configuration changes.

Everything but `connect_admin` logs in as the application role, which holds no superuser power; the administrator
(a superuser) is for `kho warehouse up` and administrative commands only.
"""

from __future__ import annotations

import time
from typing import Literal

import psycopg
from psycopg import sql

from kho.config import WarehouseConfig
from kho.errors import WarehouseError

SessionAttrs = Literal["read-write", "standby", "prefer-standby", "any"]


def conninfo(wh: WarehouseConfig, attrs: SessionAttrs = "read-write", *, dbname: str | None = None) -> str:
    """A libpq conninfo listing every node; libpq picks the first that satisfies `attrs`."""
    return psycopg.conninfo.make_conninfo(
        host=",".join(wh.hosts),
        port=",".join(str(p) for p in wh.ports),
        dbname=dbname or wh.dbname,
        user=wh.user,
        password=wh.password(),
        target_session_attrs=attrs,
        connect_timeout="5",
        application_name="kho",
    )


def connect(wh: WarehouseConfig, *, autocommit: bool = False, dbname: str | None = None) -> psycopg.Connection:
    """A connection to the current primary (the node that accepts writes)."""
    return _connect(wh, "read-write", autocommit=autocommit, dbname=dbname)


def connect_standby(wh: WarehouseConfig, *, autocommit: bool = True) -> psycopg.Connection:
    """A read-only connection to a standby, for agency reads and replication checks."""
    return _connect(wh, "standby", autocommit=autocommit)


def connect_node(wh: WarehouseConfig, index: int, *, autocommit: bool = True) -> psycopg.Connection:
    """A connection to one listed node, whatever its role (for status and failover tooling)."""
    info = psycopg.conninfo.make_conninfo(
        host=wh.hosts[index], port=str(wh.ports[index]), dbname=wh.dbname, user=wh.user,
        password=wh.password(), connect_timeout="5", application_name="kho",
    )
    return _connect_one(wh, index, info, autocommit=autocommit)


def connect_admin(wh: WarehouseConfig, *, dbname: str | None = None, node_index: int | None = None,
                  autocommit: bool = True) -> psycopg.Connection:
    """A superuser connection as the administrator: the primary by default, or one listed node (`node_index`).

    Only administration uses it (creating roles and databases, granting, reading server logs); applications and
    agencies never do.
    """
    common = {"dbname": dbname or wh.dbname, "user": wh.admin_user, "password": wh.admin_password(),
              "connect_timeout": "5", "application_name": "kho_admin"}
    if node_index is not None:
        info = psycopg.conninfo.make_conninfo(host=wh.hosts[node_index], port=str(wh.ports[node_index]), **common)
        return _connect_one(wh, node_index, info, autocommit=autocommit)
    info = psycopg.conninfo.make_conninfo(host=",".join(wh.hosts), port=",".join(str(p) for p in wh.ports),
                                          target_session_attrs="read-write", **common)
    return _connect_many(wh, info, "read-write", autocommit=autocommit, who=f" as {wh.admin_user}")


def _connect_one(wh: WarehouseConfig, index: int, info: str, *, autocommit: bool) -> psycopg.Connection:
    try:
        return psycopg.connect(info, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise WarehouseError(f"node {wh.hosts[index]}:{wh.ports[index]} is unreachable: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    """libpq's messages span lines (one per host tried); an operator's error stays on one."""
    return "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip()) or type(exc).__name__


def _connect(wh: WarehouseConfig, attrs: SessionAttrs, *, autocommit: bool, dbname: str | None = None
             ) -> psycopg.Connection:
    return _connect_many(wh, conninfo(wh, attrs, dbname=dbname), attrs, autocommit=autocommit)


def _connect_many(wh: WarehouseConfig, info: str, attrs: SessionAttrs, *, autocommit: bool, who: str = ""
                  ) -> psycopg.Connection:
    try:
        return psycopg.connect(info, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        nodes = ", ".join(f"{h}:{p}" for h, p in zip(wh.hosts, wh.ports, strict=True))
        raise WarehouseError(
            f"no warehouse node accepting {attrs} sessions{who} among {nodes}: {_first_line(exc)}. "
            "Is the warehouse running? Try `kho warehouse status` or `kho warehouse up`."
        ) from exc


def primary_address(wh: WarehouseConfig) -> tuple[str, int]:
    """(host, port) of the current primary, for tools that take one host (dbt, psql, GX)."""
    with connect(wh, autocommit=True) as conn:
        info = conn.info
        return info.host, int(info.port)


def wait_for_standby(wh: WarehouseConfig, *, timeout_s: float = 60.0) -> int:
    """Block until every standby has replayed the primary's current WAL position; return the lag in bytes (0).

    Polls LSNs instead of sleeping a fixed time: publish steps call this so the standby holds what was published.
    """
    with connect(wh, autocommit=True) as primary:
        target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + timeout_s
        while True:
            row = primary.execute(
                sql.SQL(
                    "SELECT count(*), "
                    "coalesce(max(pg_wal_lsn_diff(%s::pg_lsn, coalesce(replay_lsn, '0/0'))), -1)::bigint "
                    "FROM pg_stat_replication WHERE state = 'streaming'"
                ),
                (target,),
            ).fetchone()
            assert row is not None
            streaming, lag = int(row[0]), int(row[1])
            if streaming and lag <= 0:
                return 0
            if time.monotonic() > deadline:
                if not streaming:
                    raise WarehouseError(
                        f"no standby is streaming from the primary, so nothing written since {target} is on a "
                        f"second node yet (waited {timeout_s:.0f}s); bring one back with `kho warehouse rejoin` "
                        "and see `kho warehouse status`"
                    )
                raise WarehouseError(
                    f"standby has not replayed up to {target} after {timeout_s:.0f}s "
                    f"(streaming standbys: {streaming}, lag {lag} bytes); check `kho warehouse status`"
                )
            time.sleep(0.05)
