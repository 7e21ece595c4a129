"""docker save / docker load: round trips, the legacy docker-save layout, plain OCI
layouts, and hostile archives (paths, links, lying digests and diff_ids)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from conch.content.store import ContentStore
from conch.errors import InvalidArgument
from conch.images.archive import load, save
from conch.images.importer import import_image
from conch.images.store import ImageService
from conch.metadata.db import Database
from conch.snapshots.overlay import OverlaySnapshotter


def tar_of(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def make_svc(tmp_path):
    made = []

    def make(name: str) -> ImageService:
        db = Database(tmp_path / name / "metadata.db")
        sn = OverlaySnapshotter(tmp_path / name / "snapshots")
        made.append((sn, db))
        return ImageService(tmp_path / name / "images", ContentStore(tmp_path / name / "content"),
                            sn, db)

    yield make
    for sn, db in made:
        sn.close()
        db.close()


def test_save_then_load_round_trip(make_svc):
    src, dst = make_svc("src"), make_svc("dst")
    img = import_image(src, io.BytesIO(tar_of({"hello": b"world"})), "busybox",
                       changes=["CMD [\"sh\"]"])
    src.tag("busybox", "example.com/x:1")
    anon = import_image(src, io.BytesIO(tar_of({"a": b"b"})), None)
    out = io.BytesIO()
    save(src, ["busybox", "example.com/x:1", anon.id.hex[:12]], out)

    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
        index = json.load(tar.extractfile("index.json"))
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)
    assert manifest[0]["RepoTags"] == ["busybox:latest", "example.com/x:1"]
    assert manifest[0]["Config"] == f"blobs/sha256/{img.id.hex}"
    assert manifest[1]["RepoTags"] is None
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == \
        "docker.io/library/busybox:latest"

    loaded = load(dst, io.BytesIO(out.getvalue()))
    assert [(x.ref, x.image.id) for x in loaded] == [
        ("busybox:latest", img.id), ("example.com/x:1", img.id), (None, anon.id)]
    assert dst.get("busybox").config.config.cmd == ("sh",)
    assert dst.get("example.com/x:1").id == img.id
    assert dst.get(str(anon.id)).dangling
    # saving is reproducible
    again = io.BytesIO()
    save(src, ["busybox", "example.com/x:1", anon.id.hex[:12]], again)
    assert again.getvalue() == out.getvalue()


def legacy_save(layer: bytes, *, diff_id: str | None = None, tag="old:1") -> dict[str, bytes]:
    """The pre-25 docker save layout: <id>/layer.tar, <config>.json, manifest.json."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers",
                                    "diff_ids": [diff_id or f"sha256:{sha(layer)}"] * 2}}).encode()
    return {
        "aaaa/layer.tar": layer,
        f"{sha(config)}.json": config,
        "manifest.json": json.dumps([{"Config": f"{sha(config)}.json", "RepoTags": [tag],
                                      "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"]}]).encode(),
    }


def test_load_legacy_layout_with_symlinked_layer(make_svc):
    svc = make_svc("s")
    layer = tar_of({"etc/motd": b"hi"})
    archive = tar_of(legacy_save(layer), links={"bbbb/layer.tar": "../aaaa/layer.tar"})
    (loaded,) = load(svc, io.BytesIO(gzip.compress(archive)))
    assert loaded.ref == "old:1"
    assert len(loaded.image.manifest.layers) == 2
    assert str(loaded.image.config.rootfs.diff_ids[0]) == f"sha256:{sha(layer)}"
    svc.unpack(loaded.image)  # the diff_ids verify again at unpack


def test_load_plain_oci_layout(make_svc):
    src, dst = make_svc("src"), make_svc("dst")
    img = import_image(src, io.BytesIO(tar_of({"x": b"y"})), "app:2")
    out = io.BytesIO()
    save(src, ["app:2"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}
    del files["manifest.json"], files["repositories"]
    (loaded,) = load(dst, io.BytesIO(tar_of(files)))
    assert loaded.ref == "app:2" and loaded.image.target.digest == img.target.digest
    # skopeo's oci-archive names an image only in ref.name; a bare tag names nothing
    index = json.loads(files["index.json"])
    for ref_name, expect in (("example.com/y:3", "example.com/y:3"), ("latest", None)):
        index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        files["index.json"] = json.dumps(index).encode()
        (loaded,) = load(dst, io.BytesIO(tar_of(files)))
        assert loaded.ref == expect


def test_hostile_links_and_paths_stay_inside(make_svc, tmp_path):
    svc = make_svc("s")
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    layer = tar_of({"f": b"1"})
    files = legacy_save(layer)
    # a link out of the archive resolves inside it (to nothing), never on disk
    archive = tar_of(files, links={"bbbb/layer.tar": f"../../../../..{secret}"})
    with pytest.raises(InvalidArgument, match="no file"):
        load(svc, io.BytesIO(archive))
    # path names with .. cannot climb out either: they are cleaned to in-archive names
    files = dict(files)
    files["../../escape"] = b"x"
    files["bbbb/layer.tar"] = layer
    (loaded,) = load(svc, io.BytesIO(tar_of(files)))
    assert not (tmp_path / "escape").exists() and loaded.ref == "old:1"


def test_lying_diff_id_is_refused_and_names_nothing(make_svc):
    svc = make_svc("s")
    layer = tar_of({"f": b"1"})
    files = legacy_save(layer, diff_id="sha256:" + "0" * 64)
    files["bbbb/layer.tar"] = layer
    with pytest.raises(InvalidArgument, match="diff_id"):
        load(svc, io.BytesIO(tar_of(files)))
    assert svc.list() == []


def test_lying_blob_digest_in_oci_layout_is_refused(make_svc):
    src, dst = make_svc("src"), make_svc("dst")
    img = import_image(src, io.BytesIO(tar_of({"x": b"y"})), "app")
    out = io.BytesIO()
    save(src, ["app"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}
    del files["manifest.json"]
    layer_path = f"blobs/sha256/{img.manifest.layers[0].digest.hex}"
    files[layer_path] = gzip.compress(b"tampered")
    with pytest.raises(InvalidArgument):
        load(dst, io.BytesIO(tar_of(files)))
    assert dst.list() == [] and dst.content.list_ingests() == []


def test_not_an_image_archive(make_svc):
    svc = make_svc("s")
    with pytest.raises(InvalidArgument, match="neither manifest.json nor index.json"):
        load(svc, io.BytesIO(tar_of({"hello": b"x"})))
    with pytest.raises(InvalidArgument):
        load(svc, io.BytesIO(b"garbage" * 200))
