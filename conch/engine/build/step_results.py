"""A build step's result in a stage the build does not export: a snapshot and a config,
never an image.

Why: BuildKit makes layers only for what it exports. A stage whose files reach the
exported image only through ``COPY --from`` or ``RUN --mount=from`` need not have every
step's files tarred, hashed, gzipped and stored as a blob, nor an image registered per
step (the issue's build stage: 80 of its 100 ms of step overhead). Such a stage's steps
("deferred" stages: every stage but the target, when the build may defer) keep their
results as committed snapshots; only the exported image's layers are made, once.

Contract:

* :class:`Lazy` -- one step's result: its ID (the step's inputs hashed, the step cache's
  key: shown as `` ---> <id>``, *not* an image: ``docker run`` of it finds nothing), the
  image the stage stands on (``base``), the image config so far (the base's with each
  step's history entry and execution config; ``rootfs.diff_ids`` still the base's), and
  ``layers``: the committed snapshots of the steps that wrote files, in order, each on
  the one before (the first on the base's top ChainID). Stored as JSON in the step cache
  (:class:`conch.engine.build.step_images.StepCache`), which keys the next steps by it.
* :func:`advance` -- the Lazy after a step (``snapshot``: the step wrote files).
* :func:`commit_snapshot` -- a step's active snapshot (a RUN container's, a COPY/WORKDIR
  root) tidied as a layer would be and committed, labelled ``BUILD_STEP_LABEL`` (so the
  image GC keeps it: the build cache, not an image, holds it).
* :func:`prepare` -- a new writable snapshot on a Lazy (or an image, or None: scratch).
* :func:`materialize` -- the Lazy as an image (an exported stage's ``FROM`` it): each
  pending layer tarred once from its snapshot's directories, config and manifest written.
* :func:`drop_snapshots` / :func:`reconcile` -- step snapshots nothing names any more
  (replaced by a ``--no-cache`` rebuild, ``builder prune``, conchd's start), leaves first.

Durability: a step snapshot and its cache entry are cache, not images, and are not
fsynced (the cache entry never was). A crash may lose cache -- an entry whose snapshot
or base is gone is a miss, and :func:`reconcile` at conchd's start drops such entries
and step snapshots no entry names -- but never an image: an exported image is written
as before (its blobs durable before its name).

Plain synchronous code (worker threads).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from conch.errors import ConchError, FailedPrecondition, NotFound
from conch.images.gc import BUILD_STEP_LABEL
from conch.oci.image import ExecutionConfig, History, ImageConfig

log = logging.getLogger(__name__)

_running = 0  # builds in flight in this process: replaced snapshots go only when alone
_running_lock = threading.Lock()


@contextlib.contextmanager
def build_running():
    """Held for one build; :func:`alone` says whether it is the only one."""
    global _running
    with _running_lock:
        _running += 1
    try:
        yield
    finally:
        with _running_lock:
            _running -= 1


def alone(own: int = 1) -> bool:
    """No build in flight but the caller's ``own`` (a build: 1; builder prune: 0)."""
    with _running_lock:
        return _running <= own


@dataclass(frozen=True, slots=True, kw_only=True)
class Lazy:
    id: str                      # "sha256:<hex>" of the step's inputs
    base: str                    # the image ID the stage stands on
    config: ImageConfig          # the image config so far (diff_ids: the base's)
    layers: tuple[str, ...] = ()  # committed step snapshots, bottom first
    oci: bool = False            # media types follow the base (OCI or Docker schema 2)

    @property
    def top(self) -> str | None:
        return self.layers[-1] if self.layers else None

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "base": self.base, "layers": list(self.layers),
                           "oci": self.oci, "config": json.loads(self.config.to_bytes())})

    @classmethod
    def from_json(cls, text: str) -> "Lazy":
        d = json.loads(text)
        return cls(id=d["id"], base=d["base"], layers=tuple(d["layers"]), oci=bool(d["oci"]),
                   config=ImageConfig.from_bytes(json.dumps(d["config"]).encode()))


def step_config(base: ImageConfig, config: ExecutionConfig, created_by: str, *,
                created: str, author: str = "", diff_id=None,
                history: History | None = None) -> ImageConfig:
    """``base`` plus one step: its execution config, its history entry (``empty_layer``
    unless ``diff_id``) and, with ``diff_id``, its layer."""
    if history is None:
        history = History(created=created, created_by=created_by, empty_layer=diff_id is None)
    extra = {k: v for k, v in base.extra.items()
             if k not in ("comment", "container", "container_config")}
    diff_ids = base.rootfs.diff_ids + ((diff_id,) if diff_id is not None else ())
    return replace(base, created=created, author=author or base.author, config=config,
                   rootfs=replace(base.rootfs, diff_ids=diff_ids),
                   history=base.history + (history,), extra=extra)


def created_at(epoch: int | None) -> str:
    from conch.images.importer import rfc3339_nano

    return rfc3339_nano(epoch * 1_000_000_000 if epoch is not None else time.time_ns())


def advance(parent, config: ExecutionConfig, created_by: str, *, step_id: str,
            snapshot: str | None = None, author: str = "", epoch: int | None = None) -> Lazy:
    """The result of a step on ``parent`` (a :class:`Lazy` or an image)."""
    from conch.oci import mediatype as mt

    if isinstance(parent, Lazy):
        base, cfg, layers, oci = parent.base, parent.config, parent.layers, parent.oci
    else:
        base, cfg, layers = str(parent.id), parent.config, ()
        oci = parent.manifest.media_type == mt.OCI_MANIFEST
    cfg = step_config(cfg, config, created_by, created=created_at(epoch), author=author)
    if snapshot is not None:  # the history entry records a layer: materialize makes it
        last = replace(cfg.history[-1], empty_layer=False)
        cfg = replace(cfg, history=cfg.history[:-1] + (last,))
    return Lazy(id=step_id, base=base, config=cfg,
                layers=layers + ((snapshot,) if snapshot is not None else ()), oci=oci)


def commit_snapshot(snapshotter, key: str, step_id: str, epoch: int | None = None,
                    mount_targets=()) -> str | None:
    """Commit the (unmounted) active snapshot ``key`` a step wrote into as a step
    snapshot; its name, or None (and ``key`` removed) when the step changed nothing."""
    from conch.engine.build.layers import tidy_upper
    from conch.snapshots import lower_dirs, writable_dir

    mounts = snapshotter.mounts(key)
    if not tidy_upper(writable_dir(mounts), lower_dirs(mounts), mount_targets, epoch):
        with contextlib.suppress(NotFound):
            snapshotter.remove(key)
        return None
    name = f"build-step-{secrets.token_hex(12)}"
    snapshotter.commit(name, key, labels={BUILD_STEP_LABEL: step_id})
    return name


def prepare(images, snapshotter, key: str, source) -> list:
    """A writable snapshot ``key`` on ``source`` (a Lazy, an image, or None); mounts."""
    if isinstance(source, Lazy):
        if source.top is not None:
            return snapshotter.prepare(key, source.top)
        source = images.get(source.base)
    if source is None:
        return snapshotter.prepare(key, None)
    return images.prepare_rootfs(source, key)


def materialize(images, snapshotter, lazy: Lazy) -> str:
    """Register ``lazy`` as a (dangling) image; its ID. Each step snapshot becomes a
    layer blob (tar, diff_id, gzip: :func:`conch.engine.build.layers.write_layer`) --
    the only time a deferred stage's files are tarred. Its containers unpack those
    layers on first use (the snapshots are not ChainID-named)."""
    from conch.engine.build.layers import write_layer
    from conch.oci import mediatype as mt
    from conch.oci.descriptor import Descriptor
    from conch.oci.image import ImageManifest

    base = images.get(lazy.base)
    media = mt.OCI_LAYER_GZIP if lazy.oci else mt.DOCKER_LAYER_GZIP
    made = []
    for name in lazy.layers:
        own, lowers = snapshotter.layer_dirs(name)
        made.append(write_layer(images, lowers, Path(own) / "fs", media))
    cfg = replace(lazy.config, rootfs=replace(lazy.config.rootfs, diff_ids=(
        lazy.config.rootfs.diff_ids + tuple(d for _, d in made))))
    cfg_bytes = cfg.to_bytes()
    images.content.put(cfg_bytes)
    manifest = ImageManifest(
        media_type=mt.OCI_MANIFEST if lazy.oci else mt.DOCKER_MANIFEST,
        config=Descriptor.of(cfg_bytes, mt.OCI_CONFIG if lazy.oci else mt.DOCKER_CONFIG),
        layers=tuple(base.manifest.layers) + tuple(desc for desc, _ in made))
    manifest_bytes = manifest.to_bytes()
    images.content.put(manifest_bytes)
    return str(images.register(Descriptor.of(manifest_bytes, manifest.media_type), None).id)


def drop_snapshots(snapshotter, names) -> int:
    """Remove the step snapshots ``names`` that nothing stands on, leaves first (a
    snapshot another one or a mount stands on stays); bytes freed."""
    todo = set(names)
    freed = 0
    progress = True
    while todo and progress:
        progress = False
        for name in sorted(todo):
            try:
                info = snapshotter.stat(name)
            except NotFound:
                todo.discard(name)
                continue
            if not info.labels.get(BUILD_STEP_LABEL):  # never anything else
                todo.discard(name)
                continue
            try:
                size = snapshotter.usage(name).size
            except ConchError:
                size = 0
            try:
                snapshotter.remove(name)
            except FailedPrecondition:
                continue  # something stands on it: maybe gone after another pass
            except NotFound:
                pass
            else:
                freed += size
            todo.discard(name)
            progress = True
    return freed


def step_snapshots(snapshotter) -> set[str]:
    from conch.snapshots import Kind

    return {i.key for i in snapshotter.walk()
            if i.kind is Kind.COMMITTED and i.labels.get(BUILD_STEP_LABEL)}


def reconcile(cache_dir: Path, images, snapshotter) -> None:
    """At conchd's start (no build runs): drop deferred-step entries whose base image or
    snapshots are gone (a crash lost them: never fsynced), entries that cannot be read,
    a crash's temp files, and step snapshots no entry names."""
    present = step_snapshots(snapshotter)
    named: set[str] = set()
    for path in sorted(cache_dir.glob("*")) if cache_dir.is_dir() else ():
        try:
            if ".tmp" in path.name:
                raise ValueError("a crash's temp file")
            text = path.read_text().strip()
            if text.startswith("{"):
                lazy = Lazy.from_json(text)
                images.get(lazy.base)
                if not set(lazy.layers) <= present:
                    raise NotFound("a step snapshot is gone")
                named.update(lazy.layers)
            elif not text.startswith("sha256:"):
                raise ValueError("torn")
            # an image ID is checked when it is looked up (a removed image is a miss):
            # not here, where every build's every step would slow conchd's start
        except (OSError, ValueError, KeyError, TypeError, ConchError) as exc:
            log.info("build cache: dropping entry %s: %s", path.name, exc)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    drop_snapshots(snapshotter, present - named)
