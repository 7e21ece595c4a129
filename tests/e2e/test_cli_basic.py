"""conch CLI -> a private conchd -> the kernel. Each test runs the real ``conch`` command.

The daemon is conch.testing.daemon's (one per module, busybox imported; skips when not
root or conchd is missing); each test runs under clean_after's leak check.
"""

import pytest

from conch.testing.daemon import clean_after, daemon_fixture

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


def test_run_output_and_exit_code(d):
    p = d.conch("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")


def test_run_not_found_is_127(d):
    assert d.conch("run", "--rm", "busybox", "nope").returncode == 127


def test_run_stdin(d):
    p = d.conch("run", "--rm", "-i", "busybox", "cat", input="piped\n")
    assert (p.returncode, p.stdout) == (0, "piped\n")


def test_detached_lifecycle(d):
    cid = d.conch("run", "-d", "--name", "e2e-life", "busybox", "sleep", "100", check=True).stdout.strip()
    assert len(cid) == 64
    try:
        assert d.conch("inspect", "-f", "{{.State.Status}}", "e2e-life").stdout == "running\n"
        assert cid[:12] in d.conch("ps", "-q").stdout
        p = d.conch("exec", "e2e-life", "sh", "-c", "echo in; exit 4")
        assert (p.returncode, p.stdout) == (4, "in\n")
        assert d.conch("stop", "-t", "1", "e2e-life").stdout == "e2e-life\n"
        assert d.conch("wait", "e2e-life").stdout.strip().isdigit()
    finally:
        d.conch("rm", "-f", "e2e-life")
    assert cid[:12] not in d.conch("ps", "-aq").stdout


def test_logs(d):
    d.conch("run", "--name", "e2e-logs", "busybox", "sh", "-c", "echo a; echo b >&2", check=True)
    try:
        p = d.conch("logs", "e2e-logs")
        assert (p.stdout, p.stderr) == ("a\n", "b\n")
    finally:
        d.conch("rm", "-f", "e2e-logs")


def test_cp_both_ways(d, tmp_path):
    d.conch("run", "-d", "--name", "e2e-cp", "busybox", "sleep", "100", check=True)
    try:
        src = tmp_path / "hello.txt"
        src.write_text("hi\n")
        d.conch("cp", str(src), "e2e-cp:/hello.txt", check=True)
        assert d.conch("exec", "e2e-cp", "cat", "/hello.txt").stdout == "hi\n"
        d.conch("cp", "e2e-cp:/hello.txt", str(tmp_path / "back.txt"), check=True)
        assert (tmp_path / "back.txt").read_text() == "hi\n"
    finally:
        d.conch("rm", "-f", "e2e-cp")
