"""The simulator's HTTP API over real sockets on 127.0.0.1: paging, filters, concurrent changes, errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from kho.errors import ConfigError
from kho.simulator import CITIZENS_PATH, RunningSimulator, World, encode_cursor, serve_in_thread

Json = dict[str, Any]


@pytest.fixture(scope="module")
def running() -> Iterator[RunningSimulator]:
    """One read-only simulator for the module; tests that change records start their own."""
    with serve_in_thread(World.generate(9, 2000, defect_rate=0.05)) as simulator:
        yield simulator


def get(base: str, path: str, **params: str | int) -> tuple[int, Json, bytes, str]:
    """GET → (status, JSON body, raw bytes, content type), for error statuses too."""
    url = f"{base}{path}" + (f"?{urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            raw, status, ctype = response.read(), response.status, response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        raw, status, ctype = exc.read(), exc.code, exc.headers["Content-Type"]
    return status, json.loads(raw.decode("utf-8")), raw, ctype


def sync(base: str, between_pages: Any = None, **params: str | int) -> list[Json]:
    """Follow next_cursor to the end, as the extractor does; `between_pages(n)` runs after page n."""
    records: list[Json] = []
    pages = 0
    while True:
        status, body, _, _ = get(base, CITIZENS_PATH, **params)
        assert status == 200, body
        records += body["data"]
        pages += 1
        if body["next_cursor"] is None:
            return records
        params["cursor"] = body["next_cursor"]
        if between_pages is not None:
            between_pages(pages)


def test_paging_returns_every_record_exactly_once(running: RunningSimulator) -> None:
    records = sync(running.url, page_size=137)
    assert records == running.world.snapshot()
    assert len({r["cccd"] for r in records}) == len(running.world) == 2000


def test_a_page_holds_page_size_records_and_500_by_default(running: RunningSimulator) -> None:
    status, body, _, _ = get(running.url, CITIZENS_PATH)
    assert (status, body["page_size"], len(body["data"])) == (200, 500, 500)
    _, body, _, _ = get(running.url, CITIZENS_PATH, page_size=1000)
    assert len(body["data"]) == 1000 and body["next_cursor"] is not None


def test_updated_since_returns_only_records_changed_at_or_after_it(running: RunningSimulator) -> None:
    snapshot = running.world.snapshot()
    since = str(snapshot[1500]["updated_at"])
    records = sync(running.url, page_size=137, updated_since=since)
    assert records == [r for r in snapshot if str(r["updated_at"]) >= since]
    assert records[0]["updated_at"] == since


def test_updated_since_with_an_offset_or_as_a_date_means_the_same_instant(running: RunningSimulator) -> None:
    _, in_utc, _, _ = get(running.url, CITIZENS_PATH, updated_since="2025-01-01T00:00:00Z")
    _, in_hanoi, _, _ = get(running.url, CITIZENS_PATH, updated_since="2025-01-01T07:00:00+07:00")
    _, bare_date, _, _ = get(running.url, CITIZENS_PATH, updated_since="2025-01-01")
    assert in_utc["data"] == in_hanoi["data"] == bare_date["data"] and in_utc["data"]


def test_json_is_utf8_with_vietnamese_unescaped(running: RunningSimulator) -> None:
    _, body, raw, ctype = get(running.url, CITIZENS_PATH, page_size=1000)
    assert ctype == "application/json; charset=utf-8"
    assert "Nguyễn".encode() in raw and b"\\u" not in raw
    assert all(r["full_name"] is None or isinstance(r["full_name"], str) for r in body["data"])


def test_records_changed_during_paging_are_seen_again_in_their_final_state() -> None:
    world = World.generate(21, 1500, defect_rate=0.05)
    with serve_in_thread(world) as simulator:
        records = sync(simulator.url, lambda page: world.touch(40) if page <= 5 else None, page_size=137)
    latest = {r["cccd"]: r for r in records}  # later pages hold later versions
    assert len(records) > len(latest) == len(world)  # changed records came twice, every record at least once
    assert sorted(latest.values(), key=lambda r: r["cccd"]) == sorted(world.snapshot(), key=lambda r: str(r["cccd"]))


def test_a_sync_from_the_last_watermark_returns_the_changed_records() -> None:
    world = World.generate(22, 1000)
    with serve_in_thread(world) as simulator:
        watermark = max(r["updated_at"] for r in sync(simulator.url, page_size=500))
        changed = world.touch(25)
        records = sync(simulator.url, page_size=10, updated_since=watermark)
    assert records[-25:] == sorted(changed, key=lambda r: (str(r["updated_at"]), str(r["cccd"])))
    assert all(r["updated_at"] == watermark for r in records[:-25])  # the inclusive bound re-sends that second


@pytest.mark.parametrize(("params", "error", "names"), [
    ({"page_size": 0}, "invalid_page_size", "page_size"),
    ({"page_size": 1001}, "invalid_page_size", "1000"),
    ({"page_size": "ten"}, "invalid_page_size", "page_size"),
    ({"page_size": "1.5"}, "invalid_page_size", "page_size"),
    ({"updated_since": "yesterday"}, "invalid_updated_since", "ISO 8601"),
    ({"updated_since": ""}, "invalid_updated_since", "updated_since"),
    ({"updated_since": "2025-01-01T07:00:00 07:00"}, "invalid_updated_since", "%2B"),
    ({"cursor": "not-a-cursor"}, "invalid_cursor", "next_cursor"),
    ({"cursor": encode_cursor("yesterday", "074")}, "invalid_cursor", "cursor"),
    ({"updatedSince": "2025-01-01"}, "unknown_parameter", "updated_since"),
])
def test_bad_parameters_get_400_with_a_json_error(running: RunningSimulator, params: dict[str, str | int],
                                                  error: str, names: str) -> None:
    status, body, _, ctype = get(running.url, CITIZENS_PATH, **params)
    assert (status, body["error"]) == (400, error)
    assert names in body["message"]
    assert ctype == "application/json; charset=utf-8"


def test_an_unknown_path_gets_404_naming_the_known_ones(running: RunningSimulator) -> None:
    status, body, _, _ = get(running.url, "/population/v2/citizens")
    assert (status, body["error"]) == (404, "not_found")
    assert CITIZENS_PATH in body["message"]


def test_other_methods_get_405(running: RunningSimulator) -> None:
    request = urllib.request.Request(running.url + CITIZENS_PATH, method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 405
    assert json.loads(caught.value.read())["error"] == "method_not_allowed"


def test_health_reports_the_number_of_citizens(running: RunningSimulator) -> None:
    assert get(running.url, "/health")[:2] == (200, {"status": "ok", "citizens": 2000})


def test_requests_write_nothing_to_stderr(running: RunningSimulator, capfd: pytest.CaptureFixture[str]) -> None:
    get(running.url, "/health")
    get(running.url, "/nowhere")
    assert capfd.readouterr() == ("", "")


def test_a_taken_port_is_a_config_error(running: RunningSimulator) -> None:
    with pytest.raises(ConfigError, match="KHO_SIM_PORT"):
        serve_in_thread(World([]), "127.0.0.1", running.port)
