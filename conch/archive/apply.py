"""Apply one OCI layer tar to a directory, safely, computing its diff_id on the way.

Contract: :func:`apply_layer` reads a (gzip/zstd/plain, detected by magic) layer stream
once, front to back, writes its entries under ``dest`` and returns the diff_id (sha256 of
the *uncompressed* tar, trailing padding included) and the uncompressed length. On any
error it raises and may leave a partial tree **inside** ``dest``: the caller removes
``dest`` (an unpack is all-or-nothing at the snapshot level: the snapshot is prepared,
applied into, and only committed on success). Nothing is ever written outside ``dest``.

Layer semantics (OCI image-spec, "Applying Changesets" and "Whiteouts"):

- ``.wh.<name>`` hides ``<name>`` of lower layers. ``whiteout_format="overlay"`` (``dest``
  is an empty overlay upper dir): a 0/0 character device at ``<name>``.
  ``"plain"`` (``dest`` is a flat tree holding the lower layers): ``<name>`` is deleted.
  ``"none"`` (a plain tar, not a layer: a build context): ``.wh.`` names are files.
- ``.wh..wh..opq`` makes its directory opaque. overlay: xattr ``trusted.overlay.opaque=y``;
  plain: every child not written by this layer is deleted. Other ``.wh..wh.`` names (aufs
  bookkeeping) are skipped, as Docker does.
- An existing entry is replaced, except directory over directory, which keeps the children
  and takes the new metadata.
- Hardlinks must name a path written earlier by this same layer, as layer writers emit
  them (Docker and containerd only ever link to an earlier entry of the same tar).
- Devices (char/block) are created only when running as root, else skipped with a
  warning; FIFOs need no privilege and are always created.
- Ownership via lchown when root; mode including setuid/setgid/sticky, except that the
  setuid bit is kept on regular files only; directory mtimes are set at the end (children
  would change them); xattrs from PAX ``SCHILY.xattr.*`` except ``security.*`` (only
  ``security.capability`` is kept, as Docker) and ``trusted.overlay.*``/``user.overlay.*``
  (they would steer our own overlay mount: redirects, metacopy, fake opaque dirs).

Security: entry names are cleaned lexically (``/`` and ``./`` prefixes dropped; a ``..``
that climbs above the layer root is rejected, as Docker does), then their parent is
resolved by :class:`_Root` one component at a time with ``O_NOFOLLOW`` fds, following
symlinks *as if* ``dest`` were ``/`` (``a -> /etc`` then ``a/passwd`` writes
``dest/etc/passwd``; ``a -> ../../..`` stops at ``dest``), the way containerd's
``fs.RootPath`` and Docker's chrooted unpack behave. The last component is never followed:
every create uses ``dir_fd`` plus ``O_NOFOLLOW``/``O_EXCL`` or the ``*at`` call's
no-follow form. Symlink targets are stored verbatim: they resolve inside the container's
root at run time. Malformed tars (bad checksums, truncated data, special headers larger
than 1 MiB, NUL in names) raise :class:`~conch.errors.InvalidArgument`
(``layer is not a valid tar: …``). Each entry first passes
:func:`conch.archive.check.check_entry`, the rules ``docker load`` checks too, so a load
and a pull refuse the same layers in the same words.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Literal

# the tar reading and the entry rules are check's (docker load runs them alone); the
# whiteout names and clean_name stay importable from here for diff and rootfs_tar
from conch.archive.check import (_CHUNK, MAX_SYMLINKS, TAR_ERRORS,  # noqa: F401
                                 WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
                                 check_entry, clean_name, entry_times, next_entry,
                                 open_layer_tar)
from conch.archive.compression import decompressed
from conch.errors import ConchError, InvalidArgument, PermissionDenied, SystemCallError

log = logging.getLogger(__name__)

OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int  # length of the uncompressed tar in bytes


def apply_layer(
    stream: BinaryIO, dest: Path, *,
    whiteout_format: Literal["overlay", "plain", "none"] = "overlay"
) -> ApplyResult:
    """Unpack the layer ``stream`` into the existing directory ``dest``."""
    if whiteout_format not in ("overlay", "plain", "none"):
        raise InvalidArgument(f"whiteout format must be 'overlay', 'plain' or 'none', "
                              f"not {whiteout_format!r}")
    reader, _ = decompressed(stream)
    hashed = _HashingReader(reader)
    with _Root(Path(dest)) as root:
        _Applier(root, overlay=whiteout_format == "overlay",
                 whiteouts=whiteout_format != "none").run(hashed)
    hashed.drain()  # end-of-archive blocks and record padding are part of the diff_id
    return ApplyResult(diff_id=f"sha256:{hashed.sha.hexdigest()}", size=hashed.size)


class _HashingReader:
    """Hashes and counts every byte tarfile pulls through it."""

    def __init__(self, reader: BinaryIO):
        self._reader = reader
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _oserror(exc: OSError, syscall: str, path: str) -> SystemCallError:
    return SystemCallError(syscall, exc.errno or errno.EIO, path, exc.strerror or "")


class _Root:
    """``dest`` as a chroot: resolves directories by fd without leaving it.

    Resolved directory fds (``O_PATH``) are cached by their cleaned path; :meth:`forget`
    drops the cache whenever something that could change a resolution (a removal, a new
    symlink) happens. :meth:`dir` hands out private dups, so a forget never closes an fd
    that is in use.
    """

    def __init__(self, dest: Path):
        self.dest = dest
        try:
            self.fd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _oserror(exc, "open", str(dest)) from exc
        self._cache: dict[tuple[str, ...], int] = {}

    def __enter__(self) -> "_Root":
        return self

    def __exit__(self, *exc) -> None:
        self.forget()
        os.close(self.fd)

    def forget(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    @contextlib.contextmanager
    def dir(self, parts: tuple[str, ...], *, create: bool) -> Iterator[int]:
        """An O_PATH fd for directory ``parts``, symlinks resolved in scope, valid inside
        the ``with`` block (a private dup: later removals cannot close it under us).

        With ``create``, missing directories are made (0755, as Docker and containerd do
        for implicit parents); without it a missing one raises FileNotFoundError.
        """
        cached = self._cache.get(parts) if parts else self.fd
        if cached is None:
            cached = self._walk(parts, create=create)
            if len(self._cache) >= 256:
                self.forget()
            self._cache[parts] = cached
        fd = os.dup(cached)
        try:
            yield fd
        finally:
            os.close(fd)

    def _walk(self, parts: tuple[str, ...], *, create: bool) -> int:
        stack = [os.dup(self.fd)]
        pending = list(reversed(parts))
        links = 0
        try:
            while pending:
                comp = pending.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if len(stack) > 1:  # ".." at the root stays at the root, as in a chroot
                        os.close(stack.pop())
                    continue
                top = stack[-1]
                try:
                    st = os.stat(comp, dir_fd=top, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(comp, 0o755, dir_fd=top)
                    st = os.stat(comp, dir_fd=top, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise InvalidArgument(f"{'/'.join(parts)}: too many levels of symbolic links")
                    target = os.readlink(comp, dir_fd=top)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    pending.extend(reversed(target.split("/")))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise InvalidArgument(f"{'/'.join(parts)}: {comp!r} is not a directory")
                flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                stack.append(os.open(comp, flags, dir_fd=top))
            result = stack.pop()
        finally:
            for fd in stack:
                os.close(fd)
        return result


class _Applier:
    def __init__(self, root: _Root, *, overlay: bool, whiteouts: bool = True):
        self.root = root
        self.overlay = overlay
        self.whiteouts = whiteouts
        self.privileged = os.geteuid() == 0
        self.written: set[tuple[str, ...]] = set()  # paths this layer created
        self.dir_times: list[tuple[tuple[str, ...], int, int]] = []

    def run(self, hashed: _HashingReader) -> None:
        with open_layer_tar(hashed) as tar:
            while (member := next_entry(tar)) is not None:
                self._entry(tar, member)
        self._set_dir_times()

    # -- one entry -------------------------------------------------------------------

    def _entry(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        # the rules that need no tree, shared with docker load's check (conch.archive.check)
        parts = check_entry(m, self.written, whiteouts=self.whiteouts)
        try:
            if self.whiteouts and parts and parts[-1].startswith(WHITEOUT_PREFIX):
                self._whiteout(m.name, parts)
                return
            if not parts:
                self._meta_dir(self.root.fd, ".", m, parts)
                return
            with self.root.dir(parts[:-1], create=True) as pfd:
                self._create(tar, m, parts, pfd, parts[-1])
        except FileNotFoundError as exc:
            raise InvalidArgument(f"layer entry {m.name!r}: {exc.strerror}: {exc.filename}") from exc
        except InvalidArgument as exc:  # from _Root: a loop or a file on the way; name the entry
            if str(exc).startswith("layer "):
                raise
            raise InvalidArgument(f"layer entry {m.name!r}: {exc}") from exc
        except (OverflowError, ValueError) as exc:  # ids, times or device numbers out of range
            raise InvalidArgument(f"layer entry {m.name!r}: {exc}") from exc
        except OSError as exc:
            raise _oserror(exc, "apply", m.name) from exc

    def _create(self, tar, m: tarfile.TarInfo, parts, pfd: int, leaf: str) -> None:
        if m.islnk():
            self._hardlink(m, parts, pfd, leaf)
            return
        self._clear(pfd, leaf, keep_dir=m.isdir())
        if m.isreg():
            self._regular(tar, m, pfd, leaf)
        elif m.isdir():
            try:
                os.mkdir(leaf, 0o700, dir_fd=pfd)
            except FileExistsError:
                pass  # directory over directory: keep the children
            self._meta_dir(pfd, leaf, m, parts)
        elif m.issym():
            os.symlink(m.linkname, leaf, dir_fd=pfd)
            self.root.forget()
            self._meta_link(pfd, leaf, m)
        elif m.ischr() or m.isblk() or m.isfifo():
            if not self._device(m, pfd, leaf):
                return
        else:
            raise InvalidArgument(f"layer entry {m.name!r} has unsupported type {m.type!r}")
        self.written.add(parts)

    def _clear(self, pfd: int, leaf: str, *, keep_dir: bool) -> None:
        try:
            st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(leaf, dir_fd=pfd)
        else:
            os.unlink(leaf, dir_fd=pfd)
        self.root.forget()

    def _regular(self, tar, m: tarfile.TarInfo, pfd: int, leaf: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(leaf, flags, 0o600, dir_fd=pfd)
        try:
            src = tar.extractfile(m)
            remaining = m.size
            while remaining > 0:
                try:
                    data = src.read(min(_CHUNK, remaining))
                except TAR_ERRORS as exc:
                    raise InvalidArgument(f"layer is not a valid tar: {m.name!r}: {exc}") from exc
                if not data:
                    raise InvalidArgument(f"layer is not a valid tar: {m.name!r} is truncated")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                remaining -= len(data)
            self._meta_fd(fd, m, regular=True)
            os.utime(fd, ns=entry_times(m))
        finally:
            os.close(fd)

    def _device(self, m: tarfile.TarInfo, pfd: int, leaf: str) -> bool:
        if m.isfifo():
            os.mkfifo(leaf, 0o600, dir_fd=pfd)
        elif not self.privileged:
            log.warning("skipping device node %r: creating devices needs root", m.name)
            return False
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(leaf, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        self._meta_path(pfd, leaf, m)
        return True

    def _hardlink(self, m: tarfile.TarInfo, parts, pfd: int, leaf: str) -> None:
        target = clean_name(m.linkname)  # check_entry: written by this layer
        if target == parts:
            return  # a link to itself: nothing to do (Docker skips it too)
        with self.root.dir(target[:-1], create=False) as tpfd:
            tst = os.stat(target[-1], dir_fd=tpfd, follow_symlinks=False)
            if stat.S_ISDIR(tst.st_mode):
                raise InvalidArgument(f"layer entry {m.name!r} links to directory {m.linkname!r}")
            self._clear(pfd, leaf, keep_dir=False)
            try:
                os.link(target[-1], leaf, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError as exc:  # it was there: clearing the link's name took it
                raise InvalidArgument(f"layer entry {m.name!r} links to {m.linkname!r}, which "
                                      f"writing it removes") from exc
        self.written.add(parts)

    # -- whiteouts -------------------------------------------------------------------

    def _whiteout(self, name: str, parts: tuple[str, ...]) -> None:
        base = parts[-1]
        if base == WHITEOUT_OPAQUE:
            self._opaque(parts[:-1])
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            log.debug("skipping aufs metadata entry %r", name)
            return
        hidden = base[len(WHITEOUT_PREFIX):]  # check_entry refused "", "." and ".."
        if self.overlay:
            with self.root.dir(parts[:-1], create=True) as pfd:
                self._clear(pfd, hidden, keep_dir=False)
                os.mknod(hidden, stat.S_IFCHR | 0o600, 0, dir_fd=pfd)  # overlayfs' whiteout
            return
        try:
            with self.root.dir(parts[:-1], create=False) as pfd:
                self._clear(pfd, hidden, keep_dir=False)
        except FileNotFoundError:
            return  # nothing below to hide

    def _opaque(self, dir_parts: tuple[str, ...]) -> None:
        if self.overlay:
            with self.root.dir(dir_parts, create=True) as pfd:
                fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
            try:
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
            except PermissionError as exc:
                raise PermissionDenied("overlay whiteouts need root (trusted.* xattrs)") from exc
            finally:
                os.close(fd)
            return
        try:
            with self.root.dir(dir_parts, create=False) as pfd:
                fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    children = os.listdir(fd)
                finally:
                    os.close(fd)
                for child in children:
                    if dir_parts + (child,) not in self.written:
                        self._clear(pfd, child, keep_dir=False)
        except FileNotFoundError:
            return

    # -- metadata --------------------------------------------------------------------

    def _meta_dir(self, pfd: int, leaf: str, m: tarfile.TarInfo, parts) -> None:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(leaf, flags, dir_fd=pfd)
        try:
            self._meta_fd(fd, m, regular=False)
        finally:
            os.close(fd)
        atime, mtime = entry_times(m)
        self.dir_times.append((parts, atime, mtime))

    def _meta_fd(self, fd: int, m: tarfile.TarInfo, *, regular: bool) -> None:
        if self.privileged:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, _mode(m, regular=regular))  # after chown, which clears set-id bits
        for key, value in _xattrs(m):
            _setxattr(lambda: os.setxattr(fd, key, value), m.name, key)

    def _meta_path(self, pfd: int, leaf: str, m: tarfile.TarInfo) -> None:
        """Metadata for a node we cannot open (device, fifo): no-follow *at calls."""
        if self.privileged:
            os.chown(leaf, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(leaf, _mode(m, regular=False), dir_fd=pfd)  # not a symlink: we just made it
        for key, value in _xattrs(m):
            path = f"/proc/self/fd/{pfd}/{leaf}"
            _setxattr(lambda: os.setxattr(path, key, value, follow_symlinks=False), m.name, key)
        os.utime(leaf, ns=entry_times(m), dir_fd=pfd, follow_symlinks=False)

    def _meta_link(self, pfd: int, leaf: str, m: tarfile.TarInfo) -> None:
        if self.privileged:
            os.chown(leaf, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        for key, value in _xattrs(m):
            path = f"/proc/self/fd/{pfd}/{leaf}"
            _setxattr(lambda: os.setxattr(path, key, value, follow_symlinks=False), m.name, key)
        os.utime(leaf, ns=entry_times(m), dir_fd=pfd, follow_symlinks=False)

    def _set_dir_times(self) -> None:
        # Deepest first, so setting a parent's time is the last touch it gets. A directory
        # replaced or whited-out since is simply gone: skip it.
        for parts, atime, mtime in sorted(self.dir_times, key=lambda t: -len(t[0])):
            try:
                if not parts:
                    os.utime(".", ns=(atime, mtime), dir_fd=self.root.fd, follow_symlinks=False)
                    continue
                with self.root.dir(parts[:-1], create=False) as pfd:
                    if stat.S_ISDIR(os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False).st_mode):
                        os.utime(parts[-1], ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)
            except (FileNotFoundError, ConchError):
                continue


def _mode(m: tarfile.TarInfo, *, regular: bool) -> int:
    mode = m.mode & 0o7777
    if not regular:
        mode &= ~stat.S_ISUID  # setuid means something on regular files only
    return mode


def keep_xattr(key: str) -> bool:
    """The xattrs a layer may carry onto disk (and that a diff writes back out)."""
    if key.startswith("security."):
        return key == "security.capability"
    return not key.startswith(("trusted.overlay.", "user.overlay."))


def _xattrs(m: tarfile.TarInfo):
    for key, value in m.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        if "\x00" in name or not keep_xattr(name):
            log.debug("dropping xattr %r of %r", name, m.name)
            continue
        yield name, value.encode("utf-8", "surrogateescape")


def _setxattr(call, entry: str, key: str) -> None:
    try:
        call()
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            log.warning("cannot set xattr %r on %r: %s", key, entry, exc.strerror)
            return
        raise
