"""A container's changes against its image: ``docker diff`` and ``docker commit`` (the
upper dir of its snapshot as a layer, the image config merged with the commit's).

Docker's init layer (daemon/initlayer): dockerd diffs and commits a container against a
hidden layer holding the mount points it needs (``/proc``, ``/sys``, ``/dev``,
``/etc/hosts``…). conch has no such layer: the runtime makes those mount points in the
container's upper dir. :func:`_init_leftovers` names them so that ``diff`` and ``commit``
leave them out as dockerd does (a parent that also holds real changes stays, as ``C``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from conch.engine.model import Container
from conch.errors import NotFound
from conch.images.importer import apply_changes, rfc3339_nano
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digester
from conch.oci.image import ExecutionConfig, Healthcheck, History, ImageManifest
from conch.oci.reference import Reference
from conch.snapshots import lower_dirs, writable_dir

if TYPE_CHECKING:  # conch.archive (and tarfile) load at the first diff/commit, not at start-up
    from conch.archive.diff import Change


log = logging.getLogger(__name__)


# dockerd's init layer: files, then directories deepest first (see the module docstring)
_INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab", ".dockerenv",
               "dev/console")


_INIT_DIRS = ("dev/pts", "dev/shm", "dev", "proc", "sys", "etc")


def _init_leftovers(upper: Path) -> set[str]:
    """The runtime's mount points in ``upper`` that dockerd's init layer would hide."""
    drop: set[str] = set()
    for rel in _INIT_FILES:
        with contextlib.suppress(OSError):
            st = os.lstat(upper / rel)
            empty = stat.S_ISREG(st.st_mode) and st.st_size == 0
            mtab = stat.S_ISLNK(st.st_mode) and os.readlink(upper / rel) == "/proc/mounts"
            if empty or mtab:
                drop.add(rel)
    for rel in _INIT_DIRS:
        path = upper / rel
        if not path.is_dir() or path.is_symlink():
            continue
        with contextlib.suppress(OSError):
            if os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                continue  # an opaque dir records a deletion: keep it
        if all(f"{rel}/{name}" in drop for name in os.listdir(path)):
            drop.add(rel)
    return drop


def _snapshot_dirs(service, cid: str) -> tuple[list[Path], Path]:
    mounts = service.snapshotter.mounts(cid)
    return lower_dirs(mounts), writable_dir(mounts)


def container_changes(service, cid: str) -> list[Change]:
    """``docker diff``: the upper dir against the image's layers, init leftovers hidden."""
    from conch.archive.diff import ChangeKind, changes as diff_changes

    lowers, upper = _snapshot_dirs(service, cid)
    drop = _init_leftovers(upper)
    out = []
    for ch in diff_changes(lowers, upper):
        rel = ch.path.lstrip("/")
        if rel in drop:
            continue
        if rel in _INIT_DIRS and ch.kind is ChangeKind.ADDED:
            ch = replace(ch, kind=ChangeKind.CHANGED)  # the init layer would have it
        out.append(ch)
    return out


# -- commit ------------------------------------------------------------------------------

def container_exec_config(c: Container, image_config: ExecutionConfig | None) -> ExecutionConfig:
    """The container's ``Config`` as dockerd keeps it: the create request over the image's."""
    spec = c.spec
    hc = None
    if spec.healthcheck is not None:
        h = spec.healthcheck
        hc = Healthcheck(test=tuple(h.test) or None, interval=h.interval_ns, timeout=h.timeout_ns,
                         start_period=h.start_period_ns, retries=h.retries)
    own = ExecutionConfig(
        user=spec.user, env=tuple(spec.env) or None, cmd=spec.cmd, entrypoint=spec.entrypoint,
        working_dir=spec.working_dir, labels=dict(spec.labels) or None,
        exposed_ports={p: {} for p in spec.exposed_ports} or None,
        volumes={v: {} for v in spec.volumes} or None, stop_signal=spec.stop_signal,
        healthcheck=hc)
    return merge_config(own, image_config)


def merge_config(user: ExecutionConfig, base: ExecutionConfig | None) -> ExecutionConfig:
    """moby's ``daemon.merge``: what ``user`` leaves unset comes from ``base``."""
    if base is None:
        return user
    env = user.env
    if not env:
        env = base.env
    else:
        keys = {e.partition("=")[0] for e in env}
        env = tuple(env) + tuple(e for e in base.env or () if e.partition("=")[0] not in keys)
    cmd, entrypoint = user.cmd, user.entrypoint
    if not entrypoint:
        if not cmd:
            cmd = base.cmd
        if entrypoint is None:
            entrypoint = base.entrypoint
    return replace(
        user, user=user.user or base.user, env=env, cmd=cmd, entrypoint=entrypoint,
        exposed_ports={**(base.exposed_ports or {}), **(user.exposed_ports or {})} or None,
        labels={**(base.labels or {}), **(user.labels or {})} or None,
        volumes={**(base.volumes or {}), **(user.volumes or {})} or None,
        healthcheck=user.healthcheck or base.healthcheck,
        working_dir=user.working_dir or base.working_dir,
        stop_signal=user.stop_signal or base.stop_signal)


class _LayerSink:
    """Uncompressed tar bytes in; diff_id hashed, gzip written to the content store."""

    def __init__(self, writer):
        self.writer = writer
        self.diff = Digester()
        self.gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip, mtime 0: reproducible

    def write(self, data) -> int:
        self.diff.update(data)
        if out := self.gzip.compress(data):
            self.writer.write(out)
        return len(data)

    def finish(self) -> None:
        self.writer.write(self.gzip.flush())


def write_commit_layer(images, lowers: list[Path], upper: Path, media_type: str):
    """The upper dir as a gzip layer blob; (descriptor, diff_id), or None when it holds
    no change (dockerd then adds an empty-layer history entry and no layer)."""
    import tarfile

    from conch.archive.diff import write_diff

    drop = _init_leftovers(upper)
    ref = f"commit-{secrets.token_hex(8)}"
    with tempfile.TemporaryFile(dir=images.tmp_dir(), prefix="conch-commit-") as raw:
        write_diff(lowers, upper, raw)
        raw.seek(0)
        writer = images.content.writer(ref)
        try:
            with writer:
                sink = _LayerSink(writer)
                kept = 0
                with tarfile.open(fileobj=raw, mode="r|", encoding="utf-8", errors="surrogateescape") as src, \
                        tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT,
                                     encoding="utf-8", errors="surrogateescape") as dst:
                    for m in src:
                        src.members.clear()
                        if m.name.rstrip("/") in drop:
                            continue
                        kept += 1
                        dst.addfile(m, src.extractfile(m) if m.isreg() else None)
                if not kept:
                    raise NoChanges()
                sink.finish()
                blob = writer.commit()
        except BaseException:
            with contextlib.suppress(NotFound):
                images.content.abort(ref)
            raise
    return blob.descriptor(media_type), sink.diff.digest()


class NoChanges(Exception):
    """:func:`write_commit_layer` found no change to record: the step or commit adds no
    layer (docker writes an empty_layer history entry instead)."""


def commit_image(service, c: Container, ref: Reference | None, *, message: str, author: str,
                 changes: Iterable[str], config: ExecutionConfig | None) -> str:
    """Docker's commit: the container's changes as a new layer over its image, the
    config from ``config`` + ``changes`` merged over the container's; returns the ID."""
    images = service.images
    parent = images.get(c.image_id)
    oci = parent.manifest.media_type == mt.OCI_MANIFEST
    new_config = merge_config(apply_changes(config, changes) or ExecutionConfig(),
                              container_exec_config(c, parent.config.config))
    lowers, upper = _snapshot_dirs(service, c.id)
    try:
        layer = write_commit_layer(images, lowers, upper, mt.OCI_LAYER_GZIP if oci else mt.DOCKER_LAYER_GZIP)
    except NoChanges:
        layer = None
    created = rfc3339_nano(time.time_ns())
    cmd = container_exec_config(c, parent.config.config).cmd or ()
    history = History(created=created, created_by=" ".join(cmd), author=author, comment=message,
                      empty_layer=layer is None)
    base = parent.config
    diff_ids = base.rootfs.diff_ids + ((layer[1],) if layer else ())
    extra = {k: v for k, v in base.extra.items() if k not in ("comment", "container", "container_config")}
    extra.update({"container": c.id, **({"comment": message} if message else {})})
    cfg = replace(base, created=created, author=author, config=new_config,
                  rootfs=replace(base.rootfs, diff_ids=diff_ids),
                  history=base.history + (history,), extra=extra)
    cfg_bytes = cfg.to_bytes()
    images.content.put(cfg_bytes)
    manifest = ImageManifest(
        media_type=parent.manifest.media_type or mt.OCI_MANIFEST,
        config=Descriptor.of(cfg_bytes, mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG),
        layers=parent.manifest.layers + ((layer[0],) if layer else ()))
    manifest_bytes = manifest.to_bytes()
    images.content.put(manifest_bytes)
    image = images.register(Descriptor.of(manifest_bytes, manifest.media_type), ref)
    return str(image.id)
