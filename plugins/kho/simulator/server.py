"""The simulated registries' HTTP API (stdlib only): every entity of a world, behind OAuth2, throttled, faulty.

It behaves as a real registry's gateway does, so kho's client meets the real flow in tests: a client-credentials
token endpoint, bearer tokens that expire, cursor paging by `updated_since`, a per-client rate limit answering
429 with Retry-After, and (as a testing aid) injected 5xx, slow answers and dropped connections.
The contract, for adapters of real registries, is docs/registries.md; this module is its reference server.

Routes come from the world's entities (`Entity.endpoint`), so adding an entity to `kho.sources` and to the
world's generator serves it with no change here. The server reads a world through the `ServedWorld` protocol.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from kho.config import RegistryCredentials
from kho.errors import ConfigError
from kho.simulator.auth import Clock, OAuthError, RateLimiter, TokenIssuer
from kho.simulator.faults import FaultInjector, FaultSpec
from kho.sources.contract import Entity
from kho.sources.population import CITIZENS

logger = logging.getLogger(__name__)

CITIZENS_PATH = CITIZENS.endpoint
HEALTH_PATH = "/health"
TOKEN_PATH = "/oauth/token"
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
DEFAULT_TOKEN_TTL_S = 300.0
MAX_BODY_BYTES = 64 * 1024
_PARAMETERS = ("updated_since", "page_size", "cursor")
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

Json = dict[str, Any]


class ServedPage(Protocol):
    """One page of an entity's records in (updated_at, *key) order."""

    @property
    def records(self) -> Sequence[dict[str, Any]]: ...

    @property
    def last(self) -> tuple[str, ...] | None:
        """(updated_at, *key) of the page's last record; None for an empty page."""

    @property
    def has_more(self) -> bool:
        """Whether any record followed this page when it was read."""


@runtime_checkable
class ServedWorld(Protocol):
    """What the server needs of a world. `page` and `count` are called from many threads at once."""

    @property
    def entities(self) -> Sequence[Entity]: ...

    @property
    def day(self) -> int:
        """The simulated day whose end-of-day state is served (0 = the initial state)."""

    def page(self, entity: Entity, *, updated_since: datetime | None, after: tuple[str, ...] | None,
             limit: int) -> ServedPage:
        """Up to `limit` records with updated_at >= updated_since and (updated_at, *key) > after."""

    def count(self, entity: Entity) -> int: ...


@dataclass(frozen=True)
class ServerOptions:
    """How the simulated gateway behaves. The defaults are an open, unlimited, reliable registry."""

    credentials: RegistryCredentials | None = None
    """The one client the token endpoint accepts. None: an open registry, where the API needs no token (and the
    token endpoint issues one to any client, so a client with credentials works against it too)."""
    token_ttl_s: float = DEFAULT_TOKEN_TTL_S
    rate_per_s: float | None = None
    """Requests per second each client may make on average; None: unlimited."""
    burst: int | None = None
    """Requests a client may make at once before the rate applies; default: the rate rounded up (at least 1)."""
    faults: FaultSpec = field(default_factory=FaultSpec)
    clock: Clock = time.monotonic
    """Drives token expiry and the rate limit; tests pass a hand-advanced clock."""


class _HttpError(Exception):
    """A request the API refuses, carried to the one place that writes the JSON error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 extra: Json | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra or {}
        """More fields of the error body, e.g. RFC 6749's error_description."""

    @classmethod
    def refusal(cls, exc: OAuthError, *, rfc6749: bool = False) -> _HttpError:
        """An auth refusal as an HTTP error; the token endpoint's body also says error_description."""
        headers = {"WWW-Authenticate": exc.www_authenticate} if exc.www_authenticate else {}
        return cls(exc.status, exc.code, exc.message, headers,
                   {"error_description": exc.message} if rfc6749 else None)


class _DropConnection(Exception):
    """An injected fault: close the socket without answering."""


def encode_cursor(entity: Entity, after: Sequence[str]) -> str:
    """The opaque cursor for 'after this record' of `entity`: base64url of JSON, unpadded."""
    raw = json.dumps({"entity": entity.qualified_name, "after": list(after)}, ensure_ascii=False,
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(entity: Entity, cursor: str) -> tuple[str, ...]:
    """(updated_at, *key) from a cursor this server issued for `entity`; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not base64url JSON") from exc
    if not isinstance(value, dict) or set(value) != {"entity", "after"}:
        raise ValueError("not a cursor object")
    if value["entity"] != entity.qualified_name:
        raise ValueError(f"a cursor of {value['entity']}, not of {entity.qualified_name}")
    after = value["after"]
    if (not isinstance(after, list) or len(after) != 1 + len(entity.key)
            or not all(isinstance(part, str) for part in after) or not _STAMP.fullmatch(after[0])):
        raise ValueError("cursor fields have the wrong form")
    return tuple(after)


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
        return moment.astimezone(UTC)
    except OverflowError:
        raise _HttpError(400, "invalid_updated_since",
                         f"updated_since {raw!r} is outside the years 0001-9999 once moved to UTC") from None


def _cursor(entity: Entity, raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    try:
        return decode_cursor(entity, raw)
    except ValueError:
        raise _HttpError(400, "invalid_cursor",
                         f"cursor must be the next_cursor of a previous page of {entity.endpoint}, passed back "
                         "unchanged; omit it to start from the first page") from None


def _entity_page(world: ServedWorld, entity: Entity, query: str) -> Json:
    """The JSON body for one entity request: parse and check the query, then read one page of the world."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - set(_PARAMETERS))
    if unknown:
        raise _HttpError(400, "unknown_parameter",
                         f"unknown query parameter {', '.join(unknown)}; allowed: {', '.join(_PARAMETERS)}")
    size = _page_size(_one(params, "page_size"))
    since = _updated_since(_one(params, "updated_since"))
    after = _cursor(entity, _one(params, "cursor"))
    page = world.page(entity, updated_since=since, after=after, limit=size)
    next_cursor = encode_cursor(entity, page.last) if page.has_more and page.last is not None else None
    return {"data": list(page.records), "next_cursor": next_cursor, "page_size": size}


class SimulatorServer(ThreadingHTTPServer):
    """A threading HTTP server that knows the world it serves and its gateway's rules."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, world: ServedWorld, address: tuple[str, int], options: ServerOptions) -> None:
        self.world = world
        self.options = options
        self.routes: dict[str, Entity] = {e.endpoint: e for e in world.entities}
        self.issuer = TokenIssuer(options.credentials, ttl_s=options.token_ttl_s, clock=options.clock)
        self.limiter: RateLimiter | None = None
        if options.rate_per_s is not None:
            burst = options.burst if options.burst is not None else max(1, math.ceil(options.rate_per_s))
            self.limiter = RateLimiter(options.rate_per_s, burst, clock=options.clock)
        self.faults = FaultInjector(options.faults)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def known_paths(self) -> list[str]:
        return [*self.routes, HEALTH_PATH, TOKEN_PATH]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kho-simulator/2"
    timeout = 30
    """Seconds an idle keep-alive connection is held before its thread lets go."""
    disable_nagle_algorithm = True
    """Headers and body go out in two writes: with Nagle's algorithm and delayed ACKs each answer on a kept-alive
    connection would wait 40 ms for nothing."""
    server: SimulatorServer

    def do_GET(self) -> None:
        self._respond(self._get)

    def do_POST(self) -> None:
        self._respond(self._post)

    def _refuse_method(self) -> None:
        self._respond(self._unsupported)

    do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _refuse_method

    def _respond(self, route: Callable[[str, bytes], Json]) -> None:
        """Run one route and write its JSON answer, turning every refusal into a JSON error."""
        headers: dict[str, str] = {}
        try:
            status, body = 200, route(urlsplit(self.path).path, self._read_body())
        except _DropConnection:
            self._drop()
            return
        except _HttpError as exc:
            status, headers = exc.status, exc.headers
            body = {"error": exc.code, "message": exc.message, **exc.extra}
        except Exception:
            logger.exception("simulator failed on %s %s", self.command, self.path)
            status, body = 500, {"error": "internal", "message": "the simulator failed; see its log"}
        self._send_json(status, body, headers)

    def _read_body(self) -> bytes:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.isdigit():
            self.close_connection = True
            raise _HttpError(400, "invalid_request", f"Content-Length {raw!r} is not a number")
        length = int(raw)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise _HttpError(413, "body_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _get(self, path: str, body: bytes) -> Json:
        server = self.server
        entity = server.routes.get(path)
        if entity is not None:
            self._admit()
            return _entity_page(server.world, entity, urlsplit(self.path).query)
        if path == HEALTH_PATH:
            return self._health()
        if path == TOKEN_PATH:
            raise _HttpError(405, "method_not_allowed", f"{TOKEN_PATH} takes POST (a client-credentials form)",
                             {"Allow": "POST"})
        raise _HttpError(404, "not_found", f"no resource at {path}; known paths: {', '.join(server.known_paths())}")

    def _post(self, path: str, body: bytes) -> Json:
        if path != TOKEN_PATH:
            return self._unsupported(path, body)
        try:
            token = self.server.issuer.issue(authorization=self.headers.get("Authorization"),
                                             content_type=self.headers.get("Content-Type"), body=body)
        except OAuthError as exc:
            raise _HttpError.refusal(exc, rfc6749=True) from None
        return dict(token.body())

    def _unsupported(self, path: str, body: bytes) -> Json:
        allowed = "POST" if path == TOKEN_PATH else "GET"
        raise _HttpError(405, "method_not_allowed", f"{self.command} is not served at {path}; use {allowed}",
                         {"Allow": allowed})

    def _admit(self) -> None:
        """The gateway's checks before a data request reaches the registry: token, rate limit, then faults."""
        server = self.server
        client = self.client_address[0]
        if server.options.credentials is not None:
            try:
                client = server.issuer.client_of(self.headers.get("Authorization"))
            except OAuthError as exc:
                raise _HttpError.refusal(exc) from None
        if server.limiter is not None:
            wait = server.limiter.admit(client)
            if wait is not None:
                raise _HttpError(429, "rate_limited", f"more than {server.options.rate_per_s:g} requests per second "
                                 f"from {client}; retry after {wait} s", {"Retry-After": str(wait)})
        fault = server.faults.draw()
        if fault is None:
            return
        if fault.kind == "drop":
            raise _DropConnection
        if fault.kind == "slow":
            time.sleep(server.faults.spec.slow_seconds)
            return
        headers = {"Retry-After": "1"} if fault.status == 503 else {}
        raise _HttpError(fault.status, "injected_fault", f"an injected fault (HTTP {fault.status}); retry the "
                         "same request", headers)

    def _health(self) -> Json:
        world = self.server.world
        return {"status": "ok", "day": world.day, "entities": [
            {"registry": e.registry, "entity": e.name, "endpoint": e.endpoint, "count": world.count(e)}
            for e in world.entities
        ]}

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            logger.debug("the client closed first while a dropped connection was injected")

    def _send_json(self, status: int, body: Json, extra_headers: dict[str, str]) -> None:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra_headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, fmt: str, *args: Any) -> None:
        """Requests go to the logging module at DEBUG, not to stderr: a paging client makes thousands."""
        logger.debug("%s %s", self.address_string(), fmt % args)


def _bind(world: ServedWorld, host: str, port: int,
          options: ServerOptions | None) -> SimulatorServer:
    try:
        return SimulatorServer(world, (host, port), options or ServerOptions())
    except OSError as exc:
        raise ConfigError(
            f"the registry simulator cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "set KHO_SIM_HOST/KHO_SIM_PORT to a free address"
        ) from exc


@dataclass
class RunningSimulator:
    """A simulator serving from a background thread: for tests and demos. Use as a context manager or `stop()`."""

    server: SimulatorServer
    thread: threading.Thread
    world: Any
    """The world as it was passed in (tests change it between requests)."""

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:40123 (no trailing slash)."""
        return self.server.url

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

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


def serve_in_thread(world: ServedWorld, host: str = "127.0.0.1", port: int = 0,
                    options: ServerOptions | None = None) -> RunningSimulator:
    """Serve `world` from a daemon thread and return at once; port 0 picks a free port (see `.port`)."""
    server = _bind(world, host, port, options)
    # A short poll interval makes stop() take a tenth of a second instead of half: tests start many of these.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"kho-simulator-{server.server_address[1]}", daemon=True)
    thread.start()
    return RunningSimulator(server=server, thread=thread, world=world)


def serve_forever(world: ServedWorld, host: str, port: int, *,
                  options: ServerOptions | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve `world` until interrupted (Ctrl-C returns normally); prints nothing itself.

    `on_ready(url)` is called once the socket is bound, so a CLI can announce the real port when given port 0.
    """
    with _bind(world, host, port, options) as server:
        if on_ready is not None:
            on_ready(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.debug("simulator on %s interrupted; shutting down", server.url)
