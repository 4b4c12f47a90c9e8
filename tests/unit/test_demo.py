"""`kho demo` beside a simulator that already serves (`kho up`, `kho simulate serve`): reused, not fought over."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kho.config import KhoConfig
from kho.demo import running_simulator
from kho.errors import KhoError
from kho.simulator.server import RunningSimulator
from tests.conftest import free_port


def config_on(home: Path, port: int) -> KhoConfig:
    return KhoConfig.from_env({"KHO_HOME": str(home), "KHO_SIM_HOST": "127.0.0.1", "KHO_SIM_PORT": str(port)})


def test_a_simulator_serving_on_the_demo_port_is_found_with_its_day(tmp_path: Path, running: RunningSimulator
                                                                    ) -> None:
    found = running_simulator(config_on(tmp_path, running.port))
    assert found is not None
    assert found.url == running.url and found.day == running.world.day


def test_nothing_on_the_demo_port_means_the_demo_serves_its_own(tmp_path: Path) -> None:
    assert running_simulator(config_on(tmp_path, free_port())) is None


@pytest.fixture
def something_else() -> Iterator[int]:
    """An HTTP server that is not kho's simulator (it answers 501 to every GET)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_another_server_on_the_demo_port_is_refused_in_one_line_naming_the_setting(tmp_path: Path,
                                                                                   something_else: int) -> None:
    with pytest.raises(KhoError) as caught:
        running_simulator(config_on(tmp_path, something_else))
    message = str(caught.value)
    assert "not as kho's simulator" in message and "KHO_SIM_PORT" in message and "\n" not in message
