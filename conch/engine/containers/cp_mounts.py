"""The container's mounts on the temporary root that ``docker cp`` works in, so that
``GET/PUT/HEAD /containers/{id}/archive`` see what the container sees.

dockerd does the same (daemon/archive_unix.go → container.MountVolumes): every volume
and bind, and the /etc files it writes (``/etc/hostname``, ``/etc/hosts``,
``/etc/resolv.conf``, once the container has started once), bind-mounted over the
container's root, parents before children, read-only ones read-only, each made
rprivate so that nothing propagates back to the host's mount tree (the binds go away
with a lazy unmount). tmpfs mounts exist only in a running container's namespace:
dockerd does not show them to cp either.

:func:`mount_all` returns the mountpoints it made, :func:`unmount_all` takes them off in
reverse order. Plain synchronous code, run in a worker thread.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from conch.errors import SystemCallError
from conch.runtime.rootfs import secure_join

log = logging.getLogger(__name__)

ETC_FILES = ("hostname", "hosts", "resolv.conf")


def _sources(container, etc_dir: str) -> list[tuple[str, str, bool]]:
    """(source, container path, rw) for each mount to show, shallowest first."""
    user = []
    for m in container.mounts:
        if m.get("type", "bind") == "tmpfs" or not m.get("source"):
            continue
        src = os.path.join(m["source"], m["subpath"]) if m.get("subpath") else m["source"]
        if os.path.exists(src):
            user.append((src, os.path.normpath(m["destination"]), bool(m.get("rw", True))))
    covered = {dst for _, dst, _ in user}
    ours = []
    for name in ETC_FILES:
        src, dst = os.path.join(etc_dir, name), "/etc/" + name
        # a user's mount on the file (or on /etc) wins, as in the container
        if os.path.isfile(src) and dst not in covered and "/etc" not in covered:
            ours.append((src, dst, True))
    return sorted(ours + user, key=lambda o: o[1].count("/"))


def mount_all(container, root: Path, etc_dir: str) -> list[str]:
    """Bind the container's mounts over ``root``; the mountpoints, in mount order."""
    from conch.kernel import mount as kmount

    done: list[str] = []
    try:
        kmount.mount(None, str(root), None, kmount.MS_REC | kmount.MS_PRIVATE)
        for src, dst, rw in _sources(container, etc_dir):
            target = secure_join(str(root), dst)
            _make_mountpoint(target, os.path.isdir(src))
            kmount.mount(src, target, None, kmount.MS_BIND | kmount.MS_REC)
            done.append(target)
            kmount.mount(None, target, None, kmount.MS_REC | kmount.MS_PRIVATE)
            if not rw:
                kmount.mount(None, target, None,
                             kmount.MS_BIND | kmount.MS_REMOUNT | kmount.MS_RDONLY)
    except BaseException:
        unmount_all(done)
        raise
    return done


def _make_mountpoint(target: str, is_dir: bool) -> None:
    """moby fileutils.CreateIfNotExists: a directory or an empty file, parents made."""
    if os.path.lexists(target):
        return
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def unmount_all(mountpoints: list[str]) -> None:
    """Take the binds off, deepest (last made) first; lazily when busy."""
    from conch.kernel import mount as kmount

    for target in reversed(mountpoints):
        try:
            kmount.umount(target, 0)
        except SystemCallError as exc:
            if exc.errno == errno.EINVAL:
                continue
            log.warning("cp mount %s is busy (%s): detaching it", target, exc)
            kmount.umount(target, kmount.MNT_DETACH)


def mount_rw(container, path: str) -> bool | None:
    """Is container path ``path`` inside one of the container's volumes or binds: None
    when not, else whether that (innermost) mount is writable (moby
    checkIfPathIsInAVolume)."""
    norm = os.path.normpath("/" + path.lstrip("/"))
    best, rw = "", None
    for m in container.mounts:
        if m.get("type", "bind") == "tmpfs":
            continue
        dst = os.path.normpath(m.get("destination", ""))
        if (norm == dst or norm.startswith(dst.rstrip("/") + "/")) and len(dst) > len(best):
            best, rw = dst, bool(m.get("rw", True))
    return rw
