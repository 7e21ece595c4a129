"""The OCI content descriptor: what a blob is, where it is, how big it is.

Fields follow image-spec descriptor.md (``mediaType``, ``digest``, ``size``, ``urls``,
``annotations``, ``data``, ``platform``, ``artifactType``). Keys this version does not
know are kept in ``extra`` and written back by :meth:`Descriptor.to_dict`, so reading and
re-writing a descriptor loses nothing. Known keys are emitted in the order of Go's
``ocispec.Descriptor`` struct, so JSON we produce matches what containerd/docker produce.

``data`` holds the *decoded* embedded bytes (base64 on the wire); :meth:`embedded`
returns them only after checking size and digest, as the spec requires before use.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from conch.errors import FailedPrecondition, InvalidArgument
from conch.oci.digest import Digest
from conch.oci.platform import Platform

# RFC 6838 section 4.2, as in image-spec's JSON schema.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_KEYS = frozenset(
    ("mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType")
)


def validate_media_type(media_type: object, what: str = "mediaType") -> str:
    if not isinstance(media_type, str) or _MEDIA_TYPE.fullmatch(media_type) is None:
        raise InvalidArgument(f"invalid {what} {media_type!r}")
    return media_type


def parse_annotations(value: object, what: str = "annotations") -> dict[str, str]:
    """A JSON ``annotations`` value (absent/null -> empty) as a str->str dict."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(f"{what} must be an object of strings")
    return dict(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    data: bytes | None = None
    platform: Platform | None = None
    artifact_type: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def of(cls, content: bytes, media_type: str, /, **kw: Any) -> Descriptor:
        """The descriptor of ``content`` (sha256), e.g. for a manifest we just wrote."""
        return cls(
            media_type=media_type, digest=Digest.from_bytes(content), size=len(content), **kw
        )

    @classmethod
    def from_dict(cls, d: object) -> Descriptor:
        if not isinstance(d, dict):
            raise InvalidArgument(f"descriptor must be an object, got {type(d).__name__}")
        media_type = validate_media_type(d.get("mediaType"), "descriptor mediaType")
        raw_digest = d.get("digest")
        if not isinstance(raw_digest, str):
            raise InvalidArgument(f"descriptor digest must be a string, got {raw_digest!r}")
        size = d.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgument(f"descriptor size must be a non-negative integer, got {size!r}")
        urls = d.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidArgument("descriptor urls must be a list of strings")
        artifact_type = d.get("artifactType") or ""
        if artifact_type:
            validate_media_type(artifact_type, "descriptor artifactType")
        platform = d.get("platform")
        return cls(
            media_type=media_type,
            digest=Digest.parse(raw_digest),
            size=size,
            urls=tuple(urls),
            annotations=parse_annotations(d.get("annotations"), "descriptor annotations"),
            data=_decode_data(d.get("data")),
            platform=None if platform is None else Platform.from_dict(platform),
            artifact_type=artifact_type,
            extra={k: v for k, v in d.items() if k not in _KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.data is not None:
            d["data"] = base64.b64encode(self.data).decode("ascii")
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        d.update(self.extra)
        return d

    def embedded(self) -> bytes:
        """The embedded ``data``, verified against ``size`` and ``digest``."""
        if self.data is None:
            raise FailedPrecondition(f"descriptor {self.digest} has no embedded data")
        if len(self.data) != self.size:
            raise FailedPrecondition(
                f"embedded data of {self.digest} is {len(self.data)} bytes, descriptor says {self.size}"
            )
        if Digest.from_bytes(self.data, self.digest.algorithm) != self.digest:
            raise FailedPrecondition(f"embedded data does not match digest {self.digest}")
        return self.data


def _decode_data(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument("descriptor data must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"descriptor data is not valid base64: {exc}") from exc
