"""pull/push/login end to end: the conch CLI and the real docker CLI -> a private conchd ->
Debian's CNCF registry (``docker-registry``, started here on 127.0.0.1 with its own config
and storage, with and without htpasswd auth).

The one fake is the corrupt-blob registry (conch.testing.fake_registry): a real registry
never serves a blob whose bytes do not match its digest, so that failure needs a fake.
"""

from __future__ import annotations

import json
import os

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture
from conch.testing.registry import DistributionRegistry, available

daemon = daemon_fixture()
USER, PASSWORD = "alice", "s3cret-pw"


@pytest.fixture(scope="module")
def registry():
    if (why := available()) is not None:
        pytest.skip(why)
    with DistributionRegistry() as reg:
        yield reg


@pytest.fixture(scope="module")
def auth_registry():
    if (why := available()) is not None:
        pytest.skip(why)
    with DistributionRegistry(users={USER: PASSWORD}) as reg:
        yield reg


@pytest.fixture
def d(daemon, tmp_path):
    daemon.env["CONCH_CONFIG"] = str(tmp_path / "conch-config")
    yield from clean_after(daemon)


def _inspect(d, ref: str) -> dict:
    return json.loads(d.conch("image", "inspect", ref, check=True).stdout)[0]


def _ensure_busybox(d) -> None:
    if d.conch("image", "inspect", "busybox").returncode != 0:
        d.import_busybox()


def _pushed(d, registry, repo: str = "e2e/busybox", tag: str = "v1") -> tuple[str, str]:
    _ensure_busybox(d)
    ref = f"{registry.addr}/{repo}:{tag}"
    d.conch("tag", "busybox", ref, check=True)
    out = d.conch("push", ref, check=True).stdout
    last = out.strip().splitlines()[-1]  # "<tag>: digest: sha256:… size: N"
    assert last.startswith(f"{tag}: digest: sha256:"), out
    digest = last.split()[2]
    return ref, digest


def test_push_remove_pull_run(d, registry):
    ref, digest = _pushed(d, registry)
    image_id = _inspect(d, ref)["Id"]
    assert f"{registry.addr}/e2e/busybox@{digest}" in _inspect(d, ref)["RepoDigests"]
    d.conch("rmi", "-f", image_id, check=True)
    assert d.conch("image", "inspect", ref).returncode != 0
    out = d.conch("pull", ref, check=True).stdout
    assert "v1: Pulling from e2e/busybox" in out and "Pull complete" in out
    assert f"Digest: {digest}" in out and f"Status: Downloaded newer image for {ref}" in out
    assert out.strip().endswith(ref)
    pulled = _inspect(d, ref)
    assert pulled["Id"] == image_id and f"{registry.addr}/e2e/busybox@{digest}" in pulled["RepoDigests"]
    assert d.conch("run", "--rm", ref, "echo", "pulled").stdout == "pulled\n"
    again = d.conch("pull", ref, check=True).stdout
    assert f"Status: Image is up to date for {ref}" in again
    assert not os.listdir(d.data_root / "content" / "ingest")


def test_pull_by_digest(d, registry):
    ref, digest = _pushed(d, registry, tag="bydigest")
    by_digest = f"{registry.addr}/e2e/busybox@{digest}"
    d.conch("rmi", ref, check=True)
    out = d.conch("pull", by_digest, check=True).stdout
    assert f"{digest}: Pulling from e2e/busybox" in out and out.strip().endswith(by_digest)
    assert by_digest in _inspect(d, by_digest)["RepoDigests"]


def test_push_mounts_layers_from_another_repository(d, registry):
    _pushed(d, registry, repo="e2e/source", tag="v1")
    ref = f"{registry.addr}/e2e/mounted:v1"
    d.conch("tag", "busybox", ref, check=True)
    out = d.conch("push", ref, check=True).stdout
    assert ": Mounted from e2e/" in out  # the layer was never uploaded twice


def test_pull_all_tags(d, registry):
    """``pull -a``: every tag of the repository (two names of one image, one of another),
    with docker's closing line; a tag together with -a is refused."""
    _ensure_busybox(d)
    repo = f"{registry.addr}/e2e/alltags"
    for tag in ("a", "b"):
        d.conch("tag", "busybox", f"{repo}:{tag}", check=True)
    d.conch("push", "-a", repo, check=True)
    d.conch("import", "-c", "LABEL other=1", _small_tar(d), f"{repo}:c", check=True)
    d.conch("push", f"{repo}:c", check=True)
    d.conch("rmi", f"{repo}:a", f"{repo}:b", f"{repo}:c", check=True)
    out = d.conch("pull", "-a", repo, check=True).stdout
    for tag in ("a", "b", "c"):
        assert f"{tag}: Pulling from e2e/alltags" in out
    assert f"Status: Downloaded newer images for {repo}" in out
    listed = d.conch("images", repo, "--format", "{{.Tag}}", check=True).stdout.split()
    assert sorted(listed) == ["a", "b", "c"], (out, d.conch("images", "-a", check=True).stdout)
    p = d.conch("pull", "-a", f"{repo}:a")
    assert p.returncode != 0 and "tag can't be used with --all-tags/-a" in p.stderr
    d.conch("rmi", f"{repo}:a", f"{repo}:b", f"{repo}:c", check=True)


def _small_tar(d) -> str:
    import io
    import tarfile

    path = d.dir / "small.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return str(path)


def test_platform_mismatch_is_refused_and_names_nothing(d, registry):
    ref, _ = _pushed(d, registry, tag="plat")
    d.conch("rmi", ref, check=True)
    p = d.conch("pull", "--platform", "linux/s390x", ref)
    assert p.returncode == 1
    assert "does not match the specified platform: wanted linux/s390x, actual: linux/" in p.stderr
    assert d.conch("image", "inspect", ref).returncode != 0


def test_unknown_tag_is_a_clear_error(d, registry):
    p = d.conch("pull", f"{registry.addr}/e2e/busybox:nope")
    assert p.returncode == 1
    assert "manifest for" in p.stderr and "not found: manifest unknown" in p.stderr


def test_corrupt_blob_is_refused_with_no_image_and_no_ingest(d):
    from conch.oci import mediatype as mt
    from conch.oci.descriptor import Descriptor
    from conch.oci.digest import Digest
    from conch.oci.image import ImageManifest
    from conch.testing.fake_registry import FakeRegistry

    layer = os.urandom(4096)  # the registry lies about these bytes, so any will do
    config = (b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":'
              b'["sha256:' + b"0" * 64 + b'"]}}')
    reg = FakeRegistry().start_in_thread()
    try:
        ld, cd = reg.add_blob(layer), reg.add_blob(config)
        reg.faults[ld] = "corrupt"
        manifest = ImageManifest(
            media_type=mt.DOCKER_MANIFEST,
            config=Descriptor(media_type=mt.DOCKER_CONFIG, digest=Digest.parse(cd), size=len(config)),
            layers=(Descriptor(media_type=mt.DOCKER_LAYER_GZIP, digest=Digest.parse(ld),
                               size=len(layer)),)).to_bytes()
        reg.add_manifest(mt.DOCKER_MANIFEST, manifest, tag="bad")
        ref = f"{reg.addr}/fake/bad:bad"
        p = d.conch("pull", ref)
        assert p.returncode == 1
        assert f"failed to verify blob {ld}" in p.stderr and "digest mismatch" in p.stderr
        assert d.conch("image", "inspect", ref).returncode != 0
        assert not os.listdir(d.data_root / "content" / "ingest")
        assert not (d.data_root / "content" / "blobs" / "sha256" / ld.split(":")[1]).exists()
        # nor the config fetched before it: a refused pull stores nothing
        assert not (d.data_root / "content" / "blobs" / "sha256" / cd.split(":")[1]).exists()
    finally:
        reg.stop_thread()


def test_htpasswd_login_push_pull_logout(d, auth_registry):
    _ensure_busybox(d)
    server = auth_registry.addr
    ref = f"{server}/private/busybox:v1"
    d.conch("tag", "busybox", ref, check=True)
    p = d.conch("push", ref)
    assert p.returncode == 1 and "unauthorized" in p.stderr.lower()
    bad = d.conch("login", "-u", USER, "--password-stdin", server, input="wrong\n")
    assert bad.returncode == 1
    assert f"login attempt to http://{server}/v2/ failed with status: 401 Unauthorized" in bad.stderr
    ok = d.conch("login", "-u", USER, "--password-stdin", server, input=PASSWORD + "\n", check=True)
    assert ok.stdout.strip() == "Login Succeeded"
    cfg = os.path.join(d.env["CONCH_CONFIG"], "config.json")
    assert json.load(open(cfg))["auths"][server]["auth"]
    assert oct(os.stat(cfg).st_mode & 0o777) == "0o600"
    d.conch("push", ref, check=True)
    image_id = _inspect(d, ref)["Id"]
    d.conch("rmi", ref, check=True)
    d.conch("pull", ref, check=True)
    assert _inspect(d, ref)["Id"] == image_id
    assert d.conch("logout", server, check=True).stdout.strip() == \
        f"Removing login credentials for {server}"
    d.conch("rmi", ref, check=True)
    p = d.conch("pull", ref)
    assert p.returncode == 1 and "unauthorized" in p.stderr.lower()


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_cli_login_push_pull(d, auth_registry):
    _ensure_busybox(d)
    server = auth_registry.addr
    ref = f"{server}/docker/busybox:v1"
    bad = d.docker("login", "-u", USER, "--password-stdin", server, input="nope\n")
    assert bad.returncode != 0 and "401 Unauthorized" in bad.stderr
    d.docker("login", "-u", USER, "--password-stdin", server, input=PASSWORD + "\n", check=True)
    d.docker("tag", "busybox", ref, check=True)
    push = d.docker("push", ref, check=True)
    assert "v1: digest: sha256:" in push.stdout
    d.docker("rmi", ref, check=True)
    pull = d.docker("pull", ref, check=True)
    assert "Pulling from docker/busybox" in pull.stdout and pull.stdout.strip().endswith(ref)
    inspect = json.loads(d.docker("image", "inspect", ref, check=True).stdout)[0]
    digests = [r.split("@")[1] for r in inspect["RepoDigests"]
               if r.startswith(f"{server}/docker/busybox@")]
    assert digests and push.stdout.strip().splitlines()[-1].split()[2] in digests
    assert d.docker("run", "--rm", ref, "echo", "via-docker", check=True).stdout == "via-docker\n"
    d.docker("logout", server, check=True)


def test_distribution_inspect(d, registry):
    from conch.cli.registry_cmds import encode_auth

    ref, digest = _pushed(d, registry, tag="dist")
    resp = d.api.request("GET", f"/distribution/{ref}/json",
                         headers={"X-Registry-Auth": encode_auth({})})
    body = resp.json()
    assert body["Descriptor"]["digest"] == digest
    assert body["Descriptor"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert body["Platforms"][0]["os"] == "linux"


def _tar_of(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_push_compresses_an_uncompressed_layer(d, registry, tmp_path):
    """A docker-save tar with plain-tar layers (as docker >= 25 saves): push gzips them
    (ISA-L) while uploading them -- a 20 MB incompressible layer goes up in several
    pieces -- and the manifest names the gzip blobs; the pull of it runs; a second push
    finds the gzip forms the first one kept and the registry already has them."""
    import hashlib

    from conch.testing.daemon import busybox_tar

    layers = [busybox_tar().read_bytes(), _tar_of({"blob": os.urandom(20 << 20)})]
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = [{"Config": "config.json", "RepoTags": ["plain/img:v1"],
                 "Layers": ["layer0.tar", "layer1.tar"]}]
    archive = tmp_path / "plain.tar"
    archive.write_bytes(_tar_of({"config.json": config, "layer0.tar": layers[0],
                                 "layer1.tar": layers[1],
                                 "manifest.json": json.dumps(manifest).encode()}))
    d.conch("load", "-i", archive, check=True)
    ref = f"{registry.addr}/e2e/plain:v1"
    d.conch("tag", "plain/img:v1", ref, check=True)
    first = d.conch("push", ref, check=True).stdout
    assert first.count("Pushed") == 2, first
    again = d.conch("push", ref, check=True).stdout
    assert again.count("Layer already exists") == 2, again
    assert not os.listdir(d.data_root / "content" / "ingest")
    d.conch("rmi", "-f", _inspect(d, ref)["Id"], check=True)
    d.conch("pull", ref, check=True)
    assert d.conch("run", "--rm", ref, "sh", "-c", "wc -c < /blob").stdout.strip() == str(20 << 20)
    resp = d.api.request("GET", f"/distribution/{ref}/json")
    assert resp.json()["Descriptor"]["mediaType"].endswith("manifest.v2+json")


def test_round_trip_through_conch_registry_serve(d, tmp_path):
    """The seed's Docker Hub section, with ``conch registry serve`` (htpasswd, token
    auth: realm, service, scopes, token cache) playing Docker Hub: images, login, tag,
    push, rmi -f, pull, run; anonymous pull refused, logout."""
    import subprocess

    import bcrypt

    from conch.testing.daemon import BIN
    from conch.testing.registry import free_port

    if not (BIN.parent.parent / "conch" / "registry" / "server" / "__main__.py").exists():
        pytest.skip("conch registry serve is not there yet")
    _ensure_busybox(d)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()}\n")
    addr = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen([str(BIN / "conch"), "registry", "serve", "--addr", addr,
                               "--root", str(tmp_path / "reg"), "--htpasswd", str(htpasswd)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in server.stderr.readline()
        assert "busybox" in d.conch("images", check=True).stdout
        login = d.conch("login", "-u", USER, "--password-stdin", addr,
                        input=PASSWORD + "\n", check=True)
        assert login.stdout.strip() == "Login Succeeded"
        ref = f"{addr}/conch/busybox:v1"
        d.conch("tag", "busybox", ref, check=True)
        assert d.conch("images", f"{addr}/conch/busybox", "--format", "{{.Tag}}",
                       check=True).stdout == "v1\n"
        push = d.conch("push", ref, check=True).stdout
        assert "v1: digest: sha256:" in push
        image_id = _inspect(d, ref)["Id"]
        # rmi -f by ID: every name goes, and the image (busybox's too: it is one image)
        d.conch("rmi", "-f", image_id, check=True)
        assert image_id not in d.conch("images", "-q", "--no-trunc", check=True).stdout
        d.conch("pull", ref, check=True)
        assert _inspect(d, ref)["Id"] == image_id
        assert d.conch("run", "--rm", ref, "echo", "served").stdout == "served\n"
        d.conch("logout", addr, check=True)
        d.conch("rmi", ref, check=True)
        p = d.conch("pull", ref)
        assert p.returncode == 1 and "unauthorized" in p.stderr.lower()
    finally:
        server.terminate()
        server.wait(10)
