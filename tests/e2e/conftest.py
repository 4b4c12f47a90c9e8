"""Airflow for the end-to-end tests: one migrated metadata DB and one parsed DagBag for all of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from kho.config import KhoConfig


@pytest.fixture(scope="package")
def dagbag(kho_config: KhoConfig) -> Iterator[Any]:
    """Parsing the DAGs exports kho's and Airflow's settings into this process (`airflow_env.prepare`); once the
    end-to-end tests are done they are taken back, so no later test runs with them by accident."""
    from kho import demo

    saved = dict(os.environ)
    try:
        yield demo.load_dagbag(kho_config)
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


@pytest.fixture(scope="session")
def simulator(kho_config: KhoConfig) -> Iterator[Any]:
    """The population registry the DAGs read, with no defects, behind OAuth2, on the session's simulator port."""
    from kho.simulator import World, WorldSpec
    from kho.simulator.server import ServerOptions, serve_in_thread

    world = World.build(WorldSpec(kho_config.simulator_seed, kho_config.simulator_citizens))
    options = ServerOptions(credentials=kho_config.ensure_registry_credentials())
    with serve_in_thread(world, kho_config.simulator_host, kho_config.simulator_port, options):
        yield world
