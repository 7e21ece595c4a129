"""The ``Engine``: the one object the API is handed (see ``conch.api`` for the seam).

It groups the services (images, containers, execs, events) and answers the daemon-wide
questions (version, info, disk usage). It is built by ``conch.daemon`` (the composition
root) and owns the TaskGroup every background task runs in.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from dataclasses import dataclass

from conch.engine.containers.service import ContainerService
from conch.engine.events import EventBus
from conch.engine.containers.execs import ExecService
from conch.engine.model import Status

VERSION = "0.1.0"


class ImagesFacade:
    """ImageService plus what needs the rest of the engine: which containers use an
    image (rmi/prune refuse to remove those), import/load/save, and events."""

    def __init__(self, service, containers: ContainerService, events: EventBus,
                 registries=None):
        from conch.engine.distribution.service import Distribution

        self.service = service
        self.containers = containers
        self.events = events
        self.distribution = Distribution(service, events, registries)

    # pull/push/login/inspect_distribution: conch.engine.distribution.service (async generators
    # of Progress for pull and push)
    def pull(self, ref: str, *, platform=None, all_tags: bool = False, credentials=None):
        return self.distribution.pull(ref, platform=platform, all_tags=all_tags,
                                      **_creds(credentials))

    def push(self, name: str, tag: str = "", *, credentials=None):
        return self.distribution.push(name, tag, **_creds(credentials))

    async def login(self, server: str, credentials):
        return await self.distribution.login(server, credentials)

    async def inspect_distribution(self, ref: str, *, credentials=None):
        return await self.distribution.inspect(ref, **_creds(credentials))

    async def search(self, term: str, *, limit: int = 0, filters=None, credentials=None):
        from conch.engine.distribution.search import search

        return await search(self.distribution.registries, term, limit=limit, filters=filters,
                            **_creds(credentials))

    def __getattr__(self, name):
        return getattr(self.service, name)

    def _users(self, image_id: str):
        from conch.images.records import ImageUser

        return [ImageUser(container_id=c.id, running=c.state.running)
                for c in self.containers.list() if c.image_id == image_id]

    def remove(self, name: str, *, force: bool = False, prune_parents: bool = True):
        out = self.service.remove(name, force=force, prune_parents=prune_parents,
                                  in_use=self._users)
        for item in out:
            if "Untagged" in item:
                self.events.publish("image", "untag", item["Untagged"], name=item["Untagged"])
            if "Deleted" in item and item["Deleted"].startswith("sha256:"):
                self.events.publish("image", "delete", item["Deleted"], name=name)
        return out

    def prune(self, *, dangling_only: bool = True):
        import dataclasses

        from conch.images import gc

        result = self.service.prune(dangling_only=dangling_only, in_use=self._users)
        # then what no image references at all (crash and failed-pull leftovers), as
        # `image prune` and `system prune` promise to free what is unused
        swept = gc.collect(self.service)
        return dataclasses.replace(result, space_reclaimed=result.space_reclaimed + swept.bytes)

    def tag(self, name: str, ref: str):
        image = self.service.tag(name, ref)
        self.events.publish("image", "tag", str(image.id), name=ref)
        return image

    def import_image(self, body, ref, *, changes=(), message="", platform=None):
        from conch.images.importer import import_image

        image = import_image(self.service, body, ref, changes=list(changes), message=message,
                             platform=platform)
        self.events.publish("image", "import", str(image.id), name=ref or str(image.id))
        return image

    def load(self, body):
        from conch.images.archive import load

        loaded = load(self.service, body)
        for item in loaded:
            self.events.publish("image", "load", str(item.image.id), name=item.ref or str(item.image.id))
        return [item.ref or str(item.image.id) for item in loaded]

    def save(self, names, out) -> None:
        from conch.images.archive import save

        save(self.service, list(names), out)


def _creds(credentials) -> dict:
    return {} if credentials is None else {"credentials": credentials}


class VolumesFacade:
    """The VolumeStore plus what needs the containers: which containers use a volume
    (rm and prune refuse/skip those, ``dangling`` lists the unused ones) and events."""

    def __init__(self, store, containers: ContainerService, events: EventBus):
        self.store = store
        self.containers = containers
        self.events = events

    # async (store work in a thread) so that events are published from the loop's thread
    async def create(self, name: str | None = None, *, driver: str = "local",
                     labels: dict | None = None, options: dict | None = None):
        v, new = await asyncio.to_thread(self.store.ensure, name or None, driver=driver,
                                         labels=labels, options=options)
        if new:
            self.events.publish("volume", "create", v.name, driver=v.driver)
        return v

    def get(self, name: str):
        return self.store.get(name)

    def list(self, filters: dict | None = None) -> list:
        """Docker's volume filters: dangling, name (substring), label, driver."""
        from conch.volumes.store import match_labels

        filters = filters or {}
        used = None
        out = []
        for v in self.store.list():
            if "dangling" in filters:
                if used is None:
                    used = {m.get("name") for c in self.containers.list() for m in c.mounts
                            if m.get("type") == "volume"}
                want = {x.lower() in ("1", "true") for x in filters["dangling"]}
                if (v.name not in used) not in want:
                    continue
            if "name" in filters and not any(n in v.name for n in filters["name"]):
                continue
            if "driver" in filters and v.driver not in filters["driver"]:
                continue
            if "label" in filters and not match_labels(v.labels, filters["label"]):
                continue
            if "label!" in filters and not match_labels(v.labels, ["!" + x for x in filters["label!"]]):
                continue
            out.append(v)
        return out

    async def remove(self, name: str, *, force: bool = False) -> None:
        from conch.errors import NotFound

        try:
            v = self.store.get(name)
        except NotFound:
            if force:
                return
            raise
        await asyncio.to_thread(self.store.remove, v.name, force=force,
                                in_use=self.containers.volume_users)
        self.events.publish("volume", "destroy", v.name, driver=v.driver)

    async def prune(self, *, all: bool = False, labels=()):
        result = await asyncio.to_thread(self.store.prune, all=all, labels=labels,
                                         in_use=self.containers.volume_users)
        for name in result.deleted:
            self.events.publish("volume", "destroy", name, driver="local")
        self.events.publish("volume", "prune", "", reclaimed=str(result.space_reclaimed))
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionInfo:
    version: str
    git_commit: str
    build_time: str
    kernel_version: str
    os: str
    arch: str
    components: dict


class Engine:
    def __init__(self, *, paths, db, images, snapshotter, runtime: str, shim: str,
                 init: str = "", runtime_name: str = "conch", tasks=None, volumes=None,
                 registries=None, networks=None, runtimes: dict[str, str] | None = None,
                 warm_runtime: bool = False):
        self.paths = paths
        self.events = EventBus()
        self.containers = ContainerService(paths=paths, db=db, images=images,
                                           snapshotter=snapshotter, events=self.events,
                                           runtime=runtime, shim=shim, init=init,
                                           runtime_inproc=runtime_name == "conch", tasks=tasks,
                                           volumes=volumes, networks=networks,
                                           runtime_name=runtime_name, runtimes=runtimes,
                                           warm_runtime=warm_runtime)
        # conch.engine.network.service.NetworkService (None: containers get no network sandbox)
        self.networks = networks
        if networks is not None:
            networks.events = self.events
            networks.bind(self.containers)
        self.volumes = VolumesFacade(volumes, self.containers, self.events) if volumes is not None else None
        self.images = ImagesFacade(images, self.containers, self.events, registries)
        self.execs = ExecService(self.containers, runtime, paths.runtime_root, tasks=tasks)
        from conch.engine.containers.filesystem import ContainerFilesystem

        self.filesystem = ContainerFilesystem(self.containers)
        self.runtime = runtime
        self.runtime_name = runtime_name
        self._id = _daemon_id(paths.data_root)

    def version(self) -> VersionInfo:
        uname = os.uname()
        return VersionInfo(version=VERSION, git_commit="conch", build_time="",
                           kernel_version=uname.release, os="linux",
                           arch=_go_arch(uname.machine),
                           components={"conch-runtime": VERSION})

    def info(self) -> dict:
        containers = self.containers.list()
        running = sum(c.state.status == Status.RUNNING for c in containers)
        paused = sum(c.state.status == Status.PAUSED for c in containers)
        uname = os.uname()
        try:
            from conch.cgroups import detect

            cgroup_version = str(detect().version)
        except Exception:  # noqa: BLE001
            cgroup_version = "1"
        return {
            "id": self._id, "name": socket.gethostname(),
            "containers": len(containers), "containers_running": running,
            "containers_paused": paused, "containers_stopped": len(containers) - running - paused,
            "images": len(self.images.list()), "driver": "overlay2",
            "driver_status": [("Backing Filesystem", "extfs"), ("Supports d_type", "true")],
            "memory_limit": True, "swap_limit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
            "cpu_cfs_period": True, "cpu_cfs_quota": True, "cpu_shares": True, "cpuset": True,
            "pids_limit": True, "oom_kill_disable": False, "ipv4_forwarding": _ip_forward(),
            "debug": False, "n_fd": len(os.listdir("/proc/self/fd")), "n_tasks": 0,
            "system_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "logging_driver": "json-file", "cgroup_driver": "cgroupfs",
            "cgroup_version": cgroup_version, "n_events_listener": self.events.listeners,
            "kernel_version": uname.release, "operating_system": _os_name(),
            "os_version": _os_version(), "os_type": "linux",
            "architecture": uname.machine, "ncpu": os.cpu_count() or 1,
            "mem_total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "root_dir": self.paths.data_root, "labels": [], "server_version": VERSION,
            "runtimes": dict(self.containers.runtimes), "default_runtime": self.runtime_name,
            "live_restore": True, "security_options": ["name=seccomp,profile=builtin"],
            "warnings": [],
        }

    def disk_usage(self) -> dict:
        from conch.engine.disk_usage import disk_usage

        return disk_usage(self)


def _daemon_id(root: str) -> str:
    path = os.path.join(root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        import uuid

        ident = str(uuid.uuid4()).upper()
        with open(path, "w") as f:
            f.write(ident)
        return ident


def _go_arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _ip_forward() -> bool:
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def _os_release() -> dict:
    out = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                out[k] = v.strip('"')
    except OSError:
        pass
    return out


def _os_name() -> str:
    return _os_release().get("PRETTY_NAME", platform.system())


def _os_version() -> str:
    return _os_release().get("VERSION_ID", "")
