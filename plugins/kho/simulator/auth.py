"""Who may call the simulated registries, and how often: OAuth2 client credentials and a per-client rate limit.

Real registries sit behind an OAuth2 gateway (RFC 6749 section 4.4, client-credentials grant; RFC 6750 bearer
tokens) that also throttles each client. The simulator does the same so that kho's client is written against
the real flow: fetch a token, present it, refresh it when it expires, slow down on 429.
Time comes from an injectable clock (seconds, monotonic), so tests expire tokens and refill buckets instantly.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote_plus

from kho.config import RegistryCredentials

Clock = Callable[[], float]
"""Seconds on a monotonic scale: `time.monotonic` in service, a hand-advanced counter in tests."""

REALM = "kho-simulator"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class OAuthError(Exception):
    """A refused token request or API call, with the RFC 6749/6750 error code and what to do about it."""

    def __init__(self, status: int, code: str, message: str, *, www_authenticate: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.www_authenticate = www_authenticate


@dataclass(frozen=True)
class IssuedToken:
    """What the token endpoint answers: RFC 6749 section 5.1."""

    access_token: str
    expires_in: int
    token_type: str = "Bearer"

    def body(self) -> dict[str, str | int]:
        return {"access_token": self.access_token, "token_type": self.token_type, "expires_in": self.expires_in}


class TokenIssuer:
    """Issues opaque bearer tokens to the one configured client and checks them until they expire.

    Without credentials (an open registry) it issues a token to any client that authenticates at all, so that
    a client configured with credentials also works against an open simulator.
    """

    def __init__(self, credentials: RegistryCredentials | None, *, ttl_s: float, clock: Clock) -> None:
        if ttl_s <= 0:
            raise ValueError(f"token_ttl_s must be positive, not {ttl_s}")
        self._credentials = credentials
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self.issued = 0
        """How many tokens were issued: tests check that a client reuses its token."""

    def issue(self, *, authorization: str | None, content_type: str | None, body: bytes) -> IssuedToken:
        """Answer a token request (form body, client authenticated by HTTP Basic or in the form)."""
        form = _token_form(content_type, body)
        candidates = _client_authentication(authorization, form)
        accepted = [pair for pair in candidates if self._accepts(*pair)]
        if not accepted:
            raise OAuthError(401, "invalid_client", "unknown client or wrong client secret; use the credentials "
                             "from KHO_REGISTRY_CLIENT_ID/KHO_REGISTRY_CLIENT_SECRET or "
                             "$KHO_HOME/secrets/registry_client.json",
                             www_authenticate=f'Basic realm="{REALM}"')
        grant = form.get("grant_type")
        if grant is None:
            raise OAuthError(400, "invalid_request", "the token request needs grant_type=client_credentials")
        if grant != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type",
                             f"grant_type must be client_credentials, not {grant!r}")
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (accepted[0][0], now + self._ttl_s)
            self.issued += 1
        return IssuedToken(access_token=token, expires_in=max(1, math.floor(self._ttl_s)))

    def _accepts(self, client_id: str, client_secret: str) -> bool:
        expected = self._credentials
        if expected is None:
            return True
        # Both compared, in constant time: the answer must not tell which of the two was wrong, or how much.
        same_id = hmac.compare_digest(client_id.encode(), expected.client_id.encode())
        same_secret = hmac.compare_digest(client_secret.encode(), expected.client_secret.encode())
        return same_id and same_secret

    def client_of(self, authorization: str | None) -> str:
        """The client id behind a request's `Authorization: Bearer` header; OAuthError (401) if there is none."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            # RFC 6750 section 3.1: a request without credentials gets the challenge but no error code.
            raise OAuthError(401, "missing_token", "this API needs an access token: POST /oauth/token with "
                             "grant_type=client_credentials, then send 'Authorization: Bearer <access_token>'",
                             www_authenticate=f'Bearer realm="{REALM}"')
        with self._lock:
            client_id, expires_at = self._tokens.get(token, ("", -math.inf))
        if expires_at <= self._clock():
            why = "the access token expired" if client_id else "the access token is unknown"
            raise OAuthError(401, "invalid_token", f"{why}; get a new one from POST /oauth/token",
                             www_authenticate=f'Bearer realm="{REALM}", error="invalid_token", '
                                              f'error_description="{why}"')
        return client_id


def _token_form(content_type: str | None, body: bytes) -> dict[str, str]:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != FORM_CONTENT_TYPE:
        raise OAuthError(400, "invalid_request",
                         f"the token request must be a form ({FORM_CONTENT_TYPE}), not {media_type or 'empty'}")
    try:
        params = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "the token request body is not a UTF-8 form") from None
    repeated = sorted(name for name, values in params.items() if len(values) > 1)
    if repeated:
        raise OAuthError(400, "invalid_request", f"parameters given more than once: {', '.join(repeated)}")
    return {name: values[0] for name, values in params.items()}


def _client_authentication(authorization: str | None, form: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (client_id, client_secret) the client may have meant, from HTTP Basic or the form; never both.

    RFC 6749 section 2.3.1 form-encodes id and secret inside HTTP Basic, but many HTTP libraries send them as
    they are; like most gateways, accept either reading.
    """
    in_form = "client_id" in form or "client_secret" in form
    if authorization is not None:
        if in_form:
            raise OAuthError(400, "invalid_request", "authenticate the client one way only: HTTP Basic or "
                             "client_id/client_secret in the form, not both")
        return _basic(authorization)
    if not in_form:
        raise OAuthError(401, "invalid_client", "no client authentication: send HTTP Basic with the client id "
                         "and secret, or client_id and client_secret in the form",
                         www_authenticate=f'Basic realm="{REALM}"')
    return [(form.get("client_id", ""), form.get("client_secret", ""))]


def _basic(authorization: str) -> list[tuple[str, str]]:
    scheme, _, encoded = authorization.strip().partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError(scheme)
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        if not sep:
            raise ValueError("no colon")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise OAuthError(401, "invalid_client", "the Authorization header must be HTTP Basic with the "
                         "form-encoded client id and secret", www_authenticate=f'Basic realm="{REALM}"') from None
    return [(user, password), (unquote_plus(user), unquote_plus(password))]


class RateLimiter:
    """A token bucket per client: `burst` requests at once, refilled at `rate_per_s`; the gateway's throttle."""

    def __init__(self, rate_per_s: float, burst: int, *, clock: Clock) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate_per_s > 0 and burst >= 1, not {rate_per_s} and {burst}")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def admit(self, client: str) -> int | None:
        """Take one request from `client`'s bucket: None if admitted, else the whole seconds until one is free."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(client, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return None
            self._buckets[client] = (tokens, now)
        # Retry-After is whole seconds (RFC 9110 section 10.2.3); round up so the retry is admitted.
        return max(1, math.ceil((1.0 - tokens) / self._rate))
