"""``docker save`` and ``docker load``: images as one tar.

:func:`save` writes what docker >= 25 writes, which every docker (old and new) and
containerd/podman/skopeo load:

    oci-layout                   {"imageLayoutVersion": "1.0.0"}
    index.json                   OCI index: one entry per saved name (or per image saved
                                 by ID), annotated io.containerd.image.name (full name)
                                 and org.opencontainers.image.ref.name (the tag)
    manifest.json                Docker's list: [{"Config": "blobs/sha256/<id>",
                                 "RepoTags": [...], "Layers": ["blobs/sha256/<layer>"]}]
    repositories                 {"busybox": {"latest": "<image id hex>"}} (legacy readers)
    blobs/sha256/<hex>           manifests, configs and layers, exactly as stored

Layers are written as stored (gzip for imported images); every docker load decompresses
what it finds. Entries are in a fixed order with mtime 0, so a save is reproducible.

:func:`load` accepts a docker-save tar of any version (``manifest.json``; the legacy
``<id>/layer.tar`` layout with its symlinks too) or a plain OCI layout tar
(``index.json`` + ``blobs/``), optionally gzip/zstd-compressed. It is built for hostile
input: archive paths are never used as filesystem paths (regular files go to numbered
files in a private staging dir, symlinks and hardlinks are resolved lexically inside the
archive, never on disk); JSON documents are size-capped; every blob is verified against
its digest by the content store, and every layer's entries (:mod:`conch.archive.check`:
what a pull's unpack refuses, load refuses, with the same words) and diff_id (against the
config) are checked before any name is recorded. A refused load leaves nothing: the blobs
it stored that no image references are discarded (:func:`conch.images.gc.discard`).

On disk: ``<images root>/tmp/load-<random>/`` while loading, removed afterwards.
"""

from __future__ import annotations

import io
import json
import posixpath
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from conch.archive.compression import Compression, decompressed, detect
from conch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from conch.images.records import Image
from conch.images.store import ImageService
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest, Digester
from conch.oci.image import ImageConfig, ImageIndex, ImageManifest, canonical_json, parse_manifest
from conch.oci.platform import only
from conch.oci.reference import Reference

MAX_JSON = 8 << 20  # manifest.json, index.json, configs and manifests
MAX_LINK_HOPS = 40
_CHUNK = 1 << 20
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    """One image a load named (``ref``: familiar tag) or brought in by ID (``ref`` None)."""

    image: Image
    ref: str | None


# --- save -----------------------------------------------------------------------------


def save(service: ImageService, refs: Iterable[str], out: BinaryIO) -> None:
    """Write the images ``refs`` (names or IDs) to ``out`` as a tar ``docker load`` takes."""
    entries = [service.resolve(ref) for ref in refs]
    blobs: dict[Digest, int] = {}
    index: list[dict] = []
    manifests: dict[Digest, dict] = {}  # one manifest.json entry per image, as Docker
    repositories: dict[str, dict[str, str]] = {}
    for image, named in entries:
        for d in (image.target, image.manifest.config, *image.manifest.layers):
            blobs.setdefault(d.digest, d.size)
        annotations = {}
        if named is not None:
            annotations = {ANNOTATION_IMAGE_NAME: str(named), ANNOTATION_REF_NAME: named.tag}
            repositories.setdefault(named.familiar_name(), {})[named.tag] = image.id.hex
        index.append(Descriptor(media_type=image.target.media_type, digest=image.target.digest,
                                size=image.target.size, annotations=annotations).to_dict())
        entry = manifests.setdefault(image.id, {
            "Config": _blob_path(image.manifest.config.digest),
            "RepoTags": None,
            "Layers": [_blob_path(layer.digest) for layer in image.manifest.layers],
        })
        if named is not None and named.familiar() not in (entry["RepoTags"] or []):
            entry["RepoTags"] = [*(entry["RepoTags"] or []), named.familiar()]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in ("blobs", "blobs/sha256"):
            _add_dir(tar, name)
        for digest, size in sorted(blobs.items()):
            with service.content.open(digest) as f:
                _add_file(tar, _blob_path(digest), f, size)
        _add_bytes(tar, "index.json", canonical_json(
            {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index}))
        _add_bytes(tar, "manifest.json", canonical_json(list(manifests.values())))
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if repositories:
            _add_bytes(tar, "repositories", canonical_json(repositories))


def _blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.encoded}"


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, f: BinaryIO, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o444, 0
    tar.addfile(info, f)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    _add_file(tar, name, io.BytesIO(data), len(data))


# --- load -----------------------------------------------------------------------------


def load(service: ImageService, stream: BinaryIO) -> list[Loaded]:
    """Load a docker-save or OCI layout tar; the images it named or brought."""
    staging = service.tmp_dir() / f"load-{secrets.token_hex(8)}"
    staging.mkdir()
    files = _Archive(staging)
    try:
        files.extract(stream)
        if files.has("manifest.json"):
            return _load_docker(service, files)
        if files.has("index.json"):
            return _load_oci(service, files)
        raise InvalidArgument("load: the archive has neither manifest.json nor index.json")
    except Exception:
        if files.stored:
            from conch.images.gc import discard

            discard(service, files.stored)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Archive:
    """The archive's regular files, by their cleaned in-archive path, plus its links."""

    def __init__(self, staging: Path) -> None:
        self._staging = staging
        self._files: dict[str, Path] = {}
        self._links: dict[str, str] = {}  # cleaned path -> cleaned in-archive target
        self.stored: list[Digest] = []  # blobs this load put in the content store

    def extract(self, stream: BinaryIO) -> None:
        reader, _ = decompressed(stream)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    self._add(tar, member)
        except tarfile.TarError as exc:
            raise InvalidArgument(f"load: not a valid tar archive: {exc}") from exc

    def _add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = _clean(member.name)
        if member.isreg():
            path = self._staging / str(len(self._files))
            src = tar.extractfile(member)
            with open(path, "xb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            self._files[name] = path
            self._links.pop(name, None)
        elif member.issym():
            self._links[name] = _clean(posixpath.join(posixpath.dirname(name), member.linkname))
        elif member.islnk():
            self._links[name] = _clean(member.linkname)
        # directories, devices, fifos: nothing to keep

    def has(self, name: str) -> bool:
        try:
            self.path(name)
            return True
        except InvalidArgument:
            return False

    def path(self, name: str) -> Path:
        name = _clean(name)
        for _ in range(MAX_LINK_HOPS):
            if name in self._files:
                return self._files[name]
            if name not in self._links:
                raise InvalidArgument(f"load: the archive has no file {name!r}")
            name = self._links[name]
        raise InvalidArgument(f"load: too many links resolving {name!r}")

    def json(self, name: str) -> object:
        return json.loads(self.small(name))

    def small(self, name: str) -> bytes:
        path = self.path(name)
        if path.stat().st_size > MAX_JSON:
            raise InvalidArgument(f"load: {name!r} is larger than {MAX_JSON} bytes")
        return path.read_bytes()


def _clean(name: str) -> str:
    cleaned = posixpath.normpath("/" + name).lstrip("/")  # ".." cannot climb above "/"
    if not cleaned or cleaned == "." or "\x00" in cleaned:
        raise InvalidArgument(f"load: invalid path in archive: {name!r}")
    return cleaned


def _load_docker(service: ImageService, files: _Archive) -> list[Loaded]:
    try:
        entries = files.json("manifest.json")
    except ValueError as exc:
        raise InvalidArgument(f"load: manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise InvalidArgument("load: manifest.json must be a list")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise InvalidArgument("load: manifest.json entry needs a Config path")
        tags = entry.get("RepoTags") or []
        layer_paths = entry.get("Layers") or []
        if not all(isinstance(x, str) for x in [*tags, *layer_paths]):
            raise InvalidArgument("load: manifest.json RepoTags/Layers must be strings")
        refs = [Reference.parse(t) for t in tags]
        config_bytes = files.small(entry["Config"])
        config = ImageConfig.from_bytes(config_bytes)
        if len(layer_paths) != len(config.rootfs.diff_ids):
            raise InvalidArgument(
                f"load: {len(layer_paths)} layers but the config lists {len(config.rootfs.diff_ids)}"
            )
        layers = []
        for p, diff_id in zip(layer_paths, config.rootfs.diff_ids):
            layers.append(_ingest_layer(service, files.path(p), diff_id))
            files.stored.append(layers[-1].digest)
        files.stored.append(service.content.put(config_bytes).digest)
        manifest = ImageManifest(
            media_type=mt.DOCKER_MANIFEST,
            config=Descriptor.of(config_bytes, mt.DOCKER_CONFIG),
            layers=tuple(layers),
        ).to_bytes()
        files.stored.append(service.content.put(manifest).digest)
        target = Descriptor.of(manifest, mt.DOCKER_MANIFEST)
        if not refs:
            out.append(Loaded(image=service.register(target, None), ref=None))
        for ref in refs:
            out.append(Loaded(image=service.register(target, ref), ref=ref.familiar()))
    return out


def _ingest_layer(service: ImageService, path: Path, diff_id: Digest) -> Descriptor:
    """Store the layer file as is; check its uncompressed digest is ``diff_id`` and its
    entries (none may escape the root: refused here, as dockerd's load does, not at run)."""
    kind = _check_layer_file(path, diff_id)
    media_type = {Compression.GZIP: mt.DOCKER_LAYER_GZIP, Compression.ZSTD: mt.OCI_LAYER_ZSTD,
                  Compression.NONE: mt.DOCKER_LAYER}[kind]
    return _ingest_file(service, path, None, None).descriptor(media_type)


def _check_layer_file(path: Path, diff_id: Digest | None) -> Compression:
    """The layer file's compression, once its entries passed :func:`check_layer` and its
    uncompressed digest is ``diff_id`` (if one is given)."""
    from conch.archive.check import check_layer

    hasher = Digester(diff_id.algorithm) if diff_id is not None else Digester()
    with open(path, "rb") as f:
        kind = detect(f.read(4))
        f.seek(0)
        reader, _ = decompressed(f)
        try:
            check_layer(reader, hasher.update)
        except InvalidArgument as exc:
            raise InvalidArgument(f"load: {exc}") from exc
    if diff_id is not None and hasher.digest() != diff_id:
        raise InvalidArgument(f"load: layer has diff_id {hasher.digest()}, its config says {diff_id}")
    return kind


def _ingest_file(service: ImageService, path: Path, expected: Digest | None, size: int | None):
    """Copy ``path`` into the content store (verified against ``expected``/``size``)."""
    ref = f"load-{secrets.token_hex(8)}"
    try:
        writer = service.content.writer(ref, expected=expected, total=size)
    except AlreadyExists:
        return service.content.info(expected)
    try:
        with writer, open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                writer.write(chunk)
            return writer.commit(size, expected)
    except FailedPrecondition as exc:  # the archive lied about a blob
        raise InvalidArgument(f"load: {exc}") from exc
    except BaseException:
        try:
            service.content.abort(ref)
        except NotFound:
            pass
        raise


def _load_oci(service: ImageService, files: _Archive) -> list[Loaded]:
    index = ImageIndex.from_bytes(files.small("index.json"))
    out = []
    for desc in index.manifests:
        target = _ingest_tree(service, files, desc)
        ref = _oci_name(desc)
        image = service.register(target, ref)
        out.append(Loaded(image=image, ref=ref.familiar() if ref else None))
    return out


def _oci_name(desc: Descriptor) -> Reference | None:
    """containerd's full name, else ``ref.name`` when it is a whole reference (skopeo
    writes ``foo/bar:3`` there); a bare tag (``latest``) names nothing."""
    name = desc.annotations.get(ANNOTATION_IMAGE_NAME)
    if name:
        return Reference.parse(name)
    name = desc.annotations.get(ANNOTATION_REF_NAME, "")
    if "/" in name or ":" in name:
        try:
            return Reference.parse(name)
        except InvalidArgument:
            return None
    return None


def _ingest_tree(service: ImageService, files: _Archive, desc: Descriptor,
                 depth: int = 0) -> Descriptor:
    """Ingest ``desc`` and what it references; returns the manifest to name (an index
    resolves to the service platform's manifest, the others are kept as content)."""
    if depth > 4:
        raise InvalidArgument("load: indexes nested too deep")
    if not (mt.is_manifest(desc.media_type) or mt.is_index(desc.media_type)):
        raise InvalidArgument(f"load: unsupported index entry media type {desc.media_type!r}")
    data = files.small(_blob_path(desc.digest))
    if len(data) != desc.size or Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
        raise InvalidArgument(f"load: blob {desc.digest} does not match its descriptor")
    parsed = parse_manifest(data, desc.media_type)
    if isinstance(parsed, ImageIndex):
        children = [d for d in parsed.select(only(service.platform)) if files.has(_blob_path(d.digest))]
        if not children:
            raise InvalidArgument(f"load: index {desc.digest} has no manifest for {service.platform}")
        target = _ingest_tree(service, files, children[0], depth + 1)
    else:
        diff_ids = _diff_ids(service, files, parsed)
        for i, blob in enumerate((parsed.config, *parsed.layers)):
            if service.content.exists(blob.digest):
                continue
            path = files.path(_blob_path(blob.digest))
            # the digest first (the archive's first lie), then entries and diff_id
            files.stored.append(_ingest_file(service, path, blob.digest, blob.size).digest)
            if i and mt.is_layer(blob.media_type):
                _check_layer_file(path, diff_ids[i - 1] if diff_ids is not None else None)
        target = Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)
    files.stored.append(service.content.put(data, expected=desc.digest).digest)
    return target


def _diff_ids(service: ImageService, files: _Archive, manifest: ImageManifest):
    """The config's diff_ids, one per layer (``None`` for an artifact: its config is not
    an image's and its "layers" are not tars)."""
    config = manifest.config
    if not mt.is_config(config.media_type):
        return None
    if service.content.exists(config.digest):
        data = service.content.read(config.digest)
    else:
        data = files.small(_blob_path(config.digest))
        if len(data) != config.size or Digest.from_bytes(data, config.digest.algorithm) != config.digest:
            raise InvalidArgument(f"load: blob {config.digest} does not match its descriptor")
    diff_ids = ImageConfig.from_bytes(data).rootfs.diff_ids
    if len(diff_ids) != len(manifest.layers):
        raise InvalidArgument(f"load: {len(manifest.layers)} layers but the config lists "
                              f"{len(diff_ids)}")
    return diff_ids
