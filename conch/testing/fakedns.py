"""A fake upstream DNS server and a small async DNS client, for the embedded DNS tests.

``FakeUpstream(address, port)`` serves UDP and TCP on a loopback address (tests never
talk to a real resolver). Zone: ``records`` maps lower-case names to IPv4 lists; names
in ``servfail`` get SERVFAIL; ``silent`` makes it swallow everything (a dead upstream).
UDP replies over 512 bytes (or the query's EDNS size) are sent truncated (TC, no
answers), as a real server does. ``queries`` logs ``(transport, name)``.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

__all__ = ["FakeUpstream", "free_port", "ask_udp", "ask_tcp"]


def free_port(address: str) -> int:
    """A port free for both UDP and TCP on ``address`` (a hint: someone may take it)."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind((address, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((address, port))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no free port on {address}")


class FakeUpstream:
    def __init__(self, address: str, port: int, *, records: dict[str, list[str]] | None = None):
        self.address, self.port = address, port
        self.records = records or {}
        self.servfail: set[str] = set()
        self.silent = False
        self.queries: list[tuple[str, str]] = []
        self._udp = self._tcp = None

    def _reply(self, data: bytes, transport: str) -> bytes | None:
        request = DNSRecord.parse(data)
        name = str(request.q.qname).rstrip(".").lower()
        self.queries.append((transport, name))
        if self.silent:
            return None
        reply = request.reply(aa=1)
        if name in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
        elif name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for ip in self.records[name]:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ip), ttl=30))
        packed = reply.pack()
        limit = next((rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT), 512)
        if transport == "udp" and len(packed) > limit:
            short = request.reply(aa=1)
            short.header.tc = 1
            packed = short.pack()
        return packed

    async def start(self) -> "FakeUpstream":
        loop = asyncio.get_running_loop()
        outer = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                out = outer._reply(data, "udp")
                if out is not None:
                    self.transport.sendto(out, addr)

        async def tcp(reader, writer):
            try:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                out = self._reply(await reader.readexactly(size), "tcp")
                if out is not None:
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()
                else:
                    await asyncio.sleep(30)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self._udp, _ = await loop.create_datagram_endpoint(
            Udp, local_addr=(self.address, self.port))
        self._tcp = await asyncio.start_server(tcp, self.address, self.port)
        return self

    async def stop(self) -> None:
        self._udp.close()
        self._tcp.close()


async def ask_udp(query: bytes, address: str, port: int, timeout: float = 3.0) -> bytes | None:
    """Send ``query`` over UDP; the reply, or None after ``timeout``."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((address, port))
        await loop.sock_sendall(sock, query)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
        except asyncio.TimeoutError:
            return None


async def ask_tcp(query: bytes, address: str, port: int, timeout: float = 3.0) -> bytes | None:
    """Send ``query`` over TCP; the reply, or None when the server hangs up."""
    reader, writer = await asyncio.open_connection(address, port)
    try:
        writer.write(struct.pack("!H", len(query)) + query)
        await writer.drain()
        (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout))
        return await asyncio.wait_for(reader.readexactly(size), timeout)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    finally:
        writer.close()
