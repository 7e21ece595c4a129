"""conch-runtime killed with SIGKILL in the middle of ``create`` leaves nothing that
``delete --force`` cannot clean (issue: "a runtime killed with -9 mid-create leaves
nothing that delete --force cannot clean"). Also: a failed ``create`` cleans up itself.

The runtime is stopped at a known point by a createRuntime hook that blocks until the
test releases it (a fifo), so the kill lands while the container's init exists, is in
its cgroup, and waits for the hook: the worst moment (state, cgroup, fifo, processes).
"""

import os
import signal
import subprocess
import time

import pytest

from conch.testing.bundles import make_bundle


def _wait(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def conch(runtime_by_name):
    return runtime_by_name("conch")


def test_sigkill_mid_create_then_delete_force_cleans(conch, tmp_path):
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    started = tmp_path / "hook-started"

    def blocking_hook(spec):
        # the hook announces itself, then blocks reading the fifo until released
        spec["hooks"] = {"createRuntime": [{
            "path": "/bin/sh", "args": ["sh", "-c", f"touch {started}; cat {gate} >/dev/null"]}]}

    bundle = make_bundle(tmp_path / "bundle", ["sleep", "100"], blocking_hook)
    cid = conch.new_id()
    proc = subprocess.Popen(conch.cmd("create", "--bundle", bundle, cid),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait(started.exists, what="the createRuntime hook to start")
        state_dir = conch.root / cid
        assert (state_dir / "state.json").exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        # release the orphaned hook (it would otherwise block on the fifo forever)
        fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK) if started.exists() else None
        if fd is not None:
            os.close(fd)
    st = conch.state(cid)
    assert st["status"] in ("creating", "stopped"), st
    conch("delete", "--force", cid, check=True)
    conch.created.remove(cid)
    assert not (conch.root / cid).exists()
    # the no_leaks fixture (through runtime_by_name) checks cgroups, mounts, processes


def test_failed_create_leaves_nothing(conch, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", ["/does/not/exist"])
    cid = conch.new_id()
    proc = conch("create", "--bundle", bundle, cid)
    assert proc.returncode == 1
    assert 'exec: "/does/not/exist"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (conch.root / cid).exists()
    conch.created.remove(cid)


def test_log_json_error_for_conmon(conch, tmp_path):
    """podman/conmon read the runtime's error back from --log in json format."""
    import json

    log = tmp_path / "runtime.log"
    bundle = make_bundle(tmp_path / "bundle", ["/does/not/exist"])
    cid = conch.new_id()
    proc = subprocess.run([conch.binary, "--root", str(conch.root), "--log", str(log),
                           "--log-format", "json", "create", "--bundle", str(bundle), cid],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    conch.created.remove(cid)
    assert proc.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "/does/not/exist" in entry["msg"] and entry["time"]
