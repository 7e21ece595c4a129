"""conch.engine.build.step_results over real stores in tmp dirs (issue 14): a deferred
stage's step result round-trips through the step cache (keyed by its inputs, no image),
a replaced entry names the snapshots it dropped, the image GC keeps step snapshots,
drop_snapshots goes leaves first and never touches anything else, reconcile drops what a
crash left dangling, and materialize makes the layers once, as an image."""

from __future__ import annotations

import io
import os

import pytest

from conch.engine.build import step_results as sr
from conch.engine.build.step_images import StepCache
from conch.images import gc
from conch.images.importer import import_image
from conch.oci.image import ExecutionConfig
from conch.testing.image_store import image_service, tar_of


@pytest.fixture
def svc(tmp_path):
    yield from image_service(tmp_path)


@pytest.fixture
def base(svc):
    img = import_image(svc, io.BytesIO(tar_of({"etc/base": b"base"})), "docker.io/library/base:1")
    svc.unpack(img)
    return img


def step_snapshot(svc, parent, files: dict[str, bytes], step_id: str) -> str:
    """What a RUN/COPY leaves: an active snapshot written into, then commit_snapshot."""
    key = f"build-{os.urandom(4).hex()}"
    mounts = sr.prepare(svc, svc.snapshotter, key, parent)
    from conch.snapshots import writable_dir

    upper = writable_dir(mounts)
    for name, data in files.items():
        (upper / name).parent.mkdir(parents=True, exist_ok=True)
        (upper / name).write_bytes(data)
    name = sr.commit_snapshot(svc.snapshotter, key, step_id)
    assert name is not None
    return name


def test_lazy_round_trip_cache_and_materialize(svc, base, tmp_path):
    cache = StepCache(tmp_path / "data", svc)
    cfg = ExecutionConfig(env=("A=1",))
    k1 = cache.step_id(str(base.id), "RUN one")
    s1 = step_snapshot(svc, base, {"one": b"1"}, k1)
    first = sr.advance(base, cfg, "/bin/sh -c one", step_id=k1, snapshot=s1)
    assert cache.put(str(base.id), "RUN one", first) == ()
    assert cache.get(str(base.id), "RUN one") == first  # JSON round trip, verified present
    k2 = cache.step_id(first, "ENV B=2")
    second = sr.advance(first, cfg, "/bin/sh -c #(nop)  ENV B=2", step_id=k2)
    cache.put(first, "ENV B=2", second)
    assert second.layers == (s1,) and second.config.history[-1].empty_layer
    assert cache.step_id(first, "ENV B=2") != cache.step_id(str(base.id), "ENV B=2")
    # no image was registered for either step
    assert [str(i.id) for i in svc.list()] == [str(base.id)]
    # the image GC keeps step snapshots (the cache holds them, no image does)
    assert gc.collect(svc).snapshots == 0 and s1 in {i.key for i in svc.snapshotter.walk()}
    # exported: one layer made from the snapshot, the image reads as the steps left it
    image_id = sr.materialize(svc, svc.snapshotter, second)
    image = svc.get(image_id)
    assert len(image.config.rootfs.diff_ids) == 2 and len(image.manifest.layers) == 2
    assert [h.empty_layer for h in image.config.history[-2:]] == [False, True]
    # its layers unpack from the blobs just made (the unpacker checks each diff_id)
    assert sr.prepare(svc, svc.snapshotter, "check", image)
    assert svc.snapshotter.stat(str(image.config.chain_ids()[-1])).parent is not None
    # a rebuild (--no-cache) replaces the entry: the old snapshot is named for dropping
    s1b = step_snapshot(svc, base, {"one": b"1"}, k1)
    again = sr.advance(base, cfg, "/bin/sh -c one", step_id=k1, snapshot=s1b)
    assert cache.put(str(base.id), "RUN one", again) == (s1,)


def test_drop_snapshots_leaves_first_and_only_step_snapshots(svc, base):
    s1 = step_snapshot(svc, base, {"a": b"a"}, "sha256:" + "1" * 64)
    lazy = sr.advance(base, ExecutionConfig(), "x", step_id="sha256:" + "1" * 64, snapshot=s1)
    s2 = step_snapshot(svc, lazy, {"b": b"b"}, "sha256:" + "2" * 64)
    chain = str(base.config.chain_ids()[-1])
    freed = sr.drop_snapshots(svc.snapshotter, {s1, s2, chain})
    left = {i.key for i in svc.snapshotter.walk()}
    assert s1 not in left and s2 not in left and chain in left and freed >= 2


def test_reconcile_drops_dangling_entries_and_unnamed_snapshots(svc, base, tmp_path):
    cache = StepCache(tmp_path / "data", svc)
    k1 = cache.step_id(str(base.id), "RUN keep")
    kept = step_snapshot(svc, base, {"k": b"k"}, k1)
    cache.put(str(base.id), "RUN keep", sr.advance(base, ExecutionConfig(), "k", step_id=k1, snapshot=kept))
    orphan = step_snapshot(svc, base, {"o": b"o"}, "sha256:" + "3" * 64)  # no entry names it
    gone = sr.advance(base, ExecutionConfig(), "g", step_id="sha256:" + "4" * 64, snapshot="build-step-gone")
    (cache.dir / ("4" * 64)).write_text(gone.to_json())
    (cache.dir / ("5" * 64)).write_text("{torn")
    (cache.dir / ("6" * 64 + ".tmpabcd")).write_text("half")
    (cache.dir / ("7" * 64)).write_text("sha256:" + "8" * 64)  # an image: checked on use
    (cache.dir / ("9" * 64)).write_text("sha2")  # torn
    sr.reconcile(cache.dir, svc, svc.snapshotter)
    assert sorted(p.name for p in cache.dir.iterdir()) == sorted(
        [cache.step_id(str(base.id), "RUN keep")[7:], "7" * 64])
    left = {i.key for i in svc.snapshotter.walk()}
    assert kept in left and orphan not in left
    assert cache.get(str(base.id), "RUN keep").layers == (kept,)


def test_running_builds_counter():
    assert sr.alone(0)
    with sr.build_running():
        assert sr.alone() and not sr.alone(0)
        with sr.build_running():
            assert not sr.alone()
    assert sr.alone(0)
