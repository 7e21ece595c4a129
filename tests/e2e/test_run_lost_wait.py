"""Issue 15 item 4 against a real conchd: conchd is killed (-9) while `conch run` waits
for its container; the CLI exits 125 with docker's "error waiting for container: ...",
never 0 or the container's status. conchd is started again and the container (alive
under its shim all along) removed, so nothing leaks. The fake-daemon cases (reset, in-band
error) are tests/unit/test_cli_lost_wait.py."""

from __future__ import annotations

import subprocess
import time

import pytest

from conch.testing.daemon import BIN, clean_after, daemon_fixture

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def test_run_whose_conchd_dies_exits_125(d):
    proc = subprocess.Popen([str(BIN / "conch"), "run", "--name", "lost-wait", "busybox", "sh",
                             "-c", "echo up; sleep 60; exit 56"], env=d.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "up\n"  # attached, started, waiting
        d.kill9()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 125, (proc.returncode, err)
        assert "error waiting for container: " in err and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if d.proc is None:
            d.start()
    deadline = time.monotonic() + 20
    while d.conch("rm", "-f", "lost-wait").returncode != 0:  # still running under its shim
        assert time.monotonic() < deadline, "could not remove the container"
        time.sleep(0.2)
