"""Pushing an uncompressed layer: gzip it into the content store and up to the registry
at the same time.

A layer stored uncompressed (``load`` of a docker-save tar, ``commit``) must be gzipped
before a registry takes it. Compressing first and uploading after costs the sum of the
two; here a worker thread compresses (ISA-L) into a content-store ingest and hands the
output, in ``PIECE``-sized pieces, to the upload session as it goes (:class:`ChunkedUpload`:
the registry needs the digest only at the closing ``PUT``). podman and skopeo stream the
same way; docker compresses while it uploads too, but keeps no copy.

The compressed blob is kept (verified, committed) so that the next push of the same
image finds it: :func:`compressed_forms` maps an uncompressed layer to the compressed
blob a manifest of the same config lists for it (what docker's "v2 metadata" does), and
the caller then pushes that blob the ordinary way (skip-if-present, cross-repo mount).

Failure: if the upload fails, the thread is told to stop and its ingest is removed (or,
if it had already committed, the blob is deleted unless a manifest names it); if the
compression fails, the upload is abandoned (registries expire open sessions).
"""

from __future__ import annotations

import asyncio
import os
import queue as threadq
import threading
from typing import Callable

from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.registry.client.blobs import ChunkedUpload, start_upload

# ISA-L decides between stored and Huffman-coded deflate blocks per input it is given:
# in 1 MiB pieces, incompressible data comes out Huffman-coded and inflates at ~0.5 GB/s
# (a pull's bottleneck); in 8 MiB pieces it is mostly stored and inflates ~1.5x faster.
READ_CHUNK = 8 << 20
PIECE = 4 << 20  # compressed bytes that make a PATCH (one READ_CHUNK gives ~8 MiB)
DEPTH = 2  # pieces compressed ahead of the upload


def compressed_forms(images, manifest) -> dict:
    """uncompressed layer digest -> a gzip descriptor present in the content store, from
    local manifests of the same image config (an earlier push made them)."""
    diff_ids = None
    out: dict = {}
    for image in images.list():
        m = image.manifest
        if m.config.digest != manifest.config.digest or m.layers == manifest.layers:
            continue
        if diff_ids is None:
            diff_ids = image.config.rootfs.diff_ids
        for diff_id, layer in zip(diff_ids, m.layers):
            if mt.layer_compression(layer.media_type) == "gzip" and images.content.exists(layer.digest):
                out.setdefault(diff_id, layer)
    return out


async def push_compressing(images, host, repo: str, layer: Descriptor, manifest_type: str,
                           progress: Callable[[int], None]) -> Descriptor:
    """Gzip ``layer`` (uncompressed, in the content store) into the store and to ``repo``
    at once; the gzip descriptor. ``progress`` gets the uncompressed bytes done."""
    url = await start_upload(host, repo, layer)
    upload = ChunkedUpload(host, repo, url, f"upload of layer {layer.digest}")
    pipe = _Pipe()
    producer = asyncio.ensure_future(asyncio.to_thread(
        _compress, images.content, layer, manifest_type, pipe))
    try:
        while (item := await asyncio.to_thread(pipe.get)) is not None:
            piece, done = item
            await upload.send(piece)
            progress(done)
        compressed = await producer
        await upload.finish(compressed.digest)
    except BaseException:
        pipe.close()  # the thread stops at its next piece and removes its ingest
        (made,) = await asyncio.gather(producer, return_exceptions=True)
        if isinstance(made, Descriptor):  # it finished first: no manifest will name it
            await asyncio.to_thread(_drop_unless_used, images, made.digest)
        raise
    return compressed


def _drop_unless_used(images, digest) -> None:
    """Delete the gzip blob of a failed push unless a local manifest names it (then an
    earlier push made the same bytes and keeps them)."""
    if not any(digest == layer.digest for image in images.list() for layer in image.manifest.layers):
        images.content.delete(digest)


def _compress(store, layer: Descriptor, manifest_type: str, pipe: "_Pipe | None") -> Descriptor:
    """ISA-L level 1 gzip of ``layer`` into ``store``; each ``PIECE`` of output also goes
    to ``pipe`` (then the end marker), which raises :class:`_Closed` once abandoned."""
    from isal import isal_zlib

    comp = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    ref = f"compress-{layer.digest}-{os.urandom(4).hex()}"
    writer = store.writer(ref)
    pending = bytearray()
    done = 0
    try:
        with writer, store.open(layer.digest) as src:
            while chunk := src.read(READ_CHUNK):
                done += len(chunk)
                out = comp.compress(chunk)
                writer.write(out)
                if pipe is not None:
                    pending += out
                    if len(pending) >= PIECE:
                        pipe.put((bytes(pending), done))
                        pending.clear()
            out = comp.flush()
            writer.write(out)
            if pipe is not None:  # the tail goes up while the blob is fsynced
                pending += out
                if pending:
                    pipe.put((bytes(pending), done))
            info = writer.commit()
        if pipe is not None:
            pipe.put(None)
    except BaseException:
        try:
            store.abort(ref)
        except Exception:  # noqa: BLE001 - already committed or gone
            pass
        if pipe is not None:
            pipe.close()  # the upload side stops waiting
        raise
    media = mt.DOCKER_LAYER_GZIP if mt.is_docker(manifest_type) else mt.OCI_LAYER_GZIP
    return Descriptor(media_type=media, digest=info.digest, size=info.size)


class _Closed(Exception):
    """The other side of the pipe gave up."""


class _Pipe:
    """Pieces from the compressing thread to the uploading task: bounded (``DEPTH``), and
    either side can :meth:`close` it so that the other stops waiting (both wait in
    threads, polling the flag: a blocked thread could otherwise never be released)."""

    def __init__(self) -> None:
        self._q: threadq.Queue = threadq.Queue(DEPTH)
        self._closed = threading.Event()

    def put(self, item) -> None:
        while not self._closed.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except threadq.Full:
                continue
        raise _Closed("the upload was abandoned")

    def get(self):
        """The next item; None at the end or once closed."""
        while not self._closed.is_set():
            try:
                return self._q.get(timeout=0.1)
            except threadq.Empty:
                continue
        return None

    def close(self) -> None:
        self._closed.set()
