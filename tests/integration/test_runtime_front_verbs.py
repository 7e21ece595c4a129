"""``kill`` and ``delete`` done by conch-runtime's C front (shim/runtime/verbs.c) against
the Python runtime's (conch/runtime/commands.py cmd_kill, fastpath._delete_stopped).

The front does them for the common case only and execs Python for anything else; the
contract is the create path's: ``CONCH_RUNTIME_FRONT=0`` always runs Python,
``CONCH_RUNTIME_FRONT_DEBUG=1`` prints "conch-runtime front: kill in C" (or "delete in
C", or "python: ..."). Each test asserts which path ran, so a silent decline fails, and
that exit codes and words match Python's wherever Python is what answers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conch.testing.runtime_front import FRONT_LINE, env_for, front_binary_or_skip, split_front

pytestmark = pytest.mark.root

FRONT = FRONT_LINE


@pytest.fixture
def conch(runtime_by_name):
    return front_binary_or_skip(runtime_by_name("conch"))


def call(rt, path: str, *args) -> tuple[int, str, list[str]]:
    """(exit code, stderr without the front's lines, the front's lines)."""
    proc = rt(*args, env=env_for(path))
    front, rest = split_front(proc.stderr)
    return proc.returncode, rest, front


def started(rt, bundle, args=("sleep", "1000"), path: str = "front") -> str:
    b = bundle(list(args))
    cid = rt.new_id()
    assert call(rt, path, "create", "--bundle", b, cid)[0] == 0
    assert call(rt, path, "start", cid)[0] == 0
    return cid


def proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def wait(pred, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


# -- kill ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stop,cont", [("STOP", "CONT"), ("sigstop", "sigcont"),
                                       ("SIGSTOP", "SigCont"), ("19", "018")])
def test_kill_parses_signals_as_python_and_sends_them(stop, cont, conch, bundle):
    """pid 1 of a pid namespace takes SIGSTOP/SIGCONT from its parent namespace, whatever
    its handlers: the signal's effect is visible in /proc, so each spelling is checked for
    the signal it names, not only for an exit code."""
    cid = started(conch, bundle)
    pid = conch.state(cid)["pid"]
    assert call(conch, "front", "kill", cid, stop) == (0, "", [f"{FRONT}kill in C"])
    wait(lambda: proc_state(pid) == "T", "SIGSTOP did not stop the init")
    assert call(conch, "front", "kill", cid, cont) == (0, "", [f"{FRONT}kill in C"])
    wait(lambda: proc_state(pid) == "S", "SIGCONT did not resume the init")
    assert call(conch, "front", "kill", cid)[2] == [f"{FRONT}kill in C"]  # SIGTERM: ignored by pid 1
    assert call(conch, "front", "kill", cid, "KILL")[:2] == (0, "")
    wait(lambda: conch.state(cid)["status"] == "stopped", "SIGKILL did not kill the init")
    assert call(conch, "front", "delete", cid)[:2] == (0, "")


@pytest.mark.parametrize("signal", ["0", "65", "100", "1234", "SIGFOO", "SIG", "sig_dfl", "SIG_IGN",
                                    "-1", "rtmin+1", "TERM ", "ＴERM"])
def test_kill_refusals_are_pythons(signal, conch, bundle):
    cid = started(conch, bundle)
    want = call(conch, "python", "kill", cid, signal)
    got = call(conch, "front", "kill", cid, signal)
    assert got[:2] == want[:2] and want[0] != 0, (want, got)
    assert got[2] and got[2][0].startswith(f"{FRONT}python:"), got
    conch("delete", "--force", cid, check=True)


def test_kill_of_a_stopped_container_and_kill_all_are_pythons(conch, bundle):
    cid = started(conch, bundle, ("true",))
    wait(lambda: conch.state(cid)["status"] == "stopped", "true did not exit")
    want, got = call(conch, "python", "kill", cid, "KILL"), call(conch, "front", "kill", cid, "KILL")
    assert got[:2] == want[:2] and "is not running" in want[1], (want, got)
    assert got[2][0].startswith(f"{FRONT}python:")
    conch("delete", cid, check=True)
    cid = started(conch, bundle)
    rc, err, front = call(conch, "front", "kill", "--all", cid, "KILL")
    assert (rc, err) == (0, "") and front[0].startswith(f"{FRONT}python:"), (rc, err, front)
    wait(lambda: conch.state(cid)["status"] == "stopped", "kill --all did not kill")
    conch("delete", cid, check=True)


def test_kill_of_a_missing_or_bad_id_is_pythons(conch):
    for cid in ("nosuch", "../x", "a b"):
        want, got = call(conch, "python", "kill", cid), call(conch, "front", "kill", cid)
        assert got[:2] == want[:2] and want[0] != 0, (cid, want, got)


# -- delete -------------------------------------------------------------------------------

@pytest.mark.parametrize("created_by", ["front", "python"])
def test_delete_of_a_stopped_container_in_c(created_by, conch, bundle):
    """Records written by either path are read alike: the cgroup directories and the state
    directory go, and a second delete is Python's 'does not exist'."""
    b = bundle(["true"])
    cid = conch.new_id()
    assert call(conch, created_by, "create", "--bundle", b, cid)[0] == 0
    assert call(conch, created_by, "start", cid)[0] == 0
    wait(lambda: conch.state(cid)["status"] == "stopped", "true did not exit")
    cg = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    dirs = [d for d in Path("/sys/fs/cgroup").glob("*" + cg) if d.is_dir()]
    assert dirs
    assert call(conch, "front", "delete", cid) == (0, "", [f"{FRONT}delete in C"])
    assert not (conch.root / cid).exists()
    assert not [d for d in dirs if d.exists()]
    want, got = call(conch, "python", "delete", cid), call(conch, "front", "delete", cid)
    assert got[:2] == want[:2] and "does not exist" in want[1], (want, got)
    assert got[2][0].startswith(f"{FRONT}python:")
    assert call(conch, "front", "delete", "--force", cid)[:2] == (0, "")  # runc: a missing one is fine


def test_delete_of_a_live_container_is_pythons(conch, bundle):
    cid = started(conch, bundle)
    want, got = call(conch, "python", "delete", cid), call(conch, "front", "delete", cid)
    assert got[:2] == want[:2] and want[0] != 0 and "not stopped" in want[1], (want, got)
    assert got[2][0].startswith(f"{FRONT}python:")
    rc, err, front = call(conch, "front", "delete", "--force", cid)
    assert (rc, err) == (0, "") and front[0].startswith(f"{FRONT}python:"), (rc, err, front)
    assert not (conch.root / cid).exists()


def test_delete_with_poststop_hooks_or_leftovers_is_pythons(conch, bundle, tmp_path):
    out = tmp_path / "poststop.out"
    b = bundle(["true"], hooks={"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo ran >> {out}"]}]})
    cid = conch.new_id()
    assert call(conch, "front", "create", "--bundle", b, cid)[0] == 0
    assert call(conch, "front", "start", cid)[0] == 0
    wait(lambda: conch.state(cid)["status"] == "stopped", "true did not exit")
    rc, err, front = call(conch, "front", "delete", cid)
    assert (rc, err) == (0, "") and front[0].startswith(f"{FRONT}python:"), (rc, err, front)
    assert out.read_text() == "ran\n"
    # an init that died leaving a process behind in the cgroup: Python's delete kills it
    b = bundle(["sh", "-c", "sleep 1000 & exit 0"],  # no pid namespace: sleep outlives sh
               lambda s: s["linux"].__setitem__(
                   "namespaces", [n for n in s["linux"]["namespaces"] if n["type"] != "pid"]))
    cid = conch.new_id()
    assert call(conch, "front", "create", "--bundle", b, cid)[0] == 0
    assert call(conch, "front", "start", cid)[0] == 0
    wait(lambda: conch.state(cid)["status"] == "stopped", "sh did not exit")
    rc, err, front = call(conch, "front", "delete", cid)
    assert (rc, err) == (0, "") and front[0].startswith(f"{FRONT}python:"), (rc, err, front)
    assert not (conch.root / cid).exists()
