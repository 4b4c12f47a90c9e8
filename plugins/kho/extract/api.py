"""Paged registry API client: OAuth2 client credentials, follows `next_cursor` from an `updated_since` watermark,
yields Arrow tables.

Every value is handed on as text (the wire form); typing and checking belong to the contract check in `load`,
so a malformed value is quarantined with its reason instead of failing the whole extraction.
The HTTP contract the client speaks is docs/registries.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import quote_plus

import httpx
import pyarrow as pa
import tenacity

from kho.config import RegistryConnection, RegistryCredentials, registry_prefix
from kho.errors import ExtractError, RegistryUnreachable
from kho.extract.block import Block, Defect, UnknownFields, nul_field, with_rows
from kho.sources.contract import Entity

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
TOKEN_PATH = "/oauth/token"


def retry_after_seconds(response: httpx.Response, *, now: Callable[[], dt.datetime] | None = None) -> float | None:
    """The wait a response asks for in `Retry-After` (seconds or an HTTP date), or None if it names none.

    `now` (aware UTC) is injectable so an HTTP-date header can be tested without the wall clock.
    """
    raw = response.headers.get("Retry-After", "").strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    current = now() if now is not None else dt.datetime.now(dt.UTC)
    return max(0.0, (when - current).total_seconds())


RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
"""Answers that say "not now" rather than "never": a gateway's rate limit and a registry's passing failures."""


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed request is sent again, and after how long. The one place retrying is decided.

    5xx, 429 and transport failures (refused or dropped connections, timeouts) are retried with exponential
    backoff and full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"), so many workers hitting one
    registry do not retry in lockstep. A `Retry-After` header wins over the backoff (capped by `max_wait_s`).
    Retrying stops after `max_attempts` sends or once the next wait would pass `deadline_s` since the first send,
    whichever comes first. Sleep, clock and jitter are injectable so tests never wait. `run` drives one request
    with tenacity; this class only decides.
    """

    max_attempts: int = 8
    """Sends of one request in all, the first included."""
    base_delay_s: float = 0.5
    """The backoff cap of the first retry; it doubles with each further retry."""
    max_delay_s: float = 30.0
    """The backoff cap never grows past this."""
    max_wait_s: float = 60.0
    """A longer Retry-After is cut to this: a sync must not hang on one header."""
    deadline_s: float = 300.0
    """Total seconds one request may spend retrying before the sync gives up."""
    retry_statuses: frozenset[int] = RETRY_STATUSES
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[float, float], float] = random.uniform
    """Draws the wait in [0, cap]; tests pass a fixed function."""
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    """Wall-clock UTC for Retry-After given as an HTTP date."""
    retry_refused: bool = True
    """Retry a refused connection (nothing listening): yes for a scheduled sync, where a registry restarting is a
    passing fault; no for a sync a person started (`kho sync`), who should hear at once that the registry is down."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")

    def backoff(self, retry: int) -> float:
        """Full jitter: a uniform draw in [0, min(max_delay_s, base_delay_s * 2**retry)] for retry 0, 1, ..."""
        cap = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(retry, 62))
        return self.jitter(0.0, cap)

    def delay(self, response: httpx.Response | None, retry: int) -> float | None:
        """Seconds to wait before retry number `retry` (0 = the first) of a request that got `response` (None: a
        transport failure), or None when this outcome is not worth retrying (the attempt budget is checked by
        the caller)."""
        if response is not None and response.status_code not in self.retry_statuses:
            return None
        asked = retry_after_seconds(response, now=self.now) if response is not None else None
        if asked is not None:
            return min(asked, self.max_wait_s)
        return self.backoff(retry)

    def allows(self, attempts: int, started: float, wait: float) -> bool:
        """Whether one more send fits: `attempts` sends so far, the first at clock time `started`."""
        return attempts < self.max_attempts and self.clock() - started + wait <= self.deadline_s

    def run(self, send: Callable[[], httpx.Response], *, on_retry: Callable[[str, int, float], None],
            give_up: Callable[[str, int, float], NoReturn]) -> httpx.Response:
        """`send()` until it answers something not worth retrying (returned as is) or the budget is spent.

        `on_retry(reason, attempts, wait)` is called before each wait; `give_up(reason, attempts, elapsed)` must
        raise. An exception that is not a transport failure (a refused token, say) propagates at once.
        """
        started = self.clock()
        retrying = tenacity.Retrying(
            retry=(tenacity.retry_if_exception(self._transient)
                   | tenacity.retry_if_result(lambda response: response.status_code in self.retry_statuses)),
            wait=lambda state: self.delay(_response(state), state.attempt_number - 1) or 0.0,
            stop=lambda state: not self.allows(state.attempt_number, started, state.upcoming_sleep),
            sleep=self.sleep,
            before_sleep=lambda state: on_retry(_reason(state), state.attempt_number, state.upcoming_sleep),
            retry_error_callback=lambda state: give_up(_reason(state), state.attempt_number,
                                                       self.clock() - started),
        )
        return retrying(send)


    def _transient(self, exc: BaseException) -> bool:
        return isinstance(exc, httpx.TransportError) and (self.retry_refused or not refused(exc))


def refused(exc: BaseException) -> bool:
    """Whether a transport failure is a refused connection: nothing listens at the address."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _response(state: tenacity.RetryCallState) -> httpx.Response | None:
    """The response of the attempt just made; None for a transport failure."""
    outcome = state.outcome
    return None if outcome is None or outcome.failed else outcome.result()


def _reason(state: tenacity.RetryCallState) -> str:
    """Why the attempt just made failed, in one line for the log and the final error."""
    outcome = state.outcome
    if outcome is not None and outcome.failed:
        exc = outcome.exception()
        return f"{type(exc).__name__}: {str(exc).rstrip('.')}" if str(exc) else type(exc).__name__
    response = _response(state)
    return "no answer" if response is None else f"answered {response.status_code}: {_detail(response).rstrip('.')}"


class Pace:
    """Spaces requests at least `1 / rate` seconds apart: the registry's published rate limit, kept by kho rather
    than learnt from its 429s. On the retry policy's clock and sleep, so tests never wait."""

    def __init__(self, rate_per_s: float | None, *, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = -math.inf

    def __call__(self) -> None:
        if not self.interval:
            return
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


@dataclass(frozen=True)
class ApiSource:
    """Where one registry's API lives and how kho is known to it (`KhoConfig.registry_connection` resolves it)."""

    base_url: str
    page_size: int = 500
    timeout_s: float = 30.0
    credentials: RegistryCredentials | None = None
    """OAuth2 client credentials; None for a registry that needs no token."""
    token_url: str | None = None
    """The token endpoint; default: `<base_url>/oauth/token`."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate_limit_per_s: float | None = None
    """Send at most this many requests per second (`Pace`); None: as fast as the registry answers."""
    credentials_from: str = ""
    """Where the credentials came from (settings or file), for the message when the registry refuses them."""

    @classmethod
    def of(cls, connection: RegistryConnection, *, page_size: int, retry: RetryPolicy | None = None) -> ApiSource:
        """The client side of a resolved registry connection."""
        return cls(connection.base_url, page_size, connection.timeout_s, connection.credentials,
                   connection.token_url, retry or RetryPolicy(), connection.rate_limit_per_s,
                   connection.credentials_from)

    @property
    def token_endpoint(self) -> str:
        return self.token_url or self.base_url.rstrip("/") + TOKEN_PATH


class ClientCredentialsAuth(httpx.Auth):
    """OAuth2 client-credentials grant (RFC 6749 section 4.4) for httpx: fetch a token, reuse it until shortly
    before it expires, and fetch a new one once if the API still answers 401 invalid_token.

    One instance per client and thread: it keeps the token between requests.
    """

    requires_response_body = True

    def __init__(self, token_url: str, credentials: RegistryCredentials, *,
                 clock: Callable[[], float] = time.monotonic, settings: str = "the registry's client settings"
                 ) -> None:
        self.token_url = token_url
        self.settings = settings
        """Where the credentials came from, named when the token endpoint refuses them."""
        self._basic = _basic_authorization(credentials)
        self._clock = clock
        self._token: str | None = None
        self._expires_at = -math.inf
        self.fetched = 0
        """Tokens fetched so far."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None or self._clock() >= self._expires_at:
            yield from self._fetch_token()
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401 and 'error="invalid_token"' in response.headers.get("WWW-Authenticate", ""):
            yield from self._fetch_token()
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    def _fetch_token(self) -> Generator[httpx.Request, httpx.Response, None]:
        requested_at = self._clock()
        response = yield httpx.Request("POST", self.token_url, data={"grant_type": "client_credentials"},
                                       headers={"Authorization": self._basic, "Accept": "application/json"})
        token, expires_in = _parse_token(self.token_url, response, self.settings)
        self._token = token
        # Renew a little early (a tenth of the lifetime, at most 30 s) so a token never expires in flight.
        self._expires_at = requested_at + expires_in - min(30.0, expires_in / 10)
        self.fetched += 1


def _basic_authorization(credentials: RegistryCredentials) -> str:
    """RFC 6749 section 2.3.1: id and secret are form-encoded, joined by a colon, then base64 encoded."""
    pair = f"{quote_plus(credentials.client_id)}:{quote_plus(credentials.client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def _parse_token(url: str, response: httpx.Response, settings: str) -> tuple[str, float]:
    """(access_token, expires_in seconds) from a token response, or an ExtractError that says what to fix."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        error = body if isinstance(body, dict) else {}
        code = error.get("error", "")
        detail = error.get("error_description") or error.get("message")
        hint = f" Check {settings}." if code == "invalid_client" else ""
        raise ExtractError(f"the token endpoint {url} answered {response.status_code} {code}: "
                           f"{detail or response.text[:200]}.{hint}")
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise ExtractError(f"the token endpoint {url} answered without an access_token")
    if str(body.get("token_type", "")).lower() != "bearer":
        raise ExtractError(f"the token endpoint {url} issued a {body.get('token_type')!r} token; kho sends Bearer")
    expires_in = body.get("expires_in")
    # RFC 6749 only recommends expires_in: without it, keep the token until the API says it is invalid.
    lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else math.inf
    return body["access_token"], lifetime


def iter_pages(source: ApiSource, entity: Entity, since: dt.datetime | None = None) -> Iterator[Block]:
    """Yield one block of all-text records per page, in the registry's stable (cursor, key) order.

    A record of the page that is not a record (not a JSON object, or text that is not Unicode) is a defect of the
    block, quarantined with its JSON; the rest of the page loads.
    """
    if not 1 <= source.page_size <= MAX_PAGE_SIZE:
        raise ExtractError(f"page_size {source.page_size} is outside 1..{MAX_PAGE_SIZE}")
    params: dict[str, str | int] = {"page_size": source.page_size}
    if since is not None:
        params["updated_since"] = since.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    url = source.base_url.rstrip("/") + entity.endpoint
    prefix = registry_prefix(entity.registry)
    settings = source.credentials_from or f"{prefix}CLIENT_ID and {prefix}CLIENT_SECRET"
    auth = (ClientCredentialsAuth(source.token_endpoint, source.credentials, settings=settings)
            if source.credentials else None)
    pace = Pace(source.rate_limit_per_s, clock=source.retry.clock, sleep=source.retry.sleep)
    with httpx.Client(timeout=source.timeout_s, auth=auth) as client:
        while True:
            body = _get_json(client, source, url, params, entity, pace)
            records = body.get("data")
            if not isinstance(records, list):
                raise ExtractError(f"{entity.qualified_name}: {url} answered without a `data` list")
            if records:
                yield page_block(records, entity.field_names)
            cursor = body.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor


def _get_json(client: httpx.Client, source: ApiSource, url: str, params: dict[str, str | int],
              entity: Entity, pace: Pace) -> dict:
    response = _get(client, source, url, params, entity, pace)
    if response.status_code != 200:
        detail = _detail(response)
        hint = ""
        if response.status_code == 401 and source.credentials is None:
            prefix = registry_prefix(entity.registry)
            hint = f" (this registry needs client credentials: set {prefix}CLIENT_ID and {prefix}CLIENT_SECRET)"
        raise ExtractError(f"{entity.qualified_name}: {url} answered {response.status_code}: {detail}{hint}")
    try:
        body = response.json()
    except ValueError as exc:
        raise ExtractError(f"{entity.qualified_name}: {url} answered with invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ExtractError(f"{entity.qualified_name}: {url} answered JSON that is not an object")
    return body


def _get(client: httpx.Client, source: ApiSource, url: str, params: dict[str, str | int], entity: Entity,
         pace: Pace) -> httpx.Response:
    """One GET, sent again while the retry policy allows; a response not worth retrying is returned as is.

    Every retry is logged with its reason; giving up raises an ExtractError naming the registry, entity, URL and
    the last failure, so the task log says what to check without a traceback.
    """
    policy = source.retry

    def send() -> httpx.Response:
        pace()
        return client.get(url, params=params)

    def on_retry(reason: str, attempts: int, wait: float) -> None:
        logger.warning("registry %s, entity %s: GET %s failed (%s); retry %d/%d in %.2f s", entity.registry,
                       entity.name, url, reason, attempts, policy.max_attempts - 1, wait)

    def give_up(reason: str, attempts: int, elapsed: float) -> NoReturn:
        raise ExtractError(
            f"registry {entity.registry}, entity {entity.name}: GET {url} gave up after {attempts} attempt(s) "
            f"in {elapsed:.1f} s; last error: {reason}. Is the registry up? A later run resumes from the last "
            "committed watermark."
        )

    try:
        return policy.run(send, on_retry=on_retry, give_up=give_up)
    except httpx.ConnectError as exc:  # refused, and the policy does not retry that
        prefix = registry_prefix(entity.registry)
        raise RegistryUnreachable(
            f"registry {entity.registry}: nothing answers at {source.base_url} (connection refused). Start it — "
            "`kho simulate serve` for the simulated registries, or `kho up` — or point "
            f"{prefix}BASE_URL at the registry's API"
        ) from exc


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", response.text[:200])) if isinstance(body, dict) else response.text[:200]


def page_block(records: list[object], fields: tuple[str, ...] = ()) -> Block:
    """A page's records as a block: the JSON objects as an all-text table, anything else as a defect (so is a
    record whose fields outside the contract, `fields`, would take the page past `MAX_UNKNOWN_FIELDS`)."""
    try:
        if all(isinstance(r, dict) for r in records):
            names: set[str] = set()
            for r in records:
                names.update(r)  # type: ignore[arg-type]
            if UnknownFields(fields).admit(names) is None and not any(
                    nul_field(r) for r in records):  # type: ignore[arg-type]
                return Block.of(with_rows(records_to_table(records), len(records)))  # type: ignore[arg-type]
    except UnicodeEncodeError:  # a lone surrogate escape somewhere on the page: sort the records one by one
        pass
    unknown = UnknownFields(fields)
    good: list[dict] = []
    defects: list[Defect] = []
    for record in records:
        raw = json.dumps(record, ensure_ascii=True).encode("ascii")
        if not isinstance(record, dict):
            kind = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
                type(record), "null")
            defects.append(Defect("not_an_object", f"a JSON {kind} where a record (an object) was expected", raw))
            continue
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            defects.append(Defect("invalid_encoding", "holds an unpaired surrogate escape (not Unicode text)", raw))
            continue
        refused = unknown.admit(record)
        if refused is not None:
            defects.append(Defect(refused[0], refused[1], raw))
            continue
        holding = nul_field(record)
        if holding is not None:
            defects.append(Defect("nul_byte", f"{holding} holds a NUL (\\u0000; PostgreSQL text cannot hold one)",
                                  raw))
            continue
        good.append(record)
    return Block.of(with_rows(records_to_table(good), len(good)) if good else pa.table({}), defects)


def records_to_table(records: list[dict]) -> pa.Table:
    """JSON records → an Arrow table whose columns are all text (nested values as JSON text)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {}
    for name in names:
        values = [r.get(name) for r in records]
        columns[name] = pa.array([as_text(v) for v in values], pa.string())
    return pa.Table.from_pydict(columns)


def as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
