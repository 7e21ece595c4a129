"""mount(2), umount2(2) and pivot_root(2), plus the flag names the OCI spec uses.

``MOUNT_OPTIONS`` maps the option strings of runtime-spec ``mounts[].options`` (the same
words mount(8) uses) to (clear, flag) pairs; propagation words map to their own flags
because the kernel wants them in a separate mount(2) call.
"""

from conch.kernel.libc import c_ulong, check, fspath, libc

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2

# option -> (clear?, flag). "clear" options remove the flag (e.g. "rw" clears MS_RDONLY).
MOUNT_OPTIONS = {
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID), "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV), "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC), "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS), "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC), "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK), "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME), "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME), "nodiratime": (False, MS_NODIRATIME),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "lazytime": (False, MS_LAZYTIME), "nolazytime": (True, MS_LAZYTIME),
    "symfollow": (True, MS_NOSYMFOLLOW), "nosymfollow": (False, MS_NOSYMFOLLOW),
    "defaults": (False, 0),
}

PROPAGATION_OPTIONS = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}


def parse_options(options) -> tuple[int, int, list[str]]:
    """Split OCI mount options into (flags, propagation flags, data words)."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options or ():
        known = MOUNT_OPTIONS.get(opt)
        if known is not None:
            clear, flag = known
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION_OPTIONS:
            propagation |= PROPAGATION_OPTIONS[opt]
        else:
            data.append(opt)
    return flags, propagation, data


def mount(source, target, fstype=None, flags: int = 0, data: str | None = None) -> None:
    lc = libc()
    ret = lc.mount(
        fspath(source), fspath(target), fspath(fstype), c_ulong(flags),
        data.encode() if data else None,
    )
    check(ret, "mount", str(target), f"type={fstype} source={source} flags={flags:#x} data={data}")


def umount(target, flags: int = 0) -> None:
    check(libc().umount2(fspath(target), flags), "umount2", str(target))


def pivot_root(new_root, put_old) -> None:
    # glibc has no wrapper: syscall(SYS_pivot_root = 155 on x86_64, 41 on aarch64).
    nr = _SYS_PIVOT_ROOT[_machine()]
    check(libc().syscall(nr, fspath(new_root), fspath(put_old)), "pivot_root", str(new_root))


_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def _machine() -> str:
    import os

    return os.uname().machine
