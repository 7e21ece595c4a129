"""``docker pull``: resolve, fetch, unpack (pipelined), name -- as a stream of progress.

Order (each step's failure leaves no name and no ingest behind):

1. resolve the reference to the manifest for the platform (host's, or ``--platform``);
   errors here come before the first progress item, so the API can answer them as an
   HTTP error (404 unknown manifest, 401 auth) the way dockerd does;
2. ``<tag>: Pulling from <repo>``; a tag already naming that manifest is "up to date";
3. the config blob (verified), and with an explicit ``--platform`` a check that the
   image is for it (docker's "does not match the specified platform" error);
4. the layers: downloads run ``MAX_DOWNLOADS`` at a time (docker's default, 3), each
   streaming through digest verification into the content store; each layer is
   extracted (in a worker thread, ``EXTRACTORS`` at once) as soon as its download
   ends, while later layers keep downloading, and the extracted layers are stacked
   into their ChainID snapshots in order. docker downloads everything first and only
   then extracts, one by one;
5. the manifest into content, then the names (tag, and ``repo@digest``).

A refused pull (a hostile layer, a blob or diff_id that does not match) leaves nothing:
the blobs and snapshots of this image that no image references are discarded
(:func:`conch.images.gc.discard`; only when no other content writer is in flight, else
the next GC takes them). A layer that unpacking refuses fails the pull with dockerd's
``failed to register layer: <why>``, the why naming the entry (the same words ``docker
load`` refuses it with: both go through ``conch.archive.check``).

Progress items are :class:`conch.engine.distribution.progress.Progress` (docker's jsonmessage
statuses: ``Pulling fs layer``, ``Waiting``, ``Downloading``, ``Verifying Checksum``,
``Download complete``, ``Extracting``, ``Pull complete``, ``Already exists``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator

from conch.engine.distribution.progress import Progress
from conch.errors import FailedPrecondition, InvalidArgument, NotFound
from conch.images.unpack import EXTRACTORS
from conch.oci.descriptor import Descriptor
from conch.oci.image import ImageConfig, chain_ids
from conch.oci.platform import Platform, only
from conch.oci.reference import Reference
from conch.registry.client.blobs import fetch_blob
from conch.registry.client.resolve import Resolved, resolve_image
from conch.registry.client.transport import RegistryHost

MAX_DOWNLOADS = 3
_DONE = object()


def _progress(**kw):
    return Progress(**kw)


async def pull_one(images, host: RegistryHost, named: Reference,
                   platform: Platform | None) -> AsyncIterator:
    """Pull ``named`` (tag or digest) through ``host``; yields Progress, returns at the
    end having named the image. ``images`` is the ImageService."""
    resolved = await resolve_image(host, named, platform)
    tag_or_digest = named.tag if named.digest is None else str(named.digest)
    yield _progress(id=tag_or_digest, status=f"Pulling from {named.path}")
    if await asyncio.to_thread(_up_to_date, images, named, resolved):
        yield _progress(status=f"Digest: {resolved.target.digest}")
        yield _progress(status=f"Status: Image is up to date for {named.familiar()}")
        return
    config = None
    try:
        config = await _fetch_config(images, host, named, resolved, platform)
        async for item in _layers(images, host, named.path, resolved.manifest.layers, config):
            yield item
        await asyncio.to_thread(_name, images, named, resolved)
    except Exception:
        await asyncio.to_thread(_discard, images, resolved, config)
        raise
    yield _progress(status=f"Digest: {resolved.target.digest}")
    yield _progress(status=f"Status: Downloaded newer image for {named.familiar()}")


def _up_to_date(images, named: Reference, resolved: Resolved) -> bool:
    try:
        image = images.get(str(named))
    except NotFound:
        return False
    if image.target.digest != resolved.manifest_desc.digest:
        return False
    images.unpack(image)  # cheap when every snapshot exists
    _name(images, named, resolved)
    return True


async def _fetch_config(images, host: RegistryHost, named: Reference, resolved: Resolved,
                        platform: Platform | None) -> ImageConfig:
    desc = resolved.manifest.config
    await fetch_blob(host, named.path, desc, images.content)
    config = ImageConfig.from_bytes(await asyncio.to_thread(images.content.read, desc.digest))
    if platform is not None and not only(platform).match(config.platform()):
        raise FailedPrecondition(
            f"image with reference {named.familiar()} was found but does not match the "
            f"specified platform: wanted {platform}, actual: {config.platform()}")
    if len(config.rootfs.diff_ids) != len(resolved.manifest.layers):
        raise InvalidArgument(f"image {named.familiar()}: the manifest has "
                              f"{len(resolved.manifest.layers)} layers but the config "
                              f"{len(config.rootfs.diff_ids)} diff_ids")
    return config


def _discard(images, resolved: Resolved, config: ImageConfig | None) -> None:
    from conch.images.gc import discard

    manifest = resolved.manifest
    discard(images, [manifest.config.digest, *(layer.digest for layer in manifest.layers)],
            chain_ids(config.rootfs.diff_ids) if config is not None else ())


def _name(images, named: Reference, resolved: Resolved) -> None:
    target = Descriptor(media_type=resolved.manifest_desc.media_type,
                        digest=resolved.manifest_desc.digest, size=resolved.manifest_desc.size)
    images.content.put(resolved.manifest_bytes, expected=target.digest)
    if named.digest is None:
        images.register(target, named)
    images.register(target, named.name_only().with_digest(resolved.target.digest))


async def _layers(images, host: RegistryHost, repo: str, layers, config: ImageConfig):
    """Download and unpack; yields Progress until every layer is a committed snapshot."""
    queue: asyncio.Queue = asyncio.Queue()
    ids = [layer.digest.encoded[:12] for layer in layers]
    needed = [not images.content.exists(layer.digest) for layer in layers]
    for i, layer in enumerate(layers):
        yield _progress(id=ids[i], status="Pulling fs layer" if needed[i] else "Already exists")
    work = asyncio.create_task(_run(images, host, repo, layers, config, ids, needed, queue))
    try:
        while (item := await queue.get()) is not _DONE:
            yield item
        await work
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work


async def _run(images, host, repo, layers, config, ids, needed, queue) -> None:
    try:
        await _pipeline(images, host, repo, layers, config, ids, needed, queue)
    finally:
        queue.put_nowait(_DONE)


async def _pipeline(images, host, repo, layers, config, ids, needed, queue) -> None:
    unpacker = images.unpacker
    diff_ids = config.rootfs.diff_ids
    chains = chain_ids(diff_ids)
    have = await asyncio.to_thread(lambda: [unpacker.committed(c) for c in chains])
    downloads = asyncio.Semaphore(MAX_DOWNLOADS)
    extractors = asyncio.Semaphore(EXTRACTORS)
    failed: asyncio.Future = asyncio.get_running_loop().create_future()

    async def fetch_and_extract(i: int):
        if needed[i]:
            await _download(host, repo, layers[i], ids[i], images.content, downloads, queue)
        if have[i]:
            return None
        async with extractors:
            return await _in_thread(unpacker, _extract, unpacker, layers[i], diff_ids[i],
                                    ids[i], queue, asyncio.get_running_loop())

    tasks = [asyncio.create_task(fetch_and_extract(i)) for i in range(len(layers))]
    for task in tasks:
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or failed.done() or failed.set_exception(t.exception()))
    stacked = 0
    try:
        parent = None
        for i, chain_id in enumerate(chains):
            await asyncio.wait({tasks[i], failed}, return_when=asyncio.FIRST_COMPLETED)
            if failed.done():
                failed.result()
            extracted = tasks[i].result()
            stacked = i + 1
            if extracted is not None:
                await asyncio.to_thread(unpacker.stack, extracted, chain_id, parent)
            if needed[i] or extracted is not None:
                queue.put_nowait(_progress(id=ids[i], status="Pull complete"))
            parent = str(chain_id)
    finally:
        if not failed.done():
            failed.cancel()
        elif not failed.cancelled():
            failed.exception()  # retrieved: no "exception was never retrieved" warning
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in tasks[stacked:]:  # extracted, never stacked: after a failure
            if not t.cancelled() and t.exception() is None and t.result() is not None:
                unpacker.discard(t.result())


async def _in_thread(unpacker, fn, *args):
    """``fn(*args)`` (an extraction) in a worker thread. A thread cannot be stopped: when
    we are cancelled, we wait for it to end and discard what it extracted, so that a
    failed or abandoned pull returns with nothing left behind."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def drop(f) -> None:
        if not f.cancelled() and f.exception() is None and f.result() is not None:
            unpacker.discard(f.result())

    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            future.add_done_callback(drop)  # cancelled again: drop it when it ends
            raise
        drop(future)  # an error path: a blocking rmtree on the loop is acceptable
        raise


async def _download(host, repo, layer: Descriptor, short: str, store, sem, queue) -> None:
    if sem.locked():
        queue.put_nowait(_progress(id=short, status="Waiting"))
    async with sem:
        def progress(done: int) -> None:
            queue.put_nowait(_progress(id=short, status="Downloading", current=done,
                                       total=layer.size))

        await fetch_blob(host, repo, layer, store, progress)
    queue.put_nowait(_progress(id=short, status="Verifying Checksum"))
    queue.put_nowait(_progress(id=short, status="Download complete"))


def _extract(unpacker, layer, diff_id, short, queue, loop):
    """In a worker thread: extract one layer, reporting progress through the loop."""
    last = [0.0]

    def progress(done: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1 or done >= layer.size:
            last[0] = now
            loop.call_soon_threadsafe(queue.put_nowait, _progress(
                id=short, status="Extracting", current=min(done, layer.size), total=layer.size))

    try:
        return unpacker.extract(layer, diff_id, progress=progress)
    except InvalidArgument as exc:  # a layer unpacking refuses: dockerd's words
        raise InvalidArgument(f"failed to register layer: {exc}") from exc
