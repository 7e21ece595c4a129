"""/containers/{id}/exec, /exec/{id}/start (hijacked), /exec/{id}/json, /exec/{id}/resize."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from conch.api.hijack import hijack
from conch.api.params import call_engine, engine_of, json_response
from conch.api.body import EXEC_CONFIG, EXEC_START, decode
from conch.api.container_json import console_size
from conch.engine.containers import detach_keys
from conch.engine.containers.execs import ExecConfig
from conch.errors import InvalidArgument


def register(add) -> None:
    add("POST", "/containers/{id}/exec", create)
    add("POST", "/exec/{id}/start", start)
    add("GET", "/exec/{id}/json", inspect)
    add("POST", "/exec/{id}/resize", resize)


async def _body(request, schema) -> dict:
    # typed as dockerd decodes it: a wrong type is a 400 in Go's words (conch.api.body)
    return decode(await request.read(), schema, empty={})


async def create(request: web.Request) -> web.StreamResponse:
    body = await _body(request, EXEC_CONFIG)
    cmd = body.get("Cmd") or []
    if isinstance(cmd, str):
        cmd = [cmd]
    config = ExecConfig(cmd=tuple(cmd), env=tuple(body.get("Env") or ()), user=body.get("User") or "",
                        working_dir=body.get("WorkingDir") or "", tty=bool(body.get("Tty")),
                        attach_stdin=bool(body.get("AttachStdin")),
                        attach_stdout=bool(body.get("AttachStdout", True)),
                        attach_stderr=bool(body.get("AttachStderr", True)),
                        privileged=bool(body.get("Privileged")),
                        console_size=console_size(body.get("ConsoleSize")),
                        detach_keys=body.get("DetachKeys") or "")
    detach_keys.parse(config.detach_keys)  # moby: "Invalid detach keys (…) provided" (400)
    ex = await call_engine(engine_of(request).execs.create, request.match_info["id"], config)
    return json_response({"Id": ex.id}, status=201)


async def start(request: web.Request) -> web.StreamResponse:
    execs = engine_of(request).execs
    body = await _body(request, EXEC_START)
    ex = execs.get(request.match_info["id"])
    size = console_size(body.get("ConsoleSize"))
    if body.get("Detach"):  # no streams: its output goes nowhere, as with dockerd
        await execs.start(ex.id, console_size=size, detach=True)
        return web.Response(status=200)
    # moby postContainerExecStart: the framing follows the start request's Tty: an exec
    # made with a tty but started with Tty false is multiplexed (its pty output as stdout)
    tty = bool(body.get("Tty"))
    keys = detach_keys.parse(ex.config.detach_keys)
    proc = await execs.start(ex.id, console_size=size)
    conn = await hijack(request, multiplexed=not tty)
    master = execs.pty(ex.id) if ex.config.tty else None
    try:
        if master is not None:
            await _pump_pty(conn, proc, master, stdin=ex.config.attach_stdin, keys=keys)
        else:
            await _pump(conn, proc, tty, keys=keys)
    finally:
        proc.release()  # what a process left running writes from now on is dropped
        await conn.close()
    return conn.response


async def _pump_pty(conn, proc, master: int, *, stdin: bool, keys: bytes = b"") -> None:
    """A tty exec: the pty master <-> the raw hijacked stream (and the runtime's own
    messages, if any, to the client too). ``master`` is ours to close."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader),
        os.fdopen(master, "rb", buffering=0, closefd=True))
    writer_fd = os.dup(master)
    detector = detach_keys.Detector(keys)
    detached = asyncio.Event()

    async def out(r) -> None:
        while True:
            try:
                data = await r.read(65536)
            except OSError:  # EIO: the process closed its side of the pty
                return
            if not data:
                return
            await conn.write_stream(1, data)

    async def into() -> None:
        while True:
            data = await conn.reader.read(65536)
            if not data:
                return
            data, detach = detector.feed(data)
            if detach:  # the session ends; the exec keeps running
                detached.set()
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(writer_fd, view)
                except BlockingIOError:
                    await asyncio.sleep(0.005)
                    continue
                except OSError:
                    return
                view = view[n:]

    outputs = [asyncio.ensure_future(out(reader))]
    if proc.stdout is not None:
        outputs.append(asyncio.ensure_future(out(proc.stdout)))
    feeder = asyncio.ensure_future(into()) if stdin else None
    closed = asyncio.ensure_future(conn.wait_closed())
    detaching = asyncio.ensure_future(detached.wait())
    try:
        await asyncio.wait([asyncio.ensure_future(proc.wait()), closed, detaching],
                           return_when=asyncio.FIRST_COMPLETED)
        if not detached.is_set():
            # what the process wrote last is still in the pty: read it out (EIO ends it)
            await asyncio.wait(outputs + [closed], timeout=2, return_when=asyncio.ALL_COMPLETED)
    finally:
        for task in outputs + [closed, detaching] + ([feeder] if feeder else []):
            task.cancel()
        os.close(writer_fd)
        # the read side holds a master fd too: a process that outlives the client (the
        # process killed below, or a child of it still on the pty) would otherwise keep it open
        transport.close()
        if proc.returncode is None and conn.closed and not detached.is_set():
            try:
                proc.kill()
            except ProcessLookupError:
                pass


async def _pump(conn, proc, tty: bool, *, keys: bytes = b"") -> None:
    detector = detach_keys.Detector(keys)
    detached = asyncio.Event()

    async def out(reader, stream: int) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await conn.write_stream(stream, data)

    async def into() -> None:
        while True:
            data = await conn.reader.read(65536)
            if not data:
                proc.stdin.close()
                return
            data, detach = detector.feed(data)
            if detach:  # the session ends; the exec keeps running, its stdin open
                detached.set()
                return
            try:
                proc.stdin.write(data)
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError):  # the process has exited
                return

    outputs = [asyncio.ensure_future(out(proc.stdout, 1))] if proc.stdout else []
    if proc.stderr is not None:
        outputs.append(asyncio.ensure_future(out(proc.stderr, 2)))
    feeder = asyncio.ensure_future(into()) if proc.stdin is not None else None
    closed = asyncio.ensure_future(conn.wait_closed())
    detaching = asyncio.ensure_future(detached.wait())
    try:
        if outputs:
            done, _ = await asyncio.wait([asyncio.gather(*outputs), closed, detaching],
                                         return_when=asyncio.FIRST_COMPLETED)
        if not detached.is_set():
            await asyncio.wait([asyncio.ensure_future(proc.wait()), closed, detaching],
                               return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in outputs + [closed, detaching] + ([feeder] if feeder else []):
            task.cancel()
        if proc.returncode is None and conn.closed and not detached.is_set():
            try:
                proc.kill()
            except ProcessLookupError:
                pass


async def inspect(request: web.Request) -> web.StreamResponse:
    ex = engine_of(request).execs.get(request.match_info["id"])
    cfg = ex.config
    return json_response({
        "ID": ex.id, "Running": ex.running, "ExitCode": ex.exit_code,
        "ProcessConfig": {"tty": cfg.tty, "entrypoint": cfg.cmd[0] if cfg.cmd else "",
                          "arguments": list(cfg.cmd[1:]), "privileged": cfg.privileged,
                          "user": cfg.user},
        "OpenStdin": cfg.attach_stdin, "OpenStderr": cfg.attach_stderr,
        "OpenStdout": cfg.attach_stdout, "CanRemove": False, "ContainerID": ex.container_id,
        "DetachKeys": cfg.detach_keys, "Pid": ex.pid,
    })


async def resize(request: web.Request) -> web.StreamResponse:
    execs = engine_of(request).execs
    try:
        h, w = int(request.query.get("h", 0)), int(request.query.get("w", 0))
    except ValueError as exc:
        raise InvalidArgument("h and w must be integers") from exc
    if not (0 <= h <= 65535 and 0 <= w <= 65535):  # struct winsize: unsigned short
        raise InvalidArgument(f"invalid terminal size {h}x{w}")
    await call_engine(execs.resize, request.match_info["id"], h, w)
    return web.Response(status=200)
