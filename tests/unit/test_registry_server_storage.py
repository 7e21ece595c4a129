"""conch.registry.server storage, upload sessions and gc, on a temp dir (no server)."""

import asyncio
import hashlib
import json
import os
import threading
import time

import pytest

from conch.oci.digest import Digest
from conch.registry.server import gc
from conch.registry.server.errors import RegistryError
from conch.registry.server.storage import Storage
from conch.registry.server.uploads import Uploads

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


async def _chunks(*parts):
    for p in parts:
        yield p


async def _failing(*parts):
    for p in parts:
        yield p
    raise ConnectionResetError("client went away")


def _digest(data: bytes) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


def push_blob(uploads: Uploads, name: str, data: bytes) -> Digest:
    async def go():
        s = uploads.create(name)
        await uploads.append(name, s, _chunks(data[:3], data[3:]))
        await uploads.finalise(name, s, _digest(data))
    asyncio.run(go())
    return _digest(data)


def manifest_for(config: Digest, csize: int, layer: Digest, lsize: int) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": str(config), "size": csize},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": str(layer), "size": lsize}]}).encode()


def put(storage, name, body, tag="latest"):
    doc = json.loads(body)
    layers = [(Digest.parse(d["digest"]), d["size"]) for d in [doc["config"], *doc["layers"]]]
    storage.put_manifest(name, _digest(body), body, OCI_MANIFEST, tag, layers, [], None)
    return _digest(body)


@pytest.fixture
def store(tmp_path):
    s = Storage(tmp_path / "root")
    return s, Uploads(s)


def test_upload_verify_commit_and_repo_scoping(store):
    storage, uploads = store
    d = push_blob(uploads, "a", b"hello world")
    path = storage.readable_blob("a", d)
    assert path.read_bytes() == b"hello world" and path.stat().st_mode & 0o777 == 0o444
    assert storage.readable_blob("b", d) is None  # not linked into b
    storage.link_blob("b", d)  # what a mount does
    assert storage.readable_blob("b", d) == path
    assert os.listdir(storage.root / "uploads") == []


def test_digest_mismatch_stores_nothing(store):
    storage, uploads = store

    async def go():
        s = uploads.create("a")
        await uploads.append("a", s, _chunks(b"evil"))
        with pytest.raises(RegistryError) as exc:
            await uploads.finalise("a", s, _digest(b"good"))
        assert exc.value.code == "DIGEST_INVALID"
    asyncio.run(go())
    assert storage.blob_size(_digest(b"evil")) is None and storage.blob_size(_digest(b"good")) is None
    assert os.listdir(storage.root / "uploads") == []


def test_out_of_order_chunk_416_and_failed_chunk_truncated(store):
    storage, uploads = store

    async def go():
        s = uploads.create("a")
        assert await uploads.append("a", s, _chunks(b"0123"), start=0, length=4) == 4
        with pytest.raises(RegistryError) as exc:
            await uploads.append("a", s, _chunks(b"xx"), start=2, length=2)
        assert exc.value.status == 416 and exc.value.headers["Range"] == "0-3"
        with pytest.raises(ConnectionResetError):
            await uploads.append("a", s, _failing(b"half"))
        assert uploads.size("a", s) == 4  # the broken chunk was cut off again
        with pytest.raises(RegistryError) as exc:
            await uploads.append("a", s, _chunks(b"abc"), start=4, length=2)
        assert exc.value.code == "SIZE_INVALID" and uploads.size("a", s) == 4
        await uploads.append("a", s, _chunks(b"4567"), start=4, length=4)
        # a new Uploads (a restarted server) has no running hash: it re-hashes the file
        await Uploads(storage).finalise("a", s, _digest(b"01234567"))
    asyncio.run(go())
    assert storage.readable_blob("a", _digest(b"01234567")).read_bytes() == b"01234567"


def test_upload_belongs_to_its_repository(store):
    storage, uploads = store
    s = uploads.create("a")
    for name, session in (("b", s), ("a", "not-a-uuid"), ("a", "1" * 8 + "-1111-1111-1111-" + "1" * 12)):
        with pytest.raises(RegistryError) as exc:
            uploads.size(name, session)
        assert exc.value.code == "BLOB_UPLOAD_UNKNOWN"


def test_manifest_put_checks_blobs_and_sizes(store):
    storage, uploads = store
    cfg = push_blob(uploads, "a", b"{}")
    layer = push_blob(uploads, "a", b"layer")
    with pytest.raises(RegistryError) as exc:
        put(storage, "b", manifest_for(cfg, 2, layer, 5))  # blobs are not in b
    assert exc.value.code == "MANIFEST_BLOB_UNKNOWN"
    with pytest.raises(RegistryError) as exc:
        put(storage, "a", manifest_for(cfg, 2, layer, 6))
    assert exc.value.code == "MANIFEST_INVALID"
    m = put(storage, "a", manifest_for(cfg, 2, layer, 5))
    assert storage.resolve("a", None, "latest") == (m, OCI_MANIFEST)
    assert storage.tags("a") == ["latest"] and storage.repositories() == ["a"]
    storage.delete_manifest("a", m)
    with pytest.raises(RegistryError) as exc:
        storage.resolve("a", None, "latest")
    assert exc.value.code == "MANIFEST_UNKNOWN"
    with pytest.raises(RegistryError) as exc:
        storage.resolve("nope", None, "latest")
    assert exc.value.code == "NAME_UNKNOWN"


def _age(storage, digest, seconds=7200):
    old = time.time() - seconds
    os.utime(storage.blob_path(digest), (old, old))


def test_gc_mark_and_sweep(store):
    storage, uploads = store
    cfg, layer = push_blob(uploads, "a", b"{}"), push_blob(uploads, "a", b"layer")
    garbage = push_blob(uploads, "a", b"garbage")
    young = push_blob(uploads, "a", b"young garbage")
    m = put(storage, "a", manifest_for(cfg, 2, layer, 5))
    for d in (cfg, layer, garbage, m):
        _age(storage, d)
    stale = uploads.create("a")
    old = time.time() - 7200
    os.utime(storage.root / "uploads" / stale / "data", (old, old))
    os.utime(storage.root / "uploads" / stale, (old, old))
    fresh = uploads.create("a")

    dry = gc.collect(storage, dry_run=True)
    assert dry.deleted == [str(garbage)] and storage.blob_size(garbage) == 7
    report = gc.collect(storage)
    assert report.deleted == [str(garbage)] and report.kept_young == 1
    assert report.uploads_removed == 1 and report.links_removed == 1
    assert storage.blob_size(garbage) is None and storage.blob_size(young) == 13
    assert storage.readable_blob("a", layer) is not None
    assert os.listdir(storage.root / "uploads") == [fresh]
    # deleting the manifest makes its blobs garbage
    storage.delete_manifest("a", m)
    assert sorted(gc.collect(storage).deleted) == sorted(str(d) for d in (cfg, layer, m))


def test_gc_keeps_index_children(store):
    storage, uploads = store
    cfg, layer = push_blob(uploads, "a", b"{}"), push_blob(uploads, "a", b"layer")
    child = put(storage, "a", manifest_for(cfg, 2, layer, 5), tag=None)
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": str(child), "size": 1}]}).encode()
    storage.put_manifest("a", _digest(index), index, "application/vnd.oci.image.index.v1+json",
                         "multi", [], [child], None)
    for d in (cfg, layer, child, _digest(index)):
        _age(storage, d)
    assert gc.mark(storage) >= {str(cfg), str(layer), str(child), str(_digest(index))}
    assert gc.collect(storage).deleted == []


def _push_while_collecting(storage, uploads, grace, pause):
    stop = threading.Event()
    runs = [0]

    def collector():
        while not stop.is_set():
            gc.collect(storage, grace=grace)
            runs[0] += 1
            time.sleep(pause)

    t = threading.Thread(target=collector)
    t.start()
    accepted, refused = [], 0
    try:
        for i in range(60):
            cfg = push_blob(uploads, "r", b"{}")
            layer = push_blob(uploads, "r", f"layer {i}".encode())
            body = manifest_for(cfg, 2, layer, len(f"layer {i}"))
            try:
                accepted.append((put(storage, "r", body, tag=f"t{i}"), cfg, layer))
            except RegistryError as exc:
                assert exc.code == "MANIFEST_BLOB_UNKNOWN"
                refused += 1
    finally:
        stop.set()
        t.join()
    assert runs[0] > 0 and accepted
    for m, cfg, layer in accepted:
        for d in (m, cfg, layer):
            assert storage.readable_blob("r", d) is not None, (d, refused)
    return refused


def test_gc_without_grace_concurrent_with_pushes_never_breaks_a_manifest(store):
    """Worst case, no grace period at all: gc may take a freshly uploaded blob before its
    manifest arrives, but then the manifest PUT is refused (MANIFEST_BLOB_UNKNOWN); a
    manifest that was accepted always has all its blobs (the gc lock's re-check)."""
    _push_while_collecting(*store, grace=0.0, pause=0.02)


def test_gc_with_grace_concurrent_with_pushes_loses_nothing(store):
    """With a grace period (1 h by default; 60 s here), pushes running during gc
    never lose a blob: every manifest is accepted."""
    assert _push_while_collecting(*store, grace=60.0, pause=0.0) == 0
