"""The one verdict on a layer's entries, shared by unpack (pull, run) and ``docker load``.

:func:`check_entry` is what every entry must pass before :func:`~conch.archive.apply.apply_layer`
writes it (apply calls it first, so there is one copy of these rules): a name or hardlink
target escaping the root, NUL bytes, a non-directory replacing the root, an invalid
whiteout, a hardlink to what the layer did not write, an unsupported type, ids, times or
device numbers out of range.

:func:`check_layer` gives apply_layer's verdict on a whole layer without unpacking it, so
``docker load`` refuses what a pull refuses, as dockerd does (it unpacks at load):
check_entry for each entry, plus an in-memory model of the tree apply_layer would build
in an empty overlay upper dir (the layer alone decides: whiteouts are recorded, not
applied, and a layer is always extracted on its own), resolving each parent as
``apply._Root`` does (symlinks followed as if the layer root were ``/``, missing
directories implied). That finds what only the tree shows: a symlink loop on the way
to an entry, a file used as a directory, a hardlink to a directory or to a path since
removed. ``tests/integration/test_archive_hostile.py`` holds both verdicts equal over the
hostile-layer corpus and random layers; ``tests/unit/test_archive_check.py`` the corpus's
verdicts without root.

One pass: every byte read goes through ``update`` (the caller's digest of the
uncompressed tar), end-of-archive padding included.
"""

from __future__ import annotations

import os
import tarfile
from typing import BinaryIO, Callable

from conch.errors import InvalidArgument

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

# Go's archive/tar caps PAX and GNU long-name records at 1 MiB; so do we, before tarfile
# reads them into memory.
MAX_SPECIAL_HEADER = 1 << 20
MAX_SYMLINKS = 40  # Linux's MAXSYMLINKS
_CHUNK = 1 << 20
_MAX_ID = 0xFFFFFFFF  # uid_t/gid_t, dev_t halves
NAME_MAX = 255  # bytes in one path component (ENAMETOOLONG beyond)
PATH_MAX = 4096  # bytes in a symlink target, its NUL included
# the entry types apply_layer writes (tarfile maps GNU sparse and contiguous files to REG)
_TYPES = (tarfile.REGULAR_TYPES + (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                                   tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE))


class _BadHeader(tarfile.ReadError):
    pass


class LayerTarInfo(tarfile.TarInfo):
    """TarInfo that refuses what tarfile would silently accept.

    tarfile ends the archive quietly at a bad or truncated header after the first one
    (``TarFile.next`` treats it as EOF), and reads PAX/GNU-long records of any declared
    size into memory. Go's reader (Docker, containerd) errors on both; so do we.
    """

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:
            raise _BadHeader(str(exc)) from None

    def _proc_member(self, tarfile_):
        special = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                   tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if self.type in special and self.size > MAX_SPECIAL_HEADER:
            raise _BadHeader(f"{self.type!r} header of {self.size} bytes exceeds {MAX_SPECIAL_HEADER}")
        return super()._proc_member(tarfile_)


TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, OverflowError, UnicodeError)


def open_layer_tar(reader) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=reader, mode="r|", tarinfo=LayerTarInfo, bufsize=_CHUNK,
                            encoding="utf-8", errors="surrogateescape")
    except TAR_ERRORS as exc:
        raise InvalidArgument(f"layer is not a valid tar: {exc}") from exc


def next_entry(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    try:
        m = tar.next()
    except TAR_ERRORS as exc:
        raise InvalidArgument(f"layer is not a valid tar: {exc}") from exc
    tar.members.clear()  # stream mode keeps every header otherwise
    return m


def clean_name(name: str, *, what: str = "layer entry") -> tuple[str, ...]:
    """The components of an entry name below the layer root; rejects NUL and escapes."""
    if "\x00" in name:
        raise InvalidArgument(f"{what} {name!r} has a NUL byte in its name")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidArgument(f"{what} {name!r} escapes the layer root")
            parts.pop()
        else:
            parts.append(part)
    return tuple(parts)


def entry_times(m: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns as apply_layer sets them; OverflowError/ValueError if out of range."""
    mtime = int(float(m.mtime) * 1e9)
    atime = m.pax_headers.get("atime")
    try:
        atime_ns = int(float(atime) * 1e9) if atime is not None else mtime
    except ValueError:
        atime_ns = mtime
    return atime_ns, mtime


def _too_long(component: str) -> bool:
    # at most 4 bytes a character: only a name of over 63 characters needs encoding
    return len(component) > NAME_MAX // 4 and \
        len(component.encode("utf-8", "surrogateescape")) > NAME_MAX


def is_whiteout(parts: tuple[str, ...]) -> bool:
    return bool(parts) and parts[-1].startswith(WHITEOUT_PREFIX)


def check_entry(m: tarfile.TarInfo, written: set[tuple[str, ...]], *,
                whiteouts: bool = True) -> tuple[str, ...]:
    """The cleaned name of ``m`` once it passed every check that needs no tree; raises
    InvalidArgument naming the entry. ``written``: the paths the layer wrote so far."""
    parts = clean_name(m.name)
    if (m.islnk() or m.issym()) and "\x00" in m.linkname:
        raise InvalidArgument(f"layer entry {m.name!r} has a NUL byte in its link target")
    if any(_too_long(p) for p in parts):
        raise InvalidArgument(f"layer entry {m.name!r}: a name is longer than {NAME_MAX} bytes")
    if m.issym() and len(m.linkname.encode("utf-8", "surrogateescape")) >= PATH_MAX:
        raise InvalidArgument(f"layer entry {m.name!r}: its link target is longer than "
                              f"{PATH_MAX - 1} bytes")
    if whiteouts and is_whiteout(parts):
        base = parts[-1]
        if not base.startswith(WHITEOUT_META_PREFIX) and base[len(WHITEOUT_PREFIX):] in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {m.name!r} is not a valid whiteout")
        return parts
    if not parts and not m.isdir():
        raise InvalidArgument(f"layer entry {m.name!r} would replace the layer root")
    if m.type not in _TYPES:
        raise InvalidArgument(f"layer entry {m.name!r} has unsupported type {m.type!r}")
    if m.islnk():
        target = clean_name(m.linkname, what=f"hardlink target of {m.name!r}:")
        if not target or target not in written:
            raise InvalidArgument(
                f"layer entry {m.name!r} links to {m.linkname!r}, which this layer did not write")
        return parts
    _check_numbers(m)
    return parts


def _check_numbers(m: tarfile.TarInfo) -> None:
    """What chown, utime and mknod would refuse (OverflowError in apply_layer)."""
    for what, value in (("uid", m.uid), ("gid", m.gid)):
        if not 0 <= value <= _MAX_ID:
            raise InvalidArgument(f"layer entry {m.name!r}: {what} {value} is out of range")
    try:
        entry_times(m)
    except (OverflowError, ValueError) as exc:
        raise InvalidArgument(f"layer entry {m.name!r}: {exc}") from exc
    if m.ischr() or m.isblk():
        if not (0 <= m.devmajor <= _MAX_ID and 0 <= m.devminor <= _MAX_ID):
            raise InvalidArgument(f"layer entry {m.name!r}: device number out of range")
        try:
            os.makedev(m.devmajor, m.devminor)
        except (OverflowError, ValueError) as exc:
            raise InvalidArgument(f"layer entry {m.name!r}: {exc}") from exc


# -- the tree model ---------------------------------------------------------------------


class _Dir:
    __slots__ = ("children",)

    def __init__(self) -> None:
        self.children: dict[str, object] = {}


class _Link:
    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target


class _Node:
    """A regular file, device, fifo or whiteout: nothing below it."""

    __slots__ = ()


class _Tree:
    """The tree apply_layer builds in an empty overlay upper dir, names only."""

    def __init__(self) -> None:
        self.root = _Dir()
        self.written: set[tuple[str, ...]] = set()

    def resolve(self, parts: tuple[str, ...], *, create: bool, name: str) -> _Dir:
        return self.walk(parts, create=create, name=name)[-1]

    def walk(self, parts: tuple[str, ...], *, create: bool, name: str) -> list[_Dir]:
        """``apply._Root._walk`` over the model (same order, same errors): the
        directories from the root to ``parts``."""
        stack = [self.root]
        pending = list(reversed(parts))
        links = 0
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if len(stack) > 1:  # ".." at the root stays at the root, as in a chroot
                    stack.pop()
                continue
            if _too_long(comp):  # from a symlink's target: stat and mkdir refuse it
                raise InvalidArgument(f"layer entry {name!r}: {'/'.join(parts)}: a name on the "
                                      f"way is longer than {NAME_MAX} bytes")
            node = stack[-1].children.get(comp)
            if node is None:
                if not create:
                    raise InvalidArgument(
                        f"layer entry {name!r}: No such file or directory: {'/'.join(parts)}")
                node = stack[-1].children[comp] = _Dir()
            if isinstance(node, _Link):
                links += 1
                if links > MAX_SYMLINKS:
                    raise InvalidArgument(f"layer entry {name!r}: {'/'.join(parts)}: too many "
                                          f"levels of symbolic links")
                if node.target.startswith("/"):
                    del stack[1:]
                pending.extend(reversed(node.target.split("/")))
                continue
            if not isinstance(node, _Dir):
                raise InvalidArgument(
                    f"layer entry {name!r}: {'/'.join(parts)}: {comp!r} is not a directory")
            stack.append(node)
        return stack

    def add(self, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        """Model apply_layer's writing of ``m`` (already through check_entry)."""
        if is_whiteout(parts):
            base = parts[-1]
            if base == WHITEOUT_OPAQUE:
                self.resolve(parts[:-1], create=True, name=m.name)
            elif not base.startswith(WHITEOUT_META_PREFIX):  # aufs metadata: skipped
                parent = self.resolve(parts[:-1], create=True, name=m.name)
                parent.children[base[len(WHITEOUT_PREFIX):]] = _Node()  # overlay's 0/0 device
            return
        if not parts:
            return  # the root's own metadata
        parent = self.resolve(parts[:-1], create=True, name=m.name)
        leaf = parts[-1]
        if m.islnk():
            target = clean_name(m.linkname)
            if target == parts:
                return  # a link to itself: apply skips it
            tstack = self.walk(target[:-1], create=False, name=m.name)
            node = tstack[-1].children.get(target[-1])
            if node is None:
                raise InvalidArgument(f"layer entry {m.name!r}: No such file or directory: "
                                      f"{m.linkname}")
            if isinstance(node, _Dir):
                raise InvalidArgument(f"layer entry {m.name!r} links to directory {m.linkname!r}")
            # apply clears the link's own name first: the target must outlive that
            old = parent.children.get(leaf)
            if (tstack[-1] is parent and target[-1] == leaf) or \
                    (old is not None and any(d is old for d in tstack)):
                raise InvalidArgument(f"layer entry {m.name!r} links to {m.linkname!r}, which "
                                      f"writing it removes")
            parent.children[leaf] = node  # a hardlink to a symlink is that symlink
        elif m.isdir():
            if not isinstance(parent.children.get(leaf), _Dir):
                parent.children[leaf] = _Dir()  # directory over directory keeps the children
        elif m.issym():
            parent.children[leaf] = _Link(m.linkname)
        else:
            parent.children[leaf] = _Node()
        self.written.add(parts)


class _Tee:
    def __init__(self, reader: BinaryIO, update: Callable[[bytes], None]):
        self._reader = reader
        self._update = update

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        self._update(data)
        return data


def check_layer(reader: BinaryIO, update: Callable[[bytes], None] = lambda _b: None) -> None:
    """Raise InvalidArgument if applying the uncompressed layer tar ``reader`` would be
    refused for what it holds (not for the disk it lands on); read to its end either way."""
    tee = _Tee(reader, update)
    tree = _Tree()
    with open_layer_tar(tee) as tar:
        while (m := next_entry(tar)) is not None:
            tree.add(m, check_entry(m, tree.written))
    while tee.read(_CHUNK):
        pass

