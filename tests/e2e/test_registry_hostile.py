"""Hostile and unusual content through ``conch pull``: conch CLI -> a private conchd -> a
registry on 127.0.0.1 serving it.

* every case of the hostile-layer corpus (tests/corpus/hostile_layers.py: ``../`` and
  absolute names, symlinks and hardlinks out, a symlinked directory then a file under
  it, device nodes, setuid, enormous headers, garbage), gzip- and zstd-compressed
  alternately: the pull is refused (dockerd's "failed to register layer: ..."; no name,
  no ingest, no blob, no snapshot left) or contained
  (the files land inside the layer's snapshot); either way the canary next to the test
  and the host's /etc are untouched, and once every image is removed the snapshot
  store is back to where it started;
* a zstd layer in an OCI 1.1 index that also lists artifacts (one with
  ``artifactType``, one only recognisable by its config): the artifacts are skipped,
  never fetched, and the image runs;
* a registry sending garbage for a manifest.

The registry is conch.testing.fake_registry (a real registry would refuse to store
some of these, and the artifacts-first index needs exact control of the bytes).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from conch.oci import mediatype as mt
from conch.testing.daemon import busybox_tar, clean_after, daemon_fixture
from conch.testing.fake_registry import FakeRegistry
from conch.testing.image_store import docker_save

_spec = importlib.util.spec_from_file_location(
    "hostile_layers", Path(__file__).parents[1] / "corpus" / "hostile_layers.py")
hostile_layers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("hostile_layers", hostile_layers)
_spec.loader.exec_module(hostile_layers)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="conchd needs root")
daemon = daemon_fixture("module")
HOST_FILES = ("/etc/passwd", "/etc/shadow", "/etc/hostname")


@pytest.fixture(scope="module")
def registry():
    reg = FakeRegistry().start_in_thread()
    yield reg
    reg.stop_thread()


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _desc(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), **extra}


def _host_platform() -> dict:
    from conch.oci.platform import host_platform

    p = host_platform()
    out = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        out["variant"] = p.variant
    return out


def _fingerprint(top: Path) -> list[tuple]:
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = Path(p).read_bytes() if os.path.isfile(p) and not os.path.islink(p) else b""
            out.append((os.path.relpath(p, top), st.st_mode, st.st_size, st.st_mtime_ns,
                        hashlib.sha256(data).hexdigest()))
    return sorted(out)


def _host_state() -> list[tuple]:
    return [(p, hashlib.sha256(Path(p).read_bytes()).hexdigest()) for p in HOST_FILES
            if os.path.exists(p)]


def _snapshot_dirs(d) -> set[str]:
    """Compared as subsets ("nothing new left"): the fixture's probe ``run --rm`` may
    still be removing its rootfs snapshot when the test starts (rm-<id>: a removal in
    progress, renamed then deleted)."""
    return {e for e in os.listdir(d.data_root / "snapshots" / "snapshots")
            if not e.startswith("rm-")}


def _blobs(d) -> set[str]:
    return set(os.listdir(d.data_root / "content" / "blobs" / "sha256"))


def _snapshot_fs(d, key: str) -> Path:
    db = sqlite3.connect(f"file:{d.data_root / 'snapshots' / 'metadata.db'}?mode=ro", uri=True)
    try:
        (sid,) = db.execute("SELECT id FROM snapshots WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return d.data_root / "snapshots" / "snapshots" / str(sid) / "fs"


def test_hostile_layer_pull(d, registry, tmp_path, tmp_path_factory):
    """Every corpus case, through a pull and a load (``conch load``, docker-save format):
    one verdict, in the same words; the store is checked after each and at the end."""
    archives = tmp_path_factory.mktemp("archives")
    canary = tmp_path / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "file").write_bytes(b"canary")
    (canary / "sub" / "inner").write_bytes(b"inner")
    before, host_before = _fingerprint(tmp_path), _host_state()
    snapshots_before = expected = _snapshot_dirs(d)
    blobs = _blobs(d)
    pulled = []
    for i, case in enumerate(hostile_layers.CASES):
        layer = case.build(canary)
        registry.add_image(case.name, layer, compression="zstd" if i % 2 else "gzip")
        ref = f"{registry.addr}/hostile/x:{case.name}"
        p = d.conch("pull", "-q", ref)
        ingest = os.listdir(d.data_root / "content" / "ingest")
        assert not ingest, f"{case.name}: ingest left behind: {ingest}"
        if case.expect == "reject":
            assert p.returncode == 1 and "failed to register layer: " in p.stderr, \
                f"{case.name}: {p.stdout}{p.stderr}"
            assert d.conch("image", "inspect", ref).returncode == 1, case.name
            assert _snapshot_dirs(d) <= expected, f"{case.name}: a snapshot was left behind"
            assert _blobs(d) <= blobs, f"{case.name}: blobs left behind: {_blobs(d) - blobs}"
        else:
            assert p.returncode == 0, f"{case.name}: {p.stderr}"
            pulled.append(ref)
            expected, blobs = _snapshot_dirs(d), _blobs(d)
            chain_id = "sha256:" + hashlib.sha256(layer).hexdigest()
            if case.check is not None:
                case.check(_snapshot_fs(d, chain_id), canary)
        _load_gives_the_verdict_of(d, p, archives / f"{i}.tar", docker_save(layer, tag=f"hl:{i}"),
                                   f"hl:{i}", case.name)
        assert _snapshot_dirs(d) <= expected and _blobs(d) <= blobs, f"{case.name}: load left some"
        assert _fingerprint(tmp_path) == before, f"{case.name}: something outside changed"
        assert _host_state() == host_before, f"{case.name}: the host's /etc changed"
    assert sum(1 for c in hostile_layers.CASES if c.expect == "contain") == len(pulled)
    # every pulled image removed: the snapshot store is back where it started
    d.conch("rmi", *pulled, check=True)
    assert _snapshot_dirs(d) <= snapshots_before
    assert not os.listdir(d.data_root / "content" / "ingest")


def _load_gives_the_verdict_of(d, pull, path: Path, archive: bytes, tag: str, case: str):
    path.write_bytes(archive)
    load = d.conch("load", "-i", str(path))
    assert (load.returncode == 0) == (pull.returncode == 0), \
        f"{case}: pull and load disagree: pull {pull.stderr!r}, load {load.stderr!r}"
    if load.returncode == 0:
        d.conch("rmi", tag, check=True)
        return
    assert d.conch("image", "inspect", tag).returncode == 1, case
    why = pull.stderr.split("failed to register layer: ", 1)[1].strip()
    if not why.startswith("layer is not a valid tar"):  # tarfile's words vary by reader
        assert f"load: {why}" in load.stderr, (case, pull.stderr, load.stderr)


def test_pull_zstd_layer_from_an_oci_index_with_artifacts(d, registry):
    layer = busybox_tar().read_bytes()
    image_manifest = registry.add_image("zstd-image", layer, compression="zstd")
    # an SBOM-like artifact, declared as such in the index
    sbom = b'{"spdxVersion":"SPDX-2.3"}'
    registry.add_blob(sbom)
    empty = registry.add_blob(b"{}")
    artifact = _json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                      "artifactType": "application/spdx+json",
                      "config": {"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2},
                      "layers": [_desc("application/spdx+json", sbom)],
                      "subject": _desc(mt.OCI_MANIFEST, image_manifest)})
    registry.add_manifest(mt.OCI_MANIFEST, artifact)
    # an artifact without artifactType in the index: only its config says what it is
    sig_config = b'{"critical":{}}'
    registry.add_blob(sig_config)
    hidden = _json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                    "config": _desc("application/vnd.dev.cosign.simplesigning.v1+json", sig_config),
                    "layers": []})
    registry.add_manifest(mt.OCI_MANIFEST, hidden)
    index = _json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        _desc(mt.OCI_MANIFEST, artifact, artifactType="application/spdx+json",
              platform=_host_platform()),
        _desc(mt.OCI_MANIFEST, hidden, platform=_host_platform()),
        _desc(mt.OCI_MANIFEST, image_manifest, platform=_host_platform()),
    ]})
    registry.add_manifest(mt.OCI_INDEX, index, tag="multi")
    ref = f"{registry.addr}/oci/zstd:multi"
    registry.requests.clear()
    out = d.conch("pull", ref, check=True).stdout
    assert "Pull complete" in out and out.strip().endswith(ref)
    fetched = {path.rsplit("/", 1)[-1] for _, path, _ in registry.requests}
    assert "sha256:" + hashlib.sha256(artifact).hexdigest() not in fetched  # never even read
    assert "sha256:" + hashlib.sha256(sbom).hexdigest() not in fetched
    inspect = json.loads(d.conch("image", "inspect", ref, check=True).stdout)[0]
    assert inspect["RootFS"]["Layers"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    run = d.conch("run", "--rm", ref, "echo", "zstd")
    assert run.stdout == "zstd\n", run.stderr
    # the artifact alone is not an image: a clear refusal
    registry.add_manifest(mt.OCI_MANIFEST, artifact, tag="sbom")
    p = d.conch("pull", f"{registry.addr}/oci/zstd:sbom")
    assert p.returncode == 1 and "is not an image: an artifact of type application/spdx+json" in p.stderr
    d.conch("rmi", ref, check=True)


def test_registry_sending_garbage_manifest(d, registry):
    registry.manifests["garbage"] = (mt.OCI_MANIFEST, os.urandom(300))
    registry.manifests["html"] = ("text/html", b"<html><body>502 Bad Gateway</body></html>")
    for tag in ("garbage", "html"):
        ref = f"{registry.addr}/junk/img:{tag}"
        p = d.conch("pull", ref)
        assert p.returncode == 1 and p.stderr.strip(), tag
        assert "Traceback" not in p.stderr
        assert d.conch("image", "inspect", ref).returncode == 1
    assert not os.listdir(d.data_root / "content" / "ingest")
