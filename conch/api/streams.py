"""Streamed responses: JSON lines (progress, events) and raw/multiplexed byte streams.

JSON lines: one compact JSON value and ``\\n`` per item, each item flushed as its own HTTP
chunk, which is how dockerd writes ``/events``, ``/images/create`` and ``/images/load``.
The response head (200) goes out before the first item, so a client sees the stream start
even when nothing has happened yet.

Errors after the head are in-band. In a progress stream (``progress=True``) a
``ConchError`` becomes docker's jsonmessage error line
``{"errorDetail": {"message": m}, "error": m}`` (the CLI prints it and exits 1); in any
other stream it ends the stream and is logged.

stdcopy framing (moby ``pkg/stdcopy``): a non-TTY container's stdout/stderr share one
byte stream as frames of an 8-byte header ``[stream, 0, 0, 0, size (uint32 BE)]`` and
``size`` bytes of payload; stream 0 = stdin, 1 = stdout, 2 = stderr, 3 = systemerr.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

from aiohttp import web

from conch.api.params import json_body
from conch.errors import ConchError

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_HEADER = struct.Struct(">BxxxL")
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

_DONE = object()


def stdcopy_frame(stream: int, data: bytes) -> bytes:
    """One stdcopy frame: header + payload."""
    return _HEADER.pack(stream, len(data)) + data


def progress_error(message: str) -> dict[str, Any]:
    """docker's jsonmessage error line."""
    return {"errorDetail": {"message": message}, "error": message}


async def aiter_items(items: AsyncIterable[Any] | Iterable[Any]):
    """Iterate an async iterable directly, or a sync one in a worker thread one item at a
    time (a sync engine generator may block on I/O between items)."""
    if hasattr(items, "__aiter__"):
        async for item in items:  # type: ignore[union-attr]
            yield item
        return
    iterator = iter(items)
    while True:
        item = await asyncio.to_thread(next, iterator, _DONE)
        if item is _DONE:
            return
        yield item


async def stream_json_lines(request: web.Request, items: AsyncIterable[Any] | Iterable[Any],
                            *, serialise: Callable[[Any], Any] = lambda x: x,
                            progress: bool = False,
                            content_type: str = "application/json") -> web.StreamResponse:
    """Send ``serialise(item)`` for each item as JSON lines; return the finished response.

    ``items`` may be an async iterable (awaited in the loop) or a sync iterable (stepped in
    a worker thread). The handler returns what this returns::

        return await stream_json_lines(request, engine.events.subscribe(...),
                                       serialise=event_json)
    """
    response = web.StreamResponse(status=200)
    response.content_type = content_type
    await response.prepare(request)
    try:
        async for item in aiter_items(items):
            await response.write(json_body(serialise(item)))
    except ConchError as exc:
        if not progress:
            log.warning("stream %s ended by error: %s", request.path, exc)
        else:
            await response.write(json_body(progress_error(str(exc))))
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as exc:  # noqa: BLE001 - after the head the error can only go in-band
        log.error("stream %s failed: %s", request.path, exc, exc_info=exc)
        if progress:
            await response.write(json_body(progress_error(str(exc))))
    await response.write_eof()
    return response


async def stream_bytes(request: web.Request, chunks: AsyncIterable[bytes] | Iterable[bytes],
                       *, content_type: str = RAW_STREAM,
                       headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Send byte chunks as they come (container logs, ``/images/get`` tarballs). For a
    multiplexed log stream the chunks are already ``stdcopy_frame``s."""
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = content_type
    await response.prepare(request)
    try:
        async for chunk in aiter_items(chunks):
            if chunk:
                await response.write(chunk)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as exc:  # noqa: BLE001 - the head is out: end the stream, log why
        log.error("byte stream %s failed: %s", request.path, exc, exc_info=exc)
        # No terminating chunk: drop the connection so the client sees a truncated body
        # rather than a complete-looking one.
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response
