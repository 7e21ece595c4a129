"""Real clients against ``conch registry serve``: skopeo and podman (Debian's, from
``make test-deps``), push then pull back, digests compared; both through htpasswd + the
token flow (they get a 401 challenge, fetch /token with Basic credentials, retry).

The image is a one-layer busybox (Debian's busybox-static) written here as an OCI layout
(skopeo) or imported into a private podman store (podman), conch.testing.podman's
PodmanStore (its docstring says why each setting); it only pushes and pulls, no container
runs.
"""

import json
import os
import shutil
import subprocess
import tarfile

import pytest

from conch.testing.podman import PodmanStore
from conch.testing.registry_server import RegistryServer, htpasswd_file, oci_layout
from conch.testing.rootfs import busybox_rootfs

CREDS = "alice:wonderland"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("img")
    rootfs = busybox_rootfs(tmp / "rootfs")
    return rootfs, oci_layout(tmp / "layout", rootfs), tmp / "layout"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reg")
    htpasswd = htpasswd_file(tmp / "htpasswd", {"alice": "wonderland"})
    with RegistryServer(tmp / "root", htpasswd=htpasswd) as srv:
        yield srv


def run(*args, env=None):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=180, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(args)}: exit {proc.returncode}\n{proc.stderr}\n{proc.stdout}"
    return proc.stdout


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed (make test-deps)")
def test_skopeo_push_pull_round_trip(registry, image, tmp_path):
    _, digest, layout = image
    dest = f"docker://{registry.host}/team/busybox:v1"
    # without credentials the push is refused
    proc = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", dest],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unauthorized" in proc.stderr.lower()
    run("skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{layout}:latest", dest)
    info = json.loads(run("skopeo", "inspect", "--tls-verify=false", "--creds", CREDS, dest))
    assert info["Digest"] == digest and info["RepoTags"] == ["v1"]
    run("skopeo", "copy", "--src-tls-verify=false", "--src-creds", CREDS, dest, f"oci:{tmp_path / 'back'}:v1")
    back = json.loads((tmp_path / "back" / "index.json").read_text())
    assert back["manifests"][0]["digest"] == digest
    for blob in os.listdir(layout / "blobs" / "sha256"):
        assert (tmp_path / "back" / "blobs" / "sha256" / blob).read_bytes() == \
            (layout / "blobs" / "sha256" / blob).read_bytes()
    # a second repository: skopeo mounts the blobs across (no re-upload needed)
    run("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", CREDS,
        "--dest-creds", CREDS, dest, f"docker://{registry.host}/other/busybox:v1")
    tags = json.loads(run("skopeo", "list-tags", "--tls-verify=false", "--creds", CREDS,
                          f"docker://{registry.host}/other/busybox"))
    assert tags["Tags"] == ["v1"]


@pytest.fixture
def podman(tmp_path):
    store = PodmanStore(tmp_path)

    def podman_run(*args):
        return run(*store.argv, *args, env=store.env)

    yield podman_run
    store.close()


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed (make test-deps)")
def test_podman_push_pull_round_trip(registry, image, podman, tmp_path):
    rootfs = image[0]
    with tarfile.open(tmp_path / "bb.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    image_id = podman("import", str(tmp_path / "bb.tar"), "localhost/bb:latest").strip().splitlines()[-1]
    ref = f"{registry.host}/pod/busybox:v1"
    podman("push", "--tls-verify=false", "--creds", CREDS, "localhost/bb:latest", f"docker://{ref}")
    podman("rmi", "--all", "--force")
    podman("pull", "--tls-verify=false", "--creds", CREDS, ref)
    images = json.loads(podman("images", "--format", "json"))
    assert [i["Id"] for i in images] == [image_id.removeprefix("sha256:")]
    remote = json.loads(run("skopeo", "inspect", "--tls-verify=false", "--creds", CREDS, f"docker://{ref}"))
    assert images[0]["Digest"] == remote["Digest"]
