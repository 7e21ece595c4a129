"""Garbage collection of content blobs and committed snapshots no image references.

What is left unreferenced: a crash between writing blobs (or unpacking layers) and
naming the image (pull, load, import, build, commit: blobs go in before names), a failed
pull or build, a push's compressed layer. ``rmi`` collects what it removes
(``Removal._collect``); this sweeps the rest, as the registry's and containerd's GC do:
mark from the roots, sweep the unmarked.

Roots: every image record's target. An index marks itself and every manifest it lists
that is present (all platforms, not just the host's), a manifest its config and layers,
a config its layers' ChainIDs (the committed snapshots that are the image unpacked).
Every snapshot that is not committed (a container's rootfs, a build step's root, a view),
and every committed one a build step labelled as its (``BUILD_STEP_LABEL``), is kept with
all its ancestors. Anything that cannot be read while marking makes the
sweep of that kind skip (never guess what is garbage).

Concurrency: content writers (pull, push, build, load, import, commit) hold a lease
(:class:`Leases`) from their first write to the name. The GC runs only when no lease is
held and keeps new ones waiting while it runs (a readers-writer lock whose writer never
waits: with writers in flight it skips, and the next prune or conchd start collects).
It also holds the image service's lock (which orders naming) and skips anything modified
after it started.

:func:`discard` is the same sweep over a few named candidates, for a writer that failed (a
refused pull or load): it runs with the caller's own lease the only one held, so what it
finds unreferenced is garbage by the rule above; with other writers in flight it leaves
the candidates to the next GC.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from conch.errors import ConchError, FailedPrecondition, NotFound
from conch.oci import mediatype as mt

log = logging.getLogger(__name__)

__all__ = ["BUILD_STEP_LABEL", "Collected", "Leases", "collect", "discard"]

# A committed snapshot with this label is a build step's result in a stage the build did
# not export (conch.engine.build.step_results): no image names it, the build cache does.
# The builder owns it (builder prune, its start-up reconcile); this GC keeps it.
BUILD_STEP_LABEL = "conch.build.step"


class Leases:
    """Shared holds for content writers, an exclusive non-waiting one for the GC."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = 0
        self._collecting = False

    def acquire(self) -> None:
        """Blocks only while a GC runs (it does not wait for anyone, so briefly)."""
        with self._cond:
            while self._collecting:
                self._cond.wait()
            self._held += 1

    def try_acquire(self) -> bool:
        """acquire() without waiting (for the event loop: it polls, cancellably)."""
        with self._cond:
            if self._collecting:
                return False
            self._held += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._held -= 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def hold(self):
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @property
    def held(self) -> int:
        return self._held

    @contextlib.contextmanager
    def exclusive(self, own: int = 0):
        """Yields True with no lease held (but the caller's ``own``) and none granted
        until the block ends; False (at once) when other writers are in flight."""
        with self._cond:
            if self._held > own or self._collecting:
                got = False
            else:
                got = self._collecting = True
        try:
            yield got
        finally:
            if got:
                with self._cond:
                    self._collecting = False
                    self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class Collected:
    blobs: int = 0
    snapshots: int = 0
    bytes: int = 0
    skipped: str = ""  # why nothing (or only part) was collected


def collect(images) -> Collected:
    """Delete unreferenced blobs and committed snapshots of ``images`` (an
    :class:`conch.images.store.ImageService`); see the module docstring."""
    leases = images.leases
    with leases.exclusive() as got:
        if not got:
            log.info("gc: skipped, %d content writer(s) in flight", leases.held)
            return Collected(skipped="content writers in flight")
        with images._lock:
            return _collect_locked(images, time.time())


def discard(images, blobs, snapshots=(), *, own: int = 1) -> Collected:
    """Delete, of ``blobs`` (digests) and the committed ``snapshots`` (ChainIDs, bottom
    first), what no image references: what a failed pull or load stored. ``own``: the
    leases the caller holds (every content-writing API request holds one)."""
    from conch.snapshots import Kind

    with images.leases.exclusive(own) as got:
        if not got:
            log.info("discard: left to the GC, other content writers in flight")
            return Collected(skipped="content writers in flight")
        with images._lock:
            marked, chains, doubt = _mark(images)
            if doubt:
                log.warning("discard: not removing anything: %s", doubt)
                return Collected(skipped=doubt)
            n_blobs = n_snaps = n_bytes = 0
            for digest in dict.fromkeys(blobs):
                if digest in marked:
                    continue
                try:
                    size = images.content.info(digest).size
                    images.content.delete(digest)
                except NotFound:
                    continue
                n_blobs += 1
                n_bytes += size
            for key in reversed([str(c) for c in snapshots]):  # top first: parents go last
                if key in chains:
                    continue
                try:
                    if images.snapshotter.stat(key).kind is not Kind.COMMITTED:
                        break
                    images.snapshotter.remove(key)
                except NotFound:
                    continue
                except FailedPrecondition as exc:  # something stands on it: keep it and below
                    log.info("discard: keeping snapshot %s: %s", key, exc)
                    break
                n_snaps += 1
            if n_blobs or n_snaps:
                images._parsed.clear()
                log.info("discard: removed %d blob(s) and %d snapshot(s)", n_blobs, n_snaps)
            return Collected(blobs=n_blobs, snapshots=n_snaps, bytes=n_bytes)


def _collect_locked(images, started: float) -> Collected:
    content, snapshotter = images.content, images.snapshotter
    blobs, chains, doubt = _mark(images)
    n_blobs = n_bytes = n_snaps = 0
    skipped = []
    if doubt:
        skipped.append(f"blobs ({doubt})")
        log.warning("gc: not collecting blobs or snapshots: %s", doubt)
    else:
        for info in list(content.walk()):
            if info.digest in blobs or info.updated_at.timestamp() >= started:
                continue
            try:
                content.delete(info.digest)
            except NotFound:
                continue
            n_blobs += 1
            n_bytes += info.size
        n_snaps, n_snap_bytes = _sweep_snapshots(snapshotter, chains, started)
        n_bytes += n_snap_bytes
    if n_blobs or n_snaps:
        images._parsed.clear()
        log.info("gc: removed %d blob(s) and %d snapshot(s), %d bytes", n_blobs, n_snaps, n_bytes)
    return Collected(blobs=n_blobs, snapshots=n_snaps, bytes=n_bytes, skipped=", ".join(skipped))


def _mark(images) -> tuple[set, set[str], str]:
    """(blob digests, snapshot names) reachable from the image records; a reason to
    doubt the marking ("" when it is complete)."""
    from conch.oci.image import ImageConfig, ImageIndex, ImageManifest

    content = images.content
    blobs: set = set()
    chains: set[str] = set()
    doubt = ""
    todo = [(rec.target.digest, rec.target.media_type) for rec in images.db.list_images()]
    while todo:
        digest, media_type = todo.pop()
        if digest in blobs:
            continue
        blobs.add(digest)
        if not (mt.is_index(media_type) or mt.is_manifest(media_type)):
            continue
        try:
            data = content.read(digest)
        except NotFound:
            continue  # a broken image: nothing below it to keep
        try:
            if mt.is_index(media_type):
                for d in ImageIndex.from_bytes(data).manifests:
                    if content.exists(d.digest):  # other platforms are often not pulled
                        todo.append((d.digest, d.media_type))
                continue
            manifest = ImageManifest.from_bytes(data)
            blobs.add(manifest.config.digest)
            blobs.update(layer.digest for layer in manifest.layers)
            try:
                config = ImageConfig.from_bytes(content.read(manifest.config.digest))
            except NotFound:
                continue
            chains.update(str(c) for c in config.chain_ids())
        except (ConchError, ValueError, KeyError, TypeError) as exc:
            doubt = f"{digest} unreadable: {exc}"
    return blobs, chains, doubt


def _sweep_snapshots(snapshotter, chains: set[str], started: float) -> tuple[int, int]:
    from conch.snapshots import Kind

    infos = {i.key: i for i in snapshotter.walk()}
    keep: set[str] = set()
    for info in infos.values():
        if (info.kind is not Kind.COMMITTED or info.key in chains
                or info.labels.get(BUILD_STEP_LABEL)
                or max(info.created, info.updated) >= started):
            key = info.key
            while key is not None and key not in keep:  # it and everything below it
                keep.add(key)
                parent = infos.get(key)
                key = parent.parent if parent is not None else None
    doomed = {k for k in infos if k not in keep}
    removed = size = 0
    while doomed:  # leaves first: a snapshot goes once nothing doomed stands on it
        parents = {infos[k].parent for k in doomed}
        leaves = [k for k in doomed if k not in parents]
        if not leaves:
            break
        for key in leaves:
            doomed.discard(key)
            try:
                usage = snapshotter.usage(key).size
            except ConchError:
                usage = 0
            try:
                snapshotter.remove(key)
            except NotFound:
                continue
            except FailedPrecondition as exc:  # something new stands on it: keep the chain
                log.info("gc: keeping snapshot %s: %s", key, exc)
                doomed -= _ancestors(infos, key)
                continue
            removed += 1
            size += usage
    return removed, size


def _ancestors(infos, key: str) -> set[str]:
    out = set()
    parent = infos[key].parent
    while parent is not None and parent not in out:
        out.add(parent)
        parent = infos[parent].parent if parent in infos else None
    return out
