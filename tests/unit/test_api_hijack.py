"""Connection hijack (attach/exec start) over a real unix socket, with a raw client and
with conch.client; stdin half-close must leave the output direction open."""

from __future__ import annotations

import socket
import struct

import pytest

from conch.api.hijack import hijack
from conch.api.params import json_response
from conch.api.server import create_app
from conch.client import Client, demux
from conch.errors import NotFound
from conch.testing.fake_engine import FakeEngine, ServerThread


class _EchoRoutes:
    """POST /echo?mux=1: upper-cases stdin to stdout until stdin's EOF, then writes
    'bye' to stderr and ends the session (what attach does with a container's stdio)."""

    @staticmethod
    def register(add):
        async def echo(request):
            body = await request.read()  # exec start sends JSON before the hijack
            if request.query.get("missing"):
                raise NotFound("No such container: x")
            conn = await hijack(request, multiplexed=request.query.get("mux") == "1")
            async with conn:
                if body:
                    await conn.write_stream(1, b"body:" + body)
                while data := await conn.reader.read(65536):
                    await conn.write_stream(1, data.upper())
                await conn.write_stream(2, b"bye")
            return conn.response

        async def after(request):
            return json_response({"ok": True})

        add("POST", "/echo", echo)
        add("GET", "/after", after)


@pytest.fixture
def srv(tmp_path):
    with ServerThread(create_app(FakeEngine(), modules=(_EchoRoutes,)), tmp_path / "h.sock") as s:
        yield s


def _open(srv, path, upgrade=True, body=b""):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(srv.path)
    headers = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    if upgrade:
        headers += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    s.sendall(headers.encode() + b"\r\n" + body)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s, head.decode()


def _read_all(s) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _frames(data: bytes):
    it = iter([data, b""])
    return list(demux(lambda n: next(it)))


def test_upgrade_head_and_half_close_raw_socket(srv):
    s, head = _open(srv, "/v1.50/echo?mux=1")
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    assert "Content-Type: application/vnd.docker.multiplexed-stream" in lines
    assert "Connection: Upgrade" in lines and "Upgrade: tcp" in lines
    assert "Api-Version: 1.50" in lines
    s.sendall(b"hello ")
    s.sendall(b"world")
    s.shutdown(socket.SHUT_WR)  # stdin EOF: the output must still arrive
    frames = _frames(_read_all(s))
    s.close()
    assert b"".join(d for st, d in frames if st == 1) == b"HELLO WORLD"
    assert frames[-1] == (2, b"bye")


def test_raw_stream_for_tty_and_for_old_api_versions(srv):
    s, head = _open(srv, "/v1.50/echo")  # tty: raw, unframed
    assert "Content-Type: application/vnd.docker.raw-stream" in head
    s.sendall(b"abc")
    s.shutdown(socket.SHUT_WR)
    assert _read_all(s) == b"ABCbye"
    s.close()
    s, head = _open(srv, "/v1.41/echo?mux=1")  # framed, but announced as raw before 1.42
    assert "Content-Type: application/vnd.docker.raw-stream" in head
    s.shutdown(socket.SHUT_WR)
    assert _frames(_read_all(s)) == [(2, b"bye")]
    s.close()


def test_without_upgrade_headers_the_stream_is_a_200_body(srv):
    s, head = _open(srv, "/echo?mux=1", upgrade=False, body=b'{"Detach":false}')
    assert head.startswith("HTTP/1.1 200 OK")
    assert "Content-Length" not in head and "Transfer-Encoding" not in head
    s.shutdown(socket.SHUT_WR)
    assert _frames(_read_all(s)) == [(1, b'body:{"Detach":false}'), (2, b"bye")]
    s.close()


def test_errors_before_the_hijack_are_plain_http(srv):
    client = Client(srv.host)
    with pytest.raises(NotFound, match="No such container: x"):
        client.hijack("POST", "/echo", params={"missing": 1})


def test_client_hijack_round_trip_and_server_stays_healthy(srv):
    client = Client(srv.host)
    with client.hijack("POST", "/echo", {"Tty": False}, params={"mux": 1}) as conn:
        assert conn.status == 101 and conn.multiplexed
        conn.send(b"ping")
        conn.close_write()
        frames = list(conn.iter_frames())
    assert frames == [(1, b'body:{"Tty": false}'), (1, b"PING"), (2, b"bye")]
    for _ in range(3):  # hijacked connections leave the server fine for others
        assert client.get("/after") == {"ok": True}


def test_client_disconnect_mid_session_does_not_wedge_the_server(srv):
    s, _ = _open(srv, "/echo?mux=1")
    s.sendall(b"x")
    s.close()  # full close while the handler waits for more stdin
    assert Client(srv.host).get("/after") == {"ok": True}


def test_stdcopy_frame_layout():
    from conch.api.streams import stdcopy_frame
    assert stdcopy_frame(2, b"err") == struct.pack(">BxxxL", 2, 3) + b"err"
