"""V2Manager against a fake cgroup2 tree in tmp_path (plain files, no kernel)."""

import os

import pytest

from conch.cgroups import load_manager
from conch.cgroups.resources import DEFAULT_DEVICE_RULES
from conch.cgroups.v2 import V2Manager
from conch.errors import FailedPrecondition, InvalidArgument

LEAF = {
    "cgroup.procs": "", "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.controllers": "cpu memory pids", "cgroup.subtree_control": "",
    "memory.max": "max", "memory.low": "0", "memory.swap.max": "max", "memory.current": "4096",
    "memory.peak": "8192", "memory.swap.current": "0",
    "memory.stat": "anon 200\nfile 100\n", "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
    "cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0",
    "cpu.stat": "usage_usec 5\nuser_usec 4\nsystem_usec 1\nnr_periods 7\nnr_throttled 3\nthrottled_usec 2\n",
    "cpuset.cpus": "", "cpuset.mems": "", "pids.max": "max", "pids.current": "1",
    "io.weight": "default 100", "io.max": "", "memory.high": "max",
}


def populate(dir, files):
    os.makedirs(dir, exist_ok=True)
    for name, content in files.items():
        with open(os.path.join(dir, name), "w") as f:
            f.write(content)


def read(dir, name):
    with open(os.path.join(dir, name)) as f:
        return f.read()


@pytest.fixture
def leaf(tmp_path):
    populate(tmp_path, {"cgroup.controllers": "cpu memory pids", "cgroup.subtree_control": ""})
    populate(tmp_path / "conch", {"cgroup.controllers": "", "cgroup.subtree_control": ""})
    populate(tmp_path / "conch" / "c1", LEAF)
    return str(tmp_path / "conch" / "c1")


@pytest.fixture
def manager(leaf, tmp_path):
    return V2Manager(leaf, mountpoint=str(tmp_path))


def test_dir_must_be_below_the_mount(tmp_path):
    with pytest.raises(InvalidArgument):
        V2Manager("/elsewhere/c", mountpoint=str(tmp_path))
    with pytest.raises(InvalidArgument):
        V2Manager(str(tmp_path), mountpoint=str(tmp_path))


def test_create_enables_available_controllers_top_down(manager, tmp_path):
    manager.create()
    # A plain file keeps the last "+controller" written; the kernel would accumulate.
    assert read(tmp_path, "cgroup.subtree_control") == "+pids"
    assert read(tmp_path / "conch", "cgroup.subtree_control") == ""  # nothing available there


def test_apply_writes_converted_values(manager, leaf):
    manager.apply(
        {
            "memory": {"limit": 1 << 25, "swap": 1 << 26, "reservation": 1 << 24},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "burst": 1000},
            "pids": {"limit": 5},
            "blockIO": {"weight": 1000},
            "unified": {"memory.high": "1000000"},
        }
    )
    assert read(leaf, "memory.max") == str(1 << 25)
    assert read(leaf, "memory.swap.max") == str((1 << 26) - (1 << 25))
    assert read(leaf, "memory.low") == str(1 << 24)
    assert read(leaf, "cpu.weight") == "39"
    assert read(leaf, "cpu.max") == "50000 100000"
    assert read(leaf, "cpu.max.burst") == "1000"
    assert read(leaf, "cpuset.cpus") == "0"
    assert read(leaf, "pids.max") == "5"
    assert read(leaf, "io.weight") == "default 10000"
    assert read(leaf, "memory.high") == "1000000"


def test_unlimited_and_lone_period(manager, leaf):
    manager.apply({"memory": {"limit": -1}, "cpu": {"period": 50000}, "pids": {"limit": -1}})
    assert read(leaf, "memory.max") == "max"
    assert read(leaf, "memory.swap.max") == "max"
    assert read(leaf, "cpu.max") == "max 50000"
    assert read(leaf, "pids.max") == "max"


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"memory": {"kernel": 1 << 20}}, "kernel"),
        ({"memory": {"swappiness": 10}}, "swappiness"),
        ({"memory": {"disableOOMKiller": True}}, "disableOOMKiller"),
        ({"memory": {"swap": 1 << 26}}, "swap"),
        ({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "b", "major": 8, "minor": 0}]}, "eBPF"),
        ({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}, "eBPF"),
    ],
)
def test_unsupported_on_v2_is_invalid(manager, doc, match):
    with pytest.raises(InvalidArgument, match=match):
        manager.apply(doc)


def test_allow_all_and_default_device_lists_are_accepted(manager):
    manager.apply({"devices": [{"allow": True, "access": "rwm"}]})
    rules = [{"allow": r.allow, "type": r.type, "major": r.major, "minor": r.minor, "access": r.access}
             for r in DEFAULT_DEVICE_RULES]
    manager.apply({"devices": rules})


def test_missing_controller_files(manager, leaf):
    os.unlink(os.path.join(leaf, "memory.swap.max"))
    with pytest.raises(FailedPrecondition, match="swap"):
        manager.apply({"memory": {"limit": 1 << 25, "swap": 1 << 26}})
    with pytest.raises(FailedPrecondition, match="hugetlb.2MB.max"):
        manager.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]})


def test_stats_and_oom(manager, leaf):
    stats = manager.stats()
    assert stats["memory"]["usage"] == 4096 and stats["memory"]["max_usage"] == 8192
    assert stats["memory"]["limit"] is None and stats["memory"]["failcnt"] == 3
    assert stats["cpu"]["usage_ns"] == 5000 and stats["cpu"]["throttled_ns"] == 2000
    assert stats["pids"] == {"current": 1, "limit": None}
    assert manager.oom_killed() is False
    populate(leaf, {"memory.events": "oom 1\noom_kill 1\n"})
    assert manager.oom_killed() is True


def test_stats_without_controllers_has_no_sections(tmp_path):
    populate(tmp_path / "c", {"cgroup.procs": ""})
    m = V2Manager(str(tmp_path / "c"), mountpoint=str(tmp_path))
    assert m.stats() == {}
    with pytest.raises(FailedPrecondition):
        m.oom_killed()


def test_frozen_reads_events(manager, leaf):
    assert manager.frozen() is False
    populate(leaf, {"cgroup.events": "populated 1\nfrozen 1\n"})
    assert manager.frozen() is True


def test_save_load_round_trip(manager):
    again = load_manager(manager.save())
    assert isinstance(again, V2Manager) and again.paths == manager.paths
    assert again.save() == manager.save()
    assert again.mount_sources() == [("", manager.paths[""])]


def test_load_rejects_garbage():
    with pytest.raises(InvalidArgument):
        load_manager({"version": 3})
    with pytest.raises(InvalidArgument):
        load_manager({"version": 2, "dir": 5})
