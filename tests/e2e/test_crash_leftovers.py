"""Issue 15 item 5, crash leftovers, each against a real private conchd:

* a ``run --rm`` container left Created when conchd died between create and start is
  removed at the next start, as dockerd's restore removes AutoRemove containers that are
  not running (a container without --rm stays);
* the socket of a shim killed with SIGKILL (it cannot unlink it) goes at ``rm``;
* a warm shim and its waiting runtime are gone once conchd's stop has returned.
"""

from __future__ import annotations

import json
import os
import signal
import time

from conch.testing.daemon import Daemon, clean_after, daemon_fixture

import pytest

daemon = daemon_fixture("module", extra_args=["--warm-runtime"])  # test_warm_shim_exits_with_conchd
# a daemon of its own for the test that rewrites a record behind conchd's back
own_daemon = daemon_fixture("function")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def inspect(d: Daemon, name: str) -> dict:
    return json.loads(d.conch("inspect", name, check=True).stdout)[0]


def wait_for(pred, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, command line) of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out[int(name)] = (ppid, cmd)
    return out


def _warm(d: Daemon) -> set[int]:
    """This daemon's warm shims (named by its runtime root) and their runtimes."""
    procs = _procs()
    shims = {p for p, (_, cmd) in procs.items() if "--warm" in cmd and str(d.dir) in cmd}
    return shims | {p for p, (ppid, _) in procs.items() if ppid in shims}


def test_run_rm_left_created_is_removed_at_start(d):
    """conchd died between `run --rm`'s create and its start: the Created --rm container
    goes at the next start; a plain Created one stays."""
    rm = d.conch("create", "--rm", "--name", "left-rm", "busybox", "true", check=True).stdout.strip()
    keep = d.conch("create", "--name", "left-keep", "busybox", "true", check=True).stdout.strip()
    d.kill9()
    d.start()
    gone = d.conch("inspect", rm)
    assert gone.returncode == 1 and "No such" in gone.stderr, (gone.returncode, gone.stdout[:300])
    assert not (d.data_root / "containers" / rm).exists()
    assert inspect(d, keep)["State"]["Status"] == "created"
    d.conch("rm", keep, check=True)


def test_killed_shim_socket_goes_at_rm(d):
    cid = d.conch("run", "-d", "--name", "left-sock", "busybox", "sleep", "1000",
                  check=True).stdout.strip()
    sock = d.exec_root / "shims" / f"{cid[:32]}.sock"
    assert sock.exists()
    # the shim is the init's parent (a subreaper; a warm one keeps its --warm argv)
    shim = _procs()[inspect(d, cid)["State"]["Pid"]][0]
    cmd = _procs().get(shim, (0, ""))[1]
    assert "conch-shim" in cmd, cmd
    os.kill(shim, signal.SIGKILL)  # it cannot unlink its socket now
    wait_for(lambda: "conch-shim" not in _procs().get(shim, (0, ""))[1],
             "the killed shim is still there")
    assert sock.exists()
    d.conch("rm", "-f", cid, check=True, timeout=60)
    assert not sock.exists(), "the killed shim's socket outlived its container"


def test_warm_shim_exits_with_conchd(d):
    """The warm shim and its runtime are gone when conchd's stop returns, not later."""
    d.conch("run", "--rm", "busybox", "true", check=True)  # a start, then a refill
    wait_for(lambda: len(_warm(d)) >= 2, "no warm shim with its runtime came up")
    try:
        assert d.stop() == 0
        left = _warm(d)
        assert not left, f"warm shim/runtime alive after conchd stopped: {left}"
    finally:
        for pid in _warm(d):  # never leak them into the next test
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        d.start()


def test_start_interrupted_after_the_process_ran_is_adopted(own_daemon):
    """conchd died after the runtime started a container's process but before its record
    said running (the window the fault-injection test found): the restarted conchd finds the
    recorded shim, asks the runtime, and adopts the process as running. Before the fix the
    container stayed 'created' and a second start ran its command twice.

    The window is recreated exactly by editing the record of a killed conchd back to what
    it held there: status 'created', the shim already named."""
    import sqlite3

    d = own_daemon
    cid = d.conch("run", "-d", "--name", "half-started", "busybox", "sh", "-c",
                  "echo ran; exec sleep 300", check=True).stdout.strip()
    wait_for(lambda: "ran" in d.conch("logs", cid).stdout, "the first output")
    pid = inspect(d, cid)["State"]["Pid"]
    d.kill9()
    db = sqlite3.connect(d.data_root / "metadata.db")
    try:
        (raw,) = db.execute("SELECT record FROM containers WHERE id = ?", (cid,)).fetchone()
        record = json.loads(raw)
        assert record["shim_pid"], "the record names its shim"
        record["state"] = {**record["state"], "status": "created", "pid": 0}
        db.execute("UPDATE containers SET record = ? WHERE id = ?", (json.dumps(record), cid))
        db.commit()
    finally:
        db.close()
    d.start()
    state = inspect(d, cid)["State"]
    assert (state["Status"], state["Pid"]) == ("running", pid), state
    d.conch("start", cid, check=True)  # already running: nothing runs a second time
    assert d.conch("logs", cid).stdout == "ran\n"
    d.conch("rm", "-f", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}")
