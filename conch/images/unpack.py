"""Unpack an image's layers into committed snapshots, and prepare a container's rootfs.

Contract: layer *n* of an image becomes the committed snapshot named by its ChainID
(``sha256:…``, image-spec config.md "Layer ChainID"), whose parent is the snapshot of
layer *n-1*. Because a ChainID names the whole stack below it, images that share a base
share its snapshots: each distinct stack is unpacked once, and later images only add
what is new. :meth:`Unpacker.prepare_rootfs` then prepares the container's writable
snapshot ``key`` on top of the image's top ChainID and returns its mounts (never mounts).

Each layer is applied into a scratch directory of the snapshotter (:meth:`extract`),
which needs no parent: a layer's files never depend on the layers below it (whiteouts
are recorded, not applied), so the layers of an image are extracted several at once
and, in a pull, each as soon as it is downloaded. :meth:`stack` then commits them in
order under their ChainIDs, each only after its diff_id (sha256 of the uncompressed
tar) matched the config's ``rootfs.diff_ids`` entry. On any failure the scratch
directory is removed, so a name that exists is always a complete, verified layer. Two
unpacks of one ChainID may run at once (threads or processes): both extract, the first
commit wins, the loser gets AlreadyExists from the snapshotter, removes its copy and
stacks on the winner's.

The committed snapshot carries the label :data:`USAGE_LABEL` (bytes of its own files,
measured once here) so that image sizes need no tree walk later.

On disk: nothing of its own (the snapshotter's root holds everything).
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Mapping, Sequence

from conch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import ImageConfig, chain_ids
from conch.snapshots import Kind, Mount, Snapshotter, tree_usage

if TYPE_CHECKING:
    from conch.content import Provider

log = logging.getLogger(__name__)

USAGE_LABEL = "conch.io/usage.size"
DIFF_ID_LABEL = "conch.io/diff-id"
# Layers extracted at once. Decompression, hashing and writing release the GIL, so two
# extractions run ~1.6x as fast as one on two cores; more only queue for the CPU.
EXTRACTORS = max(1, min(4, os.cpu_count() or 1))


class Unpacker:
    """Layers from ``content`` into ``snapshotter``; see the module docstring."""

    def __init__(self, content: Provider, snapshotter: Snapshotter) -> None:
        self.content = content
        self.snapshotter = snapshotter

    def unpack(self, layers: Sequence[Descriptor], config: ImageConfig) -> Digest | None:
        """Make sure every layer's ChainID snapshot exists; return the top ChainID
        (``None`` for an image without layers). Missing layers are extracted
        ``EXTRACTORS`` at a time, then stacked in order."""
        diff_ids = config.rootfs.diff_ids
        if len(layers) != len(diff_ids):
            raise InvalidArgument(
                f"image has {len(layers)} layers but its config lists {len(diff_ids)} diff_ids"
            )
        stack = list(zip(layers, diff_ids, chain_ids(diff_ids)))
        missing = [i for i, (_, _, chain_id) in enumerate(stack) if not self._committed(str(chain_id))]
        if not missing:
            return stack[-1][2] if stack else None
        with ThreadPoolExecutor(min(EXTRACTORS, len(missing)), "unpack") as pool:
            futures = {i: pool.submit(self.extract, stack[i][0], stack[i][1]) for i in missing}
            try:
                parent: str | None = None
                for i, (_, _, chain_id) in enumerate(stack):
                    if i in futures:
                        self.stack(futures.pop(i).result(), chain_id, parent)
                    parent = str(chain_id)
            finally:
                for future in futures.values():  # after a failure: the others' results go
                    future.add_done_callback(self._discard_result)
        return stack[-1][2]

    def prepare_rootfs(
        self, layers: Sequence[Descriptor], config: ImageConfig, key: str,
        *, labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:  # fmt: skip
        """Unpack (if needed), then prepare the writable snapshot ``key`` on top."""
        top = self.unpack(layers, config)
        return self.snapshotter.prepare(key, None if top is None else str(top),
                                        labels=dict(labels or {}))

    def committed(self, chain_id: Digest) -> bool:
        return self._committed(str(chain_id))

    def extract(self, layer: Descriptor, diff_id: Digest, *,
                progress: Callable[[int], None] | None = None) -> Extracted:
        """Apply one layer into a scratch directory and check its diff_id; needs no
        parent, so layers can be extracted in any order and at once (thread-safe).
        ``progress`` gets the compressed bytes read so far. The result goes to
        :meth:`stack` or :meth:`discard`."""
        # here, not at the top: an idle conchd does not load conch.archive (nor tarfile)
        from conch.archive.apply import apply_layer

        if not mt.is_layer(layer.media_type):
            raise InvalidArgument(f"unsupported layer media type {layer.media_type!r}")
        fs = self.snapshotter.scratch()
        try:
            # apply_layer detects the compression from the bytes, as Docker does.
            with self.content.open(layer.digest) as blob:
                source = blob if progress is None else _Counting(blob, progress)
                result = apply_layer(source, fs, whiteout_format="overlay")
            if result.diff_id != str(diff_id):
                raise FailedPrecondition(
                    f"layer {layer.digest} has diff_id {result.diff_id}, "
                    f"the image config says {diff_id}"
                )
            return Extracted(layer=layer, diff_id=diff_id, fs=fs, usage=tree_usage(fs).size)
        except BaseException:
            _rmtree(fs.parent)
            raise

    def stack(self, extracted: Extracted, chain_id: Digest, parent: str | None) -> None:
        """Commit ``extracted`` as the snapshot ``chain_id`` on ``parent``. When another
        unpack committed that ChainID first, ours is dropped and theirs stays."""
        labels = {DIFF_ID_LABEL: str(extracted.diff_id), USAGE_LABEL: str(extracted.usage)}
        try:
            self.snapshotter.commit_scratch(str(chain_id), parent, extracted.fs, labels=labels)
        except AlreadyExists:
            log.debug("layer %s was unpacked concurrently; dropping our copy", chain_id)
            self.discard(extracted)
            if not self._committed(str(chain_id)):
                raise  # the name is taken by something that is not that layer
        except BaseException:
            self.discard(extracted)
            raise

    def discard(self, extracted: Extracted) -> None:
        _rmtree(extracted.fs.parent)

    def _discard_result(self, future) -> None:
        if not future.cancelled() and future.exception() is None:
            self.discard(future.result())

    def _committed(self, name: str) -> bool:
        try:
            return self.snapshotter.stat(name).kind is Kind.COMMITTED
        except NotFound:
            return False


@dataclass(frozen=True, slots=True)
class Extracted:
    """A layer applied into a scratch directory and verified, not yet a snapshot."""

    layer: Descriptor
    diff_id: Digest
    fs: Path
    usage: int  # bytes of its files, for the snapshot's USAGE_LABEL


def _rmtree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError:  # the original error matters more; the snapshotter's cleanup() sweeps it
        log.warning("could not remove %s", path, exc_info=True)


class _Counting:
    """A read-only stream that reports how many bytes were read (extraction progress)."""

    def __init__(self, raw: BinaryIO, progress: Callable[[int], None]) -> None:
        self._raw, self._progress, self._done = raw, progress, 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._done += len(data)
        self._progress(self._done)
        return data
