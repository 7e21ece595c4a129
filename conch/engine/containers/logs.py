"""Reading a container's json-file logs (written by the shim), as ``docker logs`` does.

Each line of ``<id>-json.log`` (and its rotated ``.1``, ``.2``, … older files) is
``{"log": "...", "stream": "stdout"|"stderr", "time": RFC3339Nano}``. ``read`` yields
entries oldest first with the ``since``/``until``/``tail`` filters applied; ``follow``
then keeps yielding new lines until the container stops.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    data: bytes
    time: str  # RFC3339Nano as written

    def time_ns(self) -> int:
        return rfc3339_to_ns(self.time)


def rfc3339_to_ns(text: str) -> int:
    import calendar

    date, _, frac = text.rstrip("Z").partition(".")
    secs = calendar.timegm(__import__("time").strptime(date, "%Y-%m-%dT%H:%M:%S"))
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return secs * 1_000_000_000 + nanos


def files(log_path: str) -> list[str]:
    """Rotated files oldest first, then the live one."""
    out = []
    n = 1
    while os.path.exists(f"{log_path}.{n}"):
        out.append(f"{log_path}.{n}")
        n += 1
    out.reverse()
    if os.path.exists(log_path):
        out.append(log_path)
    return out


def _parse(line: bytes) -> Entry | None:
    try:
        obj = json.loads(line)
        return Entry(obj.get("stream", "stdout"), obj.get("log", "").encode(), obj.get("time", ""))
    except (ValueError, AttributeError):
        return None  # a torn or foreign line: skipped, as docker does


def read(log_path: str, *, since_ns: int = 0, until_ns: int = 0, tail: int = -1) -> list[Entry]:
    return snapshot(log_path, since_ns=since_ns, until_ns=until_ns, tail=tail)[0]


def snapshot(log_path: str, *, since_ns: int = 0, until_ns: int = 0,
             tail: int = -1) -> tuple[list[Entry], int]:
    """``read``, plus the offset in the live file where what was read ends (its last
    whole line): a ``follow`` from there neither repeats nor skips a line written while
    we read."""
    entries = []
    offset = 0
    for path in files(log_path):
        try:
            with open(path, "rb") as f:
                if path == log_path:  # the live file: whole lines only, up to now
                    data = f.read()
                    offset = data.rfind(b"\n") + 1
                    lines = data[:offset].splitlines(keepends=True)
                else:
                    lines = f
                for line in lines:
                    entry = _parse(line)
                    if entry is None:
                        continue
                    t = entry.time_ns() if (since_ns or until_ns) else 0
                    if since_ns and t < since_ns:
                        continue
                    if until_ns and t > until_ns:
                        continue
                    entries.append(entry)
        except FileNotFoundError:
            continue  # rotated away while we read
    if tail >= 0:
        entries = entries[-tail:] if tail else []
    return entries, offset


async def follow(log_path: str, start_offset: int, stopped: asyncio.Event, *,
                 until_ns: int = 0, poll: float = 0.05, live=None):
    """Yield entries appended after ``start_offset`` until ``stopped`` is set and the file
    has been drained. Follows rotation (the live file is replaced by a new one).

    The file is read through one open handle (``live``, opened by the caller before it
    answers, or opened here): a client that removes the container as soon as it exited
    (docker-py's ``run``) deletes the path, not what we still have to send. On rotation
    the old file is drained before the new one is read from its start."""
    f = live if live is not None else open_live(log_path)
    offset = start_offset
    buf = b""
    last_look = False
    try:
        while True:
            data = b""
            if f is None:
                f = open_live(log_path)
                offset = 0
            if f is not None:
                f.seek(offset)
                data = f.read()
                offset += len(data)
                if not data and _rotated(f, log_path):
                    f.close()
                    f, offset, buf = open_live(log_path), 0, b""
                    continue
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                entry = _parse(line)
                if entry is None:
                    continue
                if until_ns and entry.time_ns() > until_ns:
                    return
                yield entry
            if not data:
                if last_look:
                    return
                if stopped.is_set():
                    # one more read: the last lines may have landed between our read and
                    # the exit (the shim writes them before it exits)
                    last_look = True
                    continue
                await _wait_event(stopped, poll)
            else:
                last_look = False
    finally:
        if f is not None:
            f.close()


def open_live(path: str):
    """The live log file opened for reading, None when it does not exist (yet)."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _rotated(f, path: str) -> bool:
    """Does ``path`` now name another file than the one ``f`` reads (a rotation)?"""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False  # removed (the container went): keep what we have open


def _inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return 0


def size(log_path: str) -> int:
    try:
        return os.stat(log_path).st_size
    except FileNotFoundError:
        return 0


def check_readable(c) -> None:
    """Refuse reading the logs of a container whose driver keeps none (dockerd's 501)."""
    from conch.engine.containers.log_drivers import check_readable as driver_readable

    driver_readable(c.spec.log_driver)


def keeps_logs(c) -> bool:
    from conch.engine.containers.log_drivers import keeps_logs as driver_keeps

    return driver_keeps(c.spec.log_driver)


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    """Sleep ``timeout`` or until ``event`` is set, whichever comes first: a follower
    learns of the exit at once, not up to a poll later (a build's RUN step waited ~25 ms
    on average for nothing)."""
    if event.is_set():
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout)
    finally:
        waiter.cancel()
