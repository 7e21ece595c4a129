"""An in-memory engine for API, client and CLI-compatibility tests (a fake, not a mock).

It offers exactly the seam ``conch.api`` documents: ``version()``, ``info()``,
``disk_usage()``, ``events.subscribe(...)`` and ``images`` (the ``ImageService`` methods the
image routes call), returning the real record types (``conch.images.records.Image``,
``HistoryEntry``, ``PruneResult``), so the API's serialisers are tested against the shapes
the daemon will really hand them. Errors are the real kinds with Docker's messages.

    engine = FakeEngine()
    engine.images.add("busybox:latest", labels={"a": "b"})
    engine.events.publish("container", "start", "abc", {"name": "web", "image": "busybox"})
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import tarfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, BinaryIO, Iterable

from conch.engine.events import Event, EventBus
from conch.errors import Conflict, InvalidArgument, NotFound
from conch.images.records import HistoryEntry, Image, PruneResult
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import ExecutionConfig, History, ImageConfig, ImageManifest, RootFS
from conch.oci.reference import Reference


class FakeEvents(EventBus):
    """The engine's real event bus, with a publish that takes the attributes as a dict
    and an optional timestamp (what the API tests need to replay history)."""

    def publish(self, type: str, action: str, actor_id: str,  # type: ignore[override]
                attributes: dict[str, str] | None = None, *, time_nano: int | None = None) -> Event:
        return self.publish_event(Event(
            type=type, action=action, actor_id=actor_id, attributes=dict(attributes or {}),
            time_nano=time.time_ns() if time_nano is None else time_nano))


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


class FakeImages:
    """Images by ID, with names; the ``ImageService`` methods the API calls."""

    def __init__(self) -> None:
        self._images: dict[Digest, Image] = {}
        self._clock = 1_700_000_000.0
        self.remote: set[str] = set()  # full references the fake registry serves to pull

    # --- building ---

    def add(self, *names: str, labels: dict[str, str] | None = None, size: int = 1234,
            created: float | None = None, layer: bytes = b"", cmd: tuple[str, ...] = ("sh",),
            comment: str = "") -> Image:
        if created is None:
            self._clock += 60
            created = self._clock
        created_s = _rfc3339(created)
        layer_digest = Digest.from_bytes(layer or repr((names, created)).encode())
        config = ImageConfig(
            architecture="amd64", os="linux", created=created_s,
            config=ExecutionConfig(cmd=cmd, labels=dict(labels) if labels else None,
                                   env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)),
            rootfs=RootFS(diff_ids=(layer_digest,)),
            history=(History(created=created_s, created_by="fake layer", comment=comment),),
            extra={"comment": comment} if comment else {},
        )
        config_bytes = config.to_bytes()
        manifest = ImageManifest(media_type=mt.DOCKER_MANIFEST,
                                 config=Descriptor.of(config_bytes, mt.DOCKER_CONFIG),
                                 layers=(Descriptor(media_type=mt.DOCKER_LAYER_GZIP,
                                                    digest=layer_digest, size=size),))
        image = Image(id=manifest.config.digest, names=(), repo_tags=(), repo_digests=(),
                      target=Descriptor.of(manifest.to_bytes(), mt.DOCKER_MANIFEST),
                      manifest=manifest, config=config, size=size, last_tag_time=None)
        self._images[image.id] = image
        for name in names:
            self.tag(str(image.id), name)
        return self._images[image.id]

    # --- the ImageService surface ---

    def list(self) -> list[Image]:
        return sorted(self._images.values(), key=lambda i: (i.created, str(i.id)), reverse=True)

    def get(self, name: str) -> Image:
        for image in self._images.values():
            if name in (str(image.id), image.id.hex) or \
                    (len(name) >= 4 and image.id.hex.startswith(name.removeprefix("sha256:"))):
                return image
        ref = Reference.parse(name)
        for image in self._images.values():
            if ref.familiar() in image.repo_tags:
                return image
        raise NotFound(f"No such image: {ref.familiar()}")

    def tag(self, name: str, ref: str) -> Image:
        image = self.get(name)
        familiar = Reference.parse(ref).familiar()
        for other in list(self._images.values()):
            if familiar in other.repo_tags:
                self._replace(other, repo_tags=tuple(t for t in other.repo_tags if t != familiar))
        image = self._images[image.id]
        return self._replace(image, repo_tags=tuple(sorted({*image.repo_tags, familiar})),
                             names=tuple(sorted({*image.names, str(Reference.parse(ref))})),
                             last_tag_time=datetime.now(timezone.utc))

    def _replace(self, image: Image, **changes: Any) -> Image:
        new = dataclasses.replace(image, **changes)
        self._images[image.id] = new
        return new

    def history(self, name: str) -> list[HistoryEntry]:
        image = self.get(name)
        return [HistoryEntry(id=str(image.id), created=int(datetime.fromisoformat(
            image.created.replace("Z", "+00:00")).timestamp()), created_by="fake layer",
            tags=image.repo_tags, size=image.size, comment="")]

    def intermediate_ids(self, images=None) -> set:
        return set()  # the fake's images are never build steps

    def remove(self, name: str, *, force: bool = False,
               prune_parents: bool = True) -> list[dict[str, str]]:
        image = self.get(name)
        by_id = name.removeprefix("sha256:") and image.id.hex.startswith(name.removeprefix("sha256:"))
        if not by_id:
            familiar = Reference.parse(name).familiar()
            image = self._replace(image, repo_tags=tuple(t for t in image.repo_tags if t != familiar))
            out = [{"Untagged": familiar}]
            if image.repo_tags:
                return out
        else:
            if len(image.repo_tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {image.id.short()} (must be forced)"
                               " - image is referenced in multiple repositories")
            out = [{"Untagged": t} for t in image.repo_tags]
        del self._images[image.id]
        return out + [{"Deleted": str(image.id)}]

    def prune(self, *, dangling_only: bool = True) -> PruneResult:
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        for image in self.list():
            if dangling_only and image.repo_tags:
                continue
            deleted += [{"Untagged": t} for t in image.repo_tags] + [{"Deleted": str(image.id)}]
            reclaimed += image.size
            del self._images[image.id]
        return PruneResult(deleted=deleted, space_reclaimed=reclaimed)

    def import_image(self, body: BinaryIO, ref: str | None, *, changes: Iterable[str] = (),
                     message: str = "", platform: str | None = None) -> Image:
        data = body.read()
        try:
            tarfile.open(fileobj=io.BytesIO(data)).getmembers()
        except tarfile.TarError as exc:
            raise InvalidArgument(f"invalid tar archive: {exc}") from exc
        image = self.add(layer=data, size=len(data), comment=message)
        if ref:
            image = self.tag(str(image.id), ref)
        return image

    async def pull(self, ref: str, *, platform: str | None = None, all_tags: bool = False,
                   credentials: Any = None):
        """A pull from a fake registry that serves exactly ``self.remote``: an unknown
        reference fails before the first progress item, as the real engine's does."""
        named = Reference.parse(ref)
        if str(named) not in self.remote:
            raise NotFound(f"manifest for {named.familiar()} not found: manifest unknown: "
                           "manifest unknown")
        yield {"status": f"Pulling from {named.path}", "id": named.tag}
        yield {"status": "Downloading", "id": "0123456789ab", "current": 5, "total": 10}
        self.add(str(named))
        yield {"status": f"Status: Downloaded newer image for {named.familiar()}"}

    def load(self, body: BinaryIO) -> list[str]:
        """Loads a tar whose members are named after the image references it holds."""
        with tarfile.open(fileobj=body) as tar:
            names = [m.name.replace("__", "/") for m in tar.getmembers()]
        for name in names:
            self.add(name)
        return [Reference.parse(n).familiar() for n in names]

    def save(self, names: list[str], out: BinaryIO) -> None:
        with tarfile.open(fileobj=out, mode="w") as tar:
            for name in names:
                image = self.get(name)
                blob = image.config.to_bytes()
                info = tarfile.TarInfo(f"blobs/sha256/{image.id.hex}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))


@dataclass
class FakeEngine:
    """``create_app(FakeEngine())`` serves the system and image routes."""

    images: FakeImages = field(default_factory=FakeImages)
    events: FakeEvents = field(default_factory=FakeEvents)
    containers_running: int = 1
    containers_stopped: int = 2

    def version(self) -> dict[str, Any]:
        return {"version": "0.1.0", "git_commit": "fake", "build_time": "2026-01-01T00:00:00Z",
                "kernel_version": "6.18.0-fake", "os": "linux", "arch": "amd64",
                "components": {"conch-runtime": "0.1.0"}}

    async def info(self) -> dict[str, Any]:  # async on purpose: both kinds are exercised
        return {
            "id": "FAKE:ENGINE", "name": "fakehost",
            "containers": self.containers_running + self.containers_stopped,
            "containers_running": self.containers_running, "containers_paused": 0,
            "containers_stopped": self.containers_stopped,
            "images": len(self.images.list()), "driver_status": [("Backing Filesystem", "extfs")],
            "kernel_version": "6.18.0-fake", "operating_system": "Debian GNU/Linux 12 (bookworm)",
            "os_version": "12", "architecture": "x86_64", "ncpu": 2, "mem_total": 24 << 30,
            "root_dir": "/var/lib/conch", "server_version": "0.1.0", "cgroup_version": "1",
            "runtimes": {"conch": "conch-runtime", "runc": "runc"}, "default_runtime": "conch",
            "n_events_listener": self.events.listeners,
        }

    def disk_usage(self) -> dict[str, Any]:
        images = self.images.list()
        return {"layers_size": sum(i.size for i in images), "images": images,
                "containers": [], "volumes": []}


class ServerThread:
    """An aiohttp app served on a unix socket from a background thread's event loop, for
    tests that talk to it with blocking clients (conch.client, raw sockets, docker CLI).

        with ServerThread(create_app(FakeEngine()), tmp_path / "api.sock") as srv:
            Client(srv.host).get("/version")
    """

    def __init__(self, app: Any, path: Any) -> None:
        self.app = app
        self.path = str(path)
        self.host = f"unix://{self.path}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: Any = None
        self._error: BaseException | None = None

    def __enter__(self) -> "ServerThread":
        import threading

        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="conch-test-api")
        self._thread.start()
        if not ready.wait(10) or self._error is not None:
            raise RuntimeError(f"test API server did not start: {self._error!r}")
        return self

    def _run(self, ready: Any) -> None:
        from conch.api.server import serving

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with serving(self.app, self.host, shutdown_timeout=1.0):
                ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self._error = exc
            ready.set()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in the server's loop (e.g. ``engine.events.publish``)."""
        import concurrent.futures

        assert self.loop is not None
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(10)

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
