"""conch-runtime's C front (shim/conch-runtime.c): a plain exec of the Python runtime,
except that ``create`` and ``run`` first start the cgroup lock's grace period from a
grandchild that is never the runtime's own child (and then are done in C when the config
allows: tests/integration/test_runtime_front_create.py), and that ``state`` is answered
from the ``state.front`` file create leaves, without starting Python.

The grace period itself is the kernel's and is not asserted (whether a wait happens
depends on what else moved processes lately); the tests check what the front does:
arguments and exit codes pass through unchanged, a "0" is written to a cgroup.procs by
another process only for ``create``/``run``, and the Python runtime is left with no
child it did not make.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


@pytest.fixture
def front(runtime_by_name) -> Path:
    binary = Path(runtime_by_name("conch").binary)
    if not (binary.parent / "conch-runtime-py").exists():
        pytest.skip(f"{binary} is not the C front (no conch-runtime-py beside it): run `make setup`")
    return binary


def test_arguments_and_exit_codes_pass_through(tmp_path, front):
    script = front.parent / "conch-runtime-py"
    for args in (["--version"], ["--root", str(tmp_path), "state", "nosuch"],
                 ["--root", str(tmp_path), "--log-format", "json", "delete", "nosuch"],
                 ["--root", str(tmp_path), "frobnicate"]):
        via_front = subprocess.run([str(front), *args], capture_output=True, text=True, timeout=60)
        direct = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)
        assert (via_front.returncode, via_front.stdout, via_front.stderr) == \
            (direct.returncode, direct.stdout, direct.stderr), args


def _strace(tmp_path, args: list[str], env: dict | None = None) -> list[str]:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    out = tmp_path / "strace.txt"
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,openat,write,wait4",
                           "-o", str(out), *args], capture_output=True, text=True, timeout=120,
                          env=env)
    if proc.returncode != 0 and "PTRACE" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    return out.read_text().splitlines()


def _prearm_writers(lines: list[str], front_pid: str) -> set[str]:
    """Pids other than the front that wrote "0" to a cgroup.procs they had opened."""
    opened = {}  # pid -> fds of cgroup.procs
    pending = set()  # pids in an openat of a cgroup.procs that strace split in two lines
    writers = set()
    for line in lines:
        pid, _, call = line.partition(" ")
        call = call.strip()
        if call.startswith("openat(") and "/cgroup.procs" in call:
            if "<unfinished ...>" in call:
                pending.add(pid)
            elif "= " in call:
                opened.setdefault(pid, set()).add(call.rsplit("= ", 1)[1].split()[0])
        elif call.startswith("<... openat resumed>") and pid in pending:
            pending.discard(pid)
            if "= " in call:
                opened.setdefault(pid, set()).add(call.rsplit("= ", 1)[1].split()[0])
        elif call.startswith("write(") and call.split(",")[1].strip() == '"0"':
            fd = call[len("write("):].split(",")[0]
            if fd in opened.get(pid, ()) and pid != front_pid:
                writers.add(pid)
    return writers


@pytest.mark.parametrize("path", ["python", "c"])
def test_run_starts_the_grace_period_from_a_grandchild_first(tmp_path, bundle, front, path):
    """Before exec'ing the Python runtime, and before the C create/run path's own work
    (which must then not exec Python at all)."""
    root = tmp_path / "root"
    b = bundle(["true"])
    env = dict(os.environ, CONCH_RUNTIME_FRONT="0" if path == "python" else "1")
    lines = _strace(tmp_path, [str(front), "--root", str(root), "run", "--bundle", str(b), "front-run"], env)
    front_pid = lines[0].split()[0]
    execs = [i for i, l in enumerate(lines) if "execve(" in l and "conch-runtime-py" in l
             and l.split()[0] == front_pid]
    assert bool(execs) == (path == "python"), "conch-runtime-py exec'd" if execs else "not exec'd"
    writers = _prearm_writers(lines, front_pid)
    assert writers, "no process but the runtime moved itself into its own cgroup"
    # the grandchild was forked before the exec (it runs alongside the interpreter's
    # start-up; when its write happens is the scheduler's business, not asserted), and
    # the Python runtime never waits for it (it is not its child)
    for line in lines:
        if line.split()[0] == front_pid and line.split(" ", 1)[1].strip().startswith("wait4("):
            waited = line.rsplit("= ", 1)[-1].split()[0]
            assert waited not in writers, line


def test_other_verbs_are_a_plain_exec(tmp_path, front):
    lines = _strace(tmp_path, [str(front), "--root", str(tmp_path), "spec", "--bundle", str(tmp_path)])
    front_pid = lines[0].split()[0]
    assert {line.split()[0] for line in lines} == {front_pid}, "the front forked for `spec`"
    assert os.path.exists(tmp_path / "config.json")


def _execs_python(tmp_path, args: list[str]) -> bool:
    lines = _strace(tmp_path, args)
    return any("execve(" in line and "conch-runtime-py" in line for line in lines)


def test_state_is_answered_by_the_front_as_python_answers_it(tmp_path, bundle, front):
    """created, running, paused and stopped: the same bytes as the Python runtime's
    `state`, without starting Python; and Python answers once state.front is gone."""
    script = front.parent / "conch-runtime-py"
    root = tmp_path / "root"
    b = bundle(["sh", "-c", "read line"])  # runs until its stdin (a pipe of ours) closes
    cid = "front-state"

    def both(*args):
        via_front = subprocess.run([str(front), "--root", str(root), *args],
                                   capture_output=True, text=True, timeout=60)
        direct = subprocess.run([str(script), "--root", str(root), *args],
                                capture_output=True, text=True, timeout=60)
        assert via_front.returncode == direct.returncode == 0, (via_front.stderr, direct.stderr)
        assert via_front.stdout == direct.stdout
        return json.loads(direct.stdout)

    stdin_r, stdin_w = os.pipe()
    try:
        subprocess.run([str(front), "--root", str(root), "create", "--bundle", str(b), cid],
                       stdin=stdin_r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True, timeout=60)
        os.close(stdin_r)
        stdin_r = -1
        assert (root / cid / "state.front").exists()
        assert both("state", cid)["status"] == "created"
        assert not _execs_python(tmp_path, [str(front), "--root", str(root), "state", cid])
        subprocess.run([str(front), "--root", str(root), "start", cid], check=True, timeout=60)
        assert both("--log-format", "json", "state", cid)["status"] == "running"
        subprocess.run([str(front), "--root", str(root), "pause", cid], check=True, timeout=60)
        assert both("state", cid)["status"] == "paused"
        subprocess.run([str(front), "--root", str(root), "resume", cid], check=True, timeout=60)
        os.close(stdin_w)
        stdin_w = -1
        deadline = time.monotonic() + 30
        while _status(script, root, cid) != "stopped":  # not both(): it changes meanwhile
            assert time.monotonic() < deadline, "the container did not stop"
            time.sleep(0.05)
        assert both("state", cid)["status"] == "stopped"
        assert not _execs_python(tmp_path, [str(front), "--root", str(root), "state", cid])
        (root / cid / "state.front").unlink()
        assert _execs_python(tmp_path, [str(front), "--root", str(root), "state", cid])
        assert both("state", cid) == {"ociVersion": "1.2.0", "id": cid, "status": "stopped",
                                      "bundle": str(b), "pid": 0}
    finally:
        for fd in (stdin_r, stdin_w):
            if fd >= 0:
                os.close(fd)
        subprocess.run([str(front), "--root", str(root), "delete", "--force", cid],
                       capture_output=True, timeout=60)


def _status(binary: Path, root: Path, cid: str) -> str:
    out = subprocess.run([str(binary), "--root", str(root), "state", cid], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return json.loads(out)["status"]


def test_start_is_done_by_the_front_unless_there_are_poststart_hooks(tmp_path, bundle, front):
    """The record the front leaves is the Python runtime's with status "running"; with a
    poststart hook the Python runtime starts it (and runs the hook)."""
    root = tmp_path / "root"
    marker = tmp_path / "poststart-ran"
    plain = bundle(["true"])
    hooked = bundle(["true"], hooks={"poststart": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}]})
    for cid, b in (("plain", plain), ("hooked", hooked)):
        subprocess.run([str(front), "--root", str(root), "create", "--bundle", str(b), cid],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=60)
    try:
        created = json.loads((root / "plain" / "state.json").read_text())
        assert not _execs_python(tmp_path, [str(front), "--root", str(root), "start", "plain"])
        assert not (root / "plain" / "exec.fifo").exists()
        assert json.loads((root / "plain" / "state.json").read_text()) == dict(created, status="running")
        assert _execs_python(tmp_path, [str(front), "--root", str(root), "start", "hooked"])
        assert marker.exists()
        assert json.loads((root / "hooked" / "state.json").read_text())["status"] == "running"
    finally:
        for cid in ("plain", "hooked"):
            subprocess.run([str(front), "--root", str(root), "delete", "--force", cid],
                           capture_output=True, timeout=60)
