"""Issue 3 "Proof": the container lifecycle through the real ``conch`` CLI -> a private
conchd (conch.testing.daemon) -> conch-runtime -> the kernel.

One daemon per module (busybox:latest imported once); after every test its containers
are removed and the host is checked for leaked mounts, cgroups and processes.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conch.testing.daemon import BIN, DOCKER, Daemon, clean_after, daemon_fixture

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


# -- helpers ----------------------------------------------------------------------------
def inspect(d: Daemon, name: str) -> dict:
    p = d.conch("inspect", name, check=True)
    data = json.loads(p.stdout)
    assert isinstance(data, list) and len(data) == 1, p.stdout
    return data[0]


def state(d: Daemon, name: str) -> dict:
    return inspect(d, name)["State"]


def wait_for(pred, timeout: float = 10, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_out(d: Daemon, *args, **kw) -> str:
    """``conch run --rm ARGS`` that must succeed; its stdout."""
    return d.conch("run", "--rm", *args, check=True, **kw).stdout


class Pty:
    """A command on a fresh pty: the controlling terminal the CLI sees is real."""

    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: exec straight away (no Python left running here)
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.buf = b""

    def expect(self, pattern: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.buf):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in pty output {self.buf!r}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed its side
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"pty closed before {pattern!r}; got {self.buf!r}")
                self.buf += chunk
        return self.buf

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while True:
            # keep draining so the child never blocks on a full pty
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    self.buf += os.read(self.fd, 4096)
                except OSError:
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                os.close(self.fd)
                raise AssertionError(f"pty child did not exit; output {self.buf!r}")


# -- run ------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,code", [
    (["sh", "-c", "exit 0"], 0),
    (["sh", "-c", "exit 3"], 3),
    (["nope-not-a-command"], 127),
    (["/etc/passwd"], 126),  # exists, not executable
])
def test_run_exit_codes(d, argv, code):
    p = d.conch("run", "--rm", "busybox", *argv)
    assert p.returncode == code, p.stderr


def test_run_125_on_daemon_errors(d):
    assert d.conch("run", "--rm", "--no-such-flag", "busybox").returncode == 125
    p = d.conch("run", "--rm", "no-such-image:nope", "true")
    assert p.returncode == 125, p.stderr


def test_run_output_split_between_stdout_and_stderr(d):
    p = d.conch("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 2")
    assert (p.returncode, p.stdout, p.stderr) == (2, "out\n", "err\n")


def test_run_detached_prints_id_and_rm_removes(d):
    cid = d.conch("run", "-d", "--name", "lc-det", "busybox", "sleep", "100", check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert state(d, "lc-det")["Running"] is True
    assert inspect(d, cid[:12])["Name"] == "/lc-det"

    d.conch("run", "--rm", "--name", "lc-rm", "busybox", "true", check=True)
    assert d.conch("inspect", "lc-rm").returncode != 0
    # --rm with -d: removed once it exits by itself
    d.conch("run", "-d", "--rm", "--name", "lc-drm", "busybox", "sh", "-c", "sleep 0.3", check=True)
    wait_for(lambda: d.conch("inspect", "lc-drm").returncode != 0, what="lc-drm removed")


def test_rm_f_of_a_missing_container_is_no_failure(d):
    """docker/cli: with -f, "No such container" goes to stderr but the status stays 0, so
    `rm -f` of a running --rm container (which may go by itself first) never fails; an
    existing name is still echoed, and without -f a missing one is exit 1."""
    d.conch("run", "-d", "--rm", "--name", "lc-rmf", "busybox", "sleep", "100", check=True)
    p = d.conch("rm", "-f", "lc-rmf", "lc-nosuch")
    assert p.returncode == 0 and "No such container: lc-nosuch" in p.stderr
    assert p.stdout.split() == ["lc-rmf"] or "No such container" in p.stderr
    wait_for(lambda: d.conch("inspect", "lc-rmf").returncode != 0, what="lc-rmf removed")
    assert d.conch("rm", "lc-nosuch").returncode == 1


def test_run_stdin_piped(d):
    p = d.conch("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; exit 4", input="piped\n")
    assert (p.returncode, p.stdout) == (4, "PIPED\n")


def test_run_it_in_a_real_pty(d):
    t = Pty([str(BIN / "conch"), "run", "-it", "--rm", "busybox", "sh"], d.env)
    t.expect(rb"# ")
    t.send(b"tty\n")
    t.expect(rb"/dev/pts/0")
    t.send(b"echo typed-$((40+2))\n")
    t.expect(rb"echo typed-\$\(\(40\+2\)\)")  # the terminal echoed what we typed
    t.expect(rb"typed-42")
    t.send(b"exit 5\n")
    assert t.wait() == 5, t.buf


def test_run_t_without_i_still_has_a_tty(d):
    t = Pty([str(BIN / "conch"), "run", "-t", "--rm", "busybox", "sh", "-c", "tty; exit 6"], d.env)
    t.expect(rb"/dev/pts/0")
    assert t.wait() == 6


# -- exec -----------------------------------------------------------------------------
def test_exec_options(d):
    d.conch("run", "-d", "--name", "lc-exec", "busybox", "sleep", "100", check=True)
    p = d.conch("exec", "-i", "lc-exec", "sh", "-c", "cat; echo done", input="from stdin\n")
    assert (p.returncode, p.stdout) == (0, "from stdin\ndone\n")
    assert d.conch("exec", "-e", "FOO=bar baz", "lc-exec", "sh", "-c", 'echo "$FOO"').stdout == "bar baz\n"
    assert d.conch("exec", "-w", "/tmp", "lc-exec", "pwd").stdout == "/tmp\n"
    assert d.conch("exec", "-u", "1000", "lc-exec", "id", "-u").stdout == "1000\n"
    assert d.conch("exec", "-u", "1000:1001", "lc-exec", "id", "-g").stdout == "1001\n"
    p = d.conch("exec", "lc-exec", "sh", "-c", "exit 9")
    assert p.returncode == 9


def test_exec_missing_command_exit_code(d):
    # dockerd records 126 (older) or 127 (translateContainerdStartErr) for a failed exec
    # start, and the CLI exits with it; never 1.
    d.conch("run", "-d", "--name", "lc-exec127", "busybox", "sleep", "100", check=True)
    p = d.conch("exec", "lc-exec127", "nope-not-a-command")
    assert p.returncode in (126, 127), (p.returncode, p.stderr)


def test_exec_it_in_a_real_pty(d):
    d.conch("run", "-d", "--name", "lc-execit", "busybox", "sleep", "100", check=True)
    t = Pty([str(BIN / "conch"), "exec", "-it", "lc-execit", "sh"], d.env)
    t.expect(rb"# ")
    t.send(b"tty; exit 3\n")
    t.expect(rb"/dev/pts/\d+")
    assert t.wait() == 3


def _set_size(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.mark.parametrize("cli", ["conch", "docker"])
def test_exec_it_follows_the_terminal_size(d, cli):
    """The exec's pty has the client terminal's size at start and after a resize
    (SIGWINCH -> POST /exec/{id}/resize -> TIOCSWINSZ on the pty conchd holds)."""
    name = f"lc-execsize-{cli}"
    d.conch("run", "-d", "--name", name, "busybox", "sleep", "100", check=True)
    if cli == "docker":
        if not DOCKER:
            pytest.skip("the docker CLI is not installed")
        argv, env = [DOCKER, "exec", "-it", name, "sh"], d.env
    else:
        argv, env = [str(BIN / "conch"), "exec", "-it", name, "sh"], d.env
    t = Pty(argv, env)
    _set_size(t.fd, 33, 77)
    t.expect(rb"# ")
    t.send(b"stty size\n")
    t.expect(rb"33 77")
    _set_size(t.fd, 41, 101)  # the kernel sends the CLI SIGWINCH
    time.sleep(0.3)
    t.send(b"stty size; exit 4\n")
    t.expect(rb"41 101")
    assert t.wait() == 4


def test_exec_on_stopped_container_fails(d):
    d.conch("run", "--name", "lc-execstop", "busybox", "true", check=True)
    p = d.conch("exec", "lc-execstop", "true")
    assert p.returncode != 0 and "is not running" in p.stderr, p.stderr


# -- logs -----------------------------------------------------------------------------
def test_logs_follow_sees_new_lines_and_ends_on_exit(d):
    d.conch("run", "-d", "--name", "lc-follow", "busybox", "sh", "-c",
            "for i in 1 2 3 4 5 6 7 8; do echo line$i; sleep 0.2; done", check=True)
    follower = subprocess.Popen([str(BIN / "conch"), "logs", "-f", "lc-follow"], env=d.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = follower.stdout.readline()
        assert first == "line1\n"
        out, err = follower.communicate(timeout=15)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert first + out == "".join(f"line{i}\n" for i in range(1, 9))


def test_logs_tail_timestamps_since(d):
    d.conch("run", "--name", "lc-logs", "busybox", "sh", "-c",
            "echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three; sleep 1.2; echo four", check=True)
    p = d.conch("logs", "lc-logs")
    assert (p.stdout, p.stderr) == ("one\nthree\nfour\n", "two\n")
    p = d.conch("logs", "--tail", "2", "lc-logs")
    assert p.stdout + p.stderr == "three\nfour\n"
    assert d.conch("logs", "--tail", "0", "lc-logs").stdout == ""
    p = d.conch("logs", "-t", "lc-logs")
    lines = p.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (one|three|four)", line), line
    # --since a moment between "three" and "four"
    ts_three = lines[1].split()[0]
    ts_four = lines[2].split()[0]
    from datetime import datetime

    def parse(ts):
        return datetime.fromisoformat(ts[:26].rstrip("Z") + "+00:00").timestamp()

    mid = (parse(ts_three) + parse(ts_four)) / 2
    p = d.conch("logs", "--since", f"{mid:.3f}", "lc-logs")
    assert p.stdout + p.stderr == "four\n"


# -- stop / kill / rm -----------------------------------------------------------------
def test_stop_shell_that_traps_term_exits_cleanly(d):
    d.conch("run", "-d", "--name", "lc-trap", "busybox", "sh", "-c",
            "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done", check=True)
    time.sleep(0.3)  # let the trap be installed
    t0 = time.monotonic()
    assert d.conch("stop", "-t", "5", "lc-trap").stdout == "lc-trap\n"
    assert time.monotonic() - t0 < 4
    st = state(d, "lc-trap")
    assert (st["Status"], st["ExitCode"], st["Running"]) == ("exited", 0, False)
    assert "got-term" in d.conch("logs", "lc-trap").stdout


def test_stop_shell_that_ignores_term_is_killed_after_timeout(d):
    d.conch("run", "-d", "--name", "lc-ign", "busybox", "sh", "-c",
            "trap '' TERM; while true; do sleep 0.1; done", check=True)
    time.sleep(0.3)
    t0 = time.monotonic()
    d.conch("stop", "-t", "1", "lc-ign", check=True)
    took = time.monotonic() - t0
    assert 0.9 <= took < 6, took
    st = state(d, "lc-ign")
    assert (st["Status"], st["ExitCode"]) == ("exited", 137)
    assert d.conch("wait", "lc-ign").stdout == "137\n"


def test_stop_signal_option(d):
    d.conch("run", "-d", "--name", "lc-stopsig", "--stop-signal", "USR1", "busybox", "sh", "-c",
            "trap 'exit 11' USR1; while true; do sleep 0.1; done", check=True)
    assert inspect(d, "lc-stopsig")["Config"]["StopSignal"] in ("USR1", "SIGUSR1")
    time.sleep(0.3)
    d.conch("stop", "-t", "5", "lc-stopsig", check=True)
    assert state(d, "lc-stopsig")["ExitCode"] == 11


def test_kill_with_signal(d):
    d.conch("run", "-d", "--name", "lc-kill", "busybox", "sh", "-c",
            "trap 'exit 42' USR1; while true; do sleep 0.1; done", check=True)
    time.sleep(0.3)
    assert d.conch("kill", "-s", "USR1", "lc-kill").stdout == "lc-kill\n"
    assert d.conch("wait", "lc-kill").stdout == "42\n"
    d.conch("run", "-d", "--name", "lc-kill9", "busybox", "sleep", "100", check=True)
    d.conch("kill", "lc-kill9", check=True)
    assert d.conch("wait", "lc-kill9").stdout == "137\n"
    p = d.conch("kill", "lc-kill9")
    assert p.returncode != 0 and "is not running" in p.stderr, p.stderr


def test_rm_running_needs_force(d):
    cid = d.conch("run", "-d", "--name", "lc-rmf", "busybox", "sleep", "100", check=True).stdout.strip()
    p = d.conch("rm", "lc-rmf")
    # docker >= 25: "... container is running: stop the container before removing or force
    # remove"; older: "You cannot remove a running container ... or force remove"
    assert p.returncode != 0 and "force remove" in p.stderr, p.stderr
    assert d.conch("rm", "-f", "lc-rmf").stdout == "lc-rmf\n"
    assert cid not in d.conch("ps", "-aq", "--no-trunc").stdout
    p = d.conch("rm", "lc-rmf")
    assert p.returncode != 0 and "No such container" in p.stderr


# -- inspect / ps / wait / rename / pause / top / stats ------------------------------
def test_inspect_shape(d):
    d.conch("run", "-d", "--name", "lc-insp", "-e", "A=1", "-l", "k=v", "busybox", "sleep", "100", check=True)
    c = inspect(d, "lc-insp")
    for key in ("Id", "Created", "Path", "Args", "State", "Image", "Name", "RestartCount",
                "Config", "HostConfig", "Mounts", "NetworkSettings", "LogPath"):
        assert key in c, key
    assert re.fullmatch(r"[0-9a-f]{64}", c["Id"])
    assert c["Name"] == "/lc-insp"
    assert (c["Path"], c["Args"]) == ("sleep", ["100"])
    st = c["State"]
    for key in ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid",
                "ExitCode", "Error", "StartedAt", "FinishedAt"):
        assert key in st, key
    assert (st["Status"], st["Running"], st["Paused"], st["OOMKilled"], st["ExitCode"]) == (
        "running", True, False, False, 0)
    assert st["Pid"] > 0 and Path(f"/proc/{st['Pid']}").exists()
    assert st["StartedAt"].startswith("20") and st["FinishedAt"].startswith("0001-01-01")
    assert c["Config"]["Image"] == "busybox"
    assert "A=1" in c["Config"]["Env"] and c["Config"]["Labels"] == {"k": "v"}
    assert c["Config"]["Cmd"] == ["sleep", "100"]
    assert isinstance(c["HostConfig"], dict) and "RestartPolicy" in c["HostConfig"]
    assert c["Mounts"] == []
    assert isinstance(c["NetworkSettings"], dict)
    assert c["Image"].startswith("sha256:")
    d.conch("stop", "-t", "0", "lc-insp", check=True)
    st = state(d, "lc-insp")
    assert (st["Status"], st["Running"], st["Pid"]) == ("exited", False, 0)
    assert st["FinishedAt"] > st["StartedAt"]
    assert d.conch("inspect", "-f", "{{.State.Status}} {{.Name}}", "lc-insp").stdout == "exited /lc-insp\n"


def test_ps_filters_and_format(d):
    run_id = d.conch("run", "-d", "--name", "lc-ps-run", "busybox", "sleep", "100", check=True).stdout.strip()
    d.conch("run", "--name", "lc-ps-exit", "busybox", "sh", "-c", "exit 3")
    ps = d.conch("ps").stdout
    assert "lc-ps-run" in ps and "lc-ps-exit" not in ps
    assert ps.splitlines()[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                          "PORTS", "NAMES"]
    psa = d.conch("ps", "-a").stdout
    assert "lc-ps-exit" in psa and "Exited (3)" in psa
    assert run_id[:12] in d.conch("ps", "-q").stdout.split()
    assert d.conch("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}").stdout.split() == ["lc-ps-exit"]
    assert d.conch("ps", "--format", "{{.Names}}").stdout.split() == ["lc-ps-run"]
    assert d.conch("ps", "-a", "--filter", "name=lc-ps-r", "-q", "--no-trunc").stdout.split() == [run_id]


def test_wait_returns_exit_code(d):
    d.conch("run", "-d", "--name", "lc-wait", "busybox", "sh", "-c", "sleep 0.5; exit 9", check=True)
    t0 = time.monotonic()
    p = d.conch("wait", "lc-wait")
    assert (p.returncode, p.stdout) == (0, "9\n")
    assert time.monotonic() - t0 > 0.2
    assert d.conch("wait", "lc-wait").stdout == "9\n"  # already exited: returns at once


def test_rename(d):
    cid = d.conch("run", "-d", "--name", "lc-old", "busybox", "sleep", "100", check=True).stdout.strip()
    d.conch("rename", "lc-old", "lc-new", check=True)
    assert inspect(d, "lc-new")["Id"] == cid
    assert d.conch("inspect", "lc-old").returncode != 0
    d.conch("run", "-d", "--name", "lc-other", "busybox", "sleep", "100", check=True)
    p = d.conch("rename", "lc-other", "lc-new")
    assert p.returncode != 0 and "already in use" in p.stderr


def test_pause_unpause(d):
    d.conch("run", "-d", "--name", "lc-pause", "busybox", "sleep", "100", check=True)
    d.conch("pause", "lc-pause", check=True)
    st = state(d, "lc-pause")
    assert (st["Status"], st["Paused"], st["Running"]) == ("paused", True, True)
    stat = Path(f"/proc/{st['Pid']}/stat").read_text()
    assert stat.rpartition(")")[2].split()[0] == "D"  # frozen by the freezer cgroup
    assert "Paused" in d.conch("ps").stdout
    assert d.conch("exec", "lc-pause", "true").returncode != 0  # docker: container is paused
    d.conch("unpause", "lc-pause", check=True)
    st = state(d, "lc-pause")
    assert (st["Status"], st["Paused"]) == ("running", False)
    assert d.conch("exec", "lc-pause", "true").returncode == 0


def test_top(d):
    d.conch("run", "-d", "--name", "lc-top", "busybox", "sleep", "1234", check=True)
    p = d.conch("top", "lc-top", check=True)
    lines = p.stdout.splitlines()
    assert "PID" in lines[0] and "CMD" in lines[0]
    assert any("sleep 1234" in line for line in lines[1:]), p.stdout
    pid = state(d, "lc-top")["Pid"]
    assert any(str(pid) in line.split() for line in lines[1:]), p.stdout


def test_stats_no_stream(d):
    d.conch("run", "-d", "--name", "lc-stats", "-m", "64m", "busybox", "sleep", "100", check=True)
    p = d.conch("stats", "--no-stream", "lc-stats", check=True, timeout=30)
    header, *rows = p.stdout.splitlines()
    assert "CPU %" in header and "MEM USAGE / LIMIT" in header and "PIDS" in header
    assert len(rows) == 1 and "lc-stats" in rows[0], p.stdout
    assert "64MiB" in rows[0], rows[0]


# -- restart policies -----------------------------------------------------------------
def test_restart_on_failure_max_retries(d):
    d.conch("run", "-d", "--name", "lc-onfail", "--restart", "on-failure:2", "busybox",
            "sh", "-c", "echo run; exit 1", check=True)

    def settled():
        c = inspect(d, "lc-onfail")
        return c if c["State"]["Status"] == "exited" and c["RestartCount"] == 2 else None

    c = wait_for(settled, timeout=20, what="RestartCount 2 and exited")
    time.sleep(1.5)  # and no third restart
    c = inspect(d, "lc-onfail")
    assert (c["RestartCount"], c["State"]["Status"], c["State"]["ExitCode"]) == (2, "exited", 1)
    assert d.conch("logs", "lc-onfail").stdout == "run\n" * 3


def test_restart_always_restarts_after_exit(d):
    d.conch("run", "-d", "--name", "lc-always", "--restart", "always", "busybox",
            "sh", "-c", "sleep 0.3; exit 0", check=True)
    c = wait_for(lambda: (c := inspect(d, "lc-always"))["RestartCount"] >= 2 and c,
                 timeout=20, what="two restarts")
    assert c["HostConfig"]["RestartPolicy"]["Name"] == "always"
    d.conch("stop", "-t", "1", "lc-always", check=True)
    n = inspect(d, "lc-always")["RestartCount"]
    time.sleep(1)
    c = inspect(d, "lc-always")
    assert c["State"]["Status"] == "exited" and c["RestartCount"] == n  # stop means stop


def test_restart_unless_stopped_not_after_stop(d):
    d.conch("run", "-d", "--name", "lc-unless", "--restart", "unless-stopped", "busybox",
            "sleep", "100", check=True)
    d.conch("stop", "-t", "1", "lc-unless", check=True)
    time.sleep(1.5)
    c = inspect(d, "lc-unless")
    assert (c["State"]["Status"], c["RestartCount"]) == ("exited", 0)


def test_restart_command(d):
    d.conch("run", "-d", "--name", "lc-restart", "busybox", "sleep", "100", check=True)
    pid1 = state(d, "lc-restart")["Pid"]
    d.conch("restart", "-t", "1", "lc-restart", check=True)
    st = state(d, "lc-restart")
    assert st["Running"] and st["Pid"] != pid1


# -- resources and security ------------------------------------------------------------
def test_memory_limit_visible_inside(d):
    out = run_out(d, "-m", "32m", "busybox", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert out == f"{32 * 1024 * 1024}\n"


def test_memory_limit_enforced_oom_killed(d):
    # `tail /dev/zero` buffers one endless "line": it grows until the cgroup OOM-kills it.
    p = d.conch("run", "--name", "lc-oom", "-m", "32m", "busybox", "tail", "/dev/zero", timeout=60)
    assert p.returncode == 137, p.stderr
    st = state(d, "lc-oom")
    assert (st["OOMKilled"], st["ExitCode"]) == (True, 137)


def test_pids_limit(d):
    assert run_out(d, "--pids-limit", "10", "busybox", "cat", "/sys/fs/cgroup/pids/pids.max") == "10\n"
    p = d.conch("run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c",
                "for i in $(seq 20); do sleep 5 & done; echo all-forked")
    assert p.returncode != 0 and "can't fork" in p.stderr, (p.stdout, p.stderr)
    assert "all-forked" not in p.stdout


def test_cpus_quota(d):
    out = run_out(d, "--cpus", "0.5", "busybox", "sh", "-c",
                  "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us")
    assert out.split() == ["50000", "100000"]


def test_read_only_rootfs_with_tmpfs(d):
    p = d.conch("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c",
                "touch /x 2>&1; echo rc=$?; touch /scratch/y && echo tmpfs-ok; "
                "grep ' /scratch ' /proc/mounts")
    assert "Read-only file system" in p.stdout and "rc=1" in p.stdout, p.stdout
    assert "tmpfs-ok" in p.stdout
    assert re.search(r"^tmpfs /scratch tmpfs ", p.stdout, re.M), p.stdout


def test_tmpfs_without_read_only(d):
    out = run_out(d, "--tmpfs", "/scratch", "busybox", "sh", "-c", "grep ' /scratch ' /proc/mounts")
    assert out.startswith("tmpfs /scratch tmpfs")


def test_cap_drop_all(d):
    out = run_out(d, "--cap-drop", "ALL", "busybox", "grep", "^Cap", "/proc/self/status")
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "0000000000000000", out
    p = d.conch("run", "--rm", "--cap-drop", "ALL", "busybox", "chown", "1000", "/tmp")
    assert p.returncode != 0
    # the default set still has CAP_CHOWN
    assert d.conch("run", "--rm", "busybox", "chown", "1000", "/tmp").returncode == 0


def test_no_new_privileges(d):
    out = run_out(d, "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert out.split() == ["NoNewPrivs:", "1"]
    out = run_out(d, "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert out.split() == ["NoNewPrivs:", "0"]


def test_bind_mount_rw_and_ro(d, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "from-host").write_text("hello from host\n")
    out = run_out(d, "-v", f"{host}:/data", "busybox", "sh", "-c", "cat /data/from-host; echo back > /data/from-ct")
    assert out == "hello from host\n"
    assert (host / "from-ct").read_text() == "back\n"
    p = d.conch("run", "--rm", "-v", f"{host}:/data:ro", "busybox", "sh", "-c",
                "cat /data/from-host; touch /data/nope")
    assert p.returncode != 0 and "Read-only file system" in p.stderr, (p.stdout, p.stderr)
    assert p.stdout == "hello from host\n"
    assert not (host / "nope").exists()
    d.conch("run", "--name", "lc-bind", "-v", f"{host}:/data:ro", "busybox", "true", check=True)
    (m,) = inspect(d, "lc-bind")["Mounts"]
    assert (m["Type"], m["Source"], m["Destination"], m["RW"]) == ("bind", str(host), "/data", False)


def test_network_none_has_only_lo(d):
    assert run_out(d, "--network", "none", "busybox", "ls", "/sys/class/net").split() == ["lo"]


def test_network_host_sees_host_interfaces(d):
    out = run_out(d, "--network", "host", "busybox", "ls", "/sys/class/net")
    assert set(out.split()) == set(os.listdir("/sys/class/net"))
    assert run_out(d, "--network", "host", "busybox", "hostname").strip() == os.uname().nodename


def test_env_env_file_workdir_user(d, tmp_path):
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nFROM_FILE=yes\nSPACED=a b\n\n")
    out = run_out(d, "-e", "A=1", "--env-file", envfile, "-w", "/tmp/work", "-u", "1000:1001",
                  "busybox", "sh", "-c", 'echo "$A $FROM_FILE $SPACED"; pwd; id -u; id -g; echo $HOME')
    assert out.splitlines() == ["1 yes a b", "/tmp/work", "1000", "1001", "/home/conch"]
    assert run_out(d, "-u", "conch", "busybox", "id", "-un") == "conch\n"
    p = d.conch("run", "--rm", "-u", "nosuchuser", "busybox", "true")
    assert p.returncode != 0 and "nosuchuser" in p.stderr


def test_entrypoint_hostname_labels(d):
    assert run_out(d, "--entrypoint", "echo", "busybox", "a", "b") == "a b\n"
    assert run_out(d, "-h", "myhost", "busybox", "hostname") == "myhost\n"
    d.conch("run", "--name", "lc-labels", "-l", "a=1", "-l", "b=two", "busybox", "true", check=True)
    assert inspect(d, "lc-labels")["Config"]["Labels"] == {"a": "1", "b": "two"}
    assert d.conch("ps", "-a", "--filter", "label=b=two", "--format", "{{.Names}}").stdout == "lc-labels\n"


def test_ulimit_nofile(d):
    assert run_out(d, "--ulimit", "nofile=512:512", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn") == "512\n512\n"


def test_privileged_gets_every_cap_the_daemon_has(d):
    # dockerd grants "all capabilities" as those in its own bounding set (moby
    # oci/caps: the daemon cannot hand out what it does not hold), so --privileged
    # works even where the host lacks some (this machine's bounding set has no
    # CAP_SYS_RESOURCE).
    host_bnd = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("CapBnd:"))
    p = d.conch("run", "--rm", "--privileged", "busybox", "grep", "^CapEff", "/proc/self/status")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[1] == host_bnd


@pytest.mark.parametrize("mode,link", [
    ("--pid", "/proc/self/ns/pid"),
    ("--ipc", "/proc/self/ns/ipc"),
    ("--uts", "/proc/self/ns/uts"),
])
def test_host_namespaces(d, mode, link):
    out = run_out(d, mode, "host", "busybox", "readlink", link)
    assert out.strip() == os.readlink(link), f"{mode} host: container is in {out.strip()}"


def test_pid_host_sees_host_processes(d):
    out = run_out(d, "--pid", "host", "busybox", "sh", "-c", "echo $$; cat /proc/1/comm")
    pid, comm = out.split()
    assert pid != "1" and comm == Path("/proc/1/comm").read_text().strip()


def test_uts_host_hostname(d):
    assert run_out(d, "--uts", "host", "busybox", "hostname").strip() == os.uname().nodename


def test_attached_run_never_loses_output_under_concurrency(d):
    """create → attach → start: output the process writes at once must reach the attached
    client even when several runs race (the log file has it either way)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        p = d.conch("run", "--rm", "busybox", "sh", "-c", f"echo out{i}; echo err{i} >&2; exit 2")
        return i, p.returncode, p.stdout, p.stderr

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(36)))
    bad = [r for r in results if r[1:] != (2, f"out{r[0]}\n", f"err{r[0]}\n")]
    assert not bad, f"{len(bad)} of {len(results)} runs lost output: {bad[:3]}"


def _ptmx_fds(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/ptmx"
        except OSError:
            pass
    return n


def test_exec_tty_resize_bounds_and_no_master_left_after_client_goes(d):
    """An out-of-range size is a 400 (not a 500 from struct.pack); a client that hangs
    up on a tty exec whose process lives on leaves no pty master open in conchd."""
    from conch.errors import InvalidArgument

    d.conch("run", "-d", "--name", "lc-execpty", "busybox", "sleep", "100", check=True)
    api = d.api
    before = _ptmx_fds(d.pid)
    ex = api.post("/containers/lc-execpty/exec", {"Cmd": ["sh", "-c", "sleep 60 & wait"],
                                                  "Tty": True, "AttachStdout": True})
    with pytest.raises(InvalidArgument):
        api.post(f"/exec/{ex['Id']}/resize", h=70000, w=80)
    sock = api.hijack("POST", f"/exec/{ex['Id']}/start", {"Tty": True})
    deadline = time.monotonic() + 10
    while _ptmx_fds(d.pid) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    sock.close()
    deadline = time.monotonic() + 10
    while _ptmx_fds(d.pid) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ptmx_fds(d.pid) == before


def test_no_warm_runtime_waits_by_default(d):
    """conch-runtime's C front creates conchd's containers cold, faster than a pre-started
    Python runtime did, so by default conchd keeps none (--warm-runtime asks for one):
    no `conch-shim --warm` of this daemon after a start, and the container's shim is cold."""
    cid = d.conch("run", "-d", "busybox", "sleep", "1000", check=True).stdout.strip()
    time.sleep(0.3)  # a refill, were there a pool, would have started by now
    cmdlines = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdlines[int(name)] = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                pass
    mine = [c for c in cmdlines.values() if "conch-shim" in c and str(d.dir) in c]
    assert mine and not [c for c in mine if "--warm" in c], mine
    d.conch("rm", "-f", cid, check=True)
