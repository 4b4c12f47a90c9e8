"""Where the embedded warehouse keeps its files, and what each of its nodes is called.

Everything lives under `config.home / "pg"`: one data directory per node (named for the data centre it stands
for, `dc1`, `dc2`, ...: after a failover the standby data centre's node is the primary, so a node is not named
for its role), its Patroni configuration and log beside it, etcd's data, and a short Unix-socket directory for
tools on the same machine (pgBackRest). Any number of nodes: one per `KHO_PG_PORT`-style address listed.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kho.config import KhoConfig

LISTEN_HOST = "127.0.0.1"
"""The embedded nodes listen on loopback TCP (and a Unix socket in a short directory of their own)."""
LOG_DIRECTORY = "log"
"""Each node's server logs (text and JSON lines), relative to its data directory."""


@dataclass(frozen=True)
class Member:
    """One node of the warehouse: a PostgreSQL run by a Patroni."""

    index: int
    name: str
    """Patroni's member name, `dc1`, `dc2`, ..."""
    host: str
    port: int
    rest_port: int
    datadir: Path
    patroni_config: Path
    patroni_log_dir: Path
    """Patroni's own log, rotated by Patroni (patroni.log, 4 files of 10 MB)."""
    patroni_output: Path
    """What the Patroni process prints outside its log (start-up failures, a crash's traceback)."""
    patroni_pidfile: Path
    pgpass: Path
    """Patroni writes the replication and rewind passwords here for pg_basebackup and pg_rewind."""
    socket_dir: Path

    @property
    def patroni_log(self) -> Path:
        return self.patroni_log_dir / "patroni.log"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def port_setting(self) -> str:
        return ("KHO_PG_PORT", "KHO_PG_STANDBY_PORT")[self.index] if self.index < 2 else "KHO_PG_PORTS"


@dataclass(frozen=True)
class Layout:
    root: Path
    members: tuple[Member, ...]
    etcd_dir: Path
    etcd_log: Path
    etcd_pidfile: Path
    runtime: Path
    """What the server user runs Patroni and etcd from (kho.warehouse.runtime)."""
    ctl_config: Path
    """patronictl's configuration (no secrets): the scope and where etcd is."""

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        known = ", ".join(m.name for m in self.members)
        raise KeyError(f"no warehouse node {name!r}; the nodes are {known}")


def member_name(index: int) -> str:
    return f"dc{index + 1}"


def layout(config: KhoConfig) -> Layout:
    root = config.home / "pg"
    wh = config.warehouse
    # A Unix socket's path must fit 107 bytes: the directory is short and derived from the home, not inside it.
    digest = hashlib.sha256(str(config.home).encode()).hexdigest()[:12]
    sockets = Path(tempfile.gettempdir()) / f"kho-{digest}"
    members = tuple(
        Member(
            index=i, name=member_name(i), host=wh.hosts[i], port=wh.ports[i], rest_port=config.ha.rest_ports[i],
            datadir=root / member_name(i), patroni_config=root / f"{member_name(i)}.patroni.yml",
            patroni_log_dir=root / f"{member_name(i)}.patroni-log",
            patroni_output=root / f"{member_name(i)}.patroni.out",
            patroni_pidfile=root / f"{member_name(i)}.patroni.pid",
            pgpass=root / f"{member_name(i)}.pgpass", socket_dir=sockets / member_name(i),
        )
        for i in range(len(wh.ports))
    )
    return Layout(root=root, members=members, etcd_dir=root / "etcd", etcd_log=root / "etcd.log",
                  etcd_pidfile=root / "etcd.pid", runtime=config.home / "runtime",
                  ctl_config=root / "patronictl.yml")
