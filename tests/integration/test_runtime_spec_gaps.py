"""runtime-spec corners where conch-runtime once differed from runc (issue 16):

1. a container without a mount namespace of its own (the spec allows it);
2. ``hostname`` set in a UTS namespace joined by ``path``;
3. data options (``mode=755,size=1k``) next to ``rbind``: dropped, not refused;
4. poststart hooks run only after the user process has been exec'd;
5. a failing poststart (or poststop) hook is a warning, and the hooks after it still run.

1-3 compare conch with runc where runc is usable (runc behaves the same there); 4 and 5
are the spec's order and wording, which runc 1.1 does not follow, so they check conch
alone. Every test is leak-checked by the ``runtime``/``runtime_by_name`` fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

COMPARED = ("conch", "runc")


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def wait_for(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _no_mount_namespace(spec):
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "mount"]
    spec["linux"].pop("maskedPaths", None)
    spec["linux"].pop("readonlyPaths", None)


def _unshare_mount_available() -> str | None:
    if shutil.which("unshare") is None:
        return "util-linux unshare is not installed"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot make a private mount namespace here: {probe.stderr.strip()}"
    return None


# --- 1. no mount namespace -----------------------------------------------------------


@pytest.mark.parametrize("name", COMPARED)
def test_container_without_mount_namespace_runs(name, runtime_by_name, bundle):
    """Without a mount namespace the container's mounts are made in the runtime's own
    (runc's behaviour): the runtime runs inside a throwaway private mount namespace,
    so they vanish with it and the host's table is untouched."""
    why = _unshare_mount_available()
    if why:
        pytest.skip(why)
    rt = runtime_by_name(name)
    b = bundle(sh("echo pid=$$; test -e /proc/self/fd/0 && echo proc; "
                  "readlink /proc/1/ns/mnt >/dev/null && echo ok"), _no_mount_namespace)
    cid = rt.new_id()
    proc = subprocess.run(["unshare", "-m", "--propagation", "private",
                           *rt.cmd("run", "--bundle", b, cid)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout) == (0, "pid=1\nproc\nok\n"), proc.stderr
    rt.created.remove(cid)


@pytest.mark.parametrize("name", COMPARED)
def test_masked_paths_without_mount_namespace_refused_as_runc(name, runtime_by_name, bundle):
    rt = runtime_by_name(name)

    def edit(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != "mount"]

    b = bundle(["true"], edit)
    cid = rt.new_id()
    proc = rt.run(b, cid=cid)
    assert proc.returncode != 0
    assert "unable to restrict sys entries without a private MNT namespace" in proc.stderr
    rt.created.remove(cid)


# --- 2. hostname in a joined UTS namespace ---------------------------------------------


@pytest.fixture
def uts_holder():
    """A process in a UTS namespace of its own; yields its pid."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    holder = subprocess.Popen(["unshare", "--uts", "sleep", "120"], stdin=subprocess.DEVNULL)
    try:
        ours = os.readlink("/proc/self/ns/uts")

        def moved() -> bool:
            try:
                return (os.readlink(f"/proc/{holder.pid}/ns/uts") != ours
                        and Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep")
            except OSError:
                return False

        wait_for(moved, what="unshare --uts to exec sleep")
        yield holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.parametrize("name", COMPARED)
def test_hostname_set_in_joined_uts_namespace(name, runtime_by_name, bundle, uts_holder):
    rt = runtime_by_name(name)
    path = f"/proc/{uts_holder}/ns/uts"

    def join_uts(spec):
        for n in spec["linux"]["namespaces"]:
            if n["type"] == "uts":
                n["path"] = path

    b = bundle(["hostname"], join_uts, hostname=f"joined-{name}")
    cid = rt.new_id()
    proc = rt.run(b, cid=cid)
    assert (proc.returncode, proc.stdout) == (0, f"joined-{name}\n"), proc.stderr
    rt.created.remove(cid)
    # set in the joined namespace itself, not in a copy of it
    seen = subprocess.run(["nsenter", "-t", str(uts_holder), "-u", "hostname"],
                          capture_output=True, text=True, timeout=30)
    assert seen.stdout == f"joined-{name}\n", seen.stderr
    assert os.uname().nodename != f"joined-{name}"


@pytest.mark.parametrize("name", COMPARED)
def test_hostname_without_uts_namespace_refused_as_runc(name, runtime_by_name, bundle):
    rt = runtime_by_name(name)

    def no_uts(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "uts"]

    b = bundle(["true"], no_uts, hostname="nope")
    cid = rt.new_id()
    proc = rt.run(b, cid=cid)
    assert proc.returncode != 0
    assert "unable to set hostname without a private UTS namespace" in proc.stderr
    rt.created.remove(cid)


# --- 3. data options on a bind mount -----------------------------------------------------


@pytest.mark.parametrize("name", COMPARED)
def test_bind_mount_ignores_data_options(name, runtime_by_name, bundle, tmp_path):
    rt = runtime_by_name(name)
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("bound\n")

    def bind_with_data(spec):
        spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                               "options": ["rbind", "mode=755", "size=1k", "ro"]})

    b = bundle(sh("cat /data/file; touch /data/x 2>/dev/null || echo read-only"), bind_with_data)
    cid = rt.new_id()
    proc = rt.run(b, cid=cid)
    assert (proc.returncode, proc.stdout) == (0, "bound\nread-only\n"), proc.stderr
    rt.created.remove(cid)


# --- 4. poststart after the user process is exec'd ----------------------------------------

# A host-side hook that records what the container's pid is running when it is called.
_RECORD_EXE = ("import json, sys; st = json.load(sys.stdin); "
               "cmd = open(f\"/proc/{st['pid']}/cmdline\", 'rb').read(); "
               "open(sys.argv[1], 'a').write(cmd.split(b'\\0')[0].decode() + '\\n')")


def test_poststart_runs_after_the_process_is_execd(runtime_by_name, bundle, tmp_path):
    """startContainer (run by the init after start released it, before its execve)
    sleeps, so a poststart that ran at the release would see the runtime's interpreter
    still in the init's place; it must see the user's program."""
    rt = runtime_by_name("conch")
    record = tmp_path / "poststart.txt"

    def hooks(spec):
        spec["hooks"] = {
            "startContainer": [{"path": "/bin/sleep", "args": ["sleep", "1"]}],
            "poststart": [{"path": sys.executable,
                           "args": [sys.executable, "-c", _RECORD_EXE, str(record)],
                           "timeout": 30}],
        }

    b = bundle(["sleep", "60"], hooks)
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    rt("start", cid, check=True)  # returns once poststart has run
    assert record.read_text() == "sleep\n"
    rt("delete", "--force", cid, check=True)
    rt.created.remove(cid)


# --- 5. failing poststart / poststop hooks only warn ---------------------------------------


def test_failing_poststart_and_poststop_hooks_warn_and_the_rest_run(runtime_by_name, bundle,
                                                                    tmp_path):
    rt = runtime_by_name("conch")
    marks = tmp_path / "marks"
    marks.mkdir()

    def touch(name):
        return {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marks / name}"]}

    def hooks(spec):
        spec["hooks"] = {
            "poststart": [{"path": "/bin/false", "args": ["false"]}, touch("poststart-after"),
                          {"path": "/nonexistent/hook"}, touch("poststart-last")],
            "poststop": [{"path": "/bin/false", "args": ["false"]}, touch("poststop-after")],
        }

    b = bundle(["sleep", "60"], hooks)
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    started = rt("start", cid)
    assert started.returncode == 0, started.stderr
    assert "warning" in started.stderr and "poststart hook /bin/false" in started.stderr
    assert "/nonexistent/hook" in started.stderr
    assert (marks / "poststart-after").exists() and (marks / "poststart-last").exists()
    assert rt.state(cid)["status"] == "running"

    deleted = rt("delete", "--force", cid)
    assert deleted.returncode == 0, deleted.stderr
    rt.created.remove(cid)
    assert "warning" in deleted.stderr and "poststop hook /bin/false" in deleted.stderr
    assert (marks / "poststop-after").exists()


# --- the init forked straight from the runtime (no intermediate) joins a pid namespace ------


@pytest.mark.parametrize("name", COMPARED)
def test_pid_namespace_joined_by_path(name, runtime_by_name, bundle):
    """Without a user namespace conch forks the init itself, joining the pid namespace
    around the fork: the joined container's pid 1 must be the first container's."""
    rt = runtime_by_name(name)
    first = rt.new_id()
    rt("run", "--detach", "--bundle", bundle(["sleep", "60"]), first, check=True)
    pid = rt.state(first)["pid"]

    def join_pid(spec):
        for n in spec["linux"]["namespaces"]:
            if n["type"] == "pid":
                n["path"] = f"/proc/{pid}/ns/pid"

    b = bundle(sh("cat /proc/1/cmdline | tr '\\0' ' '; echo; echo self=$$"), join_pid)
    second = rt.new_id()
    proc = rt.run(b, cid=second)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "sleep 60 "
    assert proc.stdout.splitlines()[1] != "self=1"
    rt.created.remove(second)
    rt("kill", first, "KILL", check=True)
    rt.wait_status(first, "stopped")
    rt("delete", first, check=True)
    rt.created.remove(first)
