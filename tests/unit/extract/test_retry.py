"""The retry policy against the simulator's real faults: 5xx, 429 and dropped connections are retried with
capped exponential backoff and full jitter, Retry-After wins, and the attempt budget and deadline bound it all.
Sleep, clock and jitter are injected, so nothing here waits."""

from __future__ import annotations

import datetime as dt
import logging
from typing import NoReturn

import httpx
import pytest

from kho.config import registry_prefix
from kho.errors import ExtractError, RegistryUnreachable
from kho.extract.api import ApiSource, RetryPolicy, iter_pages, retry_after_seconds
from kho.simulator.faults import FaultSpec
from kho.simulator.server import ServerOptions, serve_in_thread
from tests.unit.simulator.fakes import THINGS, FakeWorld, ManualClock


class Sleeps:
    """Records each wait and moves a manual clock by it, as a real sleep would."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock or ManualClock()

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def highest(lo: float, hi: float) -> float:
    return hi


def policy(sleeps: Sleeps, **overrides: object) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps, clock=sleeps.clock, jitter=highest, **overrides)  # type: ignore[arg-type]


def all_rows(source: ApiSource) -> list[dict[str, str | None]]:
    return [row for page in iter_pages(source, THINGS) for row in page.table.to_pylist()]


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    retry = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0, jitter=highest)
    assert [retry.backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_full_jitter_draws_between_zero_and_the_cap() -> None:
    draws: list[tuple[float, float]] = []

    def jitter(lo: float, hi: float) -> float:
        draws.append((lo, hi))
        return (lo + hi) / 2

    assert RetryPolicy(base_delay_s=1.0, jitter=jitter).backoff(2) == 2.0
    assert draws == [(0.0, 4.0)]


def test_retry_after_wins_over_the_backoff_and_is_capped() -> None:
    retry = RetryPolicy(max_wait_s=10.0, jitter=highest)
    assert retry.delay(httpx.Response(503, headers={"Retry-After": "3"}), 5) == 3.0
    assert retry.delay(httpx.Response(429, headers={"Retry-After": "3600"}), 0) == 10.0
    assert retry.delay(httpx.Response(502), 1) == 1.0  # no header: the backoff, 0.5 s doubled once


def test_a_retry_after_http_date_is_read_against_the_injected_now() -> None:
    now = dt.datetime(2015, 10, 21, 7, 27, 50, tzinfo=dt.UTC)
    response = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after_seconds(response, now=lambda: now) == 10.0
    assert RetryPolicy(now=lambda: now).delay(response, 0) == 10.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_client_error_is_not_retried(status: int) -> None:
    assert RetryPolicy().delay(httpx.Response(status), 0) is None


def test_a_transport_failure_backs_off() -> None:
    assert RetryPolicy(jitter=highest, base_delay_s=0.25).delay(None, 1) == 0.5


def test_server_errors_at_a_fifth_of_requests_still_read_every_record() -> None:
    world, sleeps = FakeWorld(), Sleeps()
    with serve_in_thread(world, options=ServerOptions(faults=FaultSpec(error_rate=0.2, seed=11))) as simulator:
        source = ApiSource(simulator.url, page_size=10, retry=policy(sleeps))
        assert all_rows(source) == world.snapshot(THINGS)
        injected = simulator.server.faults.counts["error"]
    assert injected > 0 and len(sleeps.waits) == injected


def test_a_dropped_connection_mid_paging_is_retried() -> None:
    world, sleeps = FakeWorld(), Sleeps()
    with serve_in_thread(world, options=ServerOptions(faults=FaultSpec(drop_rate=0.25, seed=5))) as simulator:
        source = ApiSource(simulator.url, page_size=10, retry=policy(sleeps))
        assert all_rows(source) == world.snapshot(THINGS)
        dropped = simulator.server.faults.counts["drop"]
    assert dropped > 0 and len(sleeps.waits) == dropped


def test_every_retry_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    sleeps = Sleeps()
    with serve_in_thread(FakeWorld(), options=ServerOptions(faults=FaultSpec(error_rate=0.5, seed=2))) as simulator:
        caplog.set_level(logging.WARNING, logger="kho.extract.api")
        all_rows(ApiSource(simulator.url, page_size=20, retry=policy(sleeps)))
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == len(sleeps.waits) > 0
    assert all("answered 50" in m and "civil_status" in m for m in retries)


def test_the_deadline_stops_retrying_before_the_attempt_budget() -> None:
    sleeps = Sleeps()
    with serve_in_thread(FakeWorld(), options=ServerOptions(faults=FaultSpec(error_rate=1.0))) as simulator:
        source = ApiSource(simulator.url, retry=policy(sleeps, max_attempts=100, base_delay_s=1.0, max_delay_s=8.0,
                                                        deadline_s=20.0))
        with pytest.raises(ExtractError, match=r"registry civil_status, entity things: GET .* gave up after 7 "
                                                r"attempt\(s\) in 20\.0 s"):
            all_rows(source)
    # The simulator (fault seed 0) answers 502, 503, 503, 500, 503, 500, 503. A 503 says Retry-After: 1; the others
    # wait the backoff of their retry (1, 2, 4, 8, 16, 32 s capped at 8). The 7th answer's 1 s would pass 20 s.
    assert sleeps.waits == [1.0, 1.0, 1.0, 8.0, 1.0, 8.0]


def test_a_rate_limit_waits_as_retry_after_says_and_completes() -> None:
    clock = ManualClock()
    sleeps = Sleeps(clock)
    world = FakeWorld()
    with serve_in_thread(world, options=ServerOptions(rate_per_s=1, burst=1, clock=clock)) as simulator:
        source = ApiSource(simulator.url, page_size=40, retry=policy(sleeps))
        assert all_rows(source) == world.snapshot(THINGS)
    assert sleeps.waits and all(w == 1.0 for w in sleeps.waits)


def test_retrying_runs_through_tenacity_with_the_policy_s_wait_and_budget() -> None:
    """The policy decides, tenacity drives: a transport failure twice, then an answer, waits the backoff twice."""
    sleeps = Sleeps()
    answers: list[object] = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(200)]
    retried: list[tuple[str, int, float]] = []

    def send() -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    def give_up(reason: str, attempts: int, elapsed: float) -> NoReturn:
        raise AssertionError(f"gave up: {reason}")

    response = policy(sleeps, base_delay_s=0.5).run(send, on_retry=lambda *a: retried.append(a), give_up=give_up)
    assert response.status_code == 200
    assert sleeps.waits == [0.5, 1.0]
    assert retried == [("ConnectError: refused", 1, 0.5), ("ReadTimeout: slow", 2, 1.0)]


def test_a_rate_limit_hint_spaces_requests_so_the_registry_never_answers_429() -> None:
    clock = ManualClock()
    sleeps = Sleeps(clock)
    world = FakeWorld()
    with serve_in_thread(world, options=ServerOptions(rate_per_s=2, burst=1, clock=clock)) as simulator:
        source = ApiSource(simulator.url, page_size=40, retry=policy(sleeps), rate_limit_per_s=2)
        assert all_rows(source) == world.snapshot(THINGS)
    pages = -(-world.count(THINGS) // 40)
    assert sleeps.waits == [0.5] * (pages - 1)  # paced; a 429 would have added its Retry-After wait


def _closed_port() -> int:
    """A port nothing listens on: bound, then closed (the kernel refuses connections to it)."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_retried_by_default_as_a_passing_fault() -> None:
    sleeps = Sleeps()
    source = ApiSource(f"http://127.0.0.1:{_closed_port()}", retry=policy(sleeps, max_attempts=3))
    with pytest.raises(ExtractError, match=r"gave up after 3 attempt\(s\).*ConnectError"):
        list(iter_pages(source, THINGS))
    assert len(sleeps.waits) == 2


def test_a_refused_connection_fails_at_once_when_the_policy_says_so_naming_the_url_and_how_to_start_it() -> None:
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{_closed_port()}"
    source = ApiSource(url, retry=policy(sleeps, retry_refused=False))
    with pytest.raises(RegistryUnreachable) as caught:
        list(iter_pages(source, THINGS))
    message = str(caught.value)
    assert sleeps.waits == []
    assert f"nothing answers at {url} (connection refused)" in message and "\n" not in message
    assert "`kho simulate serve`" in message and "`kho up`" in message
    assert f"{registry_prefix(THINGS.registry)}BASE_URL" in message


def test_other_transport_failures_are_still_retried_when_refusals_are_not() -> None:
    sleeps = Sleeps()
    faults = FaultSpec(drop_rate=1.0, seed=3)
    with serve_in_thread(FakeWorld(), options=ServerOptions(faults=faults)) as simulator:
        source = ApiSource(simulator.url, retry=policy(sleeps, max_attempts=3, retry_refused=False))
        with pytest.raises(ExtractError, match=r"gave up after 3 attempt\(s\)"):
            list(iter_pages(source, THINGS))
    assert len(sleeps.waits) == 2
