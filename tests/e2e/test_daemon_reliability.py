"""conchd's reliability defects of issue 15, each against a real private conchd: an empty
or unreadable exit record (what a full disk left) is "exit status unknown", never a
container stuck "running" with a dead pid nor a conchd that will not start.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from conch.testing.daemon import Daemon, clean_after, daemon_fixture

daemon = daemon_fixture("module")


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


def test_empty_exit_record_found_at_start_is_exit_unknown(d):
    """The container exited while conchd was down and its exit record is empty (a full
    disk under the old shim): conchd starts, the container is exited with a clear
    State.Error, and kill says it is not running."""
    cid = d.conch("run", "-d", "--name", "rel-empty", "busybox", "sleep", "1000",
                  check=True).stdout.strip()
    pid = inspect(d, cid)["State"]["Pid"]
    exit_file = d.data_root / "containers" / cid / "exit.json"
    d.kill9()
    os.kill(pid, signal.SIGKILL)
    wait_for(exit_file.exists, "the shim wrote no exit record")
    exit_file.write_text("")
    d.start()
    st = inspect(d, cid)["State"]
    assert (st["Status"], st["Running"], st["Pid"], st["ExitCode"]) == ("exited", False, 0, 137), st
    assert "exit status unknown" in st["Error"] and "corrupt" in st["Error"], st["Error"]
    kill = d.conch("kill", cid)
    assert kill.returncode == 1 and "is not running" in kill.stderr, (kill.returncode, kill.stderr)
    d.conch("rm", cid, check=True)


def test_unreadable_exit_record_while_running_is_exit_unknown(d):
    """The monitor of a live conchd meets an unreadable record (here a directory where the
    record goes, so the shim cannot write it): the container ends exited with the reason,
    not "running" with a dead pid."""
    cid = d.conch("run", "-d", "--name", "rel-unreadable", "busybox", "sleep", "1000",
                  check=True).stdout.strip()
    pid = inspect(d, cid)["State"]["Pid"]
    (d.data_root / "containers" / cid / "exit.json").mkdir()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: inspect(d, cid)["State"]["Status"] != "running",
             "the container still shows running after its process died")
    st = inspect(d, cid)["State"]
    assert (st["Status"], st["Running"], st["ExitCode"]) == ("exited", False, 137), st
    assert "exit status unknown" in st["Error"], st["Error"]
    assert d.conch("wait", cid, timeout=30).stdout == "137\n"
    kill = d.conch("kill", cid)
    assert kill.returncode == 1 and "is not running" in kill.stderr, (kill.returncode, kill.stderr)
    d.conch("rm", cid, check=True)
