"""Authentication and authorisation: htpasswd users, Docker's token flow, scopes.

Who may do what (the simple rule this registry chose, no ACL file): every user in the
htpasswd file gets ``pull`` and ``push`` on every repository and ``*`` on
``registry:catalog:*``. With ``--anonymous-pull`` anyone gets ``pull`` (and the catalog
stays for users). Without ``--htpasswd`` the registry is open to all.

Tokens (docker/distribution "Token Authentication Specification"): ``GET /token?service=
&scope=...`` with Basic credentials (or none, for anonymous pull) returns a JWT signed
with HMAC-SHA256 under a key kept in ``ROOT/auth/token.key`` (0600, made on first start).
Its ``access`` claim lists the granted scopes (the requested ones, cut down to what the
user may do); every /v2/ request re-checks the token's signature, audience, expiry and
scopes. Clients treat tokens as opaque, so HS256 (rather than RS256 with a certificate
chain) is enough: only this registry verifies them.

Basic credentials are also accepted directly on /v2/ requests. bcrypt is slow on
purpose; verified (user, password-hash) pairs are cached for a minute so a push's many
requests do not each pay for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SERVICE = "conch-registry"
TOKEN_TTL = 300
_CACHE_TTL = 60.0
_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Scope:
    """``type:name:actions`` (e.g. ``repository:library/busybox:pull,push``)."""

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        # The name may contain ':' (registry:catalog:*, or a name with a port): the type is
        # before the first colon and the actions after the last.
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name:
            return None
        return cls(kind, name, frozenset(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


class Htpasswd:
    """Users from an htpasswd file of bcrypt entries (``htpasswd -B``); re-read on change."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._mtime = -1.0
        self._users: dict[str, bytes] = {}
        self._verified: dict[tuple[str, str], float] = {}
        self._load()

    def _load(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime == self._mtime:
            return
        users = {}
        for line in self.path.read_text().splitlines():
            user, sep, hashed = line.strip().partition(":")
            if sep and hashed.startswith(("$2y$", "$2a$", "$2b$")):
                users[user] = hashed.encode()
        self._users, self._mtime, self._verified = users, mtime, {}

    def _decoy(self, bcrypt) -> bytes:
        """A hash of a random password at the cost the file's own entries use."""
        if getattr(self, "_decoy_hash", None) is None:
            cost = 12
            for hashed in self._users.values():
                try:
                    cost = int(hashed[4:6])
                    break
                except ValueError:
                    pass
            self._decoy_hash = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=cost))
        return self._decoy_hash

    def check(self, user: str, password: str) -> bool:
        """True when ``password`` is ``user``'s; constant-time bcrypt, cached briefly."""
        import bcrypt  # lazily: only registries with --htpasswd need it

        self._load()
        key = (user, hashlib.sha256(password.encode()).hexdigest())
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return True
        hashed = self._users.get(user)
        if hashed is None:
            # the same bcrypt work as for a known user, so that the answer's timing does
            # not tell which user names exist
            bcrypt.checkpw(password.encode(), self._decoy(bcrypt))
            return False
        # htpasswd writes $2y$, which is $2b$ under another name.
        ok = bcrypt.checkpw(password.encode(), b"$2b$" + hashed[4:])
        if ok:
            self._verified[key] = now + _CACHE_TTL
        return ok


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """HS256 JWTs carrying an ``access`` claim; the key lives in ``auth/token.key``."""

    def __init__(self, root: str | os.PathLike, service: str = SERVICE):
        self.service = service
        self._key = _load_key(Path(root) / "auth" / "token.key")

    def issue(self, subject: str, scopes: list[Scope], ttl: int = TOKEN_TTL,
              now: float | None = None) -> str:
        now = int(time.time() if now is None else now)
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "iss": self.service, "sub": subject, "aud": self.service,
            "iat": now, "nbf": now - 10, "exp": now + ttl, "jti": secrets.token_hex(8),
            "access": [{"type": s.type, "name": s.name, "actions": sorted(s.actions)}
                       for s in scopes],
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = hmac.new(self._key, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(sig)}"

    def verify(self, token: str, now: float | None = None) -> tuple[str, list[Scope]] | None:
        """``(subject, scopes)`` of a valid token, None for any invalid one."""
        try:
            header_b64, claims_b64, sig_b64 = token.split(".")
            expected = hmac.new(self._key, f"{header_b64}.{claims_b64}".encode(),
                                hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(sig_b64)):
                return None
            if json.loads(_unb64(header_b64)).get("alg") != "HS256":
                return None
            claims = json.loads(_unb64(claims_b64))
            now = time.time() if now is None else now
            if claims.get("aud") != self.service or not (claims["nbf"] <= now < claims["exp"]):
                return None
            scopes = [Scope(a["type"], a["name"], frozenset(a["actions"]))
                      for a in claims.get("access", [])]
            return str(claims.get("sub", "")), scopes
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _load_key(path: Path) -> bytes:
    """The signing key at ``path``, made on first use. The file appears only whole
    (temp file, fsync, ``link``: another process starting at the same moment keeps the
    first key made), and a short one (a crash of an older version between create and
    write left it empty) is replaced: an empty HMAC key would let anyone forge tokens."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for _ in range(3):
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = b""
        if len(key) >= _KEY_BYTES:
            return key
        tmp = path.parent / f".token.key.tmp-{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, secrets.token_bytes(_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if key or path.exists():  # short: replace it
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # fails if another process made one meanwhile
                except FileExistsError:
                    pass
        finally:
            tmp.unlink(missing_ok=True)
    raise OSError(f"cannot make a usable token key at {path}")


class Authorizer:
    """The policy: what a user (or ``None``, anonymous) may do with a scope."""

    def __init__(self, users: Htpasswd | None, anonymous_pull: bool):
        self.users = users
        self.anonymous_pull = anonymous_pull

    @property
    def enabled(self) -> bool:
        return self.users is not None

    def allowed(self, user: str | None, scope: Scope) -> frozenset[str]:
        """The subset of ``scope.actions`` granted (``*`` counts as every action)."""
        if user is not None:
            if scope.type == "repository":
                return scope.actions & {"pull", "push", "delete", "*"}
            if scope.type == "registry" and scope.name == "catalog":
                return scope.actions & {"*"}
            return frozenset()
        if self.anonymous_pull and scope.type == "repository":
            return scope.actions & {"pull"}
        return frozenset()

    def grant(self, user: str | None, requested: list[Scope]) -> list[Scope]:
        out = []
        for scope in requested:
            actions = self.allowed(user, scope)
            if actions:
                out.append(Scope(scope.type, scope.name, actions))
        return out


def covers(granted: list[Scope], needed: Scope) -> bool:
    """True when the granted scopes include every action of ``needed``."""
    have: set[str] = set()
    for s in granted:
        if s.type == needed.type and s.name == needed.name:
            have |= s.actions
    return "*" in have or needed.actions <= have


def parse_basic(header: str) -> tuple[str, str] | None:
    """``Authorization: Basic ...`` -> (user, password), None if not Basic or malformed."""
    kind, _, value = header.partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None
