"""The local content store: verified blobs on disk, written through resumable ingests.

On-disk layout (as containerd's ``content/local``)::

    root/
      blobs/<algorithm>/<encoded>     committed blobs, mode 0444, never partial
      ingest/<sha256(ref)>/           one directory per in-progress write, keyed by ref
        ref                           the ref string (lets list_ingests name it)
        startedat                     ISO 8601 UTC time the ingest began
        total                         expected size, if the writer was told it
        expected                      expected digest, if the writer was told it
        data                          the bytes written so far
        lock                          flock(2)ed by the one writer that owns the ingest
      put/<encoded>-<random>          a one-shot put's bytes before their rename into blobs/

Write protocol: bytes go to ``ingest/<key>/data`` only. ``commit`` fsyncs the data,
checks its size and digest, and ``rename``\\ s it to ``blobs/`` (same filesystem, so
atomic), then fsyncs the blobs directory. A crash at any point leaves either no blob or
the whole verified blob; a leftover ingest is resumed by the next writer of that ref
(after re-hashing what is there) or removed by :meth:`ContentStore.prune_ingests`.

Concurrency: one writer per ref, enforced across processes with a non-blocking
``flock`` on ``lock`` (the second gets :class:`Unavailable`). Different refs may write
the same content: both commit, the second finds the blob present and just drops its
ingest -- content addressing makes the two identical. A :class:`Writer` itself is not
thread-safe.

Digests are computed with hashlib (OpenSSL; sha256 runs at GB/s). Decompression for
diff_ids is archive/'s business, where isal/zlib-ng will help.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from conch.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound
from conch.errors import Unavailable
from conch.kernel.libc import start_writeback
from conch.oci.descriptor import Descriptor
from conch.oci.digest import SHA256, Digest, Digester, supported_algorithms

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_METADATA = ("ref", "startedat", "total", "expected", "data")  # removed before "lock"


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    digest: Digest
    size: int
    created_at: datetime
    updated_at: datetime

    def descriptor(self, media_type: str) -> Descriptor:
        return Descriptor(media_type=media_type, digest=self.digest, size=self.size)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestStatus:
    ref: str
    offset: int
    total: int | None
    expected: Digest | None
    started_at: datetime
    updated_at: datetime


class ContentStore:
    """Blobs under ``root/blobs``, ingests under ``root/ingest``; see the module doc."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._ingest = self.root / "ingest"

    # --- reading ------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.encoded

    def exists(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def info(self, digest: Digest) -> Info:
        try:
            st = os.stat(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}") from None
        return _info(digest, st)

    def open(self, digest: Digest) -> BinaryIO:
        """The blob as a seekable binary file (for Range reads); the caller closes it."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}") from None

    def read(self, digest: Digest, *, verify: bool = False) -> bytes:
        with self.open(digest) as f:
            data = f.read()
        if verify and Digest.from_bytes(data, digest.algorithm) != digest:
            raise FailedPrecondition(f"content {digest} is corrupt: digest mismatch on read")
        return data

    def walk(self) -> Iterator[Info]:
        """Every committed blob, in (algorithm, encoded) order."""
        for algorithm in supported_algorithms():
            try:
                names = sorted(os.listdir(self._blobs / algorithm))
            except FileNotFoundError:
                continue
            for name in names:
                try:
                    digest = Digest(algorithm=algorithm, encoded=name)
                    st = os.stat(self._blobs / algorithm / name)
                except InvalidArgument:
                    log.warning("ignoring stray file %s in %s", name, self._blobs / algorithm)
                    continue
                except FileNotFoundError:
                    continue  # deleted while walking
                yield _info(digest, st)

    def delete(self, digest: Digest) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}") from None

    # --- writing ------------------------------------------------------------------------

    def writer(
        self, ref: str, *, expected: Digest | None = None, total: int | None = None
    ) -> Writer:
        """Open (or resume) the ingest for ``ref``.

        Raises :class:`AlreadyExists` if ``expected`` is already committed (callers
        that only need the blob present treat that as success) and :class:`Unavailable`
        if another writer holds ``ref``.
        """
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("content ingest ref must be a non-empty string")
        if total is not None and total < 0:
            raise InvalidArgument(f"content ingest total must be >= 0, got {total}")
        if expected is not None and self.exists(expected):
            raise AlreadyExists(f"content {expected} already exists")
        path = self._ingest_path(ref)
        lock_fd = _lock(path, ref)
        try:
            return self._open_writer(path, ref, lock_fd, expected, total)
        except BaseException:
            os.close(lock_fd)
            raise

    def put(self, data: bytes, *, expected: Digest | None = None) -> Info:
        """Store ``data`` in one go; a no-op returning the existing blob if present.

        One-shot, so no resumable ingest: the bytes go to a private temp file under
        ``root/put/`` (same filesystem), fsynced and renamed into ``blobs/`` -- the same
        durability as :meth:`Writer.commit` without the ingest's ref/startedat/lock files
        and their fsyncs (~4 ms of a config's or manifest's 5 ms; a build writes two per
        step). A crash leaves at most a temp file there, removed by :meth:`prune_ingests`."""
        algorithm = expected.algorithm if expected is not None else SHA256
        digest = Digest.from_bytes(data, algorithm)
        if expected is not None and digest != expected:
            raise FailedPrecondition(f"unexpected content digest {digest}, expected {expected}")
        target = self._commit_path(digest)
        if target.exists():
            return self.info(digest)
        tmp_dir = self.root / "put"
        tmp = tmp_dir / f"{digest.encoded}-{os.urandom(8).hex()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        except FileNotFoundError:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            try:
                view = memoryview(data).cast("B")
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, target)  # a racing put of the same bytes: either copy is the blob
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)
        return self.info(digest)

    def status(self, ref: str) -> IngestStatus:
        return self._status(self._ingest_path(ref))

    def list_ingests(self) -> list[IngestStatus]:
        out = []
        for path in self._ingest_dirs():
            try:
                out.append(self._status(path))
            except NotFound:
                continue  # being created or removed right now
        return out

    def abort(self, ref: str) -> None:
        """Drop the ingest for ``ref``; :class:`Unavailable` if a writer holds it."""
        path = self._ingest_path(ref)
        if not (path / "ref").exists():
            raise NotFound(f"content ingest {ref!r}")
        fd = _lock(path, ref, create=False)
        try:
            _remove_ingest(path)
        finally:
            os.close(fd)

    def prune_ingests(self, older_than: float | timedelta) -> list[str]:
        """Remove unlocked ingests not touched for ``older_than`` (seconds or a
        timedelta), including half-created ones; return the refs removed."""
        if isinstance(older_than, timedelta):
            older_than = older_than.total_seconds()
        cutoff = datetime.now(timezone.utc).timestamp() - older_than
        pruned = []
        for path in self._ingest_dirs():
            try:
                fd = _lock(path, "", create=False)
            except (Unavailable, NotFound):
                continue
            try:
                mtime = max(_mtime(path / name) for name in (*_METADATA, "lock"))
                if mtime >= cutoff:
                    continue
                ref = _read_text(path / "ref")
                _remove_ingest(path)
                if ref:
                    pruned.append(ref)
            finally:
                os.close(fd)
        try:  # a put's temp file a crash left behind (put() never resumes one)
            strays = [e for e in os.scandir(self.root / "put") if e.stat().st_mtime < cutoff]
        except FileNotFoundError:
            strays = []
        for entry in strays:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
        return pruned

    # --- internals ----------------------------------------------------------------------

    def _ingest_path(self, ref: str) -> Path:
        return self._ingest / Digest.from_bytes(ref.encode()).encoded

    def _ingest_dirs(self) -> list[Path]:
        try:
            return [self._ingest / n for n in sorted(os.listdir(self._ingest))]
        except FileNotFoundError:
            return []

    def _open_writer(
        self, path: Path, ref: str, lock_fd: int, expected: Digest | None, total: int | None
    ) -> Writer:
        stored_ref = _read_text(path / "ref")
        if stored_ref and stored_ref != ref:
            raise Conflict(f"content ingest {path.name} belongs to ref {stored_ref!r}, not {ref!r}")
        if not stored_ref:
            _write_small(path / "startedat", datetime.now(timezone.utc).isoformat())
            _write_small(path / "ref", ref)
        if total is not None:
            _write_small(path / "total", str(total))
        elif (stored := _read_text(path / "total")) != "":
            total = int(stored)
        if expected is not None:
            _write_small(path / "expected", str(expected))
        elif (stored := _read_text(path / "expected")) != "":
            expected = Digest.parse(stored)
        data_fd = os.open(path / "data", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        digester = Digester(expected.algorithm if expected is not None else SHA256)
        try:
            _hash_fd(data_fd, digester, limit=None)  # resume: re-hash what is there
        except BaseException:
            os.close(data_fd)
            raise
        return Writer(
            store=self, path=path, ref=ref, lock_fd=lock_fd, data_fd=data_fd,
            digester=digester, expected=expected, total=total,
        )  # fmt: skip

    def _status(self, path: Path) -> IngestStatus:
        ref = _read_text(path / "ref")
        if not ref:
            raise NotFound(f"content ingest {path.name}")
        try:
            st = os.stat(path / "data")
            offset, updated = st.st_size, st.st_mtime
        except FileNotFoundError:
            offset, updated = 0, _mtime(path / "ref")
        started = _read_text(path / "startedat")
        total, expected = _read_text(path / "total"), _read_text(path / "expected")
        return IngestStatus(
            ref=ref,
            offset=offset,
            total=int(total) if total else None,
            expected=Digest.parse(expected) if expected else None,
            started_at=datetime.fromisoformat(started) if started else _utc(updated),
            updated_at=_utc(updated),
        )

    def _commit_path(self, digest: Digest) -> Path:
        """``blobs/<algorithm>/``, created (and made durable) on first use."""
        directory = self._blobs / digest.algorithm
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self._blobs)
            _fsync_dir(self.root)
        return directory / digest.encoded


_WRITEBACK_STEP = 8 << 20


class Writer:
    """One open ingest. Use as a context manager: leaving it without ``commit`` keeps
    the bytes for a later resume (``abort`` on the store discards them)."""

    def __init__(
        self, *, store: ContentStore, path: Path, ref: str, lock_fd: int, data_fd: int,
        digester: Digester, expected: Digest | None, total: int | None,
    ) -> None:  # fmt: skip
        self._store, self._path, self.ref = store, path, ref
        self._lock_fd: int | None = lock_fd
        self._data_fd: int | None = data_fd
        self._digester = digester
        self.expected, self.total = expected, total
        self._written_back = digester.size  # bytes whose writeback was started

    @property
    def offset(self) -> int:
        return self._digester.size

    def digest(self) -> Digest:
        """Digest of the bytes written so far."""
        return self._digester.digest()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        fd = self._fd()
        if self.total is not None and self.offset + len(data) > self.total:
            raise InvalidArgument(
                f"content ingest {self.ref!r}: writing {len(data)} bytes at offset "
                f"{self.offset} exceeds the expected size {self.total}"
            )
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            written += os.pwrite(fd, view[written:], self.offset + written)
        self._digester.update(view)
        if self.offset - self._written_back >= _WRITEBACK_STEP:
            # commit() fsyncs: let the disk work while the rest streams in, not all then
            start_writeback(fd, self._written_back, self.offset - self._written_back)
            self._written_back = self.offset
        return written

    def truncate(self, size: int = 0) -> None:
        """Cut the ingest back to ``size`` bytes (e.g. a server that ignored Range)."""
        fd = self._fd()
        if not 0 <= size <= self.offset:
            raise InvalidArgument(f"cannot truncate ingest at {self.offset} bytes to {size}")
        os.ftruncate(fd, size)
        self._written_back = min(self._written_back, size)
        self._digester = Digester(self._digester.algorithm)
        _hash_fd(fd, self._digester, limit=size)

    def commit(self, size: int | None = None, expected: Digest | None = None) -> Info:
        """Verify and move the bytes into ``blobs/``; returns the blob's :class:`Info`.

        ``size``/``expected`` default to what the writer was opened with. On a mismatch
        the ingest is removed and :class:`FailedPrecondition` raised. If the blob is
        already there (another ref won the race) the ingest is dropped and the existing
        blob's info returned.
        """
        fd = self._fd()
        size = self.total if size is None else size
        expected = self.expected if expected is None else expected
        os.fsync(fd)
        if size is not None and self.offset != size:
            self._discard()
            raise FailedPrecondition(
                f"content ingest {self.ref!r}: unexpected commit size {self.offset}, expected {size}"
            )
        actual = self.digest()
        if expected is not None and expected.algorithm != actual.algorithm:
            rehash = Digester(expected.algorithm)
            _hash_fd(fd, rehash, limit=None)
            actual = rehash.digest()
        if expected is not None and actual != expected:
            self._discard()
            raise FailedPrecondition(
                f"content ingest {self.ref!r}: unexpected commit digest {actual}, expected {expected}"
            )
        target = self._store._commit_path(actual)
        if not target.exists():
            os.fchmod(fd, 0o444)
            os.rename(self._path / "data", target)
            _fsync_dir(target.parent)
        self._discard()
        return self._store.info(actual)

    def close(self) -> None:
        """Release the ref, keeping the ingest for a later resume. Idempotent."""
        for attr in ("_data_fd", "_lock_fd"):
            fd = getattr(self, attr, None)
            if fd is not None:
                setattr(self, attr, None)
                os.close(fd)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _fd(self) -> int:
        if self._data_fd is None:
            raise FailedPrecondition(f"content writer for {self.ref!r} is closed")
        return self._data_fd

    def _discard(self) -> None:
        try:
            _remove_ingest(self._path)
        finally:
            self.close()


# --- file helpers (private to the store) --------------------------------------------------


def _lock(path: Path, ref: str, *, create: bool = True) -> int:
    """Take ``path/lock`` exclusively (creating ``path`` if ``create``); return the fd.

    A remover unlinks ``lock`` last, while holding it, so a lock taken on an inode that
    is no longer at ``path/lock`` is stale: retry on the new one.
    """
    lock_path = path / "lock"
    name = ref or path.name
    for _ in range(100):
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise NotFound(f"content ingest {name!r}")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # the directory was removed between mkdir and open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Unavailable(
                f"content ingest ref {name!r} locked: in use by another writer"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise Unavailable(f"content ingest ref {ref!r}: could not take the lock")


def _remove_ingest(path: Path) -> None:
    for name in _METADATA:
        _unlink(path / name)
    for name in os.listdir(path):  # anything a newer version left, except the lock
        if name != "lock":
            _unlink(path / name)
    _unlink(path / "lock")
    try:
        os.rmdir(path)
    except OSError as exc:
        # ENOTEMPTY: a new writer of the same ref already started afresh; fine.
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY):
            raise


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _hash_fd(fd: int, digester: Digester, *, limit: int | None) -> None:
    """Feed the file's bytes from offset 0 (up to ``limit``) into ``digester``."""
    offset = 0
    while limit is None or offset < limit:
        want = _CHUNK if limit is None else min(_CHUNK, limit - offset)
        chunk = os.pread(fd, want, offset)
        if not chunk:
            break
        digester.update(chunk)
        offset += len(chunk)


def _write_small(path: Path, text: str) -> None:
    """Durable small write: temp file in the same directory, fsync, os.replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _info(digest: Digest, st: os.stat_result) -> Info:
    return Info(digest=digest, size=st.st_size, created_at=_utc(st.st_mtime),
                updated_at=_utc(st.st_mtime))  # fmt: skip
