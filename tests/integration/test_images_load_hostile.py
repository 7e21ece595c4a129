"""docker load refuses a hostile layer at load time (issue 15 item 7), as dockerd does
(it unpacks there): every entry of every layer is checked as apply_layer checks it (names
escaping the root, NUL bytes, the root replaced, invalid whiteouts, hardlinks to what the
layer did not write, broken tar streams). Loading used to accept them all; only `run`
(the unpack) refused. What a layer may do inside its root (absolute symlinks, devices...)
still loads."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from conch.content.store import ContentStore
from conch.errors import InvalidArgument
from conch.images.archive import load
from conch.images.store import ImageService
from conch.metadata.db import Database
from conch.snapshots.overlay import OverlaySnapshotter

_spec = importlib.util.spec_from_file_location(
    "hostile_layers", Path(__file__).parents[1] / "corpus" / "hostile_layers.py")
hostile_layers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("hostile_layers", hostile_layers)
_spec.loader.exec_module(hostile_layers)

# refused at load: what apply_layer refuses for the names and the stream alone
AT_LOAD = {"dotdot-file", "dotdot-deep", "dotdot-dir", "file-is-root", "symlink-is-root",
           "hardlink-dotdot", "hardlink-absolute", "device-dotdot", "gnu-longname-dotdot",
           "pax-path-nul", "pax-linkpath-nul", "whiteout-dotdot", "whiteout-of-dotdot",
           "garbage", "empty-stream", "bad-checksum-after-member", "truncated-data",
           "truncated-header", "huge-size-no-data", "pax-huge-size", "gnu-longname-huge"}
CASES = {c.name: c for c in hostile_layers.CASES}


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def docker_save(layer: bytes) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha(layer)}"]}}).encode()
    return _tar({"aaaa/layer.tar": layer, f"{_sha(config)}.json": config,
                 "manifest.json": json.dumps([{"Config": f"{_sha(config)}.json",
                                               "RepoTags": ["hostile:1"],
                                               "Layers": ["aaaa/layer.tar"]}]).encode()})


def oci_layout(layer: bytes) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha(layer)}"]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{_sha(config)}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{_sha(layer)}", "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{_sha(manifest)}", "size": len(manifest),
        "annotations": {"io.containerd.image.name": "docker.io/library/hostile:2"}}]}).encode()
    return _tar({"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index,
                 **{f"blobs/sha256/{_sha(b)}": b for b in (config, manifest, layer)}})


@pytest.fixture
def svc(tmp_path):
    db = Database(tmp_path / "metadata.db")
    sn = OverlaySnapshotter(tmp_path / "snapshots")
    yield ImageService(tmp_path / "images", ContentStore(tmp_path / "content"), sn, db)
    sn.close()
    db.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_layer_refused_at_load(svc, tmp_path, name):
    case = CASES[name]
    if case.needs_root and os.geteuid() != 0:
        pytest.skip("the case needs root to build")
    canary = tmp_path / "canary"
    layer = case.build(canary)
    for fmt, archive in (("docker-save", docker_save(layer)), ("oci", oci_layout(layer))):
        if name in AT_LOAD:
            with pytest.raises(InvalidArgument, match="^load: "):
                load(svc, io.BytesIO(archive))
            assert svc.list() == [], fmt
        elif case.expect == "contain":  # harmless inside its root: loads as before
            (loaded,) = load(svc, io.BytesIO(archive))
            assert loaded.ref in ("hostile:1", "hostile:2"), (fmt, loaded.ref)
        # the rest (a symlink loop, a hardlink through a symlink) need the tree: run
