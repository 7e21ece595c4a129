"""conch.images.gc over real stores in tmp dirs (issue 15 item 5): blobs and committed
snapshots no image references are collected, referenced ones stay (index platforms not
pulled included), active snapshots keep their ancestors, and a content writer's lease
holds the GC off. Unpacking and commit_scratch need no mount: no root needed."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from conch.images import gc
from conch.images.importer import import_image
from conch.oci.digest import Digest
from conch.testing.image_store import image_service, tar_of


@pytest.fixture
def svc(tmp_path):
    yield from image_service(tmp_path)


def blobs(svc) -> set[str]:
    return {str(i.digest) for i in svc.content.walk()}


def snaps(svc) -> set[str]:
    return {i.key for i in svc.snapshotter.walk()}


def plant_blob(svc, text: bytes) -> str:
    info = svc.content.put(text)
    old = 1_600_000_000  # written before the GC starts, as a crash's leftover is
    os.utime(svc.content.blob_path(info.digest), (old, old))
    return str(info.digest)


def plant_snapshot(svc, name: str, parent: str | None = None) -> str:
    fs = svc.snapshotter.scratch()
    (fs / "junk").write_bytes(b"x" * 4096)
    svc.snapshotter.commit_scratch(name, parent, fs)
    return name


def _fake_chain(n: int) -> str:
    return "sha256:" + hashlib.sha256(b"orphan-%d" % n).hexdigest()


@pytest.fixture
def image(svc):
    img = import_image(svc, io.BytesIO(tar_of({"f": b"kept"})), "docker.io/library/keep:1")
    svc.unpack(img)
    return img


def _collect(svc, monkeypatch):
    return gc.collect(svc)


def test_unreferenced_blobs_and_snapshots_go_referenced_stay(svc, image, monkeypatch):
    kept_blobs, kept_snaps = blobs(svc), snaps(svc)
    orphan_blob = plant_blob(svc, b"orphan blob")
    base = plant_snapshot(svc, _fake_chain(1))
    top = plant_snapshot(svc, _fake_chain(2), parent=base)  # removed leaf first
    # an active snapshot (a container's rootfs) keeps its committed parent
    held = plant_snapshot(svc, _fake_chain(3))
    svc.snapshotter.prepare("container-rootfs", held)
    result = _collect(svc, monkeypatch)
    assert (result.blobs, result.snapshots, result.skipped) == (1, 2, ""), result
    assert result.bytes >= len(b"orphan blob") + 2 * 4096
    assert orphan_blob not in blobs(svc)
    assert blobs(svc) == kept_blobs
    assert snaps(svc) == kept_snaps | {held, "container-rootfs"}
    assert base not in snaps(svc) and top not in snaps(svc)
    # the image is whole: it unpacks (a no-op) and reads
    assert svc.get("keep:1").id == image.id
    svc.prepare_rootfs(svc.get("keep:1"), "another-rootfs")


def test_a_lease_holds_the_gc_off(svc, image, monkeypatch):
    orphan = plant_blob(svc, b"written by a pull not named yet")
    with svc.leases.hold():
        result = _collect(svc, monkeypatch)
        assert result.skipped and result.blobs == 0
        assert orphan in blobs(svc)
    assert _collect(svc, monkeypatch).blobs == 1
    assert orphan not in blobs(svc)


def test_writers_wait_while_the_gc_runs(svc):
    leases = svc.leases
    with leases.exclusive() as got:
        assert got
        assert not leases.try_acquire()
        t = threading.Thread(target=leases.acquire)
        t.start()
        t.join(0.2)
        assert t.is_alive(), "a writer got a lease while the GC ran"
    t.join(5)
    assert not t.is_alive() and leases.held == 1
    with leases.exclusive() as got:
        assert not got  # a writer holds one: the GC skips, it does not wait
    leases.release()


def test_index_keeps_every_present_platform(svc, monkeypatch):
    """An image whose target is an index keeps each listed manifest that is present,
    not only the host platform's (a multi-platform load)."""
    import json

    from conch.oci import mediatype as mt

    img = import_image(svc, io.BytesIO(tar_of({"f": b"arm"})), None)
    m = img.target
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [{
        "mediaType": m.media_type, "digest": str(m.digest), "size": m.size,
        "platform": {"architecture": "arm64", "os": "linux"}}]}).encode()
    info = svc.content.put(index)
    from conch.oci.descriptor import Descriptor

    from conch.metadata.db import ImageRecord, now

    t = now()  # as a load of another platform's image records it (register would refuse)
    svc.db.put_image(ImageRecord(name="docker.io/library/multi:1", target=Descriptor(
        media_type=mt.OCI_INDEX, digest=info.digest, size=len(index)),
        config_digest=img.id, created_at=t, updated_at=t))
    # the dangling record of the import goes; the index is now the only root
    for rec in svc.db.images_by_config(img.id):
        if rec.dangling:
            svc.db.delete_image(rec.name)
    before = blobs(svc)
    result = _collect(svc, monkeypatch)
    assert result.blobs == 0 and blobs(svc) == before, result
    assert str(Digest.from_bytes(index)) in before


def test_discard_takes_a_failed_writers_unreferenced_candidates_only(svc, image):
    """What a refused pull or load stored goes; what an image references, or what was
    not named as a candidate, stays; with another writer in flight nothing goes."""
    kept_blobs, kept_snaps = blobs(svc), snaps(svc)
    layer = str(image.manifest.layers[0].digest)
    stray = plant_blob(svc, b"not a candidate")
    pulled = plant_blob(svc, b"a refused pull's config")
    base = plant_snapshot(svc, _fake_chain(10))
    top = plant_snapshot(svc, _fake_chain(11), parent=base)
    candidates = [Digest.parse(pulled), Digest.parse(layer)]
    with svc.leases.hold(), svc.leases.hold():  # ours and another writer's
        result = gc.discard(svc, candidates, [base, top])
        assert result.skipped and (result.blobs, result.snapshots) == (0, 0)
        assert pulled in blobs(svc) and top in snaps(svc)
    with svc.leases.hold():  # ours alone (the API's lease for the request)
        result = gc.discard(svc, candidates, [base, top])
    assert (result.blobs, result.snapshots, result.skipped) == (1, 2, ""), result
    assert blobs(svc) == kept_blobs | {stray}
    assert snaps(svc) == kept_snaps
    assert svc.get("keep:1").id == image.id
