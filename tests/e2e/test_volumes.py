"""Issue 5 (volumes) "Proof": named and anonymous volumes through the real ``conch`` CLI
(and the docker CLI when installed) -> a private conchd -> conch-runtime -> the kernel.

One daemon per module (busybox:latest imported once); after every test its containers
are removed and the host is checked for leaked mounts, cgroups and processes.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

from conch.testing.daemon import DOCKER, Daemon, busybox_tar, clean_after, daemon_fixture

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def inspect(d: Daemon, *names: str) -> list[dict]:
    return json.loads(d.conch("inspect", *names, check=True).stdout)


def volume_names(d: Daemon, *args: str) -> list[str]:
    return d.conch("volume", "ls", "-q", *args, check=True).stdout.split()


def run_out(d: Daemon, *args) -> str:
    return d.conch("run", "--rm", *args, check=True).stdout


@pytest.fixture(scope="module")
def seeded_image(daemon) -> str:
    """busybox + /data/seed.txt (uid 1000, mode 0640), with ``VOLUME /data``."""
    base = Path(tempfile.mkdtemp(prefix="cd-vol-"))
    try:
        tar = base / "rootfs.tar"
        shutil.copy(busybox_tar(), tar)
        with tarfile.open(tar, "a") as t:
            info = tarfile.TarInfo("./data")
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o750, 1000, 1000
            t.addfile(info)
            body = b"seeded by the image\n"
            info = tarfile.TarInfo("./data/seed.txt")
            info.size, info.mode, info.uid, info.gid = len(body), 0o640, 1000, 1000
            t.addfile(info, io.BytesIO(body))
        daemon.conch("import", "-c", "VOLUME /data", "-c", 'CMD ["sh"]', tar, "seeded:latest",
                     check=True, timeout=120)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return "seeded:latest"


# -- named volumes -------------------------------------------------------------------------
def test_named_volume_is_shared_between_containers(d):
    assert d.conch("volume", "create", "shared1", check=True).stdout.strip() == "shared1"
    d.conch("run", "-d", "--name", "writer", "-v", "shared1:/v", "busybox", "sh", "-c",
            "echo from-writer > /v/f; sleep 30", check=True)
    try:
        out = ""
        for _ in range(100):
            p = d.conch("run", "--rm", "-v", "shared1:/v:ro", "busybox", "cat", "/v/f")
            out = p.stdout
            if out:
                break
        assert out == "from-writer\n"
        # a read-only mount refuses writes
        p = d.conch("run", "--rm", "-v", "shared1:/v:ro", "busybox", "touch", "/v/g")
        assert p.returncode != 0
    finally:
        d.conch("rm", "-f", "writer")


def test_named_volume_is_created_on_first_use_and_survives_rm(d):
    assert "firstuse1" not in volume_names(d)
    d.conch("run", "--name", "w1", "-v", "firstuse1:/k", "busybox", "sh", "-c",
            "echo kept > /k/f", check=True)
    assert "firstuse1" in volume_names(d)
    d.conch("rm", "-v", "w1", check=True)  # -v never removes a named volume
    assert run_out(d, "-v", "firstuse1:/k", "busybox", "cat", "/k/f") == "kept\n"


def test_mount_flag_volume_and_tmpfs(d):
    d.conch("run", "--rm", "--mount", "type=volume,source=mnt1,target=/m", "busybox", "sh", "-c",
            "echo via-mount > /m/f", check=True)
    assert run_out(d, "--mount", "type=volume,src=mnt1,dst=/m,readonly", "busybox",
                   "cat", "/m/f") == "via-mount\n"
    out = run_out(d, "--mount", "type=tmpfs,target=/t", "busybox", "sh", "-c",
                  "grep ' /t ' /proc/mounts")
    assert "tmpfs" in out


# -- anonymous volumes ---------------------------------------------------------------------
def test_rm_v_removes_anonymous_but_not_named_volumes(d):
    d.conch("create", "--name", "anon1", "-v", "keepme1:/n", "-v", "/anon", "busybox", "true",
            check=True)
    mounts = {m["Destination"]: m for m in inspect(d, "anon1")[0]["Mounts"]}
    anon = mounts["/anon"]["Name"]
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    assert mounts["/n"]["Name"] == "keepme1"
    labels = json.loads(d.conch("volume", "inspect", "-f", "{{json .Labels}}", anon,
                                check=True).stdout)
    assert "com.docker.volume.anonymous" in labels
    d.conch("rm", "-v", "anon1", check=True)
    names = volume_names(d)
    assert anon not in names and "keepme1" in names


def test_rm_without_v_keeps_anonymous_volume(d):
    d.conch("create", "--name", "anon2", "-v", "/anon", "busybox", "true", check=True)
    anon = inspect(d, "anon2")[0]["Mounts"][0]["Name"]
    d.conch("rm", "anon2", check=True)
    assert anon in volume_names(d)
    assert anon in volume_names(d, "--filter", "dangling=true")
    d.conch("volume", "rm", anon, check=True)


def test_image_volume_is_filled_from_the_image(d, seeded_image):
    d.conch("run", "--name", "seed1", seeded_image, "cat", "/data/seed.txt", check=True)
    assert d.conch("logs", "seed1", check=True).stdout == "seeded by the image\n"
    (m,) = inspect(d, "seed1")[0]["Mounts"]
    assert m["Type"] == "volume" and m["Destination"] == "/data" and m["Driver"] == "local"
    vol = json.loads(d.conch("volume", "inspect", m["Name"], check=True).stdout)[0]
    seed = os.path.join(vol["Mountpoint"], "seed.txt")
    st = os.stat(seed)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o640)
    top = os.stat(vol["Mountpoint"])
    assert (top.st_uid, top.st_mode & 0o777) == (1000, 0o750)
    d.conch("rm", "-v", "seed1", check=True)
    assert m["Name"] not in volume_names(d)


def test_new_named_volume_is_filled_but_not_a_used_one(d, seeded_image):
    assert run_out(d, "-v", "seedname1:/data", seeded_image, "ls", "/data") == "seed.txt\n"
    # an existing volume with content is not filled again
    d.conch("volume", "create", "seedname2", check=True)
    run_out(d, "-v", "seedname2:/x", "busybox", "sh", "-c", "echo mine > /x/own")
    assert run_out(d, "-v", "seedname2:/data", seeded_image, "ls", "/data") == "own\n"


# -- volume verbs --------------------------------------------------------------------------
def test_volume_ls_inspect_rm_prune(d):
    d.conch("volume", "create", "--label", "team=blue", "lsvol1", check=True)
    d.conch("volume", "create", "lsvol2", check=True)
    d.conch("create", "--name", "user1", "-v", "lsvol2:/x", "-v", "/anonls", "busybox", "true",
            check=True)
    anon = [m["Name"] for m in inspect(d, "user1")[0]["Mounts"] if m["Destination"] == "/anonls"][0]
    table = d.conch("volume", "ls", check=True).stdout.splitlines()
    assert re.match(r"DRIVER\s+VOLUME NAME", table[0])
    assert any(re.match(r"local\s+lsvol1$", line) for line in table)
    dangling = volume_names(d, "--filter", "dangling=true")
    assert "lsvol1" in dangling and "lsvol2" not in dangling and anon not in dangling
    assert volume_names(d, "--filter", "label=team=blue") == ["lsvol1"]
    assert "lsvol1:local" in d.conch("volume", "ls", "--format", "{{.Name}}:{{.Driver}}",
                                     check=True).stdout.splitlines()
    info = json.loads(d.conch("volume", "inspect", "lsvol1", check=True).stdout)[0]
    assert info["Name"] == "lsvol1" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"team": "blue"} and info["Mountpoint"].endswith("/lsvol1/_data")
    p = d.conch("volume", "inspect", "nosuchvol")
    assert p.returncode == 1 and "No such volume: nosuchvol" in p.stderr

    # in use (by a container that is not running): refused, with or without -f
    cid = inspect(d, "user1")[0]["Id"]
    for extra in ((), ("-f",)):
        p = d.conch("volume", "rm", *extra, "lsvol2")
        assert p.returncode == 1
        assert f"remove lsvol2: volume is in use - [{cid}]" in p.stderr
    p = d.conch("volume", "rm", "nosuchvol")
    assert p.returncode == 1 and "no such volume" in p.stderr
    assert d.conch("volume", "rm", "-f", "nosuchvol").returncode == 0

    # prune: unused anonymous only; -a: every unused one
    d.conch("rm", "user1", check=True)
    out = d.conch("volume", "prune", "-f", check=True).stdout
    assert anon in out and "lsvol1" not in out and "Total reclaimed space" in out
    out = d.conch("volume", "prune", "-a", "-f", "--filter", "label=team=blue", check=True).stdout
    assert "lsvol1" in out and "lsvol2" not in out
    d.conch("volume", "rm", "lsvol2", check=True)
    names = volume_names(d)
    assert not {"lsvol1", "lsvol2", anon} & set(names)


def test_inspect_mounts_shape(d, tmp_path):
    # trailing slashes as the lesson types them (-v "$PWD/meu-site/:/usr/.../htdocs/"):
    # docker cleans both paths, and so does conch
    d.conch("create", "--name", "shape1", "-v", "shapevol:/n:ro", "-v", f"{tmp_path}/:/b/",
            "-v", "/anonshape", "busybox", "true", check=True)
    mounts = {m["Destination"]: m for m in inspect(d, "shape1")[0]["Mounts"]}
    vol = json.loads(d.conch("volume", "inspect", "shapevol", check=True).stdout)[0]
    assert mounts["/n"] == {"Type": "volume", "Name": "shapevol", "Source": vol["Mountpoint"],
                            "Destination": "/n", "Driver": "local", "Mode": "ro", "RW": False,
                            "Propagation": ""}
    assert mounts["/b"] == {"Type": "bind", "Source": str(tmp_path), "Destination": "/b",
                            "Mode": "", "RW": True, "Propagation": "rprivate"}
    anon = mounts["/anonshape"]
    assert anon["Type"] == "volume" and anon["Mode"] == "" and anon["RW"] is True
    d.conch("rm", "-v", "shape1", check=True)
    d.conch("volume", "rm", "shapevol", check=True)


def test_invalid_volume_name_is_refused(d):
    p = d.conch("volume", "create", "bad name")
    assert p.returncode == 1 and "invalid characters" in p.stderr
    p = d.conch("volume", "create", "-o", "type=tmpfs", "optvol")
    assert p.returncode == 1 and 'missing required option: "device"' in p.stderr


# -- the docker CLI ------------------------------------------------------------------------
@pytest.mark.skipif(not DOCKER, reason="the docker CLI is not installed")
def test_docker_cli_volumes(d):
    assert d.docker("volume", "create", "dockvol1", check=True).stdout.strip() == "dockvol1"
    assert "dockvol1" in d.docker("volume", "ls", "-q", check=True).stdout.split()
    d.docker("run", "--rm", "-v", "dockvol1:/x", "busybox", "sh", "-c", "echo dk > /x/f",
             check=True)
    assert d.docker("run", "--rm", "-v", "dockvol1:/x", "busybox", "cat", "/x/f",
                    check=True).stdout == "dk\n"
    info = json.loads(d.docker("volume", "inspect", "dockvol1", check=True).stdout)[0]
    assert info["Name"] == "dockvol1" and info["Driver"] == "local"
    assert "Local Volumes" in d.docker("system", "df", check=True).stdout
    assert d.docker("volume", "rm", "dockvol1", check=True).stdout.strip() == "dockvol1"
    assert "dockvol1" not in d.docker("volume", "ls", "-q", check=True).stdout.split()


def test_volume_size_counts_bytes_as_dockerd(d):
    """dockerd sums apparent file sizes (hardlinks once; directories not at all), not disk
    blocks: 3 bytes + a hardlink to them + a 4-byte symlink is 7, not 8 KiB."""
    d.conch("run", "--rm", "-v", "sizevol:/v", "busybox", "sh", "-c",
            "printf abc > /v/f && ln /v/f /v/hard && ln -s /v/f /v/link && mkdir /v/dir",
            check=True)
    df = d.api.get("/system/df")
    (vol,) = [v for v in df["Volumes"] if v["Name"] == "sizevol"]
    assert vol["UsageData"]["Size"] == 3 + len("/v/f")
    d.conch("volume", "rm", "sizevol", check=True)
