"""A running container's exit: its monitor task waits for the shim to exit (a pidfd: the
shim is not conchd's child), records the exit, cleans up the task (``conch-runtime
delete``, network sandbox, volume and rootfs mounts) and applies the restart policy or
``--rm``. A mixin of :class:`conch.engine.containers.service.ContainerService`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

from conch.engine.model import Container, Status, now_rfc3339
from conch.errors import ConchError, NotFound

log = logging.getLogger(__name__)


class Exits:
    def _monitor(self, c: Container) -> None:
        coro = self._watch(c.id, c.shim_pid)
        if self.tasks is not None:
            self.tasks.create_task(coro)
        else:
            asyncio.get_running_loop().create_task(coro)

    async def _watch(self, cid: str, shim_pid: int) -> None:
        try:
            await wait_pid(shim_pid)
            await self._handle_exit(cid)
        except Exception:  # noqa: BLE001 - a monitor must never take the daemon down
            log.exception("monitoring container %s", cid[:12])

    async def _handle_exit(self, cid: str) -> None:
        from conch.shim import client as shim

        async with self._lock(cid):
            try:
                c = self.get(cid)
            except NotFound:
                return
            if c.state.status not in (Status.RUNNING, Status.PAUSED, Status.RESTARTING):
                return
            task = self._health_tasks.pop(cid, None)
            if task is not None:
                task.cancel()
            error = "the container's shim died: exit status unknown"
            try:
                result = shim.read_exit(self.paths.exit_file(cid)) or {}
                code = int(result.get("exit_code", 137 if not result else 0))
            except (ConchError, ValueError, TypeError, AttributeError) as exc:
                # an empty or unreadable record (a full disk, an old shim): the exit is
                # unknown, said in State.Error; never an exception that leaves the
                # container "running" with a dead pid or stops conchd from starting
                log.warning("container %s: exit status unknown: %s", cid[:12], exc)
                result, code = {}, 137
                error = f"exit status unknown: {exc}"
            oom = await asyncio.to_thread(self._oom_killed, cid)
            if result:
                error = ""
            # a policy that restarts it shows "restarting" through the back-off, as docker
            # (State.Restarting and Running true, the exit code kept); rm refuses it then
            status = Status.RESTARTING if self._will_restart(c, code) else Status.EXITED
            c = c.with_state(status=status, pid=0, exit_code=code, oom_killed=oom,
                             finished_at=result.get("exited_at") or now_rfc3339(), error=error)
            self._save_or_keep(c)
            # waiters learn the exit now; the task's cleanup (runtime delete, unmount)
            # follows while we still hold the lock, so start/rm wait for it. An --rm
            # container (never restarted: docker refuses --rm with a restart policy) is
            # cleaned up by remove() right after, once `run --rm` has its answer.
            self._notify_exit(cid, code)
            if not c.spec.auto_remove:
                await asyncio.to_thread(self._cleanup_task, cid)
        if oom:
            self.events.publish("container", "oom", cid, name=c.name, image=c.image)
        self.events.publish("container", "die", cid, name=c.name, image=c.image, exitCode=code)
        await self._after_exit(c)

    def _notify_exit(self, cid: str, code: int) -> None:
        ev = self._exited.get(cid)
        if ev is not None:
            ev.set()
        for fut in self._waiters.pop(cid, []):
            if not fut.done():
                fut.set_result(code)

    def _oom_killed(self, cid: str) -> bool:
        try:
            from conch.cgroups import open_manager

            return bool(open_manager(f"/conch/{cid}", container_id=cid).oom_killed())
        except Exception:  # noqa: BLE001 - no memory controller, or already gone
            return False

    def _runtime_delete(self, cid: str) -> None:
        try:
            self.rt_for(cid).delete(cid)
        except ConchError as exc:
            log.warning("runtime delete %s: %s", cid[:12], exc)

    def _cleanup_task(self, cid: str, mounts=None) -> None:
        """Undo a task: runtime state and cgroups, network sandbox, option-backed volumes
        of ``mounts`` (default: the record's), rootfs mount."""
        from conch.snapshots import unmount

        self._runtime_delete(cid)
        if self.networks is not None:  # docker keeps IP config only while running
            self.networks.teardown(cid)
        if mounts is None:
            try:
                mounts = self.get(cid).mounts
            except NotFound:
                mounts = ()
        self._unmount_volumes(cid, mounts)
        rootfs = self.paths.rootfs(cid)
        if os.path.ismount(rootfs):
            unmount(rootfs)

    @staticmethod
    def _will_restart(c: Container, code: int) -> bool:
        policy = c.spec.restart_policy
        if c.manually_stopped or c.spec.auto_remove:
            return False
        if policy.name in ("always", "unless-stopped"):
            return True
        if policy.name == "on-failure" and code != 0:
            return not policy.max_retry or c.restart_count < policy.max_retry
        return False

    def _backoff(self, c: Container) -> float:
        """moby restartmanager: 100 ms, doubling at each restart, at most a minute; a run
        of 10 s or more starts the count again."""
        delays = self.__dict__.setdefault("_restart_delays", {})
        ran = _seconds_between(c.state.started_at, c.state.finished_at)
        previous = delays.get(c.id)
        delay = 0.1 if previous is None or ran >= 10 else min(previous * 2, 60.0)
        delays[c.id] = delay
        return delay

    async def _after_exit(self, c: Container) -> None:
        if c.state.status == Status.RESTARTING:
            await asyncio.sleep(self._backoff(c))
            async with self._lock(c.id):
                try:
                    cur = self.get(c.id)
                except NotFound:
                    return
                # stop/kill/rm -f in the back-off cancel the restart (and say EXITED)
                if cur.state.status != Status.RESTARTING:
                    return
                if cur.manually_stopped:
                    self._save(cur.with_state(status=Status.EXITED))
                    return
                cur = self._save(dataclasses.replace(cur, restart_count=cur.restart_count + 1))
                try:
                    await self._start_locked(cur)
                except ConchError as exc:
                    log.warning("restarting %s failed: %s", c.id[:12], exc)
                    self._save(self.get(c.id).with_state(status=Status.EXITED, error=str(exc)))
            return
        getattr(self, "_restart_delays", {}).pop(c.id, None)
        if c.spec.auto_remove:  # docker run --rm also removes the anonymous volumes
            try:
                await self.remove(c.id, force=True, volumes=True)
            except NotFound:
                pass


def _seconds_between(start: str, end: str) -> float:
    """Seconds from one RFC 3339 time (nanoseconds allowed) to another; 0 if unreadable."""
    import datetime as dt
    import re

    def parse(text: str) -> dt.datetime:
        text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
        return dt.datetime.fromisoformat(text)

    try:
        return (parse(end) - parse(start)).total_seconds()
    except (ValueError, TypeError, AttributeError):
        return 0.0


def start_time(pid: int) -> int:
    from conch.runtime.state import process_start

    return process_start(pid) or 0


async def wait_pid(pid: int) -> None:
    """Wait for a process that is not our child to exit (pidfd: readable at exit)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)

