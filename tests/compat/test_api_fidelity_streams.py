"""Issue 10 item 7 through docker-py, the docker CLI (in a real pty) and a websocket
client: detach keys on attach and exec, exec framing from the start request's Tty,
TERM=xterm for tty execs, ConsoleSize sizing the pty before the process runs,
``attach?logs=1&stream=0``, and ``/containers/{id}/attach/ws``."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import struct
import termios
import time

import pytest

from conch.testing.daemon import DOCKER, clean_after, daemon_fixture

docker = pytest.importorskip("docker", reason="docker-py is not installed in this venv")

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed at /usr/local/bin/docker")

daemon = daemon_fixture("module")


@pytest.fixture
def d(daemon):
    yield from clean_after(daemon)


@pytest.fixture
def client(d):
    c = docker.DockerClient(base_url=d.host, timeout=60)
    yield c
    c.close()


def _recv_until(sock, want: bytes, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def _eof_within(sock, timeout: float = 10) -> bool:
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sock.recv(4096):
            return True
    return False


def _keys(sock, keys: bytes) -> None:
    # one key per read, as typed: dockerd only detaches on keys read one by one
    for k in keys:
        sock.sendall(bytes([k]))
        time.sleep(0.3)


def test_attach_detach_keys_default_and_custom(d, client):
    c = client.containers.run("busybox", ["cat"], detach=True, stdin_open=True)
    for params, keys in (({}, b"\x10\x11"), ({"detachKeys": "ctrl-a,x"}, b"\x01x")):
        s = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1, **params})
        sock = s._sock
        sock.sendall(b"hello\n")
        assert b"hello\n" in _recv_until(sock, b"hello\n")
        _keys(sock, keys)
        assert _eof_within(sock), "the session did not end on the detach keys"
        sock.close()
        c.reload()
        assert c.status == "running"
    # piped data containing the keys does not detach (they come in one read)
    s = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1})
    s._sock.sendall(b"a\x10\x11b\n")
    assert b"a\x10\x11b\n" in _recv_until(s._sock, b"b\n")
    s._sock.close()
    status = client.api._post(client.api._url("/containers/{0}/attach", c.id),
                              params={"stream": 1, "stdin": 1, "detachKeys": "ctrl-1"})
    assert status.status_code == 400
    assert status.json()["message"] == "Invalid detach keys (ctrl-1) provided"


def test_exec_detach_keys(d, client):
    c = client.containers.run("busybox", ["sleep", "300"], detach=True)
    ex = client.api.exec_create(c.id, ["sh", "-c", "cat; echo done"], stdin=True, stdout=True)
    sock = client.api.exec_start(ex["Id"], socket=True)._sock
    sock.sendall(b"exec-hi\n")
    assert b"exec-hi" in _recv_until(sock, b"exec-hi")
    _keys(sock, b"\x10\x11")
    assert _eof_within(sock)
    sock.close()
    time.sleep(0.5)
    assert client.api.exec_inspect(ex["Id"])["Running"] is True  # it keeps running


def test_exec_framing_follows_start_tty_and_term(d, client):
    c = client.containers.run("busybox", ["sleep", "300"], detach=True)
    ex = client.api.exec_create(c.id, ["echo", "framed"], tty=True)
    # made with a tty, started with Tty false: multiplexed, the pty's output as stdout
    assert client.api.exec_start(ex["Id"], tty=False, demux=True) == (b"framed\r\n", None)
    ex = client.api.exec_create(c.id, ["sh", "-c", "echo out; echo err >&2"])
    out = client.api.exec_start(ex["Id"], tty=True)  # raw: no frame headers
    assert sorted(out.split()) == [b"err", b"out"]
    env = c.exec_run("env", tty=True).output.decode().split()
    assert "TERM=xterm" in env
    assert not [e for e in c.exec_run("env").output.decode().split() if e.startswith("TERM=")]
    t = client.containers.run("busybox", ["sleep", "300"], detach=True, tty=True)
    assert not [e for e in t.exec_run("env").output.decode().split() if e.startswith("TERM=")]


def test_exec_console_size_before_the_process_runs(d, client):
    c = client.containers.run("busybox", ["sleep", "300"], detach=True)
    resp = client.api._post_json(client.api._url("/containers/{0}/exec", c.id),
                                 data={"Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True,
                                       "ConsoleSize": [17, 93]})
    exec_id = resp.json()["Id"]
    out = client.api.exec_start(exec_id, tty=True)
    assert out.strip() == b"17 93"


def _in_pty(d, argv: list[str], rows: int, cols: int, *, send: list[bytes] = (),
            timeout: float = 30) -> tuple[bytes, int]:
    """Run ``argv`` (the docker CLI) on a fresh pty of rows x cols; the keys of ``send``
    are typed one per 0.3 s after the first output. (output, exit status)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(argv[0], argv, d.env)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    pending = list(send)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.3)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif pending and out:
                os.write(fd, pending.pop(0))
        else:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return out, os.waitstatus_to_exitcode(status)


def test_docker_cli_run_it_stty_size(d):
    out, code = _in_pty(d, [DOCKER, "run", "--rm", "-it", "busybox", "stty", "size"], 33, 111)
    assert code == 0 and out.strip() == b"33 111", out
    cid = d.docker("run", "-d", "busybox", "sleep", "300").stdout.strip()
    out, code = _in_pty(d, [DOCKER, "exec", "-it", cid, "stty", "size"], 21, 77)
    assert code == 0 and out.strip() == b"21 77", out


def test_docker_cli_attach_detaches_with_ctrl_p_ctrl_q(d):
    cid = d.docker("run", "-dit", "busybox", "sh").stdout.strip()
    out, code = _in_pty(d, [DOCKER, "attach", cid], 24, 80, send=[b"\n", b"\x10", b"\x11"])
    # the CLI's own words for a detach (its exit status is the CLI's business)
    assert b"read escape sequence" in out, (code, out)
    status = d.docker("inspect", "-f", "{{.State.Status}}", cid).stdout.strip()
    assert status == "running"


def test_attach_logs_without_stream(d, client):
    c = client.containers.run("busybox", ["sh", "-c", "echo one; echo two >&2; sleep 300"],
                              detach=True)
    deadline = time.monotonic() + 10
    while c.logs() != b"one\ntwo\n":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert c.attach(logs=True, stream=False, stdout=True, stderr=True) == b"one\ntwo\n"
    assert c.attach(logs=True, stream=False, stdout=True, stderr=False) == b"one\n"


def test_attach_websocket(d, client):
    import aiohttp

    c = client.containers.run("busybox", ["sh", "-c", "echo before; cat"], detach=True,
                              stdin_open=True)
    deadline = time.monotonic() + 10
    while c.logs() != b"before\n":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    async def session() -> list[tuple[str, bytes]]:
        got = []
        connector = aiohttp.UnixConnector(path=str(d.sock))
        async with aiohttp.ClientSession(connector=connector) as s:
            url = f"http://localhost/v1.50/containers/{c.id}/attach/ws?logs=1&stream=1"
            async with s.ws_connect(url) as ws:
                msg = await asyncio.wait_for(ws.receive(), 10)
                got.append((msg.type.name, msg.data))
                await ws.send_bytes(b"ping\n")
                msg = await asyncio.wait_for(ws.receive(), 10)
                got.append((msg.type.name, msg.data))
        return got

    # binary messages (API >= 1.28), no stdcopy headers: the websocket keeps them apart
    assert asyncio.run(session()) == [("BINARY", b"before\n"), ("BINARY", b"ping\n")]
    c.reload()
    assert c.status == "running"
