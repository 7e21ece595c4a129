"""conchd's reliability defects of issue 15, each against a real private conchd: an empty
or unreadable exit record (what a full disk left) is "exit status unknown", never a
container stuck "running" with a dead pid nor a conchd that will not start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
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


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _table_exists(name: str) -> bool:
    return subprocess.run(["nft", "list", "table", "ip", name], capture_output=True,
                          timeout=30).returncode == 0


@pytest.mark.parametrize("shared", ["bridge", "nft_table", "bip"])
def test_second_daemon_sharing_a_kernel_object_is_refused(d, shared):
    """Two daemons on one host (issue 15 item 6): one that would share the first's default
    bridge, its subnet or its nft table is refused at start, naming the flags to change,
    and the first keeps its bridge and table (the old second daemon started, and its stop
    deleted them under the first)."""
    flag = {"bridge": "--bridge-name", "nft_table": "--nft-table", "bip": "--bip"}[shared]
    other = Daemon()
    setattr(other, shared, getattr(d, shared))
    try:
        with pytest.raises(RuntimeError) as err:
            other.start()
        msg = str(err.value)
        assert "conchd exited" in msg and f"({flag})" in msg, msg
        assert "give this daemon its own --bridge-name, --bip and --nft-table" in msg, msg
        assert f"pid {d.pid}" in msg, msg
    finally:
        other.close()
    assert _link_exists(d.bridge) and _table_exists(d.nft_table)
    assert d.conch("run", "--rm", "busybox", "true").returncode == 0


def test_daemons_side_by_side_leave_each_other_alone(d):
    """A second daemon on its own objects starts, serves, stops and removes only its own
    bridge and table; its lock files go with it."""
    other = Daemon()
    try:
        other.start()
        assert _link_exists(other.bridge) and _table_exists(other.nft_table)
        locks = sorted(p.name for p in Path("/run/conch/locks").iterdir())
        assert f"bridge-{other.bridge}.lock" in locks and f"nft-{other.nft_table}.lock" in locks
    finally:
        other.close()
    assert not _link_exists(other.bridge) and not _table_exists(other.nft_table)
    assert not any(Path("/run/conch/locks").glob(f"*{other.bridge}*"))
    assert not (Path("/run/conch/locks") / f"nft-{other.nft_table}.lock").exists()
    assert _link_exists(d.bridge) and _table_exists(d.nft_table)
    assert d.conch("run", "--rm", "busybox", "true").returncode == 0


def test_nft_keyword_table_name_is_refused_clearly(d):
    """`--nft-table ct` (an nft keyword; nft 1.0 takes no quoted table names) was nft's
    syntax error at start; now it is refused naming the flag, leaving nothing behind."""
    other = Daemon()
    other.nft_table = "ct"
    try:
        with pytest.raises(RuntimeError) as err:
            other.start()
        msg = str(err.value)
        assert "invalid nftables table name 'ct': nft reads it as a keyword" in msg, msg
        assert "--nft-table" in msg and "syntax error" not in msg, msg
    finally:
        other.close()
    assert not _link_exists(other.bridge)
    assert not (Path("/run/conch/locks") / "nft-ct.lock").exists()


@pytest.fixture
def full_disk_daemon():
    """A conchd whose data root is a small tmpfs (busybox imported), unmounted after."""
    other = Daemon()
    other.data_root.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(other.data_root)],
                   check=True)
    try:
        other.start()
        other.import_busybox()
        yield other
    finally:
        # a failed test leaves the disk full: free it, so that close() can remove all
        # (kill, unmount the rootfs: overlayfs pins the upper files, then delete)
        for cid in other.container_ids():
            pid = other.conch("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
            if pid.isdigit() and int(pid) > 0:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            rootfs = other.data_root / "containers" / cid / "bundle" / "rootfs"
            wait_for(lambda: not Path(f"/proc/{pid}").exists() if pid.isdigit() else True,
                     "the container outlived SIGKILL", timeout=10)
            if os.path.ismount(rootfs):
                subprocess.run(["umount", "-l", str(rootfs)], check=False)
        for fill in (other.data_root / "snapshots" / "snapshots").glob("*/fs/fill"):
            fill.unlink()
        try:
            if other.proc is not None:
                other.rm_all()
                other.stop()
        finally:
            if os.path.ismount(other.data_root):  # ours: not a leak of conchd's
                subprocess.run(["umount", str(other.data_root)], check=False)
            other.close()


def test_rm_f_frees_a_full_disk(full_disk_daemon):
    """Issue 15 item 2: the container that filled the data root can be removed through
    the API (was: 'database or disk is full'), and the daemon works afterwards."""
    d = full_disk_daemon
    cid = d.conch("run", "-d", "busybox", "sh", "-c",
                  "dd if=/dev/zero of=/fill bs=1M; sleep 1000", check=True).stdout.strip()

    def full() -> bool:
        st = os.statvfs(d.data_root)
        return st.f_bavail * st.f_frsize < 256 << 10
    wait_for(full, "the container did not fill the data root", timeout=60)
    rm = d.conch("rm", "-f", cid, timeout=60)
    assert rm.returncode == 0, rm.stderr
    assert d.conch("ps", "-aq").stdout == ""
    assert not full()
    assert d.conch("run", "--rm", "busybox", "echo", "ok", check=True).stdout == "ok\n"


def test_a_full_data_root_end_to_end(full_disk_daemon, tmp_path):
    """Issue 15 item 1 on a real full disk (48 MiB tmpfs data root), not a faked record:
    while the disk is full a container's exit is still recorded (the shim reserved its
    record at start), a build fails with an error instead of hanging, and conchd stops
    and starts again; once space is freed everything works. Prints its figures."""
    d = full_disk_daemon
    checks = 0

    def check(ok: bool, what: str) -> None:
        nonlocal checks
        checks += 1
        assert ok, what

    sleeper = d.conch("run", "-d", "--name", "sleeper", "busybox", "sleep", "1000",
                      check=True).stdout.strip()
    filler = d.conch("run", "-d", "--name", "filler", "busybox", "sh", "-c",
                     "dd if=/dev/zero of=/fill bs=1M; sleep 1000", check=True).stdout.strip()

    def full() -> bool:
        st = os.statvfs(d.data_root)
        return st.f_bavail * st.f_frsize < 256 << 10
    wait_for(full, "the container did not fill the data root", timeout=60)

    # an exit on a full disk: recorded, with its real code, not "running" with a dead pid
    stop = d.conch("stop", "-t", "1", "sleeper", timeout=60)
    check(stop.returncode == 0, f"stop on a full disk: {stop.stderr}")
    state = inspect(d, "sleeper")["State"]
    check(state["Status"] == "exited" and not state["Running"], f"sleeper: {state}")
    check(state["ExitCode"] == 137, f"sleeper's exit code: {state}")  # sleep ignores TERM
    check(d.conch("wait", "sleeper", timeout=30).stdout.strip() == "137", "wait on a full disk")

    # a build on a full disk ends with an error (it hung before)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=64\n")
    build = d.conch("build", "-q", "-t", "full:x", str(ctx), timeout=60)
    check(build.returncode != 0 and build.stderr.strip() != "", f"build: {build.stdout}{build.stderr}")

    # conchd stops and starts again on a full disk, and finds both containers as they are
    d.stop()
    d.start()
    check(inspect(d, "sleeper")["State"]["ExitCode"] == 137, "sleeper after the restart")
    check(inspect(d, "filler")["State"]["Running"], "filler after the restart")

    # space freed through the API: everything works again
    rm = d.conch("rm", "-f", filler, timeout=60)
    check(rm.returncode == 0, rm.stderr)
    check(not full(), "rm -f did not free the disk")
    check(d.conch("run", "--rm", "busybox", "echo", "ok", check=True).stdout == "ok\n", "run")
    check(d.conch("start", "sleeper", timeout=60).returncode == 0, "restarting the exited one")
    check(inspect(d, "sleeper")["State"]["Running"], "sleeper runs again")
    d.conch("rm", "-f", sleeper, check=True)
    print(f"\nfull disk: 48 MiB tmpfs data root, 1 restart on a full disk, {checks} checks, "
          f"0 violations")
