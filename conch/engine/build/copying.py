"""COPY and ADD for the classic builder: which files, where they land, and their hash.

Contract (docker's classic ``COPY``/``ADD``, moby ``builder/dockerfile/copy.go``):

* Sources are paths relative to the source root (the build context, or with ``--from`` the
  root of a stage's or an image's filesystem); ``..`` cannot climb out of it ("forbidden
  path outside the build context"). A source may hold ``*?[`` wildcards, matched per path
  element (Go's ``filepath.Match``); context files excluded by ``.dockerignore`` are not
  there. No match is docker's "file not found in build context or excluded by
  .dockerignore".
* The destination is relative to WORKDIR. It is a directory when it ends in ``/``, when
  there are several sources, or when it already is one in the image; a source directory
  is copied by its *contents*. Missing parent directories are created 0755.
* Files are owned by root (the context tar's owners are ignored), or ``--chown``'s user
  and group resolved in the image's ``/etc/passwd``/``/etc/group``. Modes and mtimes are
  kept; symlinks are copied as links.
* ``ADD`` of a local tar archive (plain, gzip, bzip2, xz) unpacks it into the destination.

:func:`plan` resolves the sources; :func:`source_hash` is the cache key's content part
(names, modes, link targets and file bytes; not mtimes: touching a file keeps the cache,
as docker's content hash does); :func:`write_tar` writes the tar that
:func:`conch.engine.containers.rootfs_tar.put_archive` applies under the mounted root
(:func:`write_sources`, with :func:`chown_ids` for ``--chown`` and :class:`source_root`
for where ``--from`` reads). Plain synchronous code, run in a worker thread.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from conch.engine.build import step_images
from conch.errors import InvalidArgument, NotFound
from conch.runtime.rootfs import secure_join

_WILD = set("*?[")


@dataclass(frozen=True, slots=True)
class Source:
    path: str      # host path (inside the source root)
    rel: str       # its path relative to the source root
    is_dir: bool


def plan(src_root: Path, patterns: list[str], excluded: Callable[[str], bool] | None,
         *, context: bool) -> list[Source]:
    """The sources ``patterns`` name under ``src_root``, in Dockerfile order."""
    out: list[Source] = []
    for pattern in patterns:
        clean = posixpath.normpath("/" + pattern).lstrip("/")
        if context and posixpath.normpath(pattern).startswith("../"):
            raise InvalidArgument(f"forbidden path outside the build context: {pattern} ()")
        matches = _glob(src_root, clean) if _WILD & set(clean) else [clean]
        found = []
        for rel in matches:
            if excluded is not None and rel and excluded(rel) and _prunes(excluded, rel):
                continue
            # symlinks resolve inside the source root, the context's too (docker's
            # FollowSymlinkInScope): a context holding `etc -> /etc` must not hand the
            # host's /etc/shadow to `COPY etc/shadow /`
            host = secure_join(str(src_root), "/" + rel)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                continue
            found.append(Source(path=host, rel=rel, is_dir=stat.S_ISDIR(st.st_mode)))
        if not found:
            where = "build context or excluded by .dockerignore" if context else "source image"
            raise NotFound(f"COPY failed: file not found in {where}: stat {pattern}: "
                           "file does not exist")
        out += found
    return out


def _glob(root: Path, pattern: str) -> list[str]:
    """Relative paths under ``root`` matching ``pattern`` element by element."""
    parts = [p for p in pattern.split("/") if p]
    found = [""]
    for part in parts:
        nxt = []
        for base in found:
            d = secure_join(str(root), "/" + base)
            if not _WILD & set(part):
                if os.path.lexists(os.path.join(d, part)):
                    nxt.append(posixpath.join(base, part))
                continue
            try:
                names = sorted(os.listdir(d))
            except (NotADirectoryError, FileNotFoundError):
                continue
            nxt += [posixpath.join(base, n) for n in names if fnmatch.fnmatchcase(n, part)]
        found = nxt
    return found


def _walk(src: Source, excluded: Callable[[str], bool] | None):
    """(host path, path relative to the source) of the source and, for a directory,
    everything below it (excluded files skipped), sorted."""
    yield src.path, ""
    if not src.is_dir:
        return
    # excluded directories walked for a "!" exception below them: each is yielded only
    # when something under it is (docker's context has it then as a parent, else not)
    pending: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(src.path):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, src.path)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            full_rel = posixpath.join(src.rel, rel) if src.rel else rel
            host = os.path.join(dirpath, name)
            if excluded is not None and excluded(full_rel):
                if name in dirnames:
                    if _prunes(excluded, full_rel):
                        dirnames.remove(name)
                    else:
                        pending[rel] = host
                continue
            parts = rel.split("/")
            for k in range(1, len(parts)):
                above = "/".join(parts[:k])
                if above in pending:
                    yield pending.pop(above), above
            yield host, rel


def _targets(root: str, sources: list[Source], dest: str, dest_is_dir: bool, excluded):
    """(host path, absolute path in the image) of every entry a COPY of ``sources`` to
    ``dest`` writes, in order, the image's root itself never: a source file lands inside
    ``dest`` when that is a directory (``dest_is_dir``: a trailing ``/``; several sources;
    or a directory already in ``root``), else as ``dest``; a directory's contents land
    in ``dest``. Shared by :func:`write_tar` and :func:`copy_direct`."""
    into_dir = dest_is_dir or len(sources) > 1 or _is_dir_in(root, dest)
    for src in sources:
        if src.is_dir:
            base = dest
        else:
            base = posixpath.join(dest, posixpath.basename(src.rel)) if into_dir else dest
        for host, rel in _walk(src, excluded):
            target = posixpath.normpath(posixpath.join(base, rel)) if rel else base
            if target != "/":
                yield host, target


class ContextFilter:
    """The build context's .dockerignore as the walkers here use it: called with a path,
    is it left out; ``may_reinclude_below(dir)``: must an excluded directory be walked."""

    def __init__(self, ignore):
        self.ignore = ignore

    def __call__(self, rel: str) -> bool:
        return self.ignore.excluded(rel)

    def may_reinclude_below(self, rel: str) -> bool:
        return self.ignore.may_reinclude_below(rel)


def _prunes(excluded, rel: str) -> bool:
    """May a walker skip everything under the excluded directory ``rel``? Not when the
    filter (``excluded.may_reinclude_below``, .dockerignore's "!" lines) says otherwise."""
    below = getattr(excluded, "may_reinclude_below", None)
    return below is None or not below(rel)


def source_hash(sources: list[Source], excluded) -> str:
    """``file:<hex>``, ``dir:<hex>`` or ``multi:<hex>`` as docker names COPY's content."""
    h = hashlib.sha256()
    for src in sources:
        h.update(f"\0src {src.rel}\n".encode("utf-8", "surrogateescape"))
        for host, rel in _walk(src, excluded):
            st = os.lstat(host)
            h.update(f"{rel}\0{st.st_mode:o}\0".encode("utf-8", "surrogateescape"))
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(host).encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                with open(host, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
    kind = "multi" if len(sources) > 1 else ("dir" if sources[0].is_dir else "file")
    return f"{kind}:{h.hexdigest()}"


def destination(dest: str, workdir: str) -> tuple[str, bool]:
    """(absolute destination, whether it was written as a directory: trailing ``/``)."""
    if not dest:
        raise InvalidArgument("COPY requires at least two arguments")
    is_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
    if not dest.startswith("/"):
        dest = posixpath.join(workdir or "/", dest)
    return posixpath.normpath(dest), is_dir


def is_archive(path: str) -> bool:
    try:
        return os.path.isfile(path) and tarfile.is_tarfile(path)
    except OSError:
        return False


def write_tar(out: BinaryIO, root: Path, sources: list[Source], dest: str, dest_is_dir: bool,
              owner: tuple[int, int], excluded, chmod: int | None = None) -> None:
    """The tar (names relative to the image root) that puts ``sources`` at ``dest``;
    ``chmod`` (BuildKit's ``--chmod``): the mode of every file and directory copied
    (not of the parents made for them)."""
    root_s = str(root)
    uid, gid = owner
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        made: set[str] = set()

        def parents(path: str) -> None:
            """Directory entries for the missing ancestors of ``path`` (0755)."""
            chain = []
            p = posixpath.dirname(path)
            while p not in ("/", "") and p not in made and not _exists_in(root_s, p):
                chain.append(p)
                p = posixpath.dirname(p)
            for d in reversed(chain):
                info = tarfile.TarInfo(d.lstrip("/"))
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, gid
                tar.addfile(info)
                made.add(d)

        for host, target in _targets(root_s, sources, dest, dest_is_dir, excluded):
            parents(target)
            info = tar.gettarinfo(host, arcname=target.lstrip("/"))
            info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
            if chmod is not None and (info.isreg() or info.isdir()):
                info.mode = chmod
            if info.isreg():
                with open(host, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir():
                made.add(target)


def _exists_in(root: str, path: str) -> bool:
    try:
        return os.path.lexists(secure_join(root, path))
    except (OSError, InvalidArgument):
        return False


def _is_dir_in(root: str, path: str) -> bool:
    try:
        return os.path.isdir(secure_join(root, path))
    except (OSError, InvalidArgument):
        return False


class source_root:
    """The root COPY reads from: the context, or a mounted snapshot of --from's image."""

    def __init__(self, b, ctx: Path, image, from_flag: bool, alt_root: Path | None = None):
        self.b, self.ctx, self.image, self.from_flag = b, ctx, image, from_flag
        self.alt_root = alt_root  # heredoc bodies / downloads (BuildKit syntax)
        self._cm = None

    def __enter__(self) -> Path:
        if self.alt_root is not None:
            return self.alt_root
        if not self.from_flag:
            return self.ctx
        self._cm = step_images.scratch_root(self.b.images, self.b.snapshotter,
                                             self.b.paths.exec_root, self.image)
        return self._cm.__enter__()[1]

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return False


def chown_ids(spec: str, root: Path) -> tuple[int, int]:
    from conch.engine.containers.ociconfig import resolve_user

    if not spec:
        return 0, 0
    if ":" not in spec:  # docker: the group defaults to the user's name/number
        try:
            uid, gid, _ = resolve_user(f"{spec}:{spec}", str(root))
            return uid, gid
        except InvalidArgument:
            pass
    uid, gid, _ = resolve_user(spec, str(root))
    return uid, gid


class _NotPlain(Exception):
    """A source entry :func:`copy_direct` does not copy (a device, fifo or socket)."""


def copy_direct(root: Path, sources: list[Source], dest: str, dest_is_dir: bool,
                owner: tuple[int, int], excluded, chmod: int | None = None) -> None:
    """What :func:`write_tar` + ``put_archive`` do, file by file into the mounted root:
    no tar and no staged copies (a 20 MB COPY wrote 60 MB that way). Directories, regular
    files (copied in the kernel: copy_file_range), symlinks and hard links within the
    copy; anything else raises :class:`_NotPlain` (the caller then takes the tar path,
    which rewrites every entry). Parents resolve inside ``root`` (secure_join); the last
    element is replaced, never followed."""
    import shutil

    root_s = str(root)
    uid, gid = owner
    links: dict[tuple[int, int], str] = {}
    dir_times: list[tuple[str, os.stat_result]] = []

    def place(target: str) -> str:
        parent, name = posixpath.split(target)
        return os.path.join(secure_join(root_s, parent or "/"), name)

    def parents(target: str) -> None:
        chain = []
        p = posixpath.dirname(target)
        while p not in ("/", "") and not _exists_in(root_s, p):
            chain.append(p)
            p = posixpath.dirname(p)
        for d in reversed(chain):
            path = place(d)
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)
            os.lchown(path, uid, gid)

    def clear(path: str, keep_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                shutil.rmtree(path)
        else:
            os.unlink(path)

    for host, target in _targets(root_s, sources, dest, dest_is_dir, excluded):
        name = posixpath.basename(target)
        if name.startswith(".wh..wh."):
            continue  # aufs bookkeeping: skipped, as put_archive (dockerd) does
        if name.startswith(".wh."):  # in a layer it would hide its namesake
            raise InvalidArgument(f"archive entry {target.lstrip('/')!r}: cannot copy a file named .wh.*")
        st = os.lstat(host)
        mode = st.st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise _NotPlain(host)
        parents(target)
        path = place(target)
        perm = chmod if chmod is not None else stat.S_IMODE(mode)
        if stat.S_ISDIR(mode):
            clear(path, keep_dir=True)
            if not os.path.isdir(path) or os.path.islink(path):
                os.mkdir(path, 0o700)
        elif stat.S_ISLNK(mode):
            clear(path, keep_dir=False)
            os.symlink(os.readlink(host), path)
            os.lchown(path, uid, gid)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            continue
        else:
            clear(path, keep_dir=False)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], path)
                continue
            fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with open(fd, "rb") as fin, open(path, "xb") as fout:
                _copy_range(fin.fileno(), fout.fileno(), st.st_size)
            if st.st_nlink > 1:
                links[key] = path
        os.lchown(path, uid, gid)
        os.chmod(path, perm)
        if stat.S_ISDIR(mode):
            dir_times.append((path, st))  # after their entries: adding one changes it
        else:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    for path, st in reversed(dir_times):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_range(fin: int, fout: int, size: int) -> None:
    """The file's bytes in the kernel (copy_file_range; sendfile where that fails)."""
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(fin, fout, size - done)
            if n == 0:
                break
            done += n
        return
    except OSError:
        pass
    while done < size:
        n = os.sendfile(fout, fin, done, size - done)
        if n == 0:
            break
        done += n


def write_sources(root: Path, plain, archives, dest_abs: str, dest_dir: bool,
                   owner: tuple[int, int], excluded, *, chmod: int | None = None) -> None:
    from conch.engine.containers.rootfs_tar import put_archive

    if plain:
        try:
            copy_direct(root, plain, dest_abs, dest_dir, owner, excluded, chmod)
            plain = []
        except _NotPlain:
            pass  # a device or fifo among the sources: the tar path below does all of it
    if plain:
        with tempfile.TemporaryFile(prefix="conch-build-copy-") as tar:
            write_tar(tar, root, plain, dest_abs, dest_dir, owner, excluded, chmod)
            tar.seek(0)
            put_archive(root, "/", tar)
    for src in archives:  # ADD: a local archive is unpacked into the destination
        target = secure_join(str(root), dest_abs)
        os.makedirs(target, mode=0o755, exist_ok=True)
        with open(src.path, "rb") as f:
            put_archive(root, dest_abs, f)
