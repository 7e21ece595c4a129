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

Removal (:meth:`ImageService.remove`) is Docker's ``ImageDelete`` (daemon/images/
image_delete.go), messages included: by name it untags (and removes the image with its
last name); by ID it removes an image with one name (or several digests of one
repository), but an image named in several repositories needs ``force``; a running
container's image cannot be removed even with ``force``, a stopped one's needs it.
Content blobs and unpacked snapshots no remaining image uses are deleted afterwards.

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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from conch.content import Store
from conch.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from conch.images.unpack import USAGE_LABEL, Unpacker
from conch.metadata.db import Database, ImageRecord, dangling_name, now
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import SHA256, Digest
from conch.oci.image import ExecutionConfig, ImageConfig, ImageIndex, ImageManifest
from conch.oci.platform import Platform, host_platform, only
from conch.oci.reference import Reference, is_identifier
from conch.snapshots import Mount, Snapshotter

log = logging.getLogger(__name__)

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's time.Time{} as Docker prints it
_ID_PREFIX = re.compile(r"(?:sha256:)?[0-9a-f]+")
_CACHE_MAX = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    id: Digest  # the config digest
    names: tuple[str, ...]  # full normalised references, sorted
    repo_tags: tuple[str, ...]  # familiar: "busybox:latest"
    repo_digests: tuple[str, ...]  # familiar: "busybox@sha256:…"
    target: Descriptor  # the manifest
    manifest: ImageManifest
    config: ImageConfig
    size: int  # unpacked bytes per layer where unpacked, else the compressed size
    last_tag_time: datetime | None

    @property
    def created(self) -> str:
        return self.config.created

    @property
    def os(self) -> str:
        return self.config.os

    @property
    def architecture(self) -> str:
        return self.config.architecture

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def dangling(self) -> bool:
        return not self.names

    def chain_ids(self) -> list[Digest]:
        return self.config.chain_ids()


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageUser:
    """A container using an image, as the engine reports it to :meth:`ImageService.remove`."""

    container_id: str
    running: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One row of ``docker history`` (newest first); ``id`` is ``<missing>`` below the top."""

    id: str
    created: int  # unix seconds
    created_by: str
    tags: tuple[str, ...]
    size: int
    comment: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneResult:
    deleted: list[dict[str, str]] = field(hash=False)  # Docker's ImagesDeleted items
    space_reclaimed: int


def _no_users(image_id: str) -> Sequence[ImageUser]:
    return ()


@dataclass(frozen=True, slots=True)
class _Parsed:
    manifest: ImageManifest
    manifest_desc: Descriptor
    config: ImageConfig


class ImageService:
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
        self._parsed: dict[Digest, _Parsed] = {}

    def tmp_dir(self) -> Path:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- creating names -----------------------------------------------------------------

    def register(self, target: Descriptor, ref: str | Reference | None) -> Image:
        """Record ``target`` (a manifest already in content) under ``ref``, or as a
        dangling image when ``ref`` is None. Every blob it names must be present."""
        named = _parse_ref(ref) if isinstance(ref, str) else ref
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
            named = _parse_ref(target_ref)
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
        ref = _parse_ref(s)
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
        refs = [_parse_ref(r.name, default_tag=False) for r in named]
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

    # --- removal ------------------------------------------------------------------------

    def intermediate_ids(self, images: Sequence[Image] | None = None) -> set[Digest]:
        """IDs of docker's *intermediate* images: nameless images another image stands
        on (:func:`stands_on`: a build step's image under the next step's). ``images``
        hides them without ``-a``, prune keeps them, and removing the image above them
        removes them (docker's parent chain, found here from the configs)."""
        images = self.list() if images is None else images
        return {a.id for a in images if a.dangling
                and any(b.id != a.id and stands_on(b, a) for b in images)}

    def remove(self, ref_or_id: str, *, force: bool = False, prune_parents: bool = True,
               in_use: Callable[[str], Iterable[ImageUser]] = _no_users) -> list[dict[str, str]]:
        """``docker rmi``; returns Docker's ``[{"Untagged": …}, {"Deleted": …}]``. With
        ``prune_parents`` (docker's default; ``noprune`` turns it off), the nameless
        images the removed one stood on go too, nearest first, while nothing else stands
        on them and no container uses them."""
        with self._lock:
            image_id, named = self._lookup(ref_or_id)
            try:
                image = self._image(image_id)
            except (NotFound, InvalidArgument) as exc:
                log.warning("removing image %s whose content is unusable: %s", image_id, exc)
                return self._remove_broken(image_id)
            users = list(in_use(str(image_id)))
            out: list[dict[str, str]] = []
            with self.db.transaction():
                deleted = self._delete(image, named, ref_or_id, force, users, out)
            if deleted:
                out.append({"Deleted": str(image_id)})
                out.extend(self._collect(image))
                if prune_parents:
                    out.extend(self._remove_parents(image, in_use))
            return out

    def _remove_parents(self, image: Image, in_use: Callable[[str], Iterable[ImageUser]]
                        ) -> list[dict[str, str]]:
        remaining = self.list()
        parents = sorted((p for p in remaining if p.dangling and stands_on(image, p)),
                         key=lambda p: len(p.config.history), reverse=True)
        out: list[dict[str, str]] = []
        for parent in parents:  # nearest first: once one stays, those below it stay too
            others = [o for o in remaining if o.id != parent.id]
            if any(stands_on(o, parent) for o in others) or list(in_use(str(parent.id))):
                break
            with self.db.transaction():
                for rec in self.db.images_by_config(parent.id):
                    self.db.delete_image(rec.name)
            out.append({"Deleted": str(parent.id)})
            out.extend(self._collect(parent))
            remaining = others
        return out

    def _delete(self, image: Image, named: Reference | None, given: str, force: bool,
                users: list[ImageUser], out: list[dict[str, str]]) -> bool:
        """The database half of ``remove``; True when the image itself goes."""
        refs = [_parse_ref(n, default_tag=False) for n in image.names]
        if named is not None:
            if not force and users and _single_reference(refs):
                raise Conflict(
                    f'conflict: unable to remove repository reference "{given}" (must force) - '
                    f"container {users[0].container_id[:12]} is using its referenced image "
                    f"{image.id.short()}"
                )
            refs = self._untag(named, refs, out)
            if named.digest is None and not any(r.digest is None and r.name == named.name
                                                for r in refs):
                # The repository's last tag went: its digest references go with it.
                for ref in [r for r in refs if r.digest is not None and r.name == named.name]:
                    refs = self._untag(ref, refs, out)
            if refs:
                return False
            if _conflict(image.id, users, refs, force=force) is not None:
                # Docker keeps an image still used by a container, now dangling.
                self._keep_dangling(image)
                return False
        else:
            if _single_reference(refs):
                if (c := _conflict(image.id, users, [], force=force)) is not None:
                    raise c
                for ref in list(refs):
                    refs = self._untag(ref, refs, out)
            if (c := _conflict(image.id, users, refs, force=force)) is not None:
                raise c
            for ref in list(refs):
                refs = self._untag(ref, refs, out)
        for rec in self.db.images_by_config(image.id):
            self.db.delete_image(rec.name)
        return True

    def _remove_broken(self, image_id: Digest) -> list[dict[str, str]]:
        """Drop every name of an image whose manifest or config is gone or corrupt."""
        out = []
        with self.db.transaction():
            for rec in self.db.images_by_config(image_id):
                self.db.delete_image(rec.name)
                if not rec.dangling:
                    out.append({"Untagged": _parse_ref(rec.name, default_tag=False).familiar()})
        out.append({"Deleted": str(image_id)})
        return out

    def _untag(self, ref: Reference, refs: list[Reference], out: list[dict[str, str]]) -> list[Reference]:
        self.db.delete_image(str(ref))
        out.append({"Untagged": ref.familiar()})
        return [r for r in refs if r != ref]

    def _keep_dangling(self, image: Image) -> None:
        if not self.db.images_by_config(image.id):
            t = now()
            self.db.put_image(ImageRecord(name=dangling_name(image.target.digest),
                                          target=image.target, config_digest=image.id,
                                          created_at=t, updated_at=t))

    def _collect(self, image: Image) -> list[dict[str, str]]:
        """Delete the blobs and unpacked layers of ``image`` that no image still uses.
        Returns a ``{"Deleted": chain_id}`` item per layer snapshot removed (as Docker)."""
        blobs: set[Digest] = set()
        chains: set[str] = set()
        for rec in self.db.list_images():
            try:
                parsed = self._parse(rec.target)
            except (NotFound, InvalidArgument):
                continue
            blobs |= {rec.target.digest, parsed.manifest_desc.digest, parsed.manifest.config.digest,
                      *(layer.digest for layer in parsed.manifest.layers)}
            chains |= {str(c) for c in parsed.config.chain_ids()}
        for digest in (image.target.digest, image.manifest.config.digest,
                       *(layer.digest for layer in image.manifest.layers)):
            if digest not in blobs:
                try:
                    self.content.delete(digest)
                except NotFound:
                    pass
        self._parsed.pop(image.target.digest, None)
        out = []
        for chain_id in reversed([str(c) for c in image.chain_ids()]):
            if chain_id in chains:
                break
            try:
                self.snapshotter.remove(chain_id)
            except NotFound:
                continue
            except FailedPrecondition:
                break  # a container (or another image's layer) stacks on it
            out.append({"Deleted": chain_id})
        return out

    def prune(self, *, dangling_only: bool = True,
              in_use: Callable[[str], Iterable[ImageUser]] = _no_users) -> PruneResult:
        """``docker image prune [-a]``: images without names (or, with ``dangling_only``
        False, every image) that no container uses."""
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        images = self.list()
        intermediate = self.intermediate_ids(images)
        for image in images:
            if (dangling_only and not image.dangling) or list(in_use(str(image.id))):
                continue
            if image.id in intermediate:
                continue  # a build step under another image: it goes with that one
            try:
                if image.dangling:
                    items = self.remove(str(image.id), in_use=in_use)
                else:
                    items = []
                    for name in image.names:
                        items += self.remove(name, in_use=in_use)
            except (Conflict, NotFound) as exc:
                log.info("prune: keeping %s: %s", image.id, exc)
                continue
            deleted += items
            if any(item.get("Deleted") == str(image.id) for item in items):
                reclaimed += image.size
        return PruneResult(deleted=deleted, space_reclaimed=reclaimed)

    # --- unpacking ----------------------------------------------------------------------

    def unpack(self, image: Image) -> Digest | None:
        """Unpack every layer into snapshots (once); the top ChainID."""
        return self.unpacker.unpack(image.manifest.layers, image.config)

    def prepare_rootfs(self, image: Image, key: str,
                       *, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """The writable snapshot ``key`` of a new container of ``image``; its mounts."""
        return self.unpacker.prepare_rootfs(image.manifest.layers, image.config, key, labels=labels)

    # --- presentation -------------------------------------------------------------------

    def history(self, ref_or_id: str) -> list[HistoryEntry]:
        """``docker history``: newest first; empty layers have size 0."""
        image = self.get(ref_or_id)
        layer_sizes = iter(self._layer_sizes(image))
        entries = list(image.config.history)
        if not entries:  # no history: one synthetic entry per layer, as Docker does
            rows = [("", "", "", next(layer_sizes, 0)) for _ in image.manifest.layers]
        else:
            rows = [(h.created, h.created_by, h.comment,
                     0 if h.empty_layer else next(layer_sizes, 0)) for h in entries]
        # an entry whose image is here (a build step's, or the base's) shows its ID and
        # tags, as docker's classic store does; the others are "<missing>"
        below = {len(p.config.history): p for p in self.list() if stands_on(image, p)} if entries else {}
        out = []
        for i, (created, created_by, comment, size) in enumerate(reversed(rows)):
            owner = image if i == 0 else below.get(len(rows) - i)
            out.append(HistoryEntry(
                id=str(owner.id) if owner is not None else "<missing>",
                created=_unix(created), created_by=created_by,
                tags=owner.repo_tags if owner is not None else (), size=size, comment=comment,
            ))
        return out

    def layer_sizes(self, image: Image) -> list[int]:
        """Per layer (base first): the unpacked size once unpacked, else the blob's."""
        return self._layer_sizes(image)

    def _layer_sizes(self, image: Image) -> list[int]:
        sizes = []
        for layer, chain_id in zip(image.manifest.layers, image.chain_ids()):
            try:
                sizes.append(int(self.snapshotter.stat(str(chain_id)).labels[USAGE_LABEL]))
            except (NotFound, KeyError, ValueError):
                sizes.append(layer.size)
        return sizes

    def graph_driver_data(self, image: Image) -> dict[str, str] | None:
        """Docker's overlay2 ``GraphDriver.Data`` for the image's top layer (LowerDir only
        when it has parents); None when it is not unpacked (or the snapshotter has no
        directories to name)."""
        chain_ids = image.chain_ids()
        layer_dirs = getattr(self.snapshotter, "layer_dirs", None)
        if not chain_ids or layer_dirs is None:
            return None
        try:
            own, lowers = layer_dirs(str(chain_ids[-1]))
        except NotFound:
            return None
        data = {"MergedDir": str(own / "merged"), "UpperDir": str(own / "fs"),
                "WorkDir": str(own / "work")}
        if lowers:
            data = {"LowerDir": ":".join(map(str, lowers)), **data}
        return data

    def inspect_dict(self, image: Image) -> dict[str, Any]:
        """Docker's ``GET /images/{name}/json`` body (API 1.45)."""
        cfg = image.config
        d: dict[str, Any] = {
            "Id": str(image.id),
            "RepoTags": list(image.repo_tags),
            "RepoDigests": list(image.repo_digests),
            "Parent": "",
            "Comment": cfg.extra.get("comment", "") if isinstance(cfg.extra.get("comment"), str) else "",
            "Created": cfg.created or ZERO_TIME,
            "DockerVersion": "",
            "Author": cfg.author,
            "Config": None if cfg.config is None else container_config(cfg.config),
            "Architecture": cfg.architecture,
            "Os": cfg.os,
            "Size": image.size,
            "GraphDriver": {"Name": "overlay2", "Data": self.graph_driver_data(image)},
            "RootFS": {"Type": cfg.rootfs.type, "Layers": [str(x) for x in cfg.rootfs.diff_ids]},
            "Metadata": {"LastTagTime": _go_time(image.last_tag_time)},
        }
        if cfg.variant:
            d["Variant"] = cfg.variant
        if cfg.os_version:
            d["OsVersion"] = cfg.os_version
        return d


def container_config(c: ExecutionConfig) -> dict[str, Any]:
    """An image's execution config in the shape of Docker's ``container.Config``."""
    d: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": c.user,
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
    }
    if c.exposed_ports:
        d["ExposedPorts"] = dict(c.exposed_ports)
    d.update({
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": None if c.env is None else list(c.env),
        "Cmd": None if c.cmd is None else list(c.cmd),
    })
    if c.healthcheck is not None:
        d["Healthcheck"] = c.healthcheck.to_dict()
    if c.args_escaped:
        d["ArgsEscaped"] = True
    d.update({
        "Image": "",
        "Volumes": None if c.volumes is None else dict(c.volumes),
        "WorkingDir": c.working_dir,
        "Entrypoint": None if c.entrypoint is None else list(c.entrypoint),
        "OnBuild": None if c.on_build is None else list(c.on_build),
        "Labels": None if c.labels is None else dict(c.labels),
    })
    if c.stop_signal:
        d["StopSignal"] = c.stop_signal
    if c.shell is not None:
        d["Shell"] = list(c.shell)
    return d


# --- Docker's rules, as small pure functions ------------------------------------------


def stands_on(upper: Image, lower: Image) -> bool:
    """Does ``upper`` extend ``lower`` (``lower`` is its parent or an earlier ancestor):
    ``lower``'s history is a strict prefix of ``upper``'s and its layers are the first of
    ``upper``'s. History entries carry their creation times, so two unrelated images do
    not match by chance; an image built on a cached step does, as under docker."""
    below, above = lower.config.history, upper.config.history
    layers_below, layers_above = lower.config.rootfs.diff_ids, upper.config.rootfs.diff_ids
    return (0 < len(below) < len(above) and above[:len(below)] == below
            and layers_above[:len(layers_below)] == layers_below)


def _parse_ref(s: str, *, default_tag: bool = True) -> Reference:
    return Reference.parse(s, default_tag=default_tag)


def _single_reference(refs: list[Reference]) -> bool:
    """Docker's ``isSingleReference``: at most one tag, and any digest references are
    of that tag's repository (or of one repository when there is no tag)."""
    if len(refs) <= 1:
        return len(refs) == 1
    tags = [r for r in refs if r.digest is None]
    if len(tags) > 1:
        return False
    digest_repos = {r.name for r in refs if r.digest is not None}
    single = tags[0] if tags else refs[0]
    return len(digest_repos) == 1 and single.name in digest_repos


def _conflict(image_id: Digest, users: list[ImageUser], refs: list[Reference], *,
              force: bool) -> Conflict | None:
    """Docker's ``checkImageDeleteConflict``: running containers block even ``force``;
    remaining names and stopped containers block unless ``force``."""
    def err(hard: bool, message: str) -> Conflict:
        how = "cannot be forced" if hard else "must be forced"
        return Conflict(f"conflict: unable to delete {image_id.short()} ({how}) - {message}")

    running = next((u for u in users if u.running), None)
    if running is not None:
        return err(True, f"image is being used by running container {running.container_id[:12]}")
    if force:
        return None
    if refs:
        return err(False, "image is referenced in multiple repositories")
    stopped = next((u for u in users if not u.running), None)
    if stopped is not None:
        return err(False, f"image is being used by stopped container {stopped.container_id[:12]}")
    return None


def _unix(created: str) -> int:
    if not created:
        return 0
    try:
        return int(datetime.fromisoformat(created).timestamp())
    except ValueError:
        return 0


def _go_time(t: datetime | None) -> str:
    if t is None:
        return ZERO_TIME
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
