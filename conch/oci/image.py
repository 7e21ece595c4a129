"""Image manifests, indexes and configs: OCI image-spec 1.1 and Docker schema 2.

* :class:`ImageManifest` is an OCI manifest or a Docker v2 schema 2 manifest
  (``application/vnd.docker.distribution.manifest.v2+json``); both have ``config`` and
  ``layers``. OCI 1.1 adds ``artifactType`` and ``subject``.
* :class:`ImageIndex` is an OCI index or a Docker manifest list; :meth:`ImageIndex.select`
  picks the manifests for a platform the way containerd's ``images.Manifest`` does.
* :class:`ImageConfig` is the image configuration blob (``architecture``, ``os``,
  ``config`` -> :class:`ExecutionConfig`, ``rootfs``, ``history``...).

**Bytes are the truth.** A blob's digest is over its exact bytes, and JSON has many
spellings of one value, so code that fetched or loaded a manifest/config keeps the
original bytes next to the parsed form and never re-serialises to get a digest.
:meth:`to_bytes` is the canonical form for content *we* create: known keys in the order
of the Go structs (containerd/docker), unknown keys after them, compact separators.

Unknown keys are kept in ``extra`` at every level and written back. Known keys whose
value is empty are omitted on output (``omitempty``), and a JSON ``null`` reads as
absent; list-valued fields that Docker distinguishes from absent (``Cmd: []`` clears the
command) are ``None`` when absent and ``()`` when empty.

:func:`chain_ids` computes layer ChainIDs (image-spec config.md, "Layer ChainID").
"""

from __future__ import annotations

import json
from functools import cmp_to_key
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from conch.errors import InvalidArgument
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor, parse_annotations, validate_media_type
from conch.oci.digest import Digest
from conch.oci.platform import Platform, PlatformMatcher


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=False, separators=(",", ":"), ensure_ascii=False).encode()


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(Digest.from_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


# --- manifest -------------------------------------------------------------------------

_MANIFEST_KEYS = frozenset(
    ("schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations")
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = mt.OCI_MANIFEST  # "" when an (older) OCI manifest omits it
    artifact_type: str = ""
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageManifest:
        return cls.from_dict(_load(data, "manifest"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageManifest:
        media_type = _header(d, "manifest", mt.MANIFEST_TYPES)
        if "manifests" in d:
            raise InvalidArgument("manifest has a 'manifests' field: it is an index, not a manifest")
        config = d.get("config")
        if config is None:
            raise InvalidArgument("manifest has no config descriptor")
        layers = d.get("layers")
        if layers is None and media_type == mt.DOCKER_MANIFEST:
            raise InvalidArgument("docker schema 2 manifest has no layers")
        return cls(
            media_type=media_type,
            artifact_type=_artifact_type(d),
            config=Descriptor.from_dict(config),
            layers=tuple(Descriptor.from_dict(x) for x in _list(d, "layers", "manifest")),
            subject=_optional_descriptor(d.get("subject")),
            annotations=parse_annotations(d.get("annotations"), "manifest annotations"),
            extra={k: v for k, v in d.items() if k not in _MANIFEST_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schemaVersion": 2}
        if self.media_type:
            d["mediaType"] = self.media_type
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        d["config"] = self.config.to_dict()
        d["layers"] = [x.to_dict() for x in self.layers]
        if self.subject is not None:
            d["subject"] = self.subject.to_dict()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        d.update(self.extra)
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


# --- index ----------------------------------------------------------------------------

_INDEX_KEYS = frozenset(
    ("schemaVersion", "mediaType", "artifactType", "manifests", "subject", "annotations")
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageIndex:
    manifests: tuple[Descriptor, ...] = ()
    media_type: str = mt.OCI_INDEX  # "" when an (older) OCI index omits it
    artifact_type: str = ""
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageIndex:
        return cls.from_dict(_load(data, "index"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageIndex:
        media_type = _header(d, "index", mt.INDEX_TYPES)
        if "config" in d or "layers" in d:
            raise InvalidArgument("index has 'config' or 'layers': it is a manifest, not an index")
        if d.get("manifests") is None:
            raise InvalidArgument("index has no manifests list")
        return cls(
            media_type=media_type,
            artifact_type=_artifact_type(d),
            manifests=tuple(Descriptor.from_dict(x) for x in _list(d, "manifests", "index")),
            subject=_optional_descriptor(d.get("subject")),
            annotations=parse_annotations(d.get("annotations"), "index annotations"),
            extra={k: v for k, v in d.items() if k not in _INDEX_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schemaVersion": 2}
        if self.media_type:
            d["mediaType"] = self.media_type
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        d["manifests"] = [x.to_dict() for x in self.manifests]
        if self.subject is not None:
            d["subject"] = self.subject.to_dict()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        d.update(self.extra)
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    def select(self, matcher: PlatformMatcher) -> list[Descriptor]:
        """Child manifests/indexes usable on ``matcher``'s platform, best first.

        As containerd's ``images.Manifest``: only manifest/index children count;
        those without a platform are kept but sorted last; BuildKit attestations carry
        platform ``unknown/unknown`` and so never match. The sort is stable, so the
        index's own order breaks ties.
        """
        candidates = [
            m
            for m in self.manifests
            if (mt.is_manifest(m.media_type) or mt.is_index(m.media_type))
            and (m.platform is None or matcher.match(m.platform))
        ]

        def compare(a: Descriptor, b: Descriptor) -> int:
            if a.platform is None or b.platform is None:
                return (a.platform is None) - (b.platform is None)
            if matcher.less(a.platform, b.platform):
                return -1
            return 1 if matcher.less(b.platform, a.platform) else 0

        return sorted(candidates, key=cmp_to_key(compare))


_MANIFEST_HINTS = mt.MANIFEST_TYPES | mt.INDEX_TYPES | {
    mt.DOCKER_MANIFEST_SCHEMA1, mt.DOCKER_MANIFEST_SCHEMA1_SIGNED,
}  # fmt: skip


def parse_manifest(data: bytes, media_type: str = "") -> ImageManifest | ImageIndex:
    """Parse a manifest or an index, deciding by ``media_type`` (e.g. a registry's
    Content-Type), else the body's ``mediaType``, else its shape (containerd's rule).

    A hint that names no manifest type (registries send ``application/json``,
    ``text/plain``...) is ignored; parameters (``; charset=utf-8``) are dropped.
    """
    d = _load(data, "manifest")
    media_type = media_type.partition(";")[0].strip()
    if media_type not in _MANIFEST_HINTS:
        media_type = ""
    body_type = d.get("mediaType") or ""
    if media_type and body_type and media_type != body_type:
        raise InvalidArgument(
            f"manifest media type mismatch: expected {media_type!r}, body says {body_type!r}"
        )
    kind = media_type or body_type
    if mt.is_index(kind):
        return ImageIndex.from_dict(d)
    if mt.is_manifest(kind):
        return ImageManifest.from_dict(d)
    if kind:
        _check_schema_version(d, "manifest")
        raise InvalidArgument(f"unsupported manifest media type {kind!r}")
    if "manifests" in d and ("config" in d or "layers" in d):
        raise InvalidArgument("ambiguous manifest: has both 'manifests' and 'config'/'layers'")
    if "manifests" in d:
        return ImageIndex.from_dict(d)
    return ImageManifest.from_dict(d)


# --- config ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck:
    """Docker's ``Healthcheck`` (durations in nanoseconds, as in the JSON)."""

    test: tuple[str, ...] | None = None
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    _FIELDS = (
        ("Test", "test"), ("Interval", "interval"), ("Timeout", "timeout"),
        ("StartPeriod", "start_period"), ("StartInterval", "start_interval"),
        ("Retries", "retries"),
    )  # fmt: skip

    @classmethod
    def from_dict(cls, d: object) -> Healthcheck:
        d = _obj(d, "Healthcheck")
        known = {k for k, _ in cls._FIELDS}
        ints = {a: _int(d, k, "Healthcheck") for k, a in cls._FIELDS[1:]}
        return cls(
            test=_str_list(d, "Test", "Healthcheck"),
            **ints,
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.test is not None:
            d["Test"] = list(self.test)
        for key, attr in self._FIELDS[1:]:
            if value := getattr(self, attr):
                d[key] = value
        d.update(self.extra)
        return d


# JSON key -> (attribute, kind); order = Go's ocispec.ImageConfig, then Docker's extras.
_EXEC_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("User", "user", "str"),
    ("ExposedPorts", "exposed_ports", "set"),
    ("Env", "env", "list"),
    ("Entrypoint", "entrypoint", "list"),
    ("Cmd", "cmd", "list"),
    ("Volumes", "volumes", "set"),
    ("WorkingDir", "working_dir", "str"),
    ("Labels", "labels", "labels"),
    ("StopSignal", "stop_signal", "str"),
    ("ArgsEscaped", "args_escaped", "bool"),
    ("Healthcheck", "healthcheck", "healthcheck"),
    ("OnBuild", "on_build", "list"),
    ("Shell", "shell", "list"),
)
_EXEC_KEYS = frozenset(k for k, _, _ in _EXEC_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionConfig:
    """The config's ``config`` object: the spec's "execution parameters" for a container.

    ``exposed_ports`` and ``volumes`` are JSON objects whose values are ``{}``; they are
    kept as mappings so odd values survive. Legacy Docker keys (``Hostname``, ``Tty``,
    ``Image``...) land in ``extra``.
    """

    user: str = ""
    exposed_ports: Mapping[str, Any] | None = field(default=None, hash=False)
    env: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: Mapping[str, Any] | None = field(default=None, hash=False)
    working_dir: str = ""
    labels: Mapping[str, str] | None = field(default=None, hash=False)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] | None = None
    shell: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_dict(cls, d: object) -> ExecutionConfig:
        d = _obj(d, "config")
        kw: dict[str, Any] = {}
        for key, attr, kind in _EXEC_FIELDS:
            if d.get(key) is None:
                continue
            if kind == "str":
                kw[attr] = _str(d, key, "config")
            elif kind == "list":
                kw[attr] = _str_list(d, key, "config")
            elif kind == "set":
                kw[attr] = dict(_obj(d[key], f"config {key}"))
            elif kind == "labels":
                kw[attr] = parse_annotations(d[key], "config Labels")
            elif kind == "bool":
                kw[attr] = _bool(d, key, "config")
            else:
                kw[attr] = Healthcheck.from_dict(d[key])
        return cls(**kw, extra={k: v for k, v in d.items() if k not in _EXEC_KEYS})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for key, attr, kind in _EXEC_FIELDS:
            value = getattr(self, attr)
            if kind in ("str", "bool"):
                if value:
                    d[key] = value
            elif value is not None:
                if kind == "list":
                    d[key] = list(value)
                elif kind == "healthcheck":
                    d[key] = value.to_dict()
                else:
                    d[key] = dict(value)
        d.update(self.extra)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class RootFS:
    type: str = "layers"
    diff_ids: tuple[Digest, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_dict(cls, d: object) -> RootFS:
        d = _obj(d, "rootfs")
        if d.get("type") != "layers":
            raise InvalidArgument(f"unsupported rootfs type {d.get('type')!r} (want 'layers')")
        diff_ids = d.get("diff_ids") or []
        if not isinstance(diff_ids, list):
            raise InvalidArgument("rootfs diff_ids must be a list")
        parsed = []
        for x in diff_ids:
            if not isinstance(x, str):
                raise InvalidArgument(f"rootfs diff_ids entry must be a string, got {x!r}")
            parsed.append(Digest.parse(x))
        return cls(
            type="layers",
            diff_ids=tuple(parsed),
            extra={k: v for k, v in d.items() if k not in ("type", "diff_ids")},
        )

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "diff_ids": [str(x) for x in self.diff_ids], **self.extra}


_HISTORY_FIELDS = ("created", "created_by", "author", "comment")


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_dict(cls, d: object) -> History:
        d = _obj(d, "history entry")
        return cls(
            **{k: _str(d, k, "history") for k in _HISTORY_FIELDS},
            empty_layer=_bool(d, "empty_layer", "history"),
            extra={k: v for k, v in d.items() if k not in (*_HISTORY_FIELDS, "empty_layer")},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in _HISTORY_FIELDS if getattr(self, k)}
        if self.empty_layer:
            d["empty_layer"] = True
        d.update(self.extra)
        return d


_CONFIG_KEYS = frozenset(
    ("created", "author", "architecture", "os", "os.version", "os.features", "variant",
     "config", "rootfs", "history")
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """The image configuration blob (``application/vnd.oci.image.config.v1+json`` or
    Docker's ``application/vnd.docker.container.image.v1+json``)."""

    architecture: str
    os: str
    rootfs: RootFS
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    created: str = ""  # RFC 3339, kept as written
    author: str = ""
    config: ExecutionConfig | None = None
    history: tuple[History, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageConfig:
        return cls.from_dict(_load(data, "image config"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageConfig:
        for key in ("architecture", "os"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise InvalidArgument(f"image config {key} must be a non-empty string")
        if d.get("rootfs") is None:
            raise InvalidArgument("image config has no rootfs")
        config = d.get("config")
        return cls(
            created=_str(d, "created", "image config"),
            author=_str(d, "author", "image config"),
            architecture=d["architecture"],
            os=d["os"],
            os_version=_str(d, "os.version", "image config"),
            os_features=_str_list(d, "os.features", "image config") or (),
            variant=_str(d, "variant", "image config"),
            config=None if config is None else ExecutionConfig.from_dict(config),
            rootfs=RootFS.from_dict(d["rootfs"]),
            history=tuple(History.from_dict(h) for h in _list(d, "history", "image config")),
            extra={k: v for k, v in d.items() if k not in _CONFIG_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.created:
            d["created"] = self.created
        if self.author:
            d["author"] = self.author
        d["architecture"] = self.architecture
        d["os"] = self.os
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        if self.variant:
            d["variant"] = self.variant
        if self.config is not None:
            d["config"] = self.config.to_dict()
        d["rootfs"] = self.rootfs.to_dict()
        if self.history:
            d["history"] = [h.to_dict() for h in self.history]
        d.update(self.extra)
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    def platform(self) -> Platform:
        return Platform(
            os=self.os,
            architecture=self.architecture,
            variant=self.variant,
            os_version=self.os_version,
            os_features=self.os_features,
        )

    def chain_ids(self) -> list[Digest]:
        return chain_ids(self.rootfs.diff_ids)


# --- JSON helpers (private: each codec here validates its own fields) -----------------


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        d = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise InvalidArgument(f"{what} must be a JSON object, got {type(d).__name__}")
    return d


def _check_schema_version(d: Mapping[str, Any], what: str) -> None:
    version = d.get("schemaVersion")
    if isinstance(version, bool):
        raise InvalidArgument(f"{what}: unsupported schemaVersion {version!r} (want 2)")
    if version == 1:
        raise InvalidArgument(f"{what}: Docker schema 1 manifests are not supported")
    if version != 2:
        raise InvalidArgument(f"{what}: unsupported schemaVersion {version!r} (want 2)")


def _header(d: Mapping[str, Any], what: str, allowed: frozenset[str]) -> str:
    """Validate ``schemaVersion`` and ``mediaType``; return the media type ("" if absent)."""
    _check_schema_version(d, what)
    media_type = d.get("mediaType")
    if media_type is None:
        return ""
    validate_media_type(media_type, f"{what} mediaType")
    if media_type not in allowed:
        raise InvalidArgument(
            f"{what}: unexpected mediaType {media_type!r} (want one of {sorted(allowed)})"
        )
    return media_type


def _artifact_type(d: Mapping[str, Any]) -> str:
    value = d.get("artifactType")
    return "" if value is None else validate_media_type(value, "artifactType")


def _optional_descriptor(value: object) -> Descriptor | None:
    return None if value is None else Descriptor.from_dict(value)


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be an object, got {type(value).__name__}")
    return value


def _list(d: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(f"{what} {key} must be a list, got {type(value).__name__}")
    return value


def _str(d: Mapping[str, Any], key: str, what: str) -> str:
    value = d.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} {key} must be a string, got {type(value).__name__}")
    return value


def _str_list(d: Mapping[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, str):  # Docker's strslice also accepts a bare string
        return (value,)
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise InvalidArgument(f"{what} {key} must be a list of strings")
    return tuple(value)


def _int(d: Mapping[str, Any], key: str, what: str) -> int:
    value = d.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} {key} must be an integer, got {value!r}")
    return value


def _bool(d: Mapping[str, Any], key: str, what: str) -> bool:
    value = d.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} {key} must be a boolean, got {value!r}")
    return value
