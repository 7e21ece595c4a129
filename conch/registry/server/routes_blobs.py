"""Blob endpoints: pull (GET/HEAD with Range), delete, and the upload protocol.

distribution-spec "Pulling blobs", "Pushing blobs" (monolithic POST/PUT, chunked PATCH
with Content-Range, cross-repo mount) and "Deleting blobs". Each handler takes the
:class:`~.app.Registry` context, the request and the path's named groups, and returns a
response or raises :class:`RegistryError`.
"""

from __future__ import annotations

from aiohttp import web

from .errors import RegistryError
from .names import parse_content_range, parse_digest, upload_range, validate_name

OCTET = "application/octet-stream"
_READ_CHUNK = 1 << 20


def _body_chunks(request: web.Request):
    return request.content.iter_chunked(_READ_CHUNK)


def _content_length(request: web.Request) -> int | None:
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit():
        raise RegistryError("SIZE_INVALID", f"bad Content-Length {value[:30]!r}")
    return int(value)


def _upload_headers(name: str, session: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{session}",
        "Range": upload_range(size),
        "Docker-Upload-UUID": session,
        "Content-Length": "0",
    }


def _blob_created(name: str, digest) -> web.Response:
    return web.Response(status=201, headers={
        "Location": f"/v2/{name}/blobs/{digest}",
        "Docker-Content-Digest": str(digest),
        "Content-Length": "0",
    })


async def get_blob(reg, request: web.Request, name: str, digest: str) -> web.StreamResponse:
    d = parse_digest(digest)
    path = reg.storage.readable_blob(name, d)
    if path is None:
        raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
    # A client that finds the blob present may skip uploading it and reference it in a
    # manifest later: refresh the gc grace clock (see gc.py).
    reg.storage.touch_blob(d)
    headers = {"Docker-Content-Digest": str(d), "Content-Type": OCTET,
               "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        # aiohttp keeps an explicit Content-Length on a bodiless HEAD response.
        headers["Content-Length"] = str(path.stat().st_size)
        return web.Response(status=200, headers=headers)
    # FileResponse streams with sendfile(2) and answers Range / If-Range with 206 / 416.
    return web.FileResponse(path, chunk_size=_READ_CHUNK, headers=headers)


async def delete_blob(reg, request: web.Request, name: str, digest: str) -> web.Response:
    reg.storage.unlink_blob(name, parse_digest(digest))
    return web.Response(status=202, headers={"Content-Length": "0"})


async def start_upload(reg, request: web.Request, name: str) -> web.Response:
    """POST: a mount (``?mount=&from=``), a monolithic upload (``?digest=``) or a session."""
    mount, source = request.query.get("mount"), request.query.get("from")
    if mount is not None:
        d = parse_digest(mount)
        if source and reg.may_pull(request, source) and _mountable(reg, source, d):
            reg.storage.link_blob(name, d)
            return _blob_created(name, d)
        # Not mountable (unknown, or not readable by this caller): fall back to an
        # ordinary upload session, as the spec allows.
    session = reg.uploads.create(name)
    digest = request.query.get("digest")
    if digest is not None and mount is None:
        d = parse_digest(digest)
        try:
            await reg.uploads.append(name, session, _body_chunks(request),
                                     length=_content_length(request))
            await reg.uploads.finalise(name, session, d)
        except BaseException:
            _cancel_quietly(reg, name, session)
            raise
        return _blob_created(name, d)
    return web.Response(status=202, headers=_upload_headers(name, session, 0))


def _mountable(reg, source: str, d) -> bool:
    try:
        validate_name(source)
    except RegistryError:
        return False
    return reg.storage.readable_blob(source, d) is not None


def _cancel_quietly(reg, name: str, session: str) -> None:
    try:
        reg.uploads.cancel(name, session)
    except RegistryError:
        pass


async def patch_upload(reg, request: web.Request, name: str, session: str) -> web.Response:
    start = length = None
    if "Content-Range" in request.headers:
        start, end = parse_content_range(request.headers["Content-Range"])
        length = end - start + 1
        declared = _content_length(request)
        if declared is not None and declared != length:
            raise RegistryError("SIZE_INVALID",
                                detail=f"Content-Length {declared} != range length {length}")
    size = await reg.uploads.append(name, session, _body_chunks(request), start=start,
                                    length=length)
    return web.Response(status=202, headers=_upload_headers(name, session, size))


async def upload_status(reg, request: web.Request, name: str, session: str) -> web.Response:
    size = reg.uploads.size(name, session)
    return web.Response(status=204, headers=_upload_headers(name, session, size))


async def finish_upload(reg, request: web.Request, name: str, session: str) -> web.Response:
    """PUT ``?digest=``: an optional last chunk, then verify and commit."""
    digest = request.query.get("digest")
    if digest is None:
        raise RegistryError("DIGEST_INVALID", "digest query parameter is required")
    d = parse_digest(digest)
    reg.uploads.size(name, session)  # 404 BLOB_UPLOAD_UNKNOWN before reading a body
    length = _content_length(request)
    if length or (length is None and request.can_read_body):
        start = None
        if "Content-Range" in request.headers:
            start, _ = parse_content_range(request.headers["Content-Range"])
        await reg.uploads.append(name, session, _body_chunks(request), start=start,
                                 length=length)
    await reg.uploads.finalise(name, session, d)
    return _blob_created(name, d)


async def cancel_upload(reg, request: web.Request, name: str, session: str) -> web.Response:
    reg.uploads.cancel(name, session)
    return web.Response(status=204, headers={"Content-Length": "0"})
