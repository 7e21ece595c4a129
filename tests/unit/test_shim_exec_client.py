"""conch.shim.client's side of the shim's exec protocol (the shim itself, with a real
kernel and runtime, is tests/integration/test_shim.py): what goes on the wire, the fds
that go with it, and how the replies read. A socketpair-backed listener stands in for
the shim; no root needed."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from conch.errors import ConchError, FailedPrecondition, InvalidArgument
from conch.shim import client


@pytest.fixture
def fake_shim(tmp_path):
    """A listening socket; ``serve(reply)`` accepts one connection in a thread and
    records the request line and the fds that came with it."""
    path = tmp_path / "shim.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    got: dict = {}

    def serve(reply: bytes) -> threading.Thread:
        def run() -> None:
            conn, _ = listener.accept()
            with conn:
                msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 8)
                got["request"] = json.loads(msg.partition(b"\n")[0])
                got["fds"] = [os.readlink(f"/proc/self/fd/{fd}") for fd in fds]
                for fd in fds:
                    os.close(fd)
                conn.sendall(reply)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    yield path, serve, got
    listener.close()


def test_exec_request_sends_paths_stdio_and_kept_fds(fake_shim, tmp_path):
    path, serve, got = fake_shim
    thread = serve(b'{"pid":42}\n')
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        sock = client.exec_request(path, process=tmp_path / "p.json", pid_file=tmp_path / "p.pid",
                                   exit_file=tmp_path / "e.json", stdio=(null, w, w), keep=(r,),
                                   console_socket=tmp_path / "c.sock")
        with sock:
            assert client.parse_exec_reply(sock.makefile("rb").readline()) == {"pid": 42}
        thread.join(5)
    finally:
        for fd in (r, w, null):
            os.close(fd)
    assert got["request"] == {"type": "exec", "process": str(tmp_path / "p.json"),
                              "pid_file": str(tmp_path / "p.pid"),
                              "exit_file": str(tmp_path / "e.json"),
                              "console_socket": str(tmp_path / "c.sock")}
    assert got["fds"][0] == "/dev/null" and len(got["fds"]) == 4  # stdin, stdout, stderr, kept
    assert got["fds"][1] == got["fds"][2] == got["fds"][3]  # one pipe: both ends are pipe:[ino]


def test_exec_request_wants_three_stdio_fds(tmp_path):
    with pytest.raises(InvalidArgument, match="three fds"):
        client.exec_request(tmp_path / "none.sock", process="p", pid_file="f", exit_file="e",
                            stdio=(0, 1))


def test_exec_keep_and_its_refusal(fake_shim):
    path, serve, got = fake_shim
    thread = serve(b'{"ok":true}\n')
    r, w = os.pipe()
    try:
        client.exec_keep(path, 7, r)
        thread.join(5)
        assert got["request"] == {"type": "keep", "pid": 7} and len(got["fds"]) == 1
        thread = serve(b'{"ok":false,"error":"no such exec"}\n')
        with pytest.raises(FailedPrecondition, match="no such exec"):
            client.exec_keep(path, 8, r)
        thread.join(5)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("line, want", [
    (b'{"pid": 5}\n', {"pid": 5}),
    (b'{"exit_code": 127, "signal": null, "exited_at": "t", "pid": 0}',
     {"exit_code": 127, "signal": None, "exited_at": "t", "pid": 0}),
])
def test_parse_exec_reply(line, want):
    assert client.parse_exec_reply(line) == want


@pytest.mark.parametrize("line, kind", [
    (b'{"error":"the container is not running"}\n', FailedPrecondition),
    (b"not json\n", ConchError),
    (b"[1]\n", ConchError),
])
def test_parse_exec_reply_errors(line, kind):
    with pytest.raises(kind):
        client.parse_exec_reply(line)
