"""The simulated registries' HTTP API: every entity of a world, behind OAuth2, throttled, faulty.

A Starlette application served by uvicorn. It behaves as a real registry's gateway does, so kho's client meets the
real flow in tests: a client-credentials token endpoint, bearer tokens that expire, cursor paging by
`updated_since`, a per-client rate limit answering 429 with Retry-After, and (as a testing aid) injected 5xx, slow
answers and dropped connections. The contract, for adapters of real registries, is docs/registries.md; this module
is its reference server.

Routes come from the world's entities (`Entity.endpoint`), so adding an entity to `kho.sources` and to the
world's generator serves it with no change here. The server reads a world through the `ServedWorld` protocol.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import re
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

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
JSON_TYPE = "application/json; charset=utf-8"
SERVER_HEADER = f"kho-simulator/2 Python/{sys.version.split()[0]}"
KEEP_ALIVE_S = 30
"""Seconds an idle keep-alive connection is held open (longer than httpx's 5 s pool expiry, so the client closes
first and never reuses a connection the server is closing)."""
BACKLOG = 64
_PARAMETERS = ("updated_since", "page_size", "cursor")
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_CLOSE = {"Connection": "close"}

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
    """What the server needs of a world. `page` and `count` run on the server's thread while the world's owner may
    change the world from another (a test advancing days between pages): they must be thread-safe."""

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

    @classmethod
    def not_served(cls, request: Request, allowed: str) -> _HttpError:
        return cls(405, "method_not_allowed", f"{request.method} is not served at {_path(request)}; use {allowed}",
                   {"Allow": allowed})


class _DropConnection(Exception):
    """An injected fault: close the connection without answering."""


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


def _path(request: Request) -> str:
    """The path as the client sent it (still percent-encoded), for messages."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path


async def _read_body(request: Request) -> bytes:
    """The request body, at most MAX_BODY_BYTES of it; a longer one is refused before it is read, if it says so."""
    raw = request.headers.get("content-length")
    if raw is not None and not raw.isdigit():
        raise _HttpError(400, "invalid_request", f"Content-Length {raw!r} is not a number", _CLOSE)
    too_large = _HttpError(413, "body_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes", _CLOSE)
    if raw is not None and int(raw) > MAX_BODY_BYTES:
        raise too_large
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return body


def _json_response(status: int, body: Json, headers: dict[str, str]) -> Response:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(payload, status, {"Cache-Control": "no-store", **headers}, media_type=JSON_TYPE)


HangUp = Callable[[Scope, Receive], Awaitable[None]]
"""Closes the connection a request came on, sending nothing: the server's part of a dropped connection."""
Handler = Callable[[Request, bytes], Awaitable[Json]]
"""One resource: the request and its body in, the JSON answer out, or an `_HttpError`."""


class _NoAnswer(Response):
    """What a dropped connection 'answers': nothing at all, the connection closed under the waiting client."""

    def __init__(self, hang_up: HangUp) -> None:
        super().__init__(status_code=499)
        self._hang_up = hang_up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._hang_up(scope, receive)


class _Resource:
    """One resource as an ASGI application: Starlette routes every method to an application, but only GET to a
    function (and answers the others itself, in plain text)."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


class Gateway:
    """The registry's gateway as a Starlette application: check a request, throttle it, fault it, answer in JSON.

    Every path and every method reaches one of its endpoints (routes take any method, a last route any path), so
    each refusal (404, 405 with Allow, 413) is this API's JSON error rather than a framework's default page.
    """

    def __init__(self, world: ServedWorld, options: ServerOptions, hang_up: HangUp) -> None:
        self.world = world
        self.options = options
        self.routes: dict[str, Entity] = {e.endpoint: e for e in world.entities}
        self.issuer = TokenIssuer(options.credentials, ttl_s=options.token_ttl_s, clock=options.clock)
        self.limiter: RateLimiter | None = None
        if options.rate_per_s is not None:
            burst = options.burst if options.burst is not None else max(1, math.ceil(options.rate_per_s))
            self.limiter = RateLimiter(options.rate_per_s, burst, clock=options.clock)
        self.faults = FaultInjector(options.faults)
        self.stopping = asyncio.Event()
        """Set when the server begins to stop: a slow answer still waiting is dropped rather than awaited."""
        self._hang_up = hang_up

    def application(self) -> Starlette:
        routes = [Route(path, self._endpoint(self._entity(entity))) for path, entity in self.routes.items()]
        routes += [Route(HEALTH_PATH, self._endpoint(self._health)), Route(TOKEN_PATH, self._endpoint(self._token)),
                   Route("/{path:path}", self._endpoint(self._nowhere))]
        return Starlette(routes=routes)

    def known_paths(self) -> list[str]:
        return [*self.routes, HEALTH_PATH, TOKEN_PATH]

    def _endpoint(self, handler: Handler) -> _Resource:
        """Run one resource and answer its JSON, turning every refusal into a JSON error."""

        async def endpoint(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                status, body = 200, await handler(request, await _read_body(request))
            except (_DropConnection, ClientDisconnect):
                logger.debug("%s %s %s dropped", request.client.host if request.client else "-", request.method,
                             _path(request))
                return _NoAnswer(self._hang_up)
            except _HttpError as exc:
                status, headers = exc.status, exc.headers
                body = {"error": exc.code, "message": exc.message, **exc.extra}
            except Exception:
                logger.exception("simulator failed on %s %s", request.method, _path(request))
                status, body = 500, {"error": "internal", "message": "the simulator failed; see its log"}
            logger.debug("%s %s %s %d", request.client.host if request.client else "-", request.method,
                         _path(request), status)
            return _json_response(status, body, headers)

        return _Resource(endpoint)

    def _entity(self, entity: Entity) -> Handler:
        async def page(request: Request, body: bytes) -> Json:
            if request.method != "GET":
                raise _HttpError.not_served(request, "GET")
            await self._admit(request)
            # The world is read on the event loop: a page costs a few milliseconds of CPU, and handing it to a
            # thread measured 0.4 ms more per page with no more pages per second for four clients at once.
            return _entity_page(self.world, entity, request.scope["query_string"].decode("latin-1"))

        return page

    async def _health(self, request: Request, body: bytes) -> Json:
        if request.method != "GET":
            raise _HttpError.not_served(request, "GET")
        world = self.world
        return {"status": "ok", "day": world.day, "entities": [
            {"registry": e.registry, "entity": e.name, "endpoint": e.endpoint, "count": world.count(e)}
            for e in world.entities
        ]}

    async def _token(self, request: Request, body: bytes) -> Json:
        if request.method == "GET":
            raise _HttpError(405, "method_not_allowed", f"{TOKEN_PATH} takes POST (a client-credentials form)",
                             {"Allow": "POST"})
        if request.method != "POST":
            raise _HttpError.not_served(request, "POST")
        try:
            token = self.issuer.issue(authorization=request.headers.get("authorization"),
                                      content_type=request.headers.get("content-type"), body=body)
        except OAuthError as exc:
            raise _HttpError.refusal(exc, rfc6749=True) from None
        return dict(token.body())

    async def _nowhere(self, request: Request, body: bytes) -> Json:
        if request.method != "GET":
            raise _HttpError.not_served(request, "GET")
        raise _HttpError(404, "not_found", f"no resource at {_path(request)}; known paths: "
                         f"{', '.join(self.known_paths())}")

    async def _admit(self, request: Request) -> None:
        """The gateway's checks before a data request reaches the registry: token, rate limit, then faults."""
        client = request.client.host if request.client else ""
        if self.options.credentials is not None:
            try:
                client = self.issuer.client_of(request.headers.get("authorization"))
            except OAuthError as exc:
                raise _HttpError.refusal(exc) from None
        if self.limiter is not None:
            wait = self.limiter.admit(client)
            if wait is not None:
                raise _HttpError(429, "rate_limited", f"more than {self.options.rate_per_s:g} requests per second "
                                 f"from {client}; retry after {wait} s", {"Retry-After": str(wait)})
        fault = self.faults.draw()
        if fault is None:
            return
        if fault.kind == "drop":
            raise _DropConnection
        if fault.kind == "slow":
            await self._delay()
            return
        headers = {"Retry-After": "1"} if fault.status == 503 else {}
        raise _HttpError(fault.status, "injected_fault", f"an injected fault (HTTP {fault.status}); retry the "
                         "same request", headers)

    async def _delay(self) -> None:
        """A slow answer: wait `slow_seconds`, without holding up other requests; if the server stops meanwhile,
        drop the connection instead, so a stop never waits for a slow answer."""
        try:
            await asyncio.wait_for(self.stopping.wait(), self.faults.spec.slow_seconds)
        except TimeoutError:
            return
        raise _DropConnection


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, saying when it listens and ending the gateway's slow answers when it stops."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.listening = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._loop = asyncio.get_running_loop()
        self.listening.set()

    async def main_loop(self) -> None:
        """uvicorn's ticks (every 0.1 s: the Date header, then `should_exit`), but woken at once by `stop()`: tests
        start and stop hundreds of servers."""
        tick = 0
        while not await self.on_tick(tick):
            tick = (tick + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), 0.1)

    def stop(self) -> None:
        """Ask the server to stop, from any thread."""
        self.should_exit = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._woken.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gateway.stopping.set()
        await super().shutdown(sockets=sockets)


class SimulatorServer:
    """The gateway on a listening socket, served by uvicorn: `serve()` runs until `shutdown()` (or Ctrl-C)."""

    def __init__(self, world: ServedWorld, sock: socket.socket, options: ServerOptions) -> None:
        self.socket = sock
        self.server_address: tuple[str, int] = sock.getsockname()[:2]
        self.gateway = Gateway(world, options, self._hang_up)
        self.world, self.options = world, options
        self.issuer, self.limiter, self.faults = self.gateway.issuer, self.gateway.limiter, self.gateway.faults
        self.failure: BaseException | None = None
        """What ended `serve()` other than a shutdown, if anything."""
        config = uvicorn.Config(
            self.gateway.application(), http="auto", loop="asyncio", lifespan="off", ws="none",
            interface="asgi3", log_config=None, access_log=False, proxy_headers=False, server_header=False,
            headers=[("server", SERVER_HEADER)], timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=5,
            backlog=BACKLOG,
        )
        self._uvicorn = _Uvicorn(config, self.gateway)

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def known_paths(self) -> list[str]:
        return self.gateway.known_paths()

    def serve(self) -> None:
        """Serve until `shutdown()`. In the main thread, Ctrl-C stops it too (then KeyboardInterrupt is raised)."""
        try:
            self._uvicorn.run(sockets=[self.socket])
        except (Exception, SystemExit) as exc:  # uvicorn exits the process on some startup failures
            self.failure = exc
            logger.exception("the registry simulator on %s stopped", self.url)
        finally:
            self._uvicorn.listening.set()
            self.close()

    def close(self) -> None:
        """Close the socket (uvicorn closes it too when it stops; this covers a server that never served)."""
        self.socket.close()

    def wait_listening(self, thread: threading.Thread) -> None:
        """Return once `serve()` on `thread` accepts requests; ConfigError if it stopped instead."""
        self._uvicorn.listening.wait()
        if self.failure is not None or not self._uvicorn.started:
            thread.join()
            raise ConfigError(f"the registry simulator on {self.url} could not start: {self.failure}")

    def shutdown(self) -> None:
        """Ask `serve()` to stop: no new connections, requests under way finish (slow ones are dropped)."""
        self._uvicorn.stop()

    async def _hang_up(self, scope: Scope, receive: Receive) -> None:
        """Close a request's connection without a byte of answer. ASGI has no message for that, so the connection's
        transport is found among uvicorn's open connections by the client's address, and closed."""
        client = scope.get("client")
        transport = next((c.transport for c in self._uvicorn.server_state.connections
                          if client is not None and getattr(c, "client", None) == tuple(client)), None)
        if transport is None:
            return  # uvicorn forgets a connection once it is lost: the client hung up first
        transport.close()
        # Until uvicorn sees the connection lost, an application that returns without answering gets a 500.
        while (await receive())["type"] != "http.disconnect":
            pass


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Made with proto=IPPROTO_TCP, as asyncio's own are: asyncio sets TCP_NODELAY only on
    connections of such a socket, and without it each answer (headers, then body) waits 40 ms for a delayed ACK."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _bind(world: ServedWorld, host: str, port: int, options: ServerOptions | None) -> SimulatorServer:
    try:
        sock = _listen(host, port)
    except OSError as exc:
        raise ConfigError(
            f"the registry simulator cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "set KHO_SIM_HOST/KHO_SIM_PORT to a free address"
        ) from exc
    return SimulatorServer(world, sock, options or ServerOptions())


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
        return self.server.port

    def stop(self) -> None:
        """Stop accepting requests, close every connection and the socket, and wait for the serving thread."""
        self.server.shutdown()
        self.thread.join()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_in_thread(world: ServedWorld, host: str = "127.0.0.1", port: int = 0,
                    options: ServerOptions | None = None) -> RunningSimulator:
    """Serve `world` from a daemon thread, returning once it accepts requests; port 0 picks a free port (`.port`)."""
    server = _bind(world, host, port, options)
    thread = threading.Thread(target=server.serve, name=f"kho-simulator-{server.port}", daemon=True)
    thread.start()
    server.wait_listening(thread)
    return RunningSimulator(server=server, thread=thread, world=world)


def serve_forever(world: ServedWorld, host: str, port: int, *,
                  options: ServerOptions | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve `world` until interrupted (Ctrl-C returns normally); prints nothing itself.

    `on_ready(url)` is called once the socket listens, so a CLI can announce the real port when given port 0.
    """
    server = _bind(world, host, port, options)
    try:
        if on_ready is not None:
            on_ready(server.url)
        server.serve()
    except KeyboardInterrupt:
        logger.debug("simulator on %s interrupted; shutting down", server.url)
    finally:
        server.close()
    if server.failure is not None:
        raise ConfigError(f"the registry simulator on {server.url} stopped: {server.failure}")
