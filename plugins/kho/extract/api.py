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
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote_plus

import httpx
import pyarrow as pa

from kho.config import RegistryCredentials
from kho.errors import ExtractError
from kho.sources.contract import Entity

MAX_PAGE_SIZE = 1000
TOKEN_PATH = "/oauth/token"


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The wait a response asks for in `Retry-After` (seconds or an HTTP date), or None if it names none."""
    raw = response.headers.get("Retry-After", "").strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """When a refused request is sent again, and after how long. The one place retrying is decided.

    Today it waits out a rate limit once (a 429's Retry-After); every other failure is raised at once.
    """

    rate_limit_waits: int = 1
    """How many 429s in a row one request may wait out."""
    max_wait_s: float = 60.0
    """A longer Retry-After is cut to this: a sync must not hang on one header."""
    sleep: Callable[[float], None] = time.sleep

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before sending `response`'s request again (`attempt` retries so far), or None."""
        if response.status_code == 429 and attempt < self.rate_limit_waits:
            wait = retry_after_seconds(response)
            return min(1.0 if wait is None else wait, self.max_wait_s)
        return None


@dataclass(frozen=True)
class ApiSource:
    """Where one registry's API lives and how kho is known to it (credentials come from `KhoConfig`)."""

    base_url: str
    page_size: int = 500
    timeout_s: float = 30.0
    credentials: RegistryCredentials | None = None
    """OAuth2 client credentials; None for a registry that needs no token."""
    token_url: str | None = None
    """The token endpoint; default: `<base_url>/oauth/token`."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)

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
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token_url = token_url
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
        token, expires_in = _parse_token(self.token_url, response)
        self._token = token
        # Renew a little early (a tenth of the lifetime, at most 30 s) so a token never expires in flight.
        self._expires_at = requested_at + expires_in - min(30.0, expires_in / 10)
        self.fetched += 1


def _basic_authorization(credentials: RegistryCredentials) -> str:
    """RFC 6749 section 2.3.1: id and secret are form-encoded, joined by a colon, then base64 encoded."""
    pair = f"{quote_plus(credentials.client_id)}:{quote_plus(credentials.client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def _parse_token(url: str, response: httpx.Response) -> tuple[str, float]:
    """(access_token, expires_in seconds) from a token response, or an ExtractError that says what to fix."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        error = body if isinstance(body, dict) else {}
        code = error.get("error", "")
        detail = error.get("error_description") or error.get("message")
        hint = (" Check KHO_REGISTRY_CLIENT_ID/KHO_REGISTRY_CLIENT_SECRET or $KHO_HOME/secrets/registry_client.json."
                if code == "invalid_client" else "")
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


def iter_pages(source: ApiSource, entity: Entity, since: dt.datetime | None = None) -> Iterator[pa.Table]:
    """Yield one all-text Arrow table per page, in the registry's stable (cursor, key) order."""
    if not 1 <= source.page_size <= MAX_PAGE_SIZE:
        raise ExtractError(f"page_size {source.page_size} is outside 1..{MAX_PAGE_SIZE}")
    params: dict[str, str | int] = {"page_size": source.page_size}
    if since is not None:
        params["updated_since"] = since.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    url = source.base_url.rstrip("/") + entity.endpoint
    auth = ClientCredentialsAuth(source.token_endpoint, source.credentials) if source.credentials else None
    with httpx.Client(timeout=source.timeout_s, auth=auth) as client:
        while True:
            body = _get_json(client, source, url, params, entity)
            records = body.get("data")
            if not isinstance(records, list):
                raise ExtractError(f"{entity.qualified_name}: {url} answered without a `data` list")
            if records:
                yield records_to_table(records)
            cursor = body.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor


def _get_json(client: httpx.Client, source: ApiSource, url: str, params: dict[str, str | int],
              entity: Entity) -> dict:
    response = _get(client, source, url, params, entity)
    if response.status_code != 200:
        try:
            detail = response.json().get("message", response.text)
        except (ValueError, AttributeError):
            detail = response.text[:200]
        hint = ""
        if response.status_code == 401 and source.credentials is None:
            hint = " (this registry needs client credentials: give ApiSource its RegistryCredentials)"
        raise ExtractError(f"{entity.qualified_name}: {url} answered {response.status_code}: {detail}{hint}")
    try:
        body = response.json()
    except ValueError as exc:
        raise ExtractError(f"{entity.qualified_name}: {url} answered with invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ExtractError(f"{entity.qualified_name}: {url} answered JSON that is not an object")
    return body


def _get(client: httpx.Client, source: ApiSource, url: str, params: dict[str, str | int],
         entity: Entity) -> httpx.Response:
    """One GET, sent again while the retry policy says so; the last response is returned, whatever it is."""
    attempt = 0
    while True:
        try:
            response = client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise ExtractError(f"{entity.qualified_name}: GET {url} failed ({type(exc).__name__}: {exc}). "
                               "Is the registry up?") from exc
        wait = source.retry.delay(response, attempt)
        if wait is None:
            return response
        source.retry.sleep(wait)
        attempt += 1


def records_to_table(records: list[dict]) -> pa.Table:
    """JSON records → an Arrow table whose columns are all text (nested values as JSON text)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {}
    for name in names:
        values = [r.get(name) for r in records]
        columns[name] = pa.array([_as_text(v) for v in values], pa.string())
    return pa.table(columns)


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
