"""Registry authentication: challenges, scopes, credentials and the token flow.

Sans-IO parts (pure functions, unit-tested):

* :func:`parse_challenges` reads ``WWW-Authenticate`` (RFC 7235 section 4.1): one or
  more ``scheme param=value, ...`` challenges; values may be quoted strings with ``\\``
  escapes. Docker registries answer ``/v2/`` with ``Bearer realm="…",service="…"``
  (token auth, distribution's ``docs/spec/auth/token.md``) or ``Basic realm="…"``.
* :func:`scope` builds distribution's resource scopes:
  ``repository:library/busybox:pull,push``.
* :class:`Credentials`: what the user gave (``username``/``password``, or an OAuth
  ``identity_token``, or a ready ``registry_token``), as docker's ``AuthConfig``.

:class:`Authorizer` holds one registry's challenge and a token cache keyed by the set of
scopes (tokens carry their scopes, so a push token is not reused for another repository).
It asks its ``fetch_token`` coroutine (the transport's) for new tokens: a GET to the realm
with ``service`` and every ``scope`` and, when there are credentials, HTTP Basic auth
(token.md "Requesting a Token"); with an identity token, an OAuth2 POST with
``grant_type=refresh_token`` (``docs/spec/auth/oauth.md``). Tokens expire after their
``expires_in`` (60 s when absent, as the spec says), minus a margin.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

from conch.errors import ConchError, PermissionDenied

DEFAULT_TOKEN_TTL = 60  # token.md: "expires_in ... defaults to 60 seconds"
_MARGIN = 5


class Unauthorized(PermissionDenied):
    """The registry refused our credentials (HTTP 401, as dockerd answers /auth)."""

    http_status = 401


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # OAuth2 refresh token ("IdentityToken" of a login)
    registry_token: str = ""  # a bearer token to send as is

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.identity_token or self.registry_token)

    def basic(self) -> str:
        """The ``Authorization`` value for HTTP Basic."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


ANONYMOUS = Credentials()


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower-case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict, hash=False)


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges of a ``WWW-Authenticate`` value (scheme and param keys lower-cased).

    Items are separated by commas/whitespace; a bare token starts a new challenge and
    ``key=value`` items are its parameters."""
    out: list[Challenge] = []
    i, n = 0, len(header)
    while True:
        while i < n and header[i] in " \t,":
            i += 1
        if i >= n:
            return out
        j = i
        while j < n and header[j] not in " \t,=":
            j += 1
        name = header[i:j]
        if j < n and header[j] == "=":
            value, i = _value(header, j + 1)
            if out:  # a parameter before any scheme is malformed: dropped
                out[-1].params[name.lower()] = value
        else:
            out.append(Challenge(name.lower(), {}))
            i = j


def _value(s: str, i: int) -> tuple[str, int]:
    """A token or quoted-string starting at ``i``; (value, index after it)."""
    if i < len(s) and s[i] == '"':
        out = []
        i += 1
        while i < len(s) and s[i] != '"':
            if s[i] == "\\" and i + 1 < len(s):
                i += 1
            out.append(s[i])
            i += 1
        return "".join(out), i + 1
    j = i
    while j < len(s) and s[j] not in " \t,":
        j += 1
    return s[i:j], j


def scope(repository: str, actions: tuple[str, ...] | list[str] = ("pull",)) -> str:
    """``repository:<name>:<action,...>`` (distribution's resource scope)."""
    return f"repository:{repository}:{','.join(actions)}"


def merge_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Scopes for one resource merged (``pull`` + ``push`` -> ``pull,push``), sorted."""
    merged: dict[str, list[str]] = {}
    for s in scopes:
        kind_name, _, actions = s.rpartition(":")
        acts = merged.setdefault(kind_name, [])
        for a in actions.split(","):
            if a and a not in acts:
                acts.append(a)
    return tuple(sorted(f"{k}:{','.join(sorted(a))}" for k, a in merged.items()))


@dataclass(slots=True)
class _Token:
    value: str
    expires: float


class Authorizer:
    """Authorization headers for one registry and one set of credentials."""

    def __init__(self, credentials: Credentials, fetch_token) -> None:
        self.credentials = credentials
        self._fetch_token = fetch_token  # async (challenge, scopes, credentials) -> (token, ttl)
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}

    def learn(self, header: str) -> bool:
        """Take the challenge of a 401; False when it offers nothing we can answer."""
        for c in parse_challenges(header):
            if c.scheme in ("bearer", "basic"):
                self.challenge = c
                return True
        return False

    def invalidate(self, scopes: tuple[str, ...]) -> None:
        self._tokens.pop(merge_scopes(scopes), None)

    async def header(self, scopes: tuple[str, ...]) -> str | None:
        """The ``Authorization`` value for a request needing ``scopes`` (None: none)."""
        c = self.challenge
        if c is None:
            return None
        if c.scheme == "basic":
            if self.credentials.username:
                return self.credentials.basic()
            return None
        if self.credentials.registry_token:
            return f"Bearer {self.credentials.registry_token}"
        key = merge_scopes(scopes)
        cached = self._tokens.get(key)
        if cached is not None and cached.expires > time.monotonic():
            return f"Bearer {cached.value}"
        if "realm" not in c.params:
            raise ConchError("registry sent a Bearer challenge without a realm")
        value, ttl = await self._fetch_token(c, key, self.credentials)
        self._tokens[key] = _Token(value, time.monotonic() + max(ttl - _MARGIN, 1))
        return f"Bearer {value}"
