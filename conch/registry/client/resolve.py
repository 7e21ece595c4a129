"""Resolve a reference to verified manifest bytes, and pick a platform from an index.

Contract: :func:`fetch_manifest` GETs ``/v2/<repo>/manifests/<tag|digest>`` asking for
every manifest type we read (OCI index and manifest, Docker manifest list and schema 2),
refuses bodies over 4 MiB (containerd's limit), and verifies the bytes: against the
digest asked for, against an expected descriptor's digest and size, and against the
``Docker-Content-Digest`` header when the registry sends one. :func:`resolve_image`
follows an index to the manifest for a platform (:func:`select_manifest`) and returns
both; nothing is written anywhere.

Platform selection is containerd's (``conch.oci.platform.only``): the host's platform
and what it can run, best first; ``--platform`` replaces the host's. OCI 1.1 artifacts
in an index (``artifactType`` set, or a config that is not an image config) are never
selected. No match is docker's error: ``no matching manifest for linux/arm64/v8 in the
manifest list entries``.
"""

from __future__ import annotations

from dataclasses import dataclass

from conch.errors import ConchError, FailedPrecondition, NotFound
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import ImageIndex, ImageManifest, parse_manifest
from conch.oci.platform import Platform, host_platform, only
from conch.oci.reference import Reference
from conch.registry.client.auth import scope
from conch.registry.client.transport import RegistryHost, raise_for, registry_error

MAX_MANIFEST = 4 << 20
ACCEPT = ", ".join((mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST))


class ManifestError(FailedPrecondition):
    """The registry served a manifest that is not what was asked for."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    target: Descriptor  # what the tag/digest names (an index or a manifest)
    manifest_desc: Descriptor  # the platform's manifest (== target for a plain manifest)
    manifest_bytes: bytes
    manifest: ImageManifest
    index: ImageIndex | None
    index_bytes: bytes | None


def select_manifest(index: ImageIndex, platform: Platform | None) -> Descriptor:
    """The index entry for ``platform`` (the host's when None), docker's error if none."""
    return candidates(index, platform)[0]


def candidates(index: ImageIndex, platform: Platform | None) -> list[Descriptor]:
    """The index's image manifests for ``platform``, best first (docker's error if none).

    OCI 1.1 indexes also list artifacts (signatures, SBOMs, attestations): entries with
    an ``artifactType`` are not images, and are skipped here; an artifact that hides as
    a plain manifest entry is skipped by :func:`resolve_image` once its config is seen.
    """
    wanted = platform or host_platform()
    found = [d for d in index.select(only(wanted))
             if mt.is_manifest(d.media_type) and not d.artifact_type]
    if not found:
        raise NotFound(f"no matching manifest for {wanted} in the manifest list entries")
    return found


def is_image(manifest: ImageManifest) -> bool:
    """An image (runnable layers + an image config), not an OCI 1.1 artifact."""
    return not manifest.artifact_type and mt.is_config(manifest.config.media_type)


def platforms_of(index: ImageIndex) -> list[Platform]:
    """The platforms an index offers (attestation entries ``unknown/unknown`` left out)."""
    return [d.platform for d in index.manifests
            if d.platform is not None and d.platform.os != "unknown"]


async def fetch_manifest(host: RegistryHost, repo: str, reference: str,
                         expected: Descriptor | None = None) -> tuple[Descriptor, bytes]:
    """The manifest/index ``reference`` (a tag or ``sha256:…``) names, verified."""
    what = f"manifest for {host.domain}/{repo}:{reference}" if ":" not in reference \
        else f"manifest {host.domain}/{repo}@{reference}"
    resp = await host.request("GET", f"{repo}/manifests/{reference}", scopes=(scope(repo),),
                              headers={"Accept": ACCEPT}, what=what)
    try:
        if resp.status == 404:
            body = await resp.read()
            raise NotFound(f"{what} not found: {registry_error(body, 404)}")
        await raise_for(resp, what)
        length = resp.content_length
        if length is not None and length > MAX_MANIFEST:
            raise ManifestError(f"{what}: {length} bytes is larger than {MAX_MANIFEST}")
        data = await _read_limited(resp, MAX_MANIFEST, what)
        content_type = resp.headers.get("Content-Type", "")
        header_digest = resp.headers.get("Docker-Content-Digest", "")
    finally:
        resp.release()
    digest = _verify(data, reference, expected, header_digest, what)
    parsed = parse_manifest(data, content_type)
    media_type = _media_type(parsed, content_type, data)
    if expected is not None and expected.media_type and expected.media_type != media_type \
            and {expected.media_type, media_type} - (mt.MANIFEST_TYPES | mt.INDEX_TYPES):
        raise ManifestError(f"{what}: media type {media_type}, expected {expected.media_type}")
    return Descriptor(media_type=media_type, digest=digest, size=len(data)), data


def _verify(data: bytes, reference: str, expected: Descriptor | None, header: str,
            what: str) -> Digest:
    if expected is not None:
        if len(data) != expected.size:
            raise ManifestError(f"{what}: size {len(data)} does not match the descriptor's "
                                f"{expected.size}")
        want = expected.digest
    elif ":" in reference:
        want = Digest.parse(reference)
    else:
        want = None
    if want is not None:
        actual = Digest.from_bytes(data, want.algorithm)
        if actual != want:
            raise ManifestError(f"{what}: digest mismatch: got {actual}, expected {want}")
        return actual
    actual = Digest.from_bytes(data)
    if header:
        try:
            claimed = Digest.parse(header)
        except ConchError:
            claimed = None
        if claimed is not None and Digest.from_bytes(data, claimed.algorithm) != claimed:
            raise ManifestError(f"{what}: body does not match Docker-Content-Digest {header}")
    return actual


def _media_type(parsed: ImageManifest | ImageIndex, content_type: str, data: bytes) -> str:
    if parsed.media_type:
        return parsed.media_type
    hint = content_type.partition(";")[0].strip()
    if hint in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
        return hint
    return mt.OCI_INDEX if isinstance(parsed, ImageIndex) else mt.OCI_MANIFEST


async def _read_limited(resp, limit: int, what: str) -> bytes:
    chunks, total = [], 0
    async for chunk in resp.content.iter_any():
        total += len(chunk)
        if total > limit:
            raise ManifestError(f"{what}: larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def resolve_image(host: RegistryHost, ref: Reference,
                        platform: Platform | None = None) -> Resolved:
    """Tag or digest -> the manifest for ``platform`` (the host's when None)."""
    reference = str(ref.digest) if ref.digest is not None else ref.tag or "latest"
    target, data = await fetch_manifest(host, ref.path, reference)
    if not mt.is_index(target.media_type):
        manifest = ImageManifest.from_bytes(data)
        if not is_image(manifest):
            raise ManifestError(
                f"{ref.familiar()} is not an image: an artifact of type "
                f"{manifest.artifact_type or manifest.config.media_type}")
        return Resolved(target=target, manifest_desc=target, manifest_bytes=data,
                        manifest=manifest, index=None, index_bytes=None)
    index = ImageIndex.from_bytes(data)
    for child in candidates(index, platform):
        desc, mbytes = await fetch_manifest(host, ref.path, str(child.digest), expected=child)
        if not mt.is_manifest(desc.media_type):
            raise ManifestError(f"index entry {child.digest} is not an image manifest")
        manifest = ImageManifest.from_bytes(mbytes)
        if not is_image(manifest):
            continue  # an artifact listed without artifactType: the next candidate
        desc = Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size,
                          platform=child.platform)
        return Resolved(target=target, manifest_desc=desc, manifest_bytes=mbytes,
                        manifest=manifest, index=index, index_bytes=data)
    raise NotFound(f"no matching manifest for {platform or host_platform()} in the "
                   "manifest list entries")


async def list_tags(host: RegistryHost, repo: str) -> list[str]:
    """``GET /v2/<repo>/tags/list`` (following ``Link: <…>; rel="next"`` pages)."""
    from yarl import URL

    tags: list[str] = []
    url = None
    for _ in range(1000):
        resp = await host.request("GET", f"{repo}/tags/list", url=url, scopes=(scope(repo),),
                                  what=f"tags of {host.domain}/{repo}")
        try:
            await raise_for(resp, f"listing tags of {host.domain}/{repo}")
            doc = await resp.json(content_type=None)
            link = resp.headers.get("Link", "")
        finally:
            resp.release()
        tags += [t for t in (doc.get("tags") or []) if isinstance(t, str)]
        if 'rel="next"' not in link:
            break
        url = host.base.join(URL(link.split(";")[0].strip("<> "), encoded=True))
    return tags
