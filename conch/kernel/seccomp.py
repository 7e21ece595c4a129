"""Install a compiled seccomp filter on the calling thread (or, with TSYNC, all threads).

Contract: ``load_filter(program, flags=...)`` takes classic-BPF bytes (``struct sock_filter``,
8 bytes per instruction, as ``conch.runtime.seccomp.compile_filter`` produces) and calls
``seccomp(SECCOMP_SET_MODE_FILTER, flags, &sock_fprog)``. It raises
``conch.errors.SystemCallError("seccomp", errno)`` on failure and returns nothing. The
caller must already have ``no_new_privs`` set or hold CAP_SYS_ADMIN (kernel rule, see
seccomp(2)); the runtime does this as the last step before ``execve``.

Only ``conch.kernel.libc`` (``_ctypes``, not the ``ctypes`` package) is imported, and libc
is opened on first use: this runs on the container start path. The filter bytes must stay alive until the syscall returns, which they do:
the kernel copies the program during the call.
"""

import errno
import os

from conch.errors import SystemCallError
from conch.kernel.libc import (Structure, addressof, buffer, byref, c_long, c_uint, c_ushort,
                               c_void_p, get_errno, libc)

# <linux/seccomp.h>
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4

# seccomp(2) is __NR_seccomp; glibc has no wrapper before 2.39, so go through syscall(2).
_NR_SECCOMP = {"x86_64": 317, "aarch64": 277, "i686": 354, "i386": 354}

_BPF_MAXINSNS = 4096


class _SockFprog(Structure):
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    _fields_ = [("len", c_ushort), ("filter", c_void_p)]


def _seccomp_nr() -> int:
    machine = os.uname().machine
    try:
        return _NR_SECCOMP[machine]
    except KeyError:
        raise SystemCallError("seccomp", errno.ENOSYS, detail=f"unsupported machine {machine}") from None


def load_filter(program: bytes, *, flags: int = 0) -> None:
    """Attach ``program`` (sock_filter bytes) to this thread with seccomp(2)."""
    count, rest = divmod(len(program), 8)
    if rest or not 0 < count <= _BPF_MAXINSNS:
        # EINVAL is what the kernel would say; fail before the call with the reason.
        raise SystemCallError("seccomp", errno.EINVAL, detail=f"bad filter length {len(program)} bytes")
    buf = buffer(bytes(program))
    prog = _SockFprog(count, addressof(buf))
    rc = libc().syscall(
        c_long(_seccomp_nr()),
        c_uint(SECCOMP_SET_MODE_FILTER),
        c_uint(flags),
        byref(prog),
    )
    if rc != 0:
        # With TSYNC a positive return is the id of a thread that could not be synced.
        err = get_errno() if rc < 0 else errno.ESRCH
        detail = f"thread {rc} could not be synchronised" if rc > 0 else ""
        raise SystemCallError("seccomp", err, detail=detail)
