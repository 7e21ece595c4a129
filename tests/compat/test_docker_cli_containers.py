"""Issue 3 "Proof": the real ``docker`` CLI (client only, /usr/local/bin/docker) drives
conchd's containers: run/exit codes, detached lifecycle, logs, exec, inspect, ps, stdin
and a real pty. Skipped, with the reason, when the docker CLI is not installed."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import time

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed at /usr/local/bin/docker")

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.mark.parametrize("argv,code", [
    (["sh", "-c", "echo out; echo err >&2; exit 3"], 3),
    (["true"], 0),
    (["nope-not-a-command"], 127),
    (["/etc/passwd"], 126),
])
def test_run_rm_exit_code(d, argv, code):
    p = d.docker("run", "--rm", "busybox", *argv)
    assert p.returncode == code, p.stderr
    if code == 3:
        assert (p.stdout, p.stderr) == ("out\n", "err\n")


def test_run_125(d):
    assert d.docker("run", "--rm", "--no-such-flag", "busybox").returncode == 125
    p = d.docker("run", "--rm", "--pull", "never", "no-such-image:nope", "true")
    assert p.returncode == 125, p.stderr


def test_detached_logs_exec_stop_rm(d):
    cid = d.docker("run", "-d", "--name", "dk-life", "busybox", "sh", "-c",
                   "echo hello; trap 'exit 0' TERM; while true; do sleep 0.1; done", check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    deadline = time.monotonic() + 5
    while (out := d.docker("logs", "dk-life").stdout) != "hello\n":
        assert time.monotonic() < deadline, out
        time.sleep(0.1)
    p = d.docker("exec", "dk-life", "sh", "-c", "echo in-$HOSTNAME; exit 4")
    assert (p.returncode, p.stdout) == (4, f"in-{cid[:12]}\n")
    p = d.docker("exec", "-i", "-e", "X=y", "-w", "/tmp", "-u", "1000", "dk-life", "sh", "-c",
                 'cat; echo "$X $(pwd) $(id -u)"', input="piped\n")
    assert (p.returncode, p.stdout) == (0, "piped\ny /tmp 1000\n"), p.stderr
    assert d.docker("inspect", "-f", "{{.State.Status}}", "dk-life").stdout == "running\n"
    assert d.docker("stop", "-t", "5", "dk-life").stdout == "dk-life\n"
    assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "dk-life").stdout == "exited 0\n"
    assert d.docker("wait", "dk-life").stdout == "0\n"
    assert d.docker("rm", "dk-life").stdout == "dk-life\n"
    p = d.docker("inspect", "dk-life")
    assert p.returncode == 1 and "No such object" in p.stderr, p.stderr


def test_inspect_json(d):
    d.docker("run", "-d", "--name", "dk-insp", "busybox", "sleep", "100", check=True)
    (c,) = json.loads(d.docker("container", "inspect", "dk-insp", check=True).stdout)
    assert c["Name"] == "/dk-insp" and c["State"]["Running"] is True and c["State"]["Pid"] > 0
    assert d.docker("inspect", "-f", "{{.Config.Cmd}}", "dk-insp").stdout == "[sleep 100]\n"
    assert d.docker("inspect", "-f", "{{json .State.Paused}}", "dk-insp").stdout == "false\n"


def test_ps_format(d):
    d.docker("run", "-d", "--name", "dk-ps1", "busybox", "sleep", "100", check=True)
    d.docker("run", "--name", "dk-ps2", "busybox", "sh", "-c", "exit 2")
    assert d.docker("ps", "--format", "{{.Names}}").stdout.split() == ["dk-ps1"]
    out = d.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.splitlines()
    names = dict(line.split(" ", 1) for line in out)
    assert names["dk-ps1"].startswith("Up") and names["dk-ps2"].startswith("Exited (2)"), out
    assert d.docker("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}").stdout.split() == ["dk-ps2"]
    assert d.docker("ps", "--format", "{{json .}}").stdout.count("\n") == 1
    table = d.docker("ps", "-a").stdout.splitlines()
    assert table[0].startswith("CONTAINER ID") and len(table) == 3


def test_run_i_stdin_piped(d):
    p = d.docker("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; exit 5", input="piped in\n")
    assert (p.returncode, p.stdout) == (5, "PIPED IN\n"), p.stderr


def test_run_it_in_a_pty(d):
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(DOCKER, [DOCKER, "run", "-it", "--rm", "busybox", "sh"], d.env)
        finally:
            os._exit(127)
    buf = b""

    def expect(pattern: bytes, timeout=15):
        nonlocal buf
        deadline = time.monotonic() + timeout
        while not re.search(pattern, buf):
            assert time.monotonic() < deadline, f"no {pattern!r} in {buf!r}"
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"pty closed before {pattern!r}: {buf!r}"
                buf += chunk

    try:
        expect(rb"# ")
        os.write(fd, b"tty\n")
        expect(rb"/dev/pts/0")
        os.write(fd, b"echo typed-$((6*7))\n")
        expect(rb"typed-\$\(\(6\*7\)\)")  # echoed by the container's terminal
        expect(rb"typed-42")
        os.write(fd, b"exit 7\n")
        deadline = time.monotonic() + 15
        while True:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    buf += os.read(fd, 4096)
                except OSError:
                    pass
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, f"docker run -it did not exit: {buf!r}"
        assert os.waitstatus_to_exitcode(status) == 7, buf
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_docker_run_never_loses_output_under_concurrency(d):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        p = d.docker("run", "--rm", "busybox", "sh", "-c", f"echo out{i}; echo err{i} >&2; exit 2")
        return i, p.returncode, p.stdout, p.stderr

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(36)))
    bad = [r for r in results if r[1:] != (2, f"out{r[0]}\n", f"err{r[0]}\n")]
    assert not bad, f"{len(bad)} of {len(results)} runs lost output: {bad[:3]}"
