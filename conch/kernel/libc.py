"""The process's libc, loaded once on first use, and the errno-checking call helper.

Built on ``_ctypes`` (the C extension) rather than the ``ctypes`` package: importing
``ctypes`` runs ``ctypes/__init__`` (its C type classes, ``struct``, ``_endian``, size
checks) for ~2 ms, and ``conch-runtime`` pays every import on every container start.
The few C types the kernel wrappers need are declared here, as ``ctypes`` declares
them, and a call goes through the same libffi path: a function returns a C ``int``,
Python ints pass as C ints (``c_ulong``/``c_long`` below for wider ones), ``bytes`` as
``char *`` and ``None`` as NULL; ``errno`` is saved after each call (``get_errno``).
Code off the start path (bpf, the content store) may still use ``ctypes`` itself: its
types are the same ``_ctypes`` classes, so they pass through these functions too.
"""

import _ctypes
import os
from _ctypes import addressof, byref, get_errno  # noqa: F401 - re-exported for the kernel modules

from conch.errors import SystemCallError

# ctypes' own declarations (ctypes/__init__.py), for the sizes of this (LP64) platform.


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_ushort(_ctypes._SimpleCData):
    _type_ = "H"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_uint32(_ctypes._SimpleCData):
    _type_ = "I"


class c_void_p(_ctypes._SimpleCData):
    _type_ = "P"


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


Structure = _ctypes.Structure


class _Function(_ctypes.CFuncPtr):
    # ctypes.CDLL(None, use_errno=True)'s function type: cdecl, errno saved, returns int
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class Library:
    """``ctypes.CDLL(None, use_errno=True)``: the symbols already loaded into the
    process (libc's among them); ``lib.name`` is the C function ``name``, looked up once
    (AttributeError when there is none)."""

    def __init__(self):
        self._handle = _ctypes.dlopen(None, 0)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        fn = _Function((name, self))
        setattr(self, name, fn)
        return fn


_libc = None


def libc() -> Library:
    global _libc
    if _libc is None:
        _libc = Library()
    return _libc


def buffer(data: bytes):
    """A writable C copy of ``data`` (``ctypes.create_string_buffer`` without its NUL)."""
    return (c_char * len(data)).from_buffer_copy(data)


def check(ret: int, syscall: str, path: str = "", detail: str = "") -> int:
    """Raise SystemCallError from errno when a libc call returned -1."""
    if ret == -1:
        raise SystemCallError(syscall, get_errno(), path, detail)
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
        import ctypes  # not on the runtime's path: the content store's

        fn = libc().sync_file_range
        fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        fn.restype = ctypes.c_int
        _sync_file_range = fn
    _sync_file_range(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)
