"""Issue 5 volume requirements added after the first pass, through the conch CLI and the
real docker CLI: ``--volumes-from``, ``volume create -o`` (the local driver's tmpfs and
bind options), ``volume rm -f``, ``volume ls --filter dangling=true`` and inspect's
Mounts fields."""

from __future__ import annotations

import json

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture

daemon = daemon_fixture("module")
CLIS = ["conch"] + (["docker"] if DOCKER else [])


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def _cli(d, which):
    return d.conch if which == "conch" else d.docker


@pytest.mark.parametrize("which", CLIS)
def test_volumes_from(d, which, tmp_path):
    cli = _cli(d, which)
    (tmp_path / "f").write_text("bind\n")
    cli("create", "--name", f"origem-{which}", "-v", f"vf-{which}:/named", "-v", "/anon",
        "-v", f"{tmp_path}:/bind:ro", "busybox", "true", check=True)
    cli("run", "--rm", "-v", f"vf-{which}:/named", "busybox", "sh", "-c", "echo named > /named/f", check=True)
    out = cli("run", "--rm", "--volumes-from", f"origem-{which}", "busybox", "sh", "-c",
              "cat /named/f /bind/f; touch /anon/ok && echo anon-rw; touch /bind/x || echo bind-ro",
              check=True).stdout
    assert out.split() == ["named", "bind", "anon-rw", "bind-ro"]
    out = cli("run", "--rm", "--volumes-from", f"origem-{which}:ro", "busybox", "sh", "-c",
              "touch /named/y || echo named-ro", check=True).stdout
    assert "named-ro" in out
    cli("create", "--name", f"filho-{which}", "--volumes-from", f"origem-{which}", "busybox", "true", check=True)
    mounts = {m["Destination"]: m for m in json.loads(cli("inspect", f"filho-{which}", check=True).stdout)[0]["Mounts"]}
    assert set(mounts) == {"/named", "/anon", "/bind"}
    assert mounts["/bind"]["RW"] is False and mounts["/named"]["Name"] == f"vf-{which}"
    anon = mounts["/anon"]["Name"]
    # rm -v of the child keeps the origin's anonymous volume; of the origin (child gone) removes it
    cli("rm", "-v", f"filho-{which}", check=True)
    assert anon in cli("volume", "ls", "-q", check=True).stdout.split()
    cli("rm", "-v", f"origem-{which}", check=True)
    assert anon not in cli("volume", "ls", "-q", check=True).stdout.split()
    cli("volume", "rm", f"vf-{which}", check=True)
    p = cli("run", "--rm", "--volumes-from", "ninguem", "busybox", "true")
    assert p.returncode == 125 and "ninguem" in p.stderr


@pytest.mark.parametrize("which", CLIS)
def test_volume_create_driver_options(d, which, tmp_path):
    cli = _cli(d, which)
    cli("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=8m",
        f"tmp-{which}", check=True)
    info = json.loads(cli("volume", "inspect", f"tmp-{which}", check=True).stdout)[0]
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}
    out = cli("run", "--rm", "-v", f"tmp-{which}:/t", "busybox", "sh", "-c",
              "grep ' /t ' /proc/mounts; echo x > /t/f", check=True).stdout
    assert out.startswith("tmpfs /t tmpfs") and "size=8192k" in out
    # unmounted after its last user: a tmpfs volume starts empty each time (docker)
    assert cli("run", "--rm", "-v", f"tmp-{which}:/t", "busybox", "ls", "/t", check=True).stdout == ""
    (tmp_path / "hello").write_text("from the host\n")
    cli("volume", "create", "--driver", "local", "-o", "type=none", "-o", "o=bind", "-o",
        f"device={tmp_path}", f"bind-{which}", check=True)
    assert cli("run", "--rm", "-v", f"bind-{which}:/b", "busybox", "cat", "/b/hello",
               check=True).stdout == "from the host\n"
    cli("volume", "rm", f"tmp-{which}", f"bind-{which}", check=True)
    assert (tmp_path / "hello").exists()  # removing a bind volume never touches its device
    p = cli("volume", "create", "-o", "foo=bar", f"bad-{which}")
    assert p.returncode != 0 and 'invalid option: "foo"' in p.stderr
    p = cli("volume", "create", "-o", "type=tmpfs", f"bad-{which}")
    assert p.returncode != 0 and "device" in p.stderr


@pytest.mark.parametrize("which", CLIS)
def test_rm_f_dangling_and_mount_fields(d, which, tmp_path):
    cli = _cli(d, which)
    cli("volume", "create", f"solta-{which}", check=True)
    cli("create", "--name", f"usa-{which}", "-v", f"presa-{which}:/p:ro", "-v", f"{tmp_path}:/h",
        "busybox", "true", check=True)
    dangling = cli("volume", "ls", "-q", "--filter", "dangling=true", check=True).stdout.split()
    assert f"solta-{which}" in dangling and f"presa-{which}" not in dangling
    p = cli("volume", "rm", "-f", f"presa-{which}")
    assert p.returncode == 1 and "volume is in use" in p.stderr
    assert cli("volume", "rm", "-f", "nao-existe").returncode == 0
    mounts = {m["Destination"]: m for m in json.loads(cli("inspect", f"usa-{which}", check=True).stdout)[0]["Mounts"]}
    vol = mounts["/p"]
    assert (vol["Type"], vol["Name"], vol["Driver"], vol["Mode"], vol["RW"], vol["Propagation"]) == \
        ("volume", f"presa-{which}", "local", "ro", False, "")
    assert vol["Source"].endswith(f"/presa-{which}/_data")
    bind = mounts["/h"]
    assert (bind["Type"], bind["Source"], bind["Mode"], bind["RW"], bind["Propagation"]) == \
        ("bind", str(tmp_path), "", True, "rprivate")
    cli("rm", f"usa-{which}", check=True)
    cli("volume", "rm", f"solta-{which}", f"presa-{which}", check=True)
