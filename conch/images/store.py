"""Images as Docker shows them: names, IDs, lookup, tag/untag/remove, inspect, history.

An image is identified by its config digest (the image ID, ``sha256:…``). Its names live
in the metadata database (:mod:`conch.metadata.db`, table ``images``): each row maps one
full normalised reference (``docker.io/library/busybox:latest`` or ``…@sha256:…``) to a
manifest descriptor and the image ID. An image with no name keeps one row under
``conch-dangling@<manifest digest>`` so that it still exists (``<none>:<none>``) until
removed or pruned. Manifest, config and layers live in the content store; unpacked
layers in the snapshotter (see :mod:`conch.images.unpack`).

Lookup (:meth:`ImageService.get`) follows Docker's ``GetImage``: a bare 64-hex ID or a
full ``sha256:`` digest is an ID; otherwise the string is parsed as a reference
(``busybox`` -> ``docker.io/library/busybox:latest``) and looked up by name; failing that,
it is tried as an ID prefix (``sha256:ab``, ``ab``, any length >= 1). An ambiguous prefix
finds nothing, as in Docker. Unknown images raise ``NotFound("No such image: …")``.

Removal and prune are :mod:`conch.images.removal`, Docker's shapes (history, inspect)
:mod:`conch.images.presentation`, the records :mod:`conch.images.records`; each is a
part of :class:`ImageService` (mixins) or a value it hands out.

On disk: ``root/`` is the service's scratch area (``root/tmp`` for imports and loads).
Not crash-atomic across stores: blobs are written before names, so a crash between the
two leaves unreferenced blobs (harmless; a content GC sweep is still to be written).
Within one daemon ``_lock`` orders naming against blob collection; a concurrent import
that shares a fresh blob with an image being removed can still lose it (leases would
close that window): :meth:`ImageService.register` re-checks every blob and fails clearly.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from conch.content import Store
from conch.errors import FailedPrecondition, InvalidArgument, NotFound
from conch.images.presentation import Presentation
from conch.images.records import Image, parse_ref
from conch.images.removal import Removal
from conch.images.unpack import USAGE_LABEL, Unpacker
from conch.metadata.db import Database, ImageRecord, dangling_name, now
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import SHA256, Digest
from conch.oci.image import ImageConfig, ImageIndex, ImageManifest
from conch.oci.platform import Platform, host_platform, only
from conch.oci.reference import Reference, is_identifier
from conch.snapshots import Mount, Snapshotter

log = logging.getLogger(__name__)

_ID_PREFIX = re.compile(r"(?:sha256:)?[0-9a-f]+")
_CACHE_MAX = 512


@dataclass(frozen=True, slots=True)
class _Parsed:
    manifest: ImageManifest
    manifest_desc: Descriptor
    config: ImageConfig


class ImageService(Removal, Presentation):
    """Images over a content store, a snapshotter and the metadata database."""

    def __init__(self, root: Path, content: Store, snapshotter: Snapshotter, db: Database,
                 *, platform: Platform | None = None) -> None:
        self.root = Path(root)
        self.content = content
        self.snapshotter = snapshotter
        self.db = db
        self.platform = platform or host_platform()
        self.unpacker = Unpacker(content, snapshotter)
        # Serialises naming against garbage collection within this daemon.
        self._lock = threading.RLock()
        # content writers hold one from first write to name (conch.images.gc)
        from conch.images.gc import Leases

        self.leases = Leases()
        self._parsed: dict[Digest, _Parsed] = {}

    def tmp_dir(self) -> Path:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- creating names -----------------------------------------------------------------

    def register(self, target: Descriptor, ref: str | Reference | None) -> Image:
        """Record ``target`` (a manifest already in content) under ``ref``, or as a
        dangling image when ``ref`` is None. Every blob it names must be present."""
        named = parse_ref(ref) if isinstance(ref, str) else ref
        if named is not None and named.digest is not None and named.tag:
            raise InvalidArgument(f"cannot name an image with both tag and digest: {named}")
        with self._lock:
            parsed = self._parse(target)
            for blob in (parsed.manifest.config, *parsed.manifest.layers):
                if not self.content.exists(blob.digest):
                    raise FailedPrecondition(f"image {target.digest} is missing blob {blob.digest}")
            image_id = parsed.manifest.config.digest
            with self.db.transaction():
                if named is not None:
                    self._set_name(str(named), target, image_id)
                elif not self.db.images_by_config(image_id):
                    t = now()
                    self.db.put_image(ImageRecord(name=dangling_name(target.digest), target=target,
                                                  config_digest=image_id, created_at=t, updated_at=t))
            return self._image(image_id)

    def tag(self, source: str, target_ref: str) -> Image:
        """``docker tag``: name ``target_ref`` (normalised, ``latest`` by default)."""
        with self._lock:
            image = self.get(source)
            named = parse_ref(target_ref)
            if named.digest is not None:
                raise InvalidArgument("refusing to create a tag with a digest reference")
            with self.db.transaction():
                self._set_name(str(named), image.target, image.id)
            return self._image(image.id)

    def _set_name(self, name: str, target: Descriptor, image_id: Digest) -> None:
        """Point ``name`` at the image; the image it leaves keeps a dangling row if that
        was its last name; our own dangling rows go. Inside a transaction."""
        try:
            old = self.db.get_image(name)
        except NotFound:
            old = None
        t = now()
        self.db.put_image(ImageRecord(name=name, target=target, config_digest=image_id,
                                      created_at=t, updated_at=t))
        for rec in self.db.images_by_config(image_id):
            if rec.dangling:
                self.db.delete_image(rec.name)
        if old is not None and old.config_digest != image_id:
            if not self.db.images_by_config(old.config_digest):
                self.db.put_image(ImageRecord(name=dangling_name(old.target.digest),
                                              target=old.target, config_digest=old.config_digest,
                                              created_at=t, updated_at=t))

    # --- lookup -------------------------------------------------------------------------

    def get(self, ref_or_id: str) -> Image:
        image_id, _ = self._lookup(ref_or_id)
        return self._image(image_id)

    def resolve(self, ref_or_id: str) -> tuple[Image, Reference | None]:
        """As :meth:`get`, plus the name it was found by (None when found by ID)."""
        image_id, named = self._lookup(ref_or_id)
        return self._image(image_id), named

    def list(self) -> list[Image]:
        """Every image, newest first (by config ``created``)."""
        ids = {rec.config_digest for rec in self.db.list_images()}
        images = []
        for image_id in ids:
            try:
                images.append(self._image(image_id))
            except (NotFound, InvalidArgument) as exc:  # removed meanwhile, or broken
                log.warning("image %s not listed: %s", image_id, exc)
        return sorted(images, key=lambda i: (i.created, str(i.id)), reverse=True)

    def _lookup(self, ref_or_id: str) -> tuple[Digest, Reference | None]:
        """(image ID, the name it was found by or None if found by ID) -- GetImage."""
        if not isinstance(ref_or_id, str) or not ref_or_id:
            raise InvalidArgument("image reference must not be empty")
        s = ref_or_id
        if is_identifier(s) or (s.startswith(f"{SHA256}:") and len(s) == 71):
            digest = Digest.parse(s if ":" in s else f"{SHA256}:{s}")
            if self.db.config_digests(str(digest)):
                return digest, None
            raise NotFound(f"No such image: {s}")
        ref = parse_ref(s)
        try:
            return self.db.get_image(str(ref)).config_digest, ref
        except NotFound:
            pass
        if _ID_PREFIX.fullmatch(s):
            prefix = s if s.startswith(f"{SHA256}:") else f"{SHA256}:{s}"
            if len(prefix) > len(SHA256) + 1:
                found = self.db.config_digests(prefix)
                if len(found) == 1:
                    return Digest.parse(found[0]), None
        raise NotFound(f"No such image: {ref.familiar()}")

    def _image(self, image_id: Digest) -> Image:
        records = self.db.images_by_config(image_id)
        if not records:
            raise NotFound(f"No such image: {image_id}")
        named = [r for r in records if not r.dangling]
        # Several manifests may carry one config; show the most recently named one's.
        newest = max(records, key=lambda r: r.updated_at)
        parsed = self._parse(newest.target)
        refs = [parse_ref(r.name, default_tag=False) for r in named]
        return Image(
            id=image_id,
            names=tuple(r.name for r in named),
            repo_tags=tuple(sorted(r.familiar() for r in refs if r.digest is None)),
            repo_digests=tuple(sorted(r.familiar() for r in refs if r.digest is not None)),
            target=parsed.manifest_desc,
            manifest=parsed.manifest,
            config=parsed.config,
            size=self._size(parsed),
            last_tag_time=max((r.updated_at for r in named), default=None),
        )

    def _parse(self, target: Descriptor) -> _Parsed:
        """Manifest and config of ``target`` (an index resolves to the host's manifest);
        content-addressed, so cached by digest."""
        cached = self._parsed.get(target.digest)
        if cached is not None:
            return cached
        manifest_desc = target
        if mt.is_index(target.media_type):
            index = ImageIndex.from_bytes(self._read(target.digest))
            present = [d for d in index.select(only(self.platform))
                       if mt.is_manifest(d.media_type) and self.content.exists(d.digest)]
            if not present:
                raise NotFound(f"image index {target.digest} has no manifest for {self.platform}")
            manifest_desc = present[0]
        elif not mt.is_manifest(target.media_type):
            raise InvalidArgument(f"unsupported image target media type {target.media_type!r}")
        manifest = ImageManifest.from_bytes(self._read(manifest_desc.digest))
        config = ImageConfig.from_bytes(self._read(manifest.config.digest))
        parsed = _Parsed(manifest=manifest, manifest_desc=manifest_desc, config=config)
        if len(self._parsed) >= _CACHE_MAX:
            self._parsed.clear()
        self._parsed[target.digest] = parsed
        return parsed

    def _read(self, digest: Digest) -> bytes:
        try:
            return self.content.read(digest, verify=True)
        except NotFound:
            raise NotFound(f"content {digest} of an image is missing") from None

    def _size(self, parsed: _Parsed) -> int:
        total = 0
        for layer, chain_id in zip(parsed.manifest.layers, parsed.config.chain_ids()):
            try:
                total += int(self.snapshotter.stat(str(chain_id)).labels[USAGE_LABEL])
            except (NotFound, KeyError, ValueError):
                total += layer.size
        return total

    # --- unpacking ----------------------------------------------------------------------

    def unpack(self, image: Image) -> Digest | None:
        """Unpack every layer into snapshots (once); the top ChainID."""
        return self.unpacker.unpack(image.manifest.layers, image.config)

    def prepare_rootfs(self, image: Image, key: str,
                       *, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """The writable snapshot ``key`` of a new container of ``image``; its mounts."""
        return self.unpacker.prepare_rootfs(image.manifest.layers, image.config, key, labels=labels)
