"""V1Manager against a fake cgroupfs tree in tmp_path (plain files, no kernel)."""

import os

import pytest

from conch.cgroups import load_manager
from conch.cgroups.resources import parse_resources
from conch.cgroups.v1 import V1Manager
from conch.errors import FailedPrecondition, InvalidArgument

V1_UNLIMITED = "9223372036854771712"

# What a freshly made v1 cgroup holds, per hierarchy (the subset conch reads or writes).
FILES = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1",
            "cpu.cfs_burst_us": "0", "cpu.idle": "0",
            "cpu.stat": "nr_periods 7\nnr_throttled 3\nthrottled_time 4000\n"},
    "cpuacct": {"cpuacct.usage": "5000", "cpuacct.usage_percpu": "3000 2000",
                "cpuacct.usage_user": "4000", "cpuacct.usage_sys": "1000"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.limit_in_bytes": V1_UNLIMITED, "memory.memsw.limit_in_bytes": V1_UNLIMITED,
               "memory.soft_limit_in_bytes": V1_UNLIMITED, "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
               "memory.usage_in_bytes": "4096", "memory.max_usage_in_bytes": "8192", "memory.failcnt": "0",
               "memory.kmem.limit_in_bytes": V1_UNLIMITED, "memory.kmem.tcp.limit_in_bytes": V1_UNLIMITED,
               "memory.stat": "cache 10\nrss 20\ntotal_cache 100\ntotal_rss 200\ntotal_swap 0\n"},
    "devices": {"devices.allow": "", "devices.deny": ""},
    "freezer": {"freezer.state": "THAWED"},
    "pids": {"pids.max": "max", "pids.current": "2"},
    "blkio": {"blkio.throttle.read_bps_device": ""},
    "name=systemd": {},
}


def populate(dir, files):
    os.makedirs(dir, exist_ok=True)
    for name, content in {"cgroup.procs": "", **files}.items():
        with open(os.path.join(dir, name), "w") as f:
            f.write(content)


def read(dir, name):
    with open(os.path.join(dir, name)) as f:
        return f.read()


@pytest.fixture
def tree(tmp_path):
    """Hierarchy roots plus an existing container dir ("the kernel made the files")."""
    dirs = {}
    for options, files in FILES.items():
        root = tmp_path / options.replace("=", "_")
        populate(root, {**files, "cpuset.cpus": "0-3", "cpuset.mems": "0"} if options == "cpuset" else files)
        dirs[options] = str(root / "conch" / "c1")
        populate(str(root / "conch"), files)
        populate(dirs[options], files)
    return dirs


@pytest.fixture
def manager(tree):
    return V1Manager(tree)


def test_paths_split_comounted_hierarchies(tmp_path):
    m = V1Manager({"cpu,cpuacct": str(tmp_path / "a"), "name=systemd": str(tmp_path / "b")})
    assert m.paths == {"cpu": str(tmp_path / "a"), "cpuacct": str(tmp_path / "a"), "name=systemd": str(tmp_path / "b")}
    assert m.mount_sources() == [("cpu,cpuacct", str(tmp_path / "a")), ("name=systemd", str(tmp_path / "b"))]


def test_create_copies_cpuset_down_each_level(manager, tree):
    manager.create()
    assert read(tree["cpuset"], "cpuset.cpus") == "0-3"
    assert read(os.path.dirname(tree["cpuset"]), "cpuset.mems") == "0"
    assert manager.save()["created"] == []  # everything already existed


def test_create_makes_missing_dirs_and_remembers_them(tmp_path):
    root = tmp_path / "pids"
    populate(root, FILES["pids"])
    m = V1Manager({"pids": str(root / "a" / "b")})
    m.create()
    m.create()  # idempotent
    assert os.path.isdir(root / "a" / "b")
    assert m.save()["created"] == [str(root / "a"), str(root / "a" / "b")]
    m.destroy()
    assert not os.path.exists(root / "a")
    m.destroy()  # second destroy is a no-op


def test_destroy_keeps_parents_it_did_not_create(tmp_path):
    root = tmp_path / "pids"
    populate(root, {})
    os.makedirs(root / "shared")
    m = V1Manager({"pids": str(root / "shared" / "c")})
    m.create()
    load_manager(m.save()).destroy()
    assert os.path.isdir(root / "shared") and not os.path.exists(root / "shared" / "c")


def test_memory_limit_and_swap_raise_writes_memsw_first(manager, tree):
    small = str(1 << 25)
    populate(tree["memory"], {**FILES["memory"], "memory.limit_in_bytes": small, "memory.memsw.limit_in_bytes": small})
    plan = manager.plan(parse_resources({"memory": {"limit": 1 << 26, "swap": 1 << 27}}))
    assert [(w.name, w.value) for w in plan] == [
        ("memory.memsw.limit_in_bytes", str(1 << 27)),
        ("memory.limit_in_bytes", str(1 << 26)),
    ]


def test_memory_lowering_writes_limit_first(manager, tree):
    # Also the order from the unlimited start state: memory first, then memsw.

    plan = manager.plan(parse_resources({"memory": {"limit": 1 << 26, "swap": 1 << 27}}))
    assert [w.name for w in plan] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


def test_apply_writes_files(manager, tree):
    manager.apply(
        {
            "memory": {"limit": 33554432, "reservation": 1 << 24, "swappiness": 0, "disableOOMKiller": True},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "1", "mems": "0"},
            "pids": {"limit": 5},
            "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
            "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        }
    )
    assert read(tree["memory"], "memory.limit_in_bytes") == "33554432"
    assert read(tree["memory"], "memory.soft_limit_in_bytes") == str(1 << 24)
    assert read(tree["memory"], "memory.swappiness") == "0"
    assert read(tree["memory"], "memory.oom_control") == "1"
    assert read(tree["cpu"], "cpu.shares") == "512"
    assert read(tree["cpu"], "cpu.cfs_quota_us") == "50000"
    assert read(tree["cpu"], "cpu.cfs_period_us") == "100000"
    assert read(tree["cpuset"], "cpuset.cpus") == "1"
    assert read(tree["pids"], "pids.max") == "5"
    assert read(tree["devices"], "devices.deny") == "a"  # a plain file keeps only the last write
    assert read(tree["devices"], "devices.allow") == "c 1:3 rwm"
    assert read(tree["blkio"], "blkio.throttle.read_bps_device") == "8:0 1048576"


def test_unlimited_values(manager, tree):
    manager.apply({"memory": {"limit": -1}, "cpu": {"quota": -1}, "pids": {"limit": -1}})
    assert read(tree["memory"], "memory.limit_in_bytes") == "-1"
    assert read(tree["memory"], "memory.memsw.limit_in_bytes") == "-1"  # runc: follows memory
    assert read(tree["cpu"], "cpu.cfs_quota_us") == "-1"
    assert read(tree["pids"], "pids.max") == "max"


def test_swap_without_accounting_is_a_clear_error(manager, tree):
    os.unlink(os.path.join(tree["memory"], "memory.memsw.limit_in_bytes"))
    with pytest.raises(FailedPrecondition, match="swap accounting"):
        manager.apply({"memory": {"limit": 1 << 25, "swap": 1 << 26}})
    manager.apply({"memory": {"limit": 1 << 25, "swap": -1}})  # unlimited needs no accounting
    assert read(tree["memory"], "memory.limit_in_bytes") == str(1 << 25)


def test_missing_files_fail_before_any_write(manager, tree):
    with pytest.raises(FailedPrecondition, match="hugetlb"):
        manager.apply({"pids": {"limit": 9}, "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]})
    with pytest.raises(FailedPrecondition, match="blkio.weight"):
        manager.apply({"pids": {"limit": 9}, "blockIO": {"weight": 100}})
    assert read(tree["pids"], "pids.max") == "max"


def test_unified_is_rejected_on_v1(manager):
    with pytest.raises(InvalidArgument, match="unified"):
        manager.apply({"unified": {"memory.high": "1000"}})


def test_add_writes_every_hierarchy(manager, tree):
    manager.add(4242)
    for dir in tree.values():
        assert read(dir, "cgroup.procs") == "4242"


def test_pids_walks_descendants(manager, tree):
    populate(tree["pids"], {**FILES["pids"], "cgroup.procs": "10\n11\n"})
    populate(os.path.join(tree["pids"], "sub"), {"cgroup.procs": "12\n"})
    assert sorted(manager.pids()) == [10, 11, 12]


def test_stats_and_oom(manager, tree):
    stats = manager.stats()
    assert stats["memory"]["usage"] == 4096 and stats["memory"]["limit"] is None
    assert stats["memory"]["cache"] == 100 and stats["memory"]["rss"] == 200
    assert stats["cpu"] == {"usage_ns": 5000, "user_ns": 4000, "system_ns": 1000, "percpu_ns": [3000, 2000],
                            "periods": 7, "throttled_periods": 3, "throttled_ns": 4000}
    assert stats["pids"] == {"current": 2, "limit": None}
    assert manager.oom_killed() is False
    populate(tree["memory"], {**FILES["memory"], "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"})
    assert manager.oom_killed() is True


def test_frozen_reads_freezer_state(manager, tree):
    assert manager.frozen() is False
    populate(tree["freezer"], {"freezer.state": "FROZEN"})
    assert manager.frozen() is True


def test_save_load_round_trip(manager):
    again = load_manager(manager.save())
    assert isinstance(again, V1Manager)
    assert again.paths == manager.paths and again.save() == manager.save()


def test_missing_controller_is_a_precondition(tmp_path):
    m = V1Manager({"pids": str(tmp_path)})
    with pytest.raises(FailedPrecondition, match="memory"):
        m.apply({"memory": {"limit": 1 << 25}})
