"""Forwarding DNS queries the embedded server does not answer itself to the upstream
resolvers (asyncio, raw wire bytes: the query is passed on as the client sent it).

Contract of :func:`forward`: try each upstream in order; over UDP (a fresh socket per
query, connected to the upstream, so replies from anyone else and stale ids are
ignored) unless the client came over TCP; a UDP reply with TC set is asked again over
TCP (RFC 7766); SERVFAIL/REFUSED or a timeout moves on to the next upstream. Returns the
first good reply, else the last SERVFAIL/REFUSED seen, else ``None`` (the caller answers
SERVFAIL). Upstreams are ``(host, port)``; :func:`host_upstreams` reads them from
``/etc/resolv.conf`` as libc does (``nameserver`` lines, port 53).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time

__all__ = ["forward", "host_upstreams", "parse_upstream"]

log = logging.getLogger(__name__)

_RCODE_SERVFAIL, _RCODE_REFUSED = 2, 5
_TC, _QR = 0x02, 0x80  # bits of header byte 2


def parse_upstream(text: str) -> tuple[str, int]:
    """``"1.2.3.4"``, ``"1.2.3.4:5353"``, ``"::1"`` or ``"[::1]:5353"`` -> (host, port)."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = int(p)
    ipaddress.ip_address(host)  # ValueError for a name: upstreams are addresses
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def host_upstreams(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The host's nameservers (port 53); unparsable lines are skipped."""
    out: list[tuple[str, int]] = []
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                out.append((str(ipaddress.ip_address(fields[1].split("%")[0])), 53))
            except ValueError:
                continue
    return out


def _rcode(reply: bytes) -> int:
    return reply[3] & 0x0F


def _matches(reply: bytes, query: bytes) -> bool:
    return len(reply) >= 12 and reply[:2] == query[:2] and bool(reply[2] & _QR)


async def _udp(query: bytes, upstream: tuple[str, int], timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in upstream[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        sock.connect(upstream)
        await loop.sock_sendall(sock, query)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
            if _matches(reply, query):
                return reply
    return None


async def _tcp(query: bytes, upstream: tuple[str, int], timeout: float) -> bytes | None:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(*upstream)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(size)
        finally:
            writer.close()

    reply = await asyncio.wait_for(exchange(), timeout)
    return reply if _matches(reply, query) else None


async def forward(query: bytes, upstreams: list[tuple[str, int]], *, tcp: bool,
                  timeout: float = 2.0) -> bytes | None:
    """The upstreams' reply to ``query`` (see the module contract)."""
    fallback = None
    for upstream in upstreams:
        try:
            if tcp:
                reply = await _tcp(query, upstream, timeout)
            else:
                reply = await _udp(query, upstream, timeout)
                if reply is not None and reply[2] & _TC:
                    try:  # the whole answer over TCP; else the truncated one will do
                        reply = await _tcp(query, upstream, timeout) or reply
                    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                        pass
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, EOFError) as exc:
            log.debug("upstream %s:%d: %r", *upstream, exc)
            continue
        if reply is None:
            continue
        if _rcode(reply) in (_RCODE_SERVFAIL, _RCODE_REFUSED):
            fallback = reply
            continue
        return reply
    return fallback
