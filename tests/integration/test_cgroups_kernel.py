"""The cgroup managers against the real kernel (root; skipped without the hierarchies).

Every test makes its cgroup under a unique top-level name and, in ``finally``, kills what
it started, destroys the cgroup and asserts that no directory is left in any hierarchy.
"""

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from conch.cgroups import detect, load_manager, open_manager
from conch.errors import ConchError

pytestmark = pytest.mark.root

V1_ROOT = "/sys/fs/cgroup"
V2_ROOT = "/sys/fs/cgroup/unified"


def _layout(root):
    try:
        return detect(root)
    except ConchError:
        return None


def _needs(root, version):
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    layout = _layout(root)
    if layout is None or layout.version != version:
        pytest.skip(f"no cgroup v{version} hierarchy at {root}")
    return layout


def _top(manager, dir):
    """The unique top-level test directory containing ``dir``."""
    return os.path.dirname(dir)


@pytest.fixture
def v1():
    _needs(V1_ROOT, 1)
    yield from _managed(V1_ROOT)


@pytest.fixture
def v2():
    _needs(V2_ROOT, 2)
    yield from _managed(V2_ROOT)


def _managed(root):
    name = f"conch-test-{uuid.uuid4().hex[:12]}"
    manager = open_manager(f"/{name}/c", container_id="unused", root=root)
    manager.create()
    children: list[subprocess.Popen] = []
    manager.children = children  # V1Manager/V2Manager have no __slots__; tests only
    try:
        yield manager
    finally:
        try:
            manager.kill_all(signal.SIGKILL)
        finally:
            for child in children:
                child.kill()
                child.wait(timeout=10)
            manager.destroy()
            leftovers = [d for d in set(manager.paths.values()) if os.path.exists(os.path.dirname(d))]
            assert not leftovers, f"cgroup directories left behind: {leftovers}"
            manager.destroy()  # a second destroy is a no-op


def _spawn(manager, args, **kwargs):
    child = subprocess.Popen(args, **kwargs)
    manager.children.append(child)
    return child


def _gated(manager, code):
    """A python child that waits for a line on stdin before running ``code``."""
    return _spawn(
        manager,
        [sys.executable, "-c", f"import sys; sys.stdin.readline(); {code}"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cgroup_lines(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read().splitlines()


# ---- v1 -----------------------------------------------------------------------------


def test_v1_add_puts_process_in_every_hierarchy(v1):
    child = _spawn(v1, ["sleep", "100"])
    v1.add(child.pid)
    sub = v1.paths["memory"][len("/sys/fs/cgroup/memory") :]
    lines = _cgroup_lines(child.pid)
    for controller in ("memory", "pids", "freezer", "cpuset", "name=systemd"):
        assert any(line.split(":", 2)[1] == controller and line.endswith(":" + sub) for line in lines), lines
    assert child.pid in v1.pids()
    with open(os.path.join(v1.paths["cpuset"], "cpuset.cpus")) as f:
        assert f.read().strip()  # copied down from the parent


def test_v1_memory_limit_reads_back(v1):
    v1.apply({"memory": {"limit": 32 << 20, "swap": 32 << 20}})
    with open(os.path.join(v1.paths["memory"], "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 32 << 20
    assert v1.stats()["memory"]["limit"] == 32 << 20


def test_v1_oom_kill_is_detected(v1):
    swap = 32 << 20 if os.path.exists(os.path.join(v1.paths["memory"], "memory.memsw.limit_in_bytes")) else None
    v1.apply({"memory": {"limit": 32 << 20, **({"swap": swap} if swap else {})}})
    hog = _gated(v1, "b = bytearray(100 << 20); b[::4096] = b'x' * len(b[::4096])")
    v1.add(hog.pid)
    assert v1.oom_killed() is False
    hog.stdin.write("go\n")
    hog.stdin.flush()
    assert hog.wait(timeout=30) == -signal.SIGKILL
    assert v1.oom_killed() is True
    assert v1.stats()["memory"]["oom_kills"] >= 1


def test_v1_pids_limit_stops_a_fork_loop(v1):
    v1.apply({"pids": {"limit": 5}})
    forker = _spawn(
        v1,
        ["sh", "-c", "read x; i=0; while [ $i -lt 20 ]; do sleep 30 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; echo done"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    v1.add(forker.pid)
    out, err = forker.communicate("go\n", timeout=30)
    assert "fork" in err.lower(), err  # dash: "Cannot fork" (EAGAIN from the pids controller)
    stats = v1.stats()["pids"]
    assert stats["limit"] == 5 and stats["current"] <= 5


def test_v1_freeze_and_thaw(v1):
    child = _spawn(v1, ["sleep", "100"])
    v1.add(child.pid)
    v1.freeze()
    assert v1.frozen() is True
    with open(os.path.join(v1.paths["freezer"], "freezer.state")) as f:
        assert f.read().strip() == "FROZEN"
    v1.thaw()
    assert v1.frozen() is False
    assert child.poll() is None


def test_v1_kill_all(v1):
    children = [_spawn(v1, ["sleep", "100"]) for _ in range(3)]
    for child in children:
        v1.add(child.pid)
    v1.kill_all(signal.SIGTERM)
    assert [c.wait(timeout=10) for c in children] == [-signal.SIGTERM] * 3
    assert v1.frozen() is False  # kill_all thaws what it froze


def test_v1_kill_all_sigkill_on_paused_container(v1):
    child = _spawn(v1, ["sleep", "100"])
    v1.add(child.pid)
    v1.freeze()
    v1.kill_all(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL


def test_v1_save_load_in_another_process(v1):
    child = _spawn(v1, ["sleep", "100"])
    v1.add(child.pid)
    script = (
        "import json, signal, sys; from conch.cgroups import load_manager; "
        "m = load_manager(json.loads(sys.argv[1])); print(json.dumps(m.pids())); "
        "m.kill_all(signal.SIGKILL)"
    )
    out = subprocess.run([sys.executable, "-c", script, json.dumps(v1.save())], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [child.pid]
    assert child.wait(timeout=10) == -signal.SIGKILL
    again = load_manager(json.loads(json.dumps(v1.save())))
    again.destroy()
    assert not any(os.path.exists(d) for d in again.paths.values())


def test_v1_destroy_keeps_a_parent_it_did_not_create(v1):
    sibling = open_manager(os.path.dirname(v1.paths["memory"])[len("/sys/fs/cgroup/memory") :] + "/sibling",
                           container_id="unused")
    sibling.create()
    try:
        v1.destroy()
        assert all(os.path.isdir(os.path.dirname(d)) for d in sibling.paths.values())
    finally:
        sibling.destroy()
        v1.destroy()  # now the shared parent goes, with the last container


def test_v1_mount_sources_name_every_hierarchy(v1):
    options = {opt for opt, _dir in v1.mount_sources()}
    assert {"memory", "cpuset", "pids", "freezer"} <= options
    assert any(opt.startswith("name=") for opt in options)


# ---- v2 (plain cgroups in the empty unified hierarchy of a hybrid host) -------------------


def test_v2_add_freeze_thaw_kill(v2):
    assert v2.version == 2
    child = _spawn(v2, ["sleep", "100"])
    v2.add(child.pid)
    sub = v2.paths[""][len(V2_ROOT) :]
    assert f"0::{sub}" in _cgroup_lines(child.pid)
    assert v2.pids() == [child.pid]
    v2.freeze()
    assert v2.frozen() is True
    v2.thaw()
    assert v2.frozen() is False
    v2.kill_all(signal.SIGKILL)  # cgroup.kill
    assert child.wait(timeout=10) == -signal.SIGKILL


def test_v2_kill_all_other_signal(v2):
    child = _spawn(v2, ["sleep", "100"])
    v2.add(child.pid)
    v2.kill_all(signal.SIGTERM)
    assert child.wait(timeout=10) == -signal.SIGTERM
    assert v2.frozen() is False


def test_v2_save_load_in_another_process(v2):
    child = _spawn(v2, ["sleep", "100"])
    v2.add(child.pid)
    script = (
        "import json, sys; from conch.cgroups import load_manager; "
        "m = load_manager(json.loads(sys.argv[1])); m.freeze(); print(m.frozen())"
    )
    out = subprocess.run([sys.executable, "-c", script, json.dumps(v2.save())], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert v2.frozen() is True
    v2.thaw()


def test_v2_resources_need_controllers(v2):
    # On a hybrid host every controller is bound to v1: the file is missing, clearly.
    if os.path.exists(os.path.join(v2.paths[""], "pids.max")):
        pytest.skip("this unified hierarchy has the pids controller")
    with pytest.raises(ConchError, match="pids.max"):
        v2.apply({"pids": {"limit": 5}})


def test_remove_empty_keeps_a_shared_parent_in_use_then_removes_it():
    """The engine's /conch parent belongs to no container: remove_empty (conchd at
    shutdown) takes it away only once it is empty; make_dirs remakes it on demand."""
    from conch.cgroups import remove_empty

    _needs(V1_ROOT, 1)
    parent = f"/conch-test-{uuid.uuid4().hex[:12]}"
    first = open_manager(f"{parent}/a", container_id="unused")
    second = open_manager(f"{parent}/b", container_id="unused")
    first.create()
    second.create()
    try:
        first.destroy()
        remove_empty(parent)  # b still lives there
        assert all(os.path.isdir(d) for d in second.paths.values())
        second.destroy()  # b did not create the parent: it stays, empty
        remove_empty(parent)
        assert not any(os.path.exists(os.path.dirname(d)) for d in second.paths.values())
        remove_empty(parent)  # idempotent
    finally:
        for m in (first, second):
            m.destroy()
        remove_empty(parent)
