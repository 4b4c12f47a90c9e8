"""The simulator's server as uvicorn runs it, met by real clients on real sockets: each injected fault as a client
sees it, the framing of every answer, a clean start and stop, and `kho simulate serve` in a process of its own."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kho.simulator.faults import FaultSpec
from kho.simulator.server import HEALTH_PATH, TOKEN_PATH, RunningSimulator, ServerOptions, serve_in_thread
from kho.sources.population import CITIZENS
from tests.conftest import free_port
from tests.unit.simulator.fakes import CLIENT, THINGS, FakeWorld

JSON_TYPE = "application/json; charset=utf-8"


def exchange(simulator: RunningSimulator, request: bytes) -> bytes:
    """Send `request` on a new connection, then read until the server closes it: every byte it answered."""
    with socket.create_connection(("127.0.0.1", simulator.port), timeout=10) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Return once `condition()` holds (polled); fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {seconds} s"
        time.sleep(0.01)


class InFlight:
    """One GET on a thread of its own, so a test can act while the server holds it."""

    def __init__(self, url: str, path: str, timeout: float = 30.0) -> None:
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.elapsed = 0.0
        self._thread = threading.Thread(target=self._get, args=(url, path, timeout))
        self._thread.start()

    def _get(self, url: str, path: str, timeout: float) -> None:
        started = time.monotonic()
        try:
            self.response = httpx.get(url + path, timeout=timeout)
        except httpx.HTTPError as exc:
            self.error = exc
        self.elapsed = time.monotonic() - started

    def join(self) -> InFlight:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()
        return self


# --- injected faults, as the client meets them ----------------------------------------------------------------

def test_a_dropped_connection_is_closed_without_a_single_byte_of_answer(world: FakeWorld) -> None:
    with serve_in_thread(world, options=ServerOptions(faults=FaultSpec(drop_rate=1.0))) as simulator:
        received = exchange(simulator, f"GET {CITIZENS.endpoint} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with httpx.Client(base_url=simulator.url) as http, \
                pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            http.get(CITIZENS.endpoint)
        assert simulator.server.faults.counts["drop"] == 2
    assert received == b""


def test_dropped_connections_log_nothing_and_each_next_request_is_served_on_a_new_one(
        world: FakeWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    outcomes: list[int | str] = []
    with serve_in_thread(world, options=ServerOptions(faults=FaultSpec(drop_rate=0.4, seed=3))) as simulator, \
            httpx.Client(base_url=simulator.url) as http:
        for _ in range(60):
            try:
                outcomes.append(http.get(THINGS.endpoint, params={"page_size": 2}).status_code)
            except httpx.RemoteProtocolError:
                outcomes.append("dropped")
        dropped = simulator.server.faults.counts["drop"]
    assert 0 < outcomes.count("dropped") == dropped < 60
    assert set(outcomes) == {200, "dropped"}  # never a 500 from uvicorn for an answer the application withheld
    assert caplog.records == []


def test_a_slow_answer_does_not_hold_up_other_requests(world: FakeWorld) -> None:
    spec = FaultSpec(slow_rate=1.0, slow_seconds=1.5)
    with serve_in_thread(world, options=ServerOptions(faults=spec)) as simulator:
        slow = InFlight(simulator.url, CITIZENS.endpoint + "?page_size=3")
        until(lambda: simulator.server.faults.counts["slow"] == 1, "the slow request to arrive")
        started = time.monotonic()
        assert httpx.get(simulator.url + HEALTH_PATH, timeout=10).status_code == 200
        assert time.monotonic() - started < 1.0
        slow.join()
    assert slow.response is not None and slow.response.status_code == 200
    assert len(slow.response.json()["data"]) == 3 and slow.elapsed >= 1.5


def test_a_client_that_gives_up_on_a_slow_answer_does_not_delay_the_stop(world: FakeWorld) -> None:
    spec = FaultSpec(slow_rate=1.0, slow_seconds=60)
    simulator = serve_in_thread(world, options=ServerOptions(faults=spec))
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(simulator.url + CITIZENS.endpoint, timeout=0.3)
    finally:
        started = time.monotonic()
        simulator.stop()
    assert time.monotonic() - started < 5


def test_a_slow_answer_still_awaited_when_the_server_stops_is_dropped(world: FakeWorld) -> None:
    spec = FaultSpec(slow_rate=1.0, slow_seconds=60)
    simulator = serve_in_thread(world, options=ServerOptions(faults=spec))
    slow = InFlight(simulator.url, CITIZENS.endpoint)
    try:
        until(lambda: simulator.server.faults.counts["slow"] == 1, "the slow request to arrive")
    finally:
        started = time.monotonic()
        simulator.stop()
    assert time.monotonic() - started < 5
    assert isinstance(slow.join().error, httpx.RemoteProtocolError)


# --- answers ---------------------------------------------------------------------------------------------------

class BrokenWorld(FakeWorld):
    def page(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the registry's database went away")


def test_a_failure_inside_the_simulator_is_a_json_500_logged_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with serve_in_thread(BrokenWorld()) as simulator, httpx.Client(base_url=simulator.url) as http:
        response = http.get(CITIZENS.endpoint)
        assert http.get(HEALTH_PATH).status_code == 200  # the same connection goes on
    assert (response.status_code, response.json()["error"]) == (500, "internal")
    assert [(r.name, r.levelname) for r in caplog.records] == [("kho.simulator.server", "ERROR")]
    assert caplog.records[0].exc_info is not None and "went away" in caplog.text


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", CITIZENS.endpoint, 200), ("GET", HEALTH_PATH, 200), ("GET", CITIZENS.endpoint + "?page_size=0", 400),
    ("POST", TOKEN_PATH, 400), ("GET", "/nowhere", 404), ("DELETE", HEALTH_PATH, 405),
])
def test_every_answer_is_utf8_json_with_its_length_never_cached(world: FakeWorld, method: str, path: str,
                                                                 status: int) -> None:
    with serve_in_thread(world) as simulator, httpx.Client(base_url=simulator.url) as http:
        response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.headers["Content-Length"] == str(len(response.content))
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Server"].startswith("kho-simulator/") and "Date" in response.headers
    assert isinstance(json.loads(response.content), dict)


@pytest.mark.parametrize(("path", "allow"), [(CITIZENS.endpoint, "GET"), (HEALTH_PATH, "GET"), (TOKEN_PATH, "POST")])
def test_head_is_refused_with_405_and_no_body(world: FakeWorld, path: str, allow: str) -> None:
    with serve_in_thread(world) as simulator, httpx.Client(base_url=simulator.url) as http:
        response = http.head(path)
    assert (response.status_code, response.headers["Allow"], response.content) == (405, allow, b"")


def test_a_body_said_to_be_over_64_kib_gets_413_before_it_is_sent_and_the_connection_closes(
        world: FakeWorld) -> None:
    with serve_in_thread(world) as simulator:
        answer = exchange(simulator, f"POST {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n"
                                     "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nconnection: close" in head.lower()
    assert json.loads(body)["error"] == "body_too_large"


def test_a_chunked_body_over_64_kib_gets_413(world: FakeWorld) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"grant_type=client_credentials&scope=" + b"x" * 40_000
        yield b"y" * 40_000

    with serve_in_thread(world) as simulator, httpx.Client(base_url=simulator.url) as http:
        response = http.post(TOKEN_PATH, content=chunks(), auth=(CLIENT.client_id, CLIENT.client_secret),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")


def test_small_answers_on_a_kept_alive_connection_are_not_held_back_for_delayed_acks(world: FakeWorld) -> None:
    """Without TCP_NODELAY each answer (headers, then body) would wait ~40 ms for the client's delayed ACK."""
    with serve_in_thread(world) as simulator, httpx.Client(base_url=simulator.url) as http:
        http.get(HEALTH_PATH)
        started = time.monotonic()
        for _ in range(50):
            http.get(THINGS.endpoint, params={"page_size": 1})
        assert time.monotonic() - started < 1.0


# --- start and stop --------------------------------------------------------------------------------------------

def test_stop_ends_the_serving_thread_closes_every_connection_and_frees_the_port(world: FakeWorld) -> None:
    before = set(threading.enumerate())
    with serve_in_thread(world) as simulator, socket.create_connection(("127.0.0.1", simulator.port)) as idle:
        with httpx.Client(base_url=simulator.url) as http:
            assert http.get(HEALTH_PATH).status_code == 200
        simulator.stop()
        assert set(threading.enumerate()) <= before
        idle.settimeout(5)
        assert idle.recv(1) == b""  # a kept-open connection is closed by the server, not left behind
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", simulator.port), timeout=5).close()
        with serve_in_thread(world, "127.0.0.1", simulator.port) as again:
            assert httpx.get(again.url + HEALTH_PATH).status_code == 200


def test_a_port_the_test_harness_reserved_is_served() -> None:
    port = free_port()
    with serve_in_thread(FakeWorld(), "127.0.0.1", port) as simulator:
        assert simulator.url == f"http://127.0.0.1:{port}"
        assert httpx.get(simulator.url + HEALTH_PATH).json()["status"] == "ok"


# --- kho simulate serve ----------------------------------------------------------------------------------------

def kho(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KHO_")}
    return subprocess.Popen([sys.executable, "-m", "kho.cli", *args], env={**env, "KHO_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kho_simulate_serve_serves_behind_oauth_until_ctrl_c_then_exits_cleanly(tmp_path: Path) -> None:
    process = kho(tmp_path, "simulate", "serve", "--port", "0", "--citizens", "200", "--seed", "5")
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = first.split(" on ", 1)[1].split()[0]
        secrets = json.loads((tmp_path / "secrets" / "registry_client.json").read_text())
        with httpx.Client(base_url=url, timeout=10) as http:
            counts = {e["endpoint"]: e["count"] for e in http.get(HEALTH_PATH).json()["entities"]}
            assert http.get(CITIZENS.endpoint).status_code == 401
            token = http.post(TOKEN_PATH, data={"grant_type": "client_credentials"},
                              auth=(secrets["client_id"], secrets["client_secret"])).json()["access_token"]
            page = http.get(CITIZENS.endpoint, params={"page_size": 50},
                            headers={"Authorization": f"Bearer {token}"}).json()
        assert len(page["data"]) == 50 and counts[CITIZENS.endpoint] >= 200
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (0, "")


def test_kho_simulate_serve_on_a_taken_port_fails_in_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        process = kho(tmp_path, "simulate", "serve", "--port", str(taken.getsockname()[1]), "--citizens", "50")
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert len(err.splitlines()) == 1 and "KHO_SIM_PORT" in err
