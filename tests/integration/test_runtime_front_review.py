"""Review findings on the C create/run path (shim/runtime/*.c, issue 16 point 6): each test
here shows one place where the C front is less safe than, or differs from, the Python
runtime (conch/runtime/, the reference). Each was xfail(strict=True) with the reason
until its fix landed (init.c fail/secure_join/sync/passwd, spec.c env/duplicate keys,
create.c undo with spec.c declining an existing cgroup); they now hold the fixes in place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conch.testing.bundles import make_bundle
from conch.testing.runtime_front import env_for, front_binary_or_skip

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
CG_ROOT = Path("/sys/fs/cgroup")


@pytest.fixture
def conch(runtime_by_name):
    return front_binary_or_skip(runtime_by_name("conch"))


def front_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("conch-runtime front: ")]


@pytest.fixture
def fortified_front(tmp_path, conch):
    """The front built from the repo's sources with _FORTIFY_SOURCE=3 (glibc checks every
    snprintf/vsnprintf against the real size of its buffer, aborting on an overflow that
    the Makefile's build lets through silently), beside a copy of the Python launcher."""
    d = tmp_path / "fortified"
    d.mkdir()
    sources = [str(REPO / "shim/conch-runtime.c")] + sorted(str(p) for p in (REPO / "shim/runtime").glob("*.c"))
    subprocess.run(["gcc", "-O2", "-D_FORTIFY_SOURCE=3", "-I", str(REPO / "shim/runtime"), "-o",
                    str(d / "conch-runtime"), *sources], check=True, capture_output=True)
    shutil.copy(Path(conch.binary).parent / "conch-runtime-py", d / "conch-runtime-py")
    return d / "conch-runtime"


def test_long_failing_mount_destination_does_not_overflow(conch, fortified_front, tmp_path):
    # components of 250 (under NAME_MAX) so secure_join gets far enough to fail on length
    dest = "/" + "/".join(["a" * 250] * 20)
    b = make_bundle(tmp_path / "b", ["true"], lambda s: s["mounts"].append(
        {"destination": dest, "type": "tmpfs", "source": "tmpfs"}))
    cid = f"rv-{uuid.uuid4().hex[:10]}"
    conch.created.append(cid)
    proc = subprocess.run([str(fortified_front), "--root", str(conch.root), "run", "--bundle", str(b), cid],
                          env=env_for("front"), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    assert "buffer overflow detected" not in proc.stderr
    front = front_lines(proc.stderr)
    assert len(front) == 1 and "init failed" in front[0], front


def test_c_only_failure_spares_a_joined_cgroups_processes(conch, tmp_path):
    name = f"rv-{uuid.uuid4().hex[:10]}"
    cgroups_path = f"/conch-test/{name}"
    hierarchy = next(p for p in (CG_ROOT / "pids", CG_ROOT / "unified") if (p / "cgroup.procs").exists())
    leaf = hierarchy / cgroups_path.lstrip("/")
    # 17 components of 250: resolved passes PATH_MAX in C; Python resolves it lexically
    # (they do not exist) and the 17 ".." bring it back to /tmp/x
    dest = "/" + "/".join(["b" * 250] * 17) + "/" + "../" * 17 + "tmp/x"
    assert len(dest) < 4096 + 500  # short enough for the message buffer: not the overflow above

    def edit(s):
        s["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs"})
        s["linux"]["cgroupsPath"] = cgroups_path

    alive = {}
    try:
        for path in ("python", "front"):
            leaf.mkdir(parents=True, exist_ok=True)
            sleeper = subprocess.Popen(["sleep", "120"])
            try:
                (leaf / "cgroup.procs").write_text(str(sleeper.pid))
                b = make_bundle(tmp_path / f"b-{path}", ["true"], edit)
                cid = f"rv-{uuid.uuid4().hex[:10]}"
                conch.created.append(cid)
                proc = conch("create", "--bundle", b, cid, env=env_for(path))
                assert proc.returncode == 0, proc.stderr[-2000:]
                time.sleep(0.2)
                alive[path] = sleeper.poll() is None
                conch("delete", "--force", cid, check=True)
            finally:
                sleeper.kill()
                sleeper.wait()
        assert alive == {"python": True, "front": True}
    finally:
        conch.cleanup()
        for d in CG_ROOT.glob("*" + cgroups_path):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _run_both(conch, b: Path) -> dict[str, tuple[int, str, list[str]]]:
    out = {}
    for path in ("python", "front"):
        cid = f"rv-{uuid.uuid4().hex[:10]}"
        conch.created.append(cid)
        proc = conch("run", "--bundle", b, cid, env=env_for(path))
        out[path] = (proc.returncode, proc.stdout, front_lines(proc.stderr))
    return out


def test_empty_env_entry_is_refused_as_python_refuses_it(conch, tmp_path):
    b = make_bundle(tmp_path / "b", ["true"], env=["", "PATH=/bin"])
    got = _run_both(conch, b)
    assert got["python"][0] != 0
    assert got["front"][0] == got["python"][0], got["front"]


def test_home_from_a_passwd_with_a_long_line(conch, tmp_path):
    b = make_bundle(tmp_path / "b", ["sh", "-c", "echo HOME=$HOME"], env=["PATH=/bin"])
    pw = b / "rootfs/etc/passwd"
    old = pw.read_text() if pw.exists() else "root:x:0:0:root:/root:/bin/sh\n"
    pw.write_text("x:" + "y" * 4093 + "evil:x:0:0::/evil:/bin/sh\n" + old)
    got = _run_both(conch, b)
    assert got["python"][:2] == (0, "HOME=/root\n")
    assert "run in C" in got["front"][2][0]
    assert got["front"][:2] == got["python"][:2]


def test_many_annotations_are_not_quadratic(conch, tmp_path):
    b = make_bundle(tmp_path / "b", ["true"], annotations={f"k{i}": "v" for i in range(100_000)})
    took = {}
    for path in ("python", "front"):
        cid = f"rv-{uuid.uuid4().hex[:10]}"
        conch.created.append(cid)
        start = time.monotonic()
        proc = conch("run", "--bundle", b, cid, env=env_for(path), timeout=120)
        took[path] = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr[-500:]
    assert took["front"] < 4 * took["python"] + 2, took


def test_seccomp_denying_sendto_is_not_a_c_only_failure(conch, tmp_path):
    def edit(s):
        s["process"]["noNewPrivileges"] = False
        s["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["sendto", "sendmsg"], "action": "SCMP_ACT_ERRNO"}]}

    b = make_bundle(tmp_path / "b", ["echo", "hi"], edit)
    got = _run_both(conch, b)
    assert got["python"][:2] == (0, "hi\n")
    assert got["front"][:2] == (0, "hi\n")
    assert "run in C" in got["front"][2][0], got["front"][2]


def test_image_symlink_with_a_long_component_is_resolved_as_python_does(conch, tmp_path):
    b = make_bundle(tmp_path / "b", ["sh", "-c", "grep -c ' /real ' /proc/self/mountinfo"],
                    lambda s: s["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}))
    os.symlink("a" * 300 + "/../real", b / "rootfs/data")
    got = _run_both(conch, b)
    assert got["python"][:2] == (0, "1\n")
    assert got["front"][:2] == (0, "1\n")
    assert "run in C" in got["front"][2][0], got["front"][2]


def test_masked_paths_refuse_an_image_dev_null_that_is_not_the_null_device(conch, tmp_path):
    """CVE-2025-31133's pattern: without a tmpfs on /dev, /dev/null is the image's own; a
    symlink there (to the container's hostname file, say) must not be bound writable onto
    the masked files. Both paths refuse the container in Python's words (C reaches the
    same check, fails its step, undoes and leaves the words to Python); the leak guard of
    runtime_by_name checks nothing is left."""
    def edit(s):
        s["mounts"] = [m for m in s["mounts"] if not m["destination"].startswith("/dev")]
        s["linux"]["maskedPaths"] = ["/proc/timer_list"]

    b = make_bundle(tmp_path / "b", ["cat", "/proc/timer_list"], edit)
    null = b / "rootfs/dev/null"
    null.parent.mkdir(exist_ok=True)
    if null.exists() or null.is_symlink():
        null.unlink()
    os.symlink("/proc/sys/kernel/hostname", null)
    hostname = Path("/proc/sys/kernel/hostname").read_text()
    words = "maskedPaths: /dev/null in the container is not the null device (1:3)"
    got = {}
    for path in ("python", "front"):
        cid = f"rv-{uuid.uuid4().hex[:10]}"
        conch.created.append(cid)
        proc = conch("run", "--bundle", b, cid, env=env_for(path))
        got[path] = proc
        assert proc.returncode != 0 and words in proc.stderr, (path, proc.stderr[-2000:])
        assert not (Path(conch.root) / cid).exists(), path
    front = front_lines(got["front"].stderr)
    assert front and "init failed: maskedPaths" in front[0] and words in front[0], front
    assert [ln for ln in got["python"].stderr.splitlines() if words in ln] == \
        [ln for ln in got["front"].stderr.splitlines() if words in ln and not ln.startswith("conch-runtime front: ")]
    assert Path("/proc/sys/kernel/hostname").read_text() == hostname


def test_a_sysctl_path_too_long_fails_rather_than_being_cut(conch, tmp_path):
    """init.c sysctls(): a key whose /proc/sys path passes PATH_MAX was cut to a shorter
    path (another key) silently; now the step fails (ENAMETOOLONG), C undoes, and Python
    reports its own failure to open it."""
    key = "net." + "a" * 5000
    b = make_bundle(tmp_path / "b", ["true"], lambda s: s["linux"].__setitem__("sysctl", {key: "1"}))
    got = _run_both(conch, b)
    assert got["python"][0] != 0
    assert got["front"][0] == got["python"][0]
    assert "init failed: sysctl" in got["front"][2][0], got["front"][2]


def test_pid_file_is_0644_whatever_the_umask(conch, tmp_path):
    """create._write_pid_file: O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0644 (under
    the caller's umask), renamed into place: both paths leave the same file, no temp."""
    b = make_bundle(tmp_path / "b", ["true"])
    modes = {}
    for path in ("python", "front"):
        cid = f"rv-{uuid.uuid4().hex[:10]}"
        conch.created.append(cid)
        pid_file = tmp_path / f"pid-{path}"
        proc = conch("create", "--bundle", b, "--pid-file", pid_file, cid, env=env_for(path),
                     preexec_fn=lambda: os.umask(0))
        assert proc.returncode == 0, proc.stderr[-2000:]
        if path == "front":
            assert front_lines(proc.stderr) == ["conch-runtime front: create in C"], proc.stderr
        modes[path] = (oct(pid_file.stat().st_mode & 0o7777), pid_file.read_text() == str(conch.state(cid)["pid"]))
        assert not list(tmp_path.glob(f"pid-{path}.*")), path
        conch("delete", "--force", cid, check=True)
    assert modes == {"python": ("0o644", True), "front": ("0o644", True)}


def test_many_env_entries_are_not_quadratic(conch, tmp_path):
    """init.c environment(): a repeated name was looked for among all earlier entries,
    O(n^2) (100k entries: C 17.7 s, Python 0.1 s); process.env_dict is a dict. The order
    and values are Python's: a name's first place, its last value. (busybox env prints
    them: its sh is itself slow with 100k variables.)"""
    env = [f"K{i}=v" for i in range(100_000)] + ["K5=last", "PATH=/bin", "K7=x", "K7="]
    b = make_bundle(tmp_path / "b", ["env"], env=env)
    took, out = {}, {}
    for path in ("python", "front"):
        cid = f"rv-{uuid.uuid4().hex[:10]}"
        conch.created.append(cid)
        start = time.monotonic()
        proc = conch("run", "--bundle", b, cid, env=env_for(path), timeout=120)
        took[path] = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr[-500:]
        out[path] = proc.stdout
        if path == "front":
            assert "run in C" in front_lines(proc.stderr)[0], proc.stderr[-500:]
    assert out["python"] == out["front"]
    lines = out["front"].splitlines()
    assert lines[:8] == ["K0=v", "K1=v", "K2=v", "K3=v", "K4=v", "K5=last", "K6=v", "K7="], lines[:8]
    assert len(lines) == 100_002 and lines[-2:] == ["PATH=/bin", "HOME=/root"], lines[-2:]
    assert took["front"] < 4 * took["python"] + 2, took
