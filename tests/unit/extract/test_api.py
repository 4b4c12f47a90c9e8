"""kho's registry client against the simulator over real HTTP: tokens fetched, reused and refreshed without the
caller noticing, rate limits waited out once, failures raised as ExtractError that say what happened."""

from __future__ import annotations

import httpx
import pytest

from kho.config import RegistryConnection, RegistryCredentials
from kho.errors import ExtractError
from kho.extract.api import ApiSource, ClientCredentialsAuth, RetryPolicy, iter_pages, retry_after_seconds
from kho.extract.block import Block
from kho.simulator.faults import FaultSpec
from kho.simulator.server import RunningSimulator, ServerOptions, serve_in_thread
from kho.sources.population import CITIZENS
from tests.unit.simulator.fakes import CLIENT, THINGS, FakeWorld, ManualClock


def rows(blocks: list[Block]) -> list[dict[str, str | None]]:
    assert not any(block.defects for block in blocks)
    return [row for block in blocks for row in block.table.to_pylist()]


def test_a_sync_fetches_one_token_and_pages_every_record(running: RunningSimulator, world: FakeWorld) -> None:
    source = ApiSource(running.url, page_size=13, credentials=CLIENT)
    assert rows(list(iter_pages(source, THINGS))) == world.snapshot(THINGS)
    assert running.server.issuer.issued == 1


def test_an_expired_token_is_refreshed_transparently_in_the_middle_of_a_sync(
        running: RunningSimulator, world: FakeWorld, clock: ManualClock) -> None:
    pages = iter_pages(ApiSource(running.url, page_size=50, credentials=CLIENT), CITIZENS)
    tables = [next(pages)]
    clock.advance(301)  # the server's clock: the client's token is now expired, the client does not know yet
    tables += list(pages)
    assert rows(tables) == world.snapshot(CITIZENS)
    assert running.server.issuer.issued == 2


def test_a_token_about_to_expire_is_renewed_before_it_is_sent(running: RunningSimulator, clock: ManualClock) -> None:
    statuses: list[int] = []
    auth = ClientCredentialsAuth(running.url + "/oauth/token", CLIENT, clock=clock)
    hooks = {"response": [lambda response: statuses.append(response.status_code)]}
    with httpx.Client(base_url=running.url, auth=auth, event_hooks=hooks) as http:
        assert http.get(CITIZENS.endpoint).status_code == 200
        clock.advance(280)  # inside the last tenth of the 300 s lifetime: renew now, on both sides' clocks
        assert http.get(CITIZENS.endpoint).status_code == 200
    assert statuses == [200, 200, 200, 200]  # token, page, token, page: no 401 on the way
    assert auth.fetched == 2


def test_wrong_credentials_fail_the_sync_saying_which_settings_to_check(running: RunningSimulator) -> None:
    source = ApiSource(running.url, credentials=RegistryCredentials("kho-test", "wrong"))
    with pytest.raises(ExtractError, match="401 invalid_client") as caught:
        list(iter_pages(source, CITIZENS))
    assert "Check KHO_REGISTRY_POPULATION_CLIENT_ID and KHO_REGISTRY_POPULATION_CLIENT_SECRET." in str(caught.value)


def test_a_refused_client_is_traced_to_the_settings_it_came_from(running: RunningSimulator) -> None:
    connection = RegistryConnection("population", running.url, running.url + "/oauth/token",
                                    RegistryCredentials("kho-test", "wrong"), credentials_from="the vault's file")
    with pytest.raises(ExtractError, match=r"401 invalid_client.*Check the vault's file\."):
        list(iter_pages(ApiSource.of(connection, page_size=10), CITIZENS))


def test_the_connection_s_timeout_bounds_each_request(world: FakeWorld) -> None:
    slow = ServerOptions(faults=FaultSpec(slow_rate=1.0, slow_seconds=2.0))
    with serve_in_thread(world, options=slow) as simulator:
        connection = RegistryConnection("civil_status", simulator.url, simulator.url + "/oauth/token", CLIENT,
                                        timeout_s=0.2)
        source = ApiSource.of(connection, page_size=10, retry=NO_WAIT)
        with pytest.raises(ExtractError, match=r"gave up after 3 attempt\(s\).*ReadTimeout"):
            list(iter_pages(source, THINGS))


def test_a_client_without_credentials_is_told_the_registry_needs_them(running: RunningSimulator) -> None:
    with pytest.raises(ExtractError, match="401") as caught:
        list(iter_pages(ApiSource(running.url), CITIZENS))
    assert "credentials" in str(caught.value)


def test_a_client_with_credentials_also_reads_an_open_registry(world: FakeWorld) -> None:
    with serve_in_thread(world) as simulator:
        assert rows(list(iter_pages(ApiSource(simulator.url, credentials=CLIENT), THINGS))) == world.snapshot(THINGS)


def test_a_rate_limit_is_waited_out_as_retry_after_says(world: FakeWorld, clock: ManualClock) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    options = ServerOptions(credentials=CLIENT, rate_per_s=1, burst=2, clock=clock)
    with serve_in_thread(world, options=options) as simulator:
        source = ApiSource(simulator.url, page_size=40, credentials=CLIENT, retry=RetryPolicy(sleep=sleep))
        assert rows(list(iter_pages(source, THINGS))) == world.snapshot(THINGS)
    assert waits == [1.0, 1.0, 1.0]  # 5 pages, a burst of 2: the other 3 each waited one Retry-After


NO_WAIT = RetryPolicy(max_attempts=3, sleep=lambda _: None)


def test_a_rate_limit_that_never_lifts_fails_after_the_attempt_budget(world: FakeWorld, clock: ManualClock) -> None:
    options = ServerOptions(credentials=CLIENT, rate_per_s=1, burst=1, clock=clock)
    with serve_in_thread(world, options=options) as simulator:
        source = ApiSource(simulator.url, page_size=40, credentials=CLIENT, retry=NO_WAIT)
        with pytest.raises(ExtractError, match=r"gave up after 3 attempt\(s\).*answered 429"):
            list(iter_pages(source, THINGS))


def test_a_connection_dropped_on_every_attempt_fails_naming_registry_entity_url_and_error(world: FakeWorld) -> None:
    with serve_in_thread(world, options=ServerOptions(faults=FaultSpec(drop_rate=1.0))) as simulator, \
            pytest.raises(ExtractError, match="RemoteProtocolError") as caught:
        list(iter_pages(ApiSource(simulator.url, retry=NO_WAIT), CITIZENS))
    message = str(caught.value)
    assert "registry population, entity citizens" in message
    assert f"{simulator.url}/population/v1/citizens" in message


def test_a_server_error_on_every_attempt_fails_with_its_status(world: FakeWorld) -> None:
    with serve_in_thread(world, options=ServerOptions(faults=FaultSpec(error_rate=1.0, seed=3))) as simulator, \
            pytest.raises(ExtractError, match=r"answered 50[023]: an injected fault"):
        list(iter_pages(ApiSource(simulator.url, retry=NO_WAIT), CITIZENS))


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("soon", None), ("", None),
                                                 ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_is_read_as_seconds_or_an_http_date(header: str, seconds: float | None) -> None:
    response = httpx.Response(429, headers={"Retry-After": header} if header else {})
    assert retry_after_seconds(response) == seconds
