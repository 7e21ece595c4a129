"""shim/runtime/cgroups.c against its specification, conch.cgroups (root, real kernel).

A tiny C driver (compiled here from cgroups.c + json.c) opens, checks, creates and applies
the same cgroupsPath/resources as the Python manager; the test compares the saved records,
the values the kernel holds afterwards (read back from the control files, one cgroup made
by each side), the cgroup mounts and freezer file, and which requests each side refuses.
Every cgroup made here carries a uuid token; the test asserts none is left.
"""

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conch.cgroups import detect, load_manager, open_manager, remove_empty
from conch.cgroups.resources import parse_resources
from conch.errors import ConchError
from conch.runtime.create import _cgroup_mounts, _with_default_devices
from conch.runtime.state import freezer_file
from conch.testing.leaks import cgroup_mountpoints, read_cgroups, read_mounts

pytestmark = pytest.mark.root

RUNTIME = Path(__file__).resolve().parents[2] / "shim" / "runtime"

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cgroups.h"
#include "json.h"

static struct cg cg;

static void each(const char *dir, const char *name, const char *value, int tolerate, void *arg)
{
	(void)arg;
	printf("%s|%s|%s|%d\n", dir, name, value, tolerate);
}

/* driver MODE cgroupsPath id RESOURCES|-  [own_ns]
 * open: cg_save; check: "0" or "-1 why"; mounts: cg_mounts + cg_freezer_file;
 * plan: cg_plan's writes, one "dir|name|value|tolerate" a line;
 * hold: check, create, apply, add $CG_PID if set, print cg_save, wait for a line on
 * stdin, destroy. $CG_ROOT: cg_set_root. */
int main(int argc, char **argv)
{
	static char buf[1 << 20];
	char why[1024] = "";
	if (argc < 5)
		return 2;
	const char *mode = argv[1];
	struct jval *res = NULL;
	if (getenv("CG_ROOT"))
		cg_set_root(getenv("CG_ROOT"));
	if (strcmp(argv[4], "-") && !(res = json_parse(argv[4], strlen(argv[4]), why, sizeof why))) {
		printf("json: %s\n", why);
		return 3;
	}
	if (cg_open(*argv[2] ? argv[2] : NULL, argv[3], &cg, why, sizeof why) < 0) {
		printf("-1 open: %s\n", why);
		return 0;
	}
	if (!strcmp(mode, "check")) {
		int r = cg_check(&cg, res, why, sizeof why);
		printf("%d %s\n", r, r ? why : "");
		return 0;
	}
	if (!strcmp(mode, "plan")) {
		if (cg_plan(&cg, res, each, NULL, why, sizeof why) < 0)
			printf("-1 %s\n", why);
		return 0;
	}
	if (!strcmp(mode, "mounts")) {
		struct cg_mount m[CG_MAX];
		int n = cg_mounts(&cg, atoi(argv[5]), m, CG_MAX);
		for (int i = 0; i < n; i++)
			printf("%s|%s|%s|%s\n", m[i].name, m[i].fstype, m[i].options, m[i].host_dir);
		char kind[8], path[4200];
		cg_freezer_file(&cg, kind, path, sizeof path);
		printf("freezer|%s|%s\n", kind, path);
		return 0;
	}
	if (!strcmp(mode, "hold")) {
		if (cg_check(&cg, res, why, sizeof why) < 0) {
			printf("-1 check: %s\n", why);
			return 0;
		}
		if (cg_create(&cg, why, sizeof why) < 0 || cg_apply(&cg, res, why, sizeof why) < 0) {
			printf("-1 create/apply: %s\n", why);
			cg_destroy(&cg);
			return 0;
		}
		if (getenv("CG_PID") && cg_add(&cg, atoi(getenv("CG_PID")), why, sizeof why) < 0) {
			printf("-1 add: %s\n", why);
			cg_destroy(&cg);
			return 0;
		}
	}
	if (cg_save(&cg, buf, sizeof buf) >= sizeof buf)
		return 4;
	printf("%s\n", buf);
	fflush(stdout);
	if (!strcmp(mode, "hold")) {
		char line[8];
		int eof = !fgets(line, sizeof line, stdin); /* the test died: clean up all the same */
		if (cg_destroy(&cg) < 0) {
			perror("cg_destroy");
			return 5;
		}
		printf("destroyed\n");
		return eof ? 6 : 0;
	}
	return 0;
}
"""

# What the read-back compares: every one of these that exists in a container's cgroup.
READ_BACK = (
    "devices.list", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
    "memory.soft_limit_in_bytes", "memory.swappiness", "memory.oom_control", "cpu.shares",
    "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.cfs_burst_us", "cpu.idle", "cpuset.cpus",
    "cpuset.mems", "pids.max", "blkio.weight", "blkio.throttle.read_bps_device",
    "blkio.throttle.write_iops_device",
)


def _block_device() -> tuple[int, int] | None:
    for name in sorted(os.listdir("/sys/block")):
        try:
            major, minor = Path(f"/sys/block/{name}/dev").read_text().split(":")
        except OSError:
            continue
        return int(major), int(minor)
    return None


_BLK = _block_device()

DOCKER_DEFAULTS = {
    "devices": [{"allow": False, "access": "rwm"}],
    "memory": {}, "cpu": {"shares": 0}, "pids": {"limit": 0}, "blockIO": {},
}

APPLY_CASES = {
    "none": None,
    "empty": {},
    "falsy": [],  # create.py reads linux.get("resources") or {}
    "docker-defaults": DOCKER_DEFAULTS,
    "devices": {"devices": [
        {"allow": False},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "wr"},
        {"allow": True, "type": "b", "major": 8, "minor": -1, "access": "mr"},
        {"allow": False, "type": "c", "major": 5, "access": "w"},
    ]},
    "memory-limit-swap": {"memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20,
                                     "swappiness": 10, "disableOOMKiller": True}},
    "memory-equal-swap": {"memory": {"limit": 48 << 20, "swap": 48 << 20}},
    "memory-unlimited": {"memory": {"limit": -1, "swappiness": -1, "useHierarchy": True}},
    "cpu": {"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}},
    "cpu-burst-idle": {"cpu": {"quota": 20000, "period": 50000, "burst": 1000, "idle": 0}},
    "cpu-unlimited": {"cpu": {"quota": -1, "period": 250000}},
    "pids": {"pids": {"limit": 42}},
    "pids-negative": {"pids": {"limit": -5}},
    "nulls-and-empties": {"rdma": None, "hugepageLimits": [], "unified": {}, "network": {},
                          "memory": {"kernelTCP": None}, "cpu": {"cpus": ""}},
    "everything": {
        "devices": [{"allow": False}, {"allow": True, "type": "c", "major": 10, "minor": 229}],
        "memory": {"limit": 96 << 20, "swap": -1},
        "cpu": {"shares": 1024, "quota": 30000, "cpus": "0-1"},
        "pids": {"limit": 100},
    },
}
if _BLK is not None:
    APPLY_CASES["blkio-throttle"] = {"blockIO": {
        "throttleReadBpsDevice": [{"major": _BLK[0], "minor": _BLK[1], "rate": 1 << 20}],
        "throttleWriteIOPSDevice": [{"major": _BLK[0], "minor": _BLK[1], "rate": 100}],
    }}

# (resources, whether Python refuses them too); C refuses all of these.
REFUSED = {
    "hugepages": ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]}, False),
    "unified": ({"unified": {"memory.high": "1G"}}, True),
    "unknown-section": ({"rdma": {"mlx": {"hcaHandles": 1}}}, True),
    "unknown-cpu-field": ({"cpu": {"realtimeRuntime": 1000}}, True),
    "check-before-update": ({"memory": {"limit": 1 << 24, "checkBeforeUpdate": True}}, True),
    "use-hierarchy-false": ({"memory": {"useHierarchy": False}}, True),
    "shares-low": ({"cpu": {"shares": 1}}, True),
    "shares-float": ({"cpu": {"shares": 1.5}}, True),
    "limit-bool": ({"memory": {"limit": True}}, True),
    "swappiness-high": ({"memory": {"swappiness": 101}}, True),
    "swap-below-limit": ({"memory": {"limit": 1 << 26, "swap": 1 << 25}}, True),
    "period-negative": ({"cpu": {"period": -1}}, True),
    "cpus-number": ({"cpu": {"cpus": 1}}, True),
    "device-type": ({"devices": [{"allow": True, "type": "x"}]}, True),
    "device-access": ({"devices": [{"allow": True, "access": "rwx"}]}, True),
    "device-no-allow": ({"devices": [{"type": "c"}]}, True),
    "device-major": ({"devices": [{"allow": True, "type": "c", "major": -2}]}, True),
    "devices-null": ({"devices": None}, False),  # Python: no rules; C leaves it to Python
    "memory-list": ({"memory": []}, True),
    "resources-list": ([1], True),
    "blkio-weight-range": ({"blockIO": {"weight": 5}}, True),
    "rate-incomplete": ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, True),
    "pids-unknown": ({"pids": {"limit": 1, "max": 2}}, True),
    "huge-int": ({"memory": {"limit": 1 << 70}}, False),
}


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    try:
        if detect().version != 1:
            pytest.skip("the apply comparison is written for cgroup v1 (this machine)")
    except ConchError:
        pytest.skip("no cgroups")
    d = tmp_path_factory.mktemp("cgroups-driver")
    (d / "driver.c").write_text(DRIVER)
    exe = d / "driver"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME}", "-o", str(exe),
         str(d / "driver.c"), str(RUNTIME / "cgroups.c"), str(RUNTIME / "json.c")],
        check=True,
    )
    return exe


def _arg(resources) -> str:
    return "-" if resources is None else json.dumps(resources)


def run_c(driver, mode, cgroups_path, cid, resources=None, *extra) -> str:
    out = subprocess.run([str(driver), mode, cgroups_path, cid, _arg(resources), *extra],
                         capture_output=True, check=True, timeout=30)
    return out.stdout.decode()


def _ours(token: str) -> frozenset[str]:
    return read_cgroups(cgroup_mountpoints(read_mounts().values()), markers=(token,))


def _read_back(saved: dict) -> dict:
    values = {}
    for options, d in saved.get("dirs", {}).items():
        for name in READ_BACK:
            try:
                values[(options, name)] = Path(d, name).read_text()
            except FileNotFoundError:
                continue
    return values


def _paths(kind: str, token: str, side: str) -> str:
    return {
        "absolute": f"/conch-test/{token}-{side}/ctr",
        "relative": f"conch-test/{token}-{side}",
        "systemd": f"conch-test.slice:{token}{side}:ctr",
    }[kind]


def _python_apply(cgroups_path, resources):
    manager = open_manager(cgroups_path, container_id="unused")
    manager.create()
    try:
        manager.apply(_with_default_devices(resources or {}))
        return manager, manager.save(), _read_back(manager.save())
    except BaseException:
        manager.destroy()
        raise


def _c_apply(driver, cgroups_path, resources, *, env=None, prefix=()):
    proc = subprocess.Popen([*prefix, str(driver), "hold", cgroups_path, "unused", _arg(resources)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})
    line = proc.stdout.readline()
    if line.startswith("-1") or not line.strip():
        proc.wait(timeout=10)
        raise AssertionError(f"C refused or failed: {line!r}")
    saved = json.loads(line)
    return proc, saved, _read_back(saved)


def _c_release(proc) -> None:
    out, _ = proc.communicate("\n", timeout=30)
    assert proc.returncode == 0 and out.strip() == "destroyed", (proc.returncode, out)


def _compare(driver, kind: str, resources) -> None:
    token = uuid.uuid4().hex[:12]
    py_path, c_path = _paths(kind, token, "p"), _paths(kind, token, "c")
    manager, py_saved, py_values = _python_apply(py_path, resources)
    proc = None
    try:
        proc, c_saved, c_values = _c_apply(driver, c_path, resources)
        # the same record, but for the side's own name (parents outside the token are
        # shared by both sides, so only the first side to come made them)
        swap = lambda s: s.replace(f"{token}p", f"{token}c").replace(f"{token}-p", f"{token}-c")  # noqa: E731
        assert c_saved["version"] == py_saved["version"] == 1
        assert list(c_saved["dirs"]) == list(py_saved["dirs"])
        assert c_saved["dirs"] == {k: swap(v) for k, v in py_saved["dirs"].items()}
        assert [p for p in c_saved["created"] if token in p] == \
            [swap(p) for p in py_saved["created"] if token in p]
        assert c_values == {k: swap(v) for k, v in py_values.items()}
        assert load_manager(c_saved).save() == c_saved
    finally:
        if proc is not None:
            _c_release(proc)
        manager.destroy()
    assert not _ours(token), "cgroups left behind"


@pytest.mark.parametrize("case", sorted(APPLY_CASES))
def test_apply_matches_python(driver, case):
    _compare(driver, "absolute", APPLY_CASES[case])


# Requests both sides accept but the kernel refuses: both fail, with the same write.
KERNEL_REFUSES = {
    # memory+swap below the (unlimited) memory limit: EINVAL
    "memory-swap-only": {"memory": {"swap": 256 << 20}},
    "burst-above-quota": {"cpu": {"quota": 1000, "burst": 5000}},
}


@pytest.mark.parametrize("case", sorted(KERNEL_REFUSES))
def test_kernel_refusals_match_python(driver, case):
    token = uuid.uuid4().hex[:12]
    with pytest.raises(ConchError) as info:
        _python_apply(f"/conch-test/{token}-p/ctr", KERNEL_REFUSES[case])
    out = run_c(driver, "hold", f"/conch-test/{token}-c/ctr", "unused", KERNEL_REFUSES[case])
    assert out.startswith("-1 create/apply: write "), out
    assert out.split("/")[-1].strip() == str(info.value).split("/")[-1].strip().replace(
        f"{token}-p", f"{token}-c"), (out, str(info.value))
    for side in "pc":
        remove_empty(f"/conch-test/{token}-{side}")  # the test's own parent, made by both
    assert not _ours(token)


@pytest.mark.parametrize("kind", ["relative", "systemd"])
@pytest.mark.parametrize("case", ["docker-defaults", "cpu", "memory-limit-swap"])
def test_apply_matches_python_for_each_path_kind(driver, kind, case):
    _compare(driver, kind, APPLY_CASES[case])


@pytest.mark.parametrize("cgroups_path", [
    "", "/conch-test/x", "/conch-test//./x/", "conch-test/rel", "./conch-test/rel/.",
    "user.slice:conch:abc", ":conch:abc", "a-b-c.slice::abc", "-.slice:p:abc", "system.slice:p:n.slice",
])
def test_open_matches_python(driver, cgroups_path):
    cid = f"id-{uuid.uuid4().hex[:8]}"
    py = open_manager(cgroups_path or None, container_id=cid).save()
    assert json.loads(run_c(driver, "open", cgroups_path, cid)) == py
    # the same bytes as json.dumps, key order included
    assert run_c(driver, "open", cgroups_path, cid).strip() == json.dumps(py)


@pytest.mark.parametrize("cgroups_path,cid", [
    ("", ""), ("", "a/b"), ("", ".."), ("/", "x"), (".", "x"), ("/a/../b", "x"), ("a:b", "x"),
    ("a.slice:p:", "x"), ("a--b.slice:p:n", "x"), ("nota:p:n", "x"), ("a.slice:p/q:n", "x"),
])
def test_open_refuses_what_python_refuses(driver, cgroups_path, cid):
    with pytest.raises(ConchError):
        open_manager(cgroups_path or None, container_id=cid)
    assert run_c(driver, "open", cgroups_path, cid).startswith("-1 ")


@pytest.mark.parametrize("own_ns", [0, 1])
def test_mounts_and_freezer_match_python(driver, own_ns):
    cid = f"id-{uuid.uuid4().hex[:8]}"
    manager = open_manager(f"/conch-test/{cid}", container_id=cid)
    ns = {"cgroup": "", "mount": ""} if own_ns else {"mount": ""}
    lines = run_c(driver, "mounts", f"/conch-test/{cid}", cid, None, str(own_ns)).splitlines()
    assert [tuple(line.split("|")) for line in lines[:-1]] == [tuple(m) for m in _cgroup_mounts(manager, ns)]
    kind, path = lines[-1].split("|")[1:]
    assert (kind, path) == freezer_file(manager.save())


@pytest.mark.parametrize("case", sorted(APPLY_CASES))
def test_check_accepts_the_supported_subset(driver, case):
    assert run_c(driver, "check", "/conch-test/x", "x", APPLY_CASES[case]).startswith("0")


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_check_refuses(driver, case):
    resources, python_refuses = REFUSED[case]
    out = run_c(driver, "check", "/conch-test/x", "x", resources)
    assert out.startswith("-1 "), out
    if python_refuses:
        with pytest.raises((ConchError, TypeError)):
            manager = open_manager("/conch-test/x", container_id="x")
            doc = _with_default_devices(resources or {})  # as create.py
            manager.plan(parse_resources(doc))


def test_destroy_removes_created_parents_only(driver, tmp_path):
    token = uuid.uuid4().hex[:12]
    # a deep path: every level is the C side's to remove; the shared /conch-test stays
    proc, saved, _ = _c_apply(driver, f"/conch-test/{token}/a/b/c", DOCKER_DEFAULTS)
    try:
        assert all(token in p or p.endswith("/conch-test") for p in saved["created"])
        assert _ours(token)
    finally:
        _c_release(proc)
    assert not _ours(token)


def _strace_writes(path: Path) -> list[tuple[str, str]]:
    """(file, value) of each write to a cgroup file, in order, from an strace log."""
    fds, writes = {}, []
    for line in path.read_text().splitlines():
        opened = re.match(r'openat\(AT_FDCWD, "([^"]+)", (O_WRONLY[^)]*)\) = (\d+)', line)
        if opened:
            fds[int(opened.group(3))] = opened.group(1)
            continue
        written = re.match(r'write\((\d+), "((?:[^"\\]|\\.)*)", \d+\)', line)
        if written and int(written.group(1)) in fds:
            value = written.group(2).encode().decode("unicode_escape")
            writes.append((fds.pop(int(written.group(1))), value))
    return writes


@pytest.mark.parametrize("case", ["docker-defaults", "cpu", "memory-limit-swap", "everything", "cpu-unlimited"])
def test_writes_in_pythons_order(driver, tmp_path, monkeypatch, case):
    """Not only the end state: the same writes, in the same order (create's cpuset fill,
    the plan), as the Python manager makes (recorded through conch.cgroups.fs)."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    import conch.cgroups.fs as cgfs
    import conch.cgroups.v1 as cgv1

    token = uuid.uuid4().hex[:12]
    # /conch-test made (and its cpuset filled) before either side comes, by a holder
    holder = open_manager(f"/conch-test/{token}-hold", container_id="x")
    holder.create()
    py_writes = []
    real = cgfs.write_value

    def recording(dir, name, value):
        py_writes.append((f"{dir}/{name}", value))
        return real(dir, name, value)

    monkeypatch.setattr(cgfs, "write_value", recording)
    monkeypatch.setattr(cgv1, "write_value", recording)
    manager, _, _ = _python_apply(f"/conch-test/{token}-p/ctr", APPLY_CASES[case])
    monkeypatch.undo()
    log = tmp_path / "strace.log"
    proc = None
    try:
        proc, _, _ = _c_apply(driver, f"/conch-test/{token}-c/ctr", APPLY_CASES[case],
                              prefix=("strace", "-qq", "-s", "4096", "-e", "trace=openat,write", "-o", str(log)))
    finally:
        if proc is not None:
            _c_release(proc)
        manager.destroy()
        holder.destroy()
    c_writes = [(f, v) for f, v in _strace_writes(log) if not f.endswith("/cgroup.procs")]
    assert py_writes
    assert c_writes == [(f.replace(f"{token}-p", f"{token}-c"), v) for f, v in py_writes]
    assert not _ours(token)


def test_add_moves_the_process(driver):
    token = uuid.uuid4().hex[:12]
    sleeper = subprocess.Popen(["sleep", "30"])
    proc = None
    try:
        proc, saved, _ = _c_apply(driver, f"/conch-test/{token}/ctr", DOCKER_DEFAULTS,
                                  env={"CG_PID": str(sleeper.pid)})
        own = Path(f"/proc/{sleeper.pid}/cgroup").read_text().splitlines()
        # every hierarchy (the unified one of a hybrid host included) names the container
        assert all(line.split(":", 2)[2] == f"/conch-test/{token}/ctr" for line in own), own
    finally:
        sleeper.kill()
        sleeper.wait()
        if proc is not None:
            _c_release(proc)  # destroy waits for the killed task to leave
    assert not _ours(token)


V2_ROOT = "/sys/fs/cgroup/unified"


@pytest.fixture
def v2_root():
    try:
        if detect(V2_ROOT).version != 2:
            raise ConchError("not v2")
    except ConchError:
        pytest.skip(f"no cgroup2 mount at {V2_ROOT}")
    return V2_ROOT


def test_v2_open_create_destroy_match_python(driver, v2_root):
    token = uuid.uuid4().hex[:12]
    py = open_manager(f"/conch-test/{token}-p/ctr", container_id="x", root=v2_root)
    c_open = json.loads(subprocess.run(
        [str(driver), "open", f"/conch-test/{token}-c/ctr", "x", "-"], capture_output=True, check=True,
        env={**os.environ, "CG_ROOT": v2_root}).stdout)
    swap = lambda s: s.replace(f"{token}-p", f"{token}-c")  # noqa: E731
    assert c_open == {k: swap(v) if isinstance(v, str) else v for k, v in py.save().items()}
    py.create()
    proc = None
    try:
        proc, c_saved, _ = _c_apply(driver, f"/conch-test/{token}-c/ctr", {}, env={"CG_ROOT": v2_root})
        py_saved = py.save()
        assert list(c_saved) == list(py_saved)
        assert c_saved["dir"] == swap(py_saved["dir"]) and c_saved["mountpoint"] == py_saved["mountpoint"]
        assert [p for p in c_saved["created"] if token in p] == [swap(p) for p in py_saved["created"] if token in p]
        assert load_manager(c_saved).save() == c_saved
    finally:
        if proc is not None:
            _c_release(proc)
        py.destroy()
    assert not _ours(token)


def _plans(driver, manager, cgroups_path, resources, env=None):
    """(C's plan, Python's plan) as (dir, name, value, tolerate) tuples, or the refusals."""
    out = subprocess.run([str(driver), "plan", cgroups_path, "x", _arg(resources)], capture_output=True,
                         check=True, env={**os.environ, **(env or {})}).stdout.decode()
    c = out if out.startswith("-1 ") else [tuple(line.split("|")) for line in out.splitlines()]
    try:
        doc = _with_default_devices(resources or {})  # as create.py
        py = [(w.dir, w.name, w.value, str(w.tolerate)) for w in manager.plan(parse_resources(doc))]
    except (ConchError, TypeError) as exc:
        py = exc
    return c, py


V2_PLAN_CASES = dict(APPLY_CASES, **{
    "devices-allow-all": {"devices": [{"allow": True}]},
    "devices-allow-all-then-deny": {"devices": [{"allow": True}, {"allow": False, "type": "c", "major": 1}]},
    "memory-v2": {"memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": -1}},
    "memory-v2-unlimited": {"memory": {"limit": -1}},
    "memory-v2-oom-false": {"memory": {"limit": 1 << 26, "disableOOMKiller": False}},
    "cpu-period-only": {"cpu": {"period": 20000}},
    "cpu-quota-only": {"cpu": {"quota": 20000, "shares": 2}},
    "cpu-shares-max": {"cpu": {"shares": 262144}},
    "blkio-weight": {"blockIO": {"weight": 500}},
    "v2-everything": {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": -5}, "memory": {"limit": -1, "reservation": -1}, "devices": [],
        "blockIO": {"weight": 500, "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 5}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 1 << 20}]},
    },
    "v2-swappiness": {"memory": {"swappiness": 5}},
    "v2-swap-without-limit": {"memory": {"swap": 1 << 27}},
})
if _BLK is None:
    V2_PLAN_CASES["blkio-throttle"] = {"blockIO": {"throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 5}]}}


@pytest.mark.parametrize("case", sorted(V2_PLAN_CASES))
def test_v2_plan_matches_python(driver, v2_root, case):
    """The cgroup2 mount of a hybrid host has no controllers, so the comparison is of the
    plans (cg_plan against V2Manager.plan), not of written values."""
    manager = open_manager("/conch-test/x", container_id="x", root=v2_root)
    c, py = _plans(driver, manager, "/conch-test/x", V2_PLAN_CASES[case], env={"CG_ROOT": v2_root})
    if isinstance(py, Exception):
        assert isinstance(c, str) and c.startswith("-1 "), (c, py)
    else:
        assert c == py


@pytest.mark.parametrize("case", sorted(APPLY_CASES))
def test_v1_plan_matches_python(driver, case):
    token = uuid.uuid4().hex[:12]
    manager = open_manager(f"/conch-test/{token}/ctr", container_id="x")
    manager.create()  # the memory plan reads the current limit
    try:
        c, py = _plans(driver, manager, f"/conch-test/{token}/ctr", APPLY_CASES[case])
        assert c == py
    finally:
        manager.destroy()
    assert not _ours(token)


@pytest.mark.parametrize("own_ns", [0, 1])
def test_v2_mounts_and_freezer_match_python(driver, v2_root, own_ns):
    manager = open_manager("/conch-test/x", container_id="x", root=v2_root)
    ns = {"cgroup": ""} if own_ns else {}
    lines = subprocess.run([str(driver), "mounts", "/conch-test/x", "x", "-", str(own_ns)], capture_output=True,
                           check=True, env={**os.environ, "CG_ROOT": v2_root}).stdout.decode().splitlines()
    assert [tuple(line.split("|")) for line in lines[:-1]] == [tuple(m) for m in _cgroup_mounts(manager, ns)]
    assert tuple(lines[-1].split("|")[1:]) == freezer_file(manager.save())


@pytest.mark.parametrize("cgroups_path", ["//", "//.", "//./"])
def test_open_refuses_the_hierarchy_root(driver, cgroups_path):
    """posixpath.normpath keeps a leading "//": cgroup_subpath once took "//" for a
    container's cgroup, the hierarchy root itself (whose destroy would remove every empty
    cgroup on the host). Both refuse it now: C hands it to Python, which says why."""
    assert run_c(driver, "open", cgroups_path, "x").startswith("-1 ")
    from conch.cgroups import cgroup_subpath
    from conch.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="hierarchy root"):
        cgroup_subpath(cgroups_path, "x")
