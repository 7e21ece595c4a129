"""OCI bundles for runtime tests: a busybox rootfs plus a ``config.json``.

:data:`BASE_SPEC` is written by hand (not imported from ``conch.runtime``, so the tests
judge the runtime instead of sharing its assumptions). It is ``runc spec``'s shape with
Docker's defaults: the 14 default capabilities in the bounding, effective and permitted
sets (inheritable empty, no ambient: moby dropped them after CVE-2022-24769), Docker's
mounts, maskedPaths and readonlyPaths, pid/ipc/uts/mount/network namespaces, no seccomp
profile, ``noNewPrivileges`` off, and a unique ``linux.cgroupsPath`` under
``/conch-test/`` so leak checks can find what a test left behind.

Layout made by :func:`make_bundle`::

    <dir>/config.json
    <dir>/rootfs/       (busybox_rootfs copy, unless it already exists)
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any, Callable

from conch.testing.leaks import CGROUP_PARENT
from conch.testing.rootfs import busybox_rootfs

__all__ = [
    "DOCKER_DEFAULT_CAPS", "DOCKER_DEFAULT_CAPS_MASK", "CGROUP_PARENT", "BASE_SPEC",
    "base_spec", "apply_changes", "make_bundle", "write_config",
]

# moby/oci/caps/defaults.go, in that order.
DOCKER_DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
# Bits 0,1,3,4,5,6,7,8,10,13,18,27,29,31 as /proc/self/status prints them.
DOCKER_DEFAULT_CAPS_MASK = "00000000a80425fb"

# Every bundle's cgroup lives under CGROUP_PARENT (one directory per controller on v1);
# defined beside the leak check, which looks for it.

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]

BASE_SPEC: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm",
            "HOME=/root",
        ],
        "cwd": "/",
        "capabilities": {
            "bounding": list(DOCKER_DEFAULT_CAPS),
            "effective": list(DOCKER_DEFAULT_CAPS),
            "permitted": list(DOCKER_DEFAULT_CAPS),
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": False,
    },
    "root": {"path": "rootfs", "readonly": False},
    "hostname": "conch",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": list(_NOSUID_NOEXEC_NODEV)},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": [*_NOSUID_NOEXEC_NODEV, "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*_NOSUID_NOEXEC_NODEV, "relatime", "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": list(_NOSUID_NOEXEC_NODEV)},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "cgroupsPath": CGROUP_PARENT + "/base",
        "namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network"},
        ],
        # moby/oci/defaults.go
        "maskedPaths": [
            "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
            "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ],
        "readonlyPaths": [
            "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
        ],
    },
}


def base_spec(args: list[str] | None = None) -> dict[str, Any]:
    """A deep copy of :data:`BASE_SPEC` with a fresh unique cgroupsPath (and ``args``)."""
    spec = copy.deepcopy(BASE_SPEC)
    spec["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/{uuid.uuid4().hex[:16]}"
    if args is not None:
        spec["process"]["args"] = list(args)
    return spec


Change = Callable[[dict[str, Any]], Any]


def _deep_set(spec: dict[str, Any], dotted: str, value: Any) -> None:
    """``process.user.uid`` style assignment; ``__`` may stand for ``.`` so the path can
    be a keyword argument (``process__user__uid=1000``). Missing dicts are created."""
    keys = dotted.replace("__", ".").split(".")
    node = spec
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


# Short names for the keys tests change most; anything else is spelled as a path.
_ALIASES = {
    "hostname": "hostname",
    "domainname": "domainname",
    "env": "process.env",
    "cwd": "process.cwd",
    "user": "process.user",
    "capabilities": "process.capabilities",
    "rlimits": "process.rlimits",
    "no_new_privileges": "process.noNewPrivileges",
    "readonly_rootfs": "root.readonly",
    "mounts": "mounts",
    "hooks": "hooks",
    "namespaces": "linux.namespaces",
    "resources": "linux.resources",
    "seccomp": "linux.seccomp",
    "sysctl": "linux.sysctl",
    "uid_mappings": "linux.uidMappings",
    "gid_mappings": "linux.gidMappings",
    "masked_paths": "linux.maskedPaths",
    "readonly_paths": "linux.readonlyPaths",
    "annotations": "annotations",
}


def apply_changes(spec: dict[str, Any], *edits: Change, **changes: Any) -> dict[str, Any]:
    """Apply ``changes`` (alias or dotted/``__`` path -> value) then each callable in
    ``edits`` (called with the spec; may edit in place or return a new dict)."""
    for key, value in changes.items():
        _deep_set(spec, _ALIASES.get(key, key), value)
    for edit in edits:
        result = edit(spec)
        if isinstance(result, dict):
            spec = result
    return spec


def write_config(bundle: Path, spec: dict[str, Any]) -> Path:
    path = Path(bundle) / "config.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def make_bundle(
    dir: Path,
    args: list[str],
    *edits: Change,
    terminal: bool = False,
    **changes: Any,
) -> Path:
    """Write ``dir/config.json`` (base spec + changes) and a busybox ``dir/rootfs``.

    ``make_bundle(tmp, ["id"], hostname="x", user={"uid": 1000, "gid": 1000})``;
    for anything else pass a callable: ``make_bundle(tmp, ["sh"], lambda s: s["linux"]
    ["namespaces"].pop())``.
    """
    bundle = Path(dir)
    bundle.mkdir(parents=True, exist_ok=True)
    rootfs = bundle / "rootfs"
    if not (rootfs / "bin/busybox").exists():
        busybox_rootfs(rootfs)
    spec = base_spec(args)
    spec["process"]["terminal"] = terminal
    spec = apply_changes(spec, *edits, **changes)
    write_config(bundle, spec)
    return bundle
