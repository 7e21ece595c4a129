"""Persistent network namespaces bound at a path, like ``ip netns add`` / ``ip netns del``.

The daemon never enters a namespace (DESIGN.md): :func:`create` execs a fresh process
that unshares its network namespace, bind-mounts ``/proc/self/ns/net`` (an nsfs file) onto
``PATH`` and brings ``lo`` up before it exits; the bind mount keeps the namespace alive.
That process is the C ``conch-netns new`` (one ~1 ms exec, see
:func:`conch.network.netlink.netns_socket`), or util-linux's ``unshare --net=PATH true``
followed by ``lo`` up through a netlink socket opened inside (where conch-netns is not
built).

The parent directory may be on a shared mount: binding a *network* namespace file there
works (only mount namespace files must avoid shared mounts, to prevent loops), and it is
what ``ip netns`` does on purpose for ``/run/netns`` so that an unmount here propagates
to mount namespaces that copied it. So no private mount point is made.

Both operations are idempotent: creating an existing namespace file and removing a
missing one are no-ops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conch.errors import ConchError, FailedPrecondition, Unavailable
from conch.kernel.mount import MNT_DETACH, umount
from conch.network import netlink

__all__ = ["create", "remove", "is_bound"]


def _mountinfo_unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def is_bound(path: str | os.PathLike) -> bool:
    """True when a namespace file (nsfs) is mounted at ``path``."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if _mountinfo_unescape(fields[4]) == target and fields[sep + 1] == "nsfs":
                return True
    return False


def create(path: str | os.PathLike, *, want_socket: bool = False):
    """Make a network namespace that lives as long as the bind mount at ``path``, with
    ``lo`` up. Parent directories are created as needed. With ``want_socket``, returns
    a netlink socket inside it when one came for free (conch-netns), else None."""
    path = Path(path)
    if is_bound(path):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    if netlink.helper_binary() is not None:
        # one exec of conch-netns: unshare, bind at path, lo up
        try:
            sock = netlink.netns_socket(str(path), create=True)
        except ConchError:
            path.unlink(missing_ok=True)
            raise
        if want_socket:
            return sock
        sock.close()
        return None
    unshare = shutil.which("unshare")
    if unshare is None:
        raise Unavailable("unshare (util-linux) is needed to create network namespaces")
    proc = subprocess.run([unshare, f"--net={path}", "true"], capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        path.unlink(missing_ok=True)
        raise FailedPrecondition(f"creating network namespace {path}: {proc.stderr.strip()}")
    try:
        netlink.link_up("lo", netns_path=str(path))
    except ConchError:
        remove(path)
        raise
    return None


def remove(path: str | os.PathLike) -> None:
    """Unmount (MNT_DETACH, every stacked mount) and unlink ``path``. The namespace itself
    goes away once no process and no other mount holds it."""
    path = Path(path)
    while is_bound(path):
        umount(path, MNT_DETACH)
    path.unlink(missing_ok=True)
