"""Unpack an image's layers into committed snapshots, and prepare a container's rootfs.

Contract: layer *n* of an image becomes the committed snapshot named by its ChainID
(``sha256:…``, image-spec config.md "Layer ChainID"), whose parent is the snapshot of
layer *n-1*. Because a ChainID names the whole stack below it, images that share a base
share its snapshots: each distinct stack is unpacked once, and later images only add
what is new. :meth:`Unpacker.prepare_rootfs` then prepares the container's writable
snapshot ``key`` on top of the image's top ChainID and returns its mounts (never mounts).

Each layer is applied into an active snapshot with a random key
(``extract-<random>-<chainid>``) and committed under its ChainID only after its diff_id
(sha256 of the uncompressed tar) matched the config's ``rootfs.diff_ids`` entry. On any
failure the active snapshot is removed, so a name that exists is always a complete,
verified layer. Two unpacks of one ChainID may run at once (threads or processes): both
extract, the first commit wins, the loser gets AlreadyExists from the snapshotter,
removes its copy and stacks on the winner's.

The committed snapshot carries the label :data:`USAGE_LABEL` (bytes of its own files,
measured once here) so that image sizes need no tree walk later.

On disk: nothing of its own (the snapshotter's root holds everything).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, BinaryIO, Callable, Mapping, Sequence

from conch.archive.apply import apply_layer
from conch.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import ImageConfig, chain_ids
from conch.snapshots import Kind, Mount, Snapshotter, writable_dir

if TYPE_CHECKING:
    from conch.content import Provider

log = logging.getLogger(__name__)

USAGE_LABEL = "conch.io/usage.size"
DIFF_ID_LABEL = "conch.io/diff-id"


class Unpacker:
    """Layers from ``content`` into ``snapshotter``; see the module docstring."""

    def __init__(self, content: Provider, snapshotter: Snapshotter) -> None:
        self.content = content
        self.snapshotter = snapshotter

    def unpack(self, layers: Sequence[Descriptor], config: ImageConfig) -> Digest | None:
        """Make sure every layer's ChainID snapshot exists; return the top ChainID
        (``None`` for an image without layers)."""
        diff_ids = config.rootfs.diff_ids
        if len(layers) != len(diff_ids):
            raise InvalidArgument(
                f"image has {len(layers)} layers but its config lists {len(diff_ids)} diff_ids"
            )
        parent: str | None = None
        top: Digest | None = None
        for layer, diff_id, chain_id in zip(layers, diff_ids, chain_ids(diff_ids)):
            if not self._committed(str(chain_id)):
                self._unpack_one(layer, diff_id, chain_id, parent)
            parent, top = str(chain_id), chain_id
        return top

    def prepare_rootfs(
        self, layers: Sequence[Descriptor], config: ImageConfig, key: str,
        *, labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:  # fmt: skip
        """Unpack (if needed), then prepare the writable snapshot ``key`` on top."""
        top = self.unpack(layers, config)
        return self.snapshotter.prepare(key, None if top is None else str(top),
                                        labels=dict(labels or {}))

    def unpack_layer(self, layer: Descriptor, diff_id: Digest, chain_id: Digest,
                     parent: str | None, *, progress: Callable[[int], None] | None = None) -> bool:
        """Unpack one layer onto the committed snapshot ``parent`` unless ``chain_id`` is
        already there (True when it did the work). For pipelined pulls, which unpack
        layer *n* as soon as it and layer *n-1* are ready; ``progress`` gets the
        compressed bytes read so far."""
        if self._committed(str(chain_id)):
            return False
        self._unpack_one(layer, diff_id, chain_id, parent, progress=progress)
        return True

    def _committed(self, name: str) -> bool:
        try:
            return self.snapshotter.stat(name).kind is Kind.COMMITTED
        except NotFound:
            return False

    def _unpack_one(self, layer: Descriptor, diff_id: Digest, chain_id: Digest,
                    parent: str | None, *, progress: Callable[[int], None] | None = None) -> None:
        if not mt.is_layer(layer.media_type):
            raise InvalidArgument(f"unsupported layer media type {layer.media_type!r}")
        key = f"extract-{secrets.token_hex(6)}-{chain_id}"
        mounts = self.snapshotter.prepare(key, parent, labels={DIFF_ID_LABEL: str(diff_id)})
        try:
            # apply_layer detects the compression from the bytes, as Docker does.
            with self.content.open(layer.digest) as blob:
                source = blob if progress is None else _Counting(blob, progress)
                result = apply_layer(source, writable_dir(mounts), whiteout_format="overlay")
            if result.diff_id != str(diff_id):
                raise FailedPrecondition(
                    f"layer {layer.digest} has diff_id {result.diff_id}, "
                    f"the image config says {diff_id}"
                )
            usage = self.snapshotter.usage(key)
            self.snapshotter.commit(str(chain_id), key, labels={USAGE_LABEL: str(usage.size)})
        except AlreadyExists:
            log.debug("layer %s was unpacked concurrently; dropping our copy", chain_id)
            self._remove_quietly(key)
            if not self._committed(str(chain_id)):
                raise
        except BaseException:
            self._remove_quietly(key)
            raise

    def _remove_quietly(self, key: str) -> None:
        try:
            self.snapshotter.remove(key)
        except Exception:  # the original error matters more; cleanup() sweeps the rest
            log.warning("could not remove extraction snapshot %s", key, exc_info=True)


class _Counting:
    """A read-only stream that reports how many bytes were read (extraction progress)."""

    def __init__(self, raw: BinaryIO, progress: Callable[[int], None]) -> None:
        self._raw, self._progress, self._done = raw, progress, 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._done += len(data)
        self._progress(self._done)
        return data
