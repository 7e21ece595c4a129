"""Second review of the C front (shim/runtime/*.c) after the first review's fixes, the pty
code (e272ec6) and kill/delete in C (5fa1129). Each test shows one place where the C path
differed from the Python runtime (conch/runtime/, the reference); both are fixed (the
front now connects to --console-socket only when its init asks, after the program's
lookup; a delete that cannot remove the state dir is Python's to finish) and the tests
hold the fixes in place.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from conch.testing.bundles import make_bundle
from conch.testing.runtime_front import env_for, split_front

pytestmark = pytest.mark.root


@pytest.fixture
def conch(runtime_by_name):
    from conch.testing.runtime_front import front_binary_or_skip

    return front_binary_or_skip(runtime_by_name("conch"))


class OneShotConsole:
    """A --console-socket peer as containerd's shim and conmon are: it accepts ONE
    connection, takes the pty master from it, and stops listening."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.masters: list[int] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            _msg, fds, _, _ = socket.recv_fds(conn, 4096, 4)
            self.masters += fds
        self.sock.close()

    def close(self):
        self.sock.close()
        self.thread.join(5)
        for fd in self.masters:
            os.close(fd)
        self.path.unlink(missing_ok=True)


def create_both_with_one_shot_console(conch, b: Path, tmp_path: Path) -> dict:
    """``create`` of bundle ``b`` through Python, then the front, each with a one-shot
    console peer: {path: (exit code, stderr without the front's line)}."""
    got = {}
    for path in ("python", "front"):
        peer = OneShotConsole(tmp_path / f"{path}.sock")
        try:
            proc = conch("create", "--bundle", b, "--console-socket", peer.path, conch.new_id(),
                         env=env_for(path))
        finally:
            peer.close()
        got[path] = (proc.returncode, split_front(proc.stderr)[1].strip())
    return got


# Was: a C init failure after the pty master was sent was redone by Python, which
# connected to --console-socket a second time (a one-shot peer refused it).
def test_console_socket_failed_init_is_reported_not_reconnected(conch, tmp_path):
    b = make_bundle(tmp_path / "b", ["/nonexistent-r2"], terminal=True)
    got = create_both_with_one_shot_console(conch, b, tmp_path)
    assert got["python"][0] != 0 and "/nonexistent-r2" in got["python"][1], got
    assert got["front"] == got["python"], got


# Was: verbs.c's delete exited 0 while a stray directory kept the state dir.
def test_delete_that_cannot_remove_the_state_dir_fails(conch, tmp_path):
    b = make_bundle(tmp_path / "b", ["true"])
    got = {}
    for path in ("python", "front"):
        cid = conch.new_id()
        conch("run", "--detach", "--bundle", b, cid, env=env_for("python"), check=True)
        conch.wait_status(cid, "stopped")
        stray = conch.root / cid / "stray-dir"
        stray.mkdir()
        proc = conch("delete", cid, env=env_for(path))
        got[path] = (proc.returncode, (conch.root / cid).exists())
        stray.rmdir()
        conch("delete", "--force", cid, env=env_for("python"))
        shutil.rmtree(conch.root / cid, ignore_errors=True)  # what delete leaves of it
    assert got["python"] == (1, True), got
    assert got["front"] == got["python"], got


def test_image_console_symlink_is_not_followed(conch, tmp_path):
    """The pty slave is bound onto /dev/console opened without following links, from the
    slave's own fd (TIOCGPTPEER), never by path (runc's CVE-2025-52565): an image whose
    /dev/console is a symlink (no tmpfs on /dev) is refused by both paths in the same
    words, and the file it points at is never mounted over."""
    def image_dev(spec):  # the image's own /dev (no tmpfs there), nothing to mask with
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev"]
        spec["linux"]["maskedPaths"] = []

    b = make_bundle(tmp_path / "b", ["true"], image_dev, terminal=True)
    victim = b / "rootfs" / "etc" / "console-victim"
    victim.write_text("untouched\n")
    console = b / "rootfs" / "dev" / "console"
    if console.exists() or console.is_symlink():
        console.unlink()
    console.symlink_to("/etc/console-victim")
    ptmx = b / "rootfs" / "dev" / "ptmx"  # create_devices makes it only on a tmpfs /dev
    if not (ptmx.exists() or ptmx.is_symlink()):
        ptmx.symlink_to("pts/ptmx")
    got = create_both_with_one_shot_console(conch, b, tmp_path)
    assert got["python"][0] != 0 and "neither a file nor a device" in got["python"][1], got
    assert got["front"] == got["python"], got
    assert victim.read_text() == "untouched\n"
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if "console-victim" in line]
