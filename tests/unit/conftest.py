"""Fixtures shared by unit tests: a fake world behind a real HTTP server (registry server and client tests), and a
KHO_HOME with nothing running (CLI tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kho.simulator.server import RunningSimulator, ServerOptions, serve_in_thread
from tests.unit.simulator.fakes import CLIENT, FakeWorld, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
def running(world: FakeWorld, clock: ManualClock) -> Iterator[RunningSimulator]:
    """A registry that needs a token (TTL 300 s on the test's clock), without rate limit or faults."""
    with serve_in_thread(world, options=ServerOptions(credentials=CLIENT, clock=clock)) as simulator:
        yield simulator


@pytest.fixture
def nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty KHO_HOME whose warehouse ports have no server (ports below 1024 need root to bind: never ours)."""
    monkeypatch.setenv("KHO_HOME", str(tmp_path))
    monkeypatch.setenv("KHO_PG_PORT", "1031")
    monkeypatch.setenv("KHO_PG_STANDBY_PORT", "1033")
    monkeypatch.setenv("KHO_PATRONI_PORTS", "1035,1037")
    monkeypatch.setenv("KHO_PG_PASSWORD", "not-used")
    return tmp_path
