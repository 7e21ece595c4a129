"""A container's root directory as tar streams, for ``docker cp`` and ``export``: stat a
path (Docker's X-Docker-Container-Path-Stat, with Go's file mode bits), archive a path,
extract an archive under a path, export the whole root.

Plain synchronous code over a root directory (run in worker threads). Paths given by
clients are container paths, resolved inside the root with symlinks followed as if the
root were "/" (:func:`conch.runtime.rootfs.secure_join`); writes go through
:func:`conch.archive.apply.apply_layer` rooted at the container root, so nothing is ever
written outside it. A cp tar entry named ``.wh.*`` is refused (``apply_layer`` would take
it for a whiteout; dockerd writes it as a plain file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from conch.archive.apply import (WHITEOUT_META_PREFIX, WHITEOUT_PREFIX, apply_layer, clean_name,
                                 keep_xattr)
from conch.errors import InvalidArgument
from conch.images.importer import rfc3339_nano
from conch.runtime.rootfs import secure_join


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


_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PathStat:
    name: str
    size: int
    mode: int  # Go os.FileMode bits
    mtime: str  # RFC 3339 (UTC, nanoseconds)
    link_target: str  # container path a symlink resolves to, "" otherwise


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
