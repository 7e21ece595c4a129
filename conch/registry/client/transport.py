"""HTTP to one registry: endpoint choice, auth retries, redirects, timeouts, errors.

Contract: :class:`Registries` is the daemon-wide configuration (``--insecure-registry``,
timeouts) and token caches; :meth:`Registries.host` gives a :class:`RegistryHost` for one
registry domain, one set of credentials and one ``aiohttp.ClientSession`` (the caller
owns the session: one per pull/push). :meth:`RegistryHost.request` returns an open
``aiohttp.ClientResponse`` whose status the caller checks (``raise_for`` helps).

Endpoint (as dockerd): ``docker.io`` is served by ``registry-1.docker.io``. HTTPS with the
system CAs always; a registry is *insecure* when it is ``localhost``, in 127.0.0.0/8 or
``::1``, or matches a ``--insecure-registry`` entry (``host[:port]`` or a CIDR), or is a
*name* that resolves to such an address (docker's ``isCIDRMatch``: ``myreg:5000`` mapped
to 127.0.0.1 in /etc/hosts is insecure, as under dockerd): for those we still try HTTPS
first (without verifying the certificate) and fall back to plain HTTP when the TLS
handshake or connection fails, then stick to what worked. Every other registry gets
HTTPS only, verified against the system CAs (OpenSSL's default paths, so
``SSL_CERT_FILE``/``SSL_CERT_DIR`` in conchd's environment are honoured).

Auth: the first request pings ``/v2/``; a 401 teaches the :class:`~.auth.Authorizer`
the challenge. Every request carries the header for its scopes; a 401 answer refreshes
the token once and retries (bodies are bytes, so they can be resent).

Redirects are followed here (at most 10), not by aiohttp, so that the Authorization
header is dropped whenever the redirect leaves the registry's host (blob storage such as
S3 or a CDN must never see the registry token; it authenticates by signed URL).

Bytes are exact: responses are never decompressed (``auto_decompress=False``, and we ask
for ``Accept-Encoding: identity``) because digests are over the bytes as stored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp
from yarl import URL

from conch.errors import ConchError, InvalidArgument, NotFound, PermissionDenied, Unavailable
from conch.registry.client.auth import ANONYMOUS, Authorizer, Challenge, Credentials, Unauthorized

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MAX_REDIRECTS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    connect: float = 30.0
    read: float = 60.0  # longest silence tolerated while reading a response


class Registries:
    """Daemon-wide registry settings; makes :class:`RegistryHost` objects."""

    def __init__(self, insecure: tuple[str, ...] | list[str] = (), *,
                 timeouts: Timeouts = Timeouts()) -> None:
        self.insecure = tuple(insecure)
        self.timeouts = timeouts
        self._nets = []
        for entry in self.insecure:
            try:
                self._nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue  # a host[:port] entry
        self._schemes: dict[str, str] = {}  # learned: domain -> "https"/"http"

    def is_insecure(self, domain: str) -> bool:
        host = _hostname(domain)
        if host == "localhost" or domain in self.insecure or host in self.insecure:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return self._insecure_ip(ip)

    def _insecure_ip(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return ip.is_loopback or any(ip in net for net in self._nets)

    async def wait_resolves_insecure(self, domain: str) -> bool:
        """Is the *name* in ``domain`` insecure by what it resolves to? docker resolves
        the index name and matches every address against the insecure CIDRs (127.0.0.0/8
        always among them); a failed lookup, an IP literal or Docker Hub: False."""
        host = _hostname(domain)
        if domain == DOCKER_HUB:
            return False
        try:
            ipaddress.ip_address(host)
            return False  # a literal: is_insecure() already decided
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                                 type=socket.SOCK_STREAM)
        except OSError:
            return False
        for info in infos:
            try:
                if self._insecure_ip(ipaddress.ip_address(str(info[4][0]).partition("%")[0])):
                    return True
            except ValueError:
                continue
        return False

    def session(self) -> aiohttp.ClientSession:
        t = self.timeouts
        timeout = aiohttp.ClientTimeout(total=None, connect=t.connect, sock_connect=t.connect,
                                        sock_read=t.read)
        # ssl=True: aiohttp's verifying context, built once when aiohttp was imported
        # (system CAs, SSL_CERT_FILE/SSL_CERT_DIR honoured); a context of our own per
        # session cost ~38 ms of CA loading on the event loop at every pull and push.
        connector = aiohttp.TCPConnector(limit=32, ssl=True)
        return aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False,
                                     headers={"User-Agent": "conch/0.1",
                                              "Accept-Encoding": "identity"})

    def host(self, session: aiohttp.ClientSession, domain: str,
             credentials: Credentials = ANONYMOUS) -> RegistryHost:
        return RegistryHost(self, session, domain, credentials)


class RegistryHost:
    """Requests to one registry with one set of credentials (see the module doc)."""

    def __init__(self, registries: Registries, session: aiohttp.ClientSession, domain: str,
                 credentials: Credentials) -> None:
        self.registries = registries
        self.session = session
        self.domain = domain
        self.api_host = DOCKER_HUB_API if domain == DOCKER_HUB else domain
        self.insecure = registries.is_insecure(domain)
        self.auth = Authorizer(credentials, self._fetch_token)
        self._base: URL | None = None
        self._ping_lock = asyncio.Lock()

    # --- endpoint and ping ------------------------------------------------------------

    @property
    def base(self) -> URL:
        assert self._base is not None, "ping() first"
        return self._base

    async def ping(self) -> int:
        """``GET /v2/`` once: picks the scheme, learns the auth challenge; the status."""
        async with self._ping_lock:
            if self._base is not None:
                return 200
            if not self.insecure:
                self.insecure = await self.registries.wait_resolves_insecure(self.domain)
            schemes = ["https", "http"] if self.insecure else ["https"]
            known = self.registries._schemes.get(self.domain)
            if known in schemes:
                schemes.remove(known)
                schemes.insert(0, known)
            last: BaseException | None = None
            for scheme in schemes:
                base = URL.build(scheme=scheme, authority=self.api_host)
                try:
                    async with self.session.get(base / "v2/", ssl=self._ssl(scheme),
                                                allow_redirects=True) as resp:
                        await resp.read()
                        self._base = base
                        self.registries._schemes[self.domain] = scheme
                        if resp.status == 401:
                            self.auth.learn(resp.headers.get("WWW-Authenticate", ""))
                        return resp.status
                except (aiohttp.ClientConnectionError, ssl.SSLError, asyncio.TimeoutError) as exc:
                    log.debug("ping %s://%s failed: %s", scheme, self.api_host, exc)
                    last = exc
            if isinstance(last, aiohttp.ClientConnectorCertificateError):
                # reachable, but not trusted: "unreachable" would send users the wrong way
                raise Unavailable(f"registry {self.domain}: {_describe(last)}") from last
            raise Unavailable(f"registry {self.domain} is unreachable: {_describe(last)}") from last

    def _ssl(self, scheme: str) -> Any:
        if scheme != "https":
            return None
        return False if self.insecure else None  # False: no certificate verification

    # --- requests ---------------------------------------------------------------------

    async def request(self, method: str, path: str, *, scopes: tuple[str, ...] = (),
                      headers: Mapping[str, str] | None = None, data: bytes | None = None,
                      params: Mapping[str, str] | None = None, url: URL | None = None,
                      what: str = "") -> aiohttp.ClientResponse:
        """``method`` ``/v2/<path>`` (or an absolute ``url``, e.g. an upload Location)."""
        await self.ping()
        target = url if url is not None else self.base.join(URL("/v2/" + path, encoded=False))
        if params:
            target = target.update_query(params)
        for attempt in (0, 1):
            auth = await self.auth.header(scopes)
            resp = await self._follow(method, target, headers, data, auth, what)
            if resp.status != 401 or attempt == 1:
                return resp
            header = resp.headers.get("WWW-Authenticate", "")
            resp.release()
            if not self.auth.learn(header):
                break
            self.auth.invalidate(scopes)
        raise Unauthorized(f"{what or path}: unauthorized: authentication required")

    async def _follow(self, method: str, url: URL, headers: Mapping[str, str] | None,
                      data: bytes | None, auth: str | None, what: str) -> aiohttp.ClientResponse:
        hdrs = dict(headers or {})
        origin = url.origin()
        for _ in range(MAX_REDIRECTS + 1):
            if auth is not None and url.origin() == origin:
                hdrs["Authorization"] = auth
            else:
                hdrs.pop("Authorization", None)  # never leak the token to blob storage
            try:
                resp = await self.session.request(method, url, headers=hdrs, data=data,
                                                  allow_redirects=False, ssl=self._ssl(url.scheme))
            except asyncio.TimeoutError as exc:
                raise Unavailable(f"registry {self.domain}: timed out "
                                  f"({self.registries.timeouts.read:g}s) on {what or url.path}") from exc
            except aiohttp.ClientError as exc:
                raise Unavailable(f"registry {self.domain}: {what or url.path}: {_describe(exc)}") from exc
            if resp.status not in (301, 302, 303, 307, 308) or "Location" not in resp.headers:
                return resp
            location = url.join(URL(resp.headers["Location"], encoded=True))
            resp.release()
            if resp.status == 303:
                method, data = "GET", None
            url = location
        raise Unavailable(f"registry {self.domain}: too many redirects on {what or url.path}")

    async def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...],
                           credentials: Credentials) -> tuple[str, int]:
        realm = URL(challenge.params["realm"])
        service = challenge.params.get("service", "")
        if credentials.identity_token:  # OAuth2 refresh-token grant (oauth.md)
            form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token,
                    "client_id": "conch", "service": service, "scope": " ".join(scopes)}
            call = self.session.post(realm, data=form, ssl=self._ssl(realm.scheme))
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            headers = {} if credentials.anonymous else {"Authorization": credentials.basic()}
            call = self.session.get(realm.update_query(query), headers=headers,
                                    ssl=self._ssl(realm.scheme))
        try:
            async with call as resp:
                body = await resp.read()
                if resp.status in (401, 403):
                    raise Unauthorized(f"failed to authorize: {registry_error(body, resp.status)}")
                if resp.status != 200:
                    raise Unavailable(f"token server {realm.host}: HTTP {resp.status}")
                doc = _json(body)
        except aiohttp.ClientError as exc:
            raise Unavailable(f"token server {realm.host}: {_describe(exc)}") from exc
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise ConchError(f"token server {realm.host} sent no token")
        ttl = doc.get("expires_in")
        return token, ttl if isinstance(ttl, int) and ttl > 0 else 60


async def raise_for(resp: aiohttp.ClientResponse, what: str, *, ok: tuple[int, ...] = (200,)) -> None:
    """Raise the conch error kind for a registry error response (body consumed)."""
    if resp.status in ok:
        return
    body = await resp.read()
    resp.release()
    message = f"{what}: {registry_error(body, resp.status)}"
    if resp.status == 404:
        raise NotFound(message)
    if resp.status == 401:
        raise Unauthorized(message)
    if resp.status == 403:
        raise PermissionDenied(message)
    if resp.status in (400, 405, 413, 416):
        raise InvalidArgument(message)
    if resp.status >= 500:
        raise Unavailable(message)
    raise ConchError(message)


def registry_error(body: bytes, status: int) -> str:
    """distribution's ``{"errors": [{code, message}]}`` as docker prints it
    (``manifest unknown: manifest unknown``), else the status."""
    try:
        doc = _json(body)
        errs = doc.get("errors")
        if isinstance(errs, list) and errs:
            parts = []
            for e in errs:
                code = str(e.get("code", "")).lower().replace("_", " ")
                msg = str(e.get("message", ""))
                parts.append(f"{code}: {msg}" if code and msg else code or msg)
            return "; ".join(parts)
    except ConchError:
        pass
    return _STATUS_TEXT.get(status, f"HTTP {status}")  # HEAD answers have no body


_STATUS_TEXT = {401: "unauthorized: authentication required",
                403: "denied: requested access to the resource is denied",
                404: "not found"}


def _json(body: bytes) -> dict:
    import json

    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConchError(f"registry sent invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConchError("registry sent a JSON value that is not an object")
    return doc


def _hostname(domain: str) -> str:
    if domain.startswith("["):
        return domain[1:].partition("]")[0]
    return domain.rpartition(":")[0] if domain.count(":") == 1 else domain


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no endpoint"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        # docker: "tls: failed to verify certificate: x509: certificate signed by unknown
        # authority"; OpenSSL's reason ("unable to get local issuer certificate", "Hostname
        # mismatch, ...") is the useful part of aiohttp's long message
        cert_err = exc.certificate_error
        reason = getattr(cert_err, "verify_message", "") or str(cert_err)
        return f"tls: failed to verify certificate: {reason}"
    return str(exc) or type(exc).__name__
