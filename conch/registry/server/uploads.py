"""Blob upload sessions: ``uploads/<uuid>/{data,repo,startedat}``.

Contract (distribution-spec "Pushing blobs"):

- ``create(name)`` starts a session owned by repository ``name``.
- ``append(name, id, chunks, start)`` streams bytes onto ``data``; ``start`` (from
  Content-Range) must equal the current size, else 416. A chunk that fails half-way is
  truncated off again, so the session stays at its last good offset.
- ``finalise(name, id, digest)`` verifies the sha256/sha512 of all the data against
  ``digest``; on mismatch the session is dropped and nothing is stored (DIGEST_INVALID);
  otherwise the data is fsynced, renamed into ``blobs/`` (or dropped if the blob is
  already there) and linked into ``name``.

Hashing happens while the bytes stream in: the server keeps one running hash per session
in memory, valid while its offset equals the file size. After a restart (or any doubt)
finalise re-hashes the file instead, in a thread. Blob bytes are never held in memory
beyond one chunk.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AsyncIterator

from conch.oci.digest import Digest

from .errors import RegistryError
from .storage import Storage

_HASH_CHUNK = 4 << 20
_DEPTH = 4  # chunks queued to the writer thread at most


class Uploads:
    def __init__(self, storage: Storage):
        self.storage = storage
        self.base = storage.root / "uploads"
        # session id -> (running sha256, offset it has hashed up to)
        self._hashes: dict[str, tuple[object, int]] = {}
        self._busy: set[str] = set()  # sessions a request is appending to right now

    def _dir(self, name: str, session: str) -> Path:
        """The session's directory, checking it exists and belongs to ``name``."""
        try:
            uuid.UUID(session)
        except ValueError:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": session[:100]}) from None
        path = self.base / session
        try:
            owner = (path / "repo").read_text()
        except FileNotFoundError:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": session}) from None
        if owner != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": session})
        return path

    def create(self, name: str) -> str:
        session = str(uuid.uuid4())
        path = self.base / session
        path.mkdir()
        (path / "data").touch()
        (path / "startedat").write_text(str(time.time()))
        # "repo" last: a session is only visible once it is complete.
        (path / "repo").write_text(name)
        self._hashes[session] = (hashlib.sha256(), 0)
        return session

    def size(self, name: str, session: str) -> int:
        return (self._dir(name, session) / "data").stat().st_size

    async def append(self, name: str, session: str, chunks: AsyncIterator[bytes],
                     start: int | None = None, length: int | None = None) -> int:
        """Stream ``chunks`` onto the session; returns the new size."""
        data = self._dir(name, session) / "data"
        fd = os.open(data, os.O_WRONLY | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if start is not None and start != size:
                raise RegistryError("BLOB_UPLOAD_INVALID",
                                    f"chunk starts at {start}, upload is at {size}",
                                    status=416, headers={"Range": f"0-{max(size - 1, 0)}"})
            running, offset = self._hashes.get(session, (None, -1))
            if offset != size:
                running = None  # hash again at finalise
            if session in self._busy:
                raise RegistryError("BLOB_UPLOAD_INVALID", "another request is writing this upload")
            self._busy.add(session)
            try:
                written, failed = await _stream_to(fd, chunks, running)
            finally:
                self._busy.discard(session)
            if failed is not None:
                os.ftruncate(fd, size)  # back to the last good offset
                self._hashes.pop(session, None)
                raise failed
            if length is not None and written != length:
                os.ftruncate(fd, size)
                self._hashes.pop(session, None)
                raise RegistryError("SIZE_INVALID", detail=f"got {written} bytes, expected {length}")
            if running is not None:
                self._hashes[session] = (running, size + written)
            return size + written
        finally:
            os.close(fd)

    async def finalise(self, name: str, session: str, digest: Digest) -> int:
        """Verify and commit the session as ``digest``; returns the blob's size."""
        path = self._dir(name, session)
        data = path / "data"
        size = data.stat().st_size
        running, offset = self._hashes.pop(session, (None, -1))
        if digest.algorithm != "sha256" or running is None or offset != size:
            got = await asyncio.to_thread(_hash_file, data, digest.algorithm)
        else:
            got = running.hexdigest()
        if got != digest.encoded:
            self.cancel(name, session)
            raise RegistryError("DIGEST_INVALID",
                                detail={"expected": str(digest), "actual": f"{digest.algorithm}:{got}"})
        await asyncio.to_thread(self._commit, name, path, digest)
        return size

    def _commit(self, name: str, path: Path, digest: Digest) -> None:
        data = path / "data"
        fd = os.open(data, os.O_RDONLY)
        try:
            os.fsync(fd)  # before the rename: a crash must never leave a short blob
        finally:
            os.close(fd)
        self.storage.commit_blob(name, data, digest)
        shutil.rmtree(path, ignore_errors=True)

    def cancel(self, name: str, session: str) -> None:
        path = self._dir(name, session)
        self._hashes.pop(session, None)
        # "repo" first, so a half-removed session is already unknown.
        (path / "repo").unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)


async def _stream_to(fd: int, chunks: AsyncIterator[bytes], running) -> tuple[int, BaseException | None]:
    """Write (and hash) ``chunks`` onto ``fd`` in order; returns (bytes, failure or None).

    The writing and hashing happen on one worker thread while the event loop reads the
    next chunks off the socket: both os.write and hashlib release the GIL, so on two
    cores they overlap with the HTTP parsing instead of adding to it. At most
    ``_DEPTH`` chunks are in flight. On failure every queued write has finished before
    this returns, so the caller may truncate safely.
    """
    loop = asyncio.get_running_loop()
    pending: collections.deque = collections.deque()
    written, failed = 0, None
    with ThreadPoolExecutor(1, thread_name_prefix="upload") as pool:
        try:
            async for chunk in chunks:
                fut = loop.run_in_executor(pool, _sink, fd, chunk, running)
                # after a failure the rest are never awaited: mark their errors as seen
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
                pending.append(fut)
                written += len(chunk)
                if len(pending) >= _DEPTH:
                    await pending.popleft()
            while pending:
                await pending.popleft()
        except BaseException as exc:  # incl. CancelledError: the client went away
            failed = exc
    return written, failed


def _sink(fd: int, chunk: bytes, running) -> None:
    _write_all(fd, chunk)
    if running is not None:
        running.update(chunk)


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _hash_file(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(_HASH_CHUNK):
            h.update(block)
    return h.hexdigest()
