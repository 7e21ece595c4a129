"""``GET /containers/{id}/attach/ws``: attach over a websocket, as moby's
``wsContainersAttach``.

dockerd's websocket attach always uses stdin, stdout and stderr; ``logs``, ``stream``
(both default false) and ``detachKeys`` are read from the query. Output is never
multiplexed (the websocket keeps the messages apart): from API 1.28 each chunk is a
binary message, before that a text one. Every message from the client is stdin.

The engine's attach speaks to a "hijacked connection" (``reader``, ``write``,
``write_stream``, ``wait_closed``, ``close``); :class:`WebSocketConn` is that over an
aiohttp websocket. The shim frames a non-TTY container's output with stdcopy headers,
so the adapter takes the frames apart and sends only their payloads.
"""

from __future__ import annotations

import asyncio
import struct

from aiohttp import WSMsgType, web

from conch.api.params import api_version, call_engine, engine_of, parse_bool


class WebSocketConn:
    def __init__(self, ws: web.WebSocketResponse, *, framed: bool, binary: bool) -> None:
        self.ws = ws
        self.reader = asyncio.StreamReader()
        self.multiplexed = False
        self._framed = framed  # the shim's output carries stdcopy headers to strip
        self._binary = binary
        self._pending = b""
        self._closed = asyncio.get_running_loop().create_future()
        self._pump = asyncio.ensure_future(self._read_client())

    @property
    def closed(self) -> bool:
        return self._closed.done()

    async def _read_client(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    self.reader.feed_data(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self.reader.feed_data(msg.data.encode())
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                    break
        finally:
            self.reader.feed_eof()
            if not self._closed.done():
                self._closed.set_result(None)

    async def _send(self, data: bytes) -> None:
        if not data or self.ws.closed:
            return
        if self._binary:
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data.decode(errors="replace"))

    async def write(self, data: bytes) -> None:
        if not self._framed:
            await self._send(data)
            return
        self._pending += data
        while len(self._pending) >= 8:
            size = struct.unpack(">I", self._pending[4:8])[0]
            if len(self._pending) < 8 + size:
                break
            payload, self._pending = self._pending[8:8 + size], self._pending[8 + size:]
            await self._send(payload)

    async def write_stream(self, stream: int, data: bytes) -> None:
        await self._send(data)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def close(self) -> None:
        self._pump.cancel()
        if not self.ws.closed:
            await self.ws.close()


async def attach_ws(request: web.Request) -> web.StreamResponse:
    from conch.engine.containers import detach_keys

    svc = engine_of(request).containers
    q = request.query
    c = await call_engine(svc.get, request.match_info["id"])
    keys = detach_keys.parse(q.get("detachKeys", ""))
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    conn = WebSocketConn(ws, framed=not c.spec.tty, binary=api_version(request) >= (1, 28))
    try:
        if parse_bool(q, "logs"):
            await replay_logs(svc, c, conn, stdout=True, stderr=True)
        if parse_bool(q, "stream"):
            await svc.attach(c.id, conn, stdin=True, stdout=True, stderr=True, detach_keys=keys)
    finally:
        await conn.close()
    return ws


async def replay_logs(svc, c, conn, *, stdout: bool, stderr: bool) -> None:
    """The container's log so far to an attach session (``logs=1``), stdout/stderr
    as asked; nothing for a driver that keeps none (dockerd sends nothing either)."""
    from conch.engine.containers import logs as clogs

    if not clogs.keeps_logs(c):
        return
    entries = await asyncio.to_thread(clogs.read, svc.paths.log(c.id), since_ns=0, until_ns=0,
                                      tail=-1)
    for entry in entries:
        if (entry.stream == "stdout" and stdout) or (entry.stream == "stderr" and stderr):
            await conn.write_stream(1 if entry.stream == "stdout" else 2, entry.data)
