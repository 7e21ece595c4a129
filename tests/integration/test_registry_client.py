"""conch.registry.client over real sockets on 127.0.0.1, against a *fake* registry
(conch.testing.fake_registry): a real registry never serves corrupt blobs, cuts a
download half-way, stalls or redirects on demand, so these paths need a fake. The happy
paths run against the real CNCF registry in tests/e2e/test_registry.py.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from conch.content.store import ContentStore
from conch.errors import NotFound, Unavailable
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import ImageIndex, ImageManifest
from conch.oci.platform import Platform
from conch.oci.reference import Reference
from conch.registry.client.blobs import BlobError, fetch_blob
from conch.registry.client.resolve import ManifestError, resolve_image
from conch.registry.client.transport import Registries, Timeouts
from conch.testing.fake_registry import FakeRegistry


def run(coro_fn, *, token: bool = False, read_timeout: float = 30.0):
    """Start a fake registry, run ``coro_fn(reg, host)``, stop everything."""
    async def main():
        reg = await FakeRegistry(token=token).start()
        other = await FakeRegistry().start()  # a second origin: "blob storage"
        reg.redirect_base = f"http://{other.addr}"
        registries = Registries(timeouts=Timeouts(connect=5, read=read_timeout))
        try:
            async with registries.session() as session:
                host = registries.host(session, reg.addr)
                return await coro_fn(reg, host, other)
        finally:
            await reg.stop()
            await other.stop()
    return asyncio.run(main())


def blob(store_dir, reg, data: bytes, fault: str = ""):
    digest = reg.add_blob(data)
    if fault:
        reg.faults[digest] = fault
    return ContentStore(store_dir), Descriptor(media_type=mt.OCI_LAYER_GZIP,
                                                digest=Digest.parse(digest), size=len(data))


def test_download_verified_into_the_store(tmp_path):
    data = os.urandom(300_000)

    async def go(reg, host, other):
        store, desc = blob(tmp_path, reg, data)
        seen = []
        await fetch_blob(host, "repo", desc, store, seen.append)
        assert store.read(desc.digest) == data and seen[-1] == len(data)

    run(go)


def test_corrupt_blob_fails_clearly_and_leaves_no_ingest(tmp_path):
    async def go(reg, host, other):
        store, desc = blob(tmp_path, reg, os.urandom(100_000), "corrupt")
        with pytest.raises(BlobError, match="failed to verify blob .*digest mismatch"):
            await fetch_blob(host, "repo", desc, store)
        assert not store.exists(desc.digest) and store.list_ingests() == []

    run(go)


def test_dropped_connection_resumes_with_range(tmp_path):
    data = os.urandom(2_000_000)

    async def go(reg, host, other):
        store, desc = blob(tmp_path, reg, data, "drop")
        await fetch_blob(host, "repo", desc, store)
        assert store.read(desc.digest) == data
        ranges = [r for m, p, r in reg.requests if "/blobs/" in p]
        assert ranges[0] == "" and ranges[-1].startswith("bytes=") and ranges[-1] != "bytes=0-"

    run(go)


def test_a_stall_is_retried_after_the_read_timeout(tmp_path):
    async def go(reg, host, other):
        store, desc = blob(tmp_path, reg, os.urandom(200_000), "stall")
        await fetch_blob(host, "repo", desc, store)  # the first GET stalls, the retry resumes
        assert store.exists(desc.digest)

    run(go, read_timeout=0.5)


def test_a_registry_that_always_stalls_fails_clearly(tmp_path):
    async def go(reg, host, other):
        store, desc = blob(tmp_path, reg, os.urandom(200_000), "stall-always")
        with pytest.raises(Unavailable, match="failed after 5 attempts: .*no data for 0.3s"):
            await fetch_blob(host, "repo", desc, store)
        assert not store.exists(desc.digest) and store.list_ingests() == []

    run(go, read_timeout=0.3)


def test_redirect_to_another_host_drops_authorization(tmp_path):
    data = os.urandom(50_000)

    async def go(reg, host, other):
        store, desc = blob(tmp_path, reg, data, "redirect")
        other.blobs[str(desc.digest)] = data
        await fetch_blob(host, "repo", desc, store)
        assert store.read(desc.digest) == data
        assert other.seen_auth == [None]  # the token never left the registry's origin
        assert any(p.startswith("/token?") and "scope=repository:repo:pull" in p
                   for _, p, _ in reg.requests)

    run(go, token=True)


def _image(reg, arch: str) -> tuple[Descriptor, bytes]:
    config = ('{"architecture":"%s","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
              % arch).encode()
    cdesc = Descriptor(media_type=mt.OCI_CONFIG, digest=Digest.parse(reg.add_blob(config)),
                       size=len(config))
    data = ImageManifest(config=cdesc, layers=()).to_bytes()
    digest = reg.add_manifest(mt.OCI_MANIFEST, data)
    return Descriptor(media_type=mt.OCI_MANIFEST, digest=Digest.parse(digest), size=len(data),
                      platform=Platform(os="linux", architecture=arch)), data


def test_resolve_selects_the_platform_from_an_index():
    async def go(reg, host, other):
        amd, _ = _image(reg, "amd64")
        arm, _ = _image(reg, "arm64")
        index = ImageIndex(manifests=(arm, amd)).to_bytes()
        reg.add_manifest(mt.OCI_INDEX, index, tag="multi")
        ref = Reference.parse(f"{reg.addr}/repo:multi")
        r = await resolve_image(host, ref, Platform(os="linux", architecture="amd64"))
        assert r.manifest_desc.digest == amd.digest and r.target.media_type == mt.OCI_INDEX
        r = await resolve_image(host, ref, Platform.parse("linux/arm64"))
        assert r.manifest_desc.digest == arm.digest
        with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
            await resolve_image(host, ref, Platform.parse("linux/s390x"))

    run(go)


def test_resolve_refuses_a_manifest_whose_bytes_do_not_match_the_digest():
    async def go(reg, host, other):
        desc, data = _image(reg, "amd64")
        reg.manifests[str(desc.digest)] = (mt.OCI_MANIFEST, data + b" ")
        with pytest.raises(ManifestError, match="digest mismatch"):
            await resolve_image(host, Reference.parse(f"{reg.addr}/repo@{desc.digest}"))

    run(go)


def test_unknown_manifest_is_not_found_with_the_registry_message():
    async def go(reg, host, other):
        with pytest.raises(NotFound, match="not found: manifest unknown: manifest unknown"):
            await resolve_image(host, Reference.parse(f"{reg.addr}/repo:nope"))

    run(go)


def test_unreachable_registry_is_unavailable():
    async def go(reg, host, other):
        registries = Registries(timeouts=Timeouts(connect=2, read=2))
        async with registries.session() as session:
            dead = registries.host(session, "127.0.0.1:1")
            with pytest.raises(Unavailable, match="unreachable"):
                await dead.ping()

    run(go)


def _plain_layer(store_dir, size: int):
    """An uncompressed layer (a tar of ``size`` random bytes) in a fresh content store."""
    import io
    import tarfile
    from types import SimpleNamespace

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("blob")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    store = ContentStore(store_dir)
    store.put(buf.getvalue())
    desc = Descriptor.of(buf.getvalue(), mt.DOCKER_LAYER)
    return SimpleNamespace(content=store, list=lambda: []), desc, buf.getvalue()


def test_push_gzips_a_plain_layer_while_uploading_it(tmp_path):
    """The gzip of a 20 MB layer goes up in several PATCHes as it is made; the registry
    and the content store end with the same verified gzip blob, which inflates back to
    the layer."""
    import gzip

    from conch.engine.distribution.push_stream import push_compressing

    images, layer, raw = _plain_layer(tmp_path, 20 << 20)

    async def go(reg, host, other):
        done = []
        gz = await push_compressing(images, host, "repo", layer, mt.DOCKER_MANIFEST, done.append)
        assert reg.patches >= 2 and done[-1] == layer.size
        assert reg.blobs[str(gz.digest)] == images.content.read(gz.digest, verify=True)
        assert gzip.decompress(reg.blobs[str(gz.digest)]) == raw
        assert gz.media_type == mt.DOCKER_LAYER_GZIP

    run(go)
    assert not os.listdir(tmp_path / "ingest")


def test_push_failing_half_way_leaves_nothing(tmp_path):
    """The registry fails the second PATCH: the push fails with the registry's error, the
    compressing thread stops and removes its ingest, no gzip blob is kept."""
    import threading

    from conch.engine.distribution.push_stream import push_compressing
    from conch.errors import ConchError

    images, layer, _ = _plain_layer(tmp_path, 20 << 20)
    before = {b.digest for b in images.content.walk()}

    async def go(reg, host, other):
        reg.fail_patch = 2
        with pytest.raises(ConchError, match="disk full|500"):
            await push_compressing(images, host, "repo", layer, mt.DOCKER_MANIFEST, lambda n: None)

    threads = threading.active_count()
    run(go)
    assert threading.active_count() <= threads
    assert not os.listdir(tmp_path / "ingest")
    assert {b.digest for b in images.content.walk()} == before
