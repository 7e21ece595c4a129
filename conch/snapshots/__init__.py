"""Snapshots: layered filesystem trees, handed out as mount descriptions.

Contract (containerd's snapshotter model): a snapshot is *active* (writable, named by a
key, made by ``prepare``), a *view* (read-only, by ``view``) or *committed* (immutable,
named, made from an active one by ``commit``; only committed snapshots can be parents).
A snapshotter returns :class:`Mount` values and never mounts anything itself: mounting
is the caller's act, done here by :func:`mount_all` / :func:`unmount` (or by the runtime
from the OCI bundle). :class:`Snapshotter` is the seam; ``overlay`` holds the on-disk
overlayfs implementation and documents its layout.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

from conch.errors import InvalidArgument, SystemCallError

__all__ = [
    "Kind", "Info", "Mount", "Usage", "Snapshotter", "mount_all", "unmount",
    "writable_dir", "lower_dirs", "tree_usage",
]


class Kind(enum.Enum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One mount(2) to make, in the words of runtime-spec ``mounts[]``."""

    type: str  # "overlay" or "bind"
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    key: str  # the key of an active/view snapshot, the name of a committed one
    kind: Kind
    parent: str | None
    created: float
    updated: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    size: int  # bytes of the snapshot's own files (hardlinks counted once)
    inodes: int


class Snapshotter(Protocol):
    def prepare(self, key: str, parent: str | None, *, labels: dict[str, str] | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str | None, *, labels: dict[str, str] | None = None) -> list[Mount]: ...
    def commit(self, name: str, key: str, *, labels: dict[str, str] | None = None) -> None: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def remove(self, key: str) -> None: ...
    def stat(self, key: str) -> Info: ...
    def walk(self) -> Iterator[Info]: ...
    def usage(self, key: str) -> Usage: ...
    def scratch(self) -> Path: ...
    def commit_scratch(self, name: str, parent: str | None, fs: Path, *,
                       labels: dict[str, str] | None = None) -> None: ...


def tree_usage(top: Path) -> Usage:
    """Bytes and inodes of the files under ``top`` (hardlinks counted once)."""
    seen: set[int] = set()
    size = 0
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                size += st.st_size
    return Usage(size=size, inodes=len(seen))


def writable_dir(mounts: list[Mount]) -> Path:
    """The directory an unpacker writes a layer into: the overlay upperdir, or the bind
    source of a parentless active snapshot."""
    for m in mounts:
        if m.type == "overlay":
            for opt in m.options:
                if opt.startswith("upperdir="):
                    return Path(opt[len("upperdir="):])
        elif m.type == "bind" and "ro" not in m.options:
            return Path(m.source)
    raise InvalidArgument(f"no writable directory in mounts {mounts!r}")


def lower_dirs(mounts: list[Mount]) -> list[Path]:
    """The read-only layers under ``mounts``, top-most first (for ``changes``/``write_diff``)."""
    for m in mounts:
        if m.type == "overlay":
            for opt in m.options:
                if opt.startswith("lowerdir="):
                    return [Path(p) for p in opt[len("lowerdir="):].split(":")]
        elif m.type == "bind" and "ro" in m.options:
            return [Path(m.source)]
    return []


def mount_all(mounts: list[Mount], target: Path) -> None:
    """Mount ``mounts`` in order on ``target``; on failure, undo what was mounted."""
    from conch.kernel import mount as kmount  # lazy: ctypes loads only when mounting

    done = 0
    try:
        for m in mounts:
            _mount_one(kmount, m, Path(target))
            done += 1
    except BaseException:
        for _ in range(done):
            kmount.umount(target, kmount.MNT_DETACH)
        raise


def _mount_one(kmount, m: Mount, target: Path) -> None:
    flags, propagation, data = kmount.parse_options(m.options)
    if m.type == "bind":
        kmount.mount(m.source, target, None, flags & (kmount.MS_BIND | kmount.MS_REC) | kmount.MS_BIND)
        if flags & ~(kmount.MS_BIND | kmount.MS_REC):
            # A bind mount ignores other flags on creation: apply them by remounting.
            kmount.mount(None, target, None, flags | kmount.MS_BIND | kmount.MS_REMOUNT)
    else:
        text = ",".join(data)
        if len(text.encode()) >= os.sysconf("SC_PAGESIZE"):
            raise InvalidArgument(
                f"{m.type} mount options are {len(text)} bytes, over the kernel's one-page limit"
            )
        kmount.mount(m.source, target, m.type, flags, text or None)
    if propagation:
        kmount.mount(None, target, None, propagation)


def unmount(target: Path) -> None:
    """Unmount everything stacked on ``target`` (not below it); a no-op when nothing is."""
    from conch.kernel import mount as kmount

    while True:
        try:
            kmount.umount(target, 0)
        except SystemCallError as exc:
            if exc.errno == errno.EINVAL:  # not a mount point (any more)
                return
            raise
