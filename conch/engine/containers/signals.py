"""Signals to a container's process: kill, stop (signal, grace period, SIGKILL), restart,
pause and unpause. A mixin of :class:`conch.engine.containers.service.ContainerService`.
"""

from __future__ import annotations

import asyncio
import dataclasses

from conch.engine.model import Container, Status
from conch.errors import ConchError, Conflict, FailedPrecondition, InvalidArgument, NotModified


class Signals:
    async def kill(self, ref: str, signal: str = "KILL") -> None:
        """moby daemon/kill.go: any kill marks the container stopped by hand (its restart
        policy will not bring it back); a restarting one just has its restart cancelled;
        SIGKILL returns only once the container is dead (exited, 137), so an ``rm``
        right after works."""
        c = self.get(ref)
        if not c.state.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        number = signal_number(signal)
        c = await self._mark_stopped_by_hand(c.id)
        if await self._cancel_restart(c.id):
            self.events.publish("container", "kill", c.id, name=c.name, image=c.image, signal=number)
            return
        exited = self._exited.get(c.id) or asyncio.Event()
        await self._runtime("kill", c.id, signal_name(signal))
        if c.state.status == Status.PAUSED and number == 9:
            try:  # a frozen task takes its SIGKILL only once thawed
                await self._runtime("resume", c.id)
            except ConchError:
                pass
        self.events.publish("container", "kill", c.id, name=c.name, image=c.image, signal=number)
        if number == 9:
            try:
                await asyncio.wait_for(exited.wait(), timeout=30)
            except asyncio.TimeoutError as exc:
                raise FailedPrecondition(f"container {c.id[:12]} did not exit after SIGKILL") from exc

    async def _cancel_restart(self, cid: str) -> bool:
        """A container in its restart back-off becomes exited now (True), as docker's
        stop/kill of a restarting container; the back-off then finds nothing to do."""
        async with self._lock(cid):
            c = self.get(cid)
            if c.state.status != Status.RESTARTING:
                return False
            self._save(c.with_state(status=Status.EXITED))
            return True

    async def _mark_stopped_by_hand(self, cid: str) -> Container:
        """Under the lock, so that a restart (policy) in progress finishes first and one
        waiting in its back-off sees the flag and does not happen (docker stop cancels a
        pending restart)."""
        async with self._lock(cid):
            return self._save(dataclasses.replace(self.get(cid), manually_stopped=True))

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        c = await self._mark_stopped_by_hand(self.get(ref).id)
        if not c.state.running:
            raise NotModified("container already stopped")
        if await self._cancel_restart(c.id):
            self.events.publish("container", "stop", c.id, name=c.name, image=c.image)
            return
        if c.state.status == Status.PAUSED:
            await self._runtime("resume", c.id)
        sig = signal or c.spec.stop_signal or image_stop_signal(self.images, c) or "SIGTERM"
        wait = timeout if timeout is not None else (c.spec.stop_timeout if c.spec.stop_timeout is not None else 10)
        exited = self._exited.get(c.id) or asyncio.Event()
        if self.networks is not None:  # a replica leaves its shared port first (drain)
            await self.networks.drain(c.id, c.state.pid, min(wait, 10) if wait > 0 else 0)
        try:
            await self._runtime("kill", c.id, signal_name(sig))
        except ConchError:
            pass  # already exiting
        if wait != 0:
            try:
                await asyncio.wait_for(exited.wait(), timeout=None if wait < 0 else wait)
            except asyncio.TimeoutError:
                pass
        if not exited.is_set():
            try:
                await self._runtime("kill", c.id, "KILL")
            except ConchError:
                pass
            try:
                await asyncio.wait_for(exited.wait(), timeout=30)
            except asyncio.TimeoutError as exc:
                raise FailedPrecondition(f"container {c.id[:12]} did not exit after SIGKILL") from exc
        self.events.publish("container", "stop", c.id, name=c.name, image=c.image)

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        if c.state.running:
            await self.stop(c.id, timeout)
        async with self._lock(c.id):
            await self._start_locked(self.get(c.id))
        self.events.publish("container", "restart", c.id, name=c.name, image=c.image)

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        if c.state.status != Status.RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        # a container whose start just returned may still be "created" to the runtime
        # for a moment (runc records "running" after the fifo handshake): `commit
        # --pause` right after `run -d` must not fail with 412, so retry briefly
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while True:
            try:
                await self._runtime("pause", c.id)
                break
            except FailedPrecondition:
                if loop.time() > deadline or not self.get(c.id).state.status == Status.RUNNING:
                    raise
                await asyncio.sleep(0.05)
        self._save(c.with_state(status=Status.PAUSED))
        self.events.publish("container", "pause", c.id, name=c.name, image=c.image)

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        if c.state.status != Status.PAUSED:
            raise Conflict(f"Container {c.id} is not paused")
        await self._runtime("resume", c.id)
        self._save(c.with_state(status=Status.RUNNING))
        self.events.publish("container", "unpause", c.id, name=c.name, image=c.image)

    async def _runtime(self, *args: str) -> str:
        # the container id is the verb's last argument (kill <id> <sig>: the first)
        cid = next((a for a in args if len(a) == 64), None)
        return await (self.rt_for(cid) if cid else self.rt).run(*args)


def image_stop_signal(images, c: Container) -> str:
    try:
        cfg = images.get(c.image_id).config.config
        return (cfg.stop_signal if cfg is not None else "") or ""
    except ConchError:
        return ""


def signal_name(sig: str) -> str:
    sig = str(sig).upper()
    return sig if sig.isdigit() else sig.removeprefix("SIG")


def signal_number(sig: str) -> int:
    import signal as _s

    sig = str(sig).upper()
    if sig.isdigit():
        return int(sig)
    try:
        return int(_s.Signals["SIG" + sig.removeprefix("SIG")])
    except KeyError as exc:
        raise InvalidArgument(f"Invalid signal: {sig}") from exc

