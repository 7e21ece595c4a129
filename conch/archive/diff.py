"""Layer tars out of directories: overlay upper dirs (``commit``), whole trees
(``export``), and the list of changes ``docker diff`` shows.

Contract:

- :func:`write_diff` turns an overlay upper dir into an OCI layer tar on ``out`` and
  returns its diff_id. overlayfs' whiteouts (0/0 character devices) become
  ``.wh.<name>`` entries, ``trusted.overlay.opaque=y`` directories get a
  ``.wh..wh..opq`` entry; ``trusted.overlay.*`` xattrs are never written. With
  ``lower`` (the overlay's lower dirs, top-most first) a whiteout that hides nothing is
  left out. An upper dir holding overlayfs redirects or metacopy files cannot be diffed by
  walking it and raises :class:`~conch.errors.FailedPrecondition`.
- :func:`write_tar` writes a whole tree (e.g. a mounted container rootfs) as a tar.
- :func:`changes` lists what an upper dir changed against its lowers, as ``docker diff``
  does: ``A`` (added), ``C`` (changed; parents of changed files count), ``D`` (deleted).

Output is deterministic: entries in byte order of names, a directory before its children
and, within a directory, the opaque marker first, then whiteouts, then the rest; PAX
format; mtimes truncated to whole seconds and no user/group names (as Docker writes
them); hardlinked files become one file plus ``LNKTYPE`` entries naming the first path.
Sockets are skipped (Docker does too).
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from conch.archive.apply import (
    OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, keep_xattr,
)
from conch.errors import FailedPrecondition

_OVERLAY_UNDIFFABLE = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


class ChangeKind(enum.Enum):
    ADDED = "A"
    CHANGED = "C"
    DELETED = "D"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    kind: ChangeKind
    path: str  # absolute inside the container: "/etc/passwd"


class _HashingWriter:
    def __init__(self, out: BinaryIO):
        self._out = out
        self.sha = hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        self._out.write(data)
        return len(data)

    def digest(self) -> str:
        return f"sha256:{self.sha.hexdigest()}"


def write_diff(lower: list[Path] | None, upper: Path, out: BinaryIO) -> str:
    """Write the layer tar of overlay upper dir ``upper`` to ``out``; return its diff_id."""
    lowers = [Path(p) for p in lower or ()]
    return _write(Path(upper), out, overlay=True, lowers=lowers)


def write_tar(rootfs: Path, out: BinaryIO) -> str:
    """Write the whole tree ``rootfs`` as a tar to ``out``; return its sha256 digest."""
    return _write(Path(rootfs), out, overlay=False, lowers=[])


def _write(top: Path, out: BinaryIO, *, overlay: bool, lowers: list[Path]) -> str:
    hashed = _HashingWriter(out)
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=hashed, mode="w|", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for rel, st, marker in _walk(top, overlay=overlay):
            if marker is not None:
                if marker == WHITEOUT_OPAQUE or _in_lowers(lowers, rel) or not lowers:
                    tar.addfile(_marker(rel, marker, st))
                continue
            _add(tar, top, rel, st, links)
    return hashed.digest()


def _walk(top: Path, *, overlay: bool) -> Iterator[tuple[str, os.stat_result, str | None]]:
    """(relative path, lstat, whiteout marker name or None), in output order."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        dir_path = top / rel_dir if rel_dir else top
        names = sorted(os.listdir(dir_path), key=os.fsencode)
        opaque, whiteouts, entries = [], [], []
        if overlay and rel_dir and _xattr(dir_path, OVERLAY_OPAQUE_XATTR) == b"y":
            opaque.append((_join(rel_dir, WHITEOUT_OPAQUE), os.lstat(dir_path), WHITEOUT_OPAQUE))
        for name in names:
            rel = _join(rel_dir, name)
            st = os.lstat(top / rel)
            if overlay and _is_whiteout(st):
                whiteouts.append((_join(rel_dir, WHITEOUT_PREFIX + name), st, WHITEOUT_PREFIX + name))
            elif not stat.S_ISSOCK(st.st_mode):
                if overlay:
                    _check_diffable(top / rel)
                entries.append((rel, st, None))
        yield from opaque
        yield from whiteouts
        subdirs = []
        for rel, st, marker in entries:
            yield rel, st, marker
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(rel)
        # A directory's entries come before its subdirectories' contents; subdirectories
        # are walked in name order (the stack pops the first one next).
        stack.extend(reversed(subdirs))


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _xattr(path: Path, key: str) -> bytes | None:
    try:
        return os.getxattr(path, key, follow_symlinks=False)
    except OSError:
        return None


def _check_diffable(path: Path) -> None:
    for key in _OVERLAY_UNDIFFABLE:
        if _xattr(path, key) is not None:
            raise FailedPrecondition(f"{path} carries {key}: mount overlays with redirect_dir=off,metacopy=off")


def _in_lowers(lowers: list[Path], rel: str) -> bool:
    hidden = rel.rpartition("/")[0]
    base = rel.rpartition("/")[2][len(WHITEOUT_PREFIX):]
    target = _join(hidden, base)
    return any(os.path.lexists(low / target) for low in lowers)


def _marker(rel: str, marker: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.type = tarfile.REGTYPE
    info.mode = 0o600
    info.mtime = int(st.st_mtime)
    info.uname = info.gname = ""
    return info


def _add(tar: tarfile.TarFile, top: Path, rel: str, st: os.stat_result,
         links: dict[tuple[int, int], str]) -> None:
    path = top / rel
    info = tarfile.TarInfo(rel)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uname = info.gname = ""
    info.pax_headers = {
        f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in _xattrs(path)
    }
    mode = st.st_mode
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info.type = tarfile.LNKTYPE
            info.linkname = links[key]
            tar.addfile(info)
            return
        if st.st_nlink > 1:
            links[key] = rel
        info.type = tarfile.REGTYPE
        info.size = st.st_size
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
            tar.addfile(info, f)
        return
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        return
    tar.addfile(info)


def _xattrs(path: Path) -> list[tuple[str, bytes]]:
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    out = []
    for key in sorted(keys):
        if keep_xattr(key):
            value = _xattr(path, key)
            if value is not None:
                out.append((key, value))
    return out


def changes(lower_dirs: list[Path], upper: Path) -> list[Change]:
    """What ``upper`` changed against ``lower_dirs`` (top-most first), sorted by path."""
    lowers = [Path(p) for p in lower_dirs]
    upper = Path(upper)
    found: dict[str, ChangeKind] = {}
    for rel, st, marker in _walk(upper, overlay=True):
        if marker == WHITEOUT_OPAQUE:
            _opaque_deletions(lowers, upper, rel.rpartition("/")[0], found)
        elif marker is not None:
            hidden = _join(rel.rpartition("/")[0], marker[len(WHITEOUT_PREFIX):])
            found[hidden] = ChangeKind.DELETED
        else:
            in_lower = any(os.path.lexists(low / rel) for low in lowers)
            found[rel] = ChangeKind.CHANGED if in_lower else ChangeKind.ADDED
    return [Change(kind=k, path="/" + p) for p, k in sorted(found.items(), key=lambda i: os.fsencode(i[0]))]


def _opaque_deletions(lowers: list[Path], upper: Path, rel_dir: str, found: dict) -> None:
    """Children of lower copies of an opaque dir that the upper does not have again."""
    for low in lowers:
        d = low / rel_dir
        if not d.is_dir() or d.is_symlink():
            continue
        for name in os.listdir(d):
            rel = _join(rel_dir, name)
            if not os.path.lexists(upper / rel):
                found.setdefault(rel, ChangeKind.DELETED)
