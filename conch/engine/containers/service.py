"""Container lifecycle: create, start, stop, kill, restart, remove, wait, pause, rename,
attach, logs — Docker's semantics over the snapshotter, the shim and the runtime.

Each container has an ``asyncio.Lock`` serialising its lifecycle operations, and while it
runs a monitor task (owned by the service's TaskGroup) that waits for its shim to exit
(a pidfd on the shim: the shim is not our child), then records the exit, cleans up the
task (``conch-runtime delete``, unmount) and applies the restart policy.

Order of ``start`` (each step undone if a later one fails): mount the rootfs snapshot →
write hostname/hosts/resolv.conf → resolve the user in the container's passwd → write
config.json → spawn the shim (which runs ``conch-runtime create`` + ``start``) → record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import shutil

from conch.engine.containers import health
from conch.engine.containers import mounts as cmounts
from conch.engine.containers import names as cnames
from conch.engine.containers import ociconfig
from conch.engine.durable import write_json
from conch.engine.events import EventBus
from conch.engine.containers.runtime_client import RuntimeClient
from conch.engine.containers.warmpool import WarmPool
from conch.runtime.prearm import Armer
from conch.engine.model import (Container, CreateSpec, Health, Status, container_from_dict,
                                now_rfc3339, to_dict)
from conch.errors import Conflict, ConchError, FailedPrecondition, InvalidArgument, NotFound

log = logging.getLogger(__name__)


class NotModified(ConchError):
    """Docker answers 304 when starting a running (or stopping a stopped) container."""

    http_status = 304


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


class ContainerService:
    def __init__(self, *, paths: Paths, db, images, snapshotter, events: EventBus,
                 runtime: str, shim: str, init: str = "", runtime_inproc: bool = False,
                 tasks=None, volumes=None, networks=None):
        self.paths = paths
        self.db = db
        self.images = images
        self.snapshotter = snapshotter
        self.events = events
        self.runtime = runtime
        self.shim = shim
        self.init = init
        self.rt = RuntimeClient(runtime, paths.runtime_root, inproc=runtime_inproc)
        # cgroup migrations wait for an RCU grace period unless one ran lately: start
        # that clock at create (conch.runtime.prearm), not in the runtime at start
        self.prearm = Armer()
        # conch-runtime knows `warm`: keep a pre-started shim for the next start
        self.warm = (WarmPool(runtime=runtime, runtime_root=paths.runtime_root, shim=shim)
                     if runtime_inproc else None)
        self.tasks = tasks
        self.volumes = volumes  # conch.volumes.VolumeStore (None: volumes are refused)
        self.networks = networks  # conch.engine.network.service.NetworkService (None: no networking)
        self._locks: dict[str, asyncio.Lock] = {}
        self._exited: dict[str, asyncio.Event] = {}  # set on each exit, replaced at start
        self._waiters: dict[str, list[asyncio.Future]] = {}
        # attach requests waiting for the container's next start: (conn, stdin, stdout,
        # stderr, future). They are connected to the shim before the process runs.
        self._pending_attach: dict[str, list] = {}
        self._health_tasks: dict[str, asyncio.Task] = {}
        for d in (paths.containers, paths.runtime_root, paths.shims):
            os.makedirs(d, mode=0o711, exist_ok=True)

    # -- records ----------------------------------------------------------------------
    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def get(self, ref: str) -> Container:
        return container_from_dict(dict(self.db.find_container(ref).record))  # NotFound as docker

    def _save(self, c: Container) -> Container:
        self.db.put_container(c.id, c.name, c.image_id, to_dict(c))
        return c

    def list(self) -> list[Container]:
        return [container_from_dict(dict(r.record)) for r in self.db.list_containers()]

    # -- create -----------------------------------------------------------------------
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
        spec = dataclasses.replace(spec, log_opts=spec.log_opts or {})
        networks = self.networks.plan(spec) if self.networks is not None else {}
        mounts, new_volumes = await asyncio.to_thread(self._make_mounts, spec, image)
        c = Container(id=cid, name=name, created=now_rfc3339(), image=spec.image,
                      image_id=str(image.id), spec=spec, path=path, args=args,
                      api_config=api_config or {}, mounts=mounts, networks=networks)
        try:
            os.makedirs(self.paths.dir(cid), mode=0o710)
            try:
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

    # -- start ------------------------------------------------------------------------
    async def start(self, ref: str) -> Container:
        self.prearm.arm(0.15)
        c = self.get(ref)
        try:
            async with self._lock(c.id):
                c = self.get(c.id)
                if c.state.status == Status.PAUSED:
                    raise Conflict("cannot start a paused container, try unpause instead")
                if c.state.status == Status.RUNNING:
                    raise NotModified("container already started")
                c = await self._start_locked(c)
        except ConchError as exc:
            if isinstance(exc, NotModified):
                raise
            # attach clients waiting for this start are told, and an --rm container that
            # cannot start is removed, as dockerd does (the CLI waits for "removed")
            for fut in self._pending_attach.pop(c.id, []):
                if not fut.done():
                    fut.set_exception(exc)
            if c.spec.auto_remove:
                try:
                    await self.remove(c.id, force=True, volumes=True)
                except ConchError:
                    pass
            raise
        return c

    async def _start_locked(self, c: Container) -> Container:
        image = await asyncio.to_thread(self.images.get, c.image_id)
        try:
            # the shim creates the container (its process waits on exec.fifo) ...
            info = await asyncio.to_thread(self._prepare_and_spawn, c, image)
            self._exited[c.id] = asyncio.Event()
            # ... attach clients waiting for this start are wired up, then it runs
            await self._connect_pending(c)
            try:
                await self._runtime("start", c.id)
            except ConchError:
                await asyncio.to_thread(self._cleanup_task, c.id)
                raise
        except ConchError as exc:
            c = self._save(dataclasses.replace(c, state=dataclasses.replace(c.state, error=str(exc))))
            raise
        hc = health.effective(c, image.config)
        c = c.with_state(status=Status.RUNNING, pid=info["pid"], started_at=now_rfc3339(),
                         error="", exit_code=0, oom_killed=False,
                         health=Health() if hc is not None else None)
        c = dataclasses.replace(c, shim_pid=info["shim_pid"], shim_start=_start_time(info["shim_pid"]),
                                manually_stopped=False, mounts=info.get("mounts", c.mounts))
        self._save(c)
        self._monitor(c)
        self.refill_warm()
        if hc is not None:
            self._start_health(c.id, hc)
        self.events.publish("container", "start", c.id, name=c.name, image=c.image)
        return c

    # -- health checks -------------------------------------------------------------------
    def _start_health(self, cid: str, hc) -> None:
        old = self._health_tasks.pop(cid, None)
        if old is not None:
            old.cancel()
        coro = self._health_loop(cid, hc)
        create = self.tasks.create_task if self.tasks is not None else asyncio.get_running_loop().create_task
        self._health_tasks[cid] = create(coro)

    async def _health_loop(self, cid: str, hc) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        interval = hc.interval_ns / 1e9 if hc.interval_ns else health.DEFAULT_INTERVAL
        timeout = hc.timeout_ns / 1e9 if hc.timeout_ns else health.DEFAULT_TIMEOUT
        start_period = hc.start_period_ns / 1e9
        args = health.command(hc)
        try:
            while True:
                await asyncio.sleep(interval)
                begin = now_rfc3339()
                code, output = await health.probe(self.runtime, self.paths.runtime_root,
                                                  self.paths.bundle(cid), cid, args, timeout)
                async with self._lock(cid):
                    try:
                        c = self.get(cid)
                    except NotFound:
                        return
                    if c.state.status != Status.RUNNING or c.state.health is None:
                        return
                    before = c.state.health.status
                    new = health.record(c.state.health, hc, code, output, begin,
                                        loop.time() - started < start_period)
                    self._save(c.with_state(health=new))
                if new.status != before:
                    self.events.publish("container", f"health_status: {new.status}", cid,
                                        name=c.name, image=c.image)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a probe must never take the daemon down
            log.exception("health check of %s", cid[:12])

    def _prepare_and_spawn(self, c: Container, image) -> dict:
        from conch.snapshots import mount_all, unmount

        rootfs = self.paths.rootfs(c.id)
        os.makedirs(rootfs, exist_ok=True)
        mounted = False
        try:
            if not os.path.ismount(rootfs):
                mount_all(self.snapshotter.mounts(c.id), rootfs)
                mounted = True
            self._mount_volumes(c)  # volumes made with -o type/device/o: mounted now
            mounts = cmounts.copy_up(c, rootfs)
            # the network sandbox (netns, veths, ports) first: /etc/hosts needs its address
            netns_path = self.networks.setup(c, image) if self.networks is not None else ""
            files = self._write_etc_files(c)
            user = ociconfig.resolve_user(c.spec.user or _image_user(image), rootfs)
            link_env = self.networks.link_env(c) if self.networks is not None and c.spec.links else ()
            spec = ociconfig.runtime_spec(c, image.config, rootfs=rootfs, files=files, user=user,
                                          init_binary=self.init, netns_path=netns_path,
                                          link_env=link_env)
            write_json(os.path.join(self.paths.bundle(c.id), "config.json"), spec, mode=0o644)
            try:
                os.unlink(self.paths.exit_file(c.id))
            except FileNotFoundError:
                pass
            return {**self._spawn_shim(c), "mounts": mounts}
        except BaseException:
            if self.networks is not None:
                self.networks.teardown(c.id)
            self._unmount_volumes(c.id, c.mounts)
            if mounted:
                unmount(rootfs)
            raise

    def _mount_volumes(self, c: Container) -> None:
        cmounts.mount_volumes(self, c)

    def _unmount_volumes(self, cid: str, mounts) -> None:
        cmounts.unmount_volumes(self, cid, mounts)

    def _spawn_shim(self, c: Container) -> dict:
        try:
            try:
                return self._spawn_shim_raw(c)
            except ConchError as exc:
                if "already exists" not in str(exc):
                    raise
                # the runtime still has a record of an earlier run (a crash between exit
                # and cleanup): remove it and try once more
                self._runtime_delete(c.id)
                return self._spawn_shim_raw(c)
        except ConchError as exc:
            # docker's wording, which scripts (and the CLI's 126/127 mapping) know
            msg = str(exc).replace("conch-runtime: ", "")
            raise type(exc)(f"failed to create task for container: OCI runtime create failed: {msg}") from exc

    def _spawn_shim_raw(self, c: Container) -> dict:
        from conch.shim import client as shim

        args = dict(
            binary=self.shim, id=c.id, bundle=self.paths.bundle(c.id), runtime=self.runtime,
            runtime_root=self.paths.runtime_root, exit_file=self.paths.exit_file(c.id),
            socket_path=self.paths.socket(c.id), log_path=self.paths.log(c.id),
            log_max_size=_parse_size(c.spec.log_opts.get("max-size", "10m")),
            log_max_files=int(c.spec.log_opts.get("max-file", "3")),
            tty=c.spec.tty, stdin=c.spec.open_stdin, no_start=True)
        warm = self.warm.take() if self.warm is not None else None
        info = None
        if warm is not None:
            try:
                info = shim.spawn(**args, warm=warm)
            except shim.WarmShimGone as exc:  # died before taking the job: start a cold one
                log.warning("warm shim for %s: %s; starting a new one", c.id[:12], exc)
        if info is None:
            info = shim.spawn(**args)
        return {"pid": info.pid, "shim_pid": info.shim_pid}

    def refill_warm(self) -> None:
        """Start the next warm shim in the background (after a start, and at daemon start)."""
        if self.warm is None:
            return
        coro = asyncio.to_thread(self.warm.refill)
        if self.tasks is not None:
            self.tasks.create_task(coro)
        else:
            asyncio.get_running_loop().create_task(coro)

    def _write_etc_files(self, c: Container) -> dict[str, str]:
        d = self.paths.dir(c.id)
        network = c.spec.network_mode or "none"
        hostname = c.spec.hostname or c.id[:12]
        if network == "host" or c.spec.uts_mode == "host":
            hostname = os.uname().nodename
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
                 "ff02::2\tip6-allrouters"]
        if network == "host":
            try:
                with open("/etc/hosts") as f:
                    hosts = [line.rstrip("\n") for line in f]
            except OSError:
                pass
        for entry in c.spec.extra_hosts:
            host, _, ip = entry.partition(":")
            hosts.append(f"{ip}\t{host}")
        hosts_text, resolv_text = "\n".join(hosts) + "\n", _resolv_conf(c.spec)
        if self.networks is not None and network != "host":
            hosts_text, resolv_text = self.networks.etc_files(c, hostname)
        files = {
            "/etc/hostname": (os.path.join(d, "hostname"), hostname + "\n"),
            "/etc/hosts": (os.path.join(d, "hosts"), hosts_text),
            "/etc/resolv.conf": (os.path.join(d, "resolv.conf"), resolv_text),
        }
        for path, content in files.values():
            with open(path, "w") as f:
                f.write(content)
        return {dst: path for dst, (path, _) in files.items()}

    # -- exit monitoring ----------------------------------------------------------------
    def _monitor(self, c: Container) -> None:
        coro = self._watch(c.id, c.shim_pid)
        if self.tasks is not None:
            self.tasks.create_task(coro)
        else:
            asyncio.get_running_loop().create_task(coro)

    async def _watch(self, cid: str, shim_pid: int) -> None:
        try:
            await _wait_pid(shim_pid)
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
            result = shim.read_exit(self.paths.exit_file(cid)) or {}
            oom = await asyncio.to_thread(self._oom_killed, cid)
            code = int(result.get("exit_code", 137 if not result else 0))
            error = "" if result else "the container's shim died: exit status unknown"
            c = c.with_state(status=Status.EXITED, pid=0, exit_code=code, oom_killed=oom,
                             finished_at=result.get("exited_at") or now_rfc3339(), error=error)
            self._save(c)
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
            self.rt.delete(cid)
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

    async def _after_exit(self, c: Container) -> None:
        policy = c.spec.restart_policy
        restart = False
        if not c.manually_stopped:
            if policy.name == "always" or policy.name == "unless-stopped":
                restart = True
            elif policy.name == "on-failure" and c.state.exit_code != 0:
                restart = not policy.max_retry or c.restart_count < policy.max_retry
        if restart:
            delay = min(0.1 * (2 ** min(c.restart_count, 10)), 60.0)
            await asyncio.sleep(delay)
            async with self._lock(c.id):
                try:
                    cur = self.get(c.id)
                except NotFound:
                    return
                if cur.state.status != Status.EXITED or cur.manually_stopped:
                    return
                cur = self._save(dataclasses.replace(cur, restart_count=cur.restart_count + 1))
                try:
                    await self._start_locked(cur)
                except ConchError as exc:
                    log.warning("restarting %s failed: %s", c.id[:12], exc)
            return
        if c.spec.auto_remove:  # docker run --rm also removes the anonymous volumes
            try:
                await self.remove(c.id, force=True, volumes=True)
            except NotFound:
                pass

    # -- signals, stop, kill -------------------------------------------------------------
    async def kill(self, ref: str, signal: str = "KILL") -> None:
        c = self.get(ref)
        if not c.state.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        await self._runtime("kill", c.id, _signal_name(signal))
        self.events.publish("container", "kill", c.id, name=c.name, image=c.image,
                            signal=_signal_number(signal))

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
        if c.state.status == Status.PAUSED:
            await self._runtime("resume", c.id)
        sig = signal or c.spec.stop_signal or _image_stop_signal(self.images, c) or "SIGTERM"
        wait = timeout if timeout is not None else (c.spec.stop_timeout if c.spec.stop_timeout is not None else 10)
        exited = self._exited.get(c.id) or asyncio.Event()
        try:
            await self._runtime("kill", c.id, _signal_name(sig))
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
        await self._runtime("pause", c.id)
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
        return await self.rt.run(*args)

    # -- wait, remove, rename ------------------------------------------------------------
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
        if force:  # first: waits out a restart in progress, cancels one in its back-off
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

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        new_name = cnames.validate(new_name)
        renamed = dataclasses.replace(c, name=new_name)
        self.db.rename_container(c.id, new_name, to_dict(renamed))  # Conflict as docker
        self.events.publish("container", "rename", c.id, name=new_name, oldName="/" + c.name)

    # -- attach, resize, top, stats -----------------------------------------------------
    def exited_event(self, cid: str) -> asyncio.Event:
        """Set when the container's current run ends (set already when not running)."""
        ev = self._exited.get(cid)
        if ev is None:
            ev = asyncio.Event()
            ev.set()
        return ev

    async def attach(self, ref: str, conn, *, stdin: bool, stdout: bool, stderr: bool) -> None:
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
        await _pipe(conn, *shim_conn, stdin=stdin)

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

    async def top(self, ref: str, ps_args: str = "-ef") -> tuple[list[str], list[list[str]]]:
        c = self.get(ref)
        if not c.state.running:
            raise Conflict(f"Container {c.id} is not running")
        import json

        pids = set(json.loads(await self._runtime("ps", "--format", "json", c.id)))
        proc = await asyncio.create_subprocess_exec(
            "ps", *ps_args.split(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise InvalidArgument(f"ps: {err.decode(errors='replace').strip()}")
        lines = out.decode(errors="replace").splitlines()
        titles = lines[0].split()
        try:
            pid_col = titles.index("PID")
        except ValueError as exc:
            raise InvalidArgument("Couldn't find PID field in ps output") from exc
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                rows.append(fields)
        return titles, rows

    def stats(self, ref: str) -> dict:
        from conch.cgroups import open_manager

        c = self.get(ref)
        if not c.state.running:
            return {}
        out = open_manager(f"/conch/{c.id}", container_id=c.id).stats()
        # no limit: docker shows the host's memory as the limit
        out.setdefault("memory", {})["host_total"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        out["system_cpu_ns"] = _system_cpu_ns()
        out["online_cpus"] = os.cpu_count() or 1
        return out

    # -- update -------------------------------------------------------------------------
    async def update(self, ref: str, **changes) -> None:
        """``docker update``: resources (applied live to the cgroup) and restart policy.
        ``changes`` are CreateSpec field names (memory, memory_swap, nano_cpus, cpu_shares,
        cpu_quota, cpu_period, cpuset_cpus, pids_limit, memory_reservation, restart_policy)."""
        allowed = {"memory", "memory_swap", "memory_reservation", "nano_cpus", "cpu_shares",
                   "cpu_quota", "cpu_period", "cpuset_cpus", "cpuset_mems", "pids_limit",
                   "restart_policy"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidArgument(f"cannot update {', '.join(sorted(unknown))}")
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            spec = dataclasses.replace(c.spec, **changes)
            if spec.nano_cpus and (spec.cpu_quota or spec.cpu_period):
                raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
            if c.state.running and set(changes) - {"restart_policy"}:
                await asyncio.to_thread(_apply_resources, c.id, spec)
            self._save(dataclasses.replace(c, spec=spec))
        self.events.publish("container", "update", c.id, name=c.name, image=c.image)

    # -- reconcile after a daemon (re)start -----------------------------------------------
    async def reconcile(self) -> None:
        """Find running containers again: a live shim gets a new monitor; a shim that
        died while we were away has left an exit file (or not) to record. Files of
        containers whose record is gone (a crash in the middle of a remove) are deleted."""
        await asyncio.to_thread(self._remove_orphans)
        for c in self.list():
            if c.state.status not in (Status.RUNNING, Status.PAUSED, Status.RESTARTING):
                continue
            self._exited[c.id] = asyncio.Event()
            if c.shim_pid and _start_time(c.shim_pid) == c.shim_start:
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
                    except ConchError as exc:
                        log.warning("restarting %s at daemon start failed: %s", c.id[:12], exc)


# -- helpers ---------------------------------------------------------------------------

async def _pipe(conn, reader, writer, *, stdin: bool) -> None:
    """shim → client (already stdcopy-framed by the shim when there is no TTY) and
    client → shim (stdin, half-closed when the client half-closes)."""

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
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.ensure_future(out())]
    if stdin:
        tasks.append(asyncio.ensure_future(into()))
    closed = asyncio.ensure_future(conn.wait_closed())
    try:
        await asyncio.wait([tasks[0], closed], return_when=asyncio.FIRST_COMPLETED)
    except Exception:  # noqa: BLE001
        pass
    finally:
        for t in tasks + [closed]:
            t.cancel()
        writer.close()


def _apply_resources(cid: str, spec: CreateSpec) -> None:
    from conch.cgroups import open_manager

    res: dict = {}
    if spec.memory:
        res["memory"] = {"limit": spec.memory}
        if spec.memory_swap:
            res["memory"]["swap"] = spec.memory_swap
    if spec.memory_reservation:
        res.setdefault("memory", {})["reservation"] = spec.memory_reservation
    cpu: dict = {}
    if spec.nano_cpus:
        cpu["period"] = 100000
        cpu["quota"] = spec.nano_cpus * 100000 // 1_000_000_000
    else:
        if spec.cpu_quota:
            cpu["quota"] = spec.cpu_quota
        if spec.cpu_period:
            cpu["period"] = spec.cpu_period
    if spec.cpu_shares:
        cpu["shares"] = spec.cpu_shares
    if spec.cpuset_cpus:
        cpu["cpus"] = spec.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    if spec.pids_limit:
        res["pids"] = {"limit": spec.pids_limit}
    if res:
        open_manager(f"/conch/{cid}", container_id=cid).apply(res)


def _system_cpu_ns() -> int:
    """The host's total CPU time in ns (the cpu line of /proc/stat), as docker stats uses."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields) * 1_000_000_000 // ticks


def _image_user(image) -> str:
    cfg = image.config.config if image.config is not None else None
    return (cfg.user if cfg is not None else "") or ""


def _image_stop_signal(images, c: Container) -> str:
    try:
        cfg = images.get(c.image_id).config.config
        return (cfg.stop_signal if cfg is not None else "") or ""
    except ConchError:
        return ""


def _resolv_conf(spec: CreateSpec) -> str:
    lines = []
    if spec.dns or spec.dns_search or spec.dns_options:
        lines += [f"nameserver {d}" for d in spec.dns]
        if spec.dns_search:
            lines.append("search " + " ".join(spec.dns_search))
        if spec.dns_options:
            lines.append("options " + " ".join(spec.dns_options))
        return "\n".join(lines) + "\n"
    try:
        with open("/etc/resolv.conf") as f:
            host = f.read().splitlines()
    except OSError:
        host = []
    network = spec.network_mode or "none"
    for line in host:
        # a loopback resolver of the host is unreachable from a container's own netns
        if network != "host" and line.startswith("nameserver") and (" 127." in line or " ::1" in line):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def _start_time(pid: int) -> int:
    from conch.runtime.state import process_start

    return process_start(pid) or 0


async def _wait_pid(pid: int) -> None:
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


def _parse_size(text: str) -> int:
    text = str(text).strip().lower()
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    if text.endswith("b"):
        text = text[:-1]
    try:
        return int(text)
    except ValueError as exc:
        raise InvalidArgument(f"invalid log max-size {text!r}") from exc


def _signal_name(sig: str) -> str:
    sig = str(sig).upper()
    return sig if sig.isdigit() else sig.removeprefix("SIG")


def _signal_number(sig: str) -> int:
    import signal as _s

    sig = str(sig).upper()
    if sig.isdigit():
        return int(sig)
    try:
        return int(_s.Signals["SIG" + sig.removeprefix("SIG")])
    except KeyError as exc:
        raise InvalidArgument(f"Invalid signal: {sig}") from exc
