"""What each build step leaves behind: an image, and a cache entry that finds it again.

Contract:

* :func:`commit_step` writes the step's image: the parent's config with the stage's
  execution config, one more history entry (``created_by`` as docker writes it;
  ``empty_layer`` when the step made no layer) and, for RUN/COPY/ADD/WORKDIR, one more
  gzip layer; manifest media types follow the parent (Docker schema 2 for ``scratch``).
  The image is registered without a name (docker's intermediate images) and its ID
  returned.
* :func:`layer_of` makes a step's layer from its snapshot (and keeps the snapshot as
  the layer's unpacked form): :mod:`conch.engine.build.layers`.
* :func:`scratch_root` prepares a writable snapshot of an image and mounts it on a
  private directory under ``<exec-root>/build`` for the block (COPY writes into it,
  COPY --from reads from it); the mount and, unless kept, the snapshot go at the end.
* :class:`StepCache` maps sha256(parent image's content, ``created_by``) to the image a step
  made: ``<data-root>/build-cache/<key>`` holds the image ID (written atomically). A hit
  whose image was removed since is a miss. COPY/ADD put their sources' content hash in
  ``created_by`` (``COPY file:<hex> in /dst``), so changed files miss.

Plain synchronous code (worker threads), except :func:`scratch_root`'s async face.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from conch.errors import NotFound
from conch.images.importer import rfc3339_nano
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.image import ExecutionConfig, History, ImageConfig, ImageManifest, RootFS
from conch.snapshots import lower_dirs, mount_all, unmount, writable_dir

SHELL_PREFIX = "/bin/sh -c "


def nop_created_by(comment: str) -> str:
    """docker's history text of a config-only step (two spaces: Cmd was
    ``[/bin/sh, -c, "#(nop) ", comment]`` joined by spaces)."""
    return f"{SHELL_PREFIX}#(nop)  {comment}"


def _is_oci(parent) -> bool:
    return parent is not None and parent.manifest.media_type == mt.OCI_MANIFEST


def layer_media_type(parent) -> str:
    return mt.OCI_LAYER_GZIP if _is_oci(parent) else mt.DOCKER_LAYER_GZIP


def commit_step(images, parent, config: ExecutionConfig, created_by: str, *,
                layer=None, author: str = "", history: History | None = None,
                epoch: int | None = None) -> str:
    """Register the step's image over ``parent`` (an Image, or None for scratch);
    ``history``: the entry to record (a cache-from image's, kept as it was); ``epoch``
    (SOURCE_DATE_EPOCH): the time written for the image and its new history entry
    (the base image's entries are inputs: kept, as BuildKit does)."""
    if history is not None:
        created = history.created
    elif epoch is not None:
        created = rfc3339_nano(epoch * 1_000_000_000)
    else:
        created = rfc3339_nano(time.time_ns())
    if parent is None:
        p = images.platform
        base = ImageConfig(architecture=p.architecture, os=p.os, variant=p.variant,
                           rootfs=RootFS())
        layers: tuple[Descriptor, ...] = ()
    else:
        base, layers = parent.config, parent.manifest.layers
    if history is None:
        history = History(created=created, created_by=created_by, empty_layer=layer is None)
    extra = {k: v for k, v in base.extra.items()
             if k not in ("comment", "container", "container_config")}
    cfg = replace(base, created=created, author=author or base.author, config=config,
                  rootfs=replace(base.rootfs, diff_ids=base.rootfs.diff_ids + ((layer[1],) if layer else ())),
                  history=base.history + (history,), extra=extra)
    cfg_bytes = cfg.to_bytes()
    images.content.put(cfg_bytes)
    oci = _is_oci(parent)
    manifest = ImageManifest(
        media_type=mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST,
        config=Descriptor.of(cfg_bytes, mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG),
        layers=layers + ((layer[0],) if layer else ()))
    manifest_bytes = manifest.to_bytes()
    images.content.put(manifest_bytes)
    image = images.register(Descriptor.of(manifest_bytes, manifest.media_type), None)
    return str(image.id)


def from_sources(images, parent, config: ExecutionConfig, created_by: str, sources,
                 author: str = "") -> str | None:
    """``cachefrom`` (moby image/cache ImageCache.GetCache over its sources): an image
    among ``sources`` whose history and layers begin with ``parent``'s and whose next
    history entry is this step (``created_by``) stands in for the step. When that entry
    is the source's last, the source itself is the step's image; otherwise the step's
    image is rebuilt from ``parent`` plus that entry and its layer (restoreCachedImage),
    history entry kept as it was so the following steps match too. None: no source fits."""
    base_history = tuple(parent.config.history) if parent is not None else ()
    base_layers = tuple(parent.config.rootfs.diff_ids) if parent is not None else ()
    n = len(base_history)
    for target in sources:
        history = tuple(target.config.history)
        diff_ids = tuple(target.config.rootfs.diff_ids)
        if len(history) <= n or history[:n] != base_history or diff_ids[:len(base_layers)] != base_layers:
            continue
        if history[n].created_by != created_by:
            continue
        if len(history) - 1 == n:
            return str(target.id)
        layer = None
        if not history[n].empty_layer:
            index = sum(1 for h in history[:n] if not h.empty_layer)
            if index >= len(target.manifest.layers):
                continue
            layer = (target.manifest.layers[index], diff_ids[index])
        return commit_step(images, parent, config, created_by, layer=layer,
                           author=author, history=history[n])
    return None


@contextlib.contextmanager
def scratch_root(images, snapshotter, exec_root: str, image, *, keep: bool = False):
    """Mount a fresh writable snapshot of ``image`` (None: empty); yields (key, root).
    The snapshot is removed afterwards -- unless ``keep`` and the block succeeded: the
    caller then makes the layer from it (unmounted: :func:`conch.engine.build.layers.
    commit_layer`) and removes it when that did not keep it."""
    key = f"build-{secrets.token_hex(12)}"
    base = Path(exec_root) / "build"
    base.mkdir(mode=0o700, exist_ok=True)
    target = Path(tempfile.mkdtemp(dir=base, prefix="root-"))
    ok = False
    try:
        if image is None:
            mounts = snapshotter.prepare(key, None)
        else:
            mounts = images.prepare_rootfs(image, key)
        try:
            mount_all(mounts, target)
            try:
                yield key, target
                ok = True
            finally:
                unmount(target)
        finally:
            if not (ok and keep):
                with contextlib.suppress(NotFound):
                    snapshotter.remove(key)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(target)


def layer_of(images, snapshotter, key: str, parent, epoch: int | None):
    """The step's layer from the (unmounted) snapshot ``key``; the snapshot is kept as
    the layer's unpacked form or removed (:mod:`conch.engine.build.layers`)."""
    from conch.engine.build.layers import commit_layer

    kept = False
    try:
        layer, kept = commit_layer(images, snapshotter, key, parent, layer_media_type(parent), epoch)
    finally:
        if not kept:
            with contextlib.suppress(NotFound):
                snapshotter.remove(key)
    return layer


def sweep_leftovers(snapshotter, exec_root: str) -> None:
    """At conchd's start: what a crash left of :func:`scratch_root` (the mounted root of a
    COPY or WORKDIR step and its ``build-*`` snapshot). No build runs yet."""
    from conch.snapshots import Kind

    base = Path(exec_root) / "build"
    if base.is_dir():
        for entry in base.iterdir():
            if entry.name.startswith("root-"):
                unmount(entry)  # a no-op when nothing is mounted there
                with contextlib.suppress(OSError):
                    entry.rmdir()
    for info in list(snapshotter.walk()):
        if info.kind is Kind.ACTIVE and info.key.startswith("build-"):
            with contextlib.suppress(NotFound):
                snapshotter.remove(info.key)


class StepCache:
    """sha256(parent's content, created_by) -> image ID, one small file per entry."""

    def __init__(self, root: str | os.PathLike, images, salt: str = ""):
        self.dir = Path(root) / "build-cache"
        self.images = images
        self.salt = salt  # what else the step's result depends on (SOURCE_DATE_EPOCH)

    def salted(self, salt: str) -> "StepCache":
        return StepCache(self.dir.parent, self.images, salt)

    def _content_key(self, parent_id: str) -> str:
        """The parent by its content -- layers, execution config, platform -- not by its
        ID: a parent rebuilt to the same files and config (other times in its history)
        finds the same next steps (BuildKit keys steps by their inputs' content)."""
        if not parent_id:
            return ""
        try:
            cfg = self.images.get(parent_id).config
        except NotFound:
            return parent_id
        same = replace(cfg, created="", history=(), extra={})
        return "content:" + hashlib.sha256(same.to_bytes()).hexdigest()

    def _path(self, parent_id: str, created_by: str) -> Path:
        parent = self._content_key(parent_id)
        text = f"{parent}\n{created_by}" + (f"\n{self.salt}" if self.salt else "")
        key = hashlib.sha256(text.encode("utf-8", "surrogateescape"))
        return self.dir / key.hexdigest()

    def get(self, parent_id: str, created_by: str) -> str | None:
        try:
            image_id = self._path(parent_id, created_by).read_text().strip()
            self.images.get(image_id)
        except (FileNotFoundError, NotFound):
            return None
        return image_id

    def clear(self) -> list[str]:
        """Forget every entry (``docker builder prune``); the keys dropped. The images
        stay: they are the intermediate images of the builds, removed with theirs."""
        dropped = []
        for path in self.dir.glob("*") if self.dir.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                dropped.append(path.name)
        return dropped

    def put(self, parent_id: str, created_by: str, image_id: str) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(parent_id, created_by)
        tmp = path.with_suffix(".tmp" + secrets.token_hex(4))
        tmp.write_text(image_id)
        os.replace(tmp, path)
