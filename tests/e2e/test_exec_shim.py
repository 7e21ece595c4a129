"""Issue 15 item 8: ``exec`` runs through the container's shim, as containerd's does.

* while an exec'd process runs, no ``conch-runtime`` (Python) process exists for it and
  its parent is the container's shim — for a container started by a warm shim and by a
  cold one (another runtime name for the same conch-runtime);
* ``kill -9`` of conchd while an exec runs: the process keeps running as the shim's child,
  the shim reaps it when it exits (no zombie) and its exit code is in the shim's exec
  record; the restarted conchd forgets the exec (as dockerd does: 404, never Running),
  execs again through the adopted shim, and nothing leaks.

Both fail on the code before the change: the exec'd process was the child of a foreground
``conch-runtime exec`` that conchd ran (and that outlived a killed conchd).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conch.testing.daemon import BIN, Daemon, clean_after, daemon_fixture


# "conch-cold": the same conch-runtime under another name, so its containers start with
# a cold shim (the warm pool, asked for here, holds shims for the default runtime only)
daemon = daemon_fixture("module", extra_args=["--warm-runtime", "--add-runtime",
                                              f"conch-cold={BIN / 'conch-runtime'}"])


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def wait_for(pred, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (result := pred()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return result


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of a live or zombie process, None once it is gone (reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), fields[0]


def _ppid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _cmdlines() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                raw = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            out[int(name)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return out


def _find(start: str) -> list[int]:
    """Processes whose command line starts with ``start`` (not the CLI that asked), but
    not their children caught between fork and exec (a shell's, with its command line)."""
    found = [pid for pid, cmd in _cmdlines().items() if cmd.startswith(start)]
    return [pid for pid in found if (_stat(pid) or (0, ""))[0] not in found]


def _runtime_execs(d: Daemon, cid: str) -> list[str]:
    """conch-runtime processes of this daemon that are an exec in ``cid``."""
    return [cmd for cmd in _cmdlines().values()
            if "conch-runtime" in cmd and " exec " in f" {cmd} " and cid in cmd
            and str(d.dir) in cmd]


def _container(d: Daemon, cid: str) -> tuple[int, int]:
    """(init pid, shim pid): the shim is init's parent (a subreaper)."""
    state = json.loads(d.conch("inspect", cid, check=True).stdout)[0]["State"]
    return state["Pid"], _ppid(state["Pid"])


def _exec_cli(d: Daemon, cid: str, *cmd: str) -> subprocess.Popen:
    """`conch exec CID CMD...` left attached (its output pipes held by conchd)."""
    return subprocess.Popen([str(BIN / "conch"), "exec", cid, *cmd], env=d.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.mark.parametrize("runtime", ["conch", "conch-cold"])
def test_exec_is_the_shims_child_not_a_runtimes(d, runtime):
    if runtime == "conch":  # the pool refills in the background after each start
        wait_for(lambda: any("--warm" in cmd and str(d.dir) in cmd for cmd in _cmdlines().values()),
                 "no warm shim waits for the next start")
    cid = d.conch("run", "-d", "--runtime", runtime, "busybox", "sleep", "1000",
                  check=True).stdout.strip()
    init, shim = _container(d, cid)
    shim_cmd = _cmdlines()[shim]
    assert "conch-shim" in shim_cmd
    # the default runtime's containers come from a warm shim; the other's from a cold one
    assert ("--warm" in shim_cmd) == (runtime == "conch"), shim_cmd
    marker = f"sleep 3{os.getpid() % 1000:03d}"
    cli = _exec_cli(d, cid, *marker.split())
    try:
        (pid,) = wait_for(lambda: _find(marker), "the exec'd sleep did not start")
        assert _ppid(pid) == shim, (_ppid(pid), shim, _cmdlines().get(_ppid(pid)))
        assert _runtime_execs(d, cid) == []
        time.sleep(0.3)  # and it stays so (no runtime left waiting on it)
        assert _runtime_execs(d, cid) == [] and _ppid(pid) == shim
        # a second exec while the first runs: its output and exit code
        p = d.conch("exec", cid, "sh", "-c", "echo hi; exit 3")
        assert (p.returncode, p.stdout) == (3, "hi\n"), p
    finally:
        cli.kill()
        cli.communicate(timeout=30)
    assert _stat(init) is not None
    d.conch("rm", "-f", cid, check=True, timeout=60)
    # it died with the container's pid namespace and was reaped by the shim
    wait_for(lambda: _stat(pid) is None, "the exec'd sleep outlived its container")


def test_exec_survives_conchd_kill9_and_is_recorded_by_the_shim(d):
    cid = d.conch("run", "-d", "--name", "exec-k9", "busybox", "sleep", "1000",
                  check=True).stdout.strip()
    init, shim = _container(d, cid)
    marker = f"/go{os.getpid()}"
    # it writes all along: after conchd's death too (no SIGPIPE: the shim drains it)
    cli = _exec_cli(d, cid, "sh", "-c",
                    f"until [ -e {marker} ]; do echo tick; sleep 0.01; done; exit 7")
    api_exec = d.api.post(f"/containers/{cid}/exec", {"Cmd": ["true"]})["Id"]
    try:
        (pid,) = wait_for(lambda: _find(f"sh -c until [ -e {marker} ]"), "the exec did not start")
        d.kill9()
        cli.communicate(timeout=30)  # its connection went with conchd
        time.sleep(1.0)  # ~100 ticks written with nobody but the shim to read them
        assert _stat(pid) is not None and _stat(pid)[1] != "Z"
        assert _ppid(pid) == shim, "the exec'd process is not the shim's child"
        assert _runtime_execs(d, cid) == []
        rootfs = d.data_root / "containers" / cid / "bundle" / "rootfs"
        (rootfs / marker.lstrip("/")).touch()
        # the shim reaps it: /proc/<pid> goes (a zombie would stay)
        wait_for(lambda: _stat(pid) is None, "the exec'd process was not reaped")
        records = list((d.data_root / "containers" / cid / "execs").glob("*.exit.json"))
        assert len(records) == 1, records
        record = json.loads(records[0].read_text())
        assert record["exit_code"] == 7 and record["signal"] is None and record["pid"] == pid
        assert _stat(init) is not None  # the container runs on
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate(timeout=30)
        if d.proc is None:
            d.start()
    # the restarted conchd forgets execs (as dockerd): nothing claims Running
    gone = d.api.request("GET", f"/exec/{api_exec}/json", check=False)
    assert gone.status == 404, gone.status
    gone.close()
    assert json.loads(d.conch("inspect", cid, check=True).stdout)[0]["State"]["Running"]
    p = d.conch("exec", cid, "sh", "-c", "exit 4")  # through the adopted shim
    assert p.returncode == 4, p
    d.conch("rm", "-f", cid, check=True, timeout=60)
    wait_for(lambda: _stat(init) is None, "the container's init outlived rm")
    # the shim has exited (after the kill -9 its parent is the host's init, which may
    # be slow to reap it: a zombie is an exited shim)
    wait_for(lambda: _stat(shim) is None or _stat(shim)[1] == "Z", "the shim outlived rm")


def _health(d: Daemon, cid: str) -> dict:
    return json.loads(d.conch("inspect", cid, check=True).stdout)[0]["State"].get("Health") or {}


def test_health_probes_run_through_the_shim(d):
    """Health probes are execs too: the shim's children; their output and exit code are
    recorded; one past its timeout is killed itself (before, only the conch-runtime that
    ran it was killed, and the probe lived on as an orphan, one more per interval)."""
    cid = d.conch("run", "-d", "--health-cmd", "echo probe-out; echo probe-err >&2; exit 3",
                  "--health-interval", "1s", "--health-retries", "1", "busybox", "sleep", "1000",
                  check=True).stdout.strip()
    h = wait_for(lambda: (h := _health(d, cid)) and h.get("Status") == "unhealthy" and h,
                 "the failing probe did not make the container unhealthy")
    assert h["Log"][-1]["ExitCode"] == 3, h
    assert "probe-out" in h["Log"][-1]["Output"] and "probe-err" in h["Log"][-1]["Output"], h
    d.conch("rm", "-f", cid, check=True, timeout=60)

    marker = f"sleep 4{os.getpid() % 1000:03d}"
    cid = d.conch("run", "-d", "--health-cmd", marker, "--health-interval", "1s",
                  "--health-timeout", "1s", "busybox", "sleep", "1000", check=True).stdout.strip()
    _, shim = _container(d, cid)
    # a probe while it runs: the shim's child
    pid = wait_for(lambda: next(iter(_find(marker)), None), "no probe ran")
    stat = _stat(pid)
    assert stat is None or stat[0] == shim, (stat, shim)
    wait_for(lambda: sum("exceeded timeout" in e["Output"] for e in _health(d, cid).get("Log", ())) >= 2,
             "no two probes timed out", timeout=40)
    # each was killed at its timeout: at most the current one runs
    assert len(_find(marker)) <= 1, _find(marker)
    d.conch("rm", "-f", cid, check=True, timeout=60)
    wait_for(lambda: not _find(marker), "a probe outlived its container")


def _holds_a_pty_master(pid: int) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") in ("/dev/ptmx", "/dev/pts/ptmx")
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_tty_exec_survives_conchd_kill9(d):
    """A tty exec: conchd holds the pty master, and the shim a copy of it; after a kill -9
    of conchd the process gets no SIGHUP (exit 129 before) and what it writes is drained."""
    cid = d.conch("run", "-d", "busybox", "sleep", "1000", check=True).stdout.strip()
    init, shim = _container(d, cid)
    marker = f"/tgo{os.getpid()}"
    ex = d.api.post(f"/containers/{cid}/exec", {
        "Tty": True, "Cmd": ["sh", "-c", f"until [ -e {marker} ]; do echo tick; sleep 0.01; done; exit 7"]})["Id"]
    d.api.request("POST", f"/exec/{ex}/start", json_body={"Detach": True, "Tty": True}).close()
    try:
        (pid,) = wait_for(lambda: _find(f"sh -c until [ -e {marker} ]"), "the tty exec did not start")
        wait_for(lambda: _holds_a_pty_master(shim), "the shim was not given the pty master")
        d.kill9()
        time.sleep(1.0)
        assert _stat(pid) is not None and _stat(pid)[1] != "Z" and _ppid(pid) == shim
        rootfs = d.data_root / "containers" / cid / "bundle" / "rootfs"
        (rootfs / marker.lstrip("/")).touch()
        wait_for(lambda: _stat(pid) is None, "the tty exec was not reaped")
        (record,) = [json.loads(p.read_text()) for p in
                     (d.data_root / "containers" / cid / "execs").glob("*.exit.json")]
        assert record["exit_code"] == 7 and record["pid"] == pid, record
    finally:
        if d.proc is None:
            d.start()
    d.conch("rm", "-f", cid, check=True, timeout=60)
    wait_for(lambda: _stat(init) is None, "the container's init outlived rm")
