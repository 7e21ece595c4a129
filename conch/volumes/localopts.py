"""Driver options of Docker's ``local`` volume driver: ``volume create -o type=… -o
device=… -o o=…`` — the volume is a mount of ``device`` (a tmpfs, a bind of a host
directory, a block device, an NFS export…) made on its ``_data`` directory when a
container using it starts and undone when the last one stops, as moby's
``volume/local`` does with ``mount(2)``.

Contract: :func:`validate` checks a create request's options (known keys only; ``type``
and ``device`` together; ``o=bind`` needs an existing absolute device path) and returns
them normalised; :func:`mount` / :func:`unmount` are idempotent and done with the
``mount``/``umount`` tools of util-linux (they parse ``o`` strings — ``size=64m,uid=1000``,
``addr=…`` for NFS — exactly as the kernel's helpers expect, which a hand-written
``mount(2)`` call would have to re-implement per filesystem).
"""

from __future__ import annotations

import os
import re
import subprocess

from conch.errors import ConchError, FailedPrecondition, InvalidArgument

__all__ = ["validate", "mount", "unmount", "is_mounted"]

_KEYS = ("type", "device", "o", "size")


def validate(name: str, options: dict | None) -> dict:
    """The options as stored, or InvalidArgument with docker's wording."""
    opts = {str(k): str(v) for k, v in (options or {}).items()}
    for key in opts:
        if key not in _KEYS:
            raise InvalidArgument(f'create {name}: invalid option: "{key}"')
    if "size" in opts and opts.get("type", "tmpfs") != "tmpfs":
        raise InvalidArgument(f"create {name}: size option is only supported with type=tmpfs")
    if opts and not opts.get("type"):
        raise InvalidArgument(f'create {name}: missing required option: "type"')
    if opts and not opts.get("device"):
        raise InvalidArgument(f'create {name}: missing required option: "device"')
    flags = [f for f in opts.get("o", "").split(",") if f]
    if "bind" in flags or "rbind" in flags:
        device = opts["device"]
        if not device.startswith("/"):
            raise InvalidArgument(f"create {name}: bind device {device!r} must be an absolute path")
        if not os.path.exists(device):
            raise InvalidArgument(f"create {name}: failed to mount local volume: mount "
                                  f"{device}: no such file or directory")
    return opts


def is_mounted(path: str) -> bool:
    """Is something mounted exactly on ``path``? From mountinfo, not ``os.path.ismount``:
    a bind of a directory on the same filesystem has the parent's st_dev, and ismount
    would miss it (and a removal would then delete through the mount)."""
    want = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mountpoint = line.split(" ", 5)[4]
                if _unescape(mountpoint) == want:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount(options: dict, target: str) -> None:
    """Mount the volume's device on ``target`` (its ``_data``); already mounted: no-op."""
    if not options or is_mounted(target):
        return
    flags = [f for f in options.get("o", "").split(",") if f]
    if options.get("size"):
        flags.append(f"size={options['size']}")
    argv = ["mount", "-t", options["type"]]
    if flags:
        argv += ["-o", ",".join(flags)]
    argv += ["--", options["device"], target]  # a device "--bind" or "-V" is no option
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise FailedPrecondition(f"error while mounting volume '{target}': failed to mount "
                                 f"local volume: {' '.join(argv[1:])}: "
                                 f"{proc.stderr.strip() or 'exit ' + str(proc.returncode)}")


def unmount(target: str) -> None:
    """Unmount ``target`` if mounted; a busy one is detached lazily (its last user is
    gone from conch's view, a straggling process must not pin the volume's removal)."""
    while is_mounted(target):  # every layer (an older conch could stack them)
        proc = subprocess.run(["umount", target], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 and is_mounted(target):
            proc = subprocess.run(["umount", "-l", target], capture_output=True, text=True,
                                  timeout=60)
            if proc.returncode != 0:
                raise ConchError(f"unmounting volume {target}: {proc.stderr.strip()}")
