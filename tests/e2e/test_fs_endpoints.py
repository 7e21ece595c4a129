"""The container filesystem endpoints end to end: the conch CLI and the real docker CLI
-> a private conchd -> the kernel. ``cp`` both ways (file and directory, running and
stopped container), ``diff``, ``export``, ``commit`` then ``run`` the new image.

The daemon is conch.testing.daemon's (one per module, busybox imported; skips when not
root or conchd is missing); the docker cases skip without the docker CLI. Every test
removes its containers and images, leaves no mount under the daemon's roots and passes
clean_after's leak check.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture

daemon = daemon_fixture("module")
CLIS = ["conch"] + (["docker"] if DOCKER else [])
needs_docker = pytest.mark.skipif(not DOCKER, reason="the docker CLI is not installed")


def mounts_under(path: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == str(path) or mp.startswith(str(path) + "/"):
            found.append(mp)
    return found


@pytest.fixture
def cleanup(daemon):
    """Names of containers and images to remove after the test (whatever happened);
    then no mount may be left under the daemon's roots, and clean_after's leak check."""
    guard = clean_after(daemon)
    next(guard)
    containers: list[str] = []
    images: list[str] = []
    yield containers, images
    for name in containers:
        daemon.conch("rm", "-f", name)
    for name in images:
        daemon.conch("rmi", "-f", name)
    assert mounts_under(daemon.exec_root) == [], "a filesystem operation left a mount"
    assert mounts_under(daemon.data_root) == [], "a container's rootfs is still mounted"
    next(guard, None)


def _src_tree(tmp_path: Path) -> tuple[Path, Path]:
    f = tmp_path / "hello.txt"
    f.write_text("hi\n")
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a").write_text("a\n")
    (d / "top").write_text("top\n")
    return f, d


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("state", ["running", "stopped"])
def test_cp_file_and_directory_both_ways(daemon, cleanup, tmp_path, cli, state):
    containers, _ = cleanup
    name = f"fs-cp-{cli}-{state}"
    containers.append(name)
    tool = daemon.conch if cli == "conch" else daemon.docker
    daemon.conch("run", "-d", "--name", name, "busybox", "sleep", "100", check=True)
    if state == "stopped":
        daemon.conch("stop", "-t", "0", name, check=True)
    f, d = _src_tree(tmp_path)
    tool("cp", str(f), f"{name}:/hello.txt", check=True)
    tool("cp", str(d), f"{name}:/", check=True)  # keeps its name in an existing dir
    tool("cp", str(d), f"{name}:/renamed", check=True)  # takes the new name
    if state == "stopped":
        assert mounts_under(daemon.data_root) == []  # mounted only while copying
        daemon.conch("start", name, check=True)
    p = daemon.conch("exec", name, "cat", "/hello.txt", "/tree/sub/a", "/renamed/top", check=True)
    assert p.stdout == "hi\na\ntop\n"
    if state == "stopped":
        daemon.conch("stop", "-t", "0", name, check=True)
    out = tmp_path / "out"
    out.mkdir()
    tool("cp", f"{name}:/hello.txt", str(out / "back.txt"), check=True)
    tool("cp", f"{name}:/tree", str(out), check=True)
    tool("cp", f"{name}:/tree/.", str(out / "contents"), check=True)
    assert (out / "back.txt").read_text() == "hi\n"
    assert (out / "tree" / "sub" / "a").read_text() == "a\n"
    assert sorted(os.listdir(out / "contents")) == ["sub", "top"]
    # to stdout: a tar whose top entry is the base name
    p = tool("cp", f"{name}:/tree", "-", text=False, check=True)
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        assert tar.getnames()[0] == "tree" and "tree/sub/a" in tar.getnames()


@needs_docker
def test_cp_missing_path_is_an_error(daemon, cleanup, tmp_path):
    containers, _ = cleanup
    containers.append("fs-cp-missing")
    daemon.conch("run", "-d", "--name", "fs-cp-missing", "busybox", "sleep", "100", check=True)
    p = daemon.docker("cp", "fs-cp-missing:/nope", str(tmp_path / "x"))
    assert p.returncode != 0
    assert "Could not find the file /nope in container fs-cp-missing" in p.stderr
    p = daemon.conch("cp", "fs-cp-missing:/nope", str(tmp_path / "x"))
    assert p.returncode != 0 and "/nope" in p.stderr


@pytest.mark.parametrize("cli", CLIS)
def test_diff_after_creating_and_deleting(daemon, cleanup, cli):
    containers, _ = cleanup
    name = f"fs-diff-{cli}"
    containers.append(name)
    tool = daemon.conch if cli == "conch" else daemon.docker
    daemon.conch("run", "-d", "--name", name, "busybox", "sleep", "100", check=True)
    assert tool("diff", name, check=True).stdout == ""  # the runtime's mount points hidden
    daemon.conch("exec", name, "sh", "-c", "mkdir /x && echo f > /x/f && rm /bin/ls", check=True)
    lines = tool("diff", name, check=True).stdout.splitlines()
    assert lines == ["C /bin", "D /bin/ls", "A /x", "A /x/f"]
    daemon.conch("stop", "-t", "0", name, check=True)
    assert tool("diff", name, check=True).stdout.splitlines() == lines


@pytest.mark.parametrize("cli", CLIS)
def test_export_lists_the_filesystem(daemon, cleanup, cli):
    containers, _ = cleanup
    name = f"fs-export-{cli}"
    containers.append(name)
    tool = daemon.conch if cli == "conch" else daemon.docker
    daemon.conch("run", "--name", name, "busybox", "sh", "-c", "echo e > /exported", check=True)
    p = tool("export", name, text=False, check=True)
    listing = subprocess.run(["tar", "t"], input=p.stdout, capture_output=True, check=True).stdout.decode()
    assert {"bin/busybox", "bin/sh", "exported"} <= set(listing.split())


@needs_docker
@pytest.mark.parametrize("cli", CLIS)
def test_commit_then_run_the_new_image(daemon, cleanup, cli):
    containers, images = cleanup
    name = f"fs-commit-{cli}"
    image = f"bb-committed-{cli}:v1"
    containers.append(name)
    images.append(image)
    tool = daemon.conch if cli == "conch" else daemon.docker
    daemon.conch("run", "-d", "--name", name, "busybox", "sleep", "100", check=True)
    daemon.conch("exec", name, "sh", "-c", "echo committed > /made-here", check=True)
    p = tool("commit", "-m", "a message", "-c", "ENV FROM_COMMIT=yes", name, image, check=True)
    assert p.stdout.strip().startswith("sha256:")
    assert daemon.conch("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"
    p = daemon.docker("run", "--rm", image, "sh", "-c", "cat /made-here; echo $FROM_COMMIT")
    assert (p.returncode, p.stdout) == (0, "committed\nyes\n"), p.stderr
    # the committed Cmd is the container's
    cfg = daemon.conch("inspect", "-f", "{{json .Config.Cmd}}", image, check=True).stdout
    assert cfg.strip() == '["sleep","100"]'
