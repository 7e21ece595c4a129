"""The embedded DNS server of user-defined networks (asyncio; runs in conchd's loop).

One UDP and one TCP listener per network, bound on the network's gateway address, port
53, in the host's namespace; containers get ``nameserver <gateway>`` in resolv.conf.
Docker's embedded DNS (libnetwork/resolver.go) is the model:

- A: ``lookup(network_id, client_ip, name)`` decides (names are lower-cased, without
  the trailing dot; when the listener has a ``domain``, ``name.<domain>`` is also tried
  as ``name``). A list of IPv4 strings -> those A records, TTL 600, in that order.
- Any other type for a known name (``lookup`` not None) -> NOERROR, no answer (docker
  answers AAAA that way on IPv4 networks): never NXDOMAIN for a name that exists.
- PTR ``d.c.b.a.in-addr.arpa`` -> ``reverse(network_id, "a.b.c.d")`` when given.
- Everything else is forwarded as received to the upstreams (:mod:`.dnsforward`) — the
  client's own when ``client_upstreams(network_id, client_ip)`` names some (a container
  run with ``--dns``, as docker's resolver forwards to them), else the server's: UDP
  queries over UDP (TCP when the reply is truncated), TCP queries over TCP; SERVFAIL
  when no upstream answers.
- Hostile input: anything that does not parse as a query is dropped (a TCP connection
  sending it is closed); responses are never answered (no reflection loops). A UDP reply
  larger than the client's limit (512, or its EDNS size up to 4096) goes out as the
  header and question with TC set, so the client retries over TCP. At most
  ``max_inflight`` forwarded queries are pending; more are dropped like a lossy link.

dnslib is imported lazily (DESIGN: conchd's import path stays lean until networks exist).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from dataclasses import dataclass, field
from typing import Callable

from conch.errors import Conflict, InvalidArgument, NotFound
from conch.network.dnsanswer import answer
from conch.network.dnsforward import forward, host_upstreams, parse_upstream

__all__ = ["DnsServer"]

log = logging.getLogger(__name__)

_UDP_MIN, _UDP_MAX = 512, 4096
_TCP_IDLE = 10.0  # seconds a TCP client may stay silent (RFC 7766 suggests seconds)

Lookup = Callable[[str, str, str], "list[str] | None"]
Reverse = Callable[[str, str], "str | None"]
ClientUpstreams = Callable[[str, str], "list[str] | None"]


@dataclass(slots=True)
class _Listener:
    network_id: str
    address: str
    port: int
    domain: str | None
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None
    clients: set[asyncio.StreamWriter] = field(default_factory=set)


class DnsServer:
    """Answers for the engine's names, forwards the rest. See the module contract."""

    def __init__(self, *, lookup: Lookup, upstreams: list[str] | None = None,
                 reverse: Reverse | None = None, timeout: float = 2.0,
                 max_inflight: int = 256, client_upstreams: ClientUpstreams | None = None):
        self._lookup = lookup
        self._reverse = reverse
        self._client_upstreams = client_upstreams
        try:
            self._upstreams = ([parse_upstream(u) for u in upstreams]
                               if upstreams is not None else host_upstreams())
        except ValueError as exc:
            raise InvalidArgument(f"invalid DNS upstream in {upstreams!r}: {exc}") from exc
        self._timeout = timeout
        self._max_inflight = max_inflight
        self._listeners: dict[str, _Listener] = {}
        self._tasks: set[asyncio.Task] = set()  # forwarded queries in flight (owned here)

    # -- listeners ---------------------------------------------------------------------

    async def add_listener(self, *, network_id: str, address: str, port: int = 53,
                           domain: str | None = None) -> None:
        """Serve ``network_id`` on ``address:port`` (UDP and TCP). The address must be
        assigned to an interface already. Same address again for the same network: no-op;
        for another network: Conflict."""
        old = self._listeners.get(address)
        if old is not None:
            if (old.network_id, old.port) == (network_id, port):
                return
            raise Conflict(f"DNS listener on {address} already serves network {old.network_id}")
        import dnslib  # noqa: F401  (lazy; fail here, not on the first query)

        lst = _Listener(network_id, address, port, domain.strip(".").lower() if domain else None)
        loop = asyncio.get_running_loop()
        udp_sock = _bind(socket.SOCK_DGRAM, address, port)
        try:
            tcp_sock = _bind(socket.SOCK_STREAM, address, port)
        except BaseException:
            udp_sock.close()
            raise
        lst.udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self, lst), sock=udp_sock)
        tcp_sock.listen(64)
        lst.tcp = await asyncio.start_server(lambda r, w: self._serve_tcp(lst, r, w),
                                             sock=tcp_sock)
        self._listeners[address] = lst

    async def remove_listener(self, *, address: str) -> None:
        """Stop serving on ``address`` (UDP, TCP and its open TCP clients); unknown: no-op."""
        lst = self._listeners.pop(address, None)
        if lst is None:
            return
        lst.udp.close()
        lst.tcp.close()
        for writer in list(lst.clients):
            writer.close()
        await lst.tcp.wait_closed()

    async def close(self) -> None:
        """Remove every listener and cancel the queries in flight."""
        for address in list(self._listeners):
            await self.remove_listener(address=address)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def listeners(self) -> list[tuple[str, str, int]]:
        """(network_id, address, port) of every listener."""
        return sorted((l.network_id, l.address, l.port) for l in self._listeners.values())

    # -- queries -----------------------------------------------------------------------

    def _upstreams_for(self, lst: _Listener, client_ip: str = "") -> list[tuple[str, int]]:
        upstreams = self._upstreams
        own = self._client_upstreams(lst.network_id, client_ip) if self._client_upstreams else None
        if own:
            parsed = []
            for text in own:
                try:
                    parsed.append(parse_upstream(text))
                except ValueError:
                    log.debug("skipping upstream %r of %s", text, client_ip)
            upstreams = parsed or upstreams
        # Never forward to ourselves (a host whose resolv.conf names a gateway address).
        ours = {(l.address, l.port) for l in self._listeners.values()}
        return [u for u in upstreams if u not in ours]

    def _spawn_forward(self, lst: _Listener, request, data: bytes, reply_to,
                       client_ip: str = "") -> None:
        if len(self._tasks) >= self._max_inflight:
            log.debug("dropping query from %s: %d forwards in flight", lst.address,
                      len(self._tasks))
            return
        task = asyncio.get_running_loop().create_task(
            self._forward(lst, request, data, reply_to, client_ip))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, lst: _Listener, request, data: bytes, reply_to,
                       client_ip: str = "") -> None:
        reply = await forward(data, self._upstreams_for(lst, client_ip), tcp=False,
                              timeout=self._timeout)
        reply_to(_fit(request, reply if reply is not None else _servfail(request),
                      _udp_limit(request)))

    def _answer(self, lst: _Listener, client_ip: str, data: bytes):
        return answer(data, network_id=lst.network_id, client_ip=client_ip,
                      domain=lst.domain, lookup=self._lookup, reverse=self._reverse)

    async def _serve_tcp(self, lst: _Listener, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        lst.clients.add(writer)
        client = (writer.get_extra_info("peername") or ("", 0))[0]
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), _TCP_IDLE)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]),
                                              _TCP_IDLE)
                request, reply = self._answer(lst, client, data)
                if request is None:
                    return  # garbage: hang up
                if reply is None:
                    reply = await forward(data, self._upstreams_for(lst, client), tcp=True,
                                          timeout=self._timeout) or _servfail(request)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            lst.clients.discard(writer)
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, lst: _Listener):
        self.server, self.lst = server, lst
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        request, reply = self.server._answer(self.lst, addr[0], data)
        if request is None:
            return
        send = lambda out: None if self.transport.is_closing() else self.transport.sendto(out, addr)  # noqa: E731
        if reply is not None:
            send(_fit(request, reply, _udp_limit(request)))
        else:
            self.server._spawn_forward(self.lst, request, data, send, addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS listener %s: %r", self.lst.address, exc)


def _udp_limit(request) -> int:
    from dnslib import QTYPE

    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(_UDP_MIN, min(int(rr.rclass), _UDP_MAX))
    return _UDP_MIN


def _fit(request, reply: bytes, limit: int) -> bytes:
    """``reply`` when it fits in ``limit`` bytes, else header + question with TC set."""
    if len(reply) <= limit:
        return reply
    short = request.reply()
    short.header.tc = 1
    short.header.rcode = reply[3] & 0x0F
    return short.pack()


def _servfail(request) -> bytes:
    from dnslib import RCODE

    reply = request.reply(aa=0)
    reply.header.rcode = RCODE.SERVFAIL
    return reply.pack()


def _bind(kind: int, address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
    try:
        if kind == socket.SOCK_STREAM:  # rebind over a previous daemon's TIME_WAITs
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"{address}:{port}/{'tcp' if kind == socket.SOCK_STREAM else 'udp'}"
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(f"DNS listener {where}: address already in use") from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise NotFound(f"DNS listener {where}: no interface has {address}") from exc
        raise InvalidArgument(f"DNS listener {where}: {exc.strerror}") from exc
    return sock
