"""conch CLI -> a private conchd -> the kernel. Each test runs the real ``conch`` command.

Skips (with the reason) when not root, when ``conchd`` or busybox is missing, or when
this conchd cannot yet start a container (probed once with ``conch run --rm IMAGE true``).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
CONCHD = os.path.join(os.path.dirname(sys.executable), "conchd")


def conch(env, *args, input=None, check=False):
    proc = subprocess.run([sys.executable, "-m", "conch.cli.main", *args], env=env, input=input,
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"conch {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (conchd runs containers)")
    if not os.access(CONCHD, os.X_OK):
        pytest.skip(f"conchd not installed at {CONCHD} yet")
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static not installed")
    root = tmp_path_factory.mktemp("conchd")
    sock = root / "sock"
    log = open(root / "log", "wb")
    daemon = subprocess.Popen([CONCHD, "--data-root", str(root / "data"), "--exec-root",
                               str(root / "exec"), "-H", f"unix://{sock}"],
                              stdout=log, stderr=log, start_new_session=True)
    e = dict(os.environ, CONCH_HOST=f"unix://{sock}")
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        rootfs = root / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in ("sh", "echo", "cat", "sleep", "true", "ls", "env"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(root / "rootfs.tar"), "."], check=True)
        conch(e, "import", "-c", 'CMD ["sh"]', str(root / "rootfs.tar"), "bb:e2e", check=True)
        probe = conch(e, "run", "--rm", "bb:e2e", "true")
        if probe.returncode != 0:
            pytest.skip(f"conchd cannot start containers yet: {probe.stderr.strip()[:200]}")
        yield e
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
        log.close()


def test_run_output_and_exit_code(env):
    p = conch(env, "run", "--rm", "bb:e2e", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")


def test_run_not_found_is_127(env):
    assert conch(env, "run", "--rm", "bb:e2e", "nope").returncode == 127


def test_run_stdin(env):
    p = conch(env, "run", "--rm", "-i", "bb:e2e", "cat", input="piped\n")
    assert (p.returncode, p.stdout) == (0, "piped\n")


def test_detached_lifecycle(env):
    cid = conch(env, "run", "-d", "--name", "e2e-life", "bb:e2e", "sleep", "100", check=True).stdout.strip()
    assert len(cid) == 64
    try:
        assert conch(env, "inspect", "-f", "{{.State.Status}}", "e2e-life").stdout == "running\n"
        assert cid[:12] in conch(env, "ps", "-q").stdout
        p = conch(env, "exec", "e2e-life", "sh", "-c", "echo in; exit 4")
        assert (p.returncode, p.stdout) == (4, "in\n")
        assert conch(env, "stop", "-t", "1", "e2e-life").stdout == "e2e-life\n"
        assert conch(env, "wait", "e2e-life").stdout.strip().isdigit()
    finally:
        conch(env, "rm", "-f", "e2e-life")
    assert cid[:12] not in conch(env, "ps", "-aq").stdout


def test_logs(env):
    conch(env, "run", "--name", "e2e-logs", "bb:e2e", "sh", "-c", "echo a; echo b >&2", check=True)
    try:
        p = conch(env, "logs", "e2e-logs")
        assert (p.stdout, p.stderr) == ("a\n", "b\n")
    finally:
        conch(env, "rm", "-f", "e2e-logs")


def test_cp_both_ways(env, tmp_path):
    conch(env, "run", "-d", "--name", "e2e-cp", "bb:e2e", "sleep", "100", check=True)
    try:
        src = tmp_path / "hello.txt"
        src.write_text("hi\n")
        conch(env, "cp", str(src), "e2e-cp:/hello.txt", check=True)
        assert conch(env, "exec", "e2e-cp", "cat", "/hello.txt").stdout == "hi\n"
        conch(env, "cp", "e2e-cp:/hello.txt", str(tmp_path / "back.txt"), check=True)
        assert (tmp_path / "back.txt").read_text() == "hi\n"
    finally:
        conch(env, "rm", "-f", "e2e-cp")
