"""Bind propagation as dockerd checks and applies it (daemon/oci_linux.go WithMounts).

A bind asking for ``shared``/``rshared`` needs its source on a shared mount, and one
asking for ``slave``/``rslave`` a shared or slave one; otherwise the start fails with
dockerd's words ("path X is mounted on M but it is not a shared mount"). When one is
shared the container's root becomes ``shared`` (a slave one: ``rslave``), or the
runtime's private root would cut the propagation off.
"""

from __future__ import annotations

import os

from conch.errors import InvalidArgument

SHARED = ("shared", "rshared")
SLAVE = ("slave", "rslave")


def source_mount(path: str, mountinfo: str = "/proc/self/mountinfo") -> tuple[str, list[str]]:
    """moby getSourceMount: the mount point ``path`` lives on (the longest mountpoint
    that prefixes its resolved path) and that mount's optional fields ("shared:N",
    "master:N")."""
    real = os.path.realpath(path)
    best, fields = "/", []
    with open(mountinfo) as f:
        for line in f:
            parts = line.split()
            mountpoint = parts[4].replace("\\040", " ")
            optional = parts[6:parts.index("-")]
            if (real == mountpoint or real.startswith(mountpoint.rstrip("/") + "/")) \
                    and len(mountpoint) >= len(best):
                best, fields = mountpoint, optional
    return best, fields


def check(source: str, propagation: str) -> None:
    """Raise dockerd's error when ``source`` cannot carry ``propagation``."""
    if propagation not in SHARED + SLAVE:
        return
    mnt, fields = source_mount(source)
    shared = any(f.startswith("shared:") for f in fields)
    slave = any(f.startswith("master:") for f in fields)
    if propagation in SHARED and not shared:
        raise InvalidArgument(f"path {source} is mounted on {mnt} but it is not a shared mount")
    if propagation in SLAVE and not (shared or slave):
        raise InvalidArgument(f"path {source} is mounted on {mnt} but it is not a shared or slave mount")


def root_propagation(propagations) -> str:
    """linux.rootfsPropagation for these bind propagations ("" for the runtime's default)."""
    props = set(propagations)
    if props & set(SHARED):
        return "shared"
    if props & set(SLAVE):
        return "rslave"
    return ""
