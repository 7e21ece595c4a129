"""The engine's durable files (DESIGN.md habit 3): written to a temporary file in the same
directory, fsynced, then ``os.replace``'d, so that a reader — or conchd after a crash at
any point — sees the old content or the new, never half of it. A temporary file a crash
leaves behind starts with ``.tmp-`` and ends in no known suffix, so it is never read as
a record."""

from __future__ import annotations

import json
import os
import tempfile


def write_atomic(path: str | os.PathLike, data: bytes, *, mode: int = 0o600) -> None:
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
    try:
        if mode != 0o600:  # mkstemp's
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path: str | os.PathLike, obj, *, mode: int = 0o600) -> None:
    """``json.dumps(obj)`` into ``path``, atomically."""
    write_atomic(path, json.dumps(obj).encode(), mode=mode)
