"""The process's libc, loaded once on first use, and the errno-checking call helper.

Loading libc through ctypes costs a few milliseconds, so it happens lazily: importing
``conch.kernel`` modules is free until a syscall is actually made.
"""

import ctypes
import os

from conch.errors import SystemCallError

_libc = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def check(ret: int, syscall: str, path: str = "", detail: str = "") -> int:
    """Raise SystemCallError from errno when a libc call returned -1."""
    if ret == -1:
        err = ctypes.get_errno()
        raise SystemCallError(syscall, err, path, detail)
    return ret


def fspath(p) -> bytes | None:
    if p is None:
        return None
    return os.fsencode(p)
