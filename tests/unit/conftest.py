"""Fixtures shared by the registry server and client tests: a fake world behind a real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

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
