"""``docker push``: layers, config and manifest of one local tag to its registry.

Per tag:

1. the image's layers as they will travel: a layer stored uncompressed (``…tar``, e.g.
   from ``load`` of a docker-save tar) is gzip-compressed with ISA-L (level 1) into the
   content store *while it uploads* (``conch.engine.distribution.push_stream``), unless an earlier
   push left its gzip form; the manifest is rewritten to name the compressed blobs (its
   digest changes; the new manifest is stored too);
2. per layer, ``MAX_UPLOADS`` (docker's 5) at a time: ``HEAD`` -> "Layer already
   exists"; else a cross-repository mount when an image of another repository of the
   same registry has that layer (201 -> "Mounted from <repo>"); else an upload
   ("Pushing" with progress, then "Pushed"); a layer being gzipped is uploaded as it
   is made;
3. the config blob, then ``PUT`` the manifest under the tag;
4. ``<tag>: digest: sha256:… size: N`` and the ``aux`` item docker's CLI reads, and the
   local image gets the ``repo@digest`` name (its RepoDigests), as in docker.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from conch.engine.distribution.progress import Progress
from conch.engine.distribution.push_stream import compressed_forms, push_compressing
from conch.errors import NotFound
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.reference import Reference
from conch.registry.client.blobs import blob_exists, put_manifest, start_upload, upload_blob
from conch.registry.client.transport import RegistryHost

MAX_UPLOADS = 5


def _progress(**kw):
    return Progress(**kw)


def tags_to_push(images, named: Reference, tag: str) -> list[str]:
    """The tags to push: ``tag``, else every local tag of the repository (docker)."""
    if tag:
        return [tag]
    prefix = named.name + ":"
    tags = sorted({n[len(prefix):] for image in images.list() for n in image.names
                   if n.startswith(prefix) and "@" not in n})
    if not tags:
        raise NotFound(f"An image does not exist locally with the tag: {named.familiar_name()}")
    return tags


async def push_tag(images, host: RegistryHost, named: Reference, tag: str):
    """Push ``named:tag``; yields Progress items."""
    ref = named.with_tag(tag)
    try:
        image = await asyncio.to_thread(images.get, str(ref))
    except NotFound:
        raise NotFound(f"tag does not exist: {ref.familiar()}") from None
    manifest = image.manifest
    sources = await asyncio.to_thread(_mount_sources, images, named)
    compressed = await asyncio.to_thread(compressed_forms, images, manifest)
    queue: asyncio.Queue = asyncio.Queue()
    sem = asyncio.Semaphore(MAX_UPLOADS)
    for layer in reversed(manifest.layers):  # docker lists the top layer first
        yield _progress(id=layer.digest.encoded[:12], status="Preparing")
    # Each layer uploads; one stored uncompressed is gzipped as it uploads (in a worker
    # thread, so layers compress in parallel), unless an earlier push gzipped it.
    tasks = [asyncio.create_task(_push_layer(images, host, named, layer, manifest.media_type,
                                             sources, compressed, sem, queue))
             for layer in manifest.layers]
    done = asyncio.gather(*tasks)
    try:
        while not done.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        layers = await done
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    data = images.content.read(image.target.digest)
    media_type = image.target.media_type
    if tuple(layers) != tuple(manifest.layers):  # compressed here: a new manifest
        data = replace(manifest, layers=tuple(layers)).to_bytes()
        images.content.put(data)
    config = manifest.config
    if not await blob_exists(host, named.path, config):
        url = await start_upload(host, named.path, config)
        with images.content.open(config.digest) as f:
            await upload_blob(host, named.path, config, url, f)
    await put_manifest(host, named.path, tag, media_type, data)
    desc = Descriptor(media_type=media_type, digest=Digest.from_bytes(data), size=len(data))
    await asyncio.to_thread(images.register, desc, named.name_only().with_digest(desc.digest))
    yield _progress(status=f"{tag}: digest: {desc.digest} size: {desc.size}")
    yield _progress(aux={"Tag": tag, "Digest": str(desc.digest), "Size": desc.size})


async def _push_layer(images, host: RegistryHost, named: Reference, layer: Descriptor,
                      manifest_type: str, sources: dict, compressed: dict,
                      sem: asyncio.Semaphore, queue: asyncio.Queue) -> Descriptor:
    """Push one layer; the descriptor it has in the registry (compressed if it was not)."""
    short = layer.digest.encoded[:12]
    source_digest = layer.digest
    uncompressed = mt.is_layer(layer.media_type) and mt.layer_compression(layer.media_type) == ""
    if uncompressed and layer.digest in compressed:  # gzipped by an earlier push
        layer, uncompressed = compressed[layer.digest], False
    if sem.locked():
        queue.put_nowait(_progress(id=short, status="Waiting"))
    async with sem:
        if uncompressed:
            total = layer.size

            def read(done: int) -> None:
                queue.put_nowait(_progress(id=short, status="Pushing", current=done, total=total))

            layer = await push_compressing(images, host, named.path, layer, manifest_type, read)
            queue.put_nowait(_progress(id=short, status="Pushed"))
            return layer
        if await blob_exists(host, named.path, layer):
            queue.put_nowait(_progress(id=short, status="Layer already exists"))
            return layer
        from_repo = sources.get(source_digest, "")
        url = await start_upload(host, named.path, layer, from_repo)
        if url is None:
            queue.put_nowait(_progress(id=short, status=f"Mounted from {from_repo}"))
            return layer

        def progress(done: int) -> None:
            queue.put_nowait(_progress(id=short, status="Pushing", current=done, total=layer.size))

        with images.content.open(layer.digest) as f:
            await upload_blob(host, named.path, layer, url, f, progress)
        queue.put_nowait(_progress(id=short, status="Pushed"))
        return layer


def _mount_sources(images, named: Reference) -> dict:
    """layer digest -> another repository of the same registry holding it."""
    out: dict = {}
    for image in images.list():
        for name in image.names:
            try:
                other = Reference.parse(name, default_tag=False)
            except Exception:  # noqa: BLE001 - a name we cannot parse is no source
                continue
            if other.domain == named.domain and other.path != named.path:
                for layer in image.manifest.layers:
                    out.setdefault(layer.digest, other.path)
    return out
