"""The population registry simulator's HTTP API (stdlib only), serving a `World`.

HTTP contract
=============

All responses are JSON, `Content-Type: application/json; charset=utf-8`, UTF-8 with Vietnamese text unescaped.
HTTP/1.1 with keep-alive; only GET is served (other methods: 405).

``GET /population/v1/citizens``
-------------------------------
Query parameters (each at most once; any other parameter is a 400):

- ``updated_since`` -- ISO 8601 instant, e.g. ``2024-06-01T00:00:00Z``, ``2024-06-01T07:00:00+07:00`` (URL-encode
  ``+`` as ``%2B``) or a bare date ``2024-06-01``. Without an offset it is taken as UTC. Inclusive: records with
  ``updated_at >= updated_since``. Omit it to read from the beginning.
- ``page_size`` -- integer 1..1000, default 500.
- ``cursor`` -- opaque; the ``next_cursor`` of the previous page, passed back unchanged (with the same
  ``updated_since``). Omit it for the first page.

200 response::

    {"data": [<citizen>, ...], "next_cursor": "<opaque>" | null, "page_size": <n>}

A citizen is the wire form of ``kho.sources.population.CITIZENS``: the contract's field names, every value a
string (or null when the registry lost it): ``cccd``, ``full_name`` (NFC), ``date_of_birth`` (``YYYY-MM-DD``),
``sex`` (``M``/``F``), ``birth_province_code``, ``permanent_commune_code``, ``status`` (``alive``/``deceased``),
``updated_at`` (``YYYY-MM-DDTHH:MM:SSZ``). Some records may be defective on purpose (see ``generate.py``).

Records come in ``(updated_at, cccd)`` order. ``next_cursor`` names the last record returned (base64url JSON of
its ``updated_at`` and ``cccd``); the next page starts strictly after it, so paging to the end returns every
record exactly once while nothing changes. ``next_cursor`` is null when no record followed the page when it was
served. A record that changes while a client pages gets a later ``updated_at`` and moves to the end: a client
that keeps paging sees it again in its new state (deduplicate by key and row hash). For the next sync, keep the
largest ``updated_at`` seen and pass it as ``updated_since``: the bound is inclusive, so changes made within that
same second are sent again rather than lost.

``GET /health``
---------------
200 ``{"status": "ok", "citizens": <number of records served>}``

Errors
------
``{"error": "<code>", "message": "<what was wrong and what is allowed>"}`` with

- 400 ``invalid_page_size``, ``invalid_updated_since``, ``invalid_cursor``, ``unknown_parameter``
- 404 ``not_found`` (unknown path; the message lists the known ones)
- 405 ``method_not_allowed`` (anything but GET)
- 500 ``internal`` (a simulator bug; logged with its traceback)
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kho.errors import ConfigError
from kho.simulator.world import World, timestamp_key
from kho.sources.population import CITIZENS

logger = logging.getLogger(__name__)

CITIZENS_PATH = CITIZENS.endpoint
HEALTH_PATH = "/health"
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
_PARAMETERS = ("updated_since", "page_size", "cursor")
_STAMP_IN_CURSOR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class _HttpError(Exception):
    """A request the API refuses, carried to the one place that writes the JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def encode_cursor(updated_at: str, cccd: str) -> str:
    """The opaque cursor for 'after this record': base64url of JSON, unpadded."""
    raw = json.dumps({"updated_at": updated_at, "cccd": cccd}, ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """(updated_at, cccd) from a cursor this server issued; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not base64url JSON") from exc
    if not isinstance(value, dict) or set(value) != {"updated_at", "cccd"}:
        raise ValueError("not a cursor object")
    updated_at, cccd = value["updated_at"], value["cccd"]
    if not isinstance(updated_at, str) or not isinstance(cccd, str) or not _STAMP_IN_CURSOR.fullmatch(updated_at):
        raise ValueError("cursor fields have the wrong form")
    return updated_at, cccd


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise _HttpError(400, f"invalid_{name}", f"{name} was given {len(values)} times; give it at most once")
    return values[0]


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise _HttpError(400, "invalid_page_size",
                         f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE} (default "
                         f"{DEFAULT_PAGE_SIZE}), not {raw!r}")
    return int(raw)


def _updated_since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    hint = " (a '+' in the offset must be URL-encoded as %2B)" if " " in raw else ""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _HttpError(400, "invalid_updated_since",
                         f"updated_since must be an ISO 8601 date or time such as 2024-06-01T00:00:00Z, "
                         f"not {raw!r}{hint}; omit it to read from the beginning") from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        timestamp_key(moment)
    except ValueError as exc:
        raise _HttpError(400, "invalid_updated_since", f"updated_since {raw!r} is out of range: {exc}") from None
    return moment


def _cursor(raw: str | None) -> tuple[str, str] | None:
    if raw is None:
        return None
    try:
        return decode_cursor(raw)
    except ValueError:
        raise _HttpError(400, "invalid_cursor",
                         "cursor must be the next_cursor of a previous page, passed back unchanged; "
                         "omit it to start from the first page") from None


def _citizens_page(world: World, query: str) -> dict[str, Any]:
    """The JSON body for one citizens request: parse and check the query, then read one page of the world."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - set(_PARAMETERS))
    if unknown:
        raise _HttpError(400, "unknown_parameter",
                         f"unknown query parameter {', '.join(unknown)}; allowed: {', '.join(_PARAMETERS)}")
    size = _page_size(_one(params, "page_size"))
    since = _updated_since(_one(params, "updated_since"))
    after = _cursor(_one(params, "cursor"))
    page = world.page(updated_since=since, after=after, limit=size)
    next_cursor = encode_cursor(*page.next_after) if page.next_after is not None else None
    return {"data": page.records, "next_cursor": next_cursor, "page_size": size}


class SimulatorServer(ThreadingHTTPServer):
    """A threading HTTP server that knows the world it serves; handler threads die with the process."""

    daemon_threads = True

    def __init__(self, world: World, address: tuple[str, int]) -> None:
        self.world = world
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kho-simulator/1"
    timeout = 30
    """Seconds an idle keep-alive connection is held before its thread lets go."""
    server: SimulatorServer

    def do_GET(self) -> None:
        try:
            status, body = 200, self._route()
        except _HttpError as exc:
            status, body = exc.status, {"error": exc.code, "message": exc.message}
        except Exception:
            logger.exception("simulator failed on GET %s", self.path)
            status, body = 500, {"error": "internal", "message": "the simulator failed; see its log"}
        self._send_json(status, body)

    def _route(self) -> dict[str, Any]:
        url = urlsplit(self.path)
        if url.path == CITIZENS_PATH:
            return _citizens_page(self.server.world, url.query)
        if url.path == HEALTH_PATH:
            return {"status": "ok", "citizens": len(self.server.world)}
        raise _HttpError(404, "not_found", f"no resource at {url.path}; known paths: {CITIZENS_PATH}, {HEALTH_PATH}")

    def _refuse_method(self) -> None:
        self._send_json(405, {"error": "method_not_allowed", "message": f"{self.command} is not served; use GET"},
                        extra_headers={"Allow": "GET"})

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _refuse_method

    def _send_json(self, status: int, body: dict[str, Any], extra_headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, fmt: str, *args: Any) -> None:
        """Requests go to the logging module at DEBUG, not to stderr: a paging client makes thousands."""
        logger.debug("%s %s", self.address_string(), fmt % args)


def _bind(world: World, host: str, port: int) -> SimulatorServer:
    try:
        return SimulatorServer(world, (host, port))
    except OSError as exc:
        raise ConfigError(
            f"the population simulator cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "set KHO_SIM_HOST/KHO_SIM_PORT to a free address"
        ) from exc


@dataclass
class RunningSimulator:
    """A simulator serving from a background thread: for tests and demos. Use as a context manager or `stop()`."""

    server: SimulatorServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:40123 (no trailing slash)."""
        return self.server.url

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def world(self) -> World:
        return self.server.world

    def stop(self) -> None:
        """Stop accepting requests, close the socket and wait for the serving thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_in_thread(world: World, host: str = "127.0.0.1", port: int = 0) -> RunningSimulator:
    """Serve `world` from a daemon thread and return at once; port 0 picks a free port (see `.port`)."""
    server = _bind(world, host, port)
    # A short poll interval makes stop() take a tenth of a second instead of half: tests start many of these.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"kho-simulator-{server.server_address[1]}", daemon=True)
    thread.start()
    return RunningSimulator(server=server, thread=thread)


def serve_forever(world: World, host: str, port: int, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve `world` until interrupted (Ctrl-C returns normally); prints nothing itself.

    `on_ready(url)` is called once the socket is bound, so a CLI can announce the real port when given port 0.
    """
    with _bind(world, host, port) as server:
        if on_ready is not None:
            on_ready(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.debug("simulator on %s interrupted; shutting down", server.url)
