"""``docker import``: a busybox rootfs tarball becomes a verified one-layer image whose
config carries the ``--change`` instructions; every digest is checked by re-reading the
blobs from the content store."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib

import pytest
import zstandard

from conch.archive import write_tar
from conch.content.store import ContentStore
from conch.errors import InvalidArgument
from conch.images.importer import apply_changes, import_image, rfc3339_nano
from conch.images.store import ImageService
from conch.metadata.db import Database
from conch.oci import mediatype as mt
from conch.oci.image import ExecutionConfig, ImageConfig, ImageManifest
from conch.snapshots.overlay import OverlaySnapshotter
from conch.testing.rootfs import busybox_rootfs


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory) -> bytes:
    try:
        rootfs = busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    buf = io.BytesIO()
    write_tar(rootfs, buf)
    return buf.getvalue()


@pytest.fixture
def svc(tmp_path):
    db = Database(tmp_path / "metadata.db")
    sn = OverlaySnapshotter(tmp_path / "snapshots")
    yield ImageService(tmp_path / "images", ContentStore(tmp_path / "content"), sn, db)
    sn.close()
    db.close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_import_busybox_digests_verify(svc, busybox_tar):
    img = import_image(svc, io.BytesIO(busybox_tar), "busybox", message="from a tarball")
    assert img.repo_tags == ("busybox:latest",)

    manifest_bytes = svc.content.read(img.target.digest)
    assert sha256(manifest_bytes) == str(img.target.digest)
    assert img.target.media_type == mt.DOCKER_MANIFEST
    manifest = ImageManifest.from_bytes(manifest_bytes)
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert manifest.config.media_type == mt.DOCKER_CONFIG

    config_bytes = svc.content.read(manifest.config.digest)
    assert sha256(config_bytes) == str(manifest.config.digest) == str(img.id)
    config = ImageConfig.from_bytes(config_bytes)

    (layer,) = manifest.layers
    assert layer.media_type == mt.DOCKER_LAYER_GZIP
    blob = svc.content.read(layer.digest)
    assert sha256(blob) == str(layer.digest) and len(blob) == layer.size
    assert len(blob) < len(busybox_tar)  # it was compressed
    assert gzip.decompress(blob) == busybox_tar
    assert [str(d) for d in config.rootfs.diff_ids] == [sha256(busybox_tar)]

    assert (config.os, config.architecture) == (svc.platform.os, svc.platform.architecture)
    assert config.history[0].created_by == "conch import"
    assert config.history[0].comment == "from a tarball"
    assert config.extra["comment"] == "from a tarball"
    assert config.created == config.history[0].created and config.created.endswith("Z")
    # docker's import always writes a config object (BuildFromConfig over an empty one)
    assert config.config is not None and config.config.cmd is None and config.config.env is None


@pytest.mark.parametrize("compress", [
    lambda b: b,
    lambda b: gzip.compress(b, mtime=0),
    lambda b: zstandard.ZstdCompressor().compress(b),
], ids=["plain", "gzip", "zstd"])
def test_input_compression_is_detected(svc, busybox_tar, compress):
    img = import_image(svc, io.BytesIO(compress(busybox_tar)), None)
    assert img.dangling
    assert [str(d) for d in img.config.rootfs.diff_ids] == [sha256(busybox_tar)]
    # the layer blob is the same gzip whatever the input's compression was
    blob = svc.content.read(img.manifest.layers[0].digest)
    assert zlib.decompress(blob, 31) == busybox_tar


def test_changes_land_in_the_config(svc, busybox_tar):
    img = import_image(svc, io.BytesIO(busybox_tar), "example.com/app:1", changes=[
        'CMD ["httpd", "-f"]',
        "entrypoint /bin/sh -c 'exec \"$0\" \"$@\"'",
        'ENV PATH=/bin:/usr/bin GREETING="hello world"',
        "ENV LEGACY value with spaces",
        'LABEL org.example.team=core "quoted key"=v',
        "WORKDIR /srv",
        "WORKDIR www",
        "USER 1000:1000",
        "EXPOSE 80 53/udp 8000-8002",
        'VOLUME ["/data", "/logs"]',
        "VOLUME /cache",
        "STOPSIGNAL SIGQUIT",
    ], platform="linux/arm64")
    c = img.config.config
    assert c.cmd == ("httpd", "-f")
    assert c.entrypoint == ("/bin/sh", "-c", "/bin/sh -c 'exec \"$0\" \"$@\"'")
    assert c.env == ("PATH=/bin:/usr/bin", "GREETING=hello world", "LEGACY=value with spaces")
    assert c.labels == {"org.example.team": "core", "quoted key": "v"}
    assert c.working_dir == "/srv/www" and c.user == "1000:1000"
    assert set(c.exposed_ports) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"}
    assert set(c.volumes) == {"/data", "/logs", "/cache"}
    assert c.stop_signal == "SIGQUIT"
    assert (img.architecture, img.os) == ("arm64", "linux")
    # the stored bytes say the same (round trip through the content store)
    stored = json.loads(svc.content.read(img.id))
    assert stored["config"]["Cmd"] == ["httpd", "-f"]


@pytest.mark.parametrize(("change", "message"), [
    ("RUN echo hi", "run is not a valid change command"),
    ("FROM scratch", "from is not a valid change command"),
    ("ENV", "requires at least one argument"),
    ("ENV a=1 b", "can't find = in 'b'"),
    ("EXPOSE 70000", "invalid port range"),
    ("EXPOSE http", "invalid containerPort"),
    ("VOLUME", "can not be an empty string"),
    ("STOPSIGNAL SIGNOPE", "Invalid signal"),
    ("WORKDIR", "requires exactly one argument"),
])
def test_invalid_changes(change, message):
    with pytest.raises(InvalidArgument, match=message):
        apply_changes(None, [change])


def test_env_replaces_an_existing_key():
    c = apply_changes(ExecutionConfig(env=("A=1", "B=2")), ["ENV A=3"])
    assert c.env == ("B=2", "A=3")


def test_bad_inputs_leave_nothing_behind(svc):
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        import_image(svc, io.BytesIO(b"this is not a tarball" * 100), "x")
    with pytest.raises(InvalidArgument, match="cannot import digest reference"):
        import_image(svc, io.BytesIO(b""), "x@sha256:" + "a" * 64)
    with pytest.raises(InvalidArgument):
        import_image(svc, io.BytesIO(b""), "Bad/Name")
    assert list(svc.content.walk()) == [] and svc.content.list_ingests() == []
    assert svc.list() == []


def test_empty_tar_imports(svc):
    buf = io.BytesIO()
    import tarfile

    tarfile.open(fileobj=buf, mode="w").close()
    img = import_image(svc, io.BytesIO(buf.getvalue()), "empty")
    assert img.repo_tags == ("empty:latest",)


def test_rfc3339_nano():
    assert rfc3339_nano(0) == "1970-01-01T00:00:00Z"
    assert rfc3339_nano(1_500_000_000_120_000_000) == "2017-07-14T02:40:00.12Z"
