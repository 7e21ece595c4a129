"""podman drives conch-runtime (issue: "podman --runtime <conch-runtime> run --rm <busybox
image> … works here"). This is a real podman from Debian (``make test-deps``), with its
own storage root, a containers.conf of our own, and no network (podman's bridge setup is
not what is under test, and would leave a cni-podman0 link behind).

The private podman (store, run dir, containers.conf) is conch.testing.podman's; its
docstring says why each setting is needed here. The exact command is in the README.
"""

import shutil
import tarfile

import pytest

from conch.testing.podman import PodmanStore
from conch.testing.rootfs import busybox_rootfs

pytestmark = pytest.mark.skipif(shutil.which("podman") is None,
                                reason="podman is not installed (run `make test-deps`)")


@pytest.fixture
def podman(tmp_path, runtime_by_name):
    store = PodmanStore(tmp_path, runtime=runtime_by_name("conch").binary)

    def run(*args, check=True, timeout=120):
        return store.run(*args, check=check, timeout=timeout)

    rootfs = busybox_rootfs(tmp_path / "rootfs")
    image_tar = tmp_path / "busybox.tar"
    with tarfile.open(image_tar, "w") as tar:
        tar.add(rootfs, arcname=".")
    run("import", str(image_tar), "localhost/busybox:latest")
    yield run
    store.close()


def test_podman_run_rm(podman):
    proc = podman("run", "--rm", "--network", "none", "localhost/busybox",
                  "sh", "-c", "echo hello from conch-runtime; id -u; hostname | wc -c")
    lines = proc.stdout.splitlines()
    assert lines[0] == "hello from conch-runtime"
    assert lines[1] == "0"


def test_podman_exit_code_and_exec(podman):
    proc = podman("run", "--rm", "--network", "none", "localhost/busybox", "sh", "-c", "exit 7",
                  check=False)
    assert proc.returncode == 7, proc.stderr
    podman("run", "-d", "--name", "ct", "--network", "none", "localhost/busybox", "sleep", "100")
    proc = podman("exec", "ct", "sh", "-c", "echo exec-ok; cat /proc/1/cmdline | tr '\\0' ' '")
    assert proc.stdout.splitlines()[0] == "exec-ok"
    assert "sleep 100" in proc.stdout
    podman("rm", "--force", "--time", "0", "ct")


def test_podman_default_isolation(podman):
    """podman's own defaults (its capability set and seccomp profile) apply through us."""
    proc = podman("run", "--rm", "--network", "none", "localhost/busybox",
                  "sh", "-c", "grep -E '^(Seccomp|CapEff):' /proc/self/status")
    fields = dict(line.split(":\t") for line in proc.stdout.splitlines())
    assert fields["Seccomp"] == "2"
    assert int(fields["CapEff"], 16) != 0


def _debug_wrapper(tmp_path, binary: str) -> tuple[str, object]:
    """A runtime that is ``binary`` with CONCH_RUNTIME_FRONT_DEBUG=1 and its stderr
    appended to a log: conmon does not show a successful runtime's stderr, and the
    front's line says which path ran."""
    log = tmp_path / "front.log"
    wrapper = tmp_path / "wrapped" / "conch-runtime"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nCONCH_RUNTIME_FRONT_DEBUG=1 exec {binary} \"$@\" 2>>{log}\n")
    wrapper.chmod(0o755)
    return str(wrapper), log


def test_podman_run_tty_takes_the_c_path(tmp_path, runtime_by_name):
    """``podman run -t``: conmon listens on a console socket and gets the pty master from
    the C create path (no Python runtime started for create), the container sees a tty."""
    binary, log = _debug_wrapper(tmp_path, runtime_by_name("conch").binary)
    store = PodmanStore(tmp_path, runtime=binary)
    try:
        rootfs = busybox_rootfs(tmp_path / "rootfs")
        with tarfile.open(tmp_path / "busybox.tar", "w") as tar:
            tar.add(rootfs, arcname=".")
        store.run("import", str(tmp_path / "busybox.tar"), "localhost/busybox:latest", check=True, timeout=120)
        proc = store.run("run", "--rm", "-t", "--network", "none", "localhost/busybox", "sh", "-c",
                         "tty; [ -t 0 ] && [ -t 1 ] && echo ttys; stat -c '%t:%T' /dev/console; exit 4",
                         check=False, timeout=120)
    finally:
        store.close()
    front = log.read_text() if log.exists() else ""
    assert proc.returncode == 4, f"{proc.stdout}\n{proc.stderr}\n{front}"
    assert proc.stdout.replace("\r\n", "\n") == "/dev/pts/0\nttys\n88:0\n", proc.stdout
    assert "conch-runtime front: create in C" in front, front
