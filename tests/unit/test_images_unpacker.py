"""Unpacking layers into ChainID snapshots without mounting anything (no root needed):
shared bases are unpacked once, a diff_id mismatch leaves no snapshot, concurrent
unpacks of one layer end with one committed snapshot and no leftovers."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading

import pytest

from conch.errors import FailedPrecondition, InvalidArgument
from conch.images.store import ImageService
from conch.images.unpack import USAGE_LABEL
from conch.oci import mediatype as mt
from conch.oci.descriptor import Descriptor
from conch.oci.digest import Digest
from conch.oci.image import ImageConfig, ImageManifest, RootFS, chain_ids
from conch.snapshots import Kind
from conch.testing.image_store import image_service, tar_of


@pytest.fixture
def svc(tmp_path):
    yield from image_service(tmp_path)


def build(svc: ImageService, ref: str, layers: list[bytes], *, diff_ids=None):
    """An image of gzip ``layers`` (tars), written blob by blob and registered."""
    descs = []
    for raw in layers:
        blob = gzip.compress(raw, mtime=0)
        svc.content.put(blob)
        descs.append(Descriptor.of(blob, mt.OCI_LAYER_GZIP))
    if diff_ids is None:
        diff_ids = [Digest.from_bytes(raw) for raw in layers]
    config = ImageConfig(architecture="amd64", os="linux", created=ref,
                         rootfs=RootFS(diff_ids=tuple(diff_ids))).to_bytes()
    svc.content.put(config)
    manifest = ImageManifest(config=Descriptor.of(config, mt.OCI_CONFIG), layers=tuple(descs))
    data = manifest.to_bytes()
    svc.content.put(data)
    return svc.register(Descriptor.of(data, mt.OCI_MANIFEST), ref)


BASE = tar_of({"base": b"b" * 1000})


def committed(svc) -> list[str]:
    return sorted(i.key for i in svc.snapshotter.walk() if i.kind is Kind.COMMITTED)


def test_shared_base_is_unpacked_once(svc):
    a = build(svc, "a", [BASE, tar_of({"a": b"a"})])
    b = build(svc, "b", [BASE, tar_of({"b": b"bb"})])
    top_a = svc.unpack(a)
    top_b = svc.unpack(b)
    chains = {str(c) for c in a.chain_ids() + b.chain_ids()}
    assert len(chains) == 3 and committed(svc) == sorted(chains)
    assert (str(top_a), str(top_b)) == (str(a.chain_ids()[-1]), str(b.chain_ids()[-1]))
    base = svc.snapshotter.stat(str(a.chain_ids()[0]))
    assert base.labels[USAGE_LABEL] == "1000"
    assert svc.snapshotter.stat(str(top_b)).parent == base.key
    assert svc.get("b").size == 1002


def test_diff_id_mismatch_leaves_no_snapshot(svc):
    wrong = Digest.from_bytes(b"not the layer")
    img = build(svc, "bad", [BASE], diff_ids=[wrong])
    with pytest.raises(FailedPrecondition, match="diff_id"):
        svc.unpack(img)
    assert list(svc.snapshotter.walk()) == []
    with pytest.raises(FailedPrecondition):
        svc.prepare_rootfs(img, "ct")
    assert list(svc.snapshotter.walk()) == []


def test_layer_count_must_match_diff_ids(svc):
    img = build(svc, "odd", [BASE], diff_ids=[Digest.from_bytes(BASE)] * 2)
    with pytest.raises(InvalidArgument, match="diff_ids"):
        svc.unpack(img)


def test_image_without_layers_gets_an_empty_rootfs(svc):
    img = build(svc, "scratch", [])
    mounts = svc.prepare_rootfs(img, "ct")
    assert [m.type for m in mounts] == ["bind"]


def test_concurrent_unpacks_of_one_layer(svc):
    big = tar_of({f"f{i}": hashlib.sha256(str(i).encode()).digest() * 2000 for i in range(20)})
    img = build(svc, "big", [big, tar_of({"top": b"t"})])
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            svc.prepare_rootfs(img, f"ct-{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert committed(svc) == sorted(str(c) for c in chain_ids(img.config.rootfs.diff_ids))
    active = sorted(i.key for i in svc.snapshotter.walk() if i.kind is Kind.ACTIVE)
    assert active == [f"ct-{i}" for i in range(4)]  # no extract-* leftovers


def test_layers_extract_in_parallel_and_a_bad_one_leaves_no_scratch(svc):
    """Layers are extracted several at once and stacked in order; when one fails its
    diff_id check, the layers below it stay committed, nothing above is committed and
    no scratch directory is left (the others' extractions are waited for and dropped)."""
    layers = [tar_of({f"l{i}/f{j}": bytes([i]) * 50_000 for j in range(20)}) for i in range(4)]
    good = [Digest.from_bytes(raw) for raw in layers]
    img = build(svc, "bad-middle", layers, diff_ids=[good[0], Digest.from_bytes(b"x"), *good[2:]])
    with pytest.raises(FailedPrecondition, match="diff_id"):
        svc.unpack(img)
    assert committed(svc) == [str(chain_ids(good)[0])]
    assert sorted(os.listdir(svc.snapshotter.root / "snapshots")) == ["1"]
    img = build(svc, "good", layers)
    svc.unpack(img)
    assert committed(svc) == sorted(str(c) for c in chain_ids(good))
    assert {info.labels[USAGE_LABEL] for info in svc.snapshotter.walk()} == {str(20 * 50_000)}
