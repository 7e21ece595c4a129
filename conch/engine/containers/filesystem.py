"""A container's filesystem from the outside: ``docker cp`` (stat, archive, extract),
``export``, ``diff`` and ``commit`` — Docker's semantics over the container's snapshot.

Contract: :class:`ContainerFilesystem` is the async face (one method per API call); the
work is plain synchronous code over a root directory, run in worker threads:
:mod:`~conch.engine.containers.rootfs_tar` (cp, export) and
:mod:`~conch.engine.containers.changes` (diff, commit). This module decides which root.

Which root (:func:`rootfs_of`), decided under the container's lock so that start and
exit cannot change it meanwhile:

1. running: a private bind of the live overlay mount (``paths.rootfs(cid)``) on a
   temporary directory under ``<exec-root>/fs``; the lock is released at once. Writes
   land in the running container's overlay (visible inside immediately) and an exit
   during a long copy can still unmount the live rootfs (our bind keeps the overlay
   alive until we are done).
2. not running: the snapshot's mounts on the temporary directory, the lock held until
   the operation ends (a start would mount the same upper dir a second time).

The temporary directory lives under the exec root, never under the container's
directory: ``rm`` deletes that one recursively and must never walk into a mount.

For cp (stat, archive, extract) the container's volumes, binds and /etc files are bound
over that root too (:mod:`~conch.engine.containers.cp_mounts`, as dockerd's
MountVolumes), so cp sees what the container sees; export, diff and commit see the
container's own filesystem only, as in Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, BinaryIO, Iterable

from conch.engine.containers import cp_mounts
from conch.engine.containers.changes import commit_image, container_changes
from conch.engine.model import Status
from conch.errors import ConchError, InvalidArgument, NotFound, PermissionDenied, SystemCallError
from conch.images.importer import apply_changes
from conch.oci.image import ExecutionConfig
from conch.oci.reference import Reference
from conch.snapshots import Mount, mount_all, unmount

if TYPE_CHECKING:  # rootfs_tar (tarfile, conch.archive) loads at the first cp/export/diff
    from conch.archive.diff import Change
    from conch.engine.containers.rootfs_tar import PathStat


log = logging.getLogger(__name__)


# -- which root ----------------------------------------------------------------------

@contextlib.asynccontextmanager
async def rootfs_of(service, cid: str, *, with_mounts: bool = False) -> AsyncIterator[Path]:
    """The container's root directory for the duration of the block (see the module
    docstring for which one and what is locked); ``with_mounts``: its volumes, binds
    and /etc files bound over it (cp)."""
    lock = service._lock(cid)
    await lock.acquire()
    held = True
    try:
        target = await asyncio.to_thread(_make_dir, Path(service.paths.exec_root) / "fs")
        try:
            live = service.paths.rootfs(cid)
            running = await asyncio.to_thread(os.path.ismount, live)
            if running:
                mounts = [Mount(type="bind", source=live, options=("bind", "private"))]
            else:
                mounts = await asyncio.to_thread(service.snapshotter.mounts, cid)
            await asyncio.to_thread(mount_all, mounts, target)
            extra: list[str] = []
            try:
                if with_mounts:
                    extra = await asyncio.to_thread(cp_mounts.mount_all, service.get(cid), target,
                                                    service.paths.dir(cid))
                if running:
                    lock.release()
                    held = False
                yield target
            finally:
                await asyncio.to_thread(cp_mounts.unmount_all, extra)
                await asyncio.to_thread(_unmount, target)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(target)
    finally:
        if held:
            lock.release()


def _unmount(target: Path) -> None:
    """Unmount; lazily when still busy (a worker thread of a cancelled request may still
    be reading: the kernel lets go of the mount when it is done)."""
    try:
        unmount(target)
    except SystemCallError as exc:
        if exc.errno != errno.EBUSY:
            raise
        log.warning("%s is busy: detaching it", target)
        from conch.kernel import mount as kmount

        kmount.umount(target, kmount.MNT_DETACH)


def _make_dir(base: Path) -> Path:
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = base / secrets.token_hex(8)
    path.mkdir(mode=0o700)
    return path


# -- the async face ------------------------------------------------------------------------

class ContainerFilesystem:
    """The API's entry points; ``service`` is the engine's ContainerService."""

    def __init__(self, service):
        self.service = service

    def _not_found(self, ref: str, path: str) -> NotFound:
        return NotFound(f"Could not find the file {path} in container {ref}")

    async def stat(self, ref: str, path: str) -> PathStat:
        from conch.engine.containers.rootfs_tar import stat_path

        c = self.service.get(ref)
        async with rootfs_of(self.service, c.id, with_mounts=True) as root:
            try:
                return await asyncio.to_thread(stat_path, root, path)
            except FileNotFoundError as exc:
                raise self._not_found(ref, path) from exc

    async def archive(self, ref: str, path: str, out: BinaryIO) -> PathStat:
        from conch.engine.containers.rootfs_tar import get_archive

        c = self.service.get(ref)
        async with rootfs_of(self.service, c.id, with_mounts=True) as root:
            try:
                info = await asyncio.to_thread(get_archive, root, path, out)
            except FileNotFoundError as exc:
                raise self._not_found(ref, path) from exc
        self.service.events.publish("container", "archive-path", c.id, name=c.name, image=c.image,
                                    path=path)
        return info

    async def extract(self, ref: str, path: str, stream: BinaryIO, *,
                      no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        from conch.engine.containers.rootfs_tar import put_archive

        c = self.service.get(ref)
        # moby extractToDir: a read-only volume or bind refuses, a read-only rootfs
        # refuses unless the path is in a writable volume (both 400s)
        rw = cp_mounts.mount_rw(c, path)
        if rw is False:
            raise InvalidArgument("mounted volume is marked read-only")
        if rw is None and c.spec.read_only:
            raise InvalidArgument("container rootfs is marked read-only")
        async with rootfs_of(self.service, c.id, with_mounts=True) as root:
            owner = None
            if copy_uid_gid and c.spec.user:
                from conch.engine.containers.ociconfig import resolve_user

                uid, gid, _ = await asyncio.to_thread(resolve_user, c.spec.user, str(root))
                owner = (uid, gid)
            try:
                await asyncio.to_thread(put_archive, root, path, stream,
                                        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, owner=owner)
            except FileNotFoundError as exc:
                raise self._not_found(ref, path) from exc
        self.service.events.publish("container", "extract-to-dir", c.id, name=c.name,
                                    image=c.image, path=path)

    async def export(self, ref: str, out: BinaryIO) -> None:
        from conch.engine.containers.rootfs_tar import export

        c = self.service.get(ref)
        async with rootfs_of(self.service, c.id) as root:
            await asyncio.to_thread(export, root, out)
        self.service.events.publish("container", "export", c.id, name=c.name, image=c.image)

    async def changes(self, ref: str) -> list[Change]:
        c = self.service.get(ref)
        return await asyncio.to_thread(container_changes, self.service, c.id)

    async def commit(self, ref: str, repo_tag: str | None, *, message: str = "", author: str = "",
                     changes: Iterable[str] = (), config: ExecutionConfig | None = None,
                     pause: bool = True) -> str:
        c = self.service.get(ref)
        named = None
        if repo_tag:
            named = Reference.parse(repo_tag)
            if named.digest is not None:
                raise InvalidArgument("cannot commit to a digest reference")
        changes = list(changes)
        apply_changes(None, changes)  # reject a bad --change before any work
        paused = False
        if pause and c.state.status == Status.RUNNING:
            await self.service.pause(c.id)
            paused = True
        try:
            # a stopped container is locked (no start, no rm meanwhile); a running one is
            # paused instead, as dockerd does: its exit must not wait for us
            async with contextlib.nullcontext() if c.state.running else self.service._lock(c.id):
                image_id = await asyncio.to_thread(commit_image, self.service, c, named,
                                                   message=message, author=author,
                                                   changes=changes, config=config)
        finally:
            if paused:
                try:
                    await self.service.unpause(c.id)
                except ConchError as exc:
                    log.warning("unpausing %s after commit: %s", c.id[:12], exc)
        self.service.events.publish("container", "commit", c.id, name=c.name, image=c.image,
                                    comment=message, imageID=image_id,
                                    imageRef=str(named) if named else None)
        return image_id
