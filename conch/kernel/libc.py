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


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = None


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Start writing ``fd``'s dirty pages in [offset, offset+nbytes) to disk without
    waiting (sync_file_range(2), SYNC_FILE_RANGE_WRITE). A later fsync then has little
    left to do: a file written in a stream and fsynced at its end gets its disk writes
    overlapped with the stream instead of all at the end. Best effort: errors ignored."""
    global _sync_file_range
    if _sync_file_range is None:
        fn = libc().sync_file_range
        fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        fn.restype = ctypes.c_int
        _sync_file_range = fn
    _sync_file_range(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)
