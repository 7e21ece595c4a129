"""Connection hijack for attach and exec-start: after the response head the HTTP
connection becomes a raw bidirectional byte stream.

Wire protocol (moby ``api/server/router/container/container_routes.go`` ``postContainersAttach``
and ``httputils``' hijack): the client sends ``Connection: Upgrade`` and ``Upgrade: tcp``;
the daemon answers::

    HTTP/1.1 101 UPGRADED
    Content-Type: application/vnd.docker.raw-stream      (or .multiplexed-stream)
    Connection: Upgrade
    Upgrade: tcp
    Api-Version: 1.50 ...                                 (the usual dockerd headers)

and from then on the socket carries stdin (client -> daemon) and the output (daemon ->
client). Without the Upgrade headers (old docker-py paths) the head is
``HTTP/1.1 200 OK`` with the same Content-Type and the stream is the body, delimited by
the connection closing. The output is stdcopy-framed (``streams.stdcopy_frame``) unless the
container has a TTY; the ``multiplexed-stream`` content type is announced only to clients
of API >= 1.42, older ones get ``raw-stream`` with the same framing.

Half-close: when stdin ends, the docker CLI shuts down its write side (``CloseWrite``).
The reader then sees EOF while the daemon keeps writing output, so ``echo hi | docker run -i
... cat`` works. The daemon ends the session with :meth:`Hijacked.close`.

How it is done with aiohttp: aiohttp's request handler protocol closes the transport on
EOF and would parse stdin bytes as the next HTTP request, so :func:`hijack` swaps the
transport's protocol for :class:`_HijackProtocol` (asyncio ``Transport.set_protocol``)
before writing the head by hand. The handler keeps running for the whole session and
then returns ``conn.response``, a response whose prepare/write_eof do nothing (the head is
already out). ``connection_lost`` is forwarded to aiohttp's protocol so its connection
bookkeeping (and handler cancellation on disconnect) still works::

    async def attach(request):
        ...parse...
        async with await hijack(request, multiplexed=not tty) as conn:
            await call_engine(engine.attach, cid, stdin=conn.reader, output=conn)
        return conn.response
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from conch.api.params import api_version, docker_headers
from conch.api.streams import MULTIPLEXED_STREAM, RAW_STREAM, stdcopy_frame

log = logging.getLogger(__name__)

_READ_LIMIT = 1 << 20


class _HijackProtocol(asyncio.Protocol):
    """Feeds the client's bytes to a StreamReader, keeps the write half open on EOF,
    and does write flow control for :class:`Hijacked`."""

    def __init__(self, inner: asyncio.BaseProtocol | None, reader: asyncio.StreamReader) -> None:
        self._inner = inner
        self._reader = reader
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._reader.feed_data(data)

    def eof_received(self) -> bool:
        self._reader.feed_eof()
        return True  # half-close: keep our write side open

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake(None)

    def _wake(self, exc: BaseException | None) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)
        self._drain_waiters.clear()

    async def drain(self) -> None:
        if self.lost.done():
            raise ConnectionResetError("connection lost")
        if not self._paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._reader.at_eof():
            if exc is None:
                self._reader.feed_eof()
            else:
                self._reader.set_exception(exc)
        self._wake(ConnectionResetError("connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(exc)  # aiohttp's bookkeeping and handler cancellation


class _DoneResponse(web.StreamResponse):
    """What a hijacking handler returns: the head was written by hand, so aiohttp must
    write nothing more. It is never keep-alive, so aiohttp then closes the connection."""

    async def prepare(self, request: Any) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class Hijacked:
    """The raw session. ``reader`` yields the client's bytes (stdin) and reaches EOF when
    the client half-closes; ``write``/``write_stream`` send output; ``close_write`` sends
    our EOF; ``close`` ends the session. Usable as ``async with``."""

    def __init__(self, transport: asyncio.Transport, protocol: _HijackProtocol,
                 reader: asyncio.StreamReader, *, multiplexed: bool, status: int,
                 head_settle: float = 0.0) -> None:
        self._transport = transport
        self._protocol = protocol
        self.reader = reader
        self.multiplexed = multiplexed
        self.response: web.StreamResponse = _DoneResponse(status=status)
        # see _head_settle(): output before this time is held (the producer is not
        # slowed: a pty must be read while its process runs) and sent at that time
        self._held: bytearray | None = None
        if head_settle > 0:
            self._held = bytearray()
            asyncio.get_running_loop().call_later(head_settle, self._release)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(bytes(held))

    async def write(self, data: bytes) -> None:
        """Raw bytes to the client, with back-pressure."""
        if self._held is not None:
            self._held += data
            return
        if self._transport.is_closing():
            raise ConnectionResetError("hijacked connection is closed")
        if data:
            self._transport.write(data)
        await self._protocol.drain()

    async def write_stream(self, stream: int, data: bytes) -> None:
        """Output of ``stream`` (1 stdout, 2 stderr): a stdcopy frame when multiplexed,
        the bytes as they are otherwise (TTY)."""
        if not data:
            return
        await self.write(stdcopy_frame(stream, data) if self.multiplexed else data)

    def close_write(self) -> None:
        """Half-close our side (the client reads EOF, may still send)."""
        if not self._transport.is_closing() and self._transport.can_write_eof():
            self._transport.write_eof()

    @property
    def closed(self) -> bool:
        return self._protocol.lost.done()

    async def wait_closed(self) -> None:
        """Until the connection is gone (either side closed it)."""
        await asyncio.shield(self._protocol.lost)

    async def close(self) -> None:
        """End the session: buffered output is flushed, then the socket is closed."""
        if self._held is not None:  # a session shorter than the settle time
            await asyncio.sleep(DOCKER_PY_HEAD_SETTLE)
            self._release()
        self._transport.close()

    async def __aenter__(self) -> "Hijacked":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


#: docker-py reads the 101 head through http.client's buffered reader and then reads the
#: stream from the raw socket under it: output that reached the socket together with the
#: head sits in that buffer and is lost (attach?logs=1, a fast `exec_run`). dockerd's
#: output rarely follows its head that closely; for docker-py the first output waits
#: this long after the head, so the client has read the head on its own first.
DOCKER_PY_HEAD_SETTLE = 0.05


def _head_settle(request: web.Request) -> float:
    agent = request.headers.get("User-Agent", "")
    return DOCKER_PY_HEAD_SETTLE if agent.startswith("docker-sdk-python") else 0.0


def wants_upgrade(request: web.Request) -> bool:
    connection = request.headers.get("Connection", "").lower()
    return "upgrade" in connection and bool(request.headers.get("Upgrade"))


def _head(request: web.Request, content_type: str, upgrade: bool) -> bytes:
    if upgrade:
        lines = ["HTTP/1.1 101 UPGRADED", f"Content-Type: {content_type}",
                 "Connection: Upgrade", "Upgrade: tcp"]
    else:
        lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}"]
    lines += [f"{name}: {value}" for name, value in docker_headers().items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def hijack(request: web.Request, *, multiplexed: bool) -> Hijacked:
    """Take over ``request``'s connection; see the module docstring.

    Read the request body (e.g. exec-start's JSON) *before* calling this: afterwards the
    socket carries only the raw stream. ``multiplexed`` = the output is stdcopy-framed
    (no TTY)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client went away before the hijack")
    inner = request.protocol
    reader = asyncio.StreamReader(limit=_READ_LIMIT)
    reader.set_transport(transport)  # lets the reader pause reading when its buffer fills
    protocol = _HijackProtocol(inner, reader)
    # Bytes aiohttp already received past the request (only its pure-Python parser, which
    # knows ``Upgrade: tcp``, keeps them here); they are the first stdin bytes.
    tail = getattr(inner, "_message_tail", b"")
    transport.set_protocol(protocol)
    if tail:
        inner._message_tail = b""  # type: ignore[attr-defined]
        reader.feed_data(tail)
    if not transport.is_reading():
        transport.resume_reading()

    upgrade = wants_upgrade(request)
    if multiplexed and api_version(request) >= (1, 42):
        content_type = MULTIPLEXED_STREAM
    else:
        content_type = RAW_STREAM
    transport.write(_head(request, content_type, upgrade))
    return Hijacked(transport, protocol, reader, multiplexed=multiplexed,
                    status=101 if upgrade else 200, head_settle=_head_settle(request))
