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
* :class:`StepCache` maps sha256(parent's content, ``created_by``) to what a step made:
  ``<data-root>/build-cache/<key>`` holds the image ID, or a deferred stage's step result
  (:class:`conch.engine.build.step_results.Lazy`, whose parent content is its own key),
  written atomically, not fsynced. A hit whose image or snapshots are gone is a miss. COPY/ADD put their sources' content hash in
  ``created_by`` (``COPY file:<hex> in /dst``), so changed files miss.

Plain synchronous code (worker threads), except :func:`scratch_root`'s async face.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from dataclasses import replace
from pathlib import Path

from conch.engine.build import step_results
from conch.errors import NotFound
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.image import ExecutionConfig, History, ImageConfig, ImageManifest, RootFS
from conch.snapshots import mount_all, unmount

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
    else:
        created = step_results.created_at(epoch)
    if parent is None:
        p = images.platform
        base = ImageConfig(architecture=p.architecture, os=p.os, variant=p.variant,
                           rootfs=RootFS())
        layers: tuple[Descriptor, ...] = ()
    else:
        base, layers = parent.config, parent.manifest.layers
    cfg = step_results.step_config(base, config, created_by, created=created, author=author,
                                   diff_id=layer[1] if layer else None, history=history)
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
    """Mount a fresh writable snapshot of ``image`` (None: empty; a
    :class:`step_results.Lazy`: on its top step snapshot); yields (key, root).
    The snapshot is removed afterwards -- unless ``keep`` and the block succeeded: the
    caller then makes the layer from it (unmounted: :func:`conch.engine.build.layers.
    commit_layer`) and removes it when that did not keep it."""
    key = f"build-{secrets.token_hex(12)}"
    base = Path(exec_root) / "build"
    base.mkdir(mode=0o700, exist_ok=True)
    target = Path(tempfile.mkdtemp(dir=base, prefix="root-"))
    ok = False
    try:
        mounts = step_results.prepare(images, snapshotter, key, image)
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
    """sha256(parent's content, created_by) -> the step's result, one small file per
    entry: an image ID, or a :class:`step_results.Lazy` as JSON (a step of a stage the
    build did not export). Written atomically, never fsynced: it is cache (a crash may
    lose an entry, :func:`step_results.reconcile` drops a dangling one at start)."""

    def __init__(self, root: str | os.PathLike, images, salt: str = ""):
        self.dir = Path(root) / "build-cache"
        self.images = images
        self.salt = salt  # what else the step's result depends on (SOURCE_DATE_EPOCH)

    def salted(self, salt: str) -> "StepCache":
        return StepCache(self.dir.parent, self.images, salt)

    def _content_key(self, parent) -> str:
        """The parent by its content -- layers, execution config, platform -- not by its
        ID: a parent rebuilt to the same files and config (other times in its history)
        finds the same next steps (BuildKit keys steps by their inputs' content). A
        Lazy parent's ID already is its inputs' hash."""
        if isinstance(parent, step_results.Lazy):
            return "step:" + parent.id
        if not parent:
            return ""
        try:
            cfg = self.images.get(parent).config
        except NotFound:
            return parent
        same = replace(cfg, created="", history=(), extra={})
        return "content:" + hashlib.sha256(same.to_bytes()).hexdigest()

    def step_id(self, parent, created_by: str) -> str:
        """The step's key: ``sha256:<hex>`` of its parent's content and instruction."""
        text = f"{self._content_key(parent)}\n{created_by}" + (f"\n{self.salt}" if self.salt else "")
        return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def _path(self, parent, created_by: str) -> Path:
        return self.dir / self.step_id(parent, created_by).partition(":")[2]

    def get(self, parent, created_by: str):
        """The step's cached result (an image ID or a Lazy) or None; one whose image
        or snapshots are gone is a miss."""
        try:
            text = self._path(parent, created_by).read_text().strip()
            if text.startswith("{"):
                lazy = step_results.Lazy.from_json(text)
                self.images.get(lazy.base)
                for name in lazy.layers:
                    self.images.snapshotter.stat(name)
                return lazy
            self.images.get(text)
        except (FileNotFoundError, NotFound, ValueError, KeyError, TypeError):
            return None
        return text

    def clear(self) -> list[str]:
        """Forget every entry (``docker builder prune``); the keys dropped. The images
        stay: they are the intermediate images of the builds, removed with theirs."""
        dropped = []
        for path in self.dir.glob("*") if self.dir.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                dropped.append(path.name)
        return dropped

    def put(self, parent, created_by: str, result) -> tuple[str, ...]:
        """Record ``result`` (an image ID or a Lazy); the step snapshots the entry it
        replaces held that ``result`` does not (garbage unless another entry names
        them: :func:`step_results.drop_snapshots` when the build ends)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(parent, created_by)
        replaced: tuple[str, ...] = ()
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            old = path.read_text().strip()
            if old.startswith("{"):
                keep = set(result.layers) if isinstance(result, step_results.Lazy) else set()
                replaced = tuple(n for n in step_results.Lazy.from_json(old).layers if n not in keep)
        tmp = path.with_suffix(".tmp" + secrets.token_hex(4))
        tmp.write_text(result.to_json() if isinstance(result, step_results.Lazy) else result)
        os.replace(tmp, path)
        return replaced
