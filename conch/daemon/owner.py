"""Owner locks for the host-wide kernel objects a conchd makes: its default bridge device,
its default bridge subnet and its nftables table. Each is one ``flock``-ed file under
``/run/conch/locks`` held while the daemon lives (the kernel drops it when the daemon
dies, even by SIGKILL), so a second conchd that would share one is refused at start,
and no daemon ever deletes (at its stop) a bridge or table another live daemon uses.

The lock files are unlinked at release. A daemon that opened the file just before the
unlink would then hold a lock on a name nobody else can see; :func:`acquire` guards
against that by checking, once it holds the lock, that the path still names the file it
locked (the usual flock + unlink protocol).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os

LOCK_DIR = "/run/conch/locks"

_FLAGS = "--bridge-name, --bip and --nft-table"


class OwnerConflict(Exception):
    """Another live conchd holds one of this daemon's kernel objects."""


def _lock_file(path: str) -> int | None:
    """The fd of ``path`` locked (exclusive), or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # unlinked by its last owner meanwhile: lock the new file


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            pid = f.read().strip()
    except OSError:
        return "another conchd"
    return f"another conchd (pid {pid})" if pid.isdigit() else "another conchd"


class OwnerLocks:
    """The locks of one daemon: :meth:`acquire` at start, :meth:`release` at stop."""

    def __init__(self, *, bridge: str, bip: str, nft_table: str, lock_dir: str = LOCK_DIR):
        self.lock_dir = lock_dir
        try:
            subnet = str(ipaddress.ip_interface(bip).network).replace("/", "_")
        except ValueError:
            subnet = bip.replace("/", "_")
        # what each lock names, for the message: (file, the daemon's flag and value)
        self.objects = [(f"bridge-{bridge}.lock", f"the bridge {bridge} (--bridge-name)"),
                        (f"bip-{subnet}.lock", f"the subnet {bip} (--bip)"),
                        (f"nft-{nft_table}.lock", f"the nftables table {nft_table} (--nft-table)")]
        self._held: list[tuple[str, int]] = []

    def acquire(self) -> None:
        """Lock every object, or none: OwnerConflict names the taken one and the flags."""
        os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
        for name, what in self.objects:
            path = os.path.join(self.lock_dir, name)
            fd = _lock_file(path)
            if fd is None:
                holder = _holder(path)
                self.release()
                raise OwnerConflict(
                    f"{holder} uses {what}: give this daemon its own {_FLAGS} "
                    f"(two daemons on one host must not share them)")
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self._held.append((path, fd))

    def release(self) -> None:
        for path, fd in reversed(self._held):
            try:
                os.unlink(path)  # still locked by us: nobody else holds this file
            except OSError:
                pass
            os.close(fd)
        self._held = []
