"""Container lifecycle: Docker's semantics over the snapshotter, the shim and the runtime.

``ContainerService`` holds the records (create, get, list, wait, remove, rename) and the
reconcile after a conchd restart; its other parts are mixins, one module each:
``starting`` (start), ``exits`` (exit monitor, cleanup, restart policy), ``signals``
(kill, stop, restart, pause), ``attaching`` (attach, resize), ``resources`` (top, stats,
update) and ``health_checks`` (the probe loop).

Each container has an ``asyncio.Lock`` serialising its lifecycle operations, and while it
runs a monitor task (owned by the service's TaskGroup) that waits for its shim to exit
(a pidfd on the shim: the shim is not our child), then records the exit, cleans up the
task (``conch-runtime delete``, unmount) and applies the restart policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import shutil

from conch.engine.containers import health
from conch.engine.containers import log_drivers
from conch.engine.containers import mounts as cmounts
from conch.engine.containers import names as cnames
from conch.engine.containers import ociconfig
from conch.engine.containers.attaching import Attaching
from conch.engine.containers.exits import Exits, start_time
from conch.engine.containers.health_checks import HealthChecks
from conch.engine.containers.links import Links
from conch.engine.containers.resources import Resources
from conch.engine.containers.runtime_client import RuntimeClient
from conch.engine.containers.signals import Signals
from conch.engine.containers.starting import Starting
from conch.engine.containers.warmpool import WarmPool
from conch.engine.events import EventBus
from conch.engine.model import Container, CreateSpec, Status, container_from_dict, now_rfc3339, to_dict
from conch.errors import Conflict, ConchError, InvalidArgument, NotFound
from conch.runtime.prearm import Armer

log = logging.getLogger(__name__)


class Paths:
    def __init__(self, data_root: str, exec_root: str):
        self.data_root = data_root
        self.exec_root = exec_root
        self.containers = os.path.join(data_root, "containers")
        self.runtime_root = os.path.join(exec_root, "runtime")
        self.shims = os.path.join(exec_root, "shims")

    def dir(self, cid: str) -> str:
        return os.path.join(self.containers, cid)

    def bundle(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "bundle")

    def rootfs(self, cid: str) -> str:
        return os.path.join(self.bundle(cid), "rootfs")

    def log(self, cid: str) -> str:
        return os.path.join(self.dir(cid), f"{cid}-json.log")

    def exit_file(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "exit.json")

    def socket(self, cid: str) -> str:
        return os.path.join(self.shims, f"{cid[:32]}.sock")


class ContainerService(Starting, Exits, Signals, Attaching, Resources, HealthChecks, Links):
    # daemon.json's log-opts (set by conchd): they fill what a json-file container leaves
    # out, at create (moby mergeAndVerifyLogConfig); default-ulimits: Starting, at start
    default_log_opts: dict = {}

    def __init__(self, *, paths: Paths, db, images, snapshotter, events: EventBus,
                 runtime: str, shim: str, init: str = "", runtime_inproc: bool = False,
                 tasks=None, volumes=None, networks=None, runtime_name: str = "",
                 runtimes: dict[str, str] | None = None, warm_runtime: bool = False):
        self.paths = paths
        self.db = db
        self.images = images
        self.snapshotter = snapshotter
        self.events = events
        self.runtime = runtime
        self.shim = shim
        self.init = init
        self.rt = RuntimeClient(runtime, paths.runtime_root, inproc=runtime_inproc)
        # HostConfig.Runtime: name -> binary; every runtime keeps its state under the
        # same --root (one directory per container id, so they never meet)
        self.runtime_name = runtime_name or "conch"
        self.runtimes = {**(runtimes or {}), self.runtime_name: runtime}
        self._rts: dict[str, RuntimeClient] = {self.runtime_name: self.rt}
        self._task_runtime: dict[str, str] = {}  # container id -> runtime name, once known
        # cgroup migrations wait for an RCU grace period unless one ran lately: start
        # that clock at create (conch.runtime.prearm), not in the runtime at start
        self.prearm = Armer()
        # conch-runtime knows `warm`: a pre-started shim for the next start, on request
        # (conchd --warm-runtime). Off by default: conch-runtime's C front creates what
        # conchd sends without Python, cold, faster than a warm Python runtime does (run -d
        # 27.9 vs 34.4 ms per container, run --rm 30.3 vs 35.3), and the waiting
        # interpreter cost ~10 MiB of conchd's idle footprint. Only containers the front
        # leaves to Python (hooks, user namespaces) would gain from one.
        self.warm = (WarmPool(runtime=runtime, runtime_root=paths.runtime_root, shim=shim)
                     if runtime_inproc and warm_runtime else None)
        self.tasks = tasks
        self.volumes = volumes  # conch.volumes.VolumeStore (None: volumes are refused)
        self.networks = networks  # conch.engine.network.service.NetworkService (None: no networking)
        self._locks: dict[str, asyncio.Lock] = {}
        self._exited: dict[str, asyncio.Event] = {}  # set on each exit, replaced at start
        self._waiters: dict[str, list[asyncio.Future]] = {}
        # states (a start, an exit) that a full disk kept out of the database: served from
        # here and written as soon as there is room (see _save_or_keep)
        self._unsaved: dict[str, Container] = {}
        self._retries: set[asyncio.Task] = set()
        # attach requests waiting for the container's next start: (conn, stdin, stdout,
        # stderr, future). They are connected to the shim before the process runs.
        self._pending_attach: dict[str, list] = {}
        self._health_tasks: dict[str, asyncio.Task] = {}
        for d in (paths.containers, paths.runtime_root, paths.shims):
            os.makedirs(d, mode=0o711, exist_ok=True)

    def check_runtime(self, name: str) -> str:
        """HostConfig.Runtime: "" is the daemon's default; an unknown one is moby's 400."""
        if not name:
            return self.runtime_name
        if name not in self.runtimes:
            raise InvalidArgument(f"unknown or invalid runtime name: {name}")
        return name

    def rt_for(self, cid: str) -> RuntimeClient:
        """The runtime client of container ``cid`` (its HostConfig.Runtime); the
        default one when its record is gone and it was never seen."""
        name = self._task_runtime.get(cid)
        if name is None:
            try:
                name = self.get(cid).spec.runtime or self.runtime_name
            except NotFound:
                name = self.runtime_name
            self._task_runtime[cid] = name
        client = self._rts.get(name)
        if client is None:
            binary = self.runtimes.get(name)
            if binary is None:  # configured once, gone from the daemon's flags since
                raise InvalidArgument(f"unknown or invalid runtime name: {name}")
            client = self._rts[name] = RuntimeClient(binary, self.paths.runtime_root,
                                                     inproc=False)
        return client

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def get(self, ref: str) -> Container:
        c = container_from_dict(dict(self.db.find_container(ref).record))  # NotFound as docker
        return self._unsaved.get(c.id, c)

    def _save(self, c: Container) -> Container:
        record = to_dict(c)
        try:
            self.db.put_container(c.id, c.name, c.image_id, record)
        except Exception as exc:  # noqa: BLE001 - only a full disk is handled here
            # the data root is full (a container's writes, most often): what happens to
            # containers must still be recorded, so the database's reserve is given up
            if not (_disk_full(exc) and self.db.release_reserve()):
                raise
            log.warning("the data root %s is full: released the metadata database's "
                        "reserve to record container %s; free some space", self.paths.data_root,
                        c.id[:12])
            self.db.put_container(c.id, c.name, c.image_id, record)
        self._unsaved.pop(c.id, None)
        return c

    def _save_or_keep(self, c: Container) -> None:
        """Record what already happened (a process started or adopted, an exit), whether
        or not the disk has room: when it has none, the record is kept in memory (get and
        list serve it) and written by a background retry once space is freed, and waiters
        (a build's RUN, `wait`, `run`) learn an exit now instead of hanging. A conchd that
        dies meanwhile finds the shim's exit record, reserved at start, at its next start."""
        try:
            self._save(c)
            return
        except Exception as exc:  # noqa: BLE001 - only a full disk is handled here
            if not _disk_full(exc):
                raise
        log.warning("container %s: the data root is full: its state (%s) is kept in memory "
                    "until it can be written; free some space", c.id[:12], c.state.status.value)
        first = c.id not in self._unsaved
        self._unsaved[c.id] = c
        if first:  # held like a monitor: the loop keeps only weak references to tasks
            coro = self._write_unsaved(c.id)
            if self.tasks is not None:
                self.tasks.create_task(coro)
            else:
                task = asyncio.get_running_loop().create_task(coro)
                self._retries.add(task)
                task.add_done_callback(self._retries.discard)

    async def _write_unsaved(self, cid: str) -> None:
        while cid in self._unsaved:
            await asyncio.sleep(0.5)
            async with self._lock(cid):
                c = self._unsaved.get(cid)
                if c is None:
                    return
                try:
                    self._save(c)
                except NotFound:  # removed meanwhile
                    self._unsaved.pop(cid, None)
                except Exception as exc:  # noqa: BLE001 - still full: try again later
                    if not _disk_full(exc):
                        log.warning("container %s: recording its state: %s", cid[:12], exc)
                        self._unsaved.pop(cid, None)

    def list(self) -> list[Container]:
        return [self._unsaved.get(r.id) or container_from_dict(dict(r.record))
                for r in self.db.list_containers()]

    def _daemon_defaults(self, spec: CreateSpec) -> CreateSpec:
        if not self.default_log_opts or spec.log_driver != "json-file":
            return spec
        return dataclasses.replace(spec, log_opts={**self.default_log_opts, **(spec.log_opts or {})})

    async def create(self, spec: CreateSpec, name: str | None = None,
                     api_config: dict | None = None) -> Container:
        self.prearm.arm(0.2)  # a start usually follows within a few ms (docker run)
        image = await asyncio.to_thread(self.images.get, spec.image)
        # one indexed lookup per name, not a scan of every record (create is a hot path)
        if name:
            name = cnames.validate(name)
            other = self.db.container_with_name(name)
            if other is not None:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                               f'container "{other}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")
        else:
            name = cnames.random_name(lambda n: self.db.container_with_name(n) is not None)
        cid = secrets.token_hex(32)
        path, args = ociconfig.command(spec, image.config)
        spec = self._daemon_defaults(spec)
        log_drivers.validate(spec.log_driver, spec.log_opts)
        spec = dataclasses.replace(spec, log_opts=spec.log_opts or {},
                                   runtime=self.check_runtime(spec.runtime))
        networks = self.networks.plan(spec) if self.networks is not None else {}
        mounts, new_volumes = await asyncio.to_thread(self._make_mounts, spec, image)
        c = Container(id=cid, name=name, created=now_rfc3339(), image=spec.image,
                      image_id=str(image.id), spec=spec, path=path, args=args,
                      api_config=api_config or {}, mounts=mounts, networks=networks)
        try:
            os.makedirs(self.paths.dir(cid), mode=0o710)
            try:
                if spec.rootfs_parent:
                    await asyncio.to_thread(self.snapshotter.prepare, cid, spec.rootfs_parent)
                else:
                    await asyncio.to_thread(self.images.prepare_rootfs, image, cid)
                self._save(c)
            except BaseException:
                await asyncio.to_thread(self._remove_files, cid)
                raise
        except BaseException:
            for vname in new_volumes:
                await asyncio.to_thread(self.volumes.remove, vname, force=True)
            raise
        for vname in new_volumes:
            self.events.publish("volume", "create", vname, driver="local")
        self.events.publish("container", "create", cid, name=name, image=spec.image)
        return c

    def _make_mounts(self, spec: CreateSpec, image) -> tuple[tuple[dict, ...], list[str]]:
        return cmounts.make_mounts(self, spec, image)

    def volume_users(self, name: str) -> list[str]:
        """Ids of the containers (running or not) that mount volume ``name``."""
        return cmounts.volume_users(self, name)

    async def wait(self, ref: str, condition: str = "not-running") -> int:
        """Docker's conditions: not-running (now if stopped), next-exit, removed."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        c = self.get(ref)
        if condition == "removed":
            fut = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(c.id + ":removed", []).append(fut)
            return await fut
        if condition == "not-running" and not c.state.running:
            return c.state.exit_code
        return await self._next_exit(c.id)

    def _next_exit(self, cid: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(cid, []).append(fut)
        return fut

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.state.status == Status.RESTARTING and not force:
            raise Conflict(f"You cannot remove a restarting container {c.id}. Stop the "
                           "container before attempting removal or force remove")
        if force:  # first: waits out a restart in progress, cancels one in its back-off
            try:
                c = await self._mark_stopped_by_hand(c.id)
            except Exception as exc:  # noqa: BLE001 - only a full disk is handled here
                if not _disk_full(exc):
                    raise
                # the disk is full (often this container's doing) and the record cannot
                # be written: free the container's space first, then carry on
                log.warning("removing %s on a full disk: freeing its files first", c.id[:12])
                await self._free_space(c)
                for _ in range(50):  # the killed processes' files close as they die
                    try:
                        c = await self._mark_stopped_by_hand(c.id)
                        break
                    except Exception as again:  # noqa: BLE001 - as above
                        if not _disk_full(again):
                            raise
                        await asyncio.sleep(0.1)
                else:
                    c = await self._mark_stopped_by_hand(c.id)
        if c.state.running:
            if not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the "
                               "container before attempting removal or force remove")
            exited = self._exited.get(c.id) or asyncio.Event()
            try:
                await self._runtime("kill", c.id, "KILL")
            except ConchError:
                pass
            try:
                await asyncio.wait_for(exited.wait(), timeout=10)
            except asyncio.TimeoutError:
                await self._handle_exit(c.id)
        async with self._lock(c.id):
            # Order: the record first, so the container is gone for every client (its
            # name free, "removed" waiters such as `run --rm` answered), then what is
            # left of its task (runtime state, cgroups, network, rootfs mount: the process
            # is dead by now) and its files. A crash in between leaves a directory with no
            # record, which reconcile() cleans up the same way.
            if any(m.get("type") == "volume" for m in c.mounts):
                # option-backed volumes are unmounted before the answer: the next
                # container (`run --rm` again) must find them fresh
                await asyncio.to_thread(self._unmount_volumes, c.id, c.mounts)
            self.db.delete_container(c.id)
            self._unsaved.pop(c.id, None)
            self.events.publish("container", "destroy", c.id, name=c.name, image=c.image)
            if volumes and self.volumes is not None:
                await self._remove_anonymous_volumes(c)
            for fut in self._waiters.pop(c.id + ":removed", []):
                if not fut.done():
                    fut.set_result(c.state.exit_code)
            await asyncio.to_thread(self._cleanup_task, c.id, ())
            await asyncio.to_thread(self._remove_files, c.id)
        self._locks.pop(c.id, None)
        self._exited.pop(c.id, None)
        self.db.keep_reserve()  # given up on a full disk: made again now there may be room

    async def _free_space(self, c: Container) -> None:
        """rm -f on a full disk: kill the container, wait for its init to die (its open
        files go with it), then empty its writable layer and truncate its logs, which
        allocates nothing. The record is written after that, under the same lock the exit
        monitor takes, so the monitor too finds room to record the exit."""
        from conch.engine.containers.exits import wait_pid

        async with self._lock(c.id):
            pid = c.state.pid if c.state.running else 0
            if pid:
                try:
                    await self._runtime("kill", c.id, "KILL")
                except ConchError:
                    pass
                try:
                    await asyncio.wait_for(wait_pid(pid), timeout=10)
                except asyncio.TimeoutError:
                    log.warning("container %s: init %d outlived SIGKILL for 10 s", c.id[:12], pid)
            # overlayfs pins the upper files it has looked up: their space comes back
            # only once the rootfs is unmounted (the rest of the task's undoing, which
            # writes network state, waits for the exit monitor, once there is room)
            await asyncio.to_thread(self._unmount_rootfs_now, c.id)
            await asyncio.to_thread(self._empty_files, c.id)

    def _unmount_rootfs_now(self, cid: str) -> None:
        from conch.kernel import mount as kmount
        from conch.snapshots import unmount

        rootfs = self.paths.rootfs(cid)
        try:
            unmount(rootfs)
        except ConchError as exc:  # still busy: detach it, the space returns with its users
            log.warning("unmounting the rootfs of %s: %s; detaching it", cid[:12], exc)
            try:
                kmount.umount(rootfs, kmount.MNT_DETACH)
            except ConchError:
                pass

    def _empty_files(self, cid: str) -> None:
        try:
            upper = self.snapshotter.layer_dirs(cid)[0] / "fs"
        except ConchError:
            upper = None
        if upper is not None and upper.is_dir():
            for entry in os.scandir(upper):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass
        log_dir = self.paths.dir(cid)
        for name in os.listdir(log_dir) if os.path.isdir(log_dir) else ():
            if name.startswith(f"{cid}-json.log"):
                try:
                    os.truncate(os.path.join(log_dir, name), 0)
                except OSError:
                    pass

    async def _remove_anonymous_volumes(self, c: Container) -> None:
        """rm -v: the anonymous volumes go with the container, named ones never do."""
        for m in c.mounts:
            if m.get("type") == "volume" and m.get("anonymous"):
                try:
                    await asyncio.to_thread(self.volumes.remove, m["name"], force=True,
                                            in_use=self.volume_users)
                    self.events.publish("volume", "destroy", m["name"], driver="local")
                except ConchError as exc:
                    log.warning("removing volume %s of %s: %s", m["name"][:12], c.id[:12], exc)

    def _remove_orphans(self) -> None:
        known = {c.id for c in self.list()}
        try:
            names = os.listdir(self.paths.containers)
        except FileNotFoundError:
            return
        for name in names:
            if len(name) == 64 and name not in known and all(ch in "0123456789abcdef" for ch in name):
                log.info("removing the files of %s, removed before conchd stopped", name[:12])
                self._cleanup_task(name)
                self._remove_files(name)

    def _remove_files(self, cid: str) -> None:
        try:
            self.snapshotter.remove(cid)
        except NotFound:
            pass
        except ConchError as exc:
            log.warning("removing snapshot of %s: %s", cid[:12], exc)
        shutil.rmtree(self.paths.dir(cid), ignore_errors=True)
        # a shim removes its socket when it exits; a killed one (kill -9, OOM) leaves it
        try:
            os.unlink(self.paths.socket(cid))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("removing the shim socket of %s: %s", cid[:12], exc)

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        new_name = cnames.validate(new_name)
        renamed = dataclasses.replace(c, name=new_name)
        self.db.rename_container(c.id, new_name, to_dict(renamed))  # Conflict as docker
        self.events.publish("container", "rename", c.id, name=new_name, oldName="/" + c.name)

    async def reconcile(self) -> None:
        """Find running containers again: a live shim gets a new monitor; a shim that
        died while we were away has left an exit file (or not) to record. Files of
        containers whose record is gone (a crash in the middle of a remove) are deleted."""
        await asyncio.to_thread(self._remove_orphans)
        for c in self.list():
            if c.state.status == Status.CREATED and c.shim_pid:
                await self._reconcile_interrupted_start(c)
        for c in self.list():
            if c.state.status not in (Status.RUNNING, Status.PAUSED, Status.RESTARTING):
                continue
            self._exited[c.id] = asyncio.Event()
            if c.shim_pid and start_time(c.shim_pid) == c.shim_start:
                self._monitor(c)
                if c.state.health is not None:
                    try:
                        image = await asyncio.to_thread(self.images.get, c.image_id)
                        hc = health.effective(c, image.config)
                        if hc is not None:
                            self._start_health(c.id, hc)
                    except ConchError as exc:
                        log.warning("health checks of %s not resumed: %s", c.id[:12], exc)
            else:
                await self._handle_exit(c.id)
        # --rm containers that are not running now go, as dockerd's restore removes them:
        # conchd died between create and start (`run --rm` left one Created forever), or
        # between an exit and its removal
        for c in self.list():
            if c.spec.auto_remove and c.state.status in (Status.CREATED, Status.EXITED,
                                                         Status.DEAD):
                try:
                    await self.remove(c.id, force=True, volumes=True)
                    log.info("removed --rm container %s left %s", c.id[:12], c.state.status.value)
                except NotFound:
                    pass
                except Exception as exc:  # noqa: BLE001 - a full disk must not stop conchd
                    if not (isinstance(exc, ConchError) or _disk_full(exc)):
                        raise
                    log.warning("removing --rm container %s at start: %s", c.id[:12], exc)
        # restart policies "always" (and "unless-stopped" not stopped by hand) apply to
        # containers that were running when the daemon went away, as dockerd does
        for c in self.list():
            policy = c.spec.restart_policy.name
            # docker: "always" restarts at daemon start even after a manual stop;
            # "unless-stopped" only if it was not stopped by hand
            if c.state.status == Status.EXITED and (
                    policy == "always" or (policy == "unless-stopped" and not c.manually_stopped)):
                async with self._lock(c.id):
                    try:
                        await self._start_locked(self.get(c.id))
                    except Exception as exc:  # noqa: BLE001 - as above
                        if not (isinstance(exc, ConchError) or _disk_full(exc)):
                            raise
                        log.warning("restarting %s at daemon start failed: %s", c.id[:12], exc)

    async def _reconcile_interrupted_start(self, c: Container) -> None:
        """conchd died during a start, after the shim was spawned (the record names it) and
        perhaps after the runtime's start. The runtime decides: a process that runs or ran
        is the container's own (marked running here; the loop after this monitors it or
        records its exit): starting it again would run the command twice. A process still
        waiting on exec.fifo, or a shim gone without an exit record, is undone and the
        container stays Created, as if the start had failed."""
        import json

        status, pid = "", 0
        if start_time(c.shim_pid) == c.shim_start:
            try:
                state = json.loads(await self._runtime("state", c.id))
                status, pid = state.get("status", ""), int(state.get("pid") or 0)
            except (ConchError, ValueError, TypeError) as exc:
                log.warning("state of %s after an interrupted start: %s", c.id[:12], exc)
        elif os.path.exists(self.paths.exit_file(c.id)):
            status = "stopped"
        if status in ("running", "paused", "stopped"):
            log.info("container %s was started before conchd went away: adopted", c.id[:12])
            self._save_or_keep(c.with_state(status=Status.RUNNING, pid=pid,
                                            started_at=now_rfc3339(), error="", exit_code=0))
            return
        log.info("container %s: start interrupted before its process ran: undone", c.id[:12])
        # the runtime's delete kills the waiting init; its shim then records that exit and
        # ends by itself (the exit record is unlinked at the next start)
        await asyncio.to_thread(self._cleanup_task, c.id)
        self._save_or_keep(dataclasses.replace(c, shim_pid=0, shim_start=0))


def _disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full") or an ENOSPC."""
    import errno
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC
