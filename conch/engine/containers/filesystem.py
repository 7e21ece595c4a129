"""A container's filesystem from the outside: ``docker cp`` (stat, archive, extract),
``export``, ``diff`` and ``commit`` — Docker's semantics over the container's snapshot.

Contract: :class:`ContainerFilesystem` is the async face (one method per API call); the
module-level functions are plain synchronous code over a root directory, run in worker
threads. Paths given by clients are container paths: they are resolved inside the root
with symlinks followed as if the root were "/" (:func:`conch.runtime.rootfs.secure_join`);
writes go through :func:`conch.archive.apply.apply_layer` rooted at the container root,
so nothing is ever written outside it.

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

Known gaps: the runtime's bind mounts (``/etc/hosts``, ``/etc/hostname``,
``/etc/resolv.conf``, ``-v`` binds) exist only in the container's mount namespace, so
``cp`` sees (and writes) what lies under them in the overlay, where dockerd mounts the
volumes for the copy. A cp tar entry named ``.wh.*`` is refused (``apply_layer`` would
take it for a whiteout; dockerd writes it as a plain file).

Docker's init layer (daemon/initlayer): dockerd diffs and commits a container against a
hidden layer holding the mount points it needs (``/proc``, ``/sys``, ``/dev``,
``/etc/hosts``…). conch has no such layer: the runtime makes those mount points in the
container's upper dir. :func:`_init_leftovers` names them so that ``diff`` and ``commit``
leave them out as dockerd does (a parent that also holds real changes stays, as ``C``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import stat
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import AsyncIterator, BinaryIO, Iterable

from conch.archive.apply import (WHITEOUT_META_PREFIX, WHITEOUT_PREFIX, apply_layer,
                                 clean_name, keep_xattr)
from conch.archive.diff import Change, ChangeKind, changes as diff_changes, write_diff
from conch.engine.model import Container, Status
from conch.errors import ConchError, InvalidArgument, NotFound, PermissionDenied, SystemCallError
from conch.images.importer import apply_changes, rfc3339_nano
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digester
from conch.oci.image import ExecutionConfig, Healthcheck, History, ImageManifest
from conch.oci.reference import Reference
from conch.runtime.rootfs import secure_join
from conch.snapshots import Mount, lower_dirs, mount_all, unmount, writable_dir

log = logging.getLogger(__name__)

# Go's os.FileMode type bits (the "mode" of X-Docker-Container-Path-Stat)
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

# dockerd's init layer: files, then directories deepest first (see the module docstring)
_INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab", ".dockerenv",
               "dev/console")
_INIT_DIRS = ("dev/pts", "dev/shm", "dev", "proc", "sys", "etc")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PathStat:
    name: str
    size: int
    mode: int  # Go os.FileMode bits
    mtime: str  # RFC 3339 (UTC, nanoseconds)
    link_target: str  # container path a symlink resolves to, "" otherwise


# -- which root ----------------------------------------------------------------------

@contextlib.asynccontextmanager
async def rootfs_of(service, cid: str) -> AsyncIterator[Path]:
    """The container's root directory for the duration of the block (see the module
    docstring for which one and what is locked)."""
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
            try:
                if running:
                    lock.release()
                    held = False
                yield target
            finally:
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


# -- paths as Docker resolves them ---------------------------------------------------

def _abs_path(path: str) -> str:
    """moby's ``PreserveTrailingDotOrSeparator(filepath.Join("/", path), path)``."""
    clean = os.path.normpath("/" + path)
    clean = "/" + clean.lstrip("/")  # normpath keeps a leading "//"
    if os.path.basename(path) == "." and os.path.basename(clean) != ".":
        clean = clean.rstrip("/") + "/."
    if path.endswith("/") and not clean.endswith("/"):
        clean += "/"
    return clean


def _go_base(path: str) -> str:
    """Go's ``filepath.Base``: trailing slashes dropped, "/" for the root."""
    stripped = path.rstrip("/")
    return os.path.basename(stripped) if stripped else "/"


def _resolve(root: Path, abs_path: str) -> str:
    """moby's ``Container.ResolvePath``: the directory resolved in scope, the last
    element kept as given (a symlink there is not followed)."""
    head, base = abs_path.rsplit("/", 1)
    return os.path.join(secure_join(str(root), head or "/"), base) if base else \
        secure_join(str(root), head or "/")


def go_mode(mode: int) -> int:
    """An ``st_mode`` as Go's ``os.FileMode``."""
    out = stat.S_IMODE(mode) & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: GO_MODE_DIR, stat.S_IFLNK: GO_MODE_SYMLINK,
            stat.S_IFBLK: GO_MODE_DEVICE, stat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
            stat.S_IFIFO: GO_MODE_NAMED_PIPE, stat.S_IFSOCK: GO_MODE_SOCKET}.get(kind, 0)
    if mode & stat.S_ISUID:
        out |= GO_MODE_SETUID
    if mode & stat.S_ISGID:
        out |= GO_MODE_SETGID
    if mode & stat.S_ISVTX:
        out |= GO_MODE_STICKY
    return out


def stat_path(root: Path, path: str) -> PathStat:
    """moby's ``Container.StatPath``; FileNotFoundError when the path does not exist."""
    abs_path = _abs_path(path)
    resolved = _resolve(root, abs_path)
    try:
        st = os.lstat(resolved)
    except NotADirectoryError as exc:
        raise FileNotFoundError(exc.errno, exc.strerror, path) from exc
    link_target = ""
    if stat.S_ISLNK(st.st_mode):  # fully evaluated in the container's scope
        rel = os.path.relpath(secure_join(str(root), abs_path), root)
        link_target = "/" if rel == "." else "/" + rel
    return PathStat(name=_go_base(abs_path), size=st.st_size, mode=go_mode(st.st_mode),
                    mtime=rfc3339_nano(st.st_mtime_ns), link_target=link_target)


# -- cp out: a tar of one path ---------------------------------------------------------

def get_archive(root: Path, path: str, out: BinaryIO) -> PathStat:
    """Write a tar of ``path`` to ``out`` (dockerd's ``containerArchivePath``): its top
    entry is named after the path's base name ("foo/." gives "./…": the contents)."""
    info = stat_path(root, path)
    abs_path = _abs_path(path)
    resolved = os.path.normpath(_resolve(root, abs_path))
    rebase = "" if info.name == "/" else info.name
    parent, leaf = os.path.split(resolved)
    dfd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape") as tar:
            _TreeWriter(tar).add(dfd, leaf, rebase)
    finally:
        os.close(dfd)
    return info


class _TreeWriter:
    """Walks a tree by directory fds with no-follow opens (a container process swapping
    a directory for a symlink mid-walk cannot send us outside), in name order."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.links: dict[tuple[int, int], str] = {}

    def add(self, dfd: int, name: str, arc: str) -> None:
        pending = [(os.dup(dfd), name, arc)]
        while pending:
            parent, name, arc = pending.pop()
            try:
                children = self._entry(parent, name, arc)
            finally:
                os.close(parent)
            if children is not None:
                fd, names = children
                try:
                    for child in reversed(names):
                        pending.append((os.dup(fd), child, f"{arc}/{child}"))
                finally:
                    os.close(fd)

    def _entry(self, dfd: int, name: str, arc: str):
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        info = tarfile.TarInfo(arc)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        info.uname = info.gname = ""
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dfd)
            self.tar.addfile(info)
            return None
        if stat.S_ISSOCK(mode):
            return None  # as docker: sockets are not archived
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            info.type = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE}.get(
                stat.S_IFMT(mode), tarfile.FIFOTYPE)
            if not stat.S_ISFIFO(mode):
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(info)
            return None
        key = (st.st_dev, st.st_ino)
        if stat.S_ISREG(mode) and st.st_nlink > 1 and key in self.links:
            info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
            self.tar.addfile(info)
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if stat.S_ISDIR(mode) else 0)
        fd = os.open(name, flags, dir_fd=dfd)
        try:
            info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                                for k, v in _xattrs(fd)}
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                self.tar.addfile(info)
                return os.dup(fd), sorted(os.listdir(fd), key=os.fsencode)
            if st.st_nlink > 1:
                self.links[key] = arc
            info.size = st.st_size
            with os.fdopen(os.dup(fd), "rb") as f:
                self.tar.addfile(info, f)
            return None
        finally:
            os.close(fd)


def _xattrs(fd: int) -> list[tuple[str, bytes]]:
    try:
        keys = os.listxattr(fd)
    except OSError:
        return []
    out = []
    for key in sorted(keys):
        if keep_xattr(key):
            with contextlib.suppress(OSError):
                out.append((key, os.getxattr(fd, key)))
    return out


# -- cp in: extract a tar into a directory -----------------------------------------------

def put_archive(root: Path, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                owner: tuple[int, int] | None = None) -> None:
    """Extract the tar ``stream`` into the directory ``path`` (dockerd's
    ``containerExtractToDir``: the last element is followed if it is a symlink).

    FileNotFoundError when ``path`` does not exist; InvalidArgument when it is not a
    directory, when an entry would climb out of it, or (``no_overwrite_dir_non_dir``)
    replace a directory with a non-directory or the reverse. ``owner`` (uid, gid)
    overrides the tar's ownership (``copyUIDGID`` with a container user).
    """
    resolved = secure_join(str(root), _abs_path(path))
    try:
        st = os.lstat(resolved)
    except NotADirectoryError as exc:
        raise FileNotFoundError(exc.errno, exc.strerror, path) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument("extraction point is not a directory")
    prefix = clean_name(os.path.relpath(resolved, root))
    with tempfile.TemporaryFile(prefix="conch-cp-") as staged:
        _restage(root, prefix, stream, staged, no_overwrite_dir_non_dir, owner)
        staged.seek(0)
        # entries are now relative to the container root: symlinks inside the container
        # resolve as they would in it (dockerd unpacks chrooted into the rootfs)
        apply_layer(staged, root, whiteout_format="plain")


def _restage(root: Path, prefix: tuple[str, ...], stream: BinaryIO, out: BinaryIO,
             no_overwrite: bool, owner: tuple[int, int] | None) -> None:
    """Copy the tar with every name moved under ``prefix``, checked on the way."""
    try:
        src = tarfile.open(fileobj=stream, mode="r|*", encoding="utf-8", errors="surrogateescape")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArgument(f"the request body is not a valid tar: {exc}") from exc
    with src, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                           encoding="utf-8", errors="surrogateescape") as dst:
        try:
            for m in src:
                src.members.clear()
                parts = clean_name(m.name, what="archive entry")
                if not parts:
                    continue  # "./": the destination itself, which exists (as dockerd)
                if parts[-1].startswith(WHITEOUT_META_PREFIX):
                    continue  # aufs bookkeeping: dockerd skips it too
                if parts[-1].startswith(WHITEOUT_PREFIX):
                    # apply_layer would take it for a deletion; dockerd writes it as a file
                    raise InvalidArgument(f"archive entry {m.name!r}: cannot copy a file named {WHITEOUT_PREFIX}*")
                if no_overwrite:
                    _check_overwrite(root, prefix + parts, m)
                m.name = "/".join(prefix + parts)
                if m.islnk():
                    m.linkname = "/".join(prefix + clean_name(m.linkname, what="hardlink target"))
                if owner is not None:
                    m.uid, m.gid = owner
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        except (tarfile.TarError, EOFError) as exc:
            raise InvalidArgument(f"the request body is not a valid tar: {exc}") from exc


def _check_overwrite(root: Path, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
    where = os.path.join(secure_join(str(root), "/".join(parts[:-1])), parts[-1])
    try:
        st = os.lstat(where)
    except OSError:
        return
    path = "/" + "/".join(parts)
    if stat.S_ISDIR(st.st_mode) and not m.isdir():
        raise InvalidArgument(f'cannot overwrite directory "{path}" with non-directory "{m.name}"')
    if not stat.S_ISDIR(st.st_mode) and m.isdir():
        raise InvalidArgument(f'cannot overwrite non-directory "{path}" with directory "{m.name}"')


# -- export, diff ----------------------------------------------------------------------

def export(root: Path, out: BinaryIO) -> None:
    """``docker export``: the whole filesystem as a tar (entries as
    :func:`conch.archive.diff.write_tar` names them, but walked by directory fds: the
    processes of a running container cannot steer the walk out of it)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape") as tar:
            writer = _TreeWriter(tar)
            for name in sorted(os.listdir(fd), key=os.fsencode):
                writer.add(fd, name, name)
    finally:
        os.close(fd)


def _init_leftovers(upper: Path) -> set[str]:
    """The runtime's mount points in ``upper`` that dockerd's init layer would hide."""
    drop: set[str] = set()
    for rel in _INIT_FILES:
        with contextlib.suppress(OSError):
            st = os.lstat(upper / rel)
            empty = stat.S_ISREG(st.st_mode) and st.st_size == 0
            mtab = stat.S_ISLNK(st.st_mode) and os.readlink(upper / rel) == "/proc/mounts"
            if empty or mtab:
                drop.add(rel)
    for rel in _INIT_DIRS:
        path = upper / rel
        if not path.is_dir() or path.is_symlink():
            continue
        with contextlib.suppress(OSError):
            if os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                continue  # an opaque dir records a deletion: keep it
        if all(f"{rel}/{name}" in drop for name in os.listdir(path)):
            drop.add(rel)
    return drop


def _snapshot_dirs(service, cid: str) -> tuple[list[Path], Path]:
    mounts = service.snapshotter.mounts(cid)
    return lower_dirs(mounts), writable_dir(mounts)


def container_changes(service, cid: str) -> list[Change]:
    """``docker diff``: the upper dir against the image's layers, init leftovers hidden."""
    lowers, upper = _snapshot_dirs(service, cid)
    drop = _init_leftovers(upper)
    out = []
    for ch in diff_changes(lowers, upper):
        rel = ch.path.lstrip("/")
        if rel in drop:
            continue
        if rel in _INIT_DIRS and ch.kind is ChangeKind.ADDED:
            ch = replace(ch, kind=ChangeKind.CHANGED)  # the init layer would have it
        out.append(ch)
    return out


# -- commit ------------------------------------------------------------------------------

def container_exec_config(c: Container, image_config: ExecutionConfig | None) -> ExecutionConfig:
    """The container's ``Config`` as dockerd keeps it: the create request over the image's."""
    spec = c.spec
    hc = None
    if spec.healthcheck is not None:
        h = spec.healthcheck
        hc = Healthcheck(test=tuple(h.test) or None, interval=h.interval_ns, timeout=h.timeout_ns,
                         start_period=h.start_period_ns, retries=h.retries)
    own = ExecutionConfig(
        user=spec.user, env=tuple(spec.env) or None, cmd=spec.cmd, entrypoint=spec.entrypoint,
        working_dir=spec.working_dir, labels=dict(spec.labels) or None,
        exposed_ports={p: {} for p in spec.exposed_ports} or None,
        volumes={v: {} for v in spec.volumes} or None, stop_signal=spec.stop_signal,
        healthcheck=hc)
    return merge_config(own, image_config)


def merge_config(user: ExecutionConfig, base: ExecutionConfig | None) -> ExecutionConfig:
    """moby's ``daemon.merge``: what ``user`` leaves unset comes from ``base``."""
    if base is None:
        return user
    env = user.env
    if not env:
        env = base.env
    else:
        keys = {e.partition("=")[0] for e in env}
        env = tuple(env) + tuple(e for e in base.env or () if e.partition("=")[0] not in keys)
    cmd, entrypoint = user.cmd, user.entrypoint
    if not entrypoint:
        if not cmd:
            cmd = base.cmd
        if entrypoint is None:
            entrypoint = base.entrypoint
    return replace(
        user, user=user.user or base.user, env=env, cmd=cmd, entrypoint=entrypoint,
        exposed_ports={**(base.exposed_ports or {}), **(user.exposed_ports or {})} or None,
        labels={**(base.labels or {}), **(user.labels or {})} or None,
        volumes={**(base.volumes or {}), **(user.volumes or {})} or None,
        healthcheck=user.healthcheck or base.healthcheck,
        working_dir=user.working_dir or base.working_dir,
        stop_signal=user.stop_signal or base.stop_signal)


class _LayerSink:
    """Uncompressed tar bytes in; diff_id hashed, gzip written to the content store."""

    def __init__(self, writer):
        self.writer = writer
        self.diff = Digester()
        self.gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip, mtime 0: reproducible

    def write(self, data) -> int:
        self.diff.update(data)
        if out := self.gzip.compress(data):
            self.writer.write(out)
        return len(data)

    def finish(self) -> None:
        self.writer.write(self.gzip.flush())


def write_commit_layer(images, lowers: list[Path], upper: Path, media_type: str):
    """The upper dir as a gzip layer blob; (descriptor, diff_id), or None when it holds
    no change (dockerd then adds an empty-layer history entry and no layer)."""
    drop = _init_leftovers(upper)
    ref = f"commit-{secrets.token_hex(8)}"
    with tempfile.TemporaryFile(dir=images.tmp_dir(), prefix="conch-commit-") as raw:
        write_diff(lowers, upper, raw)
        raw.seek(0)
        writer = images.content.writer(ref)
        try:
            with writer:
                sink = _LayerSink(writer)
                kept = 0
                with tarfile.open(fileobj=raw, mode="r|", encoding="utf-8", errors="surrogateescape") as src, \
                        tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT,
                                     encoding="utf-8", errors="surrogateescape") as dst:
                    for m in src:
                        src.members.clear()
                        if m.name.rstrip("/") in drop:
                            continue
                        kept += 1
                        dst.addfile(m, src.extractfile(m) if m.isreg() else None)
                if not kept:
                    raise NoChanges()
                sink.finish()
                blob = writer.commit()
        except BaseException:
            with contextlib.suppress(NotFound):
                images.content.abort(ref)
            raise
    return blob.descriptor(media_type), sink.diff.digest()


class NoChanges(Exception):
    """:func:`write_commit_layer` found no change to record: the step or commit adds no
    layer (docker writes an empty_layer history entry instead)."""


def commit_image(service, c: Container, ref: Reference | None, *, message: str, author: str,
                 changes: Iterable[str], config: ExecutionConfig | None) -> str:
    """Docker's commit: the container's changes as a new layer over its image, the
    config from ``config`` + ``changes`` merged over the container's; returns the ID."""
    images = service.images
    parent = images.get(c.image_id)
    oci = parent.manifest.media_type == mt.OCI_MANIFEST
    new_config = merge_config(apply_changes(config, changes) or ExecutionConfig(),
                              container_exec_config(c, parent.config.config))
    lowers, upper = _snapshot_dirs(service, c.id)
    try:
        layer = write_commit_layer(images, lowers, upper, mt.OCI_LAYER_GZIP if oci else mt.DOCKER_LAYER_GZIP)
    except NoChanges:
        layer = None
    created = rfc3339_nano(time.time_ns())
    cmd = container_exec_config(c, parent.config.config).cmd or ()
    history = History(created=created, created_by=" ".join(cmd), author=author, comment=message,
                      empty_layer=layer is None)
    base = parent.config
    diff_ids = base.rootfs.diff_ids + ((layer[1],) if layer else ())
    extra = {k: v for k, v in base.extra.items() if k not in ("comment", "container", "container_config")}
    extra.update({"container": c.id, **({"comment": message} if message else {})})
    cfg = replace(base, created=created, author=author, config=new_config,
                  rootfs=replace(base.rootfs, diff_ids=diff_ids),
                  history=base.history + (history,), extra=extra)
    cfg_bytes = cfg.to_bytes()
    images.content.put(cfg_bytes)
    manifest = ImageManifest(
        media_type=parent.manifest.media_type or mt.OCI_MANIFEST,
        config=Descriptor.of(cfg_bytes, mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG),
        layers=parent.manifest.layers + ((layer[0],) if layer else ()))
    manifest_bytes = manifest.to_bytes()
    images.content.put(manifest_bytes)
    image = images.register(Descriptor.of(manifest_bytes, manifest.media_type), ref)
    return str(image.id)


# -- the async face ------------------------------------------------------------------------

class ContainerFilesystem:
    """The API's entry points; ``service`` is the engine's ContainerService."""

    def __init__(self, service):
        self.service = service

    def _not_found(self, ref: str, path: str) -> NotFound:
        return NotFound(f"Could not find the file {path} in container {ref}")

    async def stat(self, ref: str, path: str) -> PathStat:
        c = self.service.get(ref)
        async with rootfs_of(self.service, c.id) as root:
            try:
                return await asyncio.to_thread(stat_path, root, path)
            except FileNotFoundError as exc:
                raise self._not_found(ref, path) from exc

    async def archive(self, ref: str, path: str, out: BinaryIO) -> PathStat:
        c = self.service.get(ref)
        async with rootfs_of(self.service, c.id) as root:
            try:
                info = await asyncio.to_thread(get_archive, root, path, out)
            except FileNotFoundError as exc:
                raise self._not_found(ref, path) from exc
        self.service.events.publish("container", "archive-path", c.id, name=c.name, image=c.image,
                                    path=path)
        return info

    async def extract(self, ref: str, path: str, stream: BinaryIO, *,
                      no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        c = self.service.get(ref)
        if c.spec.read_only:
            raise PermissionDenied("container rootfs is marked read-only")
        async with rootfs_of(self.service, c.id) as root:
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
