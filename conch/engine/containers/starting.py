"""Starting a container (``ContainerService.start``): mount the rootfs snapshot, set up
the network sandbox, write hostname/hosts/resolv.conf, resolve the user, write
config.json, spawn the shim (a warm one when the pool has one), run the process.

Order of ``start`` (each step undone if a later one fails): mount the rootfs snapshot →
write hostname/hosts/resolv.conf → resolve the user in the container's passwd → write
config.json → spawn the shim (which runs ``conch-runtime create``) → ``start`` → record.
A mixin of :class:`conch.engine.containers.service.ContainerService`: it uses the
service's attributes (paths, images, networks, ...) and its other parts through ``self``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

from conch.engine.containers import health
from conch.engine.containers import log_drivers
from conch.engine.containers import mounts as cmounts
from conch.engine.containers import ociconfig
from conch.engine.containers.exits import start_time
from conch.engine.durable import write_json
from conch.engine.model import Container, CreateSpec, Health, Status, now_rfc3339
from conch.errors import ConchError, Conflict, InvalidArgument, NotModified

log = logging.getLogger(__name__)


class Starting:
    default_ulimits: tuple = ()  # daemon.json default-ulimits (ContainerService, set by conchd)

    def _default_ulimits(self, c: Container) -> Container:
        """The daemon's default ulimits added at start to the container's own, as moby's
        mergeUlimits: not recorded in HostConfig.Ulimits (inspect shows the container's), and a
        changed daemon.json applies to existing containers at their next start."""
        names = {u[0] for u in c.spec.ulimits}
        extra = tuple(u for u in self.default_ulimits if u[0] not in names)
        if not extra:
            return c
        return dataclasses.replace(c, spec=dataclasses.replace(c.spec, ulimits=c.spec.ulimits + extra))

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
            # the shim is recorded before the runtime's start: if conchd dies from here on,
            # its restart finds the task and asks the runtime whether the process already
            # runs (reconcile_interrupted_start), instead of starting the command twice
            c = self._save(dataclasses.replace(
                c, shim_pid=info["shim_pid"], shim_start=start_time(info["shim_pid"]),
                mounts=info.get("mounts", c.mounts)))
            self._exited[c.id] = asyncio.Event()
            # ... attach clients waiting for this start are wired up, then it runs
            await self._connect_pending(c)
            try:
                await self._runtime("start", c.id)
            except ConchError:
                await asyncio.to_thread(self._cleanup_task, c.id)
                raise
        except ConchError as exc:
            c = self._save(dataclasses.replace(c, shim_pid=0, shim_start=0,
                                               state=dataclasses.replace(c.state, error=str(exc))))
            raise
        hc = health.effective(c, image.config)
        c = c.with_state(status=Status.RUNNING, pid=info["pid"], started_at=now_rfc3339(),
                         error="", exit_code=0, oom_killed=False,
                         health=Health() if hc is not None else None)
        c = dataclasses.replace(c, shim_pid=info["shim_pid"], shim_start=start_time(info["shim_pid"]),
                                manually_stopped=False, mounts=info.get("mounts", c.mounts))
        self._save_or_keep(c)  # it runs: a full disk must not hide that (or its exit)
        self._monitor(c)
        self.refill_warm()
        if hc is not None:
            self._start_health(c.id, hc)
        if self.networks is not None:  # a replica joins its shared port once it listens
            create = self.tasks.create_task if self.tasks is not None else asyncio.get_running_loop().create_task
            create(self.networks.started(c.id, info["pid"], has_health=hc is not None))
        self.events.publish("container", "start", c.id, name=c.name, image=c.image)
        return c

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
            user = ociconfig.resolve_user(c.spec.user or image_user(image), rootfs)
            link_env = self.networks.link_env(c) if self.networks is not None and c.spec.links else ()
            spec = ociconfig.runtime_spec(self._default_ulimits(c), image.config, rootfs=rootfs,
                                          files=files, user=user,
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

        opts = log_drivers.effective_opts(c.spec.log_driver, c.spec.log_opts)
        rt = self.rt_for(c.id)
        args = dict(
            binary=self.shim, id=c.id, bundle=self.paths.bundle(c.id), runtime=rt.binary,
            runtime_root=self.paths.runtime_root, exit_file=self.paths.exit_file(c.id),
            socket_path=self.paths.socket(c.id), log_path=self.paths.log(c.id),
            log_max_size=parse_size(opts.get("max-size", "10m")),
            log_max_files=int(opts.get("max-file", "3")),
            tty=c.spec.tty, stdin=c.spec.open_stdin, no_start=True)
        if not log_drivers.keeps_logs(c.spec.log_driver):
            # --log-driver none: the shim's writes go nowhere (no rotation of /dev/null)
            args.update(log_path="/dev/null", log_max_size=0)
        # a warm shim waits with the default runtime: other runtimes start cold
        warm = self.warm.take() if self.warm is not None and rt is self.rt else None
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
        hosts_text, resolv_text = "\n".join(hosts) + "\n", resolv_conf(c.spec)
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


def image_user(image) -> str:
    cfg = image.config.config if image.config is not None else None
    return (cfg.user if cfg is not None else "") or ""


def resolv_conf(spec: CreateSpec) -> str:
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


def parse_size(text: str) -> int:
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

