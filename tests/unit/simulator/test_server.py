"""The simulated registries' HTTP API over real sockets on 127.0.0.1: OAuth2 client credentials, paging every
entity, rate limits, injected faults and errors. The world is a small fake (`fakes.FakeWorld`)."""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kho.config import RegistryCredentials
from kho.errors import ConfigError
from kho.simulator.faults import FaultSpec
from kho.simulator.server import (
    HEALTH_PATH,
    TOKEN_PATH,
    RunningSimulator,
    ServedWorld,
    ServerOptions,
    encode_cursor,
    serve_in_thread,
)
from kho.sources.population import CITIZENS
from tests.unit.simulator.fakes import CLIENT, THINGS, FakeWorld, ManualClock

Json = dict[str, Any]



@pytest.fixture
def http(running: RunningSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url, timeout=10) as client:
        yield client


def token(http: httpx.Client, credentials: RegistryCredentials = CLIENT) -> str:
    response = http.post(TOKEN_PATH, data={"grant_type": "client_credentials"},
                         auth=(credentials.client_id, credentials.client_secret))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def sync(http: httpx.Client, path: str, access: str, between_pages: Any = None, **params: str | int) -> list[Json]:
    """Follow next_cursor to the end, as the extractor does; `between_pages(n)` runs after page n."""
    records: list[Json] = []
    pages = 0
    while True:
        response = http.get(path, params=params, headers=bearer(access))
        assert response.status_code == 200, response.text
        body = response.json()
        records += body["data"]
        pages += 1
        if body["next_cursor"] is None:
            return records
        params["cursor"] = body["next_cursor"]
        if between_pages is not None:
            between_pages(pages)


def test_the_fake_world_speaks_the_served_world_protocol(world: FakeWorld) -> None:
    assert isinstance(world, ServedWorld)


# --- OAuth2 client credentials ---------------------------------------------------------------------------------

def test_the_token_endpoint_issues_an_expiring_bearer_token_to_the_configured_client(http: httpx.Client) -> None:
    response = http.post(TOKEN_PATH, data={"grant_type": "client_credentials"},
                         auth=(CLIENT.client_id, CLIENT.client_secret))
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 300)
    assert response.headers["Cache-Control"] == "no-store"


def test_the_client_may_authenticate_in_the_form_instead_of_http_basic(http: httpx.Client) -> None:
    response = http.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": CLIENT.client_id,
                                           "client_secret": CLIENT.client_secret})
    assert response.status_code == 200 and response.json()["access_token"]


def test_basic_credentials_are_form_encoded_before_base64_as_rfc_6749_says(http: httpx.Client) -> None:
    encoded = base64.b64encode(b"kho-test:s3cret%2B%2F%3D").decode()
    response = http.post(TOKEN_PATH, content=b"grant_type=client_credentials",
                         headers={"Authorization": f"Basic {encoded}",
                                  "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("credentials", [RegistryCredentials(CLIENT.client_id, "wrong"),
                                         RegistryCredentials("someone-else", CLIENT.client_secret)])
def test_wrong_client_credentials_get_401_invalid_client(http: httpx.Client, credentials: RegistryCredentials
                                                         ) -> None:
    response = http.post(TOKEN_PATH, data={"grant_type": "client_credentials"},
                         auth=(credentials.client_id, credentials.client_secret))
    body = response.json()
    assert (response.status_code, body["error"]) == (401, "invalid_client")
    assert body["error_description"] == body["message"] and "KHO_REGISTRY_CLIENT_ID" in body["message"]
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize(("request_kwargs", "status", "error"), [
    ({"data": {"grant_type": "password"}}, 400, "unsupported_grant_type"),
    ({"data": {"scope": "citizens"}}, 400, "invalid_request"),
    ({"data": {}}, 400, "invalid_request"),
    ({"json": {"grant_type": "client_credentials"}}, 400, "invalid_request"),
    ({"data": {"grant_type": "client_credentials", "client_id": "kho-test"}}, 400, "invalid_request"),
])
def test_malformed_token_requests_get_oauth_errors(http: httpx.Client, request_kwargs: Json, status: int,
                                                   error: str) -> None:
    response = http.post(TOKEN_PATH, auth=(CLIENT.client_id, CLIENT.client_secret), **request_kwargs)
    assert (response.status_code, response.json()["error"]) == (status, error)


def test_a_token_request_without_client_authentication_is_invalid_client(http: httpx.Client) -> None:
    response = http.post(TOKEN_PATH, data={"grant_type": "client_credentials"})
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_an_api_call_without_a_token_gets_401_with_a_bearer_challenge(http: httpx.Client) -> None:
    response = http.get(CITIZENS.endpoint)
    body = response.json()
    assert (response.status_code, body["error"]) == (401, "missing_token")
    assert TOKEN_PATH in body["message"]
    # RFC 6750 section 3.1: no error code when the request carried no credentials at all.
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="kho-simulator"'


@pytest.mark.parametrize("authorization", ["Bearer not-a-token-we-issued", "Bearer", "Basic a2hvOnRlc3Q="])
def test_an_unknown_token_or_another_scheme_gets_401(http: httpx.Client, authorization: str) -> None:
    response = http.get(CITIZENS.endpoint, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json()["error"] in {"invalid_token", "missing_token"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_a_token_works_until_its_ttl_has_passed_then_gets_invalid_token(http: httpx.Client, clock: ManualClock
                                                                        ) -> None:
    access = token(http)
    clock.advance(299.5)
    assert http.get(CITIZENS.endpoint, headers=bearer(access)).status_code == 200
    clock.advance(0.5)
    response = http.get(CITIZENS.endpoint, headers=bearer(access))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "expired" in response.json()["message"]
    assert http.get(CITIZENS.endpoint, headers=bearer(token(http))).status_code == 200


def test_the_token_ttl_is_configurable(world: FakeWorld, clock: ManualClock) -> None:
    options = ServerOptions(credentials=CLIENT, token_ttl_s=1, clock=clock)
    with serve_in_thread(world, options=options) as simulator, httpx.Client(base_url=simulator.url) as http:
        response = http.post(TOKEN_PATH, data={"grant_type": "client_credentials"},
                             auth=(CLIENT.client_id, CLIENT.client_secret))
        assert response.json()["expires_in"] == 1
        clock.advance(1)
        assert http.get(CITIZENS.endpoint, headers=bearer(response.json()["access_token"])).status_code == 401


def test_an_open_registry_serves_without_a_token_and_issues_tokens_to_anyone(world: FakeWorld) -> None:
    with serve_in_thread(world) as simulator, httpx.Client(base_url=simulator.url) as http:
        assert http.get(CITIZENS.endpoint).status_code == 200
        assert token(http, RegistryCredentials("anyone", "anything"))


def test_health_needs_no_token_and_lists_every_entity_with_its_count(http: httpx.Client) -> None:
    body = http.get(HEALTH_PATH).json()
    assert body == {"status": "ok", "day": 0, "entities": [
        {"registry": "population", "entity": "citizens", "endpoint": CITIZENS.endpoint, "count": 300},
        {"registry": "civil_status", "entity": "things", "endpoint": THINGS.endpoint, "count": 200},
    ]}


# --- paging ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entity", [CITIZENS, THINGS], ids=lambda e: e.name)
def test_paging_returns_every_record_of_every_entity_exactly_once_in_cursor_order(
        http: httpx.Client, world: FakeWorld, entity: Any) -> None:
    records = sync(http, entity.endpoint, token(http), page_size=7)
    assert records == world.snapshot(entity)
    assert len(records) == world.count(entity)


def test_a_page_holds_page_size_records_and_500_by_default(world: FakeWorld, clock: ManualClock) -> None:
    big = FakeWorld(citizens=1200)
    with serve_in_thread(big) as simulator, httpx.Client(base_url=simulator.url) as http:
        body = http.get(CITIZENS.endpoint).json()
        assert (body["page_size"], len(body["data"])) == (500, 500)
        body = http.get(CITIZENS.endpoint, params={"page_size": 1000}).json()
        assert len(body["data"]) == 1000 and body["next_cursor"] is not None


def test_updated_since_is_inclusive_and_understands_offsets(http: httpx.Client, world: FakeWorld) -> None:
    access = token(http)
    snapshot = world.snapshot(CITIZENS)
    since = str(snapshot[155]["updated_at"])
    assert sync(http, CITIZENS.endpoint, access, page_size=9, updated_since=since) == [
        r for r in snapshot if str(r["updated_at"]) >= since]
    in_utc = http.get(CITIZENS.endpoint, params={"updated_since": "2025-06-30T00:00:10Z"}, headers=bearer(access))
    in_hanoi = http.get(CITIZENS.endpoint, params={"updated_since": "2025-06-30T07:00:10+07:00"},
                        headers=bearer(access))
    assert in_utc.json()["data"] == in_hanoi.json()["data"] != []


def test_records_changed_while_a_client_pages_are_seen_once_per_version_and_none_is_missed(
        http: httpx.Client, world: FakeWorld) -> None:
    """Every record arrives; an unchanged one exactly once; a changed one again in its new state, at the end."""
    changed: set[str] = set()

    def change_some(page: int) -> None:
        if page <= 4:
            before = {r["cccd"]: r["updated_at"] for r in world.snapshot(CITIZENS)}
            world.update(CITIZENS, every=9, offset=page)
            changed.update(c for c, u in ((r["cccd"], r["updated_at"]) for r in world.snapshot(CITIZENS))
                           if u != before[c])

    records = sync(http, CITIZENS.endpoint, token(http), change_some, page_size=20)
    versions = Counter((r["cccd"], r["updated_at"]) for r in records)
    assert max(versions.values()) == 1  # no version twice
    seen = Counter(r["cccd"] for r in records)
    assert set(seen) == {r["cccd"] for r in world.snapshot(CITIZENS)}  # no record missed
    assert all(n == 1 for c, n in seen.items() if c not in changed)
    assert any(n > 1 for n in seen.values())  # the test did change records a client had already read
    latest = {r["cccd"]: r for r in records}  # later pages hold later versions
    assert sorted(latest.values(), key=lambda r: r["cccd"]) == sorted(world.snapshot(CITIZENS),
                                                                      key=lambda r: str(r["cccd"]))


def test_a_cursor_of_one_entity_is_refused_by_another(http: httpx.Client) -> None:
    access = token(http)
    cursor = http.get(THINGS.endpoint, params={"page_size": 5}, headers=bearer(access)).json()["next_cursor"]
    response = http.get(CITIZENS.endpoint, params={"cursor": cursor}, headers=bearer(access))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_cursor")
    assert CITIZENS.endpoint in response.json()["message"]


@pytest.mark.parametrize(("params", "error", "names"), [
    ({"page_size": 0}, "invalid_page_size", "page_size"),
    ({"page_size": 1001}, "invalid_page_size", "1000"),
    ({"page_size": "ten"}, "invalid_page_size", "page_size"),
    ({"page_size": "1.5"}, "invalid_page_size", "page_size"),
    ({"updated_since": "yesterday"}, "invalid_updated_since", "ISO 8601"),
    ({"updated_since": ""}, "invalid_updated_since", "updated_since"),
    ({"updated_since": "2025-01-01T07:00:00 07:00"}, "invalid_updated_since", "%2B"),
    ({"cursor": "not-a-cursor"}, "invalid_cursor", "next_cursor"),
    ({"cursor": encode_cursor(CITIZENS, ["yesterday", "074"])}, "invalid_cursor", "cursor"),
    ({"cursor": encode_cursor(CITIZENS, ["2025-06-30T00:00:00Z", "074", "extra"])}, "invalid_cursor", "cursor"),
    ({"updatedSince": "2025-01-01"}, "unknown_parameter", "updated_since"),
])
def test_bad_parameters_get_400_with_a_json_error(http: httpx.Client, params: Json, error: str, names: str) -> None:
    response = http.get(CITIZENS.endpoint, params=params, headers=bearer(token(http)))
    assert (response.status_code, response.json()["error"]) == (400, error)
    assert names in response.json()["message"]
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_json_is_utf8_with_vietnamese_unescaped(http: httpx.Client) -> None:
    response = http.get(CITIZENS.endpoint, headers=bearer(token(http)))
    assert "Nguyễn".encode() in response.content and b"\\u" not in response.content


def test_an_unknown_path_gets_404_naming_the_known_ones(http: httpx.Client) -> None:
    response = http.get("/population/v2/citizens")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert all(path in response.json()["message"] for path in (CITIZENS.endpoint, THINGS.endpoint, TOKEN_PATH))


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", CITIZENS.endpoint, "GET"), ("DELETE", CITIZENS.endpoint, "GET"), ("GET", TOKEN_PATH, "POST"),
    ("PUT", TOKEN_PATH, "POST"),
])
def test_other_methods_get_405_with_allow(http: httpx.Client, method: str, path: str, allow: str) -> None:
    response = http.request(method, path)
    assert (response.status_code, response.json()["error"]) == (405, "method_not_allowed")
    assert response.headers["Allow"] == allow


def test_requests_write_nothing_to_stderr(http: httpx.Client, capfd: pytest.CaptureFixture[str]) -> None:
    http.get(HEALTH_PATH)
    http.get("/nowhere")
    http.get(CITIZENS.endpoint)
    assert capfd.readouterr() == ("", "")


def test_a_taken_port_is_a_config_error(running: RunningSimulator) -> None:
    with pytest.raises(ConfigError, match="KHO_SIM_PORT"):
        serve_in_thread(FakeWorld(), "127.0.0.1", running.port)


@pytest.fixture(scope="module")
def real_world() -> Any:
    from kho.simulator.generate import WorldSpec
    from kho.simulator.world import World

    return World.build(WorldSpec(seed=11, citizens=400, days=2))


def test_the_generated_world_speaks_the_served_world_protocol(real_world: Any) -> None:
    assert isinstance(real_world, ServedWorld)


def test_every_entity_of_the_generated_world_pages_to_its_count(real_world: Any) -> None:
    options = ServerOptions(credentials=CLIENT)
    with serve_in_thread(real_world, options=options) as simulator, httpx.Client(base_url=simulator.url) as http:
        access = token(http)
        counts = {e["endpoint"]: e["count"] for e in http.get(HEALTH_PATH).json()["entities"]}
        assert set(counts) == {e.endpoint for e in real_world.entities}
        for entity in real_world.entities:
            records = sync(http, entity.endpoint, access, page_size=97)
            assert len(records) == counts[entity.endpoint] == real_world.count(entity), entity.qualified_name
            assert records == real_world.snapshot(entity)


def test_a_generated_world_advancing_while_a_client_pages_loses_no_record() -> None:
    """The real thing: day feeds published between pages; every record's final version is read, none twice."""
    from kho.simulator.generate import WorldSpec
    from kho.simulator.world import World

    world = World.build(WorldSpec(seed=12, citizens=3000, days=3))
    with serve_in_thread(world) as simulator, httpx.Client(base_url=simulator.url) as http:
        # Half the records are read before day 1 is published, the rest while days 1..3 arrive.
        records = sync(http, CITIZENS.endpoint, "unused",
                       lambda page: world.advance(page - 4) if 5 <= page <= 7 else None, page_size=300)
    assert world.day == 3
    assert max(Counter((r["cccd"], r["updated_at"]) for r in records).values()) == 1
    latest = {r["cccd"]: r for r in records}
    assert sorted(latest.values(), key=lambda r: r["cccd"]) == sorted(world.snapshot(CITIZENS),
                                                                      key=lambda r: str(r["cccd"]))
    assert len(records) > len(latest)  # the feeds changed records this client had already read


# --- rate limit --------------------------------------------------------------------------------------------------

def test_a_client_over_its_rate_gets_429_with_retry_after_then_is_served_after_waiting(
        world: FakeWorld, clock: ManualClock) -> None:
    options = ServerOptions(credentials=CLIENT, rate_per_s=2, burst=3, clock=clock)
    with serve_in_thread(world, options=options) as simulator, httpx.Client(base_url=simulator.url) as http:
        headers = bearer(token(http))
        assert [http.get(CITIZENS.endpoint, headers=headers).status_code for _ in range(3)] == [200] * 3
        refused = http.get(CITIZENS.endpoint, headers=headers)
        assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")
        assert refused.headers["Retry-After"] == "1"
        assert "2 requests per second" in refused.json()["message"]
        clock.advance(0.4)
        assert http.get(CITIZENS.endpoint, headers=headers).status_code == 429  # 0.8 of a request refilled
        clock.advance(0.1)
        assert http.get(CITIZENS.endpoint, headers=headers).status_code == 200
        assert http.get(HEALTH_PATH).status_code == 200  # health is not throttled


def test_the_token_bucket_refills_to_its_burst_and_no_further(world: FakeWorld, clock: ManualClock) -> None:
    options = ServerOptions(rate_per_s=10, burst=5, clock=clock)
    with serve_in_thread(world, options=options) as simulator, httpx.Client(base_url=simulator.url) as http:
        clock.advance(60)
        statuses = [http.get(THINGS.endpoint, params={"page_size": 1}).status_code for _ in range(7)]
        assert statuses == [200] * 5 + [429] * 2


# --- faults ------------------------------------------------------------------------------------------------------

def fault_run(world: FakeWorld, spec: FaultSpec, n: int) -> list[int]:
    with serve_in_thread(world, options=ServerOptions(faults=spec)) as simulator, \
            httpx.Client(base_url=simulator.url) as http:
        return [http.get(THINGS.endpoint, params={"page_size": 1}).status_code for _ in range(n)]


def test_errors_are_injected_at_the_configured_rate_and_the_same_seed_repeats_them(world: FakeWorld) -> None:
    statuses = fault_run(world, FaultSpec(error_rate=0.2, seed=5), 500)
    failed = [s for s in statuses if s != 200]
    assert 70 <= len(failed) <= 130  # 100 expected; 3 standard deviations is ±27
    assert set(failed) == {500, 502, 503}
    assert fault_run(world, FaultSpec(error_rate=0.2, seed=5), 500) == statuses
    assert fault_run(world, FaultSpec(error_rate=0.2, seed=6), 500) != statuses


def test_an_injected_error_is_json_and_a_503_says_when_to_retry(world: FakeWorld) -> None:
    with serve_in_thread(world, options=ServerOptions(faults=FaultSpec(error_rate=1.0, seed=1))) as simulator, \
            httpx.Client(base_url=simulator.url) as http:
        responses = [http.get(CITIZENS.endpoint) for _ in range(30)]
        assert all(r.json()["error"] == "injected_fault" for r in responses)
        assert all(r.headers.get("Retry-After") == "1" for r in responses if r.status_code == 503)
        assert http.get(HEALTH_PATH).status_code == 200  # health is never faulted
        assert simulator.server.faults.counts["error"] == 30


def test_a_slow_response_arrives_complete_after_the_configured_delay(world: FakeWorld) -> None:
    spec = FaultSpec(slow_rate=1.0, slow_seconds=0.2)
    with serve_in_thread(world, options=ServerOptions(faults=spec)) as simulator, \
            httpx.Client(base_url=simulator.url) as http:
        started = time.monotonic()
        response = http.get(CITIZENS.endpoint, params={"page_size": 3})
        assert time.monotonic() - started >= 0.2
        assert response.status_code == 200 and len(response.json()["data"]) == 3


def test_a_dropped_connection_is_seen_by_the_client_as_a_connection_error(world: FakeWorld) -> None:
    with serve_in_thread(world, options=ServerOptions(faults=FaultSpec(drop_rate=1.0))) as simulator, \
            httpx.Client(base_url=simulator.url) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(CITIZENS.endpoint)


def test_fault_rates_that_cannot_all_happen_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        FaultSpec(error_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError, match="error_rate"):
        FaultSpec(error_rate=1.5)
