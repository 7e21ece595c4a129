"""A real image store in a temporary directory, and tiny layer tars, for unit tests of
``conch.images`` (no root, no daemon): the same content store, overlay snapshotter and
SQLite metadata conchd composes. :func:`docker_save` and :func:`oci_layout` wrap one
layer as ``docker load`` takes it (both formats), lies included, for load tests."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from conch.content.store import ContentStore
from conch.images.store import ImageService
from conch.metadata.db import Database
from conch.snapshots.overlay import OverlaySnapshotter


def tar_of(files: dict[str, bytes]) -> bytes:
    """A PAX tar of regular files (mode 0644, a fixed mtime: the same bytes every time)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_service(root: Path) -> Iterator[ImageService]:
    """For a fixture's ``yield from``: an ImageService under ``root``, closed after."""
    db = Database(root / "metadata.db")
    sn = OverlaySnapshotter(root / "snapshots")
    try:
        yield ImageService(root / "images", ContentStore(root / "content"), sn, db)
    finally:
        sn.close()
        db.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _config(layer: bytes, diff_id: str | None) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [diff_id or f"sha256:{_sha(layer)}"]}}).encode()


def docker_save(layer: bytes, diff_id: str | None = None, tag: str = "hostile:1") -> bytes:
    """A docker-save tar (legacy ``<id>/layer.tar`` layout) of one image of ``layer``
    (uncompressed), named ``tag``; its config claims ``diff_id`` (default: the truth)."""
    config = _config(layer, diff_id)
    return tar_of({"aaaa/layer.tar": layer, f"{_sha(config)}.json": config,
                   "manifest.json": json.dumps([{"Config": f"{_sha(config)}.json",
                                                 "RepoTags": [tag],
                                                 "Layers": ["aaaa/layer.tar"]}]).encode()})


def oci_layout(layer: bytes, diff_id: str | None = None, blob: bytes | None = None,
               name: str = "docker.io/library/hostile:2") -> bytes:
    """An OCI layout tar of one image of ``layer`` named ``name``; ``blob``: other bytes
    stored under the layer's digest (a lying archive)."""
    config = _config(layer, diff_id)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{_sha(config)}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{_sha(layer)}", "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{_sha(manifest)}", "size": len(manifest),
        "annotations": {"io.containerd.image.name": name}}]}).encode()
    return tar_of({"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index,
                   **{f"blobs/sha256/{_sha(b)}": b for b in (config, manifest)},
                   f"blobs/sha256/{_sha(layer)}": layer if blob is None else blob})
