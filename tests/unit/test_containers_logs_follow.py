"""conch.engine.containers.logs.follow: a follower learns of the exit when it happens,
not a poll later, and still drains what was written before it (issue 14: a build's RUN
step waited ~25 ms per step on the 50 ms poll)."""

from __future__ import annotations

import asyncio
import json
import time

from conch.engine.containers import logs


def line(text: str) -> bytes:
    return json.dumps({"log": text, "stream": "stdout", "time": "2026-12-06T00:00:00.000000000Z"}).encode() + b"\n"


def test_exit_ends_the_follow_at_once_and_the_last_lines_are_read(tmp_path):
    path = tmp_path / "c-json.log"
    path.write_bytes(line("first\n"))

    async def main():
        stopped = asyncio.Event()
        got = []

        async def follow():
            async for entry in logs.follow(str(path), 0, stopped, poll=30.0):
                got.append(entry.data)

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)  # the follower is asleep in its (long) poll
        with open(path, "ab") as f:
            f.write(line("last\n"))  # written before the exit, as the shim does
        t0 = time.monotonic()
        stopped.set()
        await asyncio.wait_for(task, 10)
        return got, time.monotonic() - t0

    got, waited = asyncio.run(main())
    assert got == [b"first\n", b"last\n"]
    assert waited < 5  # not the 30 s poll
