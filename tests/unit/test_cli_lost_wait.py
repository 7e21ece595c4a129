"""Issue 15 item 4: a ``conch run`` whose wait is lost never exits as if the container had.

A fake daemon on a unix socket in this process answers create, attach (an upgraded stream
that ends at once), start and the wait; the wait is answered in one broken way per case:
its head then the connection closed (conchd killed while the CLI waits), its head then a
reset, an in-band ``Error``; the start answered by a reset. docker/cli's
``waitExitOrRemoved`` turns each into exit 125 with "error waiting for container: ...";
conch used to exit 0 (the empty chunked body read as ``{}`` -> StatusCode 0) or 1
("Connection reset by peer"). The "ok" case proves the fake passes a real status through.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest

from conch.testing.daemon import BIN

CONCH = str(BIN / "conch")
if not os.access(CONCH, os.X_OK):
    pytest.skip(f"conch is not installed in this venv ({BIN}); run `make setup`", allow_module_level=True)

CID = "c0ffee" * 10 + "abcd"
CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Api-Version: 1.50\r\nTransfer-Encoding: chunked\r\n\r\n")


def _json(status: int, body: bytes) -> bytes:
    return (b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nApi-Version: 1.50\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))


def _reset(conn: socket.socket) -> None:
    # a unix socket closed with unread data in its queue makes the peer's next recv fail
    # with ECONNRESET (unix_release_sock), as when conchd is killed mid-request
    conn.close()


class FakeDaemon:
    def __init__(self, path: str, mode: str) -> None:
        self.path, self.mode = path, mode
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            # peek, and consume all but the last byte: a reset needs unread data (see _reset)
            data = b""
            while b"\r\n\r\n" not in data:
                data = conn.recv(65536, socket.MSG_PEEK)
                if not data:
                    return
            conn.recv(len(data) - 1)
            if not self.mode.endswith("_reset"):
                conn.recv(1)  # a clean close (EOF), as a killed conchd whose read was done
            line = data.split(b"\r\n", 1)[0].decode()
            path = line.split(" ")[1]
            if "/containers/create" in path:
                conn.sendall(_json(201, b'{"Id": "%s", "Warnings": []}' % CID.encode()))
            elif "/attach" in path:
                conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                             b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                conn.sendall(b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n")
            elif "/start" in path:
                if self.mode == "start_reset":
                    _reset(conn)
                    return
                conn.sendall(b"HTTP/1.1 204 No Content\r\nApi-Version: 1.50\r\n\r\n")
            elif "/wait" in path:
                conn.sendall(CHUNKED_HEAD)
                if self.mode == "wait_closed":
                    return  # conchd died: the head went out, the body never will
                if self.mode == "wait_reset":
                    _reset(conn)
                    return
                body = {"ok": b'{"StatusCode": 56, "Error": null}\n',
                        "wait_error": b'{"StatusCode": -1, "Error": {"Message": "boom"}}\n',
                        "start_reset": b'{"StatusCode": 0, "Error": null}\n'}[self.mode]
                conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            else:
                conn.sendall(_json(404, b'{"message": "not faked"}'))
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.stopping.set()
        self.sock.close()
        self.thread.join(5)
        for t in self.threads:
            t.join(5)


@pytest.mark.parametrize("mode, status, message", [
    ("ok", 56, None),
    ("wait_closed", 125, "error waiting for container: "),
    ("wait_reset", 125, "error waiting for container: "),
    ("wait_error", 125, "error waiting for container: boom"),
    ("start_reset", 125, "Connection reset by peer"),
])
def test_lost_wait_is_125(tmp_path, mode, status, message):
    daemon = FakeDaemon(str(tmp_path / "d.sock"), mode)
    try:
        env = dict(os.environ, CONCH_HOST=f"unix://{daemon.path}", CONCH_CONFIG=str(tmp_path / "cfg"))
        p = subprocess.run([CONCH, "run", "busybox", "sh", "-c", "exit 56"], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    finally:
        daemon.close()
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == status, (p.returncode, p.stderr)
    if message is not None:
        assert message in p.stderr, p.stderr
    if mode != "start_reset":
        assert p.stdout == "hi\n"
