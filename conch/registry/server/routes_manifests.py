"""Manifest, tag and referrers endpoints.

distribution-spec "Pulling manifests", "Pushing manifests" (with ``subject`` and the
``OCI-Subject`` response header), "Content discovery" (tags/list, referrers) and
"Deleting manifests / tags". Manifests are stored byte for byte; their Content-Type on
pull is the media type they were pushed with.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from conch.oci import mediatype as mt
from conch.oci.digest import Digest

from . import manifests
from .errors import RegistryError
from .names import paginate, parse_digest, parse_page, parse_reference


async def _read_limited(request: web.Request, limit: int) -> bytes:
    declared = request.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RegistryError("SIZE_INVALID", f"manifest larger than {limit} bytes", status=413)
    parts, total = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > limit:
            raise RegistryError("SIZE_INVALID", f"manifest larger than {limit} bytes", status=413)
        parts.append(chunk)
    return b"".join(parts)


async def get_manifest(reg, request: web.Request, name: str, reference: str) -> web.Response:
    digest, tag = parse_reference(reference)
    digest, media_type = reg.storage.resolve(name, digest, tag)
    path = reg.storage.blob_path(digest)
    headers = {"Docker-Content-Digest": str(digest), "Content-Type": media_type,
               "ETag": f'"{digest}"'}
    if request.method == "HEAD":
        headers["Content-Length"] = str(path.stat().st_size)
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=path.read_bytes(), headers=headers)


async def put_manifest(reg, request: web.Request, name: str, reference: str) -> web.Response:
    ref_digest, tag = parse_reference(reference)
    body = await _read_limited(request, manifests.MAX_MANIFEST_BYTES)
    parsed = manifests.parse(body, request.headers.get("Content-Type", ""))
    algorithm = ref_digest.algorithm if ref_digest else "sha256"
    digest = Digest.from_bytes(body, algorithm)
    if ref_digest is not None and digest != ref_digest:
        raise RegistryError("DIGEST_INVALID",
                            detail={"expected": str(ref_digest), "actual": str(digest)})
    layer_refs, manifest_refs = [], []
    for ref in parsed.references:
        if ref.foreign:
            continue
        d = parse_digest(ref.digest)
        if ref.is_manifest:
            manifest_refs.append(d)
        else:
            layer_refs.append((d, ref.size))
    subject = None
    if parsed.subject is not None:
        desc = {"mediaType": parsed.media_type, "digest": str(digest), "size": len(body)}
        if parsed.artifact_type:
            desc["artifactType"] = parsed.artifact_type
        if parsed.annotations:
            desc["annotations"] = parsed.annotations
        subject = (parse_digest(parsed.subject), desc)
    # fsyncs and the gc lock: off the event loop.
    await asyncio.to_thread(reg.storage.put_manifest, name, digest, body, parsed.media_type,
                            tag, layer_refs, manifest_refs, subject)
    headers = {"Location": f"/v2/{name}/manifests/{digest}",
               "Docker-Content-Digest": str(digest), "Content-Length": "0"}
    if parsed.subject is not None:
        headers["OCI-Subject"] = parsed.subject
    return web.Response(status=201, headers=headers)


async def delete_manifest(reg, request: web.Request, name: str, reference: str) -> web.Response:
    digest, tag = parse_reference(reference)
    if tag is not None:
        reg.storage.delete_tag(name, tag)
    else:
        reg.storage.delete_manifest(name, digest)
    return web.Response(status=202, headers={"Content-Length": "0"})


async def list_tags(reg, request: web.Request, name: str) -> web.Response:
    if not reg.storage.repo_exists(name):
        raise RegistryError("NAME_UNKNOWN", detail={"name": name})
    n, last = parse_page(request.query)
    tags, more = paginate(reg.storage.tags(name), n, last)
    headers = {}
    if more:
        headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
    return web.json_response({"name": name, "tags": tags}, headers=headers)


async def list_referrers(reg, request: web.Request, name: str, digest: str) -> web.Response:
    subject = parse_digest(digest)
    entries = reg.storage.referrers(name, subject)
    headers = {}
    wanted = request.query.get("artifactType")
    if wanted is not None:
        entries = [e for e in entries if e.get("artifactType") == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    return web.Response(status=200, body=json.dumps(index).encode(),
                        content_type=mt.OCI_INDEX, headers=headers)
