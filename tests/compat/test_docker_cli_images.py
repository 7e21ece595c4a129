"""Issue 4 "Verbs", through real clients: the docker CLI (/usr/local/bin/docker, client
only) and the conch CLI against one private conchd -- ``images`` filters and output
options, ``rmi`` (untag vs delete, refusal while a container uses the image, ``-f``),
``image prune`` (``-a``), ``save``/``load`` round trips with docker and with podman.

Each CLI test runs once per client (``conch``; ``docker`` when installed): both must
print the same thing, since both speak the same API. podman runs in a private store
(conch.testing.podman's PodmanStore); it only loads and saves.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture
from conch.testing.podman import PodmanStore

daemon = daemon_fixture("module")
CLIS = ["conch"] + (["docker"] if DOCKER else [])


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.fixture(params=CLIS)
def cli(request, d):
    """``cli(*args, check=...)`` through the conch or the docker CLI."""
    method = d.conch if request.param == "conch" else d.docker

    def run(*args, **kw):
        return method(*args, **kw)

    run.made = []  # type: ignore[attr-defined]
    yield run
    for ref in run.made:  # images this test named: gone, whatever the test left
        d.conch("rmi", "-f", ref)


def _tiny_tar(path, marker: str):
    """A one-file rootfs tar; ``marker`` makes every image (and its ID) distinct."""
    with tarfile.open(path, "w") as tar:
        data = marker.encode()
        info = tarfile.TarInfo("marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def _import(cli, tmp_path, marker: str, ref: str = "", *changes: str) -> str:
    args = ["import"]
    for c in changes:
        args += ["-c", c]
    args += [_tiny_tar(tmp_path / f"{marker}.tar", marker)]
    if ref:
        args.append(ref)
        cli.made.append(ref)
    out = cli(*args, check=True).stdout.strip()
    assert out.startswith("sha256:"), out
    cli.made.append(out)
    return out


def _lines(proc) -> list[str]:
    return proc.stdout.strip().splitlines()


def test_images_filters_quiet_format_digests(cli, tmp_path):
    a = _import(cli, tmp_path, "a", "flt/a:v1", "LABEL team=blue")
    b = _import(cli, tmp_path, "b", "flt/b:v1", "LABEL team=red")
    c = _import(cli, tmp_path, "c")  # no name: dangling
    fmt = "{{.Repository}}:{{.Tag}}"
    assert _lines(cli("images", "--filter", "reference=flt/*", "--format", fmt, check=True)) == \
        ["flt/b:v1", "flt/a:v1"]  # newest first, as docker sorts
    assert _lines(cli("images", "flt/a", "--format", fmt, check=True)) == ["flt/a:v1"]
    assert _lines(cli("images", "-f", "label=team=blue", "--format", fmt, check=True)) == ["flt/a:v1"]
    assert _lines(cli("images", "-f", "label=team", "-f", "reference=flt/*", "-q", check=True)) == \
        [b.removeprefix("sha256:")[:12], a.removeprefix("sha256:")[:12]]
    dangling = _lines(cli("images", "-q", "--no-trunc", "-f", "dangling=true", check=True))
    assert c in dangling and a not in dangling and b not in dangling
    assert c not in _lines(cli("images", "-q", "--no-trunc", "-f", "dangling=false", check=True))
    # before/since name an image of the list; the three were made within a second or so
    since = _lines(cli("images", "-q", "--no-trunc", "-f", "since=flt/a:v1", check=True))
    assert set(since) >= {b, c} and a not in since
    before = _lines(cli("images", "-q", "--no-trunc", "-f", "before=flt/b:v1", check=True))
    assert a in before and b not in before and c not in before
    table = _lines(cli("images", "--digests", "flt/a", check=True))
    assert table[0].split()[:4] == ["REPOSITORY", "TAG", "DIGEST", "IMAGE"]
    assert table[1].split()[:4] == ["flt/a", "v1", "<none>", a.removeprefix("sha256:")[:12]]
    # a reference filter shows only the matching names of an image, not its other tags
    cli("tag", "busybox", "flt/bb:v1", check=True)
    cli.made.append("flt/bb:v1")
    assert _lines(cli("images", "busybox", "--format", fmt, check=True)) == ["busybox:latest"]
    assert _lines(cli("images", "flt/bb", "--format", fmt, check=True)) == ["flt/bb:v1"]
    bad = cli("images", "-f", "dangling=maybe")
    assert bad.returncode != 0 and "invalid filter 'dangling=maybe'" in bad.stderr
    bad = cli("images", "-f", "colour=blue")
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr


def test_rmi_untag_delete_and_in_use(cli, d, tmp_path):
    image_id = _import(cli, tmp_path, "r", "rmi/x:v1")
    cli("tag", "rmi/x:v1", "rmi/x:v2", check=True)
    cli.made.append("rmi/x:v2")
    # one of two names: untag only
    assert _lines(cli("rmi", "rmi/x:v2", check=True)) == ["Untagged: rmi/x:v2"]
    # a (stopped) container uses it: its last name cannot go without -f
    cid = d.conch("create", "rmi/x:v1", "/marker", check=True).stdout.strip()
    p = cli("rmi", "rmi/x:v1")
    assert p.returncode == 1
    assert ('conflict: unable to remove repository reference "rmi/x:v1" (must force) - '
            f"container {cid[:12]} is using its referenced image {image_id[7:19]}") in p.stderr
    p = cli("rmi", image_id)
    assert p.returncode == 1 and "(must be forced) - image is being used by stopped container" in p.stderr
    # -f: untag and delete, as docker (a stopped container does not keep its image)
    assert _lines(cli("rmi", "-f", "rmi/x:v1", check=True)) == \
        ["Untagged: rmi/x:v1", f"Deleted: {image_id}"]
    assert d.conch("image", "inspect", image_id).returncode == 1
    d.conch("rm", cid, check=True)
    # a running container: -f takes the name away, the image stays (dangling) under it
    cli("tag", "busybox", "rmi/run:v1", check=True)
    cli.made.append("rmi/run:v1")
    busybox_id = json.loads(d.conch("image", "inspect", "busybox", check=True).stdout)[0]["Id"]
    cid = d.conch("run", "-d", "rmi/run:v1", "sleep", "300", check=True).stdout.strip()
    p = cli("rmi", "-f", busybox_id)
    assert p.returncode == 1 and "(cannot be forced) - image is being used by running container" in p.stderr
    assert _lines(cli("rmi", "-f", "rmi/run:v1", check=True)) == ["Untagged: rmi/run:v1"]
    assert d.conch("image", "inspect", "busybox", check=True)
    d.conch("rm", "-f", cid, check=True)
    p = cli("rmi", "no/such:image")
    assert p.returncode == 1 and "No such image: no/such:image" in p.stderr


def test_image_prune_dangling_then_all(cli, d, tmp_path):
    dangling = _import(cli, tmp_path, "p1")
    named = _import(cli, tmp_path, "p2", "prune/named:v1")
    cid = d.conch("create", "prune/named:v1", "/marker", check=True).stdout.strip()
    out = cli("image", "prune", "-f", check=True).stdout
    assert f"deleted: {dangling}" in out and named not in out
    assert "Total reclaimed space:" in out
    out = cli("image", "prune", "-a", "-f", check=True).stdout
    assert named not in out  # a container uses it (busybox, unused, may go: re-imported below)
    d.conch("rm", cid, check=True)
    out = cli("image", "prune", "-a", "-f", check=True).stdout
    assert "untagged: prune/named:v1" in out and f"deleted: {named}" in out
    if d.conch("image", "inspect", "busybox").returncode != 0:
        d.import_busybox()  # the module's other tests run busybox


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_save_load_round_trip(d, tmp_path):
    d.conch("tag", "busybox", "saved/bb:v1", check=True)
    try:
        image_id = json.loads(d.conch("image", "inspect", "saved/bb:v1", check=True).stdout)[0]["Id"]
        d.docker("save", "-o", tmp_path / "bb.tar", "saved/bb:v1", check=True)
        with tarfile.open(tmp_path / "bb.tar") as tar:
            names = set(tar.getnames())
        assert {"oci-layout", "index.json", "manifest.json"} <= names  # docker and OCI at once
        d.conch("rmi", "saved/bb:v1", check=True)
        out = d.docker("load", "-i", tmp_path / "bb.tar", check=True).stdout
        assert "Loaded image: saved/bb:v1" in out
        assert json.loads(d.docker("image", "inspect", "saved/bb:v1", check=True).stdout)[0]["Id"] == image_id
        assert d.docker("run", "--rm", "saved/bb:v1", "echo", "loaded").stdout == "loaded\n"
    finally:
        d.conch("rmi", "saved/bb:v1")


# -- podman -------------------------------------------------------------------------

@pytest.fixture
def podman(tmp_path):
    """``podman(*args)`` -> stdout, in a private store (conch.testing.podman)."""
    if shutil.which("podman") is None:
        pytest.skip("podman not installed (make test-deps)")
    store = PodmanStore(tmp_path)
    yield lambda *args: store.run(*args).stdout
    store.close()


def test_podman_loads_conch_save_and_back(d, podman, tmp_path):
    """conch save -> podman load (same image ID); podman save (docker-archive and
    oci-archive) -> conch load -> runs. Names are fully qualified: podman calls a bare
    ``pod/bb`` ``localhost/pod/bb``, docker and conch ``docker.io/pod/bb``."""
    d.conch("tag", "busybox", "localhost/pod/bb:v1", check=True)
    try:
        image_id = json.loads(d.conch("image", "inspect", "localhost/pod/bb:v1", check=True).stdout)[0]["Id"]
        d.conch("save", "-o", tmp_path / "conch.tar", "localhost/pod/bb:v1", check=True)
        out = podman("load", "-i", tmp_path / "conch.tar")
        assert "localhost/pod/bb:v1" in out
        pod = json.loads(podman("image", "inspect", "localhost/pod/bb:v1"))[0]
        assert pod["Id"] == image_id.removeprefix("sha256:")
        d.conch("rmi", "localhost/pod/bb:v1", check=True)
        for fmt, ref in (("docker-archive", "localhost/pod/bb:v1"), ("oci-archive", "localhost/pod/oci:v1")):
            podman("tag", "localhost/pod/bb:v1", ref)
            podman("save", "--format", fmt, "-o", tmp_path / f"{fmt}.tar", ref)
            out = d.conch("load", "-i", tmp_path / f"{fmt}.tar", check=True).stdout
            assert "Loaded image" in out, out
            loaded = json.loads(d.conch("image", "inspect", ref, check=True).stdout)[0]
            assert loaded["Id"] == image_id, fmt  # the same config, so the same ID
            assert d.conch("run", "--rm", ref, "echo", fmt).stdout == f"{fmt}\n"
            d.conch("rmi", ref, check=True)
    finally:
        d.conch("rmi", "localhost/pod/bb:v1")
