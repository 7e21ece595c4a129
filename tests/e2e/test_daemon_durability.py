"""Issue 3 "Proof": containers outlive conchd. ``kill -9`` the daemon while containers run
(and one exits), start it again on the same roots, and everything is found again: the
same processes, every log line, the exit code recorded while nobody was listening, and
the restart policy applied to what exited in between. Then nothing is leaked.
"""

from __future__ import annotations

import json
import os
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


def ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        pid = ppid(pid)
        out.append(pid)
    return out


def test_containers_survive_kill_9_of_conchd(d):
    d.conch("run", "-d", "--name", "du-log", "busybox", "sh", "-c",
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done", check=True)
    d.conch("run", "-d", "--name", "du-sleep", "busybox", "sleep", "1000", check=True)
    d.conch("run", "-d", "--name", "du-exit7", "busybox", "sh", "-c", "sleep 1.5; exit 7", check=True)
    d.conch("run", "-d", "--name", "du-always", "--restart", "always", "busybox", "sh", "-c",
            "echo started; sleep 1.5; exit 3", check=True)
    pids = {n: inspect(d, n)["State"]["Pid"] for n in ("du-log", "du-sleep")}
    old_daemon = d.pid
    for pid in pids.values():
        # the container's process is not conchd's child (nor any descendant of it): its
        # shim is, reparented away, so killing conchd cannot take the container down
        assert old_daemon not in ancestors(pid), (pid, ancestors(pid))
    time.sleep(0.5)

    d.kill9()
    time.sleep(3)  # du-exit7 and du-always exit meanwhile; du-log keeps logging
    for name, pid in pids.items():
        assert Path(f"/proc/{pid}").exists(), f"{name} ({pid}) died with conchd"
    d.start()

    ps = {line.split("\t")[0]: line.split("\t")[1]
          for line in d.conch("ps", "-a", "--format", "{{.Names}}\t{{.Status}}", check=True).stdout.splitlines()}
    assert ps["du-log"].startswith("Up") and ps["du-sleep"].startswith("Up"), ps
    assert ps["du-exit7"].startswith("Exited (7)"), ps
    for name, pid in pids.items():
        st = inspect(d, name)["State"]
        assert (st["Status"], st["Running"], st["Pid"]) == ("running", True, pid), (name, st)
        assert d.pid not in ancestors(pid)
    st = inspect(d, "du-exit7")["State"]
    assert (st["Status"], st["ExitCode"], st["Running"]) == ("exited", 7, False)
    assert st["FinishedAt"] > st["StartedAt"]
    assert d.conch("wait", "du-exit7").stdout == "7\n"

    # restart policy applied to the exit that happened while conchd was down
    def restarted():
        c = inspect(d, "du-always")
        return c["State"]["Running"] and c["RestartCount"] >= 1
    deadline = time.monotonic() + 10
    while not restarted():
        assert time.monotonic() < deadline, inspect(d, "du-always")["State"]
        time.sleep(0.1)
    assert d.conch("logs", "du-always").stdout.count("started\n") >= 2

    # every line, none lost while conchd was down, and still following new ones
    time.sleep(0.5)
    numbers = [int(x) for x in d.conch("logs", "du-log", check=True).stdout.split()]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) >= 40  # ~0.5 + 3 + restart + 0.5 seconds at 10 lines/s

    # the restarted daemon still controls them
    d.conch("stop", "-t", "1", "du-sleep", check=True)
    assert inspect(d, "du-sleep")["State"]["ExitCode"] == 137
    assert not Path(f"/proc/{pids['du-sleep']}").exists() or \
        Path(f"/proc/{pids['du-sleep']}/stat").read_text().split()[2] == "Z"
    d.conch("rm", "-f", "du-log", "du-sleep", "du-exit7", "du-always", check=True)
    assert not Path(f"/proc/{pids['du-log']}").exists()
    assert d.conch("ps", "-aq").stdout == ""


def test_sigterm_leaves_containers_running(d):
    d.conch("run", "-d", "--name", "du-term", "busybox", "sleep", "1000", check=True)
    pid = inspect(d, "du-term")["State"]["Pid"]
    assert d.stop() == 0
    assert Path(f"/proc/{pid}").exists()
    d.start()
    st = inspect(d, "du-term")["State"]
    assert (st["Status"], st["Pid"]) == ("running", pid)
    d.conch("rm", "-f", "du-term", check=True)


def test_sigterm_with_open_streams_stops_promptly(d):
    """dockerd closes streaming requests (events, logs -f) on shutdown; conchd must not
    wait for those clients to hang up first."""
    import subprocess
    from conch.testing.daemon import BIN

    d.conch("run", "-d", "--name", "du-stream", "busybox", "sleep", "1000", check=True)
    streams = [subprocess.Popen([str(BIN / "conch"), *args], env=d.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
               for args in (["events"], ["logs", "-f", "du-stream"])]
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        assert d.stop() == 0
        took = time.monotonic() - t0
        for s in streams:
            s.wait(timeout=5)  # the clients saw the end of their streams
        assert took < 2, f"conchd took {took:.1f}s to stop with streaming clients attached"
    finally:
        for s in streams:
            if s.poll() is None:
                s.kill()
                s.wait()
        if d.proc is None:
            d.start()
    d.conch("rm", "-f", "du-stream", check=True)


def test_restart_policies_on_daemon_restart(d):
    """docker: at daemon start, ``always`` containers are started even if they were
    stopped by hand; ``unless-stopped`` and ``no`` ones stopped by hand stay stopped."""
    for name, policy in (("du-p-always", "always"), ("du-p-unless", "unless-stopped"),
                         ("du-p-no", "no")):
        d.conch("run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "1000", check=True)
        d.conch("stop", "-t", "0", name, check=True)
    d.kill9()
    d.start()
    deadline = time.monotonic() + 10
    while inspect(d, "du-p-always")["State"]["Status"] != "running":
        assert time.monotonic() < deadline, inspect(d, "du-p-always")["State"]
        time.sleep(0.1)
    time.sleep(0.5)
    assert inspect(d, "du-p-unless")["State"]["Status"] == "exited"
    assert inspect(d, "du-p-no")["State"]["Status"] == "exited"
    d.conch("rm", "-f", "du-p-always", "du-p-unless", "du-p-no", check=True)


def test_files_of_a_half_removed_container_go_at_restart(d):
    """remove() deletes the record before the files (so `run --rm` answers sooner): a
    crash in between leaves a container directory and a snapshot with no record, which
    the next conchd deletes."""
    snapshots = d.data_root / "snapshots" / "snapshots"
    before = set(snapshots.iterdir())
    cid = d.conch("create", "busybox", "true", check=True).stdout.strip()
    cdir = d.data_root / "containers" / cid
    assert set(snapshots.iterdir()) - before  # its active snapshot
    assert cdir.is_dir()
    d.kill9()
    # what a crash between "record deleted" and "files deleted" leaves
    import sqlite3

    with sqlite3.connect(d.data_root / "metadata.db") as db:
        db.execute("delete from containers where id = ?", (cid,))
    d.start()
    assert not cdir.exists()
    assert d.conch("inspect", cid).returncode != 0
    assert set(snapshots.iterdir()) == before


def test_build_and_unpack_leftovers_go_at_restart(d):
    """A crash in a build's COPY step leaves its scratch root mounted under the exec root
    and a ``build-*`` snapshot; a crash mid-pull leaves an extraction's scratch directory
    with no snapshot row. The next conchd removes all three."""
    from conch.kernel import mount as kmount
    from conch.snapshots.overlay import OverlaySnapshotter

    snapshots = d.data_root / "snapshots" / "snapshots"
    before = set(snapshots.iterdir())
    d.kill9()
    sn = OverlaySnapshotter(d.data_root / "snapshots")
    try:
        sn.prepare("build-0123456789abcdef01234567", None)
        scratch = sn.scratch()
        (scratch / "half-extracted").write_text("x")
    finally:
        sn.close()
    root = d.exec_root / "build" / "root-crashed"
    root.mkdir(parents=True)
    kmount.mount("tmpfs", root, "tmpfs", 0, None)
    try:
        d.start()
        assert not root.exists() and not os.path.ismount(root)
        assert set(snapshots.iterdir()) == before
        sn = OverlaySnapshotter(d.data_root / "snapshots")
        try:
            assert not [i.key for i in sn.walk() if i.key.startswith("build-")]
        finally:
            sn.close()
    finally:
        if os.path.ismount(root):
            kmount.umount(root, kmount.MNT_DETACH)
