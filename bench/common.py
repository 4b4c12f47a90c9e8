"""What every benchmark script shares: timing, a timestamped log line, free ports for its own warehouse."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_ports(n: int) -> list[int]:
    """n distinct free ports (as tests/conftest.py picks them), so other clusters on this machine are left alone."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_env(home: Path) -> dict[str, str]:
    """The settings of an embedded warehouse of its own (two nodes, their Patroni and an etcd) on free ports."""
    primary, standby, rest1, rest2, etcd, etcd_peer = free_ports(6)
    return {"KHO_HOME": str(home), "KHO_PG_PORT": str(primary), "KHO_PG_STANDBY_PORT": str(standby),
            "KHO_PATRONI_PORTS": f"{rest1},{rest2}", "KHO_ETCD_PORT": str(etcd), "KHO_ETCD_PEER_PORT": str(etcd_peer)}
