"""conch-shim against the real kernel and conch-runtime: ready line, json-file logs and
rotation, exit files, surviving its parent, attach (pipes and tty), resize, runtime
errors, bad clients, slow clients, and what one shim costs in memory.

Every test runs through ``runtime_by_name("conch")``: the container is deleted with
``conch-runtime delete --force`` afterwards and the ``no_leaks`` check sees no process
(the shim included: it carries the session marker in its environment), cgroup or mount.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conch.errors import FailedPrecondition, InvalidArgument, Unavailable
from conch.shim import client
from conch.testing.bundles import make_bundle

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "build" / "conch-shim"
pytestmark = pytest.mark.root

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture(scope="session")
def shim_bin() -> str:
    """build/conch-shim, (re)built with the Makefile's rule when missing or stale."""
    sources = list((REPO / "shim").glob("*.c"))
    if not SHIM.exists() or any(s.stat().st_mtime > SHIM.stat().st_mtime for s in sources):
        proc = subprocess.run(["make", "-s", "build/conch-shim"], cwd=REPO,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"building conch-shim failed:\n{proc.stdout}{proc.stderr}")
    return str(SHIM)


@dataclass
class Shim:
    cid: str
    dir: Path
    bundle: Path
    info: client.ShimInfo | None = None

    @property
    def socket(self) -> Path:
        return self.dir / "shim.sock"

    @property
    def log(self) -> Path:
        return self.dir / "json.log"

    @property
    def exit_file(self) -> Path:
        return self.dir / "exit.json"

    def entries(self, path: Path | None = None) -> list[dict]:
        return [json.loads(line) for line in (path or self.log).read_text().splitlines()]

    def wait_exit(self, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while (result := client.read_exit(self.exit_file)) is None:
            assert time.monotonic() < deadline, f"no exit file for {self.cid}"
            time.sleep(0.02)
        return result

    def wait_shim_gone(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while _alive(self.info.shim_pid):
            assert time.monotonic() < deadline, f"shim {self.info.shim_pid} still running"
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def shim_factory(tmp_path, runtime_by_name, shim_bin):
    """``new(args, tty=, stdin=, start=True, **spawn_kw) -> Shim`` (started unless
    ``start=False``), in a fresh dir with a fresh busybox bundle. At teardown (before
    the leak check) every container is deleted, as the engine would, and every shim must
    have exited."""
    rt = runtime_by_name("conch")
    counter = iter(range(100))
    shims: list[Shim] = []

    def new(args, *, tty=False, stdin=False, start=True, spawn_kw=None, **changes) -> Shim:
        d = tmp_path / f"s{next(counter)}"
        d.mkdir()
        shim = Shim(rt.new_id(), d, make_bundle(d / "bundle", args, terminal=tty, **changes))
        shim.spawn_kw = dict(id=shim.cid, bundle=shim.bundle, runtime=rt.binary,
                             runtime_root=rt.root, exit_file=shim.exit_file,
                             socket_path=shim.socket, log_path=shim.log, tty=tty, stdin=stdin,
                             debug_log=d / "debug.log", binary=shim_bin, **(spawn_kw or {}))
        shims.append(shim)
        if start:
            shim.info = client.spawn(**shim.spawn_kw)
        return shim

    yield new
    for shim in shims:
        rt("delete", "--force", shim.cid, timeout=30)
    for shim in shims:
        if shim.info is not None:
            shim.wait_shim_gone()


def test_ready_logs_and_exit(shim_factory):
    shim = shim_factory(["sh", "-c", "echo out; echo err >&2; printf 'no newline'"])
    assert shim.info.pid > 0 and shim.info.shim_pid > 0
    assert shim.info.shim_pid != os.getpid()
    result = shim.wait_exit()
    assert result["exit_code"] == 0 and result["signal"] is None
    assert TIME_RE.match(result["exited_at"])
    shim.wait_shim_gone()
    assert not shim.socket.exists()

    entries = shim.entries()
    by_stream = {s: [e["log"] for e in entries if e["stream"] == s] for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": ["out\n", "no newline"], "stderr": ["err\n"]}
    now = datetime.now(timezone.utc)
    for e in entries:
        assert set(e) == {"log", "stream", "time"}
        assert TIME_RE.match(e["time"]), e["time"]
        stamp = datetime.fromisoformat(e["time"][:26] + "+00:00")  # to microseconds
        assert abs((now - stamp).total_seconds()) < 60
    # json-file's exact bytes: compact, keys in docker's order.
    first = shim.log.read_text().splitlines()[0]
    assert re.match(r'^\{"log":"(out|err)\\n","stream":"std(out|err)","time":"[^"]+"\}$', first)


def test_json_escaping(shim_factory):
    shim = shim_factory(["sh", "-c", r"""printf 'a"b\\c\t<&>\001\n'; printf '\377\n'"""])
    shim.wait_exit()
    raw = shim.log.read_text()
    assert r'"log":"a\"b\\c\t\u003c\u0026\u003e\u0001\n"' in raw
    assert [e["log"] for e in shim.entries()] == ['a"b\\c\t<&>\x01\n', "\ufffd\n"]


def test_exit_code(shim_factory):
    shim = shim_factory(["sh", "-c", "exit 3"])
    result = shim.wait_exit()
    assert (result["exit_code"], result["signal"]) == (3, None)


def test_exit_by_sigkill(shim_factory, runtime_by_name):
    shim = shim_factory(["sleep", "100"])
    assert client.status(shim.socket) == {"pid": shim.info.pid, "running": True}
    runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
    result = shim.wait_exit()
    assert (result["exit_code"], result["signal"]) == (137, 9)
    shim.wait_shim_gone()


def test_long_line_is_split_into_partial_entries(shim_factory):
    # 40000 bytes then "end\n": docker flushes each full 16 KiB buffer as a partial
    # entry (no "\n"), and the newline ends the entry holding the rest.
    shim = shim_factory(["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo end"])
    shim.wait_exit()
    logs = [e["log"] for e in shim.entries()]
    assert [len(x) for x in logs] == [16384, 16384, 40000 - 32768 + 4]
    assert "".join(logs) == "x" * 40000 + "end\n"


def test_log_rotation(shim_factory):
    script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"
    shim = shim_factory(["sh", "-c", script],
                        spawn_kw=dict(log_max_size=8192, log_max_files=3))
    shim.wait_exit()
    files = sorted(p.name for p in shim.dir.iterdir() if p.name.startswith("json.log"))
    assert files == ["json.log", "json.log.1", "json.log.2"]
    lines = []
    for name in ("json.log.2", "json.log.1", "json.log"):
        path = shim.dir / name
        assert path.stat().st_size <= 8192
        lines += [e["log"] for e in shim.entries(path)]
    # The oldest were dropped; what is kept is contiguous and ends with the last line.
    assert lines[-1] == "line-2999\n"
    first = int(lines[0][5:-1])
    assert lines == [f"line-{i}\n" for i in range(first, 3000)]
    assert first > 0


def test_log_single_file_truncates(shim_factory):
    script = "i=0; while [ $i -lt 500 ]; do echo line-$i; i=$((i+1)); done"
    shim = shim_factory(["sh", "-c", script], spawn_kw=dict(log_max_size=2048, log_max_files=1))
    shim.wait_exit()
    assert [p.name for p in shim.dir.iterdir() if p.name.startswith("json.log")] == ["json.log"]
    assert shim.log.stat().st_size <= 2048
    assert shim.entries()[-1]["log"] == "line-499\n"


SPAWNER = """
import json, sys, time
from conch.shim import client
info = client.spawn(**json.loads(sys.argv[1]))
print(json.dumps({"pid": info.pid, "shim_pid": info.shim_pid}), flush=True)
time.sleep(600)
"""


def test_survives_parent_sigkill(shim_factory):
    shim = shim_factory(["sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; exit 5"],
                        start=False)
    kw = {k: str(v) if isinstance(v, Path) else v for k, v in shim.spawn_kw.items()}
    parent = subprocess.Popen([sys.executable, "-c", SPAWNER, json.dumps(kw)],
                              stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    shim.info = client.ShimInfo(**info)
    assert _alive(info["shim_pid"])
    ppid = int(Path(f"/proc/{info['shim_pid']}/stat").read_text().rpartition(")")[2].split()[1])
    assert ppid != parent.pid
    assert client.status(shim.socket)["running"] is True
    (shim.bundle / "rootfs" / "go").touch()
    assert shim.wait_exit()["exit_code"] == 5
    shim.wait_shim_gone()


def _frames_until(sock, want: bytes, timeout: float = 10) -> list[tuple[int, bytes]]:
    sock.settimeout(timeout)
    got: list[tuple[int, bytes]] = []
    for frame in client.read_frames(sock):
        got.append(frame)
        if want in b"".join(p for _, p in got):
            break
    return got


def test_attach_stdin_and_multiplexed_output(shim_factory):
    shim = shim_factory(["sh", "-c", "while read l; do echo got:$l; echo err:$l >&2; done"],
                        stdin=True)
    watcher = client.attach(shim.socket, stdin=False, stdout=True, stderr=False)
    sock = client.attach(shim.socket, stdin=True, stdout=True, stderr=True, stdin_once=True)
    try:
        client.status(shim.socket)  # a barrier: both attaches are registered now
        sock.sendall(b"one\ntwo\n")
        frames = _frames_until(sock, b"err:two\n")
        out = b"".join(p for s, p in frames if s == 1)
        err = b"".join(p for s, p in frames if s == 2)
        assert out == b"got:one\ngot:two\n"
        assert err == b"err:one\nerr:two\n"
        sock.shutdown(socket.SHUT_WR)  # stdin_once: the container's stdin closes
        result = shim.wait_exit()
        assert result["exit_code"] == 0
        assert list(client.read_frames(sock)) == []  # hung up at exit
        watched = list(client.read_frames(watcher))
        assert {s for s, _ in watched} == {1}
        assert b"".join(p for _, p in watched) == b"got:one\ngot:two\n"
    finally:
        sock.close()
        watcher.close()
    logs = [(e["stream"], e["log"]) for e in shim.entries()]
    assert ("stdout", "got:two\n") in logs and ("stderr", "err:one\n") in logs


def test_attach_without_stdin_once_keeps_stdin_open(shim_factory, runtime_by_name):
    shim = shim_factory(["sh", "-c", "while read l; do echo got:$l; done; echo eof"], stdin=True)
    sock = client.attach(shim.socket, stdin=True, stdout=True, stderr=False)
    sock.sendall(b"a\n")
    assert b"got:a" in b"".join(p for _, p in _frames_until(sock, b"got:a"))
    sock.shutdown(socket.SHUT_WR)
    sock.close()
    time.sleep(0.3)
    assert client.status(shim.socket)["running"] is True
    second = client.attach(shim.socket, stdin=True, stdout=True, stdin_once=True)
    second.sendall(b"b\n")
    second.shutdown(socket.SHUT_WR)
    data = b"".join(p for _, p in client.read_frames(second))
    second.close()
    assert data == b"got:b\neof\n"
    assert shim.wait_exit()["exit_code"] == 0


def test_tty_attach_and_resize(shim_factory):
    shim = shim_factory(["sh", "-c", "tty; while [ ! -e /go ]; do sleep 0.05; done; stty size"],
                        tty=True, stdin=True)
    sock = client.attach(shim.socket, stdin=False, stdout=True, stderr=True)
    sock.settimeout(10)
    client.resize(shim.socket, 40, 100)  # also a barrier: the attach is registered
    (shim.bundle / "rootfs" / "go").touch()
    raw = b""
    while chunk := sock.recv(4096):
        raw += chunk
    sock.close()
    assert raw.endswith(b"40 100\r\n")  # raw pty bytes, no frame headers
    assert shim.wait_exit()["exit_code"] == 0
    assert [(e["stream"], e["log"]) for e in shim.entries()] == [
        ("stdout", "/dev/pts/0\r\n"), ("stdout", "40 100\r\n")]


def test_tty_stdin(shim_factory):
    shim = shim_factory(["sh", "-c", "read l; echo got:$l"], tty=True, stdin=True)
    sock = client.attach(shim.socket, stdin=True, stdout=True, stderr=True)
    sock.settimeout(10)
    sock.sendall(b"hello\r")
    raw = b""
    while chunk := sock.recv(4096):
        raw += chunk
    sock.close()
    assert b"got:hello\r\n" in raw  # the pty echoes "hello" too
    assert shim.wait_exit()["exit_code"] == 0


def test_resize_without_tty_fails(shim_factory, runtime_by_name):
    shim = shim_factory(["sleep", "100"])
    with pytest.raises(FailedPrecondition, match="no tty"):
        client.resize(shim.socket, 10, 10)
    runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
    shim.wait_exit()


def test_runtime_error_is_reported(shim_factory, runtime_by_name):
    shim = shim_factory(["/nonexistent"], start=False)
    with pytest.raises((FailedPrecondition, InvalidArgument), match="/nonexistent") as info:
        client.spawn(**shim.spawn_kw)
    assert isinstance(info.value, InvalidArgument)  # docker: 400, exit code 127
    assert not shim.socket.exists()
    assert not shim.exit_file.exists()
    # The shim deleted what the runtime had half made.
    assert runtime_by_name("conch")("state", shim.cid).returncode != 0


def test_bad_flags_are_reported(shim_bin, tmp_path):
    with pytest.raises(InvalidArgument, match="--log-max-files wants a count"):
        client.spawn(id="x", bundle=tmp_path, runtime="/bin/false", runtime_root=tmp_path,
                     exit_file=tmp_path / "exit", socket_path=tmp_path / "sock",
                     log_path=tmp_path / "log", log_max_files=0, binary=shim_bin)
    proc = subprocess.run([shim_bin, "--id", "x"], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {"error": "--bundle is required"}
    proc = subprocess.run([shim_bin, "--bogus"], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2 and "usage: conch-shim" in json.loads(proc.stdout)["error"]
    with pytest.raises(FailedPrecondition, match="open log .*/nodir/log: No such file"):
        client.spawn(id="x", bundle=tmp_path, runtime="/bin/false", runtime_root=tmp_path,
                     exit_file=tmp_path / "exit", socket_path=tmp_path / "sock",
                     log_path=tmp_path / "nodir" / "log", binary=shim_bin)
    assert list(tmp_path.iterdir()) == []


def test_bad_clients_do_not_hurt(shim_factory, runtime_by_name):
    shim = shim_factory(["sleep", "100"])
    bad = [b"nonsense\n", b'{"type": "attach", "stdin": [1]}\n', b'{"type":"bogus"}\n',
           b"{" + b"x" * 10000 + b"\n", b'{"type":"resize","height":-1,"width":5}\n',
           b'{"type":"status"', b"\xff\xfe\n", b""]
    for payload in bad:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(shim.socket))
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                while s.recv(4096):
                    pass
            except (BrokenPipeError, ConnectionResetError):
                pass
    assert client.status(shim.socket) == {"pid": shim.info.pid, "running": True}
    runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
    assert shim.wait_exit()["exit_code"] == 137


def test_slow_client_is_dropped_and_log_gets_everything(shim_factory):
    total = 4 * 1024 * 1024
    # The container waits for /go so that the client is attached before the output.
    shim = shim_factory(["sh", "-c", f"while [ ! -e /go ]; do sleep 0.05; done; "
                                     f"head -c {total} /dev/zero | tr '\\0' y"],
                        spawn_kw=dict(log_max_size=0))
    slow = client.attach(shim.socket, stdout=True, stderr=True)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.status(shim.socket)  # a barrier: the attach is registered now
    (shim.bundle / "rootfs" / "go").touch()
    assert shim.wait_exit(timeout=30)["exit_code"] == 0  # never blocked by the client
    received = 0
    slow.settimeout(10)
    try:
        while chunk := slow.recv(65536):
            received += len(chunk)
    except ConnectionResetError:
        pass
    slow.close()
    assert received < total  # disconnected once 1 MiB behind
    assert sum(len(e["log"]) for e in shim.entries()) == total


def test_shim_memory(shim_factory, runtime_by_name):
    shim = shim_factory(["sleep", "100"])
    pid = shim.info.shim_pid
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    pss_kib = int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1))
    private_kib = sum(int(v) for v in re.findall(r"^Private_\w+:\s+(\d+) kB", rollup, re.M))
    print(f"\nconch-shim {pid}: VmRSS {rss_kib} KiB, PSS {pss_kib} KiB, "
          f"private {private_kib} KiB")
    assert rss_kib < 2048
    assert pss_kib < 2048
    runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
    shim.wait_exit()


def test_shim_sigkill_leaves_container_running(shim_factory, runtime_by_name):
    """Documented behaviour: the engine must notice a dead shim (no socket answer, no
    exit file) and take over with the runtime's state/kill/delete."""
    shim = shim_factory(["sleep", "100"])
    os.kill(shim.info.shim_pid, signal.SIGKILL)
    shim.wait_shim_gone()
    assert runtime_by_name("conch").state(shim.cid)["status"] == "running"
    assert _alive(shim.info.pid)
    assert client.read_exit(shim.exit_file) is None
    with pytest.raises(Unavailable, match="refused"):
        client.status(shim.socket)  # the socket file is left, nobody listens


# -- warm mode (conch.engine.containers.warmpool): the runtime starts before the container is known --

def _warm_pids(marker: str) -> list[int]:
    """The warm shim named by ``marker`` (its --runtime-root) and its children."""
    shims, parents = [], {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
            if marker in cmd and "--warm" in cmd:
                shims.append(int(entry))
    return shims + [pid for pid, ppid in parents.items() if ppid in shims]


@pytest.mark.parametrize("tty", [False, True])
def test_warm_shim_runs_a_container_like_a_cold_one(shim_factory, runtime_by_name, tty):
    rt = runtime_by_name("conch")
    warm = client.spawn_warm(runtime=rt.binary, runtime_root=rt.root, binary=str(SHIM))
    # the waiting runtime is niced (it warms up while other containers start); the
    # container must run at the shim's priority: field 19 of /proc/self/stat is 0
    script = "echo out; echo err >&2; echo nice=$(cut -d' ' -f19 /proc/self/stat); exit 3"
    shim = shim_factory(["sh", "-c", script] if not tty else ["tty"], tty=tty, start=False)
    shim.info = client.spawn(**shim.spawn_kw, warm=warm)
    assert shim.wait_exit()["exit_code"] == (0 if tty else 3)
    shim.wait_shim_gone()
    logs = [(e["stream"], e["log"]) for e in shim.entries()]
    if tty:
        assert logs == [("stdout", "/dev/pts/0\r\n")]
    else:
        assert sorted(logs) == [("stderr", "err\n"), ("stdout", "nice=0\n"), ("stdout", "out\n")]


def test_warm_shim_reports_runtime_errors(shim_factory, runtime_by_name):
    rt = runtime_by_name("conch")
    warm = client.spawn_warm(runtime=rt.binary, runtime_root=rt.root, binary=str(SHIM))
    shim = shim_factory(["/nonexistent"], start=False)
    with pytest.raises(InvalidArgument, match="nonexistent"):
        client.spawn(**shim.spawn_kw, warm=warm)


def test_discarded_warm_shim_and_its_runtime_exit(runtime_by_name, shim_bin):
    rt = runtime_by_name("conch")
    warm = client.spawn_warm(runtime=rt.binary, runtime_root=rt.root, binary=shim_bin)
    deadline = time.monotonic() + 10
    while len(_warm_pids(str(rt.root))) < 2:  # the shim, and its runtime once exec'd
        assert time.monotonic() < deadline, "the warm shim's runtime never started"
        time.sleep(0.02)
    assert warm.alive()
    warm.close()  # what conchd's exit does too
    while _warm_pids(str(rt.root)):
        assert time.monotonic() < deadline, "a discarded warm shim is still running"
        time.sleep(0.02)


def test_dead_warm_shim_is_told_apart_from_a_failed_start(shim_factory, runtime_by_name):
    """A warm shim killed before activation raises WarmShimGone (nothing started: the
    engine may start a cold shim for the same id); one that got its options is never
    retried that way."""
    rt = runtime_by_name("conch")
    warm = client.spawn_warm(runtime=rt.binary, runtime_root=rt.root, binary=str(SHIM))
    deadline = time.monotonic() + 10
    while len(_warm_pids(str(rt.root))) < 2:
        assert time.monotonic() < deadline, "the warm shim's runtime never started"
        time.sleep(0.02)
    for pid in _warm_pids(str(rt.root)):
        os.kill(pid, signal.SIGKILL)
    while warm.alive():
        assert time.monotonic() < deadline, "the killed warm shim still looks alive"
        time.sleep(0.02)
    shim = shim_factory(["true"], start=False)
    with pytest.raises(client.WarmShimGone):
        client.spawn(**shim.spawn_kw, warm=warm)



@pytest.mark.parametrize("full_at", ["exit", "start"])
def test_exit_record_on_a_full_disk(shim_factory, runtime_by_name, tmp_path, full_at):
    """ENOSPC (issue 15): the exit record is reserved at start, so a disk that fills
    while the container runs still gets its exit code; a disk full from the start gets
    no record at all (the engine says "exit status unknown"), never an empty one (the
    old shim renamed its empty temp file into place)."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    exit_file = small / "exit.json"

    def fill():
        with open(small / "filler", "ab", buffering=0) as f:
            with pytest.raises(OSError) as err:
                while True:
                    f.write(b"x" * 4096)
            assert err.value.errno == 28  # ENOSPC

    try:
        if full_at == "start":
            fill()
        shim = shim_factory(["sleep", "100"], start=False)
        shim.spawn_kw["exit_file"] = exit_file
        shim.info = client.spawn(**shim.spawn_kw)
        if full_at == "exit":
            fill()
        runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
        shim.wait_shim_gone()
        if full_at == "exit":
            result = client.read_exit(exit_file)
            assert (result["exit_code"], result["signal"]) == (137, 9)
            assert TIME_RE.match(result["exited_at"])
        else:
            assert not exit_file.exists(), repr(exit_file.read_bytes())
        assert sorted(p.name for p in small.iterdir()) == sorted(
            ["filler"] + (["exit.json"] if full_at == "exit" else []))
    finally:
        subprocess.run(["umount", "-l", str(small)], check=True)


# -- exec through the shim ({"type":"exec"}): the process is the shim's child, not a runtime's --

def _exec_files(shim: Shim, args: list[str], **process) -> dict[str, Path]:
    spec = json.loads((shim.bundle / "config.json").read_text())
    proc = {**spec["process"], "args": args, "terminal": False, **process}
    files = {"process": shim.dir / "exec.json", "pid_file": shim.dir / "exec.pid",
             "exit_file": shim.dir / "exec-exit.json"}
    files["process"].write_text(json.dumps(proc))
    return files


def _read_reply(sock: socket.socket, timeout: float = 30) -> dict:
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, f"the shim hung up after {data!r}"
        data += chunk
    return client.parse_exec_reply(data)


def _ppid(pid: int) -> int:
    return int(re.search(r"^PPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.add(int(entry))
    return out


def test_exec_runs_as_the_shims_child(shim_factory, runtime_by_name):
    shim = shim_factory(["sleep", "100"])
    files = _exec_files(shim, ["sh", "-c", "echo out; echo err >&2; read l; echo got:$l; exit 7"])
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sock = client.exec_request(shim.socket, stdio=(in_r, out_w, err_w), **files)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    try:
        pid = _read_reply(sock)["pid"]
        # the runtime (Python) has exited: the process is the shim's child, and the shim
        # has no other child than the container's init
        assert _ppid(pid) == shim.info.shim_pid
        assert _children(shim.info.shim_pid) == {shim.info.pid, pid}
        os.write(in_w, b"hi\n")
        os.close(in_w)
        with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
            assert out.read() == b"out\ngot:hi\n"
            assert err.read() == b"err\n"
        done = _read_reply(sock)
        assert done["exit_code"] == 7 and done["signal"] is None and done["pid"] == pid
        assert TIME_RE.match(done["exited_at"])
        assert sock.recv(10) == b""  # then the shim hangs up
        assert client.read_exit(files["exit_file"]) == done
        assert not files["pid_file"].exists()
        assert not Path(f"/proc/{pid}").exists()  # reaped: no zombie
    finally:
        sock.close()
    assert client.status(shim.socket)["running"] is True  # the container goes on
    runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
    assert shim.wait_exit()["exit_code"] == 137


def test_exec_outlives_its_asker_and_dies_with_the_container(shim_factory, runtime_by_name):
    """The engine's connection is gone (conchd killed): the process runs on as the shim's
    child, its exit is recorded; the container's end kills what is left (pid namespace)."""
    shim = shim_factory(["sleep", "100"])
    files = _exec_files(shim, ["sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; exit 5"])
    null = os.open("/dev/null", os.O_RDWR)
    sock = client.exec_request(shim.socket, stdio=(null, null, null), **files)
    os.close(null)
    pid = _read_reply(sock)["pid"]
    sock.close()
    time.sleep(0.2)
    assert _ppid(pid) == shim.info.shim_pid
    (shim.bundle / "rootfs" / "go").touch()
    deadline = time.monotonic() + 15
    while (record := client.read_exit(files["exit_file"])) is None:
        assert time.monotonic() < deadline, "no exec exit record"
        time.sleep(0.02)
    assert record["exit_code"] == 5 and record["pid"] == pid
    assert not Path(f"/proc/{pid}").exists()
    # a second one, killed with the container
    files = _exec_files(shim, ["sleep", "100"])
    files["exit_file"] = shim.dir / "exec2-exit.json"
    null = os.open("/dev/null", os.O_RDWR)
    sock = client.exec_request(shim.socket, stdio=(null, null, null), **files)
    os.close(null)
    try:
        pid = _read_reply(sock)["pid"]
        runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
        done = _read_reply(sock)
        assert done["exit_code"] == 137 and done["signal"] == 9 and done["pid"] == pid
    finally:
        sock.close()
    assert shim.wait_exit()["exit_code"] == 137
    assert client.read_exit(files["exit_file"])["exit_code"] == 137


def test_exec_runtime_failure_is_the_exit(shim_factory, runtime_by_name):
    shim = shim_factory(["sleep", "100"])
    files = _exec_files(shim, ["/nonexistent"])
    null = os.open("/dev/null", os.O_RDWR)
    err_r, err_w = os.pipe()
    sock = client.exec_request(shim.socket, stdio=(null, null, err_w), **files)
    os.close(null)
    os.close(err_w)
    try:
        done = _read_reply(sock)  # no {"pid"} first: it never ran
        assert done["exit_code"] == 127 and done["pid"] == 0
        with os.fdopen(err_r, "rb") as err:
            assert b"/nonexistent" in err.read()  # the runtime's message, on its stderr
    finally:
        sock.close()
    # requests it refuses: no fds, missing paths
    bare = socket.socket(socket.AF_UNIX)
    bare.connect(str(shim.socket))
    bare.sendall(json.dumps({"type": "exec", **{k: str(v) for k, v in files.items()}}).encode() + b"\n")
    with pytest.raises(FailedPrecondition, match="SCM_RIGHTS"):
        _read_reply(bare)
    bare.close()
    assert client.status(shim.socket)["running"] is True
    runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
    shim.wait_exit()


def test_exec_output_is_drained_once_the_asker_is_gone(shim_factory, runtime_by_name):
    """The engine hands the shim its own read ends too (``keep``): while the engine is
    connected the shim leaves them alone; once the engine is gone (killed) the shim
    reads and drops what comes, so a process that goes on writing neither dies of
    SIGPIPE (exit 141) nor blocks on a full pipe."""
    shim = shim_factory(["sleep", "100"])
    files = _exec_files(shim, ["sh", "-c", "i=0; until [ -e /go ]; do echo tick $i; "
                               "echo tock >&2; i=$((i+1)); done; exit 6"])
    null = os.open("/dev/null", os.O_RDONLY)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sock = client.exec_request(shim.socket, stdio=(null, out_w, err_w), keep=(out_r, err_r),
                               **files)
    for fd in (null, out_w, err_w):
        os.close(fd)
    try:
        pid = _read_reply(sock)["pid"]
        # The shim makes its copies of the kept ends non-blocking (they share the open
        # file description with ours, as the engine's asyncio reads want): wait for data.
        got = b""
        deadline = time.monotonic() + 15
        while len(got) < 6 and time.monotonic() < deadline:
            select.select([out_r], [], [], 0.5)
            try:
                got += os.read(out_r, 6 - len(got))
            except BlockingIOError:
                pass
        os.close(out_r)
        assert got == b"tick 0"  # ours while we are connected
    finally:
        os.close(err_r)
        sock.close()  # the engine is gone: its ends are closed, the shim's copies drained
    time.sleep(0.5)  # far more than two 64 KiB pipes' worth of ticks
    assert _stat_state(pid) not in (None, "Z"), "the writer died or was not reaped"
    (shim.bundle / "rootfs" / "go").touch()
    deadline = time.monotonic() + 15
    while (record := client.read_exit(files["exit_file"])) is None:
        assert time.monotonic() < deadline, "no exec exit record"
        time.sleep(0.02)
    assert record["exit_code"] == 6 and record["pid"] == pid  # not 141 (SIGPIPE)
    runtime_by_name("conch")("kill", shim.cid, "KILL", check=True)
    shim.wait_exit()


def _stat_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None
