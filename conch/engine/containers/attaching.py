"""Attaching to a container's stdio through its shim's socket (``docker attach``, ``run``,
``start -a``) and resizing its TTY. A mixin of
:class:`conch.engine.containers.service.ContainerService`.
"""

from __future__ import annotations

import asyncio

from conch.engine.model import Container
from conch.errors import ConchError, Conflict


class Attaching:
    def exited_event(self, cid: str) -> asyncio.Event:
        """Set when the container's current run ends (set already when not running)."""
        ev = self._exited.get(cid)
        if ev is None:
            ev = asyncio.Event()
            ev.set()
        return ev

    async def attach(self, ref: str, conn, *, stdin: bool, stdout: bool, stderr: bool,
                     detach_keys: bytes = b"\x10\x11") -> None:
        """Pipe a hijacked connection to the container's shim until the container exits
        or the client goes away. Attaching to a container that is not running waits for
        its next start and is wired up before its process runs (``docker run``,
        ``docker start -a``), so no output is lost."""
        c = self.get(ref)
        if not c.state.running:
            fut = asyncio.get_running_loop().create_future()
            self._pending_attach.setdefault(c.id, []).append(fut)
            try:
                shim_conn = await fut  # (reader, writer) connected by _connect_pending
            except ConchError:
                return  # the start failed: its caller reports why; the stream just ends
        else:
            shim_conn = await self._connect_shim(c, stdin, stdout, stderr)
        await pipe(conn, *shim_conn, stdin=stdin, detach_keys=detach_keys)

    async def _connect_shim(self, c: Container, stdin: bool, stdout: bool, stderr: bool):
        reader, writer = await asyncio.open_unix_connection(self.paths.socket(c.id))
        request = {"type": "attach", "stdin": stdin and c.spec.open_stdin, "stdout": stdout,
                   "stderr": stderr, "stdin_once": c.spec.stdin_once}
        import json

        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        return reader, writer

    async def _connect_pending(self, c: Container) -> None:
        pending = [f for f in self._pending_attach.pop(c.id, []) if not f.done()]
        for fut in pending:
            try:
                # attach requests do not say which streams before start: all of them,
                # stdin when the container keeps it open
                fut.set_result(await self._connect_shim(c, True, True, True))
            except OSError as exc:
                fut.set_exception(exc)
        if pending:
            # The shim reads requests in connection order: once a later status request
            # is answered, every attach above is registered, so starting now loses no
            # output (without this, a fast container could print before it is read).
            from conch.shim import client as shim

            await asyncio.to_thread(shim.status, self.paths.socket(c.id))

    def resize(self, ref: str, height: int, width: int) -> None:
        from conch.shim import client as shim

        c = self.get(ref)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        if not c.spec.tty:
            return  # docker ignores resize of a container without a TTY
        shim.resize(self.paths.socket(c.id), height, width)


async def pipe(conn, reader, writer, *, stdin: bool, detach_keys: bytes = b"") -> None:
    """shim → client (already stdcopy-framed by the shim when there is no TTY) and
    client → shim (stdin, half-closed when the client half-closes). The detach keys on
    stdin end the session (the container keeps running), as dockerd's attach."""
    from conch.engine.containers.detach_keys import Detector

    detector = Detector(detach_keys)
    detached = asyncio.Event()

    async def out() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await conn.write(data)

    async def into() -> None:
        while True:
            data = await conn.reader.read(65536)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            data, detach = detector.feed(data)
            if detach:
                detached.set()
                return
            if data:
                writer.write(data)
                await writer.drain()

    tasks = [asyncio.ensure_future(out())]
    if stdin:
        tasks.append(asyncio.ensure_future(into()))
    closed = asyncio.ensure_future(conn.wait_closed())
    detaching = asyncio.ensure_future(detached.wait())
    tasks.append(detaching)
    try:
        await asyncio.wait([tasks[0], closed, detaching], return_when=asyncio.FIRST_COMPLETED)
    except Exception:  # noqa: BLE001
        pass
    finally:
        for t in tasks + [closed]:
            t.cancel()
        writer.close()

