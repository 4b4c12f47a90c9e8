"""Airflow for the end-to-end tests: one migrated metadata DB and one parsed DagBag per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kho.config import KhoConfig


@pytest.fixture(scope="session")
def dagbag(kho_config: KhoConfig) -> Any:
    from kho import demo

    return demo.load_dagbag(kho_config)


@pytest.fixture(scope="session")
def simulator(kho_config: KhoConfig) -> Iterator[Any]:
    """The population registry the DAGs read, with no defects, behind OAuth2, on the session's simulator port."""
    from kho.simulator import World
    from kho.simulator.server import ServerOptions, serve_in_thread

    world = World.generate(seed=kho_config.simulator_seed, count=kho_config.simulator_citizens)
    options = ServerOptions(credentials=kho_config.ensure_registry_credentials())
    running = serve_in_thread(world, kho_config.simulator_host, kho_config.simulator_port, options)
    yield world
    running.stop()
