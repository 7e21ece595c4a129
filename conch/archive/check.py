"""A layer's entries checked without unpacking it: what :func:`~conch.archive.apply.apply_layer`
would refuse for its names (an entry or hardlink target escaping the root, NUL bytes, a
non-directory replacing the root, an invalid whiteout, a hardlink to what the layer did
not write) and for its tar stream, so ``docker load`` can refuse a hostile layer at load
time, as dockerd does (it unpacks there), not first at ``run``.

One pass: every byte read goes through ``update`` (the caller's digest of the
uncompressed tar), end-of-archive padding included.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO, Callable

from conch.archive.apply import (_CHUNK, _TAR_ERRORS, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX,
                                 _LayerTarInfo, clean_name)
from conch.errors import InvalidArgument


class _Tee:
    def __init__(self, reader: BinaryIO, update: Callable[[bytes], None]):
        self._reader = reader
        self._update = update

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        self._update(data)
        return data


def check_layer(reader: BinaryIO, update: Callable[[bytes], None] = lambda _b: None) -> None:
    """Raise InvalidArgument if the uncompressed layer tar ``reader`` holds an entry that
    applying it would refuse for its name; read to its end either way."""
    tee = _Tee(reader, update)
    try:
        tar = tarfile.open(fileobj=tee, mode="r|", tarinfo=_LayerTarInfo, bufsize=_CHUNK,
                           encoding="utf-8", errors="surrogateescape")
    except _TAR_ERRORS as exc:
        raise InvalidArgument(f"layer is not a valid tar: {exc}") from exc
    written: set[tuple[str, ...]] = set()
    with tar:
        while True:
            try:
                m = tar.next()
            except _TAR_ERRORS as exc:
                raise InvalidArgument(f"layer is not a valid tar: {exc}") from exc
            if m is None:
                break
            tar.members.clear()  # stream mode keeps every header otherwise
            _entry(m, written)
    while tee.read(_CHUNK):
        pass


def _entry(m: tarfile.TarInfo, written: set[tuple[str, ...]]) -> None:
    parts = clean_name(m.name)
    if (m.islnk() or m.issym()) and "\x00" in m.linkname:
        raise InvalidArgument(f"layer entry {m.name!r} has a NUL byte in its link target")
    if parts and parts[-1].startswith(WHITEOUT_PREFIX):
        base = parts[-1]
        if not base.startswith(WHITEOUT_META_PREFIX) and base[len(WHITEOUT_PREFIX):] in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {m.name!r} is not a valid whiteout")
        return
    if not parts:
        if not m.isdir():
            raise InvalidArgument(f"layer entry {m.name!r} would replace the layer root")
        return
    if m.islnk():
        target = clean_name(m.linkname, what=f"hardlink target of {m.name!r}:")
        if not target or target not in written:
            raise InvalidArgument(
                f"layer entry {m.name!r} links to {m.linkname!r}, which this layer did not write")
    written.add(parts)
