"""podman drives conch-runtime (issue: "podman --runtime <conch-runtime> run --rm <busybox
image> … works here"). This is a real podman from Debian (``make test-deps``), with its
own storage root, a containers.conf of our own, and no network (podman's bridge setup is
not what is under test, and would leave a cni-podman0 link behind).

The containers.conf sets default_ulimits at or below this machine's hard limits: podman's
defaults ask for more than a process without CAP_SYS_RESOURCE may set. The exact command
is in the README.
"""

import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from conch.testing.rootfs import busybox_rootfs

pytestmark = pytest.mark.skipif(shutil.which("podman") is None,
                                reason="podman is not installed (run `make test-deps`)")

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@pytest.fixture
def podman(tmp_path, runtime_by_name):
    conch = runtime_by_name("conch")
    conf = tmp_path / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    runroot = tempfile.mkdtemp(prefix="cpr-")  # podman wants a runroot under 50 characters
    base = ["podman", "--root", str(tmp_path / "storage"), "--runroot", runroot,
            "--runtime", conch.binary, "--storage-driver", "overlay"]

    def run(*args, check=True, timeout=120):
        proc = subprocess.run([*base, *args], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
        return proc

    rootfs = busybox_rootfs(tmp_path / "rootfs")
    image_tar = tmp_path / "busybox.tar"
    with tarfile.open(image_tar, "w") as tar:
        tar.add(rootfs, arcname=".")
    run("import", str(image_tar), "localhost/busybox:latest")
    yield run
    run("rm", "--all", "--force", check=False)
    run("rmi", "--all", "--force", check=False)
    # podman keeps its storage's overlay home mounted; unmount before the leak check
    for path in (tmp_path / "storage" / "overlay", runroot):
        subprocess.run(["umount", "-R", str(path)], capture_output=True)
    shutil.rmtree(runroot, ignore_errors=True)


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
