"""Hierarchy detection from mountinfo and OCI cgroupsPath resolution."""

import pytest

from conch.cgroups import cgroup_subpath, detect, parse_mountinfo
from conch.errors import FailedPrecondition, InvalidArgument

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:32 / /mnt/other\\040dir rw,relatime - cgroup cgroup rw,memory
"""

UNIFIED = """\
25 23 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""


def write(tmp_path, text):
    path = tmp_path / "mountinfo"
    path.write_text(text)
    return str(path)


def test_parse_mountinfo_keeps_cgroup_mounts_and_controllers():
    mounts = parse_mountinfo(HYBRID)
    assert [m.mountpoint for m in mounts][-1] == "/mnt/other dir"  # \040 unescaped
    assert mounts[0].options == ("cpu", "cpuacct")
    assert mounts[1].options == ("cpuset",)
    assert mounts[3].options == ("name=systemd",)
    assert mounts[4].fstype == "cgroup2"


def test_detect_hybrid_is_v1_without_the_unified_mount(tmp_path):
    layout = detect("/sys/fs/cgroup", mountinfo=write(tmp_path, HYBRID))
    assert layout.version == 1 and layout.hybrid
    assert {",".join(m.options) for m in layout.mounts} == {"cpu,cpuacct", "cpuset", "memory", "name=systemd"}


def test_detect_unified(tmp_path):
    layout = detect("/sys/fs/cgroup/", mountinfo=write(tmp_path, UNIFIED))
    assert layout.version == 2 and not layout.hybrid
    assert layout.mounts[0].mountpoint == "/sys/fs/cgroup"


def test_detect_hybrids_unified_mount_as_its_own_root(tmp_path):
    layout = detect("/sys/fs/cgroup/unified", mountinfo=write(tmp_path, HYBRID))
    assert layout.version == 2


def test_detect_nothing_mounted(tmp_path):
    with pytest.raises(FailedPrecondition):
        detect("/nowhere", mountinfo=write(tmp_path, HYBRID))


@pytest.mark.parametrize(
    "given, expected",
    [
        (None, "/conch/abc"),
        ("", "/conch/abc"),
        ("/a/b", "/a/b"),
        ("/a//b/", "/a/b"),
        ("a/b", "a/b"),
        ("system.slice:docker:abc", "/system.slice/docker-abc.scope"),
        ("machine-user.slice:conch:abc", "/machine.slice/machine-user.slice/conch-abc.scope"),
        (":conch:abc", "/system.slice/conch-abc.scope"),
        ("-.slice::abc", "/abc.scope"),
    ],
)
def test_cgroup_subpath(given, expected):
    assert cgroup_subpath(given, "abc") == expected


@pytest.mark.parametrize("given", ["/a/../b", "../x", "/", "a:b", "nota_slice:p:n", "x.slice:p:a/b", "bad--x.slice:p:n"])
def test_cgroup_subpath_rejects(given):
    with pytest.raises(InvalidArgument):
        cgroup_subpath(given, "abc")


def test_container_id_must_be_a_path_component():
    with pytest.raises(InvalidArgument):
        cgroup_subpath(None, "../etc")
