"""unshare(2) and setns(2), and the OCI namespace names mapped to CLONE_* flags."""

from conch.kernel.libc import check, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# OCI runtime-spec linux.namespaces[].type -> (clone flag, /proc/PID/ns/ file name)
NAMESPACES = {
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "mount": (CLONE_NEWNS, "mnt"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "user": (CLONE_NEWUSER, "user"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}


def unshare(flags: int) -> None:
    check(libc().unshare(flags), "unshare", detail=f"flags={flags:#x}")


def setns(fd: int, nstype: int = 0, path: str = "") -> None:
    check(libc().setns(fd, nstype), "setns", path)
