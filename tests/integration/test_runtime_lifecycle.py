"""The runc CLI contract: create/start/state/kill/delete, run --detach, exec, ps,
pause/resume, list, features, spec, --console-socket and hooks.

Each test runs for every runtime (``runtime`` fixture) and is leak-checked. Containers
whose init is a shell trap the signals they expect: pid 1 of a pid namespace ignores
any signal it has no handler for, except SIGKILL/SIGSTOP sent from outside.
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

STATE_KEYS = {"ociVersion", "id", "status", "pid", "bundle"}


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def wait_for(predicate, timeout: float = 10, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """False once ``pid`` has exited, zombie or not (this machine's init reaps orphans
    lazily, so a dead container init can linger as a zombie for a second or so)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def out_mount(host_dir: Path):
    """A callable for make_bundle: bind ``host_dir`` read-write at /out."""
    def edit(spec):
        spec["mounts"].append({"destination": "/out", "type": "bind",
                               "source": str(host_dir), "options": ["rbind", "rw"]})
    return edit


@pytest.fixture
def outdir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def start_detached(runtime, bundle_dir, cid=None) -> str:
    cid = cid or runtime.new_id()
    runtime("run", "--detach", "--bundle", bundle_dir, cid, check=True)
    return cid


def stop_and_delete(runtime, cid):
    runtime("kill", cid, "KILL")
    runtime.wait_status(cid, "stopped")
    runtime("delete", cid, check=True)
    runtime.created.remove(cid)


# --- state machine ----------------------------------------------------------------------


def test_run_detach_state_shape_and_transitions(runtime, bundle):
    b = bundle(["sleep", "60"])
    cid = start_detached(runtime, b)
    st = runtime.state(cid)
    assert STATE_KEYS <= set(st), st
    assert st["id"] == cid and st["status"] == "running"
    assert st["bundle"] == str(b.resolve())
    assert isinstance(st["pid"], int) and st["pid"] > 1
    assert Path(f"/proc/{st['pid']}/cmdline").read_bytes() == b"sleep\x0060\x00"
    assert st["ociVersion"].startswith("1.")

    runtime("kill", cid, "KILL", check=True)
    st = runtime.wait_status(cid, "stopped")
    assert st["id"] == cid
    runtime("delete", cid, check=True)
    runtime.created.remove(cid)
    gone = runtime("state", cid)
    assert gone.returncode != 0
    assert cid in gone.stderr or "not exist" in gone.stderr or "not found" in gone.stderr.lower()


def test_create_start_split_with_pid_file(runtime, bundle, tmp_path, outdir):
    b = bundle(sh("echo started > /out/started; sleep 60"), out_mount(outdir))
    cid, pid_file = runtime.new_id(), tmp_path / "init.pid"
    runtime("create", "--bundle", b, "--pid-file", pid_file, cid, check=True)
    st = runtime.state(cid)
    assert st["status"] == "created"
    assert int(pid_file.read_text()) == st["pid"]
    assert not (outdir / "started").exists()  # the user process has not run yet

    runtime("start", cid, check=True)
    wait_for(lambda: (outdir / "started").exists(), what="the process to start")
    assert runtime.state(cid)["status"] == "running"
    stop_and_delete(runtime, cid)


def test_start_twice_fails(runtime, bundle):
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle(["sleep", "60"]), cid, check=True)
    runtime("start", cid, check=True)
    assert runtime("start", cid).returncode != 0
    stop_and_delete(runtime, cid)


def test_create_duplicate_id_fails(runtime, bundle):
    b = bundle(["sleep", "60"])
    cid = start_detached(runtime, b)
    dup = runtime("create", "--bundle", b, cid)
    assert dup.returncode != 0
    assert runtime.state(cid)["status"] == "running"
    stop_and_delete(runtime, cid)


def test_foreground_run_killed_by_signal(runtime, bundle):
    # `run` in the foreground exits 128+n when the init dies of signal n.
    cid = runtime.new_id()
    proc = subprocess.Popen(runtime.cmd("run", "--bundle", bundle(["sleep", "60"]), cid),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: runtime("state", cid).returncode == 0
                 and runtime.state(cid)["status"] == "running", what="running")
        runtime("kill", cid, "KILL", check=True)
        assert proc.wait(timeout=30) == 137
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Foreground run deletes the container itself.
    assert runtime("state", cid).returncode != 0
    runtime.created.remove(cid)


# --- kill -------------------------------------------------------------------------------

TRAP = ("trap 'echo TERM >> /out/sig; exit 0' TERM; trap 'echo USR1 >> /out/sig' USR1; "
        "echo ready > /out/ready; while :; do sleep 0.1; done")


@pytest.mark.parametrize("spelling", ["TERM", "SIGTERM", "15"])
def test_kill_signal_name_and_number(runtime, bundle, outdir, spelling):
    cid = start_detached(runtime, bundle(sh(TRAP), out_mount(outdir)))
    wait_for(lambda: (outdir / "ready").exists(), what="trap installed")
    runtime("kill", cid, spelling, check=True)
    runtime.wait_status(cid, "stopped")
    assert (outdir / "sig").read_text() == "TERM\n"
    runtime("delete", cid, check=True)
    runtime.created.remove(cid)


def test_kill_default_signal_is_term(runtime, bundle, outdir):
    cid = start_detached(runtime, bundle(sh(TRAP), out_mount(outdir)))
    wait_for(lambda: (outdir / "ready").exists(), what="trap installed")
    runtime("kill", cid, "USR1", check=True)
    wait_for(lambda: (outdir / "sig").exists(), what="USR1 handled")
    runtime("kill", cid, check=True)
    runtime.wait_status(cid, "stopped")
    assert (outdir / "sig").read_text() == "USR1\nTERM\n"
    runtime("delete", cid, check=True)
    runtime.created.remove(cid)


def test_kill_all(runtime, bundle, outdir):
    b = bundle(sh("sleep 60 & sleep 61 & echo ready > /out/ready; wait"), out_mount(outdir))
    cid = start_detached(runtime, b)
    wait_for(lambda: (outdir / "ready").exists(), what="children started")
    runtime("kill", "--all", cid, "KILL", check=True)
    runtime.wait_status(cid, "stopped")
    runtime("delete", cid, check=True)
    runtime.created.remove(cid)


def test_delete_force_running(runtime, bundle):
    cid = start_detached(runtime, bundle(sh("sleep 60 & sleep 61")))
    pid = runtime.state(cid)["pid"]
    assert runtime("delete", cid).returncode != 0  # not stopped: refused without --force
    runtime("delete", "--force", cid, check=True)
    runtime.created.remove(cid)
    assert runtime("state", cid).returncode != 0
    wait_for(lambda: not pid_alive(pid), what="init gone")


# --- exec -------------------------------------------------------------------------------


@pytest.fixture
def running(runtime, bundle):
    cid = start_detached(runtime, bundle(["sleep", "120"], hostname="exec-host"))
    yield cid
    runtime("delete", "--force", cid)
    if cid in runtime.created:
        runtime.created.remove(cid)


def test_exec_args_form(runtime, running):
    proc = runtime("exec", running, "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["exec-host", "sleep 120 "]


@pytest.mark.parametrize("code", [0, 7])
def test_exec_exit_code_propagated(runtime, running, code):
    assert runtime("exec", running, "sh", "-c", f"exit {code}").returncode == code


def test_exec_env_cwd_user(runtime, running):
    proc = runtime("exec", "-e", "K=V", "--cwd", "/tmp", "-u", "1000:1000", running,
                   "sh", "-c", "echo $K; pwd; id -u; id -g")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["V", "/tmp", "1000", "1000"]


def test_exec_process_json(runtime, running, tmp_path):
    process = {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [1001]},
        "args": ["sh", "-c", "id; pwd; echo $FOO; exit 4"],
        "env": ["PATH=/bin", "FOO=from-json"],
        "cwd": "/home/conch",
    }
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    proc = runtime("exec", "--process", path, running)
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout.splitlines() == [
        "uid=1000(conch) gid=1000(conch) groups=1001(conchextra)", "/home/conch", "from-json",
    ]


def test_exec_detach_pid_file(runtime, running, tmp_path):
    pid_file = tmp_path / "exec.pid"
    runtime("exec", "--detach", "--pid-file", pid_file, running, "sleep", "77", check=True)
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0077\x00"
    # Same pid namespace as the container's init.
    init = runtime.state(running)["pid"]
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")


def test_exec_into_stopped_container_fails(runtime, bundle):
    cid = start_detached(runtime, bundle(["true"]))
    runtime.wait_status(cid, "stopped")
    assert runtime("exec", cid, "true").returncode != 0
    runtime("delete", cid, check=True)
    runtime.created.remove(cid)


# --- ps, pause/resume, list -------------------------------------------------------------


def test_ps(runtime, running):
    proc = runtime("ps", running)
    assert proc.returncode == 0, proc.stderr
    pid = runtime.state(running)["pid"]
    header, *rows = proc.stdout.splitlines()
    assert "PID" in header.split()
    col = header.split().index("PID")
    assert pid in [int(r.split()[col]) for r in rows]


def test_pause_resume(runtime, running):
    runtime("pause", running, check=True)
    assert runtime.state(running)["status"] == "paused"
    # A frozen container cannot run anything new.
    runtime("resume", running, check=True)
    assert runtime.state(running)["status"] == "running"
    assert runtime("exec", running, "true").returncode == 0


def test_list(runtime, running):
    proc = runtime("list")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0][:3] == ["ID", "PID", "STATUS"]
    assert [running, str(runtime.state(running)["pid"]), "running"] in [r[:3] for r in rows]


# --- features, spec ---------------------------------------------------------------------


def test_features_is_json(runtime):
    proc = runtime("features")
    assert proc.returncode == 0, proc.stderr
    features = json.loads(proc.stdout)
    assert features["ociVersionMin"].startswith("1.")
    assert "createRuntime" in features.get("hooks", [])
    assert "bind" in features.get("mountOptions", [])


def test_spec_writes_config(runtime, tmp_path):
    proc = runtime("spec", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["ociVersion"].startswith("1.")
    assert spec["root"]["path"] == "rootfs"
    assert {"type": "pid"} in spec["linux"]["namespaces"]
    # A second `spec` must not clobber an existing config.
    assert runtime("spec", cwd=tmp_path).returncode != 0


# --- console socket ---------------------------------------------------------------------


def recv_pty_master(server: socket.socket, timeout: float = 20) -> int:
    server.settimeout(timeout)
    conn, _ = server.accept()
    with conn:
        conn.settimeout(timeout)
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
    assert len(fds) == 1, "no fd in SCM_RIGHTS message"
    return fds[0]


def read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    buf, deadline = b"", time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the slave side closed
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_console_socket_pty(runtime, bundle, tmp_path):
    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    cid = runtime.new_id()
    b = bundle(["sh"], terminal=True)
    # `create` blocks until the runtime has sent the master, so accept concurrently.
    creator = subprocess.Popen(
        runtime.cmd("create", "--bundle", b, "--console-socket", sock_path, cid),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        master = recv_pty_master(server)
    finally:
        server.close()
        _, err = creator.communicate(timeout=30)
    assert creator.returncode == 0, err
    try:
        runtime("start", cid, check=True)
        os.write(master, b"tty; echo marker-$((40+2)); exit 0\n")
        out = read_until(master, b"marker-42")
        assert b"marker-42" in out, out
        text = out.decode(errors="replace")
        assert "/dev/pts/0" in text or "/dev/console" in text, text
        assert "\r\n" in text  # a real tty: ONLCR turned \n into \r\n
        runtime.wait_status(cid, "stopped")
    finally:
        os.close(master)
    runtime("delete", cid, check=True)
    runtime.created.remove(cid)


def test_terminal_without_console_socket_fails(runtime, bundle):
    cid = runtime.new_id()
    proc = runtime("create", "--bundle", bundle(["sh"], terminal=True), cid)
    assert proc.returncode != 0
    runtime.created.remove(cid)


# --- hooks -------------------------------------------------------------------------------

HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")


def test_hooks_receive_state_on_stdin(runtime, bundle, tmp_path):
    hookdir = tmp_path / "hooks"
    hookdir.mkdir()

    def add_hooks(spec):
        # Host-side hooks run in the runtime's namespaces. createContainer runs in the
        # container's mount namespace before pivot_root, where host paths still resolve;
        # startContainer runs after it, so it writes through the /out bind mount.
        spec["mounts"].append({"destination": "/out", "type": "bind",
                               "source": str(hookdir), "options": ["rbind", "rw"]})
        spec["hooks"] = {}
        for name in HOOKS:
            inside = name == "startContainer"
            target = f"/out/{name}.json" if inside else str(hookdir / f"{name}.json")
            spec["hooks"][name] = [{"path": "/bin/sh",
                                    "args": ["sh", "-c", f"cat > {target}"],
                                    "env": ["PATH=/bin:/usr/bin"], "timeout": 10}]

    b = bundle(["true"], add_hooks)
    cid = runtime.new_id()
    proc = runtime.run(b, cid=cid)
    assert proc.returncode == 0, proc.stderr
    runtime.created.remove(cid)
    states = {}
    for name in HOOKS:
        path = hookdir / f"{name}.json"
        assert path.exists(), f"{name} hook did not run"
        states[name] = json.loads(path.read_text())
    for name, st in states.items():
        assert st["id"] == cid, (name, st)
        assert st["bundle"] == str(b.resolve()), (name, st)
        assert STATE_KEYS - {"pid"} <= set(st), (name, st)
    # runtime-spec: createRuntime/createContainer/startContainer/poststart see the
    # container's pid; createRuntime runs while the container is still "creating".
    for name in ("createRuntime", "createContainer", "startContainer", "poststart"):
        assert states[name]["pid"] > 0, (name, states[name])
    assert states["createRuntime"]["status"] == "creating"
    assert states["poststop"]["status"] == "stopped"
