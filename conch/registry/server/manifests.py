"""What the registry needs to know about a pushed manifest: its references and subject.

Pure: bytes in, a :class:`ParsedManifest` out, or MANIFEST_INVALID/UNSUPPORTED. The
manifest itself is stored byte for byte as pushed (its digest is of those bytes); this
only reads it to check that everything it points at exists (distribution-spec "Pushing
Manifests") and to index its ``subject`` for the referrers API.

Accepted media types: OCI image manifest and index, Docker v2 schema 2 manifest and
manifest list. Schema 1 is refused with UNSUPPORTED.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from conch.oci import mediatype as mt

from .errors import RegistryError
from .names import parse_digest

ACCEPTED = frozenset({mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST})
# Default cap on a manifest body, as docker/distribution (4 MiB).
MAX_MANIFEST_BYTES = 4 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A descriptor inside a manifest: a blob (config/layer) or a child manifest."""

    digest: str
    size: int
    media_type: str
    is_manifest: bool
    # Non-distributable layers (with ``urls``) need not be in the registry.
    foreign: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedManifest:
    media_type: str
    references: tuple[Reference, ...]
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict = field(default_factory=dict)


def _invalid(detail: str) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", detail=detail)


def _descriptor(value: object, what: str, is_manifest: bool) -> Reference:
    if not isinstance(value, dict):
        raise _invalid(f"{what}: descriptor must be an object")
    digest, size, media = value.get("digest"), value.get("size"), value.get("mediaType")
    if not isinstance(digest, str):
        raise _invalid(f"{what}: digest missing")
    parse_digest(digest, "MANIFEST_INVALID")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{what}: size must be a non-negative integer")
    if not isinstance(media, str) or not media:
        raise _invalid(f"{what}: mediaType missing")
    foreign = bool(value.get("urls")) and media in mt.NONDISTRIBUTABLE_TYPES
    return Reference(digest=digest, size=size, media_type=media, is_manifest=is_manifest,
                     foreign=foreign)


def parse(body: bytes, content_type: str) -> ParsedManifest:
    """Check the manifest's shape and collect what it references.

    ``content_type`` is the request's Content-Type; the spec says it is authoritative, and
    a ``mediaType`` field in the body, when present, must agree with it.
    """
    content_type = content_type.split(";", 1)[0].strip()
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    field_type = doc.get("mediaType")
    media_type = content_type or field_type
    if not content_type and not isinstance(field_type, str):
        raise _invalid("no Content-Type and no mediaType field")
    if media_type in (mt.DOCKER_MANIFEST_SCHEMA1, mt.DOCKER_MANIFEST_SCHEMA1_SIGNED):
        raise RegistryError("UNSUPPORTED", "schema 1 manifests are not supported", status=415)
    if media_type not in ACCEPTED:
        raise _invalid(f"unsupported manifest media type {str(media_type)[:200]!r}")
    if field_type is not None and field_type != media_type:
        raise _invalid(f"mediaType {field_type!r} does not match Content-Type {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")

    refs: list[Reference] = []
    if media_type in mt.INDEX_TYPES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise _invalid("manifests must be a list")
        refs += [_descriptor(c, f"manifests[{i}]", True) for i, c in enumerate(children)]
    else:
        refs.append(_descriptor(doc.get("config"), "config", False))
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise _invalid("layers must be a list")
        refs += [_descriptor(layer, f"layers[{i}]", False) for i, layer in enumerate(layers)]

    subject = None
    if doc.get("subject") is not None:
        subject = _descriptor(doc["subject"], "subject", True).digest
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    if artifact_type is None and media_type == mt.OCI_MANIFEST:
        # image-spec: a referrer's artifactType falls back to its config's mediaType.
        artifact_type = refs[0].media_type
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise _invalid("annotations must be an object")
    return ParsedManifest(media_type=media_type, references=tuple(refs), subject=subject,
                          artifact_type=artifact_type, annotations=annotations)


def references_of(body: bytes) -> list[tuple[str, bool]]:
    """``(digest, is_manifest)`` for every descriptor of a stored manifest (for gc).

    Lenient: a stored manifest was validated when pushed; anything unreadable yields none.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    out: list[tuple[str, bool]] = []
    for child in doc.get("manifests") or []:
        if isinstance(child, dict) and isinstance(child.get("digest"), str):
            out.append((child["digest"], True))
    for desc in [doc.get("config")] + list(doc.get("layers") or []):
        if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
            out.append((desc["digest"], False))
    # ``subject`` is not followed: a referrer does not keep a deleted subject alive (the
    # referrer itself is kept, being a revision of its repository).
    return out
