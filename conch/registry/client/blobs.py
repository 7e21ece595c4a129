"""Blobs: download into the content store (verified, resumable), and upload.

Download (:func:`fetch_blob`): the body streams into a content-store ingest, which
hashes as it writes; the commit checks size and digest and only then renames the blob
into place. A dropped connection or a stall is retried (5 attempts, backoff) and the
retry resumes with ``Range: bytes=<offset>-``; a server that ignores the Range (200
instead of 206) or answers another range has the ingest cut back and restarted. More
bytes than the descriptor's size, or a digest mismatch, fail at once with a clear
:class:`BlobError` and the ingest is removed: nothing half-verified stays behind.

Upload (distribution spec "Pushing blobs"): :func:`blob_exists` (HEAD), :func:`mount_blob`
(``POST …/blobs/uploads/?mount=<digest>&from=<repo>``: 201 means mounted, 202 starts an
ordinary upload), :func:`upload_blob`: blobs up to ``MONOLITHIC_MAX`` in one ``PUT`` of
the session URL with ``?digest=``, larger ones as ``PATCH`` chunks with
``Content-Range`` then a closing ``PUT`` (:class:`ChunkedUpload`, which also serves a blob
sent while it is being made). Each response's ``Location`` is the next URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import BinaryIO, Callable

import aiohttp
from yarl import URL

from conch.content import Store
from conch.errors import AlreadyExists, ConchError, FailedPrecondition, InvalidArgument, NotFound
from conch.errors import Unavailable
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.registry.client.auth import scope
from conch.registry.client.transport import RegistryHost, raise_for

log = logging.getLogger(__name__)

ATTEMPTS = 5
_CHUNK = 1 << 20
MONOLITHIC_MAX = 8 << 20
UPLOAD_CHUNK = 32 << 20

Progress = Callable[[int], None]  # bytes done so far


class BlobError(FailedPrecondition):
    """A blob failed verification (size or digest)."""


async def fetch_blob(host: RegistryHost, repo: str, desc: Descriptor, store: Store,
                     progress: Progress | None = None) -> None:
    """Make ``desc`` present in ``store``, downloading it from ``repo`` if needed."""
    ref = f"fetch-{desc.digest}"
    writer = await _open_writer(store, ref, desc)
    if writer is None:
        return  # already there (maybe another pull committed it meanwhile)
    try:
        with writer:
            await _download(host, repo, desc, writer, progress)
            try:  # fsyncs the blob: in a thread, not on the daemon's event loop
                await asyncio.to_thread(writer.commit, desc.size, desc.digest)
            except FailedPrecondition as exc:
                raise BlobError(f"failed to verify blob {desc.digest} from {host.domain}/"
                                f"{repo}: {_reason(exc)}") from exc
    except BaseException:
        with contextlib.suppress(NotFound, Unavailable):
            store.abort(ref)
        raise


async def _open_writer(store: Store, ref: str, desc: Descriptor):
    """The ingest writer, or None when the blob exists; waits while another pull of
    the same blob holds the ingest."""
    deadline = time.monotonic() + 600
    while True:
        try:
            return store.writer(ref, expected=desc.digest, total=desc.size)
        except AlreadyExists:
            return None
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # a concurrent pull is fetching it: wait for it


async def _download(host: RegistryHost, repo: str, desc: Descriptor, writer,
                    progress: Progress | None) -> None:
    what = f"blob {desc.digest}"
    for attempt in range(ATTEMPTS):
        if writer.offset == desc.size:
            return
        try:
            await _attempt(host, repo, desc, writer, progress, what)
            return
        except (Unavailable, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                asyncio.TimeoutError) as exc:
            if attempt == ATTEMPTS - 1:
                raise Unavailable(f"downloading {what} from {host.domain}/{repo} failed after "
                                  f"{ATTEMPTS} attempts: {exc}") from exc
            log.info("%s: %s; retrying from byte %d", what, exc, writer.offset)
            await asyncio.sleep(0.2 * 2 ** attempt)


async def _attempt(host: RegistryHost, repo: str, desc: Descriptor, writer,
                   progress: Progress | None, what: str) -> None:
    offset = writer.offset
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    resp = await host.request("GET", f"{repo}/blobs/{desc.digest}", scopes=(scope(repo),),
                              headers=headers, what=what)
    try:
        await raise_for(resp, what, ok=(200, 206))
        if offset and not _range_starts_at(resp, offset):
            writer.truncate(0)  # the server sent the whole blob (or another range)
            if resp.status == 206:
                raise Unavailable(f"{what}: server answered an unexpected range")
        if resp.content_length is not None and writer.offset + resp.content_length > desc.size:
            raise BlobError(f"failed to verify {what}: registry sends "
                            f"{writer.offset + resp.content_length} bytes, expected {desc.size}")
        last = 0.0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            if writer.offset + len(chunk) > desc.size:
                raise BlobError(f"failed to verify {what}: more than the expected "
                                f"{desc.size} bytes")
            writer.write(chunk)
            now = time.monotonic()
            if progress is not None and now - last > 0.1:
                progress(writer.offset)
                last = now
    except asyncio.TimeoutError as exc:
        raise Unavailable(f"{what}: no data for {host.registries.timeouts.read:g}s") from exc
    finally:
        resp.release()
    if progress is not None:
        progress(writer.offset)
    if writer.offset < desc.size:
        raise Unavailable(f"{what}: connection ended at byte {writer.offset} of {desc.size}")


def _range_starts_at(resp: aiohttp.ClientResponse, offset: int) -> bool:
    if resp.status != 206:
        return False
    value = resp.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0]) == offset
    except (IndexError, ValueError):
        return False


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "digest" in text:
        return "digest mismatch: " + text.split("unexpected commit digest ", 1)[-1]
    if "size" in text:
        return "size mismatch: " + text.split("unexpected commit size ", 1)[-1]
    return text


# --- upload ---------------------------------------------------------------------------


def _push_scopes(repo: str, from_repo: str = "") -> tuple[str, ...]:
    s = (scope(repo, ("pull", "push")),)
    return s + ((scope(from_repo, ("pull",)),) if from_repo else ())


async def blob_exists(host: RegistryHost, repo: str, desc: Descriptor) -> bool:
    resp = await host.request("HEAD", f"{repo}/blobs/{desc.digest}", scopes=_push_scopes(repo),
                              what=f"blob {desc.digest}")
    resp.release()
    if resp.status == 200:
        return True
    if resp.status == 404:
        return False
    await raise_for(resp, f"checking blob {desc.digest}")
    return False


async def start_upload(host: RegistryHost, repo: str, desc: Descriptor,
                       from_repo: str = "") -> URL | None:
    """A new upload session's URL, or None when ``from_repo`` mounted the blob."""
    params = {"mount": str(desc.digest), "from": from_repo} if from_repo else None
    resp = await host.request("POST", f"{repo}/blobs/uploads/", params=params,
                              scopes=_push_scopes(repo, from_repo), data=b"",
                              what=f"upload of {desc.digest}")
    try:
        if from_repo and resp.status == 201:
            return None
        await raise_for(resp, f"starting upload of {desc.digest}", ok=(202,))
        return _location(resp)
    finally:
        resp.release()


async def upload_blob(host: RegistryHost, repo: str, desc: Descriptor, url: URL, blob: BinaryIO,
                      progress: Progress | None = None) -> None:
    """Send ``blob`` (``desc.size`` bytes) to the upload session ``url``."""
    what = f"upload of {desc.digest}"
    scopes = _push_scopes(repo)
    if desc.size <= MONOLITHIC_MAX:
        data = await asyncio.to_thread(blob.read, desc.size + 1)
        _check_length(data, desc)
        resp = await host.request("PUT", "", url=url.update_query(digest=str(desc.digest)),
                                  headers={"Content-Type": "application/octet-stream"},
                                  data=data, scopes=scopes, what=what)
        await _finish(resp, what, progress, desc.size)
        return
    upload = ChunkedUpload(host, repo, url, what)
    while upload.offset < desc.size:
        data = await asyncio.to_thread(blob.read, UPLOAD_CHUNK)
        if not data:
            raise InvalidArgument(f"{what}: local blob ended at byte {upload.offset} of {desc.size}")
        await upload.send(data)
        if progress is not None:
            progress(upload.offset)
    await upload.finish(desc.digest)
    if progress is not None:
        progress(desc.size)


class ChunkedUpload:
    """An upload session fed piece by piece (``PATCH`` with ``Content-Range``, each
    answer's ``Location`` the next URL) and closed by ``PUT ?digest=``: the digest is
    needed only at the end, so a blob can be sent while it is being made."""

    def __init__(self, host: RegistryHost, repo: str, url: URL, what: str) -> None:
        self.host, self.url, self.what = host, url, what
        self.scopes = _push_scopes(repo)
        self.offset = 0

    async def send(self, data: bytes) -> None:
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{self.offset}-{self.offset + len(data) - 1}"}
        resp = await self.host.request("PATCH", "", url=self.url, headers=headers, data=data,
                                       scopes=self.scopes, what=self.what)
        try:
            await raise_for(resp, self.what, ok=(202,))
            self.url = _location(resp)
        finally:
            resp.release()
        self.offset += len(data)

    async def finish(self, digest: Digest) -> None:
        resp = await self.host.request("PUT", "", url=self.url.update_query(digest=str(digest)),
                                       data=b"", scopes=self.scopes, what=self.what)
        await _finish(resp, self.what, None, self.offset)


async def _finish(resp, what: str, progress: Progress | None, size: int) -> None:
    try:
        await raise_for(resp, what, ok=(201, 204))
    finally:
        resp.release()
    if progress is not None:
        progress(size)


def _check_length(data: bytes, desc: Descriptor) -> None:
    if len(data) != desc.size:
        raise ConchError(f"local blob {desc.digest} has {len(data)} bytes, expected {desc.size}")


def _location(resp: aiohttp.ClientResponse) -> URL:
    loc = resp.headers.get("Location")
    if not loc:
        raise ConchError("registry did not send the upload Location")
    return resp.url.join(URL(loc, encoded=True))


async def put_manifest(host: RegistryHost, repo: str, reference: str, media_type: str,
                       data: bytes) -> None:
    what = f"manifest {host.domain}/{repo}:{reference}"
    resp = await host.request("PUT", f"{repo}/manifests/{reference}", data=data,
                              headers={"Content-Type": media_type}, scopes=_push_scopes(repo),
                              what=what)
    try:
        await raise_for(resp, f"pushing {what}", ok=(200, 201, 202))
    finally:
        resp.release()


async def fetch_small(host: RegistryHost, repo: str, desc: Descriptor, limit: int = 4 << 20) -> bytes:
    """A small blob (a config) into memory, verified; for looking, not for keeping."""
    what = f"blob {desc.digest}"
    if desc.size > limit:
        raise BlobError(f"{what}: {desc.size} bytes is too large to read into memory")
    resp = await host.request("GET", f"{repo}/blobs/{desc.digest}", scopes=(scope(repo),), what=what)
    try:
        await raise_for(resp, what)
        data = await resp.content.read(desc.size + 1)
    finally:
        resp.release()
    if len(data) != desc.size or Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
        raise BlobError(f"failed to verify {what} from {host.domain}/{repo}")
    return data
